"""Per-connection state without I/O: subscriptions, routing cache, inbound limits.

The hub asks a session one question per event: which of your filters apply to this type?
The answer is cached per event type until the subscriptions change, so fan-out costs a dict
lookup for most clients.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs

from swimctl.filters import Filter
from swimctl.protocol import pattern_matches

ALL: tuple[Filter, ...] = ()  # a route that accepts every event of the type


@attrs.define
class TokenBucket:
    """Inbound rate limit: `rate` messages per second, bursts up to `burst`."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    tokens: float = attrs.field(default=-1.0)
    stamp: float = 0.0

    def __attrs_post_init__(self) -> None:
        self.tokens = self.burst
        self.stamp = self.clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@attrs.define
class ViolationWindow:
    """Counts protocol violations; too many within the window closes the connection (4003)."""

    limit: int
    window: float
    clock: Callable[[], float] = time.monotonic
    _times: deque[float] = attrs.field(factory=deque)

    def record(self) -> bool:
        """Record one violation; True when the limit is reached."""
        now = self.clock()
        self._times.append(now)
        while self._times and self._times[0] < now - self.window:
            self._times.popleft()
        return len(self._times) >= self.limit


@attrs.define(eq=False)
class Subscriptions:
    """A client's map of channel pattern → filter, with a per-type routing cache."""

    patterns: dict[str, Filter] = attrs.field(factory=dict)
    _routes: dict[str, tuple[Filter, ...] | None] = attrs.field(factory=dict)
    positions_key: str | None = None

    def set(self, channels: tuple[str, ...], flt: Filter) -> None:
        for channel in channels:
            self.patterns[channel] = flt
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
        route = self.route("flight.positions")
        self.positions_key = None if route is None else "|".join(f.key for f in route)

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

    def accepts(self, event_type: str, data: dict[str, Any]) -> bool:
        route = self.route(event_type)
        if route is None:
            return False
        if route is ALL:
            return True
        return any(f.accepts(event_type, data) for f in route)

    def echo(self) -> dict[str, Any]:
        return {pattern: flt.echo for pattern, flt in self.patterns.items()}


def slice_records(route: tuple[Filter, ...], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records (positions, programs) any filter of the route accepts, in batch order."""
    if route is ALL:
        return records
    if len(route) == 1:
        return route[0].slice_positions(records)
    return [r for r in records if any(f.accepts_position(r) for f in route)]
