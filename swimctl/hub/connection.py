"""One WebSocket connection's shell: reading client frames (wire/websocket.py) from the
socket, answering pings, and the closing handshake; every byte written goes through the
connection's outbox.

Per connection there is one task (the one reading) and, only once a backlog forms, the
outbox's writer. A close the hub starts (`send_close`) puts the close frame in the outbox and
gives the peer `close_timeout` seconds to answer before the socket is closed anyway.

Control frames are not free: each ping the client sends takes a token of the connection's
inbound rate limit (`allow_control`, set by the server), and each pong counts toward the
outbox bound like any reply, so a client that pings without reading is closed (4003 for the
rate, 4008 for the backlog) with the hub's memory flat.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from swimctl.core.protocol import CLOSE_SLOW
from swimctl.hub.outbox import CONTROL, Outbox
from swimctl.wire.frames import OP_PONG, close_frame, control_frame
from swimctl.wire.websocket import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    FrameReader,
    Violation,
)

log = logging.getLogger("swimctl.server")

RECEIVE_SIZE = 65536
# After the hub's close frame, what the peer may still send while the hub waits for its close
# frame; past this the hub stops parsing (a flood that goes on after 4003 costs nothing more).
CLOSE_DRAIN_LIMIT = 256 * 1024

OnMessage = Callable[[str | bytes], Awaitable[None]]
# Called for each ping or pong frame received: False means over the rate (no pong is sent).
AllowControl = Callable[[], bool]


class Link:
    """The WebSocket state of one connection after its 101, with the reason it ended."""

    __slots__ = ("close_received", "close_sent", "ended_by", "on_overflow", "outbox", "reader",
                 "scope", "stream", "timeout")

    def __init__(self, stream: trio.abc.Stream, outbox: Outbox, reader: FrameReader,
                 close_timeout: float) -> None:
        self.stream = stream
        self.outbox = outbox
        self.reader = reader
        self.timeout = close_timeout
        self.scope = trio.CancelScope()  # its deadline is the closing handshake's
        self.close_sent = False
        self.close_received: tuple[int | None, str] | None = None
        self.ended_by = "connection lost"
        # What to do when a pong passes the outbox bound: the server hands this to the hub's
        # slow-consumer policy once the client is admitted.
        self.on_overflow: Callable[[], None] = self._overflow

    def _overflow(self) -> None:
        self.outbox.discard_backlog()
        self.send_close(CLOSE_SLOW, "slow consumer")

    def send_close(self, code: int | None, reason: str = "") -> None:
        """Start the closing handshake: the close frame goes out (after what is queued) and
        the peer has `timeout` seconds to answer. The first close wins."""
        if self.close_sent:
            return
        self.ended_by = f"hub closed ({code}{': ' + reason if reason else ''})"
        self._push_close(code, reason)
        self.scope.deadline = min(self.scope.deadline, trio.current_time() + self.timeout)

    def _push_close(self, code: int | None, reason: str = "") -> None:
        self.close_sent = True
        self.outbox.accept_events = False
        self.outbox.push(close_frame(code, reason), CONTROL)

    async def serve(self, on_message: OnMessage, pending: bytes = b"",
                    allow_control: AllowControl | None = None) -> None:
        """Hand client data messages to `on_message` until the connection closes, either
        side first. Pings are answered (when `allow_control` allows), pongs dropped; a
        protocol error is answered with its close code. `pending` is what arrived with the
        upgrade request."""
        with self.scope:
            data: bytes | bytearray = pending
            drained = 0
            while True:
                if data:
                    try:
                        frames = self.reader.feed(data)
                    except Violation as exc:
                        if not self.close_sent:
                            self.ended_by = f"protocol error ({exc.code}: {exc.reason})"
                            self._push_close(exc.code, exc.reason[:120])
                        return
                    for kind, value in frames:
                        if kind in (TEXT, BINARY):
                            if not self.close_sent:
                                await on_message(value)
                        elif kind == PING:
                            if self.close_sent:
                                continue
                            if allow_control is not None and not allow_control():
                                continue
                            if not self.outbox.push(control_frame(OP_PONG, value), CONTROL):
                                self.on_overflow()
                        elif kind == PONG:
                            if allow_control is not None and not self.close_sent:
                                allow_control()
                        elif kind == CLOSE:
                            code, reason = value
                            self.close_received = (code, reason)
                            if not self.close_sent:
                                self.ended_by = f"peer closed ({code if code else 'no code'})"
                                self._push_close(code)  # echo it (RFC 6455 5.5.1)
                            return
                data = await self.stream.receive_some(RECEIVE_SIZE)
                if not data:
                    self.ended_by = ("peer dropped the connection" if not self.close_sent
                                     else self.ended_by + "; the peer dropped the connection")
                    return
                if self.close_sent:
                    drained += len(data)
                    if drained > CLOSE_DRAIN_LIMIT:
                        self.ended_by += "; the peer kept sending instead of closing"
                        return
        if self.scope.cancelled_caught and self.close_received is None:
            self.ended_by += "; no close frame from the peer in time"

    async def finish(self) -> None:
        """Let queued bytes (a close frame) reach the socket, briefly, then half-close and
        read until the peer closes: closing a socket with unread input sends a reset, which
        can destroy the close frame before the peer reads it."""
        with trio.move_on_after(self.timeout) as scope:
            scope.shield = True
            await self.outbox.drained()
            if self.outbox.broken:
                return
            try:
                if isinstance(self.stream, trio.SocketStream):
                    await self.stream.send_eof()
                with trio.move_on_after(min(self.timeout, 1.0)):
                    while await self.stream.receive_some(RECEIVE_SIZE):
                        pass
            except (trio.BusyResourceError, trio.BrokenResourceError,
                    trio.ClosedResourceError, OSError):
                pass
