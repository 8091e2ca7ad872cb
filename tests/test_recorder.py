"""`serve --record DIR`: every streamed event lands, in order, in the hour's gzip file; the
hook never blocks and counts what it had to drop."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import trio

from swimctl.hub.config import HubConfig
from swimctl.hub.recorder import Recorder, hour_file_name
from swimctl.hub.service import ServeOptions, run_service
from swimctl.keys.store import KeyStore
from swimctl.recordings import ReadReport, read_events


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
