"""The in-process event log: the embedded default (see stream/base.py for the contract).

Pure and synchronous underneath: `append` numbers an event, stores it and delivers it
before it returns, so a subscriber that resumes sees held events then live ones with no gap
and no duplicate.

History is bounded by count, age and payload bytes, whichever bites first. Events further
back than the newest few (FRESH_EVENTS, FRESH_BYTES) are compacted to their payload
(LogEvent.compact), so what history really costs stays near its byte bound: the decoded
data and the frame of an event only live while fan-out may still need them.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import trio

from swimctl.core.model import format_ts
from swimctl.stream.base import Appended, Delivery, Draft, LogEvent, Restore, new_epoch
from swimctl.stream.history import DEFAULT_HISTORY_BYTES, History


def _undelivered(events: Any) -> None:
    raise RuntimeError("the log has no delivery callback yet")


class MemoryLog:
    """History bounded by count, age and payload bytes (0: no bound of that kind);
    `event_id` de-duplication over the last ids."""

    def __init__(self, *, history_size: int = 100_000, history_age: float = 3600.0,
                 history_bytes: int = DEFAULT_HISTORY_BYTES, dedupe_size: int = 100_000,
                 epoch: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.history_size = history_size
        self.history_age = history_age
        self.history_bytes = history_bytes
        self.dedupe_size = dedupe_size
        self.clock = clock
        self._epoch = epoch or new_epoch()
        self._head = 0
        self.history = History(size=history_size, age=history_age, max_bytes=history_bytes,
                               clock=clock)
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._deliver: Delivery = _undelivered
        self._restore: Restore | None = None  # a log that outlives a hub (durable.py) calls it

    @property
    def epoch(self) -> str:
        return self._epoch

    @property
    def head(self) -> int:
        return self._head

    @property
    def held(self) -> int:
        return len(self.history)

    @property
    def held_bytes(self) -> int:
        """Payload bytes of the events held for resume."""
        return self.history.bytes

    def set_delivery(self, deliver: Delivery, restore: Restore | None = None) -> None:
        self._deliver = deliver
        self._restore = restore

    async def append(self, draft: Draft) -> Appended:
        return self.append_now(draft)

    def append_now(self, draft: Draft) -> Appended:
        """`append` without the await: the memory log never waits."""
        if draft.event_id is not None:
            seen = self._seen.get(draft.event_id)
            if seen is not None:
                return Appended(seen, duplicate=True)
        seq = self._head + 1
        timestamp = draft.timestamp if draft.timestamp is not None else format_ts()
        event = LogEvent.build(seq, draft, timestamp, self.clock())
        self._store(event, draft.event_id is not None)
        if draft.event_id is not None:
            self._remember(draft.event_id, seq)
        self._hold(event)
        self.trim()
        self._deliver((event,))
        return Appended(seq)

    def _store(self, event: LogEvent, named: bool) -> None:
        """Hook for a log that keeps its events elsewhere too (stream/durable.py): called
        before the event is held or delivered; raising leaves the log as it was."""

    def _remember(self, event_id: str, seq: int) -> None:
        self._seen[event_id] = seq
        if len(self._seen) > self.dedupe_size:
            self._seen.popitem(last=False)

    def _hold(self, event: LogEvent) -> None:
        self._head = event.seq
        self.history.hold(event)

    def trim(self) -> None:
        self.history.trim()
        self._trimmed()

    def _trimmed(self) -> None:
        """Hook: history lost events from its front (a journal drops what it no longer
        needs)."""

    def since(self, epoch: str, seq: int) -> list[LogEvent] | None:
        if epoch != self._epoch:
            return None
        found = self.history.since(seq, self._head)
        self._trimmed()
        return found

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
