"""The event stream, subscriptions routing and TMI book, without sockets."""

from __future__ import annotations

import datetime as dt

import orjson

from swimctl.core.filters import compile_filter
from swimctl.core.limits import TokenBucket, ViolationWindow
from swimctl.core.routing import ALL, Subscriptions
from swimctl.core.tmi import TmiBook
from swimctl.stream.memory import EventStream


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_seq_grows_by_one_and_frames_hold_the_envelope() -> None:
    stream = EventStream()
    first, s1 = stream.append("flight.departed", {"callsign": "A"})
    second, s2 = stream.append("flight.arrived", {"callsign": "B"}, event_id="x")
    assert (s1, s2) == (1, 2)
    assert first is not None and second is not None
    env = orjson.loads(second.payload)
    assert env == {"type": "flight.arrived", "timestamp": second.timestamp, "seq": 2,
                   "event_id": "x", "data": {"callsign": "B"}}
    assert second.frame.endswith(second.payload) and second.frame[0] == 0x81


def test_duplicates_by_event_id_return_the_original_seq() -> None:
    stream = EventStream()
    stream.append("ctp.slot", {}, event_id="a")
    event, seq = stream.append("ctp.slot", {}, event_id="a")
    assert event is None and seq == 1 and stream.last_seq == 1


def test_resume_within_history_and_outside() -> None:
    clock = Clock()
    stream = EventStream(history_size=5, history_age=60, clock=clock)
    for i in range(8):
        stream.append("flight.created", {"i": i})
    assert [e.seq for e in stream.since(stream.epoch, 5) or []] == [6, 7, 8]
    assert stream.since(stream.epoch, 8) == []
    assert stream.since(stream.epoch, 2) is None  # seq 3 was evicted by count
    assert stream.since(stream.epoch, 3) is not None
    assert stream.since("other", 5) is None
    assert stream.since(stream.epoch, 99) is None
    clock.now += 61
    assert stream.since(stream.epoch, 7) is None  # evicted by age


def test_routes_cache_and_multi_pattern() -> None:
    subs = Subscriptions()
    subs.set(("flight.positions",), compile_filter(None))
    subs.set(("flight.departed",), compile_filter({"airports": ["KJFK"]}))
    assert subs.route("flight.positions") is ALL
    assert subs.route("tmi.issued") is None
    assert subs.accepts("flight.departed", {"dep": "KJFK", "arr": "X"})
    assert not subs.accepts("flight.departed", {"dep": "KBOS", "arr": "X"})
    subs.set(("*",), compile_filter(None))
    assert subs.route("tmi.issued") is ALL
    assert subs.remove(None) == ["all"] and subs.route("flight.positions") is None


def test_token_bucket_and_violations() -> None:
    clock = Clock()
    bucket = TokenBucket(10, 20, clock=clock)
    assert sum(bucket.take() for _ in range(30)) == 20
    clock.now += 0.5
    assert sum(bucket.take() for _ in range(30)) == 5
    window = ViolationWindow(3, 10, clock=clock)
    assert not window.record() and not window.record()
    clock.now += 11
    assert not window.record() and not window.record() and window.record()


def test_tmi_book_expiry_and_ids() -> None:
    book = TmiBook()
    program = {"program_id": "GS-KJFK-20261126-1", "program_type": "GS", "airport": "KJFK",
               "start_time": "2026-11-26T18:00:00Z", "end_time": "2026-11-26T19:00:00Z",
               "reason": "WX", "status": "ACTIVE"}
    book.apply("tmi.issued", program)
    assert book.next_id("GS", "kjfk", dt.date(2026, 11, 26)) == "GS-KJFK-20261126-2"
    assert book.due(dt.datetime(2026, 11, 26, 18, 30, tzinfo=dt.UTC)) == []
    assert book.due(dt.datetime(2026, 11, 26, 19, 0, tzinfo=dt.UTC)) == [program]
    book.apply("tmi.released", {"program_id": program["program_id"]})
    assert book.active() == []
    assert book.next_id("GS", "KJFK", dt.date(2026, 11, 26)) == "GS-KJFK-20261126-2"
