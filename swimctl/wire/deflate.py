"""permessage-deflate (RFC 7692) the way a broadcast hub wants it: negotiation, compressed
server frames that depend only on themselves, and bounded inflation of client messages.

The hub always answers with `server_no_context_takeover`: each compressed frame is a complete
deflate stream of its own, so one event is compressed once and the same bytes go to every
client that negotiated the extension (uWebSockets' shared compressor, rather than websockets'
and Centrifugo's compressor per connection, whose CPU grows with the clients and whose state
costs tens of KiB each). It also always asks for `client_no_context_takeover` (RFC 7692
7.1.1.2 lets a server add it to any accepted offer, and every client must honour it), so a
client message inflates on its own too: the hub keeps no inflate state between messages, and
a connection that never sends a compressed message never holds any.

Pure functions and no I/O; hub/server.py negotiates, wire/encodings.py names the encoding,
wire/websocket.py's FrameReader inflates.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from swimctl.wire.frames import OP_TEXT, frame_header, text_frame

EXTENSION = "permessage-deflate"

# zlib level 6 (its default) for large payloads, the positions batches that are most of the
# bytes: 0.21-0.23 of the input on VATSIM batches, where level 1 gives 0.26-0.27 and level 9
# costs three times the CPU for 0.20. That cost is paid once per event, not per client.
LEVEL = 6
# Below this, level 1 and a window no larger than the payload: a filtered client's positions
# slice (often its own, so compressed for it alone) or a lifecycle event compresses about as
# well (0.55 against 0.54 at 500 bytes) in half the time (docs/PERFORMANCE.md).
SMALL_PAYLOAD = 4096
SMALL_LEVEL = 1
# Payloads shorter than this go out plain (RFC 7692 allows a mix per message): heartbeats and
# acks save 10-15 % at best and the client would pay an inflate call for a dozen bytes.
MIN_COMPRESSED_PAYLOAD = 128
# Deflate's own window, always: an offer that limits the server's window below it is declined
# (the client then gets plain frames), so one shared frame fits every compressing client.
WINDOW_BITS = 15
_TAIL = b"\x00\x00\xff\xff"  # ends every sync flush; RFC 7692 7.2.1 strips it on the wire
_RSV1 = 0x40

_PARAMETERS = ("server_no_context_takeover", "client_no_context_takeover",
               "server_max_window_bits", "client_max_window_bits")


# -- negotiation -------------------------------------------------------------------------------


def parse_offers(values: Iterable[str]) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Sec-WebSocket-Extensions header values as (extension, [(parameter, value)]) in the
    client's order of preference."""
    offers: list[tuple[str, list[tuple[str, str | None]]]] = []
    for value in values:
        for item in value.split(","):
            name, *raw = (part.strip() for part in item.split(";"))
            if not name:
                continue
            params: list[tuple[str, str | None]] = []
            for param in raw:
                if not param:
                    continue
                key, sep, val = param.partition("=")
                params.append((key.strip().lower(),
                               val.strip().strip('"') if sep else None))
            offers.append((name.lower(), params))
    return offers


def _window_bits(value: str | None, *, optional: bool) -> int | None:
    """A valid max_window_bits value (8-15), None when absent and allowed; raises
    ValueError otherwise."""
    if value is None:
        if optional:
            return None
        raise ValueError("max_window_bits needs a value")
    if not value.isdigit() or value.startswith("0") or not 8 <= int(value) <= 15:
        raise ValueError(f"invalid max_window_bits {value!r}")
    return int(value)


def accept_offer(params: list[tuple[str, str | None]]) -> str | None:
    """The response to one permessage-deflate offer, or None to decline it (an unknown or
    repeated parameter, an invalid value, or a limit on the server's window the shared frames
    cannot meet)."""
    names = [name for name, _ in params]
    if len(set(names)) != len(names) or any(name not in _PARAMETERS for name in names):
        return None
    given = dict(params)
    try:
        if given.get("server_no_context_takeover") is not None or \
                given.get("client_no_context_takeover") is not None:
            return None  # these take no value
        server_bits = (_window_bits(given["server_max_window_bits"], optional=False)
                       if "server_max_window_bits" in given else None)
        if "client_max_window_bits" in given:
            _window_bits(given["client_max_window_bits"], optional=True)
    except ValueError:
        return None
    if server_bits is not None and server_bits < WINDOW_BITS:
        return None
    response = f"{EXTENSION}; server_no_context_takeover; client_no_context_takeover"
    if server_bits is not None:  # an offered limit must be answered (RFC 7692 7.1.2.1)
        response += f"; server_max_window_bits={server_bits}"
    return response


def negotiate(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The Sec-WebSocket-Extensions answer for an upgrade request's headers: the first
    permessage-deflate offer the hub can accept, or None (no extension, plain frames)."""
    values = [v.decode("latin-1") for k, v in headers if k.lower() == b"sec-websocket-extensions"]
    for name, params in parse_offers(values):
        if name == EXTENSION:
            response = accept_offer(params)
            if response is not None:
                return response
    return None


# -- server frames -----------------------------------------------------------------------------


def compress(payload: bytes) -> bytes:
    """One message's deflate data with no context before or after it (the sync flush's tail
    removed, as the extension sends it). A window smaller than the negotiated one is allowed
    (the client's inflater takes any up to it) and, for a small payload, loses nothing."""
    size = len(payload)
    if size < SMALL_PAYLOAD:
        bits = max(9, min(WINDOW_BITS, size.bit_length()))
        compressor = zlib.compressobj(SMALL_LEVEL, zlib.DEFLATED, -bits, max(1, bits - 7))
    else:
        compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -WINDOW_BITS)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4] if data.endswith(_TAIL) else data


def deflate_frame(payload: bytes) -> bytes:
    """A final text frame for a client that negotiated the extension: compressed (RSV1 set)
    when that pays, plain otherwise; the client's WebSocket layer reads either."""
    if len(payload) < MIN_COMPRESSED_PAYLOAD:
        return text_frame(payload)
    data = compress(payload)
    if len(data) >= len(payload):
        return text_frame(payload)
    return frame_header(0x80 | _RSV1 | OP_TEXT, len(data)) + data


def is_compressed(frame: bytes) -> bool:
    return bool(frame[0] & _RSV1)


# -- client messages -----------------------------------------------------------------------------


class InflateError(Exception):
    """A compressed client message that is not valid deflate data."""


class TooBig(Exception):
    """A compressed client message that inflates past the limit."""


def inflate(data: bytes, limit: int) -> bytes:
    """One client message's data, inflated on its own (client_no_context_takeover), never to
    more than `limit` bytes: a message that would inflate further raises TooBig after at most
    `limit + 1` bytes were produced, so a deflate bomb costs the hub no more than that."""
    inflater = zlib.decompressobj(-WINDOW_BITS)
    try:
        out = inflater.decompress(data + _TAIL, limit + 1)
    except zlib.error as exc:
        raise InflateError(f"compressed message is not valid deflate data ({exc})") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise TooBig(f"message over {limit} bytes once inflated")
    return out
