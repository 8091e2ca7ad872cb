"""Server WebSocket frames (RFC 6455) built once: unmasked, so the same bytes serve every
client that uses the same encoding (wire/encodings.py).
"""

from __future__ import annotations

import struct

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


def header_size(n: int) -> int:
    """Bytes of a server frame's header for a payload of `n` bytes."""
    return 2 if n < 126 else 4 if n < 65536 else 10


def frame_header(first: int, n: int) -> bytes:
    if n < 126:
        return bytes((first, n))
    if n < 65536:
        return bytes((first, 126)) + struct.pack("!H", n)
    return bytes((first, 127)) + struct.pack("!Q", n)


def text_frame(payload: bytes) -> bytes:
    """One final text frame carrying `payload` (already UTF-8 JSON)."""
    return frame_header(0x80 | OP_TEXT, len(payload)) + payload


def control_frame(opcode: int, payload: bytes = b"") -> bytes:
    """A ping, pong or close frame (payload at most 125 bytes)."""
    return frame_header(0x80 | opcode, len(payload)) + payload


def close_frame(code: int | None, reason: str = "") -> bytes:
    """A close frame; the reason is cut to fit the 125-byte control payload."""
    if code is None:
        return control_frame(OP_CLOSE)
    body = struct.pack("!H", code) + reason.encode("utf-8")[:123]
    while True:  # never cut a UTF-8 sequence in half
        try:
            body[2:].decode("utf-8")
            break
        except UnicodeDecodeError:
            body = body[:-1]
    return control_frame(OP_CLOSE, body)
