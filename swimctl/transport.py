"""One writer per connection: the outbox, and the stream trio-websocket writes through.

The hub owns every byte written to a socket. Shared, pre-built frames go out with a plain
non-blocking write while the kernel buffer has room (no task switch, no copy); whatever does
not fit waits in the outbox, drained in order by the connection's single writer task.
trio-websocket's own writes (handshake response, pongs, close frames) enter the same outbox as
whole chunks, so they never splice into a half-sent frame.
"""

from __future__ import annotations

import errno
import os
from collections import deque
from typing import Any

import trio

# What a queued chunk is, for the slow-client policy.
CONTROL = 0  # handshake, replies, close frames: never dropped
EVENT = 1  # lifecycle / TMI / other events: kept until the bound is passed
POSITIONS = 2  # positions batches: state, so a newer batch replaces a queued older one


class Outbox:
    """Unsent bytes of one connection, bounded; `push` never waits."""

    def __init__(self, stream: trio.abc.Stream, fd: int | None, limit: int) -> None:
        self.stream = stream
        self.fd = fd  # set for plain TCP: direct writes; None (TLS): writer task only
        self.limit = limit
        self._chunks: deque[bytes] = deque()
        self._kinds: deque[int] = deque()
        self._head_sent = 0  # bytes of _chunks[0] already written
        self.queued_bytes = 0
        self.bytes_sent = 0
        self.frames_sent = 0
        self.broken = False
        self.accept_events = True
        self._wakeup = trio.Event()
        self._drained = trio.Event()
        self._drained.set()

    # -- producers ---------------------------------------------------------------------------

    def push(self, data: bytes, kind: int = EVENT) -> bool:
        """Queue or write one whole chunk. False means the bound was passed (slow consumer)."""
        if self.broken:
            return True
        if kind != CONTROL and not self.accept_events:
            return True
        if not self._chunks and self.fd is not None:
            try:
                sent = os.write(self.fd, data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._break()
                return True
            self.bytes_sent += sent
            if sent == len(data):
                self.frames_sent += 1
                return True
            self._chunks.append(data)
            self._kinds.append(CONTROL)  # partly written: it must go out whole
            self._head_sent = sent
            self.queued_bytes += len(data) - sent
            self._wake()
            return self.queued_bytes <= self.limit
        if kind == POSITIONS and self._chunks:
            self._drop_queued_positions()
        self._chunks.append(data)
        self._kinds.append(kind)
        self.queued_bytes += len(data)
        self._wake()
        return self.queued_bytes <= self.limit or kind == CONTROL

    def _drop_queued_positions(self) -> None:
        """Positions are state: an older queued batch is worth nothing once a newer exists."""
        if POSITIONS not in self._kinds:
            return
        keep_c: deque[bytes] = deque()
        keep_k: deque[int] = deque()
        for index, (chunk, kind) in enumerate(zip(self._chunks, self._kinds, strict=True)):
            if kind == POSITIONS and not (index == 0 and self._head_sent):
                self.queued_bytes -= len(chunk)
                continue
            keep_c.append(chunk)
            keep_k.append(kind)
        self._chunks, self._kinds = keep_c, keep_k

    def discard_backlog(self) -> None:
        """Drop every queued chunk except a partly written head (framing stays intact)."""
        keep = 1 if self._chunks and self._head_sent else 0
        while len(self._chunks) > keep:
            chunk = self._chunks.pop()
            self._kinds.pop()
            self.queued_bytes -= len(chunk)
        self.accept_events = False

    def _wake(self) -> None:
        self._drained = trio.Event() if self._drained.is_set() else self._drained
        self._wakeup.set()

    def _break(self) -> None:
        self.broken = True
        self._chunks.clear()
        self._kinds.clear()
        self.queued_bytes = 0
        self._head_sent = 0
        self._drained.set()
        self._wakeup.set()

    # -- the writer --------------------------------------------------------------------------

    async def run_writer(self) -> None:
        """Drain the outbox in order; the only task that waits on this socket's writability."""
        while not self.broken:
            if not self._chunks:
                self._drained.set()
                self._wakeup = trio.Event()
                await self._wakeup.wait()
                continue
            if self.fd is not None:
                await self._write_direct()
            else:
                chunk = self._chunks.popleft()
                self._kinds.popleft()
                self.queued_bytes -= len(chunk)
                try:
                    await self.stream.send_all(chunk)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._break()
                    return
                self.bytes_sent += len(chunk)
                self.frames_sent += 1

    async def _write_direct(self) -> None:
        assert self.fd is not None
        while self._chunks and not self.broken:
            head = self._chunks[0]
            try:
                sent = os.write(self.fd, memoryview(head)[self._head_sent:])
            except BlockingIOError:
                try:
                    await trio.lowlevel.wait_writable(self.fd)
                except (trio.ClosedResourceError, OSError):
                    self._break()
                    return
                continue
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                self._break()
                return
            self._head_sent += sent
            self.queued_bytes -= sent
            self.bytes_sent += sent
            if self._head_sent >= len(head):
                self._chunks.popleft()
                self._kinds.popleft()
                self._head_sent = 0
                self.frames_sent += 1

    async def drained(self) -> None:
        await self._drained.wait()

    @property
    def depth(self) -> int:
        return len(self._chunks)


class OutboxStream(trio.abc.Stream):
    """The stream handed to trio-websocket: reads pass through, writes join the outbox."""

    def __init__(self, inner: trio.abc.Stream, outbox: Outbox, close_timeout: float) -> None:
        self.inner = inner
        self.outbox = outbox
        self.close_timeout = close_timeout
        self.closed = trio.Event()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.outbox.broken or self.closed.is_set():
            raise trio.BrokenResourceError("connection is closed")
        self.outbox.push(bytes(data), CONTROL)
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        """Let queued bytes (a close frame) reach the socket, briefly, then close it."""
        if self.closed.is_set():
            await trio.lowlevel.checkpoint()
            return
        self.closed.set()
        with trio.move_on_after(self.close_timeout) as scope:
            scope.shield = True
            await self.outbox.drained()
            if not self.outbox.broken:
                await self._linger()
        self.outbox._break()
        await trio.aclose_forcefully(self.inner)

    async def _linger(self) -> None:
        """Half-close, then read until the peer closes: closing a socket with unread input
        sends a reset, which can destroy the close frame we just sent before the peer reads
        it."""
        try:
            if isinstance(self.inner, trio.SocketStream):
                await self.inner.send_eof()
            with trio.move_on_after(min(self.close_timeout, 1.0)):
                while await self.inner.receive_some(65536):
                    pass
        except (trio.BusyResourceError, trio.BrokenResourceError, trio.ClosedResourceError,
                OSError):
            pass

    def __getattr__(self, name: str) -> Any:
        # trio-websocket looks up `socket` / `transport_stream` for endpoint names.
        return getattr(self.inner, name)
