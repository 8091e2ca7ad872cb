"""A WebSocket client on a plain socket, for tests that must see or send exact bytes."""

from __future__ import annotations

import os
import socket
import zlib
from typing import Any
from urllib.parse import urlsplit

import orjson
import trio

from tests.conftest import Harness


def client_frame(payload: bytes, opcode: int = 1, *, fin: bool = True, rsv: int = 0,
                 masked: bool = True, length: int | None = None) -> bytes:
    """One client frame, masked with a random key unless told otherwise."""
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    if n < 126:
        head = bytes((first, (0x80 if masked else 0) | n))
    elif n < 65536:
        head = bytes((first, (0x80 if masked else 0) | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, (0x80 if masked else 0) | 127)) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


class RawClient:
    """A WebSocket client on a plain socket: it sees every byte the hub writes, in order."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()
        self.last_first_byte = 0
        self.head = b""  # the hub's 101 response head
        self.compressed = 0  # compressed messages read by `message`

    @classmethod
    async def connect(cls, hub: Harness, rcvbuf: int | None = None, *,
                      tier: str = "system", extensions: str | None = None) -> RawClient:
        return await cls.open(hub.url, hub.keys[tier], rcvbuf, extensions=extensions)

    @classmethod
    async def open(cls, hub_url: str, key: str, rcvbuf: int | None = None, *,
                   extensions: str | None = None) -> RawClient:
        """Upgrade a plain socket to `hub_url` with `key` (offering `extensions`, a
        Sec-WebSocket-Extensions value); the 101 is checked and kept in `head`."""
        url = urlsplit(hub_url)
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the window is small from the start
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        await sock.connect((url.hostname, url.port))
        self = cls(trio.SocketStream(sock))
        offer = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else ""
        await self.stream.send_all(
            (f"GET {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             f"Sec-WebSocket-Version: 13\r\nX-SWIM-API-Key: {key}\r\n{offer}\r\n")
            .encode())
        while b"\r\n\r\n" not in self.buf:
            self.buf += await self.stream.receive_some(65536)
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        self.head = head
        self.buf = bytearray(rest)
        return self

    async def send(self, body: dict[str, Any], opcode: int = 1) -> None:
        payload = orjson.dumps(body) if opcode == 1 else b""
        await self.send_raw(payload, opcode)

    async def send_raw(self, payload: bytes, opcode: int) -> None:
        await self.stream.send_all(client_frame(payload, opcode))

    async def frame(self) -> tuple[int, bytes]:
        """The next whole frame; asserts the framing is intact (final, unmasked, known op)."""
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError
            self.buf += data

    def _parse(self) -> tuple[int, bytes] | None:
        buf = self.buf
        if len(buf) < 2:
            return None
        b0, n = buf[0], buf[1]
        assert b0 & 0x80 and not n & 0x80, "server frames are final and unmasked"
        assert b0 & 0x0F in (1, 8, 9, 10), f"bad opcode {b0 & 0x0F}: framing corrupted"
        self.last_first_byte = b0
        n &= 0x7F
        hdr = 2
        if n == 126:
            if len(buf) < 4:
                return None
            n, hdr = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n, hdr = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < hdr + n:
            return None
        payload = bytes(buf[hdr:hdr + n])
        del buf[:hdr + n]
        return b0 & 0x0F, payload

    async def request(self, body: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send one action; the next reply (events, whose types have a dot, are skipped)."""
        await self.send(body)
        with trio.fail_after(timeout):
            while True:
                message = await self.message()
                if "." not in message["type"]:
                    return message

    async def message(self) -> dict[str, Any]:
        """The next message, decoded; a compressed one (RSV1) is inflated on its own, with a
        fresh inflater, as the hub's server_no_context_takeover promises it can be."""
        opcode, payload = await self.frame()
        assert opcode == 1, (opcode, payload)
        if self.last_first_byte & 0x40:
            self.compressed += 1
            payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
        return orjson.loads(payload)


    async def close_frame(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """Read until the hub's close frame: its (code, reason)."""
        with trio.fail_after(timeout):
            while True:
                opcode, payload = await self.frame()
                if opcode == 8:
                    if not payload:
                        return None, ""
                    return int.from_bytes(payload[:2], "big"), payload[2:].decode()

    async def eof(self, timeout: float = 5.0) -> None:
        """Wait until the hub closes TCP (nothing but the end may arrive)."""
        with trio.fail_after(timeout):
            while await self.stream.receive_some(65536):
                pass
