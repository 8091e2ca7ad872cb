"""Subscription routing, inbound limits and the TMI book, without sockets."""

from __future__ import annotations

import datetime as dt

from swimctl.core.filters import compile_filter
from swimctl.core.limits import TokenBucket, ViolationWindow
from swimctl.core.routing import ALL, Subscriptions
from swimctl.core.tmi import TmiBook


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


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
