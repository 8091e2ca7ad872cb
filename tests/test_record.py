"""`swimctl record` as a subprocess against a real hub, then `replay --stdout`: the round
trip reproduces type, data and order exactly; the summary counts by type."""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from typing import Any

import orjson
import trio

from swimctl.cli.record import channels_for, parse_bbox
from swimctl.hub.config import HubConfig
from swimctl.hub.service import ServeOptions, run_service
from swimctl.keys.store import KeyStore
from swimctl.recordings import ReadReport, read_events

SWIM = [sys.executable, "-m", "swimctl"]


def test_option_helpers() -> None:
    assert parse_bbox("42,39,-72,-76") == {"north": 42.0, "south": 39.0, "east": -72.0,
                                           "west": -76.0}
    for bad in ("1,2,3", "39,42,0,0", "a,b,c,d", "95,0,0,0"):
        try:
            parse_bbox(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
    assert "flight.positions" in channels_for(None, True)
    assert channels_for("tmi.*", False) == ["tmi.*"]


async def _start(nursery: trio.Nursery, tmp_path: Any) -> tuple[Any, str]:
    db = f"sqlite:///{tmp_path}/keys.db"
    key, _ = KeyStore(db).create("developer", "recorder")
    handle = await nursery.start(run_service, ServeOptions(
        config=HubConfig(port=0, db_url=db), load_geography=False))
    return handle, key


async def _wait_subscribed(hub: Any) -> None:
    with trio.fail_after(15):
        while not any(c.subs.patterns for c in hub.clients.values()):
            await trio.sleep(0.05)


async def test_record_then_replay_roundtrip(nursery: trio.Nursery, tmp_path: Any) -> None:
    handle, key = await _start(nursery, tmp_path)
    out = tmp_path / "rec.jsonl.gz"
    env = {**os.environ, "SWIM_API_KEY": key, "SWIM_URL": handle.url}
    proc = await trio.lowlevel.open_process(
        [*SWIM, "record", str(out), "--positions", "--events", "flight.*,tmi.*,ctp.*",
         "--count", "500", "-q"], env=env, stderr=-1)
    await _wait_subscribed(handle.hub)
    sent = []
    for i in range(500):
        if i % 50 == 7:
            etype, data = "flight.positions", {"count": 1, "positions": [
                {"callsign": f"N{i}", "flight_uid": i, "latitude": 40.5, "longitude": -73.5,
                 "altitude_ft": 3000, "groundspeed_kts": 180, "heading_deg": 90,
                 "vertical_rate_fpm": 0, "current_artcc": "ZNY", "dep": "KJFK",
                 "arr": "KBOS"}]}
        elif i % 3 == 0:
            etype, data = "ctp.slot", {"slot": i, "nested": {"a": [1, 2.5, None, "x"]}}
        else:
            etype, data = "flight.departed", {"callsign": f"JBU{i}", "flight_uid": i,
                                              "dep": "KJFK", "arr": "KBOS", "off_utc": "x"}
        await handle.hub.publish(etype, data)
        sent.append((etype, data))
        if i % 100 == 0:
            await trio.sleep(0.01)
    with trio.fail_after(20):
        await proc.wait()
    assert proc.stderr is not None
    summary = (await proc.stderr.receive_some(65536)).decode()
    assert proc.returncode == 0, summary
    counts = Counter(etype for etype, _ in sent)
    assert "wrote 500 events" in summary
    for etype, number in counts.items():
        assert f"{etype}: {number}" in summary
    assert "gaps: none" in summary
    assert key not in summary

    report = ReadReport()
    assert len(list(read_events(out, report))) == 500 and report.bad == 0
    replayed = await trio.run_process([*SWIM, "replay", str(out), "--stdout", "--speed", "0"],
                                      capture_stdout=True, capture_stderr=True)
    lines = [orjson.loads(line) for line in replayed.stdout.splitlines()]
    assert [(m["type"], m["data"]) for m in lines] == sent
    assert [m["seq"] for m in lines] == list(range(1, 501))
    await handle.shutdown()


async def test_record_until_interrupted_and_duration(nursery: trio.Nursery,
                                                     tmp_path: Any) -> None:
    handle, key = await _start(nursery, tmp_path)
    out = tmp_path / "live.jsonl"
    env = {**os.environ, "SWIM_API_KEY": key}
    proc = await trio.lowlevel.open_process(
        [*SWIM, "record", str(out), "--url", handle.url, "--airport", "KJFK", "-q"],
        env=env, stderr=-1)
    await _wait_subscribed(handle.hub)
    await handle.hub.publish("flight.departed", {"callsign": "A1", "dep": "KJFK", "arr": "KBOS"})
    await handle.hub.publish("flight.departed", {"callsign": "A2", "dep": "KLAX", "arr": "KSFO"})
    with trio.fail_after(10):
        while not out.exists() or b"A1" not in out.read_bytes():
            await trio.sleep(0.05)  # flushed per line: visible while recording
    proc.send_signal(signal.SIGINT)
    with trio.fail_after(10):
        await proc.wait()
    assert proc.stderr is not None
    summary = (await proc.stderr.receive_some(65536)).decode()
    assert "wrote 1 events" in summary and "Traceback" not in summary
    timed = await trio.run_process(
        [*SWIM, "record", str(tmp_path / "t.jsonl"), "--url", handle.url, "--duration", "1s",
         "-q"], env=env, capture_stderr=True)
    assert b"wrote 0 events" in timed.stderr
    # A bare number is seconds, as the help says (`sleep 1`, `timeout 1`).
    bare = await trio.run_process(
        [*SWIM, "record", str(tmp_path / "t.jsonl"), "--url", handle.url, "--duration", "1",
         "-q"], env=env, capture_stderr=True, check=False)
    assert bare.returncode == 0 and b"wrote 0 events" in bare.stderr, bare.stderr
    help_text = (await trio.run_process([*SWIM, "record", "--help"], capture_stdout=True,
                                        env={**env, "COLUMNS": "300"})).stdout.decode()
    assert "seconds (90), or 30s, 10m, 2h" in help_text
    wrong = await trio.run_process([*SWIM, "record", str(tmp_path / "t.jsonl"), "--url",
                                    handle.url, "--duration", "soon"], env=env,
                                   capture_stderr=True, check=False)
    assert wrong.returncode == 1
    assert b"use seconds (90) or a number and a unit: 30s, 10m, 2h" in wrong.stderr
    bad = await trio.run_process([*SWIM, "record", str(tmp_path / "x.jsonl"), "--url",
                                  handle.url, "--key", "swim_bogus_key_0000000000000000"],
                                 capture_stderr=True, check=False)
    assert bad.returncode == 1 and b"AUTH_FAILED" in bad.stderr
    assert b"Traceback" not in bad.stderr
    await handle.shutdown()
