"""`swimctl tmi` against a real hub over real sockets, as a subprocess: issue reaches the
right subscribers, a late snapshot sees it, it expires on time, errors are one line."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from contextlib import AsyncExitStack
from typing import Any

import orjson
import pytest
import trio
from trio_websocket import open_websocket_url

from swimctl.cli.tmi import next_program_id, parse_scope, parse_time
from swimctl.core.model import parse_ts
from swimctl.hub.config import HubConfig
from swimctl.hub.service import ServeOptions, run_service
from swimctl.keys.store import KeyStore


async def start(nursery: trio.Nursery, tmp_path: Any, **config: Any) -> tuple[Any, dict]:
    db = f"sqlite:///{tmp_path}/keys.db"
    store = KeyStore(db)
    keys = {tier: store.create(tier, f"test {tier}")[0] for tier in ("system", "public")}
    handle = await nursery.start(run_service, ServeOptions(
        config=HubConfig(port=0, db_url=db, **config), load_geography=False))
    return handle, keys


async def cli(*args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SWIM_API_KEY", "SWIM_URL")}
    if key:
        env["SWIM_API_KEY"] = key
    done = await trio.run_process([sys.executable, "-m", "swimctl", *args], capture_stdout=True,
                                  capture_stderr=True, check=False, env=env)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(),
                                       done.stderr.decode())


async def subscriber(stack: AsyncExitStack, url: str, key: str, body: dict[str, Any]) -> Any:
    ws = await stack.enter_async_context(
        open_websocket_url(url, extra_headers=[(b"X-SWIM-API-Key", key.encode())]))
    hello = orjson.loads(await ws.get_message())
    assert hello["type"] == "connected"
    await ws.send_message(orjson.dumps({"action": "subscribe", **body}).decode())
    return ws


async def next_msg(ws: Any, timeout: float = 5.0) -> dict[str, Any]:
    with trio.fail_after(timeout):
        while True:
            msg = orjson.loads(await ws.get_message())
            if msg["type"] != "system.heartbeat":
                return msg


def test_parse_helpers() -> None:
    now = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
    assert parse_time("+30m", "--until", now) == now + dt.timedelta(minutes=30)
    assert parse_time("+1h30m", "--until", now) == now + dt.timedelta(minutes=90)
    assert parse_time("2026-11-26T20:00Z", "--until", now).hour == 20
    with pytest.raises(ValueError):
        parse_time("soon", "--until", now)
    assert parse_scope("zny, ZDC") == ["ZNY", "ZDC"]
    with pytest.raises(ValueError):
        parse_scope("ZNY;;bad stuff")
    day = now.date()
    seen = [("tmi.issued", {"program_id": "GS-KJFK-20261126-1"}),
            ("tmi.released", {"program_id": "GS-KJFK-20261126-1"}),
            ("tmi.issued", {"program_id": "GS-KJFK-20261126-2"})]
    assert next_program_id("GS", "KJFK", day, seen) == "GS-KJFK-20261126-3"
    assert next_program_id("GDP", "KJFK", day, seen) == "GDP-KJFK-20261126-1"


async def test_ground_stop_filters_snapshot_and_expiry(nursery: trio.Nursery,
                                                       tmp_path: Any) -> None:
    handle, keys = await start(nursery, tmp_path)
    url, system = handle.url, keys["system"]
    async with AsyncExitStack() as stack:
        await _ground_stop(stack, url, system, keys)
    await handle.shutdown()


async def _ground_stop(stack: AsyncExitStack, url: str, system: str, keys: dict) -> None:
    jfk = await subscriber(stack, url, keys["public"],
                                   {"channels": ["tmi.*"], "filters": {"airports": ["KJFK"]}})
    lax = await subscriber(stack, url, keys["public"],
                                   {"channels": ["tmi.*"], "filters": {"airports": ["KLAX"]}})
    assert (await next_msg(jfk))["type"] == "subscribed"
    assert (await next_msg(lax))["type"] == "subscribed"

    result = await cli("tmi", "issue", "--type", "GS", "--airport", "kjfk", "--until", "+4s",
                       "--reason", "thunderstorms", "--scope", "ZNY,ZDC", "--url", url, key=system)
    assert result.returncode == 0, result.stderr
    program_id = result.stdout.strip()
    today = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
    assert program_id == f"GS-KJFK-{today}-1"
    assert system not in result.stdout + result.stderr

    event = await next_msg(jfk)
    assert event["type"] == "tmi.issued"
    assert event["data"]["program_id"] == program_id
    assert event["data"]["status"] == "ACTIVE"
    assert event["data"]["scope"] == ["ZNY", "ZDC"]
    assert event["data"]["reason"] == "thunderstorms"
    ends = parse_ts(event["data"]["end_time"])
    assert (ends - dt.datetime.now(dt.UTC)).total_seconds() <= 4.0  # `+4s`, from the command

    # A late subscriber sees it in the snapshot; `tmi list` too.
    late = await subscriber(stack, url, keys["public"],
                                     {"channels": ["tmi.*"], "snapshot": True})
    assert (await next_msg(late))["type"] == "subscribed"
    active = await next_msg(late)
    assert active["type"] == "tmi.active"
    assert [p["program_id"] for p in active["data"]["programs"]] == [program_id]
    listed = await cli("tmi", "list", "--json", "--url", url, key=keys["public"])
    assert listed.returncode == 0, listed.stderr
    assert orjson.loads(listed.stdout.splitlines()[0])["program_id"] == program_id

    # A second GS at KJFK the same day gets the next number.
    second = await cli("tmi", "issue", "--type", "GS", "--airport", "KJFK", "--until", "+1h",
                       "--url", url, key=system)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == f"GS-KJFK-{today}-2"
    released = await cli("tmi", "release", f"GS-KJFK-{today}-2", "--url", url, key=system)
    assert released.returncode == 0, released.stderr

    # The second is issued and released by hand; the first expires on its own at its end
    # time. On a busy machine the commands above can outlast the first's four seconds, so the
    # expiry may come before the others.
    seen: dict[tuple[str, str], tuple[str, dt.datetime]] = {}
    while len(seen) < 3:
        msg = await next_msg(jfk, timeout=10)
        seen[msg["type"], msg["data"]["program_id"]] = (msg["data"]["status"],
                                                        dt.datetime.now(dt.UTC))
    second_id = f"GS-KJFK-{today}-2"
    assert seen["tmi.issued", second_id][0] == "ACTIVE"
    assert seen["tmi.released", second_id][0] == "RELEASED"
    status, heard = seen["tmi.released", program_id]
    assert status == "EXPIRED"
    # Not before its end time; after it, within the hub's 1 s expiry tick and slack for a
    # busy machine (four test workers on two cores: 3.9 s once), timed from the end time,
    # not the test's start, since the command's own start-up varies.
    late = (heard - ends).total_seconds()
    assert 0.0 <= late <= 6.0, late

    # KLAX heard nothing of any of it.
    with trio.move_on_after(0.3):
        msg = await next_msg(lax)
        raise AssertionError(f"KLAX subscriber got {msg}")


async def test_gdp_modify_and_errors(nursery: trio.Nursery, tmp_path: Any) -> None:
    handle, keys = await start(nursery, tmp_path)
    url, system = handle.url, keys["system"]
    gdp = await cli("tmi", "issue", "--type", "GDP", "--airport", "KEWR", "--until", "+2h",
                    "--rate", "30", "--url", url, key=system)
    assert gdp.returncode == 0, gdp.stderr
    pid = gdp.stdout.strip()
    mod = await cli("tmi", "modify", pid, "--rate", "24", "--until", "+3h", "--json",
                    "--url", url, key=system)
    assert mod.returncode == 0, mod.stderr
    assert orjson.loads(mod.stdout)["program_rate"] == 24
    program = handle.hub.tmi.get(pid)
    assert program is not None and program["program_rate"] == 24

    async def one_line_error(*args: str, key: str | None = system) -> str:
        result = await cli(*args, key=key)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        return lines[0]

    assert "FORBIDDEN" in await one_line_error(
        "tmi", "issue", "--type", "GS", "--airport", "KJFK", "--until", "+1h", "--url", url,
        key=keys["public"])
    assert "AUTH_FAILED" in await one_line_error(
        "tmi", "release", pid, "--url", url, key="swim_not_a_real_key_000000000000")
    assert "--type" in await one_line_error(
        "tmi", "issue", "--type", "XX", "--airport", "KJFK", "--until", "+1h", "--url", url)
    assert "--until" in await one_line_error(
        "tmi", "issue", "--type", "GS", "--airport", "KJFK", "--until", "tomorrowish",
        "--url", url)
    assert "--rate" in await one_line_error(
        "tmi", "issue", "--type", "GDP", "--airport", "KJFK", "--until", "+1h", "--url", url)
    assert "no active program" in await one_line_error(
        "tmi", "modify", "GS-KXYZ-20260101-9", "--until", "+1h", "--url", url)
    assert "cannot connect" in await one_line_error(
        "tmi", "list", "--url", "ws://127.0.0.1:1/api/swim/v1/ws")
    await handle.shutdown()
