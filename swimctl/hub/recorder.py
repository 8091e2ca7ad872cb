"""`serve --record DIR`: the hub's whole stream to hourly gzip JSON Lines files.

Fan-out must never wait for a disk, so the hub hook only appends the already-encoded payload
to a bounded in-memory buffer; one task hands batches to a worker thread that compresses and
writes them. If the disk falls so far behind that the buffer fills, events are dropped and
counted (and logged) rather than slowing every client down.
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

from swimctl.recordings import EventWriter
from swimctl.stream.base import LogEvent

log = logging.getLogger("swimctl.recorder")

BUFFER_LIMIT = 200_000  # events held in memory while the writer thread catches up
FLUSH_INTERVAL = 0.25  # seconds: how stale a reader of the current file can be


def hour_file_name(moment: dt.datetime) -> str:
    """`20261126T18.jsonl.gz`: the UTC hour the events were written in."""
    return moment.astimezone(dt.UTC).strftime("%Y%m%dT%H") + ".jsonl.gz"


class HourlyFiles:
    """Owns the open file; used only from the writer thread (one call at a time)."""

    def __init__(self, directory: Path, clock: Callable[[], dt.datetime]) -> None:
        self.directory = directory
        self.clock = clock
        self.name: str | None = None
        self.writer: EventWriter | None = None
        self.written = 0

    def write(self, batch: list[bytes]) -> None:
        name = hour_file_name(self.clock())
        if name != self.name:
            self.close()
            self.writer = EventWriter(self.directory / name)
            self.name = name
            log.info("recording to %s", self.directory / name)
        assert self.writer is not None
        self.written += self.writer.write_payloads(batch)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            self.name = None


class Recorder:
    """The hook side (sync, never blocks) and the writer side (async, batches to a thread)."""

    def __init__(self, directory: str | os.PathLike[str], *, limit: int = BUFFER_LIMIT,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.directory = Path(directory)
        self.limit = limit
        self.buffer: list[bytes] = []
        self.dropped = 0
        self._reported_drops = 0
        self._wake = trio.Event()
        self.files = HourlyFiles(self.directory, clock or (lambda: dt.datetime.now(dt.UTC)))

    def hook(self, event: LogEvent) -> None:
        """Called by Hub.publish for every event: O(1), no I/O, no await."""
        if len(self.buffer) >= self.limit:
            self.dropped += 1
            return
        self.buffer.append(event.payload)
        if not self._wake.is_set():
            self._wake.set()

    def _take(self) -> list[bytes]:
        batch, self.buffer = self.buffer, []
        self._wake = trio.Event()
        return batch

    def _report_drops(self) -> None:
        if self.dropped != self._reported_drops:
            log.warning("recorder fell behind: %d event(s) dropped so far (buffer of %d)",
                        self.dropped, self.limit)
            self._reported_drops = self.dropped

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await trio.to_thread.run_sync(lambda: self.directory.mkdir(parents=True, exist_ok=True))
        task_status.started(self)
        try:
            while True:
                await self._wake.wait()
                await trio.sleep(FLUSH_INTERVAL)  # gather a batch: one flush per interval
                batch = self._take()
                try:
                    await trio.to_thread.run_sync(self.files.write, batch)
                except OSError as exc:  # a full or failing disk must not stop the hub
                    self.dropped += len(batch)
                    log.error("recorder could not write to %s: %s", self.directory, exc)
                    await trio.to_thread.run_sync(self.files.close)
                self._report_drops()
        finally:
            # Shutdown cancels us: write what is buffered and finish the gzip member so the
            # file ends cleanly. Shielded, with a bound so a dead disk cannot hang shutdown.
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


async def run_recorder(
    hub: Any, directory: str | os.PathLike[str], *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Record every event `hub` streams into `directory` until cancelled."""
    recorder = Recorder(directory)
    hub.on_event.append(recorder.hook)
    try:
        await recorder.run(task_status=task_status)
    finally:
        with contextlib.suppress(ValueError):
            hub.on_event.remove(recorder.hook)
