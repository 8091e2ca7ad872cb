"""What a client receives: events (typed on demand), state changes, resume outcomes and hub
errors; and the `filters` object a subscribe sends."""

from __future__ import annotations

import datetime as dt
import enum
import time
from collections.abc import Sequence
from typing import Any

import attrs
import orjson

from swimctl.core.channels import HEARTBEAT, POSITIONS, TMI_ACTIVE
from swimctl.core.model import (
    Envelope,
    FlightData,
    Position,
    T,
    TmiProgram,
    parse_ts,
    structure_or_none,
)


class State(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"  # live: subscriptions (re)applied, events flowing
    DISCONNECTED = "disconnected"  # waiting to retry
    CLOSED = "closed"  # for good: closed by the caller or a fatal error


@attrs.frozen
class StateChange:
    """The connection changed state; `retry_in` is set while waiting to reconnect."""

    state: State
    previous: State
    reason: str | None = None
    close_code: int | None = None
    retry_in: float | None = None
    attempt: int = 0


@attrs.frozen
class Resumed:
    """Outcome of resubscribing after a reconnect (or of an initial `resume_from`).

    `recovered=False` means events were missed: the hub no longer held them, or it restarted
    (new epoch). Consumers that keep state should re-seed it (e.g. from a snapshot)."""

    recovered: bool
    epoch: str
    from_seq: int
    reason: str = ""
    previous_epoch: str | None = None

    @property
    def gap(self) -> bool:
        return not self.recovered


@attrs.frozen
class HubError:
    """An error message from the hub not tied to a request (e.g. SLOW_CONSUMER)."""

    code: str
    message: str


@attrs.frozen
class Event:
    """One hub event, with the envelope exactly as received (`raw`, `text`)."""

    type: str
    timestamp: str
    data: dict[str, Any]
    seq: int | None
    event_id: str | None
    raw: dict[str, Any]
    text: str
    received_at: float = attrs.field(factory=time.time)

    @property
    def envelope(self) -> Envelope:
        return Envelope(self.type, self.timestamp, self.data, self.seq, self.event_id)

    @property
    def when(self) -> dt.datetime:
        """The timestamp as an aware UTC datetime."""
        return parse_ts(self.timestamp)

    @property
    def callsign(self) -> str | None:
        value = self.data.get("callsign")
        return value if isinstance(value, str) else None

    @property
    def is_heartbeat(self) -> bool:
        return self.type == HEARTBEAT

    @property
    def is_snapshot(self) -> bool:
        return self.type == TMI_ACTIVE or bool(self.data.get("snapshot"))

    @property
    def positions(self) -> list[Position]:
        """Typed positions of a `flight.positions` batch (malformed entries are skipped)."""
        if self.type != POSITIONS:
            return []
        out = []
        for item in self.data.get("positions") or ():
            pos = _build(Position, item)
            if pos is not None:
                out.append(pos)
        return out

    @property
    def flight(self) -> FlightData | None:
        """Typed payload of `flight.created` / `flight.updated`."""
        if self.type not in ("flight.created", "flight.updated"):
            return None
        return _build(FlightData, self.data)

    @property
    def program(self) -> TmiProgram | None:
        """Typed program of `tmi.issued` / `tmi.modified` / `tmi.released`."""
        if not self.type.startswith("tmi.") or self.type == TMI_ACTIVE:
            return None
        return _build(TmiProgram, self.data)

    @property
    def programs(self) -> list[TmiProgram]:
        """Programs of a `tmi.active` snapshot."""
        if self.type != TMI_ACTIVE:
            return []
        out = []
        for item in self.data.get("programs") or ():
            program = _build(TmiProgram, item)
            if program is not None:
                out.append(program)
        return out


Item = Event | StateChange | Resumed | HubError


def _build(cls: type[T], obj: Any) -> T | None:
    """A model object from a payload dict through the shared cattrs converter; None when
    required keys are missing or mistyped (the hub validates flight payloads only loosely
    for other sources)."""
    return structure_or_none(obj, cls)


def event_from_text(text: str) -> Event | None:
    """Parse one event frame; None for anything that is not an event envelope."""
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return _event_from_obj(obj, text)


def _event_from_obj(obj: Any, text: str) -> Event | None:
    if not isinstance(obj, dict):
        return None
    etype = obj.get("type")
    if not isinstance(etype, str) or "." not in etype:
        return None
    data = obj.get("data")
    seq = obj.get("seq")
    event_id = obj.get("event_id")
    timestamp = obj.get("timestamp")
    return Event(
        type=etype,
        timestamp=timestamp if isinstance(timestamp, str) else "",
        data=data if isinstance(data, dict) else {},
        seq=seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
        event_id=event_id if isinstance(event_id, str) else None,
        raw=obj,
        text=text,
    )


def build_filters(
    airports: Sequence[str] | None = None,
    artccs: Sequence[str] | None = None,
    callsign_prefix: Sequence[str] | str | None = None,
    bbox: tuple[float, float, float, float] | dict[str, float] | None = None,
) -> dict[str, Any]:
    """The `filters` object of PROTOCOL.md section 5; bbox as (north, south, east, west)."""
    out: dict[str, Any] = {}
    if airports:
        out["airports"] = [a.upper() for a in airports]
    if artccs:
        out["artccs"] = [a.upper() for a in artccs]
    if callsign_prefix:
        prefixes = [callsign_prefix] if isinstance(callsign_prefix, str) else callsign_prefix
        out["callsign_prefix"] = [p.upper() for p in prefixes]
    if bbox is not None:
        if isinstance(bbox, dict):
            out["bbox"] = dict(bbox)
        else:
            north, south, east, west = bbox
            out["bbox"] = {"north": north, "south": south, "east": east, "west": west}
    return out
