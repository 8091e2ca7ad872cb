"""`swimctl tail`: JSON lines through a pipe, one-line errors, the live view as a person sees it
(rendered at a fixed width, and in a real terminal under tmux)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio
from rich.console import Console

from swimctl.cli.tui import TailState, apply_event, notice, render
from tests.conftest import running_hub
from tests.helpers_client import subscribed_clients, wait_until

ROOT = Path(__file__).resolve().parent.parent


def departure(callsign: str = "JBU123", dep: str = "KJFK", arr: str = "KBOS") -> dict[str, Any]:
    return {"callsign": callsign, "flight_uid": 42, "dep": dep, "arr": arr,
            "off_utc": "2026-11-26T18:30:00Z", "latitude": 40.64, "longitude": -73.78,
            "current_artcc": "ZNY"}


GS = {"program_id": "GS-KJFK-1", "program_type": "GS", "airport": "KJFK",
      "start_time": "2026-11-26T18:00:00Z", "end_time": "2099-11-26T20:00:00Z",
      "reason": "thunderstorms"}


def env_with(key: str) -> dict[str, str]:
    env = dict(os.environ)
    env["SWIM_API_KEY"] = key
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("SWIM_URL", None)
    return env


def tail_cmd(url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "swimctl", "tail", "--url", url, *extra]


# -- the view, rendered ---------------------------------------------------------------------


def test_tui_shows_a_kjfk_departure_row() -> None:
    state = TailState(url="ws://hub.example:8090/api/swim/v1/ws", state="connected")
    apply_event(state, "tmi.active", "2026-11-26T18:29:00.000Z", {"programs": [GS]}, None,
                now=100.0)
    apply_event(state, "flight.departed", "2026-11-26T18:30:02.512Z", departure(), 48214,
                now=101.0)
    apply_event(state, "system.heartbeat", "2026-11-26T18:30:03.000Z",
                {"connected_clients": 3, "seq": 48214, "feed_age_seconds": 12.5}, now=101.0)
    console = Console(record=True, width=120, color_system=None)
    console.print(render(state, now=104.0, height=30))
    text = console.export_text()
    rows = [line for line in text.splitlines() if "flight.departed" in line]
    assert len(rows) == 1, text
    row = rows[0]
    assert row.startswith("18:30:02")
    for part in ("JBU123", "KJFK → KBOS", "ZNY", "off 18:30Z"):
        assert part in row, text
    assert row.index("JBU123") < row.index("KJFK → KBOS") < row.index("ZNY")
    header = text.splitlines()[0]
    assert "ws://hub.example:8090/api/swim/v1/ws" in header and "CONNECTED" in header
    assert "seq 48214" in text and "heartbeat 3s ago" in text and "feed age 12s" in text
    assert "active TMIs (1)" in text
    assert "GS-KJFK-1" in text and "thunderstorms" in text


def test_tui_released_program_leaves_the_panel_and_gaps_show() -> None:
    state = TailState(url="ws://x/api/swim/v1/ws")
    apply_event(state, "tmi.issued", "2026-11-26T18:00:00Z", GS, 1, now=1.0)
    apply_event(state, "tmi.released", "2026-11-26T18:10:00Z", {**GS, "status": "RELEASED"}, 2,
                now=2.0)
    notice(state, "warning: GAP: events were missed")
    console = Console(record=True, width=120, color_system=None)
    console.print(render(state, now=3.0, height=30))
    text = console.export_text()
    assert "active TMIs (0)" in text and "no active programs" in text
    assert "GAP" in text
    assert "tmi.released" in text and "RELEASED" in text


def test_tui_limits_rows_to_the_terminal() -> None:
    state = TailState(url="ws://x/api/swim/v1/ws")
    for i in range(100):
        apply_event(state, "flight.departed", "2026-11-26T18:30:00Z",
                    departure(f"N{i}"), i + 1, now=1.0)
    console = Console(record=True, width=120, height=25, color_system=None)
    console.print(render(state, now=2.0, height=25))
    text = console.export_text()
    assert len(text.splitlines()) <= 25
    assert "N99 " in text and "N50 " not in text  # newest at the bottom, oldest dropped


# -- the command, as a subprocess -----------------------------------------------------------


async def read_lines(stream: Any, count: int, buf: bytearray, timeout: float = 10) -> list[str]:
    with trio.fail_after(timeout):
        while buf.count(b"\n") < count:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            buf.extend(chunk)
    return buf.decode().splitlines()


async def test_tail_json_lines_through_a_pipe_survive_a_disconnect(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as h:
        proc = await trio.lowlevel.open_process(
            [*tail_cmd(h.url, "--json", "--airport", "KJFK")], env=env_with(h.key),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(ROOT))
        try:
            await wait_until(lambda: subscribed_clients(h.hub), timeout=15)
            await h.hub.publish("flight.departed", departure("JBU1"))
            await h.hub.publish("flight.departed", departure("UAL9", dep="KLAX", arr="KSFO"))
            await h.hub.publish("tmi.issued", GS)
            buf = bytearray()
            await read_lines(proc.stdout, 2, buf)
            subscribed_clients(h.hub)[0].request_close(1011, "test")
            await wait_until(lambda: not h.hub.clients)
            await h.hub.publish("flight.arrived",
                                {**departure("JBU2"), "in_utc": "2026-11-26T19:00Z"})
            await wait_until(lambda: subscribed_clients(h.hub), timeout=15)
            await h.hub.publish("flight.deleted", {"callsign": "JBU3", "flight_uid": 3,
                                             "dep": "KJFK", "arr": None})
            lines = await read_lines(proc.stdout, 4, buf)
            proc.send_signal(signal.SIGINT)
            with trio.fail_after(10):
                code = await proc.wait()
            err = (await proc.stderr.receive_some(65536)).decode()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert code == 0, err
    events = [json.loads(line) for line in lines]  # every line parses on its own
    assert [e["type"] for e in events] == ["flight.departed", "tmi.issued", "flight.arrived",
                                           "flight.deleted"]
    assert [e["seq"] for e in events] == [1, 3, 4, 5]  # KLAX filtered out; nothing lost
    assert events[0]["data"]["callsign"] == "JBU1"
    assert all(set(e) >= {"type", "timestamp", "data"} for e in events)
    assert "connected to" in err and "resumed after seq 3" in err
    assert "\x1b[" not in buf.decode()  # no colour in a pipe
    assert "Traceback" not in err


async def test_ctrl_c_leaves_at_once(tmp_path: Path) -> None:
    """Ctrl-C sends the hub a close frame and goes: it does not wait for the hub's answer,
    which the cancelled reader could never take (that wait was a fixed 2 s, blank screen and
    all). The bound here is loose for a busy machine; the exit takes about 0.1 s."""
    async with running_hub(tmp_path) as h:
        proc = await trio.lowlevel.open_process(
            tail_cmd(h.url, "--json"), env=env_with(h.key), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=str(ROOT))
        try:
            await wait_until(lambda: subscribed_clients(h.hub), timeout=15)
            await h.hub.publish("flight.departed", departure())
            await read_lines(proc.stdout, 1, bytearray(), timeout=10)
            started = trio.current_time()
            proc.send_signal(signal.SIGINT)
            with trio.fail_after(10):
                code = await proc.wait()
            elapsed = trio.current_time() - started
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert code == 0
    assert elapsed < 3.0, f"tail took {elapsed:.2f} s to leave after Ctrl-C"  # not its 10 s retry


async def test_tail_bad_key_exits_1_with_one_line(tmp_path: Path) -> None:
    bad = "swim_dev_" + "f" * 64
    async with running_hub(tmp_path) as h:
        result = await trio.run_process(tail_cmd(h.url), env=env_with(bad), capture_stdout=True,
                                        capture_stderr=True, check=False, cwd=str(ROOT))
    err = result.stderr.decode()
    assert result.returncode == 1
    assert len(err.strip().splitlines()) == 1, err
    assert "authentication failed" in err and "Traceback" not in err
    assert bad not in err and "swim_dev_" not in err
    assert result.stdout == b""


async def test_tail_unreachable_hub_keeps_retrying_visibly() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"ws://127.0.0.1:{port}/api/swim/v1/ws"
    proc = await trio.lowlevel.open_process(
        tail_cmd(url, "--json"), env=env_with("swim_dev_x"), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, cwd=str(ROOT))
    try:
        buf = bytearray()
        lines = await read_lines(proc.stderr, 2, buf, timeout=15)
        proc.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            code = await proc.wait()
        out = await proc.stdout.receive_some(65536)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0
    assert out == b""
    assert all("disconnected: cannot connect" in line and "retrying in" in line
               for line in lines[:2]), lines


async def test_tail_missing_key_and_bad_bbox_are_one_line_errors() -> None:
    env = env_with("")
    env.pop("SWIM_API_KEY")
    result = await trio.run_process(tail_cmd("ws://127.0.0.1:1/api/swim/v1/ws"), env=env,
                                    capture_stdout=True, capture_stderr=True, check=False,
                                    cwd=str(ROOT))
    assert result.returncode == 1 and b"no API key" in result.stderr
    result = await trio.run_process(
        tail_cmd("ws://127.0.0.1:1/api/swim/v1/ws", "--bbox", "40,50,1,2"),
        env=env_with("k"), capture_stdout=True, capture_stderr=True, check=False, cwd=str(ROOT))
    assert result.returncode == 1 and b"north must be greater" in result.stderr
    assert len(result.stderr.decode().strip().splitlines()) == 1


# -- the live view in a real terminal -------------------------------------------------------


async def tmux(*args: str) -> str:
    result = await trio.run_process(["tmux", *args], capture_stdout=True, capture_stderr=True,
                                    check=False)
    return result.stdout.decode()


async def test_live_view_in_a_real_terminal(tmp_path: Path) -> None:
    if shutil.which("tmux") is None or shutil.which("bash") is None:
        if os.environ.get("CI"):
            pytest.fail("tmux and bash are required under CI")
        pytest.skip("tmux not installed")
    sock = f"swimtail-{uuid.uuid4().hex[:8]}"
    async with running_hub(tmp_path) as h:
        await h.hub.publish("tmi.issued", GS)
        # bash, not sh: dash dies with its child on Ctrl-C and the exit code would be lost.
        script = tmp_path / "run.sh"
        script.write_text(
            f"cd {ROOT}\n{sys.executable} -m swimctl tail --url {h.url}\n"
            "echo EXIT=$?\nsleep 60\n")
        try:
            await tmux("-L", sock, "new-session", "-d", "-x", "160", "-y", "40",
                       "-e", f"SWIM_API_KEY={h.key}", "-e", f"PYTHONPATH={ROOT}",
                       f"bash {script}")
            await wait_until(lambda: subscribed_clients(h.hub), timeout=15)
            await h.hub.publish("flight.departed", departure())
            screen = ""
            with trio.fail_after(10):
                while "JBU123" not in screen:
                    await trio.sleep(0.2)
                    screen = await tmux("-L", sock, "capture-pane", "-p")
            rows = [line for line in screen.splitlines() if "JBU123" in line]
            assert len(rows) == 1, screen
            assert "flight.departed" in rows[0] and "KJFK → KBOS" in rows[0], screen
            assert "ZNY" in rows[0] and "off 18:30Z" in rows[0], screen
            assert "CONNECTED" in screen and h.url in screen
            assert "active TMIs (1)" in screen and "GS-KJFK-1" in screen
            assert h.key not in screen
            await tmux("-L", sock, "send-keys", "C-c")
            with trio.move_on_after(10):
                while "EXIT=" not in screen:
                    await trio.sleep(0.2)
                    screen = await tmux("-L", sock, "capture-pane", "-p")
            assert "EXIT=0" in screen, screen
            assert "JBU123" not in screen  # the alternate screen was left: terminal restored
        finally:
            await tmux("-L", sock, "kill-server")
