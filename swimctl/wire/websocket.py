"""The server side of RFC 6455 without I/O: the opening handshake's checks and answers, and
an incremental reader for client frames.

The hub drives this itself (hub/server.py) instead of handing its sockets to a WebSocket
library, so it stays the owner of every byte it writes, can answer a protocol error with the
right close code, and keeps per-connection state to a few slotted objects. HTTP parsing of
the upgrade request is h11's; everything after the 101 is here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Iterable
from typing import Any

import attrs

from swimctl.wire.deflate import InflateError, TooBig, inflate
from swimctl.wire.frames import OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Close codes the hub sends when a client breaks the protocol (RFC 6455 section 7.4.1).
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009

# Events out of the reader: (kind, value).
TEXT = 1  # value: str
BINARY = 2  # value: bytes
PING = 9  # value: bytes
PONG = 10  # value: bytes
CLOSE = 8  # value: (code or None, reason)


class Violation(Exception):
    """The client broke RFC 6455: the connection is failed with this close code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# -- the opening handshake -------------------------------------------------------------------


@attrs.frozen
class Upgrade:
    """A valid WebSocket upgrade request."""

    target: str
    headers: tuple[tuple[bytes, bytes], ...]
    key: str


@attrs.frozen
class Refusal:
    """An upgrade request the hub answers with an HTTP error instead of 101."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


def _tokens(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str]:
    out: list[str] = []
    for key, value in headers:
        if key.lower() == name:
            out.extend(t.strip().lower() for t in value.decode("latin-1").split(","))
    return out


def _single(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    values = [v for k, v in headers if k.lower() == name]
    return values[0].decode("latin-1").strip() if len(values) == 1 else None


def check_upgrade(method: bytes, target: bytes, http_version: bytes,
                  headers: Iterable[tuple[bytes, bytes]]) -> Upgrade | Refusal:
    """RFC 6455 section 4.2.1: is this a WebSocket opening handshake we can accept?"""
    headers = tuple((k.lower(), v) for k, v in headers)
    if method != b"GET":
        return Refusal(405, "the SWIM endpoint takes a WebSocket upgrade (GET)",
                       (("Allow", "GET"),))
    if http_version not in (b"1.1",):
        return Refusal(505, "a WebSocket upgrade needs HTTP/1.1")
    if "websocket" not in _tokens(headers, b"upgrade") or \
            "upgrade" not in _tokens(headers, b"connection"):
        return Refusal(426, "this endpoint speaks WebSocket: send Upgrade: websocket",
                       (("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")))
    if _single(headers, b"sec-websocket-version") != "13":
        return Refusal(426, "unsupported Sec-WebSocket-Version: use 13",
                       (("Sec-WebSocket-Version", "13"),))
    key = _single(headers, b"sec-websocket-key")
    try:
        valid_key = key is not None and len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid_key = False
    if not valid_key or key is None:
        return Refusal(400, "missing or malformed Sec-WebSocket-Key")
    return Upgrade(target.decode("latin-1"), headers, key)


def accept_token(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + GUID).digest()).decode("ascii")


def accept_response(key: str, extensions: str | None = None) -> bytes:
    """The 101 answer to an accepted upgrade."""
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_token(key)}",
    ]
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


_REASONS = {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            426: "Upgrade Required", 505: "HTTP Version Not Supported"}


def refusal_response(status: int, body: str,
                     headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A complete HTTP error response; the connection closes after it."""
    payload = body.encode("utf-8") + b"\n"
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
             "Content-Type: text/plain; charset=utf-8",
             f"Content-Length: {len(payload)}",
             "Connection: close",
             *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


# -- client frames -----------------------------------------------------------------------------


def unmask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR with the 4-byte mask, in C speed through one big integer."""
    n = len(data)
    if not n:
        return b""
    key = (mask * ((n + 3) // 4))[:n]
    value = int.from_bytes(data, "little") ^ int.from_bytes(key, "little")
    return value.to_bytes(n, "little")


def _valid_close_code(code: int) -> bool:
    """Codes a peer may send (RFC 6455 7.4, and the IANA registry up to 1014)."""
    if 3000 <= code <= 4999:
        return True
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014)


def parse_close(payload: bytes) -> tuple[int | None, str]:
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise Violation(CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload")
    (code,) = struct.unpack("!H", payload[:2])
    if not _valid_close_code(code):
        raise Violation(CLOSE_PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise Violation(CLOSE_INVALID_DATA, "close reason is not valid UTF-8") from None
    return code, reason


class FrameReader:
    """Client frames in, whole messages and control frames out (`feed`); a broken rule
    raises Violation with the close code the hub must send.

    Slotted and small: an idle connection holds one of these and an empty buffer.

    `deflate`: the connection negotiated permessage-deflate, so a data message may come
    compressed (RSV1 on its first frame); it is inflated on its own (wire/deflate.py) and
    `max_message` bounds its inflated size too.
    """

    __slots__ = ("_buffer", "_compressed", "_deflate", "_limit", "_opcode", "_parts", "_size")

    def __init__(self, max_message: int, *, deflate: bool = False) -> None:
        self._limit = max_message
        self._deflate = deflate
        self._buffer = bytearray()
        self._opcode: int | None = None  # of the data message being reassembled
        self._compressed = False  # the message being reassembled came with RSV1
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes | bytearray) -> list[tuple[int, Any]]:
        buffer = self._buffer
        buffer += data
        out: list[tuple[int, Any]] = []
        pos = 0
        end = len(buffer)
        while end - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            opcode = first & 0x0F
            length = second & 0x7F
            head = 2
            if length == 126:
                if end - pos < 4:
                    break
                (length,) = struct.unpack_from("!H", buffer, pos + 2)
                head = 4
            elif length == 127:
                if end - pos < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, pos + 2)
                if length >> 63:
                    raise Violation(CLOSE_PROTOCOL_ERROR, "frame length has its top bit set")
                head = 10
            self._check_header(first, second, opcode, length)
            total = head + 4 + length
            if end - pos < total:
                break
            mask = bytes(buffer[pos + head:pos + head + 4])
            payload = unmask(memoryview(buffer)[pos + head + 4:pos + total], mask)
            pos += total
            message = self._frame(first & 0x80, opcode, payload, first & 0x40)
            if message is not None:
                out.append(message)
        if pos:
            del buffer[:pos]
        return out

    def _check_header(self, first: int, second: int, opcode: int, length: int) -> None:
        # RSV1 is permessage-deflate's, on the first frame of a data message only
        if first & 0x70 and not (self._deflate and first & 0x70 == 0x40
                                 and opcode in (OP_TEXT, OP_BINARY)):
            raise Violation(CLOSE_PROTOCOL_ERROR,
                            "reserved bits set without an extension" if not self._deflate
                            else "reserved bits set outside a compressed message's start")
        if not second & 0x80:
            raise Violation(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
        if opcode >= 0x8:
            if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
                raise Violation(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
            if not first & 0x80:
                raise Violation(CLOSE_PROTOCOL_ERROR, "fragmented control frame")
            if length > 125:
                raise Violation(CLOSE_PROTOCOL_ERROR, "control frame over 125 bytes")
            return
        if opcode == OP_CONTINUATION:
            if self._opcode is None:
                raise Violation(CLOSE_PROTOCOL_ERROR, "continuation frame without a message")
        elif opcode in (OP_TEXT, OP_BINARY):
            if self._opcode is not None:
                raise Violation(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
        else:
            raise Violation(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
        if self._size + length > self._limit:
            raise Violation(CLOSE_TOO_BIG, f"message over {self._limit} bytes")

    def _frame(self, fin: int, opcode: int, payload: bytes,
               rsv1: int = 0) -> tuple[int, Any] | None:
        if opcode == OP_PING:
            return PING, payload
        if opcode == OP_PONG:
            return PONG, payload
        if opcode == OP_CLOSE:
            return CLOSE, parse_close(payload)
        if opcode != OP_CONTINUATION:
            self._opcode = opcode
            self._compressed = bool(rsv1)
        self._parts.append(payload)
        self._size += len(payload)
        if not fin:
            return None
        kind = self._opcode
        whole = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        self._opcode, self._parts, self._size = None, [], 0
        if self._compressed:
            self._compressed = False
            try:
                whole = inflate(whole, self._limit)
            except TooBig as exc:
                raise Violation(CLOSE_TOO_BIG, str(exc)) from None
            except InflateError as exc:
                raise Violation(CLOSE_INVALID_DATA, str(exc)) from None
        if kind == OP_BINARY:
            return BINARY, whole
        try:
            return TEXT, whole.decode("utf-8")
        except UnicodeDecodeError:
            raise Violation(CLOSE_INVALID_DATA, "text message is not valid UTF-8") from None
