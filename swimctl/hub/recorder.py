"""`serve --record DIR`: the hub's whole stream to hourly gzip JSON Lines files.

Fan-out must never wait for a disk, so the hub hook only appends the already-encoded payload
to a bounded in-memory buffer; one task hands batches to a worker thread that compresses and
writes them, each batch as one complete gzip member, so a file is whole after every write and
a `kill -9` costs at most the last `MAX_DELAY` of events. If the disk falls so far behind
that the buffer fills, events are dropped and counted rather than slowing every client down.

A failing disk (full, read-only, gone) is a condition, not a crash: it is logged once, shown by
`/healthz` and `/metrics`, the unwritten batch stays buffered (within the same bounds), and the
write is tried again every `RETRY_INTERVAL` until it works.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from swimctl.hub.health import Condition
from swimctl.recordings import MemberWriter
from swimctl.stream.base import LogEvent

log = logging.getLogger("swimctl.recorder")

BUFFER_LIMIT = 200_000  # events held in memory while the writer thread catches up
BUFFER_BYTES = 64 * 1024 * 1024  # ... and their bytes: a long disk outage must not eat RAM
# When a batch becomes a gzip member: after FLUSH_INTERVAL once MEMBER_BYTES are waiting,
# else after MAX_DELAY. Small members compress poorly (10 events of 300 B: 1.4x the size of
# one stream; 25: 1.2x; 100: 1.07x), so a trickle is gathered a little longer, where the bytes
# are few anyway. A kill -9 costs at most the events of the last MAX_DELAY, and at high rates
# only FLUSH_INTERVAL's worth.
FLUSH_INTERVAL = 0.1
MAX_DELAY = 0.25
MEMBER_BYTES = 32 * 1024
RETRY_INTERVAL = 5.0  # seconds between attempts while the disk refuses writes


def hour_file_name(moment: dt.datetime) -> str:
    """`20261126T18.jsonl.gz`: the UTC hour the events were written in."""
    return moment.astimezone(dt.UTC).strftime("%Y%m%dT%H") + ".jsonl.gz"


class HourlyFiles:
    """Owns the open file; used only from the writer thread (one call at a time)."""

    def __init__(self, directory: Path, clock: Callable[[], dt.datetime]) -> None:
        self.directory = directory
        self.clock = clock
        self.name: str | None = None
        self.writer: MemberWriter | None = None
        self.written = 0
        self._announced: str | None = None  # reopening after a failed write is not news

    def write(self, batch: list[bytes]) -> None:
        """Write the whole batch or raise OSError having written none of it."""
        name = hour_file_name(self.clock())
        if name != self.name:
            self.close()
            self.directory.mkdir(parents=True, exist_ok=True)
            writer = MemberWriter(self.directory / name)
            if writer.repair is not None and writer.repair.changed:
                log.warning("%s did not end with a whole gzip member (a crash during a write?): "
                            "rewrote its last %d bytes, keeping %d complete line(s)",
                            writer.path, writer.repair.cut_bytes, writer.repair.salvaged_lines)
            self.writer, self.name = writer, name
            if name != self._announced:
                log.info("recording to %s", self.directory / name)
                self._announced = name
        assert self.writer is not None
        self.written += self.writer.write_payloads(batch)

    def close(self) -> None:
        writer, self.writer, self.name = self.writer, None, None
        if writer is not None:
            writer.close()

    def after_error(self) -> None:
        """Keep the open file across a failed write (it was cut back to its last whole member,
        and reopening would re-scan it), unless that cut failed too."""
        if self.writer is not None and self.writer.torn:
            self.close()


class Recorder:
    """The hook side (sync, never blocks) and the writer side (async, batches to a thread)."""

    def __init__(self, directory: str | os.PathLike[str], *, limit: int = BUFFER_LIMIT,
                 limit_bytes: int = BUFFER_BYTES, retry_interval: float = RETRY_INTERVAL,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.directory = Path(directory)
        self.limit = limit
        self.limit_bytes = limit_bytes
        self.retry_interval = retry_interval
        self.buffer: list[bytes] = []
        self.buffered_bytes = 0
        self.dropped = 0
        self._reported_drops = 0
        self._wake = trio.Event()
        self.files = HourlyFiles(self.directory, clock or (lambda: dt.datetime.now(dt.UTC)))
        self.condition = Condition("recorder", log)

    @property
    def written(self) -> int:
        return self.files.written

    def hook(self, event: LogEvent) -> None:
        """Called by Hub.publish for every event: O(1), no I/O, no await."""
        size = len(event.payload)
        if len(self.buffer) >= self.limit or self.buffered_bytes + size > self.limit_bytes:
            self.dropped += 1
            return
        self.buffer.append(event.payload)
        self.buffered_bytes += size
        if not self._wake.is_set():
            self._wake.set()

    def _take(self) -> list[bytes]:
        batch, self.buffer = self.buffer, []
        self.buffered_bytes = 0
        self._wake = trio.Event()
        return batch

    def _put_back(self, batch: list[bytes]) -> None:
        """An unwritten batch goes back in front, oldest first; the bounds still hold, so what
        arrived meanwhile past them is dropped (and counted) instead."""
        merged = batch + self.buffer
        total = 0
        keep = 0
        for payload in merged:
            if keep >= self.limit or total + len(payload) > self.limit_bytes:
                break
            total += len(payload)
            keep += 1
        self.dropped += len(merged) - keep
        self.buffer, self.buffered_bytes = merged[:keep], total
        if self.buffer and not self._wake.is_set():
            self._wake.set()

    def _report_drops(self) -> None:
        if self.dropped != self._reported_drops and self.condition.ok:
            log.warning("recorder fell behind: %d event(s) dropped so far (buffer of %d events, "
                        "%d MiB)", self.dropped, self.limit, self.limit_bytes >> 20)
            self._reported_drops = self.dropped

    async def _write(self, batch: list[bytes]) -> bool:
        try:
            await trio.to_thread.run_sync(self.files.write, batch)
        except OSError as exc:  # a full or failing disk must not stop the hub
            self.condition.fail(f"cannot write to {self.directory}: {exc.strerror or exc}",
                                f"holding up to {self.limit} events / {self.limit_bytes >> 20} "
                                f"MiB in memory and retrying every {self.retry_interval:g} s")
            with contextlib.suppress(OSError):
                await trio.to_thread.run_sync(self.files.after_error)
            self._put_back(batch)
            return False
        if not self.condition.ok:
            self.condition.clear(f"{self.dropped - self._reported_drops} event(s) dropped "
                                 "meanwhile")
            self._reported_drops = self.dropped
        return True

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started(self)
        try:
            while True:
                await self._wake.wait()
                first = trio.current_time()
                await trio.sleep(FLUSH_INTERVAL)
                # A trickle: gather a bigger member, for at most MAX_DELAY.
                while self.buffered_bytes < MEMBER_BYTES \
                        and trio.current_time() - first < MAX_DELAY:  # noqa: ASYNC110
                    await trio.sleep(FLUSH_INTERVAL)
                if not await self._write(self._take()):
                    await trio.sleep(self.retry_interval)
                self._report_drops()
        finally:
            # Shutdown cancels us: write what is buffered. Shielded, with a bound so a dead disk
            # cannot hang shutdown.
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                batch = self._take()
                await trio.to_thread.run_sync(self._final, batch)
            self._report_drops()
            log.info("recorder stopped: %d event(s) written, %d dropped",
                     self.files.written, self.dropped)

    def _final(self, batch: list[bytes]) -> None:
        try:
            if batch:
                self.files.write(batch)
        except OSError as exc:
            self.dropped += len(batch)
            log.error("recorder could not write to %s: %s", self.directory, exc)
        finally:
            try:
                self.files.close()
            except OSError as exc:
                log.error("recorder could not close its file: %s", exc)

    async def attach(self, hub: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Record every event `hub` streams until cancelled."""
        hub.on_event.append(self.hook)
        try:
            await self.run(task_status=task_status)
        finally:
            with contextlib.suppress(ValueError):
                hub.on_event.remove(self.hook)


async def run_recorder(
    hub: Any, directory: str | os.PathLike[str], *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Record every event `hub` streams into `directory` until cancelled."""
    await Recorder(directory).attach(hub, task_status=task_status)
