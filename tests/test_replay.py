"""`swimctl replay` as a subprocess: timing against the scaled original, bad input survived,
and a whole recorded hour published into a real hub arriving exactly once."""

from __future__ import annotations

import datetime as dt
import os
import socket
import sys
from pathlib import Path
from typing import Any

import orjson
import trio
from trio_websocket import open_websocket_url

from swimctl.cli.replay import Clock, derived_event_id
from swimctl.core.model import Envelope, format_ts
from swimctl.hub.config import HubConfig
from swimctl.hub.service import ServeOptions, run_service
from swimctl.keys.store import KeyStore
from swimctl.recordings import EventWriter, read_events

BASE = dt.datetime(2026, 11, 26, 18, 0, tzinfo=dt.UTC)
CMD = [sys.executable, "-m", "swimctl", "replay"]


def make_file(path: Path, count: int, span: float) -> list[Envelope]:
    """`count` events evenly over `span` seconds of event time, ids e-1..."""
    out = []
    with EventWriter(path) as writer:
        for i in range(count):
            moment = BASE + dt.timedelta(seconds=span * i / max(count - 1, 1))
            etype = ("flight.departed", "flight.arrived", "ctp.slot")[i % 3]
            env = Envelope(etype, format_ts(moment), {"callsign": f"UAL{i}", "i": i},
                           seq=i + 1, event_id=f"e-{i + 1}")
            writer.write(env)
            out.append(env)
    return out


def test_clock_and_ids() -> None:
    clock = Clock(speed=10)
    assert clock.target(BASE, 100.0) == 100.0
    assert clock.target(BASE + dt.timedelta(seconds=30), 999.0) == 103.0
    assert Clock(speed=0).target(BASE, 5.0) == 5.0
    env = Envelope("flight.departed", format_ts(BASE), {})
    assert derived_event_id(env, "abc", 7, 0) == "r-abc-7"
    assert derived_event_id(env, "abc", 7, 2) == "r-abc-7~2"


async def test_timing_at_speed_10_within_5_percent(tmp_path: Path) -> None:
    path = tmp_path / "minute.jsonl.gz"
    events = make_file(path, 121, 60.0)  # one every 0.5 s for a minute
    stamps: list[float] = []
    lines: list[bytes] = []
    proc = await trio.lowlevel.open_process(
        [*CMD, str(path), "--stdout", "--speed", "10"], stdout=-1, stderr=-1)
    buf = b""
    assert proc.stdout is not None
    with trio.fail_after(30):
        async for chunk in proc.stdout:
            now = trio.current_time()
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                lines.append(line)
                stamps.append(now)
        await proc.wait()
    assert proc.returncode == 0
    assert len(lines) == len(events)
    elapsed = stamps[-1] - stamps[0]
    expected = 60.0 / 10
    error = abs(elapsed - expected) / expected
    print(f"replay --speed 10: {elapsed:.3f} s for {expected:.1f} s expected "
          f"({error * 100:.2f}% off)")
    assert error < 0.05, elapsed
    # Spacing, not just the total: the midpoint event lands near 3 s.
    mid = stamps[60] - stamps[0]
    assert abs(mid - 3.0) < 0.3, mid


async def test_corrupted_and_truncated_input(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl.gz"
    events = make_file(good, 400, 100.0)
    plain = tmp_path / "mixed.jsonl"
    raw = [e.encode() for e in events[:10]]
    raw.insert(3, b'{"type":"flight.departed","timestamp":"garbage","data":{}}')
    raw.insert(6, b"\x00\xff binary junk")
    plain.write_bytes(b"\n".join(raw) + b"\n" + events[10].encode()[:25])
    data = good.read_bytes()
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(data[: len(data) - len(data) // 5])
    result = await trio.run_process([*CMD, str(plain), str(cut), "--stdout", "--speed", "0"],
                                    capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr
    out = [orjson.loads(line) for line in result.stdout.splitlines()]
    first = [e.to_dict() for e in events[:10]]
    assert out[:10] == first
    rest = out[10:]
    assert rest == [e.to_dict() for e in events[: len(rest)]]
    assert len(rest) > 250
    err = result.stderr.decode()
    assert "3 bad line(s)" in err and "line 4" in err and "line 7" in err
    assert "line 13" in err  # the cut-off last line
    assert "trailer" in err  # the truncated gzip tail was reported


async def test_window_and_loop(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    make_file(path, 11, 10.0)  # one per second
    result = await trio.run_process(
        [*CMD, str(path), "--stdout", "--speed", "0", "--from", "2026-11-26T18:00:03Z",
         "--until", "2026-11-26T18:00:05Z"], capture_stdout=True, capture_stderr=True)
    assert [orjson.loads(x)["data"]["i"] for x in result.stdout.splitlines()] == [3, 4, 5]
    with trio.move_on_after(3):
        looped = await trio.run_process([*CMD, str(path), "--stdout", "--speed", "0", "--loop"],
                                        capture_stdout=True, capture_stderr=True, check=False)
        raise AssertionError(f"--loop ended: {looped}")
    # Standard output is the default target; --stdout says so explicitly; not with --to.
    default = await trio.run_process([*CMD, str(path), "--speed", "0"], capture_stdout=True,
                                     capture_stderr=True)
    assert default.stdout == result_all(path)
    bad = await trio.run_process([*CMD, str(path), "--stdout", "--to", "ws://127.0.0.1:1/"],
                                 capture_stderr=True, check=False)
    assert bad.returncode == 1 and b"--stdout or --to URL, not both" in bad.stderr


def result_all(path: Path) -> bytes:
    """The JSON Lines `replay --stdout --speed 0` writes for a file: its envelopes, in order."""
    return b"".join(env.encode() + b"\n" for _, env in read_events(path))


async def test_replay_into_a_hub_with_the_wrong_key_or_no_hub_says_why(
        nursery: trio.Nursery, tmp_path: Any) -> None:
    """A developer key, or a hub that is not there: one line with the reason, before a single
    event is read, and never a count that suggests the file held one event."""
    path = tmp_path / "some.jsonl"
    make_file(path, 50, 10.0)
    db = f"sqlite:///{tmp_path}/keys.db"
    developer, _ = KeyStore(db).create("developer", "reader")
    handle = await nursery.start(run_service, ServeOptions(
        config=HubConfig(port=0, db_url=db), load_geography=False))
    env = {**os.environ, "SWIM_API_KEY": developer}
    wrong = await trio.run_process([*CMD, str(path), "--to", handle.url, "--speed", "0"],
                                   env=env, capture_stdout=True, capture_stderr=True,
                                   check=False)
    err = wrong.stderr.decode()
    assert wrong.returncode == 1
    assert err.strip().splitlines() == [
        "swimctl: error: publishing needs a system-tier key (FORBIDDEN): this key is "
        "developer-tier; `swimctl keys create --tier system` makes a system key"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"ws://127.0.0.1:{port}/api/swim/v1/ws"
    absent = await trio.run_process([*CMD, str(path), "--to", url, "--speed", "0"], env=env,
                                    capture_stdout=True, capture_stderr=True, check=False)
    assert absent.returncode == 1
    assert absent.stderr.decode().strip().splitlines() == [
        f"swimctl: error: cannot connect to {url}: Connection refused (is the hub running?)"]
    assert "1 events" not in err + absent.stderr.decode()
    await handle.shutdown()


async def test_replay_an_hour_into_a_hub_once(nursery: trio.Nursery, tmp_path: Any) -> None:
    path = tmp_path / "hour.jsonl.gz"
    events = make_file(path, 3000, 3600.0)
    db = f"sqlite:///{tmp_path}/keys.db"
    store = KeyStore(db)
    system, _ = store.create("system", "replayer")
    reader, _ = store.create("developer", "reader")
    handle = await nursery.start(run_service, ServeOptions(
        config=HubConfig(port=0, db_url=db),  # the default limits: system tier 2,000/s
        load_geography=False))
    got: list[dict[str, Any]] = []
    async with open_websocket_url(handle.url, extra_headers=[(b"X-SWIM-API-Key",
                                                              reader.encode())]) as ws:
        assert orjson.loads(await ws.get_message())["type"] == "connected"
        await ws.send_message(orjson.dumps({"action": "subscribe",
                                            "channels": ["flight.*", "ctp.*"]}).decode())
        assert orjson.loads(await ws.get_message())["type"] == "subscribed"
        env = {**os.environ, "SWIM_API_KEY": system}
        cmd = [*CMD, str(path), "--to", handle.url, "--speed", "0"]

        async def collect() -> None:
            while len(got) < len(events):
                msg = orjson.loads(await ws.get_message())
                if msg["type"] != "system.heartbeat":
                    got.append(msg)

        with trio.fail_after(120):
            async with trio.open_nursery() as inner:
                inner.start_soon(collect)
                done = await trio.run_process(cmd, env=env, capture_stdout=True,
                                              capture_stderr=True, check=False)
                assert done.returncode == 0, done.stderr
                assert b"3000 accepted, 0 duplicate(s), 0 rejected" in done.stderr
                assert system.encode() not in done.stderr + done.stdout
        # Again: every publish is a duplicate now (same event ids), nothing re-delivered.
        again = await trio.run_process(cmd, env=env, capture_stdout=True, capture_stderr=True)
        assert b"0 accepted, 3000 duplicate(s)" in again.stderr
        with trio.move_on_after(0.5):
            msg = orjson.loads(await ws.get_message())
            assert msg["type"] == "system.heartbeat", msg
    assert [m["event_id"] for m in got] == [e.event_id for e in events]
    assert [(m["type"], m["data"], m["timestamp"]) for m in got] == \
        [(e.type, e.data, e.timestamp) for e in events]
    await handle.shutdown()


async def test_a_file_with_no_events_at_all_is_an_error(tmp_path: Path) -> None:
    """Replaying a file that is not an event file is a mistake, not a run of 0 events."""
    notes = tmp_path / "notes.jsonl"
    notes.write_text("hello\nthis is not JSON\n")
    result = await trio.run_process([*CMD, str(notes), "--speed", "0"], capture_stdout=True,
                                    capture_stderr=True, check=False)
    assert result.returncode == 1 and result.stdout == b""
    assert result.stderr.decode().splitlines()[-1] == (
        f"swimctl: error: no events in {notes}: not JSON Lines event files?")
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    nothing = await trio.run_process([*CMD, str(empty), "--speed", "0"], capture_stderr=True)
    assert b"played 0 events" in nothing.stderr  # an empty file is just empty
