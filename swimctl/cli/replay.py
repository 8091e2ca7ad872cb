"""`swimctl replay FILE...`: play recorded events again, with their original spacing.

Timing is scheduled against one monotonic start (target = start + (t - t_first) / speed), so
sleeps never accumulate drift however many events there are. Into a hub (`--to`) each event is
published in order and its ack awaited, with a stable `event_id` (the original one, else one
derived from the file's hash and the line) so a publish retried after a reconnect is
de-duplicated by the hub instead of delivered twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import sys
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Protocol

import attrs
import trio
import typer
from trio_websocket import ConnectionClosed

from swimctl.cli.common import CaFileOption, fail
from swimctl.client.publisher import (
    FATAL_CODES,
    HubError,
    HubSession,
    Pacer,
    connect,
    publish_body,
    publish_once,
)
from swimctl.core.channels import is_hub_only
from swimctl.core.model import Envelope, parse_ts
from swimctl.recordings import ReadReport, read_events

SAMPLES = 5


@attrs.define
class ReplayStats:
    """Everything the end-of-run summary reports."""

    played: int = 0
    skipped_window: int = 0
    skipped_hub_only: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: list[str] = attrs.field(factory=list)
    by_type: Counter[str] = attrs.field(factory=Counter)
    reports: list[ReadReport] = attrs.field(factory=list)
    read_to_end: set[int] = attrs.field(factory=set)  # files (by index) read to their end
    last_line: dict[int, int] = attrs.field(factory=dict)  # by file index: the line reached
    started: float | None = None
    finished: float | None = None
    loops: int = 0


class Sink(Protocol):
    async def open(self) -> None: ...
    async def emit(self, env: Envelope, event_id: str, where: str) -> None: ...
    async def aclose(self) -> None: ...


class StdoutSink:
    """JSON Lines on stdout: flushed per line when paced, in blocks when flat out."""

    async def open(self) -> None:
        pass

    def __init__(self, paced: bool) -> None:
        self.out = sys.stdout.buffer
        self.paced = paced
        self.pending = 0

    async def emit(self, env: Envelope, event_id: str, where: str) -> None:
        self.out.write(env.encode() + b"\n")
        self.pending += 1
        if self.paced or self.pending >= 512:
            self.out.flush()
            self.pending = 0

    async def aclose(self) -> None:
        self.out.flush()


class HubSink:
    """Publishes into a running hub as a system-tier client, one acked event at a time."""

    def __init__(self, url: str, key: str, ca_file: str | None, max_rate: float,
                 stats: ReplayStats) -> None:
        self.url, self.key, self.ca_file = url, key, ca_file
        self.bucket = Pacer(max_rate, max(1.0, min(20.0, max_rate * 2)))
        self.stats = stats
        self.stack = AsyncExitStack()
        self.session: HubSession | None = None
        self.connected_once = False

    async def _connect(self) -> HubSession:
        await self.stack.aclose()
        self.stack = AsyncExitStack()
        self.session = await self.stack.enter_async_context(
            connect(self.url, self.key, self.ca_file))
        self.connected_once = True
        return self.session

    async def open(self) -> None:
        """Connect before the first event is read, so a hub that is not there or a key that
        may not publish ends the run at once with its reason, before anything is played."""
        session = await self._connect()
        tier = (session.hello.get("data") or {}).get("tier")
        if isinstance(tier, str) and tier != "system":
            raise HubError("FORBIDDEN", f"this key is {tier}-tier; "
                           "`swimctl keys create --tier system` makes a system key")

    async def _drop(self) -> None:
        self.session = None
        with trio.move_on_after(3, shield=True):
            with contextlib.suppress(Exception):
                await self.stack.aclose()

    async def emit(self, env: Envelope, event_id: str, where: str) -> None:
        if is_hub_only(env.type):
            self.stats.skipped_hub_only += 1
            return
        body = publish_body(env.type, env.data, event_id, env.timestamp)
        failures = 0
        while True:
            try:
                session = self.session or await self._connect()
                await self.bucket.take()
                ack = await publish_once(session, body)
            except HubError as exc:
                if exc.code in FATAL_CODES or not self.connected_once:
                    raise
                if exc.code:  # the hub refused this event: count it, go on with the next
                    self.stats.rejected += 1
                    if len(self.stats.rejections) < SAMPLES:
                        self.stats.rejections.append(f"{where}: {exc}")
                    return
                failures += 1  # could not reconnect
                if failures > 6:
                    raise
                await trio.sleep(min(0.25 * 2 ** failures, 5.0))
                continue
            except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError,
                    trio.TooSlowError, OSError):
                await self._drop()
                failures += 1
                if failures > 6:
                    raise HubError("", f"lost the connection to {self.url} repeatedly") from None
                await trio.sleep(min(0.25 * 2 ** failures, 5.0))
                continue
            self.stats.accepted += int(ack.get("accepted", 0))
            self.stats.duplicates += int(ack.get("duplicates", 0))
            return

    async def aclose(self) -> None:
        await self._drop()


def file_digest(path: str) -> str:
    """A short, stable id for a file's content: the stem of derived event ids."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def derived_event_id(env: Envelope, digest: str, line_no: int, loop: int) -> str:
    """The original id when the event has one, else file hash + line; a loop pass > 0 gets a
    suffix so looping re-publishes instead of being de-duplicated."""
    base = env.event_id or f"r-{digest}-{line_no}"
    return base if loop == 0 else f"{base}~{loop}"


@attrs.define
class Clock:
    """Where each event belongs on the wall clock: start + (t - t_first) / speed."""

    speed: float
    start: float = 0.0
    first: dt.datetime | None = None

    def target(self, moment: dt.datetime, now: float) -> float:
        if self.first is None:
            self.first, self.start = moment, now
        if self.speed <= 0:
            return now
        return self.start + (moment - self.first).total_seconds() / self.speed


class Progress:
    """A rich progress bar on stderr (events, events/s, position in the file), or nothing."""

    def __init__(self, enabled: bool, files: list[str]) -> None:
        self.bar: Any = None
        self.files = files
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import Progress as RichProgress

        self.bar = RichProgress(
            TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
            TextColumn("{task.fields[events]} events, {task.fields[rate]:.0f}/s, line "
                       "{task.fields[line]}"),
            TimeElapsedColumn(), console=Console(stderr=True), transient=False,
        )
        self.task = self.bar.add_task("", total=1, events=0, rate=0.0, line=0)
        self.bar.start()
        self.last = 0.0

    def update(self, index: int, report: ReadReport, line: int, played: int,
               elapsed: float, force: bool = False) -> None:
        if self.bar is None:
            return
        now = trio.current_time()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        name = Path(self.files[index]).name
        self.bar.update(self.task, description=f"{name} ({index + 1}/{len(self.files)})",
                        total=max(report.size, 1), completed=report.bytes_read,
                        events=played, rate=played / elapsed if elapsed > 0 else 0.0,
                        line=line)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


async def play(files: list[str], sink: Sink, stats: ReplayStats, *, speed: float,
               since: dt.datetime | None, until: dt.datetime | None, loop: bool,
               digests: dict[str, str], progress: Progress) -> None:
    """Play every file in order (forever with `loop`), pacing by event time."""
    stats.started = trio.current_time()
    try:
        await sink.open()
        passes = 0
        while True:
            clock = Clock(speed)
            for index, path in enumerate(files):
                report = ReadReport()
                if passes == 0:
                    stats.reports.append(report)
                await _play_file(path, index, report, sink, stats, clock, since, until,
                                 digests.get(path, ""), passes, progress)
            passes += 1
            stats.loops = passes
            if not loop:
                return
    finally:
        stats.finished = trio.current_time()
        progress.stop()
        with trio.CancelScope(shield=True):
            await sink.aclose()


async def _play_file(path: str, index: int, report: ReadReport, sink: Sink, stats: ReplayStats,
                     clock: Clock, since: dt.datetime | None, until: dt.datetime | None,
                     digest: str, loop: int, progress: Progress) -> None:
    name = Path(path).name
    line_no = 0
    for line_no, env in read_events(path, report):
        stats.last_line[index] = line_no
        moment = parse_ts(env.timestamp)
        if (since is not None and moment < since) or (until is not None and moment > until):
            stats.skipped_window += 1
            continue
        now = trio.current_time()
        target = clock.target(moment, now)
        if target > now:
            await trio.sleep_until(target)
        elif stats.played % 200 == 199:
            await trio.lowlevel.checkpoint()  # flat out: still let Ctrl-C and the progress bar in
        await sink.emit(env, derived_event_id(env, digest, line_no, loop), f"{name}:{line_no}")
        stats.played += 1
        stats.by_type[env.type] += 1
        progress.update(index, report, line_no, stats.played,
                        trio.current_time() - (stats.started or 0.0))
    stats.read_to_end.add(index)
    progress.update(index, report, line_no, stats.played,
                    trio.current_time() - (stats.started or 0.0), force=True)


def parse_event_time(text: str, flag: str) -> dt.datetime:
    try:
        return parse_ts(text)
    except ValueError:
        fail(f"{flag} must be an ISO-8601 time like 2026-11-26T18:30:00Z, not {text!r}")


def print_summary(stats: ReplayStats, to_hub: bool, interrupted: bool) -> None:
    err = sys.stderr
    for index, report in enumerate(stats.reports):
        if index in stats.read_to_end:
            print(report.summary(), file=err)
        else:  # say where it stopped, not "N events" as if the file held only those
            print(f"{report.path}: stopped at line {stats.last_line.get(index, 0)}, "
                  "before its end", file=err)
    elapsed = (stats.finished or 0.0) - (stats.started or 0.0)
    rate = stats.played / elapsed if elapsed > 0 else 0.0
    head = "interrupted: " if interrupted else ""
    line = f"{head}played {stats.played} events in {elapsed:.2f} s ({rate:.0f}/s)"
    if stats.loops > 1:
        line += f" over {stats.loops} passes"
    if stats.skipped_window:
        line += f"; {stats.skipped_window} outside --from/--until"
    print(line, file=err)
    if to_hub:
        text = f"hub: {stats.accepted} accepted, {stats.duplicates} duplicate(s), " \
               f"{stats.rejected} rejected"
        if stats.skipped_hub_only:
            text += f", {stats.skipped_hub_only} hub-only event(s) (system.*, tmi.active) skipped"
        print(text, file=err)
        for sample in stats.rejections:
            print(f"  rejected {sample}", file=err)


def replay(
    files: list[str] = typer.Argument(..., metavar="FILE",
                                      help="Event files (.jsonl or .jsonl.gz), in order."),
    speed: float = typer.Option(1.0, "--speed", min=0.0, envvar="SWIM_REPLAY_SPEED",
                                metavar="FACTOR",
                                help="Time scale: 2 = twice as fast; 0 = as fast as possible."),
    since: str = typer.Option(None, "--from", envvar="SWIM_REPLAY_FROM", metavar="TIME",
                              help="Skip events before this event time (ISO)."),
    until: str = typer.Option(None, "--until", envvar="SWIM_REPLAY_UNTIL", metavar="TIME",
                              help="Skip events after this event time (ISO)."),
    loop: bool = typer.Option(False, "--loop", envvar="SWIM_REPLAY_LOOP",
                              help="Start over at the end, until Ctrl-C."),
    stdout: bool = typer.Option(False, "--stdout", envvar="SWIM_REPLAY_STDOUT",
                                help="Write the events as JSON Lines on standard output "
                                "(the default without --to)."),
    to: str = typer.Option(None, "--to", envvar="SWIM_REPLAY_TO", metavar="URL",
                           help="Publish into the hub at this ws:// or wss:// URL."),
    key: str = typer.Option(None, "--key", envvar="SWIM_API_KEY", metavar="KEY",
                            help="System-tier API key for --to.", show_default=False),
    ca_file: str = CaFileOption,
    max_rate: float = typer.Option(
        1000.0, "--max-rate", min=0.0, envvar="SWIM_REPLAY_MAX_RATE", metavar="N",
        help="Publishes per second at most (a hub takes 2,000/s from a system-tier key by "
        "default); 0 = no client-side limit."),
    progress: bool = typer.Option(None, "--progress/--no-progress", envvar="SWIM_PROGRESS",
                                  help="Progress bar on stderr (default: on a terminal)."),
) -> None:
    """Play recorded events again, keeping their spacing, to stdout or into a hub."""
    if stdout and to:
        fail("give --stdout or --to URL, not both")
    if to and not key:
        fail("--to needs --key (or SWIM_API_KEY) with a system-tier key")
    if to and not to.startswith(("ws://", "wss://")):
        fail("--to must be a ws:// or wss:// URL")
    for path in files:
        if not os.path.isfile(path):
            fail(f"no such file: {path}")
    start = parse_event_time(since, "--from") if since else None
    end = parse_event_time(until, "--until") if until else None
    if start and end and end < start:
        fail("--until is before --from")
    digests = {path: file_digest(path) for path in files} if to else {}
    if progress is None:
        progress = sys.stderr.isatty() and (bool(to) or not sys.stdout.isatty())
    stats = ReplayStats()
    bar = Progress(progress, files)
    sink: Sink = HubSink(to, key, ca_file, max_rate, stats) if to else StdoutSink(speed > 0)
    interrupted = False
    try:
        trio.run(lambda: play(files, sink, stats, speed=speed, since=start, until=end,
                              loop=loop, digests=digests, progress=bar))
    except KeyboardInterrupt:
        interrupted = True
    except HubError as exc:
        bar.stop()
        if stats.played:  # it got somewhere: say how far before saying why it stopped
            print_summary(stats, bool(to), interrupted)
        fail(_hub_error_text(exc))
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from complaining.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    print_summary(stats, bool(to), interrupted)
    if interrupted:
        raise typer.Exit(130)
    unreadable = [r.path for r in stats.reports if r.events == 0 and r.bad]
    if unreadable and not stats.played:
        fail(f"no events in {', '.join(unreadable)}: not JSON Lines event files?")


def _hub_error_text(exc: HubError) -> str:
    if exc.code == "AUTH_FAILED":
        return f"the hub refused the API key (AUTH_FAILED): {exc.message}"
    if exc.code == "FORBIDDEN":
        return f"publishing needs a system-tier key (FORBIDDEN): {exc.message}"
    return str(exc)
