"""One writer per connection: the outbox.

The hub owns every byte written to a socket. Shared, pre-built frames go out with a plain
non-blocking write while the kernel buffer has room (no task switch, no copy); whatever does
not fit waits in the outbox, drained in order by the connection's single writer task. The
handshake response, replies, pongs and close frames enter the same outbox as whole chunks,
so they never splice into a half-sent frame.
"""

from __future__ import annotations

import errno
import os
from collections import deque
from itertools import islice

import trio

from swimctl.wire.encodings import PLAIN

# What a queued chunk is, for the slow-client policy. Every kind counts toward the bound.
CONTROL = 0  # the 101, replies, pongs, close frames: never replaced, queued even after close
EVENT = 1  # lifecycle / TMI / other events: kept until the bound is passed
POSITIONS = 2  # positions batches: state, so a newer batch replaces a queued older one
# A batch may come in parts (core/batches.py): a POSITIONS chunk is pushed with its batch id,
# and a queued batch is dropped only whole, only for a newer batch, and never once a byte of
# it went out, so a client never sees part of a batch without the rest.

WRITEV_CHUNKS = 128  # chunks gathered into one writev by the writer (IOV_MAX is 1024)
# What a queued chunk costs besides its bytes (the bytes object's header, two deque slots),
# counted toward the bound: a million 2-byte pongs are ~60 MB of memory, not 2 MB.
CHUNK_COST = 64

class Demotions:
    """Counts outboxes leaving the direct state, one counter per hub: a list of file
    descriptors taken from direct outboxes (hub/plans.TargetPlan) may be written to while
    the count stays the same."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class Outbox:
    """Unsent bytes of one connection, bounded; `push` never waits.

    Slotted, and the queues, the writer task and its events exist only once a backlog does:
    10,000 idle connections should cost what their sockets cost, not ~2 KiB of empty deques
    and a sleeping task each.
    """

    __slots__ = (
        "_accept",
        "_batches",
        "_chunks",
        "_demotions",
        "_drained",
        "_head_sent",
        "_kinds",
        "_nursery",
        "_started",
        "_wakeup",
        "_writer_started",
        "broken",
        "bytes_sent",
        "direct",
        "encoding",
        "fd",
        "limit",
        "queued_bytes",
        "stream",
    )

    def __init__(self, stream: trio.abc.Stream, fd: int | None, limit: int,
                 demotions: Demotions | None = None) -> None:
        self.stream = stream
        self._demotions = demotions if demotions is not None else Demotions()
        self.encoding = PLAIN  # which of an event's frames this connection takes
        self.fd = fd  # set for plain TCP: direct writes; None (TLS): writer task only
        self.limit = limit
        self._chunks: deque[bytes] | None = None  # made on the first backlog, then kept
        self._kinds: deque[int] | None = None
        self._batches: deque[str | None] | None = None  # each chunk's positions batch
        self._started: str | None = None  # the last positions batch a byte of went out
        self._head_sent = 0  # bytes of _chunks[0] already written
        self.queued_bytes = 0
        self.bytes_sent = 0  # through this outbox; fan-out's fast path counts in HubStats
        self.broken = False
        self._accept = True
        # True while an event may be written straight to the socket (plain TCP, open, taking
        # events, nothing queued): fan-out reads this one flag instead of four.
        self.direct = fd is not None
        self._wakeup: trio.Event | None = None  # made by the writer task
        self._drained: trio.Event | None = None  # made when someone waits for a drain
        self._nursery: trio.Nursery | None = None
        self._writer_started = False

    def attach(self, nursery: trio.Nursery) -> None:
        """The connection's nursery: the writer task starts there when a backlog first forms
        (a plain TCP connection that always keeps up never needs one)."""
        self._nursery = nursery
        if self._chunks:
            self._start_writer()

    def _start_writer(self) -> None:
        if not self._writer_started and self._nursery is not None:
            self._writer_started = True
            try:
                self._nursery.start_soon(self.run_writer)
            except RuntimeError:  # the connection is over: nothing will be written again
                self._break()

    def _wake_writer(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()
        else:
            self._start_writer()

    @property
    def accept_events(self) -> bool:
        return self._accept

    @accept_events.setter
    def accept_events(self, value: bool) -> None:
        self._accept = value
        self._update_direct()

    def _update_direct(self) -> None:
        direct = (self.fd is not None and not self.broken and self._accept
                  and not self._chunks)
        if self.direct and not direct:
            self._demotions.count += 1
        self.direct = direct

    # -- producers ---------------------------------------------------------------------------

    def push(self, data: bytes, kind: int = EVENT, batch: str | None = None) -> bool:
        """Queue or write one whole chunk. False means the bound was passed (slow consumer),
        whatever the kind: a reply or a pong the client does not read costs memory too.
        `batch` names the positions batch a POSITIONS chunk belongs to (None: its own)."""
        if self.broken:
            return True
        if kind != CONTROL and not self._accept:
            return True
        if not self._chunks and self.fd is not None:
            try:
                sent = os.write(self.fd, data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._break()
                return True
            return self.wrote(data, sent, kind, batch)
        if kind == POSITIONS and self._chunks:
            self._drop_queued_positions(batch)
        self._queue(data, kind, batch)
        return self.within_bound

    @property
    def within_bound(self) -> bool:
        """Queued bytes plus each queued chunk's overhead are within the limit."""
        return self.queued_bytes + CHUNK_COST * self.depth <= self.limit

    def wrote(self, data: bytes, sent: int, kind: int, batch: str | None = None) -> bool:
        """Account a direct write of `sent` bytes of `data` (made by `push`, or inline by the
        hub's fan-out while `direct`); queue the rest. Returns what `push` returns."""
        self.bytes_sent += sent
        if sent and kind == POSITIONS:
            self._started = batch
        if sent == len(data):
            return True
        # A partly written chunk must go out whole (CONTROL: never dropped or replaced).
        self._queue(data, CONTROL if sent else kind, batch)
        self._head_sent = sent
        self.queued_bytes -= sent
        return self.within_bound

    def wrote_frames(self, frames: list[bytes], sent: int) -> bool:
        """Account a direct write of `sent` bytes of `frames` joined (a coalesced run of
        events); queue the rest frame by frame, exactly as if each had been pushed in turn,
        so the slow-client bound and positions replacement see whole frames."""
        ok = True
        for frame in frames:
            size = len(frame)
            if sent >= size:
                sent -= size
                self.bytes_sent += size
            elif sent > 0 or not self._chunks:  # the first frame not wholly written
                ok = self.wrote(frame, sent, EVENT) and ok
                sent = 0
            else:
                ok = self.push(frame, EVENT) and ok
        return ok

    def _queue(self, data: bytes, kind: int, batch: str | None = None) -> None:
        if self._chunks is None or self._kinds is None or self._batches is None:
            self._chunks = deque()
            self._kinds = deque()
            self._batches = deque()
        self._chunks.append(data)
        self._kinds.append(kind)
        self._batches.append(batch)
        self.queued_bytes += len(data)
        if self.direct:
            self.direct = False
            self._demotions.count += 1
        self._wake_writer()

    def _drop_queued_positions(self, batch: str | None) -> None:
        """Positions are state: an older queued batch is worth nothing once a newer exists.
        Kept: the partly written head, the parts of `batch` already queued, and the rest of
        a batch that has started going out. Untagged chunks (`batch` None) are batches of
        one."""
        if not self._kinds or POSITIONS not in self._kinds:
            return
        assert self._chunks is not None and self._batches is not None
        keep = {batch, self._started} - {None} if batch is not None else set()
        keep_c: deque[bytes] = deque()
        keep_k: deque[int] = deque()
        keep_b: deque[str | None] = deque()
        for index, (chunk, kind, tag) in enumerate(
                zip(self._chunks, self._kinds, self._batches, strict=True)):
            if (kind == POSITIONS and not (index == 0 and self._head_sent)
                    and tag not in keep):
                self.queued_bytes -= len(chunk)
                continue
            keep_c.append(chunk)
            keep_k.append(kind)
            keep_b.append(tag)
        self._chunks, self._kinds, self._batches = keep_c, keep_k, keep_b
        self._update_direct()

    def discard_backlog(self) -> None:
        """Drop every queued chunk except a partly written head (framing stays intact)."""
        self.accept_events = False
        if not self._chunks or self._kinds is None:
            return
        keep = 1 if self._head_sent else 0
        while len(self._chunks) > keep:
            chunk = self._chunks.pop()
            self._kinds.pop()
            if self._batches:
                self._batches.pop()
            self.queued_bytes -= len(chunk)

    def close(self) -> None:
        """The connection is over: drop what is queued and let the writer end."""
        self._break()

    def _break(self) -> None:
        self.broken = True
        if self.direct:
            self.direct = False
            self._demotions.count += 1
        if self._chunks is not None and self._kinds is not None:
            self._chunks.clear()
            self._kinds.clear()
        if self._batches is not None:
            self._batches.clear()
        self.queued_bytes = 0
        self._head_sent = 0
        if self._drained is not None:
            self._drained.set()
        if self._wakeup is not None:
            self._wakeup.set()

    # -- the writer --------------------------------------------------------------------------

    async def run_writer(self) -> None:
        """Drain the outbox in order; the only task that waits on this socket's writability."""
        while not self.broken:
            if not self._chunks:
                self._update_direct()
                if self._drained is not None:
                    self._drained.set()
                if self._wakeup is None or self._wakeup.is_set():
                    self._wakeup = trio.Event()
                await self._wakeup.wait()
                continue
            if self.fd is not None:
                await self._write_direct(self.fd)
            else:
                assert self._chunks is not None and self._kinds is not None
                chunk = self._chunks.popleft()
                self._popped(self._kinds.popleft())
                self.queued_bytes -= len(chunk)
                try:
                    await self.stream.send_all(chunk)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._break()
                    return
                self.bytes_sent += len(chunk)

    async def _write_direct(self, fd: int) -> None:
        """Write the backlog with `writev`, up to WRITEV_CHUNKS whole chunks per system call:
        a client that fell behind in a blast catches up in a few calls, not one per frame."""
        while self._chunks and not self.broken:
            chunks, kinds = self._chunks, self._kinds
            assert kinds is not None
            head = memoryview(chunks[0])[self._head_sent:]
            try:
                if len(chunks) == 1:
                    sent = os.write(fd, head)
                else:
                    sent = os.writev(fd, [head, *islice(chunks, 1, WRITEV_CHUNKS)])
            except BlockingIOError:
                try:
                    await trio.lowlevel.wait_writable(fd)
                except (trio.ClosedResourceError, OSError):
                    self._break()
                    return
                continue
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                self._break()
                return
            self.queued_bytes -= sent
            self.bytes_sent += sent
            left = self._head_sent + sent
            while chunks and left >= len(chunks[0]):
                left -= len(chunks.popleft())
                self._popped(kinds.popleft())
            self._head_sent = left
            if left and self._batches and self._batches[0] is not None:
                self._started = self._batches[0]

    def _popped(self, kind: int) -> None:
        """A chunk left the queue to be written: its batch, if any, has started."""
        assert self._batches is not None
        batch = self._batches.popleft()
        if kind == POSITIONS or batch is not None:
            self._started = batch

    async def drained(self) -> None:
        """Return once nothing is queued (or the connection broke)."""
        while self._chunks and not self.broken:
            if self._drained is None or self._drained.is_set():
                self._drained = trio.Event()
            await self._drained.wait()

    @property
    def depth(self) -> int:
        return len(self._chunks) if self._chunks else 0
