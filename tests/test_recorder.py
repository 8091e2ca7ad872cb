"""`serve --record DIR`: every streamed event lands, in order, in the hour's gzip file; the
hook never blocks and counts what it had to drop."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trio

from swimctl.hub.config import HubConfig
from swimctl.hub.recorder import Recorder, hour_file_name
from swimctl.hub.service import ServeOptions, run_service
from swimctl.keys.store import KeyStore
from swimctl.recordings import MemberWriter, ReadReport, read_events, repair_gzip_tail
from tests.conftest import StartHub, recv, recv_until, request


def test_hour_file_name() -> None:
    moment = dt.datetime(2026, 11, 26, 18, 59, 59, tzinfo=dt.UTC)
    assert hour_file_name(moment) == "20261126T18.jsonl.gz"


class FakeEvent:
    def __init__(self, payload: bytes) -> None:
        self.payload = payload


async def test_overflow_is_counted_not_blocking(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path, limit=10)
    for _ in range(25):
        recorder.hook(FakeEvent(b"{}"))  # type: ignore[arg-type]
    assert len(recorder.buffer) == 10 and recorder.dropped == 15


async def test_serve_record_writes_every_event(nursery: trio.Nursery, tmp_path: Any) -> None:
    db = f"sqlite:///{tmp_path}/keys.db"
    KeyStore(db).create("system", "test")
    record_dir = tmp_path / "rec"
    hours: list[dt.datetime] = [dt.datetime(2026, 11, 26, 9, 59, tzinfo=dt.UTC)]
    handle = await nursery.start(run_service, ServeOptions(
        config=HubConfig(port=0, db_url=db), load_geography=False, record_dir=str(record_dir)))
    hub = handle.hub
    # Swap in a clock we control to see the hourly rotation.
    recorder = hub.on_event[-1].__self__
    recorder.files.clock = lambda: hours[0]
    sent = []
    for i in range(3000):
        data = {"callsign": f"DAL{i}", "n": i}
        await hub.publish("flight.departed" if i % 2 else "tmi.issued" if i == 0 else "ctp.slot",
                          data)
        sent.append(data)
        if i == 1500:
            await trio.sleep(0.5)  # let a batch go to the 09 file
            hours[0] = dt.datetime(2026, 11, 26, 10, 0, 1, tzinfo=dt.UTC)
        if i % 500 == 0:
            await trio.lowlevel.checkpoint()
    await trio.sleep(0.4)
    # The current file is readable while the hub still runs (sync-flushed).
    live = [e for _, e in read_events(record_dir / "20261126T10.jsonl.gz")]
    assert live
    await handle.shutdown()
    await trio.sleep(0.2)
    files = sorted(p.name for p in record_dir.iterdir())
    assert files == ["20261126T09.jsonl.gz", "20261126T10.jsonl.gz"]
    events = []
    for name in files:
        report = ReadReport()
        events += [e for _, e in read_events(record_dir / name, report)]
        assert report.bad == 0 and report.tail_error is None  # closed cleanly on shutdown
    assert [e.seq for e in events] == list(range(1, 3001))
    assert [e.data for e in events] == sent
    assert recorder.dropped == 0


# -- a full disk (issue 19, item 2) and crashes (item 6) -------------------------------------



@contextmanager
def small_tmpfs(where: Path, size: str = "512k") -> Iterator[Path]:
    """A real filesystem that fills up: a tmpfs of `size`, mounted for the test."""
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def gzip_ok(path: Path) -> bool:
    return subprocess.run(["gzip", "-t", str(path)], capture_output=True).returncode == 0


def zcat_lines(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(["zcat", str(path)], capture_output=True, check=True).stdout
    return [orjson.loads(line) for line in out.splitlines()]


async def http_text(url: str) -> tuple[int, str]:
    def get() -> httpx.Response:
        return httpx.get(url, timeout=5)

    response = await trio.to_thread.run_sync(get)
    return response.status_code, response.text


async def test_a_full_disk_is_reported_once_and_retried_and_the_hub_keeps_serving(
    start_hub: StartHub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="swimctl")
    with small_tmpfs(tmp_path / "disk") as disk:
        rec = disk / "rec"
        h = await start_hub(options={"record_dir": str(rec), "metrics_port": 0})
        recorder = h.handle.extras["recorder"]
        recorder.retry_interval = 0.2
        base = h.handle.extras["metrics_url"]
        filler = disk / "filler"
        filler.write_bytes(os.urandom(400 * 1024))  # leaves ~100 KiB for the recording
        async with h.connect() as ws:
            await request(ws, {"action": "subscribe", "channels": ["ctp.*"]})
            for i in range(60):  # ~360 KiB of payload: more than the disk has left
                blob = base64.b64encode(os.urandom(6000)).decode()  # barely compressible
                await h.hub.publish("ctp.load", {"i": i, "blob": blob})
                assert (await recv(ws))["data"]["i"] == i  # clients keep getting everything
                await trio.sleep(0.01)
            with trio.fail_after(5):
                while recorder.condition.ok:
                    await trio.sleep(0.05)
            status, body = await http_text(f"{base}/healthz")
            assert status == 200 and body.startswith("degraded\n")
            assert "recorder: cannot write" in body and "No space left on device" in body
            metrics = (await http_text(f"{base}/metrics"))[1]
            assert 'swim_component_up{component="recorder"} 0.0' in metrics
            await trio.sleep(0.6)  # a few failed retries: still one error line
            errors = [r for r in caplog.records
                      if r.name == "swimctl.recorder" and r.levelno >= logging.ERROR]
            assert len(errors) == 1, [r.getMessage() for r in errors]
            async with h.connect("public") as other:  # new clients are served meanwhile
                await request(other, {"action": "ping"})
            # Space comes back: the retry writes what was held, the hub says ok again.
            filler.unlink()
            with trio.fail_after(5):
                while not recorder.condition.ok:
                    await trio.sleep(0.05)
            assert (await http_text(f"{base}/healthz")) == (200, "ok\n")
            await h.hub.publish("ctp.load", {"i": 60})
            await recv_until(ws, lambda m: m.get("data", {}).get("i") == 60)
        with trio.fail_after(5):
            while recorder.written + recorder.dropped < 61:
                await trio.sleep(0.05)
        files = sorted(rec.iterdir())
        assert files and all(gzip_ok(f) for f in files)
        written = [e["data"]["i"] for f in files for e in zcat_lines(f)]
        # Nothing written twice, in order; what the buffer held through the outage is there.
        assert written == sorted(set(written)) and written[-1] == 60
        assert len(written) + recorder.dropped == 61


def test_a_torn_last_member_is_repaired_keeping_every_whole_line(tmp_path: Path) -> None:
    path = tmp_path / "20261126T18.jsonl.gz"
    first = gzip.compress(b'{"n":1}\n{"n":2}\n')
    pad = os.urandom(3000).hex().encode()  # incompressible: the cut lands inside line 5
    torn = gzip.compress(b'{"n":3}\n{"n":4}\n' + b'{"n":5,"pad":"' + pad + b'"}\n')
    path.write_bytes(first + torn[: len(torn) - 30])  # a write cut off by a crash
    assert not gzip_ok(path)
    writer = MemberWriter(path)
    writer.write_payloads([b'{"n":6}'])
    writer.close()
    assert writer.repair is not None and writer.repair.changed
    assert gzip_ok(path)
    assert [e["n"] for e in zcat_lines(path)] == [1, 2, 3, 4, 6]  # 5 was cut mid-line


def test_an_unterminated_member_from_an_older_writer_is_repaired(tmp_path: Path) -> None:
    """What versions before the fix left behind: a sync-flushed member without its trailer,
    then a new member appended after a restart. zcat fails on it; after the repair it reads
    every line, the old ones included."""
    path = tmp_path / "old.jsonl.gz"
    with path.open("wb") as raw:
        gz = gzip.GzipFile(fileobj=raw, mode="wb")
        gz.write(b"".join(b'{"n":%d}\n' % i for i in range(100)))
        gz.flush(zlib.Z_SYNC_FLUSH)
        raw.flush()
        raw.write(gzip.compress(b'{"n":100}\n'))  # the restarted writer's member
    assert not gzip_ok(path)
    report = repair_gzip_tail(path)
    assert report.changed and gzip_ok(path)
    assert [e["n"] for e in zcat_lines(path)] == list(range(101))
    assert not repair_gzip_tail(path).changed  # a clean file is left alone


def event_line(i: int) -> bytes:
    return orjson.dumps({"type": "ctp.load", "timestamp": "2026-11-26T18:30:00.000Z",
                         "event_id": f"e{i}", "data": {"i": i}}) + b"\n"


def test_recordings_survive_kill_9_readable_by_gzip(tmp_path: Path) -> None:
    """kill -9 while events stream in, restart into the same hour, kill -9 again: every file
    passes `gzip -t` and zcat reads it to the end (before the fix: "unexpected end of file",
    then "invalid compressed data" after the restart appended to the unterminated member)."""
    db = f"sqlite:///{tmp_path}/keys.db"
    rec, feed = tmp_path / "rec", tmp_path / "events.jsonl"
    feed.write_bytes(b"")
    env = {**os.environ, "SWIM_DB": db}
    written = 0
    for _round in range(2):
        proc = subprocess.Popen(
            [sys.executable, "-m", "swimctl", "serve", "--port", "0", "--record", str(rec),
             "--events-file", str(feed)], env=env, stderr=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            with feed.open("ab") as out:
                # Keep appending until the recording has grown, then a little more, then kill.
                while time.monotonic() < deadline:
                    out.write(b"".join(event_line(written + k) for k in range(50)))
                    out.flush()
                    written += 50
                    time.sleep(0.02)
                    files = list(rec.glob("*.jsonl.gz")) if rec.exists() else []
                    if files and sum(f.stat().st_size for f in files) > 4000 * (_round + 1):
                        break
                for _ in range(5):
                    out.write(b"".join(event_line(written + k) for k in range(50)))
                    out.flush()
                    written += 50
                    time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(10)
        files = sorted(rec.glob("*.jsonl.gz"))
        assert files
        for f in files:
            assert gzip_ok(f), f"{f.name} is not a valid gzip file after kill -9"
    seen = [e["data"]["i"] for f in sorted(rec.glob("*.jsonl.gz")) for e in zcat_lines(f)]
    assert seen and max(seen) < written
