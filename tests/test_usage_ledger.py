"""Usage arithmetic without sockets or databases (swimctl/core/usage.py): days, deltas, carries."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swimctl.core.usage import (
    UsageLedger,
    UsageRow,
    merge_rows,
    next_midnight,
    split_by_day,
    utc_day,
)

MIDNIGHT = dt.datetime(2030, 6, 2, tzinfo=dt.UTC).timestamp()  # 2030-06-02T00:00:00Z
JUNE1, JUNE2, JUNE3 = dt.date(2030, 6, 1), dt.date(2030, 6, 2), dt.date(2030, 6, 3)


def test_days_and_midnights() -> None:
    assert utc_day(MIDNIGHT - 0.001) == JUNE1 and utc_day(MIDNIGHT) == JUNE2
    assert next_midnight(MIDNIGHT - 5) == MIDNIGHT
    assert next_midnight(MIDNIGHT) == MIDNIGHT + 86400
    assert split_by_day(MIDNIGHT - 90, MIDNIGHT + 30) == [(JUNE1, 90.0), (JUNE2, 30.0)]
    assert split_by_day(MIDNIGHT - 10, MIDNIGHT + 86400 + 5) == [
        (JUNE1, 10.0), (JUNE2, 86400.0), (JUNE3, 5.0)]
    assert split_by_day(MIDNIGHT, MIDNIGHT - 3) == []  # a clock stepped back: no time


def test_a_session_across_midnight_with_known_counts() -> None:
    ledger = UsageLedger()
    ledger.opened("c1", 7, "partner", MIDNIGHT - 100.25)
    ledger.progress("c1", events=40, sent=4000, rate=1, now=MIDNIGHT + 0.001)  # midnight read
    ledger.refused(7, "partner", "cap", MIDNIGHT + 10)
    ledger.closed("c1", events=50, sent=5000, rate=3, now=MIDNIGHT + 59.75)
    ledger.refused(9, "public", "auth", MIDNIGHT + 61)
    assert ledger.live() == {}
    rows = ledger.take()
    assert rows == [
        UsageRow(JUNE1, 7, connections=1, connection_seconds=100, events_delivered=40,
                 bytes_sent=4000, refusals_rate=1),
        UsageRow(JUNE2, 7, connection_seconds=59, events_delivered=10, bytes_sent=1000,
                 refusals_cap=1, refusals_rate=2),
        UsageRow(JUNE2, 9, refusals_auth=1),
    ]
    # The fractions (0.25 s and 0.751 s) wait for the next write; a final one rounds them.
    assert ledger.pending_rows == 2
    assert ledger.take(final=True) == [UsageRow(JUNE2, 7, connection_seconds=1)]
    assert ledger.take() == [] and ledger.pending_rows == 0
    assert ledger.totals(ledger.by_key[7]) == {
        "connections": 1, "connection_seconds": 160, "events_delivered": 50,
        "bytes_sent": 5000, "refusals_auth": 0, "refusals_cap": 1, "refusals_rate": 3}
    assert ledger.totals(ledger.by_tier["public"])["refusals_auth"] == 1


def test_a_failed_write_is_restored_and_nothing_is_counted_twice() -> None:
    ledger = UsageLedger()
    ledger.opened("c", 1, "developer", MIDNIGHT)
    ledger.progress("c", 10, 100, 0, MIDNIGHT + 30)
    first = ledger.take()
    ledger.restore(first)  # the database said no
    ledger.progress("c", 15, 150, 0, MIDNIGHT + 60)
    assert merge_rows(ledger.take()) == [UsageRow(JUNE2, 1, connections=1,
                                                  connection_seconds=60, events_delivered=15,
                                                  bytes_sent=150)]
    assert ledger.live() == {1: 1}


def test_unknown_sessions_and_refusal_kinds() -> None:
    ledger = UsageLedger()
    ledger.progress("nobody", 5, 5, 5, MIDNIGHT)
    ledger.closed("nobody", 5, 5, 5, MIDNIGHT)
    assert ledger.take() == []
    with pytest.raises(ValueError, match="unknown refusal kind"):
        ledger.refused(1, "public", "teapot", MIDNIGHT)


@given(st.lists(st.tuples(st.floats(0, 200_000), st.integers(0, 1000)), min_size=1,
                max_size=30))
def test_any_readings_add_up_to_the_last_one(readings: list[tuple[float, int]]) -> None:
    """However often a connection is read and written, the rows add up to its counts and its
    whole lifetime (to within the final rounding)."""
    ledger = UsageLedger()
    start = MIDNIGHT - 50_000
    ledger.opened("c", 3, "public", start)
    rows: list[UsageRow] = []
    moment, events = start, 0
    for step, more in readings:
        moment += step
        events += more
        ledger.progress("c", events, events * 10, 0, moment)
        rows += ledger.take()
    ledger.closed("c", events, events * 10, 0, moment)
    rows += ledger.take(final=True)
    assert sum(r.events_delivered for r in rows) == events
    assert sum(r.bytes_sent for r in rows) == events * 10
    assert sum(r.connections for r in rows) == 1
    assert abs(sum(r.connection_seconds for r in rows) - (moment - start)) <= 1
    for row in rows:
        assert utc_day(start) <= row.day <= utc_day(moment)
