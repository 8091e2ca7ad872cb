"""The event log's contract (stream/base.py), one suite run against every backend.

Each backend is built by a factory taking the same bounds; a test sees only the EventLog
interface: append, the delivery callback, since, head, epoch.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio

from swimctl.stream.base import Draft, EventLog, LogEvent
from swimctl.stream.durable import DurableLog
from swimctl.stream.memory import MemoryLog
from swimctl.stream.redis import RedisLog
from tests.redis_server import RedisServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


MakeLog = Callable[..., Awaitable[EventLog]]


@pytest.fixture(scope="session")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = RedisServer(Path(tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "durable", "redis"])
def make_log(request: pytest.FixtureRequest, nursery: trio.Nursery,
             tmp_path_factory: pytest.TempPathFactory) -> MakeLog:
    """A started log of each backend: the durable one in a state directory of its own, a
    Redis one under a key prefix of its own."""

    async def make(**bounds: Any) -> EventLog:
        if request.param == "memory":
            return MemoryLog(**bounds)
        if request.param == "durable":
            return DurableLog(tmp_path_factory.mktemp("state"), **bounds)
        server = request.getfixturevalue("redis")
        log = RedisLog(server.url, prefix=uuid.uuid4().hex, **bounds)

        async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            async with log.connections():
                await log.run(task_status=task_status)

        await nursery.start(run)
        return log

    return make


def collecting(log: EventLog) -> list[LogEvent]:
    delivered: list[LogEvent] = []
    log.set_delivery(delivered.extend)
    return delivered


async def delivered_up_to(log: EventLog, seq: int) -> None:
    """A shared log delivers from its reader, after `append` returns: wait for it."""
    with trio.fail_after(5):
        while log.head < seq:
            await trio.sleep(0.005)


async def test_seq_is_dense_and_each_event_is_delivered_once_in_order(make_log: MakeLog) -> None:
    log = await make_log()
    delivered = collecting(log)
    seqs = [(await log.append(Draft("ctp.n", {"i": i}))).seq for i in range(20)]
    assert seqs == list(range(1, 21))
    await delivered_up_to(log, 20)
    assert [e.seq for e in delivered] == seqs and log.head == 20
    assert [e.data["i"] for e in delivered] == list(range(20))


async def test_an_event_carries_its_payload_and_frames(make_log: MakeLog) -> None:
    log = await make_log()
    delivered = collecting(log)
    await log.append(Draft("flight.arrived", {"callsign": "B"}, event_id="x"))
    await delivered_up_to(log, 1)
    [event] = delivered
    assert orjson.loads(event.payload) == {"type": "flight.arrived", "timestamp": event.timestamp,
                                           "seq": 1, "event_id": "x",
                                           "data": {"callsign": "B"}}
    frame = event.frame()
    assert frame.endswith(event.payload) and frame[0] == 0x81
    assert event.frame() is frame  # built once, then shared


async def test_a_duplicate_event_id_is_stored_once(make_log: MakeLog) -> None:
    log = await make_log()
    delivered = collecting(log)
    first = await log.append(Draft("ctp.slot", {}, event_id="a"))
    again = await log.append(Draft("ctp.slot", {"other": 1}, event_id="a"))
    assert (first.seq, first.duplicate) == (1, False)
    assert (again.seq, again.duplicate) == (1, True)
    await delivered_up_to(log, 1)
    await trio.sleep(0.05)
    assert len(delivered) == 1 and log.head == 1


async def test_since_is_gap_free_within_history_and_none_outside(make_log: MakeLog) -> None:
    clock = Clock()
    log = await make_log(history_size=5, history_age=60, clock=clock)
    collecting(log)
    for i in range(8):
        await log.append(Draft("flight.created", {"i": i}))
    await delivered_up_to(log, 8)
    assert [e.seq for e in log.since(log.epoch, 5) or []] == [6, 7, 8]
    assert log.since(log.epoch, 8) == []
    assert log.since(log.epoch, 2) is None  # seq 3 was evicted by count
    assert log.since(log.epoch, 3) is not None
    assert log.since("other", 5) is None
    assert log.since(log.epoch, 99) is None
    clock.now += 61
    assert log.since(log.epoch, 7) is None  # evicted by age


async def test_since_then_live_delivery_misses_nothing(make_log: MakeLog) -> None:
    """A subscriber reading `since` and then taking deliveries sees every event once."""
    log = await make_log()
    collecting(log)
    for i in range(5):
        await log.append(Draft("ctp.n", {"i": i}))
    await delivered_up_to(log, 5)
    seen = [e.seq for e in log.since(log.epoch, 2) or []]
    live: list[LogEvent] = []
    log.set_delivery(live.extend)
    for i in range(5, 8):
        await log.append(Draft("ctp.n", {"i": i}))
    await delivered_up_to(log, 8)
    assert seen + [e.seq for e in live] == [3, 4, 5, 6, 7, 8]


async def test_each_log_has_its_own_epoch(make_log: MakeLog) -> None:
    first, second = await make_log(), await make_log()
    assert first.epoch != second.epoch and len(first.epoch) >= 6
