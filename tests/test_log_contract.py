"""The event log's contract (stream/base.py), one suite run against every backend.

Each backend is built by a factory taking the same bounds; a test sees only the EventLog
interface: append, the delivery callback, since, head, epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from swimctl.stream.base import Draft, EventLog, LogEvent
from swimctl.stream.durable import DurableLog
from swimctl.stream.memory import MemoryLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


MakeLog = Callable[..., EventLog]


def memory_log(**bounds: Any) -> EventLog:
    return MemoryLog(**bounds)


@pytest.fixture(params=["memory", "durable"])
def make_log(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> MakeLog:
    def durable_log(**bounds: Any) -> EventLog:
        """The memory log with its journal, in a state directory of its own per log."""
        return DurableLog(tmp_path_factory.mktemp("state"), **bounds)

    factories = {"memory": memory_log, "durable": durable_log}
    return factories[request.param]


def collecting(log: EventLog) -> list[LogEvent]:
    delivered: list[LogEvent] = []
    log.set_delivery(delivered.extend)
    return delivered


async def test_seq_is_dense_and_each_event_is_delivered_once_in_order(make_log: MakeLog) -> None:
    log = make_log()
    delivered = collecting(log)
    seqs = [(await log.append(Draft("ctp.n", {"i": i}))).seq for i in range(20)]
    assert seqs == list(range(1, 21))
    assert [e.seq for e in delivered] == seqs and log.head == 20
    assert [e.data["i"] for e in delivered] == list(range(20))


async def test_an_event_carries_its_payload_and_frames(make_log: MakeLog) -> None:
    log = make_log()
    delivered = collecting(log)
    await log.append(Draft("flight.arrived", {"callsign": "B"}, event_id="x"))
    [event] = delivered
    assert orjson.loads(event.payload) == {"type": "flight.arrived", "timestamp": event.timestamp,
                                           "seq": 1, "event_id": "x",
                                           "data": {"callsign": "B"}}
    frame = event.frame()
    assert frame.endswith(event.payload) and frame[0] == 0x81
    assert event.frame() is frame  # built once, then shared


async def test_a_duplicate_event_id_is_stored_once(make_log: MakeLog) -> None:
    log = make_log()
    delivered = collecting(log)
    first = await log.append(Draft("ctp.slot", {}, event_id="a"))
    again = await log.append(Draft("ctp.slot", {"other": 1}, event_id="a"))
    assert (first.seq, first.duplicate) == (1, False)
    assert (again.seq, again.duplicate) == (1, True)
    assert len(delivered) == 1 and log.head == 1


async def test_since_is_gap_free_within_history_and_none_outside(make_log: MakeLog) -> None:
    clock = Clock()
    log = make_log(history_size=5, history_age=60, clock=clock)
    collecting(log)
    for i in range(8):
        await log.append(Draft("flight.created", {"i": i}))
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
    log = make_log()
    collecting(log)
    for i in range(5):
        await log.append(Draft("ctp.n", {"i": i}))
    seen = [e.seq for e in log.since(log.epoch, 2) or []]
    live: list[LogEvent] = []
    log.set_delivery(live.extend)
    for i in range(5, 8):
        await log.append(Draft("ctp.n", {"i": i}))
    assert seen + [e.seq for e in live] == [3, 4, 5, 6, 7, 8]


async def test_each_log_has_its_own_epoch(make_log: MakeLog) -> None:
    first, second = make_log(), make_log()
    assert first.epoch != second.epoch and len(first.epoch) >= 6
