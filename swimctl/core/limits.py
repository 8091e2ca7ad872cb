"""Inbound limits of one connection, without I/O: a token bucket and a violation window."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import attrs


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
    _times: deque[float] | None = None  # made on the first violation: most clients have none

    def record(self) -> bool:
        """Record one violation; True when the limit is reached."""
        now = self.clock()
        if self._times is None:
            self._times = deque()
        self._times.append(now)
        while self._times and self._times[0] < now - self.window:
            self._times.popleft()
        return len(self._times) >= self.limit
