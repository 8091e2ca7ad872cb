"""Server-side WebSocket frames built once (RFC 6455): unmasked, so the same bytes serve
every client. trio-websocket still owns the handshake, pings and the close handshake."""

from __future__ import annotations

import struct


def text_frame(payload: bytes) -> bytes:
    """One final text frame carrying `payload` (already UTF-8 JSON)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 65536:
        header = b"\x81\x7e" + struct.pack("!H", n)
    else:
        header = b"\x81\x7f" + struct.pack("!Q", n)
    return header + payload
