"""Follow a JSON Lines event file that other processes append to (`serve --events-file`).

Nothing lost, nothing repeated: the byte offset after the last published line is persisted
beside the file (atomically), so a restarted hub resumes exactly there. Truncation (the file
shrank) and rotation (a new inode at the path) start over from the new file's first byte; a
partial last line waits for its newline; a bad line is counted, logged and skipped.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import attrs
import orjson
import trio

from swimctl.core.model import EnvelopeError, envelope_from_line

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
    try:
        raw = orjson.loads(offset_path(path).read_bytes())
        return FollowState(inode=int(raw["inode"]), offset=int(raw["offset"]))
    except (OSError, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        return FollowState()


def save_state(path: Path, state: FollowState) -> None:
    target = offset_path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(orjson.dumps({"inode": state.inode, "offset": state.offset}))
    os.replace(tmp, target)


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
                 persist: bool = True) -> None:
        self.hub = hub
        self.path = Path(path)
        self.poll_interval = poll_interval
        self.persist = persist
        self.stats = FollowerStats()
        self.state = load_state(self.path) if persist else FollowState()

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
                    await self._consume(splitter, chunk)
                    continue
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
            if self.persist and self.state.inode:
                save_state(self.path, self.state)  # quick, and must happen even on cancel

    async def _consume(self, splitter: LineSplitter, chunk: bytes) -> None:
        lines = splitter.feed(chunk)
        if len(splitter.buffer) > MAX_LINE:
            self.stats.bad_lines += 1
            log.warning("events file %s: a line passed %d bytes without a newline; skipped",
                        self.path, MAX_LINE)
            self.state.offset += len(splitter.buffer)
            splitter.buffer.clear()
        for index, (line, consumed) in enumerate(lines):
            self.state.offset += consumed
            if line.strip():
                try:
                    env = envelope_from_line(line)
                except EnvelopeError as exc:
                    self.stats.bad_lines += 1
                    log.warning("events file %s: bad line skipped (%s)", self.path, exc)
                else:
                    appended = await self.hub.publish(
                        env.type, env.data, timestamp=env.timestamp, event_id=env.event_id
                    )
                    duplicate = appended.duplicate
                    self.stats.duplicates += duplicate
                    self.stats.published += not duplicate
            if index % 200 == 199:
                await trio.lowlevel.checkpoint()
        if self.persist and lines:
            await trio.to_thread.run_sync(save_state, self.path, self.state)
