"""Who wants what, without I/O: a client's subscriptions with a per-type routing cache, and
slicing of record batches (positions, programs) by filter.

The hub asks a session one question per event: which of your filters apply to this type?
The answer is cached per event type until the subscriptions change, so fan-out costs a dict
lookup for most clients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from swimctl.core.channels import POSITIONS, pattern_matches
from swimctl.core.filters import Filter, carries_filter_fields

ALL: tuple[Filter, ...] = ()  # a route that accepts every event of the type

# Per connection, across all its subscribes (a request is bounded on its own in
# core/protocol.py and core/filters.py): what one connection may make the hub hold and echo.
MAX_PATTERNS = 128
MAX_FILTER_VALUES = 4000  # the values of the connection's distinct filters, added up
# What a `status` reply echoes of the filters (their canonical JSON, added up); past it the
# remaining patterns are left out of `filters` and `filters_truncated` says so.
STATUS_FILTER_BYTES = 32 * 1024


class SubscriptionLimit(ValueError):
    """A subscribe that would take a connection past MAX_PATTERNS or MAX_FILTER_VALUES;
    nothing of it is applied. `what` is "patterns" or "filters"."""

    def __init__(self, what: str, message: str) -> None:
        super().__init__(message)
        self.what = what


def filter_values(flt: Filter) -> int:
    """How many values a filter holds (a box counts as one)."""
    return (len(flt.airports or ()) + len(flt.artccs or ())
            + len(flt.callsign_prefixes or ()) + (flt.bbox is not None))


@attrs.define(eq=False)
class Subscriptions:
    """A client's map of channel pattern → filter, with a per-type routing cache."""

    patterns: dict[str, Filter] = attrs.field(factory=dict)
    # Called after every change: the hub's fan-out plans, built from everyone's routes,
    # are dropped then (hub/plans.py).
    on_change: Callable[[], None] | None = attrs.field(default=None, repr=False)
    _routes: dict[str, tuple[Filter, ...] | None] = attrs.field(factory=dict)
    _fast: dict[str, Any] = attrs.field(factory=dict)
    positions_key: str | None = None

    def set(self, channels: tuple[str, ...], flt: Filter) -> None:
        """Apply a subscribe, or raise SubscriptionLimit and change nothing."""
        after = {**self.patterns, **dict.fromkeys(channels, flt)}
        if len(after) > MAX_PATTERNS:
            raise SubscriptionLimit(
                "patterns", f"at most {MAX_PATTERNS} channel patterns per connection (this "
                f"would make {len(after)}); unsubscribe some first")
        distinct = {f.key: f for f in after.values()}
        values = sum(filter_values(f) for f in distinct.values())
        if values > MAX_FILTER_VALUES:
            raise SubscriptionLimit(
                "filters", f"at most {MAX_FILTER_VALUES} filter values per connection, across "
                f"its distinct filters (this would make {values}); unsubscribe some first")
        self.patterns.update(after)
        self._changed()

    def remove(self, channels: tuple[str, ...] | None) -> list[str]:
        if channels is None:
            self.patterns.clear()
            self._changed()
            return ["all"]
        for channel in channels:
            self.patterns.pop(channel, None)
        self._changed()
        return list(channels)

    def _changed(self) -> None:
        self._routes.clear()
        self._fast.clear()
        route = self.route(POSITIONS)
        self.positions_key = None if route is None else "|".join(f.key for f in route)
        if self.on_change is not None:
            self.on_change()

    def route(self, event_type: str) -> tuple[Filter, ...] | None:
        """None: not subscribed. ALL: unfiltered. Otherwise the filters, any of which suffices."""
        try:
            return self._routes[event_type]
        except KeyError:
            pass
        filters: list[Filter] = []
        matched = False
        result: tuple[Filter, ...] | None = None
        for pattern, flt in self.patterns.items():
            if pattern_matches(pattern, event_type):
                matched = True
                if flt.empty:
                    result = ALL
                    break
                if flt not in filters:
                    filters.append(flt)
        if matched and result is None:
            result = tuple(sorted(filters, key=lambda f: f.key))
        self._routes[event_type] = result
        return result

    def fast_route(self, event_type: str) -> Any:
        """`route`, except that a route of airport-only filters is the union of their airports
        (a frozenset): fan-out then tests a whole route with one `isdisjoint`."""
        try:
            return self._fast[event_type]
        except KeyError:
            pass
        route = self.route(event_type)
        fast: Any = route
        if route and all(_airport_only(f) for f in route):
            fast = frozenset().union(*(f.airports or () for f in route))
        self._fast[event_type] = fast
        return fast

    def accepts(self, event_type: str, data: dict[str, Any]) -> bool:
        route = self.route(event_type)
        if route is None:
            return False
        if route is ALL:
            return True
        return any(f.accepts(event_type, data) for f in route)

    def echo(self) -> dict[str, Any]:
        return {pattern: flt.echo for pattern, flt in self.patterns.items()}

    def echo_bounded(self, limit: int = STATUS_FILTER_BYTES) -> tuple[dict[str, Any], bool]:
        """`echo`, cut once the echoed filters pass `limit` bytes of JSON; True when whole.
        Each pattern echoes its filter in full, so 128 patterns sharing one filter of 3,000
        values would otherwise make a status reply of megabytes."""
        out: dict[str, Any] = {}
        size = 0
        for pattern, flt in self.patterns.items():
            size += len(flt.key) + len(pattern) + 6
            if size > limit:
                return out, False
            out[pattern] = flt.echo
        return out, True


def slice_records(route: tuple[Filter, ...], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records (positions, programs) any filter of the route accepts, in batch order."""
    if route is ALL:
        return records
    if len(route) == 1:
        return route[0].slice_positions(records)
    return [r for r in records if any(f.accepts_position(r) for f in route)]


def _airport_only(flt: Filter) -> bool:
    return (flt.airports is not None and flt.artccs is None and flt.callsign_prefixes is None
            and flt.bbox is None)


def airport_keys(data: dict[str, Any]) -> frozenset[str] | None:
    """The airports an event is tested on by an `airports` filter (Filter._accepts_record):
    dep/arr when either key is present, else `airport`; None when it carries neither (the key
    does not test it, so every airport filter passes it)."""
    if "dep" in data or "arr" in data:
        dep, arr = data.get("dep"), data.get("arr")
        return frozenset(c.upper() for c in (dep, arr) if isinstance(c, str))
    if "airport" in data:
        airport = data.get("airport")
        return frozenset((airport.upper(),)) if isinstance(airport, str) else frozenset()
    return None


class PositionIndex:
    """One positions batch indexed by airport, built once per batch, so an airport filter's
    slice costs its own matches instead of a pass over every position (1,000 distinct airport
    filters on a 2,000-flight batch: ~2 M record tests without it)."""

    def __init__(self, records: list[Any]) -> None:
        self.records = records
        self.usable = True
        by_airport: dict[str, list[int]] = {}
        loose: list[int] = []  # no dep/arr/airport: an airport filter does not test them
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                self.usable = False  # malformed batch: the plain scan decides, as before
                return
            # airport_keys(rec), inline: this loop runs over every position of every batch.
            if "dep" in rec or "arr" in rec:
                dep, arr = rec.get("dep"), rec.get("arr")
                if isinstance(dep, str):
                    dep = dep.upper()
                    by_airport.setdefault(dep, []).append(i)
                if isinstance(arr, str):
                    arr = arr.upper()
                    if arr != dep:
                        by_airport.setdefault(arr, []).append(i)
            elif "airport" in rec:
                airport = rec.get("airport")
                if isinstance(airport, str):
                    by_airport.setdefault(airport.upper(), []).append(i)
            elif carries_filter_fields(rec):  # nothing at all to test: no filter takes it
                loose.append(i)
        self.by_airport = by_airport
        self.loose = loose

    def slice(self, route: tuple[Filter, ...]) -> list[dict[str, Any]]:
        """Same result, same order as `slice_records(route, records)`."""
        if not self.usable or route is ALL or any(f.airports is None for f in route):
            return slice_records(route, self.records)
        found: set[int] = set(self.loose)
        get = self.by_airport.get
        for flt in route:
            assert flt.airports is not None
            for code in flt.airports:
                hits = get(code)
                if hits:
                    found.update(hits)
        records = self.records
        if all(_airport_only(f) for f in route):
            return [records[i] for i in sorted(found)]
        return [records[i] for i in sorted(found)
                if any(f.accepts_position(records[i]) for f in route)]
