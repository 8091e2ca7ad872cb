"""The event log: the ordered, numbered record every hub delivers from.

A hub appends events to its log and learns of them back through one delivery callback, the
way centrifuge's Broker hands publications to `HandlePublication`. The fan-out, the protocol
and resume never know which log is running. Every implementation keeps these invariants, and
tests/test_log_contract.py checks them against each:

1. **Dense order.** The delivery callback is called with events in `seq` order, each exactly
   once, starting right after `head` and with no seq skipped. `head` is the last seq
   delivered to this hub.
2. **Gap-free resume.** `since(epoch, seq)` returns the events after `seq` that were already
   delivered here, in order, or None when that can't be done without a gap (another epoch, a
   seq beyond `head`, or events no longer held). `since` and delivery both run on the event
   loop without awaiting, so a subscriber that reads `since` and then takes live deliveries
   sees every event once.
3. **One event per id.** An `event_id` already appended (within the de-duplication window)
   is not stored again: `append` answers with the original seq and `duplicate=True`.
4. **The epoch names the numbering.** It changes only when the log's history is really
   gone; a `since` against another epoch answers None.

Appending and delivery are separate steps. The in-process log (memory.py) delivers inline,
before `append` returns; a shared log delivers from its reader task, after.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs
import orjson

from swimctl.core.model import Envelope
from swimctl.wire.encodings import ENCODINGS, PLAIN

_ALPHABET = string.ascii_lowercase + string.digits


def new_epoch() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(6))


class LogUnavailable(Exception):
    """The log did not answer in time: retryable, and nothing was appended."""


class LogFenced(Exception):
    """A fenced append whose lease is no longer the writer's: nothing was appended (a source's
    leader that lost its lease, hub/leadership.py)."""


@attrs.frozen
class Draft:
    """An event before the log has numbered it."""

    type: str
    data: dict[str, Any]
    timestamp: str | None = None  # None: the time it is appended
    event_id: str | None = None  # None: the log names it e-<seq>
    # (lease key, lease value): append only while that lease holds it (a shared log checks;
    # a hub alone leads its sources for ever, so the in-process log has nothing to check).
    fence: tuple[str, str] | None = None


@attrs.frozen
class Appended:
    seq: int
    duplicate: bool = False


class LogEvent:
    """One numbered event: its payload (the envelope JSON, encoded once) and, built lazily
    and cached, its frame in each wire encoding, shared by every client.

    A log may `compact` an event it keeps only for resume: the decoded `data` and the cached
    frames go, the payload stays, and both come back on demand. An event then costs its
    payload, not three times it (payload, frame, decoded data).
    """

    __slots__ = ("_data", "_frames", "event_id", "payload", "received", "seq", "timestamp",
                 "type")

    def __init__(self, seq: int, type: str, timestamp: str, event_id: str,
                 data: dict[str, Any] | None, payload: bytes, received: float) -> None:
        self.seq = seq
        self.type = type
        self.timestamp = timestamp
        self.event_id = event_id
        self._data = data  # None: decoded from the payload when asked for
        self.payload = payload
        self.received = received  # monotonic time it entered the log, for the age bound
        self._frames: list[bytes | None] = [None] * len(ENCODINGS)

    @classmethod
    def build(cls, seq: int, draft: Draft, timestamp: str, received: float) -> LogEvent:
        eid = draft.event_id if draft.event_id is not None else f"e-{seq}"
        payload = Envelope(draft.type, timestamp, draft.data, seq, eid).encode()
        return cls(seq, draft.type, timestamp, eid, draft.data, payload, received)

    @property
    def data(self) -> dict[str, Any]:
        data = self._data
        if data is None:  # compacted: decoded each time, not kept (a replay is rare)
            data = orjson.loads(self.payload)["data"]
            assert isinstance(data, dict)
        return data

    def compact(self) -> None:
        """Drop what can be rebuilt from the payload (decoded data, frames)."""
        self._data = None
        frames = self._frames
        for index in range(len(frames)):
            frames[index] = None

    def frame(self, encoding: int = PLAIN) -> bytes:
        frame = self._frames[encoding]
        if frame is None:
            frame = self._frames[encoding] = ENCODINGS[encoding](self.payload)
        return frame

    def envelope(self) -> Envelope:
        return Envelope(self.type, self.timestamp, self.data, self.seq, self.event_id)

    def variant_payload(self, data: dict[str, Any]) -> bytes:
        """This event's payload with other `data` (a positions slice), same seq and id."""
        return Envelope(self.type, self.timestamp, data, self.seq, self.event_id).encode()


Delivery = Callable[[Sequence[LogEvent]], None]
# Called once when a log that outlives a hub is opened: the history it holds and the TMI
# programs active in it, so the hub's state (snapshot, programs) is what the log says.
Restore = Callable[[Sequence[LogEvent], Sequence[dict[str, Any]]], None]


class EventLog(Protocol):
    """What the hub needs of a log (see the invariants above)."""

    @property
    def epoch(self) -> str: ...

    @property
    def head(self) -> int: ...

    @property
    def held(self) -> int: ...

    def set_delivery(self, deliver: Delivery, restore: Restore | None = None) -> None:
        """The one callback events are delivered to, and the one that restores the hub's
        state from a log that outlived it; set before the first append."""

    async def append(self, draft: Draft) -> Appended: ...

    def since(self, epoch: str, seq: int) -> list[LogEvent] | None: ...

    async def run(self, *, task_status: Any = ...) -> None:
        """Background work (reading a shared log, trimming); started by the service."""
