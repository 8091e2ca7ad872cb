"""`serve --events-file`: follow a file other processes append to, losing and repeating nothing."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx
import orjson
import pytest
import trio

from swimctl.hub.engine import Hub
from swimctl.hub.sources.events_file import EventsFileFollower, LineSplitter, offset_path
from tests.conftest import StartHub, recv, request


def line(i: int, etype: str = "ctp.slot") -> bytes:
    return orjson.dumps({"type": etype, "timestamp": "2026-11-26T18:30:00.000Z",
                         "data": {"i": i}}) + b"\n"


def published(hub: Hub) -> list[int]:
    return [e.data["i"] for e in hub.log.since(hub.log.epoch, 0) or []]


async def http_text(url: str) -> tuple[int, str]:
    def get() -> httpx.Response:
        return httpx.get(url, timeout=5)

    response = await trio.to_thread.run_sync(get)
    return response.status_code, response.text


async def wait_for(pred, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(timeout):
        while not pred():
            await trio.sleep(0.02)


def test_line_splitter_keeps_partial_tail() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b'{"a":1}\n{"b"') == [(b'{"a":1}', 8)]
    assert splitter.feed(b':2}\n') == [(b'{"b":2}', 8)]
    assert splitter.buffer == b""


async def test_follows_appends_partial_lines_bad_lines(tmp_path: Path,
                                                       nursery: trio.Nursery) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(0) + line(1))
    hub = Hub()
    follower = EventsFileFollower(hub, path, poll_interval=0.02)
    await nursery.start(follower.run)
    await wait_for(lambda: published(hub) == [0, 1])
    with path.open("ab") as fh:
        half = line(2)
        fh.write(half[:10])
        fh.flush()
        await trio.sleep(0.15)
        assert published(hub) == [0, 1]  # a partial line waits for its newline
        fh.write(half[10:] + b"not json\n" + b'{"type":"nope"}\n' + line(3))
    await wait_for(lambda: published(hub) == [0, 1, 2, 3])
    assert follower.stats.bad_lines == 2


async def test_restart_resumes_exactly_from_the_persisted_offset(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(line(i) for i in range(5)))
    first = Hub()
    async with trio.open_nursery() as nursery:
        follower = EventsFileFollower(first, path, poll_interval=0.02)
        await nursery.start(follower.run)
        await wait_for(lambda: len(published(first)) == 5)
        nursery.cancel_scope.cancel()
    assert offset_path(path).exists()
    with path.open("ab") as fh:  # written while the hub is down
        fh.write(b"".join(line(i) for i in range(5, 8)))
    second = Hub()
    async with trio.open_nursery() as nursery:
        await nursery.start(EventsFileFollower(second, path, poll_interval=0.02).run)
        await wait_for(lambda: len(published(second)) >= 3)
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    assert published(second) == [5, 6, 7]


async def test_truncation_and_rotation_start_over(tmp_path: Path, nursery: trio.Nursery) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(0) + line(1) + line(2))
    hub = Hub()
    follower = EventsFileFollower(hub, path, poll_interval=0.02)
    await nursery.start(follower.run)
    await wait_for(lambda: published(hub) == [0, 1, 2])
    path.write_bytes(line(10))  # truncated in place and rewritten shorter
    await wait_for(lambda: published(hub) == [0, 1, 2, 10])
    rotated = tmp_path / "events.jsonl.1"
    os.rename(path, rotated)
    path.write_bytes(line(20) + line(21))  # a new file at the path
    await wait_for(lambda: published(hub) == [0, 1, 2, 10, 20, 21])
    assert follower.stats.restarts == 2


async def test_events_file_reaches_subscribers_through_serve(start_hub: StartHub,
                                                             tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    path.write_bytes(b"")
    hub = await start_hub(options={"events_file": str(path)})
    async with hub.connect() as ws:
        await request(ws, {"action": "subscribe", "channels": ["flight.departed"],
                           "filters": {"airports": ["KJFK"]}})
        with path.open("ab") as fh:
            for dep in ("KBOS", "KJFK"):
                fh.write(orjson.dumps({"type": "flight.departed", "timestamp":
                                       "2026-11-26T18:30:02.512Z", "event_id": f"f-{dep}",
                                       "data": {"callsign": "X", "dep": dep, "arr": "KLAX"}})
                         + b"\n")
        event = await recv(ws)
        assert event["data"]["dep"] == "KJFK" and event["event_id"] == "f-KJFK"
        assert event["timestamp"] == "2026-11-26T18:30:02.512Z"


async def test_an_unwritable_offset_is_reported_and_the_hub_keeps_serving(
    start_hub: StartHub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 19, item 3: `PATH.offset` is a directory (or on a read-only disk). Before the fix
    the hub died with "Is a directory"; now it keeps publishing, says so once in the log and
    in /healthz and /metrics, and saves the position as soon as it can."""
    caplog.set_level(logging.INFO, logger="swimctl")
    path = tmp_path / "feed.jsonl"
    path.write_bytes(b"")
    offset_path(path).mkdir()
    h = await start_hub(options={"events_file": str(path), "metrics_port": 0})
    base = h.handle.extras["metrics_url"]
    follower = h.handle.extras["events_file"]
    async with h.connect() as ws:
        await request(ws, {"action": "subscribe", "channels": ["ctp.*"]})
        for i in range(3):
            with path.open("ab") as fh:
                fh.write(line(i))
            assert (await recv(ws))["data"] == {"i": i}
            await trio.sleep(follower.poll_interval * 2)  # a few polls, each retrying the save
        status, body = await http_text(f"{base}/healthz")
        assert status == 200 and body.startswith("degraded\n")
        assert "events file offset: cannot save" in body and "Is a directory" in body
        metrics = (await http_text(f"{base}/metrics"))[1]
        assert 'swim_component_up{component="events file offset"} 0.0' in metrics
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        async with h.connect("public") as other:
            await request(other, {"action": "ping"})
        # The operator fixes it: the next poll saves the position of the last published line.
        offset_path(path).rmdir()
        with trio.fail_after(5):
            while not follower.condition.ok:
                await trio.sleep(0.05)
        saved = orjson.loads(offset_path(path).read_bytes())
        assert saved["offset"] == path.stat().st_size
        assert (await http_text(f"{base}/healthz")) == (200, "ok\n")


async def test_an_unreadable_offset_starts_over_rather_than_skipping(tmp_path: Path,
                                                                    nursery: trio.Nursery
                                                                    ) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(0) + line(1))
    offset_path(path).mkdir()  # exists, cannot be read
    hub = Hub()
    follower = EventsFileFollower(hub, path, poll_interval=0.02)
    await nursery.start(follower.run)
    await wait_for(lambda: published(hub) == [0, 1])
