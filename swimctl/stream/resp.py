"""A lean Redis connection for the shared log's two commands on every event's path.

Each event costs a hub one append (EVALSHA of the append script) and its share of an XREAD
that brings events back. Through coredis on trio one command costs the hub's process about
0.4 ms of CPU (a writer task, memory streams and several scheduler passes per command, see
bench/coredis_cost.py), about 3 ms per event: more than a fan-out to 1,000 clients. This
speaks RESP2 on one trio stream, a command at a time: the request bytes out, the reply parsed
from what comes back. coredis stays for everything else (setup, leases, Sentinel, Cluster,
TLS); this is used for plain `redis://` and `unix://` URLs only.

`RespParser` is pure (bytes in, replies out); `RespConnection` is the trio shell. A call that
is cancelled or fails closes the connection (a reply may be half read); the next call opens a
new one.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import trio


class RespError(Exception):
    """An error reply from Redis (NOSCRIPT, WRONGTYPE, a script's error, ...)."""


class RespProtocolError(OSError):
    """Bytes that are not RESP2, or a connection Redis closed: the connection is dropped."""


class _Closed(Exception):
    """A reused connection was found closed before any reply came: safe to send again."""


def encode_command(args: tuple[bytes | str | int, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


_MISSING = object()


class RespParser:
    """RESP2 replies from a byte stream: `feed` bytes, `reply()` the next whole reply or
    `_MISSING`. Simple strings come back as str, bulk strings as bytes, errors as RespError
    instances (not raised: the caller decides), nil as None."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.pos = 0

    def feed(self, data: bytes | bytearray) -> None:
        if self.pos:
            del self.buffer[:self.pos]
            self.pos = 0
        self.buffer += data

    def reply(self) -> Any:
        start = self.pos
        value = self._parse()
        if value is _MISSING:
            self.pos = start
        return value

    def _line(self) -> bytes | None:
        end = self.buffer.find(b"\r\n", self.pos)
        if end < 0:
            return None
        line = bytes(self.buffer[self.pos:end])
        self.pos = end + 2
        return line

    def _parse(self) -> Any:
        line = self._line()
        if line is None:
            return _MISSING
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            if len(self.buffer) - self.pos < size + 2:
                return _MISSING
            data = bytes(self.buffer[self.pos:self.pos + size])
            self.pos += size + 2
            return data
        if kind == b"*":
            count = int(rest)
            if count < 0:
                return None
            items = []
            for _ in range(count):
                item = self._parse()
                if item is _MISSING:
                    return _MISSING
                items.append(item)
            return items
        raise RespProtocolError(f"not a RESP2 reply: {line[:40]!r}")


class RespConnection:
    """One connection to the Redis of a `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` or
    `unix:///PATH[?db=N]` URL, opened on first use."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.path = parts.path if parts.scheme == "unix" else None
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        if parts.scheme == "unix":
            self.db = int(parse_qs(parts.query).get("db", ["0"])[0])
        else:
            self.db = int(parts.path.strip("/") or 0)
        self._stream: trio.abc.Stream | None = None
        self._parser = RespParser()
        self._lock = trio.Lock()

    @staticmethod
    def handles(url: str) -> bool:
        """URLs this connection speaks (plain TCP or a Unix socket, no TLS)."""
        return urlsplit(url).scheme in ("redis", "unix")

    async def call(self, *args: bytes | str | int) -> Any:
        """One command and its reply; an error reply raises RespError. A connection that
        was open before the call and turns out closed (Redis restarted, an idle timeout) is
        replaced once: Redis never read the command from it."""
        request = encode_command(args)
        async with self._lock:
            stale = self._stream is not None
            try:
                if self._stream is None:
                    await self._open()
                reply = await self._roundtrip(request, fresh=not stale)
            except _Closed:
                await self.aclose()
                try:
                    await self._open()
                    reply = await self._roundtrip(request, fresh=True)
                except BaseException:
                    await self.aclose()
                    raise
            except BaseException:
                await self.aclose()
                raise
        if isinstance(reply, RespError):
            raise reply
        return reply

    async def _open(self) -> None:
        if self.path is not None:
            stream: trio.abc.Stream = await trio.open_unix_socket(self.path)
        else:
            stream = await trio.open_tcp_stream(self.host, self.port)
        self._stream, self._parser = stream, RespParser()
        if self.password is not None:
            auth = (("AUTH", self.username, self.password) if self.username
                    else ("AUTH", self.password))
            reply = await self._roundtrip(encode_command(auth))
            if isinstance(reply, RespError):
                raise RespProtocolError(f"Redis refused the password: {reply}")
        if self.db:
            reply = await self._roundtrip(encode_command(("SELECT", self.db)))
            if isinstance(reply, RespError):
                raise RespProtocolError(f"Redis refused database {self.db}: {reply}")

    async def _roundtrip(self, request: bytes, *, fresh: bool = True) -> Any:
        """Send `request`, read its reply. On a connection reused from an earlier call, a
        close seen before any byte of the reply raises _Closed (the caller may retry)."""
        stream = self._stream
        assert stream is not None
        retryable = not fresh  # until a byte of the reply arrives
        try:
            await stream.send_all(request)
            while (reply := self._parser.reply()) is _MISSING:
                data = await stream.receive_some(65536)
                if not data:
                    raise trio.BrokenResourceError("end of stream")
                retryable = False
                self._parser.feed(data)
        except (trio.BrokenResourceError, OSError) as exc:
            if retryable:
                raise _Closed from None
            raise RespProtocolError(f"Redis closed the connection ({exc})") from None
        return reply

    async def aclose(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await trio.aclose_forcefully(stream)


class RespPool:
    """Up to `size` RespConnections to one URL, a command at a time on each: appends from
    several publishers are in flight together, as with coredis's pool, instead of queueing
    behind one round trip each."""

    def __init__(self, url: str, size: int = 8) -> None:
        self.url = url
        self._idle: list[RespConnection] = []
        self._slots = trio.Semaphore(size)

    async def call(self, *args: bytes | str | int) -> Any:
        async with self._slots:
            connection = self._idle.pop() if self._idle else RespConnection(self.url)
            try:
                return await connection.call(*args)
            finally:
                self._idle.append(connection)  # a failed one reopens on its next call

    async def aclose(self) -> None:
        for connection in self._idle:
            await connection.aclose()
