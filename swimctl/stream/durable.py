"""The in-process log kept across restarts: the memory log (stream/memory.py) plus a journal
in a state directory, replayed at start, so a restarted hub continues the same epoch and `seq`
and a client resumes with `recovered: true` (the embedded default of `swimctl serve`).

Durability: each event is written to the journal (one `write(2)`, to the page cache) before
it is held or delivered, so a client can only ever see an event the journal has. That
survives the process dying any way it can (`kill -9`, out of memory, a crash): nothing
delivered is lost, no `seq` is ever reused. There is no `fsync` per event; the journal is
synced when the hub stops cleanly. A crash of the machine itself (power, kernel) can lose the
journal's last writes, so a start that finds the journal not closed cleanly *and* the machine
rebooted since (Linux boot id) opens a new epoch instead: clients then get `recovered: false`,
as after any lost history, rather than a `seq` that meant another event before.

Layout of the state directory:

- `LOCK`: held (flock) while a hub runs; a second hub on the same directory is refused.
- `state.json`: format, epoch, boot id, and whether the journal was closed cleanly.
- `journal-<first seq>.jsonl`: segments of records, one line each:
  `<crc32 hex> <named 0|1> <wall ms> <envelope JSON>`. A segment whose events history has
  dropped (count, age, bytes) is deleted, so the directory holds about the history's byte
  bound plus one segment.

A torn last record (the process died inside a write) is cut off at start; it was never
delivered. Any other damage (a bad record followed by good ones, a gap in `seq`) means the
journal cannot be trusted: the hub logs it and opens a new epoch. A failed write while
serving (full disk, I/O error) keeps the hub serving from memory: one ERROR, the state file is
removed so the next start opens a new epoch, and the journal is not written again until then
(`condition` shows it in /healthz and /metrics).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import zlib
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import orjson
import trio

from swimctl.core.tmi import TmiBook
from swimctl.stream.base import LogEvent, new_epoch
from swimctl.stream.memory import DEFAULT_HISTORY_BYTES, MemoryLog

log = logging.getLogger("swimctl.state")

FORMAT = 1
STATE_FILE = "state.json"
LOCK_FILE = "LOCK"
SEGMENT_PREFIX = "journal-"
SEGMENT_SUFFIX = ".jsonl"
MIN_SEGMENT = 1 << 20
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


class StateDirError(Exception):
    """The state directory cannot be used (in use by another hub, not writable)."""


class Trouble(Protocol):
    """Where a failure while serving is reported (hub/health.Condition: /healthz, /metrics,
    one log line)."""

    def fail(self, problem: str, consequence: str = "") -> None: ...


class LogTrouble:
    def fail(self, problem: str, consequence: str = "") -> None:
        log.error("state directory: %s; %s", problem, consequence)


def current_boot_id() -> str | None:
    try:
        return BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def encode_record(event: LogEvent, named: bool, wall: float) -> bytes:
    body = b"%d %d %s" % (named, int(wall * 1000), event.payload)
    return b"%08x %s\n" % (zlib.crc32(body), body)


def decode_record(line: bytes) -> tuple[bool, float, bytes, dict[str, Any]] | None:
    """(named, wall time, payload, envelope) of one whole record line, or None if damaged."""
    crc, _, body = line.partition(b" ")
    try:
        if len(crc) != 8 or int(crc, 16) != zlib.crc32(body):
            return None
        named, wall, payload = body.split(b" ", 2)
        envelope = orjson.loads(payload)
    except ValueError:  # orjson.JSONDecodeError is a ValueError
        return None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("seq"), int):
        return None
    return named == b"1", int(wall) / 1000.0, payload, envelope


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_state(directory: Path, state: dict[str, Any]) -> None:
    """Replace state.json atomically and durably."""
    target = directory / STATE_FILE
    tmp = directory / (STATE_FILE + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(orjson.dumps(state))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    _fsync_dir(directory)


class Segment:
    __slots__ = ("first", "path", "size")

    def __init__(self, first: int, path: Path, size: int) -> None:
        self.first = first
        self.path = path
        self.size = size


class DurableLog(MemoryLog):
    """MemoryLog whose events are journaled in `directory` before they are delivered."""

    def __init__(self, directory: str | os.PathLike[str], *, history_size: int = 100_000,
                 history_age: float = 3600.0, history_bytes: int = DEFAULT_HISTORY_BYTES,
                 dedupe_size: int = 100_000, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, boot_id: str | None = None,
                 trouble: Trouble | None = None) -> None:
        super().__init__(history_size=history_size, history_age=history_age,
                         history_bytes=history_bytes, dedupe_size=dedupe_size, clock=clock)
        self.directory = Path(directory)
        self.wall = wall
        self.boot_id = boot_id if boot_id is not None else current_boot_id()
        self.trouble: Trouble = trouble if trouble is not None else LogTrouble()
        self.segment_limit = max(MIN_SEGMENT, (history_bytes or 64 << 20) // 16)
        self.recovered = 0  # events read back from the journal at start
        self._segments: deque[Segment] = deque()
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._failed = False
        self._open()

    # -- start -------------------------------------------------------------------------------

    def _open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock()
            state = self._read_state()
            self._load(state)
            write_state(self.directory, self._state(clean=False))
        except OSError as exc:
            self.close(clean=False)
            raise StateDirError(f"state directory {self.directory}: "
                                f"{exc.strerror or exc}") from None
        except StateDirError:
            self.close(clean=False)
            raise

    def _lock(self) -> None:
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateDirError(f"state directory {self.directory} is in use by another hub; "
                                "give each hub its own --state-dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, b"%d\n" % os.getpid())
        self._lock_fd = fd

    def _read_state(self) -> dict[str, Any] | None:
        try:
            raw = (self.directory / STATE_FILE).read_bytes()
        except FileNotFoundError:
            return None
        try:
            state = orjson.loads(raw)
        except orjson.JSONDecodeError:
            state = None
        if not isinstance(state, dict) or state.get("format") != FORMAT \
                or not isinstance(state.get("epoch"), str):
            log.warning("%s is not a state file of this version: starting a new epoch",
                        self.directory / STATE_FILE)
            return None
        return state

    def _state(self, *, clean: bool) -> dict[str, Any]:
        return {"format": FORMAT, "epoch": self._epoch, "boot_id": self.boot_id,
                "clean": clean}

    def _segment_files(self) -> list[Segment]:
        found = []
        for path in self.directory.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}"):
            digits = path.name[len(SEGMENT_PREFIX):-len(SEGMENT_SUFFIX)]
            if digits.isdigit():
                found.append(Segment(int(digits), path, path.stat().st_size))
        return sorted(found, key=lambda s: s.first)

    def _start_over(self, why: str | None) -> None:
        """A new epoch with an empty journal."""
        if why:
            log.warning("%s: starting a new epoch (clients resuming get recovered: false)", why)
        for segment in self._segment_files():
            segment.path.unlink()
        self._segments.clear()
        self._epoch = new_epoch()
        self._head = self.recovered = 0
        self.history.clear()
        self._seen.clear()

    def _load(self, state: dict[str, Any] | None) -> None:
        if state is None:
            self._start_over(None)
            return
        if not state.get("clean") and self.boot_id is not None \
                and state.get("boot_id") != self.boot_id:
            self._start_over(f"the journal in {self.directory} was not closed cleanly and "
                             "the machine restarted since: its last writes may be lost")
            return
        self._epoch = state["epoch"]
        segments = self._segment_files()
        now_wall, now = self.wall(), self.clock()
        expected: int | None = None
        for index, segment in enumerate(segments):
            data = segment.path.read_bytes()
            pos = 0
            while pos < len(data):
                end = data.find(b"\n", pos)
                record = decode_record(data[pos:end]) if end >= 0 else None
                seq = record[3]["seq"] if record is not None else None
                if record is None or (expected is not None and seq != expected) \
                        or (expected is None and seq != segment.first):
                    last = index == len(segments) - 1
                    if last and end < 0:  # a torn last write: never delivered
                        log.warning("%s: cut off a partly written last record (%d bytes)",
                                    segment.path, len(data) - pos)
                        os.truncate(segment.path, pos)
                        segment.size = pos
                        break
                    self._start_over(f"{segment.path} is damaged at byte {pos}")
                    return
                named, wall, payload, envelope = record
                event = LogEvent(envelope["seq"], envelope["type"], envelope["timestamp"],
                                 envelope["event_id"], None, payload,
                                 now - max(0.0, now_wall - wall))
                if named:
                    self._remember(event.event_id, event.seq)
                self._hold(event)
                expected = event.seq + 1
                self.recovered += 1
                pos = end + 1
            self._segments.append(segment)
        self.history.compact_all()  # read back for resume only
        self.trim()
        if self.recovered:
            log.info("state directory %s: epoch %s continues at seq %d (%d events read back, "
                     "%d held for resume)", self.directory, self._epoch, self._head,
                     self.recovered, self.held)

    # -- appending ---------------------------------------------------------------------------

    def _store(self, event: LogEvent, named: bool) -> None:
        if self._failed:
            return
        record = encode_record(event, named, self.wall())
        try:
            segment, fd = self._writable(event.seq)
            view = memoryview(record)
            while view:
                written = os.write(fd, view)
                view = view[written:]
                segment.size += written
        except OSError as exc:
            self._fail(exc)

    def _writable(self, seq: int) -> tuple[Segment, int]:
        """The segment to append `seq` to, open: the last one until it is full."""
        last = self._segments[-1] if self._segments else None
        if last is not None and last.size < self.segment_limit:
            if self._fd is None:
                self._fd = os.open(last.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            return last, self._fd
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        segment = Segment(seq, self.directory / f"{SEGMENT_PREFIX}{seq:012d}{SEGMENT_SUFFIX}",
                          0)
        self._fd = os.open(segment.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._segments.append(segment)
        return segment, self._fd

    def _fail(self, exc: OSError) -> None:
        """Keep serving from memory; make sure the next start cannot trust this journal."""
        self._failed = True
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        try:
            (self.directory / STATE_FILE).unlink()
            consequence = ("history is kept in memory only from now on; the next start "
                           "opens a new epoch")
        except OSError:
            consequence = ("history is kept in memory only from now on; the state file "
                           "could not be removed either")
        self.trouble.fail(f"cannot write to {self.directory}: {exc.strerror or exc}",
                            consequence)

    def _trimmed(self) -> None:
        """Delete segments whose every event history has dropped (never the last one)."""
        events = self.history.events
        first_held = events[0].seq if events else self._head + 1
        segments = self._segments
        while len(segments) > 1 and segments[1].first <= first_held:
            segment = segments.popleft()
            try:
                segment.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot delete %s: %s", segment.path, exc.strerror or exc)

    @property
    def disk_bytes(self) -> int:
        return sum(segment.size for segment in self._segments)

    # -- stopping ----------------------------------------------------------------------------

    def close(self, *, clean: bool = True) -> None:
        """Sync the journal and mark it closed cleanly (when it is whole), release the lock."""
        if self._fd is not None:
            try:
                if clean:
                    os.fsync(self._fd)
            except OSError:
                clean = False
            os.close(self._fd)
            self._fd = None
        if clean and not self._failed and self._lock_fd is not None:
            try:
                write_state(self.directory, self._state(clean=True))
            except OSError as exc:
                log.error("cannot mark %s closed cleanly: %s", self.directory,
                          exc.strerror or exc)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Hands the hub what was read back (its active programs and latest positions come
        from it), then owns the close at shutdown."""
        try:
            if self._restore is not None and self.recovered:
                events = list(self.history.events)
                book = TmiBook()
                for event in events:
                    if event.type.startswith("tmi."):
                        book.apply(event.type, event.data)
                self._restore(events, book.active())
            task_status.started()
            await trio.sleep_forever()
        finally:
            self.close()
