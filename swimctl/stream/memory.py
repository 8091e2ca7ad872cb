"""The event stream: seq numbering within an epoch, bounded history, resume, de-duplication.

Pure and synchronous: the hub appends events here and fans them out in the same step, so a
subscriber that resumes sees held events then live ones with no gap and no duplicate.
"""

from __future__ import annotations

import secrets
import string
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import attrs

from swimctl.core.model import Envelope, format_ts
from swimctl.wire.frames import text_frame

_ALPHABET = string.ascii_lowercase + string.digits


def new_epoch() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(6))


@attrs.define(slots=True, eq=False)
class StreamEvent:
    """An event with its seq, encoded and framed exactly once."""

    seq: int
    type: str
    timestamp: str
    event_id: str
    data: dict[str, Any]
    payload: bytes
    frame: bytes
    received: float  # monotonic time it entered the stream, for the age bound

    def envelope(self) -> Envelope:
        return Envelope(
            type=self.type, timestamp=self.timestamp, data=self.data,
            seq=self.seq, event_id=self.event_id,
        )

    def variant(self, data: dict[str, Any]) -> bytes:
        """The frame of this event with other `data` (a positions slice), same seq and id."""
        return text_frame(Envelope(self.type, self.timestamp, data, self.seq, self.event_id)
                          .encode())


@attrs.define
class EventStream:
    history_size: int = 100_000
    history_age: float = 3600.0
    dedupe_size: int = 100_000
    epoch: str = attrs.field(factory=new_epoch)
    last_seq: int = 0
    clock: Callable[[], float] = time.monotonic
    _history: deque[StreamEvent] = attrs.field(factory=deque)
    _seen: OrderedDict[str, int] = attrs.field(factory=OrderedDict)

    def append(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        timestamp: str | None = None,
        event_id: str | None = None,
    ) -> tuple[StreamEvent | None, int]:
        """Number and store an event. Returns (event, seq), or (None, original seq) for an
        `event_id` already seen."""
        if event_id is not None:
            seen = self._seen.get(event_id)
            if seen is not None:
                return None, seen
        self.last_seq += 1
        seq = self.last_seq
        eid = event_id if event_id is not None else f"e-{seq}"
        ts = timestamp if timestamp is not None else format_ts()
        payload = Envelope(event_type, ts, data, seq, eid).encode()
        event = StreamEvent(seq, event_type, ts, eid, data, payload, text_frame(payload),
                            self.clock())
        if event_id is not None:
            self._seen[event_id] = seq
            if len(self._seen) > self.dedupe_size:
                self._seen.popitem(last=False)
        self._history.append(event)
        self.trim()
        return event, seq

    def trim(self) -> None:
        history = self._history
        while len(history) > self.history_size:
            history.popleft()
        if self.history_age > 0:
            horizon = self.clock() - self.history_age
            while history and history[0].received < horizon:
                history.popleft()

    def since(self, epoch: str, seq: int) -> list[StreamEvent] | None:
        """Every held event after `seq`, or None when that cannot be done without a gap."""
        self.trim()
        if epoch != self.epoch or seq < 0 or seq > self.last_seq:
            return None
        if seq == self.last_seq:
            return []
        history = self._history
        if not history or history[0].seq > seq + 1:
            return None
        start = seq + 1 - history[0].seq
        return [history[i] for i in range(start, len(history))]

    @property
    def held(self) -> int:
        return len(self._history)
