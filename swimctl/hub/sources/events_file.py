"""Follow a JSON Lines event file that other processes append to (`serve --events-file`).

Nothing lost, nothing repeated: the byte offset after the last published line is persisted
beside the file (atomically), so a restarted hub resumes exactly there. Truncation (the file
shrank) and rotation (a new inode at the path) start over from the new file's first byte; a
partial last line waits for its newline; a bad line is counted, logged and skipped.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import attrs
import orjson
import trio

from swimctl.core.batches import FrameTooLarge
from swimctl.core.model import EnvelopeError, envelope_from_line
from swimctl.hub.health import Condition
from swimctl.hub.leadership import Leadership, SoleLeader
from swimctl.stream.base import LogFenced, LogUnavailable

log = logging.getLogger("swimctl.events_file")

READ_CHUNK = 1 << 20
MAX_LINE = 1 << 20  # a "line" longer than this without a newline is garbage; skip it


@attrs.define
class FollowState:
    inode: int = 0
    offset: int = 0


def offset_path(path: Path) -> Path:
    return path.with_name(path.name + ".offset")


def load_state(path: Path) -> FollowState:
    """The persisted position; a fresh start when there is none. An offset file that exists
    but cannot be read raises OSError (the caller reports it and starts over: repeating is
    recoverable, skipping is not)."""
    try:
        data = offset_path(path).read_bytes()
    except FileNotFoundError:
        return FollowState()
    try:
        raw = orjson.loads(data)
        return FollowState(inode=int(raw["inode"]), offset=int(raw["offset"]))
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        return FollowState()


def save_state(path: Path, state: FollowState) -> None:
    """Atomically replace the offset file; raises OSError (and leaves no temporary) on failure."""
    target = offset_path(path)
    tmp = target.with_name(target.name + ".tmp")
    try:
        tmp.write_bytes(orjson.dumps({"inode": state.inode, "offset": state.offset}))
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@attrs.define
class LineSplitter:
    """Bytes in, complete lines out; keeps the partial tail (pure)."""

    buffer: bytearray = attrs.field(factory=bytearray)

    def feed(self, chunk: bytes) -> list[tuple[bytes, int]]:
        """Complete lines with the byte length each consumed (newline included)."""
        self.buffer += chunk
        out: list[tuple[bytes, int]] = []
        start = 0
        while True:
            end = self.buffer.find(b"\n", start)
            if end < 0:
                break
            out.append((bytes(self.buffer[start:end]), end + 1 - start))
            start = end + 1
        del self.buffer[:start]
        return out


@attrs.define
class FollowerStats:
    published: int = 0
    duplicates: int = 0
    bad_lines: int = 0
    restarts: int = 0


class EventsFileFollower:
    def __init__(self, hub: Any, path: str | os.PathLike[str], poll_interval: float = 0.2,
                 persist: bool = True, lead: Leadership | None = None) -> None:
        self.hub = hub
        # With a shared lead (hubs on a broker) one hub follows the file at a time, its offset
        # lives with the lease in Redis, and its writes carry the lease.
        self.lead: Leadership = lead or SoleLeader("events")
        self.path = Path(path)
        self.poll_interval = poll_interval
        self.persist = persist
        self.stats = FollowerStats()
        self.condition = Condition("events file offset", log)
        self.state = FollowState()
        self._unsaved = False  # the position moved past what the offset file says
        if persist and not self.lead.shared:
            try:
                self.state = load_state(self.path)
            except OSError as exc:
                self.condition.fail(f"cannot read {offset_path(self.path)}: "
                                    f"{exc.strerror or exc}",
                                    f"reading {self.path} from its start, so lines published "
                                    "before are published again")

    def _save(self) -> None:
        """Persist the position: called in a worker thread. A failure never stops the hub; the
        follower keeps publishing (the file is the source of truth, so nothing is lost) and
        tries again on every later save. Should the hub restart before a save succeeds, the
        lines since the last good save are read again."""
        state = FollowState(self.state.inode, self.state.offset)
        try:
            save_state(self.path, state)
        except OSError as exc:
            self.condition.fail(f"cannot save {offset_path(self.path)}: {exc.strerror or exc}",
                                "publishing goes on; retrying each poll")
            return
        self._unsaved = (self.state.inode, self.state.offset) != (state.inode, state.offset)
        self.condition.clear()

    def _open(self, resume: bool) -> tuple[Any, int] | None:
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - lives across polls
        except FileNotFoundError:
            return None
        st = os.fstat(handle.fileno())
        offset = 0
        if resume and st.st_ino == self.state.inode and st.st_size >= self.state.offset:
            offset = self.state.offset
        elif resume and self.state.inode:
            log.warning("events file %s changed while the hub was down: reading it from the "
                        "start", self.path)
        handle.seek(offset)
        self.state = FollowState(inode=st.st_ino, offset=offset)
        return handle, st.st_ino

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        lead = self.lead
        if not lead.shared:
            await self._follow(task_status)
            return
        task_status.started()

        async def term() -> None:
            try:
                saved = await lead.load_state()
            except Exception as exc:  # the broker's trouble: the file is read from its start
                log.warning("events file %s: the offset could not be read (%s)", self.path,
                            type(exc).__name__)
                saved = None
            self.state = FollowState()
            if saved:
                doc = orjson.loads(saved)
                self.state = FollowState(int(doc["inode"]), int(doc["offset"]))
                log.info("events file %s: taking over at byte %d", self.path, self.state.offset)
            try:
                await self._follow(trio.TASK_STATUS_IGNORED)
            except LogFenced:
                lead.give_up("a publish was refused: the lease is another hub's")

        await lead.while_leading(term)

    async def _persist(self) -> None:
        """Save the position: with the lease in Redis when shared, else in the offset file."""
        if not self.lead.shared:
            await trio.to_thread.run_sync(self._save)
            return
        state = FollowState(self.state.inode, self.state.offset)
        try:
            await self.lead.save_state(orjson.dumps({"inode": state.inode,
                                                     "offset": state.offset}))
        except Exception:  # the broker's trouble (reported by the log); the next save tries
            return
        self._unsaved = (self.state.inode, self.state.offset) != (state.inode, state.offset)

    async def _follow(self, task_status: Any) -> None:
        started = False
        handle = None
        splitter = LineSplitter()
        resume = True
        try:
            while True:
                if handle is None:
                    opened = await trio.to_thread.run_sync(self._open, resume)
                    resume = False
                    if opened is not None:
                        handle, _ = opened
                        splitter = LineSplitter()
                if not started:
                    task_status.started()
                    started = True
                if handle is None:
                    await trio.sleep(self.poll_interval)
                    continue
                chunk = await trio.to_thread.run_sync(handle.read, READ_CHUNK)
                if chunk:
                    if not await self._consume(splitter, chunk):
                        # The log does not answer: read again from the last line published.
                        handle.close()
                        handle, resume = None, True
                        await trio.sleep(self.poll_interval)
                    continue
                if self.persist and self._unsaved:  # an earlier save failed: try again
                    await self._persist()
                # At the end: has the file been truncated or replaced?
                try:
                    st = await trio.to_thread.run_sync(os.stat, self.path)
                except FileNotFoundError:
                    await trio.sleep(self.poll_interval)
                    continue
                if st.st_ino != self.state.inode or st.st_size < self.state.offset:
                    what = "rotated" if st.st_ino != self.state.inode else "truncated"
                    log.info("events file %s was %s: following the new file", self.path, what)
                    self.stats.restarts += 1
                    handle.close()
                    handle = None
                    self.state = FollowState(inode=st.st_ino, offset=0)
                    continue
                await trio.sleep(self.poll_interval)
        finally:
            if handle is not None:
                handle.close()
            if self.persist and self.state.inode and not self.lead.shared:
                self._save()  # quick, and must happen even on cancel

    async def _consume(self, splitter: LineSplitter, chunk: bytes) -> bool:
        """Publish the complete lines of `chunk`. The offset moves past a line only once it is
        published (or known bad), so a save, even one in a cancelled `finally`, never skips
        an event. False when the log stopped answering (the rest is read again later)."""
        lines = splitter.feed(chunk)
        lead = self.lead
        fence = (lead.lease_key, lead.fence) if lead.shared and lead.fence else None
        for index, (line, consumed) in enumerate(lines):
            if line.strip():
                try:
                    env = envelope_from_line(line, self.hub.channels)
                    event_id = env.event_id
                    if event_id is None and lead.shared:
                        # Named by where it lies, so a line published twice across a
                        # handover is stored once.
                        event_id = f"file:{self.state.inode}:{self.state.offset}"
                    appended = await self.hub.publish(
                        env.type, env.data, timestamp=env.timestamp, event_id=event_id,
                        fence=fence)
                except LogUnavailable:
                    if self._unsaved and self.persist:
                        await self._persist()
                    return False
                except (EnvelopeError, FrameTooLarge) as exc:
                    self.stats.bad_lines += 1
                    log.warning("events file %s: bad line skipped (%s)", self.path, exc)
                else:
                    duplicate = appended.duplicate
                    self.stats.duplicates += duplicate
                    self.stats.published += not duplicate
            self.state.offset += consumed
            self._unsaved = True
            if index % 200 == 199:
                await trio.lowlevel.checkpoint()
        if len(splitter.buffer) > MAX_LINE:
            self.stats.bad_lines += 1
            log.warning("events file %s: a line passed %d bytes without a newline; skipped",
                        self.path, MAX_LINE)
            self.state.offset += len(splitter.buffer)
            self._unsaved = True
            splitter.buffer.clear()
        if self.persist and self._unsaved:
            await self._persist()
        return True
