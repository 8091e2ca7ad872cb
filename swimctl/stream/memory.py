"""The in-process event log: the embedded default (see stream/base.py for the contract).

Pure and synchronous underneath: `append` numbers an event, stores it and delivers it
before it returns, so a subscriber that resumes sees held events then live ones with no gap
and no duplicate.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import trio

from swimctl.core.model import format_ts
from swimctl.stream.base import Appended, Delivery, Draft, LogEvent, Restore, new_epoch


def _undelivered(events: Any) -> None:
    raise RuntimeError("the log has no delivery callback yet")


class MemoryLog:
    """History bounded by count and age; `event_id` de-duplication over the last ids."""

    def __init__(self, *, history_size: int = 100_000, history_age: float = 3600.0,
                 dedupe_size: int = 100_000, epoch: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.history_size = history_size
        self.history_age = history_age
        self.dedupe_size = dedupe_size
        self.clock = clock
        self._epoch = epoch or new_epoch()
        self._head = 0
        self._history: deque[LogEvent] = deque()
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._deliver: Delivery = _undelivered

    @property
    def epoch(self) -> str:
        return self._epoch

    @property
    def head(self) -> int:
        return self._head

    @property
    def held(self) -> int:
        return len(self._history)

    def set_delivery(self, deliver: Delivery, restore: Restore | None = None) -> None:
        self._deliver = deliver  # nothing outlives this log: there is nothing to restore

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
        if draft.event_id is not None:
            self._seen[draft.event_id] = seq
            if len(self._seen) > self.dedupe_size:
                self._seen.popitem(last=False)
        self._head = seq
        self._history.append(event)
        self.trim()
        self._deliver((event,))
        return Appended(seq)

    def trim(self) -> None:
        history = self._history
        while len(history) > self.history_size:
            history.popleft()
        if self.history_age > 0:
            horizon = self.clock() - self.history_age
            while history and history[0].received < horizon:
                history.popleft()

    def since(self, epoch: str, seq: int) -> list[LogEvent] | None:
        self.trim()
        if epoch != self._epoch or seq < 0 or seq > self._head:
            return None
        if seq == self._head:
            return []
        history = self._history
        if not history or history[0].seq > seq + 1:
            return None
        start = seq + 1 - history[0].seq
        return [history[i] for i in range(start, len(history))]

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
