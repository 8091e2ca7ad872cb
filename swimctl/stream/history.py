"""The events a log holds for resume: bounded by count, age and payload bytes.

Every log keeps one (the in-process log, the durable one, and each hub's copy of a shared
log), so `since`, the invariant resume depends on, is written once. The newest events keep
their decoded data and frames (the coalescer holds at most 128 events or 64 KiB; a positions
batch fans out at once); older ones are compacted to their payload.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from swimctl.stream.base import LogEvent

DEFAULT_HISTORY_BYTES = 64 * 1024 * 1024
FRESH_EVENTS = 256
FRESH_BYTES = 4 * 1024 * 1024


class History:
    """Held events in seq order; a bound of 0 means no bound of that kind."""

    def __init__(self, *, size: int = 100_000, age: float = 3600.0,
                 max_bytes: int = DEFAULT_HISTORY_BYTES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.age = age
        self.max_bytes = max_bytes
        self.clock = clock
        self.events: deque[LogEvent] = deque()
        self.bytes = 0  # payload bytes held
        self._fresh: deque[LogEvent] = deque()  # newest events, not compacted yet
        self._fresh_bytes = 0

    def __len__(self) -> int:
        return len(self.events)

    def hold(self, event: LogEvent) -> None:
        """Keep the next event (its seq follows the last one held)."""
        self.events.append(event)
        size = len(event.payload)
        self.bytes += size
        fresh = self._fresh
        fresh.append(event)
        self._fresh_bytes += size
        while len(fresh) > 1 and (len(fresh) > FRESH_EVENTS or self._fresh_bytes > FRESH_BYTES):
            old = fresh.popleft()
            self._fresh_bytes -= len(old.payload)
            old.compact()

    def compact_all(self) -> None:
        """Held only for resume from now on (events read back from a journal)."""
        for event in self._fresh:
            event.compact()
        self._fresh.clear()
        self._fresh_bytes = 0

    def clear(self) -> None:
        self.events.clear()
        self.bytes = 0
        self._fresh.clear()
        self._fresh_bytes = 0

    def trim(self) -> None:
        events = self.events
        horizon = self.clock() - self.age if self.age > 0 else None
        while events and (
                (self.size and len(events) > self.size)
                or (self.max_bytes and self.bytes > self.max_bytes)
                or (horizon is not None and events[0].received < horizon)):
            self.bytes -= len(events.popleft().payload)

    def since(self, seq: int, head: int) -> list[LogEvent] | None:
        """The held events after `seq` (of the current epoch, whose last seq is `head`), or
        None when some of them are no longer held."""
        self.trim()
        if seq < 0 or seq > head:
            return None
        if seq == head:
            return []
        events = self.events
        if not events or events[0].seq > seq + 1:
            return None
        start = seq + 1 - events[0].seq
        return [events[i] for i in range(start, len(events))]
