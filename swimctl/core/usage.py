"""Per-key usage, added up per UTC day without any I/O: what `swim_api_usage` holds.

The hub feeds plain numbers in (a connection opened or closed, a connection's running counts
at some moment, a refusal) and takes rows out to write; everything in between is arithmetic
here, so it is exact and tested without a socket or a database:

- a connection's seconds are split at each UTC midnight it spans;
- its events and bytes count from one reading of its counters to the next, and a stretch
  between two readings belongs to the day it began in (the hub takes a reading at every UTC
  midnight, so a day is off by at most the moment it takes to do so);
- rows are *additions*: a hub writes what it counted since its last write, and the database
  adds them up (several hubs may write the same key and day);
- whole seconds are written and the fraction is carried to the next write, so many short
  writes never lose the fractions; a final write rounds what is left.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from typing import Any

import attrs

COUNTS: tuple[str, ...] = (
    "connections",
    "connection_seconds",
    "events_delivered",
    "bytes_sent",
    "refusals_auth",
    "refusals_cap",
    "refusals_rate",
)
REFUSALS: tuple[str, ...] = ("auth", "cap", "rate")  # refusals_<kind>
_INDEX = {name: i for i, name in enumerate(COUNTS)}
_SECONDS = _INDEX["connection_seconds"]
DAY = 86400.0


@attrs.frozen
class UsageRow:
    """One key's usage on one UTC day (a stored row, or an addition to one)."""

    day: dt.date
    key_id: int
    connections: int = 0
    connection_seconds: int = 0
    events_delivered: int = 0
    bytes_sent: int = 0
    refusals_auth: int = 0
    refusals_cap: int = 0
    refusals_rate: int = 0

    def counts(self) -> tuple[int, ...]:
        return tuple(int(getattr(self, name)) for name in COUNTS)

    def is_empty(self) -> bool:
        return not any(self.counts())

    def plus(self, other: UsageRow) -> UsageRow:
        """This row with another's counts added (same day and key)."""
        summed = {n: a + b for n, a, b in zip(COUNTS, self.counts(), other.counts(),
                                                strict=True)}
        return UsageRow(self.day, self.key_id, **summed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the day as `YYYY-MM-DD`."""
        return {"day": self.day.isoformat(), "key_id": self.key_id,
                **dict(zip(COUNTS, self.counts(), strict=True))}


def utc_day(moment: float) -> dt.date:
    """The UTC day of a Unix time."""
    return dt.datetime.fromtimestamp(moment, dt.UTC).date()


def next_midnight(moment: float) -> float:
    """The Unix time of the first UTC midnight after `moment`."""
    return (math.floor(moment / DAY) + 1) * DAY


def split_by_day(start: float, end: float) -> list[tuple[dt.date, float]]:
    """Seconds from `start` to `end` (Unix times) per UTC day, in order; nothing when
    `end <= start` (a clock stepped back counts as no time, never as negative time)."""
    parts: list[tuple[dt.date, float]] = []
    while end > start:
        cut = min(end, next_midnight(start))
        parts.append((utc_day(start), cut - start))
        start = cut
    return parts


@attrs.define
class Session:
    """One open connection as the ledger last read it."""

    key_id: int
    tier: str
    since: float  # Unix time of the last reading (or the opening)
    events: int = 0
    sent: int = 0
    rate: int = 0


def _blank() -> list[float]:
    return [0.0] * len(COUNTS)


@attrs.define
class UsageLedger:
    """Usage not yet written (per day and key), and totals since the hub started (per key and
    per tier, for `/metrics` and `swimctl top`).

    Counts are kept as numbers; connection seconds are the only fractional ones."""

    _pending: dict[tuple[dt.date, int], list[float]] = attrs.field(factory=dict)
    _sessions: dict[object, Session] = attrs.field(factory=dict)
    by_key: dict[int, list[float]] = attrs.field(factory=dict)
    by_tier: dict[str, list[float]] = attrs.field(factory=dict)
    tier_of: dict[int, str] = attrs.field(factory=dict)

    # -- what happens ------------------------------------------------------------------------

    def _add(self, day: dt.date, key_id: int, tier: str, name: str, amount: float) -> None:
        if not amount:
            return
        index = _INDEX[name]
        self._pending.setdefault((day, key_id), _blank())[index] += amount
        self.by_key.setdefault(key_id, _blank())[index] += amount
        self.by_tier.setdefault(tier, _blank())[index] += amount
        self.tier_of[key_id] = tier

    def opened(self, session: object, key_id: int, tier: str, now: float) -> None:
        """A connection of `key_id` was admitted at `now`."""
        self._sessions[session] = Session(key_id, tier, now)
        self._add(utc_day(now), key_id, tier, "connections", 1)

    def refused(self, key_id: int, tier: str, kind: str, now: float, count: int = 1) -> None:
        """A refusal of `kind` (auth, cap or rate) for a key."""
        if kind not in REFUSALS:
            raise ValueError(f"unknown refusal kind {kind!r}")
        self._add(utc_day(now), key_id, tier, f"refusals_{kind}", count)

    def progress(self, session: object, events: int, sent: int, rate: int,
                 now: float) -> None:
        """A reading of an open connection's running counts (stream events handed to it, bytes
        written to it, messages refused as over its rate) at `now`."""
        state = self._sessions.get(session)
        if state is None:
            return
        day = utc_day(state.since)
        key, tier = state.key_id, state.tier
        for begun, seconds in split_by_day(state.since, now):
            self._add(begun, key, tier, "connection_seconds", seconds)
        self._add(day, key, tier, "events_delivered", max(0, events - state.events))
        self._add(day, key, tier, "bytes_sent", max(0, sent - state.sent))
        self._add(day, key, tier, "refusals_rate", max(0, rate - state.rate))
        state.events, state.sent, state.rate = events, sent, rate
        state.since = max(state.since, now)

    def closed(self, session: object, events: int, sent: int, rate: int, now: float) -> None:
        """The last reading of a connection that has gone."""
        self.progress(session, events, sent, rate, now)
        self._sessions.pop(session, None)

    # -- reading -----------------------------------------------------------------------------

    def live(self) -> dict[int, int]:
        """Open connections per key."""
        found: dict[int, int] = {}
        for state in self._sessions.values():
            found[state.key_id] = found.get(state.key_id, 0) + 1
        return found

    def sessions(self) -> list[object]:
        return list(self._sessions)

    @property
    def pending_rows(self) -> int:
        """Day-and-key rows waiting to be written."""
        return len(self._pending)

    @staticmethod
    def totals(counts: list[float] | None) -> dict[str, int]:
        """A since-start total as whole numbers, by count name."""
        values = counts or _blank()
        return {name: int(values[i]) for i, name in enumerate(COUNTS)}

    # -- writing -----------------------------------------------------------------------------

    def take(self, *, final: bool = False) -> list[UsageRow]:
        """The rows to add to the table, oldest day first; what they hold is no longer
        pending. Connection seconds go as whole seconds, the fraction staying pending (`final`:
        rounded instead, as nothing will follow)."""
        rows: list[UsageRow] = []
        keep: dict[tuple[dt.date, int], list[float]] = {}
        for (day, key_id), values in sorted(self._pending.items()):
            seconds = values[_SECONDS]
            whole = round(seconds) if final else math.floor(seconds)
            counts = [int(v) for v in values]
            counts[_SECONDS] = whole
            rest = seconds - whole
            if rest > 0 and not final:
                keep[(day, key_id)] = [rest if i == _SECONDS else 0.0
                                       for i in range(len(COUNTS))]
            row = UsageRow(day, key_id, **dict(zip(COUNTS, counts, strict=True)))
            if not row.is_empty():
                rows.append(row)
        self._pending = keep
        return rows

    def restore(self, rows: Iterable[UsageRow]) -> None:
        """Rows that could not be written: pending again, to go with the next write."""
        for row in rows:
            values = self._pending.setdefault((row.day, row.key_id), _blank())
            for i, count in enumerate(row.counts()):
                values[i] += count


def merge_rows(rows: Iterable[UsageRow]) -> list[UsageRow]:
    """Rows of the same day and key added together (what several writes came to)."""
    merged: dict[tuple[dt.date, int], UsageRow] = {}
    for row in rows:
        key = (row.day, row.key_id)
        merged[key] = merged[key].plus(row) if key in merged else row
    return [merged[key] for key in sorted(merged)]
