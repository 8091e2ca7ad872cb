"""The shared data model: event envelopes, flight and TMI payloads, and their one converter.

Payloads are attrs classes, turned into wire dicts and back by one cattrs converter (orjson
preset): clients get typed events from it, TMI programs are written through it. The envelope
sits on the hub's hot path, so it builds its dict by hand, in wire order, and every distinct
payload is serialised with orjson exactly once.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, TypeVar

import attrs
import orjson
from cattrs.errors import BaseValidationError
from cattrs.gen import make_dict_unstructure_fn, override
from cattrs.preconf.orjson import make_converter

T = TypeVar("T")

converter = make_converter(omit_if_default=False)

# Event families a client may subscribe to with `family.*`; exact types are any dotted name
# inside one of them.
FAMILIES: frozenset[str] = frozenset(
    {"flight", "tmi", "system", "ctp", "splits", "cdm", "aman"}
)

FLIGHT_TYPES: frozenset[str] = frozenset(
    {
        "flight.created",
        "flight.updated",
        "flight.departed",
        "flight.arrived",
        "flight.deleted",
        "flight.positions",
    }
)
TMI_TYPES: frozenset[str] = frozenset({"tmi.issued", "tmi.modified", "tmi.released", "tmi.active"})
SYSTEM_TYPES: frozenset[str] = frozenset({"system.heartbeat"})
POSITIONS = "flight.positions"
HEARTBEAT = "system.heartbeat"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def format_ts(moment: dt.datetime | None = None) -> str:
    """ISO-8601 UTC with milliseconds and `Z`, the one timestamp shape on the wire."""
    moment = utc_now() if moment is None else moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def format_ts_seconds(moment: dt.datetime | None = None) -> str:
    moment = utc_now() if moment is None else moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(text: str) -> dt.datetime:
    """Parse an ISO-8601 timestamp (with `Z`, an offset, or naive meaning UTC) to aware UTC.

    VATSIM writes seven fractional digits, which `fromisoformat` before 3.11 rejected; we trim
    to microseconds so any producer's timestamps parse.
    """
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    if "." in value:
        head, _, rest = value.partition(".")
        digits = ""
        for ch in rest:
            if ch.isdigit():
                digits += ch
            else:
                break
        value = head + "." + digits[:6].ljust(6, "0") + rest[len(digits) :]
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


@attrs.define(slots=True)
class Position:
    """One flight's position in a `flight.positions` batch."""

    callsign: str
    flight_uid: int
    latitude: float
    longitude: float
    altitude_ft: int
    groundspeed_kts: int
    heading_deg: int
    vertical_rate_fpm: int
    current_artcc: str | None
    dep: str | None
    arr: str | None


@attrs.define(slots=True)
class FlightData:
    """Payload of `flight.created` and `flight.updated` (the latter adds `changes`)."""

    callsign: str
    flight_uid: int
    cid: int
    dep: str | None
    arr: str | None
    equipment: str | None
    route: str | None
    latitude: float
    longitude: float
    altitude_ft: int
    groundspeed_kts: int
    heading_deg: int
    current_artcc: str | None


@attrs.define(slots=True)
class TmiProgram:
    """A ground stop (GS) or ground delay program (GDP), as carried by `tmi.*` events."""

    program_id: str
    program_type: str
    airport: str
    start_time: str
    end_time: str
    reason: str
    status: str = "ACTIVE"
    program_rate: int | None = None
    avg_delay_min: int | None = None
    max_delay_min: int | None = None
    scope: list[str] | None = None

    def to_data(self) -> dict[str, Any]:
        """The wire shape: GDP-only and optional keys appear only when they carry a value."""
        data: dict[str, Any] = converter.unstructure(self)
        return data


converter.register_unstructure_hook(
    TmiProgram,
    make_dict_unstructure_fn(
        TmiProgram, converter,
        **{name: override(omit_if_default=True)
           for name in ("program_rate", "avg_delay_min", "max_delay_min", "scope")},
    ),
)


def structure_or_none(obj: Any, cls: type[T]) -> T | None:
    """A payload class from a wire dict (extra keys ignored), or None when it does not fit."""
    if not isinstance(obj, dict):
        return None
    try:
        return converter.structure(obj, cls)
    except (BaseValidationError, TypeError, ValueError, KeyError):
        return None


@attrs.define(slots=True)
class Envelope:
    """One event as it travels: compat keys `type`, `timestamp`, `data`; ext `seq`, `event_id`."""

    type: str
    timestamp: str
    data: dict[str, Any]
    seq: int | None = None
    event_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "timestamp": self.timestamp}
        if self.seq is not None:
            out["seq"] = self.seq
        if self.event_id is not None:
            out["event_id"] = self.event_id
        out["data"] = self.data
        return out

    def encode(self) -> bytes:
        return dumps(self.to_dict())


class EnvelopeError(ValueError):
    """A line or message that is not a valid event envelope."""


def envelope_from_obj(obj: Any) -> Envelope:
    """Validate a decoded JSON value as an envelope (PROTOCOL.md section 7)."""
    if not isinstance(obj, dict):
        raise EnvelopeError("an event must be a JSON object")
    etype = obj.get("type")
    if not isinstance(etype, str) or not is_event_type(etype):
        raise EnvelopeError("`type` must be a known event type")
    timestamp = obj.get("timestamp")
    if not isinstance(timestamp, str):
        raise EnvelopeError("`timestamp` must be a string")
    try:
        parse_ts(timestamp)
    except ValueError as exc:
        raise EnvelopeError("`timestamp` is not ISO-8601") from exc
    data = obj.get("data")
    if not isinstance(data, dict):
        raise EnvelopeError("`data` must be an object")
    seq = obj.get("seq")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
        raise EnvelopeError("`seq` must be an integer")
    event_id = obj.get("event_id")
    if event_id is not None and not isinstance(event_id, str):
        raise EnvelopeError("`event_id` must be a string")
    return Envelope(type=etype, timestamp=timestamp, data=data, seq=seq, event_id=event_id)


def envelope_from_line(line: bytes | str) -> Envelope:
    """One event-file line (PROTOCOL.md section 7) to an envelope, or EnvelopeError."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"not JSON ({exc.msg})") from None
    return envelope_from_obj(obj)


# A concrete type is dot-separated names of letters, digits, `_` and `-`: no empty segment
# (`ctp.a..b`), no wildcard, no space or control character (a NUL would pass straight into
# logs, file names and other clients' parsers).
_EVENT_TYPE = re.compile(r"[a-z]+(?:\.[A-Za-z0-9_-]+)+")


def is_event_type(name: str) -> bool:
    """A concrete event type: `family.name[.name...]` with a known family and no wildcard."""
    return (
        len(name) <= 128
        and _EVENT_TYPE.fullmatch(name) is not None
        and name.partition(".")[0] in FAMILIES
    )


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def loads(raw: bytes | str) -> Any:
    return orjson.loads(raw)
