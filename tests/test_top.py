"""`swimctl top`: the view from reports (rates, quantiles, layout at 80×24 and 160×45), then
the real command in a real terminal (tmux) against a live hub with traffic, its numbers checked
against `status`, and `--json`."""

from __future__ import annotations

import os
import re
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
from rich.console import Console

from swimctl.cli.topview import TopState, build_view, quantile, render
from tests.conftest import Harness, request, running_hub

ROOT = Path(__file__).resolve().parent.parent


# -- the view, without a terminal ----------------------------------------------------------------


def test_quantile_interpolates_inside_buckets() -> None:
    bounds = [0.001, 0.01, 0.1]
    assert quantile(bounds, [0, 0, 0, 0], 0.5) is None
    assert quantile(bounds, [10, 0, 0, 0], 0.5) == pytest.approx(0.0005)
    assert quantile(bounds, [50, 50, 0, 0], 0.99) == pytest.approx(0.001 + 0.009 * 0.98)
    assert quantile(bounds, [0, 0, 0, 5], 0.5) == 0.1  # past the last bound: the last bound


def report(uptime: float, **changes: Any) -> dict[str, Any]:
    """A hub report as hub/report.py makes it."""
    base: dict[str, Any] = {
        "hub_id": "hub-a:8090", "uptime": uptime, "epoch": "e1", "seq": 100,
        "connected_clients": 3,
        "tiers": [{"tier": t, "open": n, "connections": n} for t, n in
                  (("public", 1), ("developer", 1), ("partner", 0), ("system", 1))],
        "events": [{"type": "flight.created", "count": 10}, {"type": "ctp.tick", "count": 0}],
        "deliveries": 20,
        "fanout": {"bounds": [0.001, 0.01], "counts": [4, 0, 0], "count": 4, "sum": 0.002},
        "slow_consumers": 0, "rate_limited": 0, "cap_refusals": 0, "auth_failures": 0,
        "closes": [], "feed": {"age_seconds": 12.5, "cycles": 3, "last_cycle": {
            "snapshot": "2030-01-01T10:00:00.000Z", "pilots": 1500, "skipped": 0,
            "events": [{"type": "flight.departed", "count": 2}], "events_total": 2}},
        "keys": [{"key_id": 7, "tier": "partner", "owner": "Ops", "open": 1,
                  "connections": 1, "connection_seconds": 10, "events_delivered": 40,
                  "bytes_sent": 4000, "refusals_auth": 0, "refusals_cap": 0,
                  "refusals_rate": 0}],
        "hubs": [{"hub_id": "hub-a:8090", "self": True, "clients": 3, "broker_up": None,
                  "leader": None, "read_lag_seconds": None}],
        "keystore_up": True, "usage": {"ok": True}, "components": [],
    }
    base.update(changes)
    return base


def test_rates_come_from_two_reports_and_reset_on_restart() -> None:
    first = report(10.0)
    second = report(12.0, events=[{"type": "flight.created", "count": 30},
                                  {"type": "ctp.tick", "count": 4}], deliveries=120,
                    fanout={"bounds": [0.001, 0.01], "counts": [4, 10, 0], "count": 14,
                            "sum": 0.05},
                    closes=[{"code": 4008, "count": 2}],
                    keys=[{**first["keys"][0], "events_delivered": 140}])
    view = build_view(second, first)
    assert view.interval == 2.0
    assert view.events_per_second == {"flight.created": 10.0, "ctp.tick": 2.0}
    assert view.deliveries_per_second == 50.0
    assert view.fanout_p50 == pytest.approx(0.001 + 0.009 * 0.5)
    assert view.closes_recent == {4008: 2} and view.keys[0]["per_second"] == 50.0
    assert view.connections == {"public": 1, "developer": 1, "partner": 0, "system": 1}
    restarted = build_view(report(1.0), second)  # uptime went back: no rates
    assert restarted.interval is None and restarted.deliveries_per_second is None
    data = orjson.loads(orjson.dumps(view.to_dict()))
    assert {"type": "ctp.tick", "per_second": 2.0, "total": 4} in data["events"]


def screen(state: TopState, width: int, height: int) -> list[str]:
    console = Console(width=width, height=height, record=True, color_system=None,
                      file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(render(state, width, height, now=state.updated))
    return console.export_text().rstrip("\n").split("\n")


@pytest.mark.parametrize(("width", "height"), [(80, 24), (160, 45)])
def test_a_busy_hub_on_several_brokers_fits_the_screen(width: int, height: int) -> None:
    types = [{"type": f"flight.t{i}", "count": i * 100} for i in range(30)]
    keys = [{"key_id": i, "tier": "developer", "owner": f"owner number {i} " * 3,
             "open": i % 3, "connections": 5, "connection_seconds": 500,
             "events_delivered": i * 1000, "bytes_sent": i * 10**6, "refusals_auth": 0,
             "refusals_cap": 0, "refusals_rate": 0} for i in range(1, 40)]
    hubs = [{"hub_id": "hub-a:8090", "self": True, "clients": 1200, "broker_up": True,
             "leader": True, "read_lag_seconds": 0.004},
            {"hub_id": "hub-b:8090", "self": False, "clients": 900, "broker_up": True,
             "leader": False, "read_lag_seconds": 0.012},
            {"hub_id": "hub-c:8090", "self": False, "clients": 0, "broker_up": False,
             "leader": False, "read_lag_seconds": None}]
    state = TopState("ws://hub-a:8090/api/swim/v1/ws", state="connected")
    for n in range(5):
        grown = [{**t, "count": t["count"] + n * 7} for t in types]
        state.add(report(10.0 + n, events=grown, keys=keys, hubs=hubs, rate_limited=4 * n,
                         closes=[{"code": 4008, "count": 3 + n}, {"code": 4003, "count": 1}],
                         components=[{"component": "recorder", "ok": False,
                                      "problem": "No space left on device"}]), now=100.0 + n)
    lines = screen(state, width, height)
    assert len(lines) <= height, "\n".join(lines)
    assert all(len(line) <= width for line in lines), "\n".join(lines)
    text = "\n".join(lines)
    for needle in ("clients 3", "events/s", "deliveries/s", "fan-out p50", "closed: slow 7",
                   "violations 1", "rate-limited 16 (4.0/s)", "refused: auth 0 cap 0",
                   "feed age 12s", "1,500 pilots", "events by type",
                   "top keys by deliveries", "hub-b:8090", "DOWN", "recorder: No space",
                   "q or Ctrl-C quits"):
        assert needle in text, (needle, text)
    assert re.search(r"hub-a:8090 \(this\)\s+1,200\s+yes\s+4\.0ms\s+up", text), text
    if width >= 140:  # events and keys side by side
        assert any("event type" in line and "owner" in line for line in lines), text


# -- the real command in a real terminal ---------------------------------------------------------


async def tmux(*args: str) -> str:
    result = await trio.run_process(["tmux", *args], capture_stdout=True, capture_stderr=True,
                                    check=False)
    return result.stdout.decode()


async def traffic(h: Harness, stop: trio.Event) -> int:
    """Events of two types until told to stop; how many were published."""
    n = 0
    while not stop.is_set():
        await h.hub.publish("ctp.tick", {"n": n})
        if n % 3 == 0:
            await h.hub.publish("flight.departed", {"callsign": f"T{n}", "dep": "KJFK",
                                                    "arr": "KBOS"})
        n += 1
        await trio.sleep(0.01)
    return n


def figure(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match, (pattern, text)
    return match.group(1)


@pytest.mark.parametrize(("width", "height"), [(80, 24), (160, 45)])
async def test_top_in_a_real_terminal_matches_status(tmp_path: Path, width: int,
                                                     height: int) -> None:
    if shutil.which("tmux") is None or shutil.which("bash") is None:
        if os.environ.get("CI"):
            pytest.fail("tmux and bash are required under CI")
        pytest.skip("tmux not installed")
    sock = f"swimtop-{uuid.uuid4().hex[:8]}"
    async with running_hub(tmp_path) as h, h.connect("partner") as watcher, \
            h.connect("system") as asker:
        await request(watcher, {"action": "subscribe", "channels": ["*"]})
        script = tmp_path / "run.sh"
        script.write_text(f"cd {ROOT}\n{sys.executable} -m swimctl top --url {h.url}\n"
                          "echo EXIT=$?\nsleep 60\n")
        stop = trio.Event()
        published: list[int] = []
        try:
            await tmux("-L", sock, "new-session", "-d", "-x", str(width), "-y", str(height),
                       "-e", f"SWIM_API_KEY={h.keys['system']}", "-e", f"PYTHONPATH={ROOT}",
                       f"bash {script}")
            async with trio.open_nursery() as nursery:

                async def run_traffic() -> None:
                    published.append(await traffic(h, stop))

                nursery.start_soon(run_traffic)
                text = ""
                with trio.fail_after(20):  # live numbers while traffic flows
                    while not re.search(r"ctp\.tick\s+[1-9][\d.]*\s", text):
                        await trio.sleep(0.3)
                        text = await tmux("-L", sock, "capture-pane", "-p")
                assert re.search(r"events/s [1-9]", text), text
                stop.set()
            # Quiet now: once top has refreshed, its totals are the hub's.
            status = (await request(asker, {"action": "status"}))["data"]
            with trio.fail_after(10):
                while f"seq {status['seq']:,} " not in text:
                    await trio.sleep(0.3)
                    text = await tmux("-L", sock, "capture-pane", "-p")
            lines = text.rstrip("\n").split("\n")
            assert len(lines) <= height and all(len(line) <= width for line in lines), text
            assert int(figure(r"clients (\d+)", text)) == status["connected_clients"] == 3
            assert figure(r"\bpar (\d+)", text) == "1" and figure(r"\bsys (\d+)", text) == "2"
            ticks = published[0]
            assert int(figure(r"ctp\.tick\s+[\d.]+\s+([\d,]+)", text).replace(",", "")) == ticks
            departed = (ticks + 2) // 3
            assert int(figure(r"flight\.departed\s+[\d.]+\s+([\d,]+)", text).replace(",", "")
                       ) == departed
            delivered = figure(rf"\b{h.key_ids['partner']}\s+test partner\s+par\s+1\s+[\d.]+"
                               r"\s+([\d,]+)", text)
            assert int(delivered.replace(",", "")) == ticks + departed
            assert h.keys["system"] not in text
            await tmux("-L", sock, "send-keys", "q")
            with trio.fail_after(10):
                while "EXIT=" not in text:
                    await trio.sleep(0.2)
                    text = await tmux("-L", sock, "capture-pane", "-p")
            assert "EXIT=0" in text and "events by type" not in text  # screen restored
        finally:
            await tmux("-L", sock, "kill-server")


async def test_json_snapshot_and_a_key_of_the_wrong_tier(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as h, h.connect("developer") as ws:
        await request(ws, {"action": "subscribe", "channels": ["ctp.*"]})
        for i in range(5):
            await h.hub.publish("ctp.n", {"i": i})
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = await trio.run_process(
            [sys.executable, "-m", "swimctl", "top", "--url", h.url, "--json",
             "--interval", "0.3"], env={**env, "SWIM_API_KEY": h.keys["system"]},
            capture_stdout=True, capture_stderr=True, check=False)
        assert done.returncode == 0, done.stderr
        snap = orjson.loads(done.stdout)
        status = (await request(ws, {"action": "status"}))["data"]
        assert snap["seq"] == status["seq"] and snap["epoch"] == status["epoch"]
        assert {"tier": "developer", "count": 1} in snap["connections"]
        assert {"type": "ctp.n", "per_second": 0.0, "total": 5} in snap["events"]
        [key] = [k for k in snap["keys"] if k["key_id"] == h.key_id]
        assert key["events_delivered"] == 5 and key["owner"] == "test developer"
        assert snap["interval"] > 0.2 and snap["hubs"][0]["self"] is True
        refused = await trio.run_process(
            [sys.executable, "-m", "swimctl", "top", "--url", h.url, "--json"],
            env={**env, "SWIM_API_KEY": h.keys["developer"]}, capture_stdout=True,
            capture_stderr=True, check=False)
        assert refused.returncode == 1
        assert refused.stderr.decode().strip().splitlines() == [
            "swimctl: error: swimctl top needs a system-tier key (swim_sys_...): the hub "
            "shows its figures to the operator's keys only"]


async def test_live_view_errors_are_one_line(tmp_path: Path) -> None:
    """On a terminal (a pty) too, a key of the wrong tier or an unknown key ends with one
    line and status 1, the screen given back."""
    import pty

    async with running_hub(tmp_path) as h:
        for key, needle in ((h.keys["partner"], "needs a system-tier key"),
                            ("swim_sys_" + "0" * 64, "invalid API key")):
            leader, follower = pty.openpty()
            try:
                done = await trio.run_process(
                    [sys.executable, "-m", "swimctl", "top", "--url", h.url],
                    stdin=follower, stdout=follower, capture_stderr=True, check=False,
                    env={**os.environ, "PYTHONPATH": str(ROOT), "SWIM_API_KEY": key})
            finally:
                os.close(follower)
                os.close(leader)
            lines = done.stderr.decode().strip().splitlines()
            assert done.returncode == 1 and len(lines) == 1, lines
            assert lines[0].startswith("swimctl: error: ") and needle in lines[0]
            assert key not in lines[0]
