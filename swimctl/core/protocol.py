"""Client actions (PROTOCOL.md sections 2 and 6) as plain data: parse, validate, build replies.

No I/O here: the server feeds raw message text in and gets typed requests or a ProtocolError
out, the way h11 and wsproto keep protocol logic apart from sockets.
"""

from __future__ import annotations

from typing import Any

import attrs
import orjson

from swimctl.core.channels import DEFAULT_CHANNELS, Channels
from swimctl.core.filters import AirportArtcc, Filter, FilterError, compile_filter
from swimctl.core.model import dumps, format_ts, parse_ts

MAX_CHANNELS = 64
MAX_EVENT_ID = 128
# Integers every JSON implementation holds exactly (RFC 7493 I-JSON): the range of a numeric id.
MAX_SAFE_ID = 2**53 - 1


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

# Error codes of PROTOCOL.md section 6.
AUTH_FAILED = "AUTH_FAILED"
CONNECTION_LIMIT = "CONNECTION_LIMIT"
MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
RATE_LIMITED = "RATE_LIMITED"
INVALID_JSON = "INVALID_JSON"
UNKNOWN_ACTION = "UNKNOWN_ACTION"
INVALID_SUBSCRIBE = "INVALID_SUBSCRIBE"
INVALID_CHANNEL = "INVALID_CHANNEL"
INVALID_FILTER = "INVALID_FILTER"
FORBIDDEN = "FORBIDDEN"
INVALID_PUBLISH = "INVALID_PUBLISH"
SLOW_CONSUMER = "SLOW_CONSUMER"
INTERNAL_ERROR = "INTERNAL_ERROR"
BROKER_UNAVAILABLE = "BROKER_UNAVAILABLE"  # the shared event log did not answer: retry

# Close codes.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002  # a frame that breaks RFC 6455 (wire/websocket.py)
CLOSE_INVALID_DATA = 1007  # a text message that is not UTF-8
CLOSE_TOO_BIG = 1009  # a message past HARD_MESSAGE_LIMIT (hub/server.py)
CLOSE_SERVICE_RESTART = 1012  # the shared event log restarted empty: resume elsewhere/again
CLOSE_TRY_AGAIN = 1013  # the broker could not count a key's connections: retry shortly
CLOSE_AUTH = 4001
CLOSE_LIMIT = 4002
CLOSE_VIOLATIONS = 4003
CLOSE_SLOW = 4008


class ProtocolError(Exception):
    """A request the hub answers with an error reply (and keeps the connection)."""

    def __init__(self, code: str, message: str, request_id: Any = MISSING) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


@attrs.frozen
class Subscribe:
    channels: tuple[str, ...]
    filters: Filter
    resume: tuple[str, int] | None = None
    snapshot: bool = False
    request_id: Any = MISSING


@attrs.frozen
class Unsubscribe:
    channels: tuple[str, ...] | None
    request_id: Any = MISSING


@attrs.frozen
class Ping:
    request_id: Any = MISSING


@attrs.frozen
class Status:
    request_id: Any = MISSING
    hub: bool = False  # also the whole hub's figures (system-tier keys; `swimctl top`)


@attrs.frozen
class Publish:
    channel: str
    data: dict[str, Any]
    event_id: str | None = None
    timestamp: str | None = None
    request_id: Any = MISSING


Request = Subscribe | Unsubscribe | Ping | Status | Publish


def _request_id(obj: dict[str, Any]) -> Any:
    """The `id` to echo. A number beyond ±(2^53 - 1) cannot be echoed exactly (a JSON parser,
    ours included, may hand it over as a rounded double), so the request is refused rather
    than answered under an id the client never sent."""
    if "id" not in obj:
        return MISSING
    value = obj["id"]
    if isinstance(value, int | float) and not isinstance(value, bool) \
            and not -MAX_SAFE_ID <= value <= MAX_SAFE_ID:
        raise ProtocolError(INVALID_JSON, "a number `id` must lie within ±(2^53 - 1); send "
                            "larger ids as strings")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return MISSING  # ids are JSON scalars; a structured one is not echoed


def request_id_of(raw: str | bytes) -> Any:
    """The `id` of a message we will not process (rate limited), so the error still echoes
    it; MISSING when there is none to find."""
    if isinstance(raw, bytes) or len(raw) > 65536:
        return MISSING
    try:
        obj = orjson.loads(raw)
        return _request_id(obj) if isinstance(obj, dict) else MISSING
    except (orjson.JSONDecodeError, ProtocolError):
        return MISSING


def _channels(obj: dict[str, Any], rid: Any, table: Channels, *,
              required: bool) -> tuple[str, ...] | None:
    value = obj.get("channels")
    if value is None or value == []:
        if required:
            raise ProtocolError(INVALID_SUBSCRIBE, "`channels` must be a non-empty list", rid)
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        code = INVALID_SUBSCRIBE if required else INVALID_CHANNEL
        raise ProtocolError(code, "`channels` must be a list of strings", rid)
    if len(value) > MAX_CHANNELS:
        raise ProtocolError(INVALID_SUBSCRIBE, f"at most {MAX_CHANNELS} channels", rid)
    for channel in value:
        if not table.valid_pattern(channel):
            raise ProtocolError(INVALID_CHANNEL, f"unknown channel {channel[:64]!r}", rid)
    return tuple(dict.fromkeys(value))


def parse_request(raw: str | bytes, airport_artcc: AirportArtcc | None = None,
                  channels: Channels = DEFAULT_CHANNELS) -> Request:
    """One client message to a typed request, or ProtocolError with the right code."""
    if isinstance(raw, bytes):
        raise ProtocolError(INVALID_JSON, "binary frames are not accepted; send JSON text")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError(INVALID_JSON, "message is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError(INVALID_JSON, "message must be a JSON object")
    rid = _request_id(obj)
    action = obj.get("action")
    if not isinstance(action, str):
        raise ProtocolError(UNKNOWN_ACTION, "`action` must be a string", rid)
    if action == "subscribe":
        return _parse_subscribe(obj, rid, airport_artcc, channels)
    if action == "unsubscribe":
        return Unsubscribe(channels=_channels(obj, rid, channels, required=False),
                           request_id=rid)
    if action == "ping":
        return Ping(request_id=rid)
    if action == "status":
        return Status(request_id=rid, hub=obj.get("hub") is True)
    if action == "publish":
        return _parse_publish(obj, rid, channels)
    raise ProtocolError(UNKNOWN_ACTION, f"unknown action {action[:64]!r}", rid)


def _parse_subscribe(
    obj: dict[str, Any], rid: Any, airport_artcc: AirportArtcc | None, table: Channels
) -> Subscribe:
    channels = _channels(obj, rid, table, required=True)
    assert channels is not None
    try:
        flt = compile_filter(obj.get("filters"), airport_artcc)
    except FilterError as exc:
        raise ProtocolError(INVALID_FILTER, str(exc), rid) from None
    resume = None
    if obj.get("resume") is not None:
        value = obj["resume"]
        if (
            not isinstance(value, dict)
            or not isinstance(value.get("epoch"), str)
            or not isinstance(value.get("seq"), int)
            or isinstance(value.get("seq"), bool)
        ):
            raise ProtocolError(
                INVALID_SUBSCRIBE, "`resume` must be {\"epoch\": string, \"seq\": integer}", rid
            )
        resume = (value["epoch"], value["seq"])
    snapshot = obj.get("snapshot", False)
    if snapshot is None:
        snapshot = False
    if not isinstance(snapshot, bool):
        raise ProtocolError(INVALID_SUBSCRIBE, "`snapshot` must be true or false", rid)
    return Subscribe(
        channels=channels, filters=flt, resume=resume, snapshot=snapshot, request_id=rid
    )


def _parse_publish(obj: dict[str, Any], rid: Any, table: Channels) -> Publish:
    channel = obj.get("channel")
    if not isinstance(channel, str):
        raise ProtocolError(INVALID_PUBLISH, "`channel` must be one concrete event type", rid)
    refused = table.publish_error(channel)
    if refused is not None:
        raise ProtocolError(INVALID_PUBLISH, refused, rid)
    data = obj.get("data")
    if not isinstance(data, dict):
        raise ProtocolError(INVALID_PUBLISH, "`data` must be an object", rid)
    event_id = obj.get("event_id")
    if event_id is not None and (
        not isinstance(event_id, str) or not event_id or len(event_id) > MAX_EVENT_ID
    ):
        raise ProtocolError(
            INVALID_PUBLISH, f"`event_id` must be a string of 1-{MAX_EVENT_ID} characters", rid
        )
    timestamp = obj.get("timestamp")
    if timestamp is not None:
        if not isinstance(timestamp, str):
            raise ProtocolError(INVALID_PUBLISH, "`timestamp` must be an ISO-8601 string", rid)
        try:
            timestamp = format_ts(parse_ts(timestamp))
        except ValueError:
            raise ProtocolError(INVALID_PUBLISH, "`timestamp` is not ISO-8601", rid) from None
    return Publish(
        channel=channel, data=data, event_id=event_id, timestamp=timestamp, request_id=rid
    )


# -- replies ---------------------------------------------------------------------------------


def encode_reply(body: dict[str, Any], request_id: Any = MISSING) -> bytes:
    if request_id is not MISSING:
        body["id"] = request_id
    return dumps(body)


def error_reply(code: str, message: str, request_id: Any = MISSING) -> bytes:
    """An error frame. `code` and `message` stand at the top level (PHP hub, Python and
    JavaScript SDKs) and again in `data` (PERTI's C# and Java SDKs read `data.code` and
    `data.message`, and the C# one stops its receive loop when `data` lacks them)."""
    return encode_reply({"type": "error", "code": code, "message": message,
                         "data": {"code": code, "message": message}}, request_id)


def pong_reply(request_id: Any = MISSING) -> bytes:
    return encode_reply({"type": "pong", "timestamp": format_ts()}, request_id)
