"""VATSIM data-feed source: fetch or read snapshots, detect flight events, publish to the hub.

`run_feed(hub, spec)` is one long-lived task in the hub's nursery. Every cycle it gets one
snapshot (HTTP, a file, the next file of a directory, or the traffic simulator's next
document), decodes and diffs it in a worker thread (a live snapshot is several MB; the event
loop must never stall on it), then publishes the cycle's lifecycle events, then one
`flight.positions` batch of every current flight (`publish_positions`: the hub cuts it into
parts that fit a frame, each its own event, and serves the latest complete batch as the
snapshot), and reports the snapshot time (`feed_updated`) and what the cycle brought
(`feed_cycle`, for `swimctl top` and /metrics).

A failed cycle (network error, HTTP error status, timeout, invalid or truncated JSON, missing
keys) is logged and retried with exponential backoff and jitter. It never touches the detector,
so a failed fetch can never make flights look disconnected (`flight.deleted`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import gzip
import logging
import random
import re
import time
from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import attrs
import httpx
import trio

from swimctl import __version__
from swimctl.core.channels import POSITIONS
from swimctl.core.detect import (
    Cycle,
    Detector,
    FeedError,
    StateError,
    parse_snapshot,
    snapshot_time,
)
from swimctl.core.geo import load_geo
from swimctl.core.model import format_ts
from swimctl.core.sim import SimConfig, Simulator
from swimctl.hub.leadership import Leadership, SoleLeader
from swimctl.hub.stats import FeedCycle
from swimctl.stream.base import LogFenced, LogUnavailable

__all__ = ["SIM_SPEC", "VATSIM_URL", "FeedHub", "run_feed"]

log = logging.getLogger("swimctl.feed")

VATSIM_URL = "https://data.vatsim.net/v3/vatsim-data.json"
SIM_SPEC = "sim"  # `--feed sim`: the traffic simulator
# The live feed refreshes every 15 s; used as the gap between passes of a looped replay.
FEED_PERIOD = dt.timedelta(seconds=15)
# Retries start at `retry_base` seconds and double per consecutive failure up to this cap, so
# an outage costs the upstream at most one request a minute per hub.
MAX_BACKOFF_S = 60.0
# Yield to trio after this many publishes so a burst of events never holds the loop.
PUBLISH_BATCH = 100
# Events held while the event log does not answer, at most (the oldest go first past it).
MAX_PENDING = 200_000
# Refuse bodies larger than this: the live feed is ~5 MB; anything far bigger is an error page
# loop or an attack, not a snapshot.
MAX_BODY_BYTES = 128 * 1024 * 1024

_STAMP_RE = re.compile(rb'"update_timestamp"\s*:\s*"([^"]{10,40})"')


class FeedHub(Protocol):
    """The part of the hub this source uses (swimctl.hub.engine.Hub provides it)."""

    async def publish(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        timestamp: str | None = None,
        event_id: str | None = None,
        fence: tuple[str, str] | None = None,
    ) -> Any: ...

    async def publish_positions(
        self,
        positions: Any,
        *,
        timestamp: str | None = None,
        event_id: str | None = None,
        extra: dict[str, Any] | None = None,
        fence: tuple[str, str] | None = None,
    ) -> Any: ...

    def feed_updated(self, update_time: dt.datetime) -> None: ...

    def feed_stopped(self) -> None: ...

    def feed_cycle(self, cycle: FeedCycle) -> None: ...


async def run_feed(
    hub: FeedHub,
    spec: str,
    interval: float = 15.0,
    loop: bool = False,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    fetch_timeout: float = 20.0,
    retry_base: float = 1.0,
    as_live: bool = False,
    sim: SimConfig | None = None,
    lead: Leadership | None = None,
) -> None:
    """Run the feed named by `spec` until cancelled (or, for files, until played out).

    spec: `vatsim` (the live v3 feed), an http(s) URL (polled every `interval` s), a snapshot
    file (`.json` / `.json.gz`; read once, or re-read every `interval` s when `loop` is set, so
    an external downloader may keep replacing it), or a directory of snapshots played in
    timestamp order `interval` s apart (0 = as fast as processed); with `loop` the directory
    starts over at the end: every flight is deleted, the detector reset and event times moved
    on by one pass so they keep increasing. `task_status.started()` fires once the geography
    is loaded and the source is usable. `fetch_timeout` bounds one fetch; `retry_base` is the
    first backoff delay after a failure. `sim` (the traffic simulator, spec `sim`): a snapshot
    every `interval` s, made in memory and read like any other (see `run_sim`).

    With `lead` shared (hubs on a broker), only the hub that holds the feed's lease runs the
    source; it starts from the detector state its predecessor saved, saves its own after each
    cycle, names each event (`feed:<snapshot time>:<n>`, so a cycle published twice across a
    handover is stored once) and writes under its lease.
    """
    geo = await trio.to_thread.run_sync(load_geo)
    lead = lead or SoleLeader("feed")
    if not lead.shared:
        runner = _Runner(hub, Detector(geo), interval, retry_base, as_live)
        await _run_source(runner, spec, loop, fetch_timeout, sim, task_status)
        return
    task_status.started()

    async def term() -> None:
        assert lead is not None
        detector = Detector(geo)
        try:
            state = await lead.load_state()
        except (trio.TooSlowError, Exception) as exc:  # the broker's trouble: start fresh
            log.warning("feed: the detector state could not be read (%s): starting fresh",
                        type(exc).__name__)
            state = None
        held: list[tuple[str, dict[str, Any], str, str | None]] = []
        if state:
            try:
                held = [(str(etype), dict(data), str(stamp), str(event_id))
                        for etype, data, stamp, event_id in detector.load_state(state)]
                log.info("feed: took over %d flight(s) and %d event(s) not yet confirmed "
                         "published from the previous leader's state", len(detector), len(held))
            except (StateError, ValueError, TypeError) as exc:
                log.warning("feed: %s: starting fresh", exc)
                detector, held = Detector(geo), []
        runner = _Runner(hub, detector, interval, retry_base, as_live, lead=lead)
        runner.pending.extend(held)
        try:
            await _run_source(runner, spec, loop, fetch_timeout, sim, trio.TASK_STATUS_IGNORED)
        except LogFenced:
            lead.give_up("a publish was refused: the lease is another hub's")
        finally:
            # A hub that stopped leading has no feed of its own: it must not go on reporting
            # a growing feed age (and trip SwimFeedStale) while another hub runs the feed.
            hub.feed_stopped()

    await lead.while_leading(term)


async def _run_source(runner: _Runner, spec: str, loop: bool, fetch_timeout: float,
                      sim: SimConfig | None, task_status: trio.TaskStatus[None]) -> None:
    if spec == SIM_SPEC:
        await runner.run_sim(sim or SimConfig(start=dt.datetime.now(dt.UTC)), task_status)
        return
    if spec == "vatsim" or spec.startswith(("http://", "https://")):
        url = VATSIM_URL if spec == "vatsim" else spec
        await runner.run_http(url, fetch_timeout, task_status)
        return
    path = await trio.to_thread.run_sync(lambda: Path(spec).expanduser())
    if await trio.Path(path).is_dir():
        await runner.run_directory(path, loop, task_status)
    elif await trio.Path(path).is_file():
        await runner.run_file(path, loop, task_status)
    else:
        raise FileNotFoundError(f"feed source not found: {spec!r} (not a URL, file or directory)")


def safe_url(url: str) -> str:
    """A URL fit for logs: no user-info, query or fragment (they may carry tokens)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def _peek_stamp(raw: bytes) -> bytes | None:
    """The update_timestamp without a full parse (`general` leads the v3 document)."""
    match = _STAMP_RE.search(raw, 0, 4096)
    return match.group(1) if match else None


def _read_snapshot_bytes(path: Path) -> bytes:
    """A snapshot file's JSON bytes; gzip is recognised by its magic, not the name."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise FeedError(f"{path.name}: bad gzip data: {exc}") from None
    return raw


def _file_order_key(path: Path) -> tuple[float, str]:
    """Sort key of a directory entry: its snapshot time, read from the head of the file."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                head = fh.read(4096)
        else:
            with path.open("rb") as fh:
                head = fh.read(4096)
        stamp = _peek_stamp(head)
        if stamp:
            return (
                snapshot_time({"general": {"update_timestamp": stamp.decode()}}).timestamp(),
                path.name,
            )
    except (OSError, EOFError, ValueError, UnicodeDecodeError):
        pass
    return (float("inf"), path.name)  # unreadable heads sort last, by name


def list_snapshots(directory: Path) -> list[Path]:
    """The `.json` / `.json.gz` files of a directory in snapshot-time order."""
    files = [
        p
        for p in directory.iterdir()
        if p.is_file() and (p.name.endswith(".json") or p.name.endswith(".json.gz"))
    ]
    return sorted(files, key=_file_order_key)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a while. A snapshot decodes into a million
    objects (30,000 pilots) that all live through the cycle: the collector would scan them,
    promote them, and then scan the whole heap (history, clients) again and again, for
    nothing, since JSON and the detector's state hold no reference cycles and reference
    counting frees them all. The hub's other work meanwhile only has its collections
    deferred to the end of the cycle."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _decode_and_detect(
    detector: Detector,
    raw: bytes,
    shift: dt.timedelta | None,
    reset_first: bool,
) -> Cycle:
    """Worker-thread half of a cycle: parse, diff, tag. Raises FeedError before any state
    changes when the snapshot is unusable."""
    with _collector_paused():
        snapshot = parse_snapshot(raw)
        pre = detector.reset() if reset_first else []
        cycle = detector.process(snapshot, time_shift=shift)
        del snapshot  # freed here, by reference counting, still without the collector
    if pre:
        cycle.events[:0] = [(etype, data, cycle.timestamp) for etype, data, _ in pre]
    return cycle


def _played_now(data: dict[str, Any], stamp: str, now: str) -> tuple[dict[str, Any], str]:
    """An event of a recorded cycle re-stamped to `now` (its off/in times with it, which the
    detector places between snapshots and so may differ from the event's own stamp)."""
    moved: dict[str, Any] = {key: now for key in ("off_utc", "in_utc") if key in data}
    return ({**data, **moved} if moved else data), now


class _Runner:
    """State shared by the source kinds: the detector, the hub, failure accounting."""

    def __init__(self, hub: FeedHub, detector: Detector, interval: float, retry_base: float,
                 as_live: bool = False, lead: Leadership | None = None):
        self.hub = hub
        self.lead: Leadership = lead or SoleLeader("feed")
        # Events detected but not yet in the log (it did not answer): published, in order,
        # before the next cycle's, so an outage of the log loses nothing the detector saw.
        self.pending: deque[tuple[str, dict[str, Any], str, str | None]] = deque()
        self._log_down = False
        self._dropped = 0
        # Recorded traffic shown as happening now (the demo): event times and the feed time
        # are the wall clock when a cycle is played; detection itself keeps the recorded
        # times, so vertical rates and state changes stay true to the recording.
        self.as_live = as_live
        self.detector = detector
        self.interval = max(0.0, interval)
        self.retry_base = max(0.001, retry_base)
        self.failures = 0
        self.cycles = 0

    def backoff(self) -> float:
        """Exponential backoff with jitter (50-100 % of the step) after `failures` failures."""
        step = min(MAX_BACKOFF_S, self.retry_base * 2 ** min(self.failures - 1, 30))
        return step * random.uniform(0.5, 1.0)

    def failed(self, source: str, exc: BaseException) -> float:
        self.failures += 1
        delay = self.backoff()
        if isinstance(exc, FeedError | httpx.HTTPError | trio.TooSlowError | OSError):
            reason = str(exc) or exc.__class__.__name__
            if isinstance(exc, trio.TooSlowError):
                reason = "timed out"
            log.warning(
                "feed %s failed (%s: %s); attempt %d, retrying in %.1fs",
                source,
                exc.__class__.__name__,
                reason[:300],
                self.failures,
                delay,
            )
        else:
            log.error("feed %s: unexpected error; retrying in %.1fs", source, delay, exc_info=exc)
        return delay

    async def deliver(self, cycle: Cycle, source: str) -> None:
        """Hand one cycle to the hub: its lifecycle events, then every current position as
        one batch (state: the detector's batch of moved flights only is not), then the feed
        time. With a shared lead, each event is named after its cycle, writes carry the lease,
        and the detector's state is saved for whoever leads next."""
        self.failures = 0
        if cycle.stale:
            log.debug(
                "feed %s: snapshot %s not newer than the last one; skipped", source, cycle.timestamp
            )
            return
        hub = self.hub
        update_time = cycle.update_time
        if self.as_live:
            update_time = dt.datetime.now(dt.UTC)
        named = self.lead.shared
        for n, (etype, data, stamp) in enumerate(cycle.events):
            if etype == POSITIONS:
                continue
            if self.as_live:
                data, stamp = _played_now(data, stamp, format_ts(update_time))
            self.pending.append((etype, data, stamp,
                                 f"feed:{cycle.timestamp}:{n}" if named else None))
        while len(self.pending) > MAX_PENDING:
            self.pending.popleft()
            self._dropped += 1
        # Written ahead: the state that produced these events, with them, before any is
        # published, so a leader killed mid-cycle hands them over rather than losing them
        # or having its successor detect them a second time (their ids make repeats no-ops).
        if named and not await self._save_state():
            self._broker_down()
            return  # the broker is away (or the lease is gone): the events wait
        if not await self._publish_pending():
            return  # the log is away: this cycle's events wait with the rest
        stamp = format_ts(update_time) if self.as_live else cycle.timestamp
        try:
            await hub.publish_positions(cycle.positions, timestamp=stamp, fence=self._fence())
        except LogUnavailable:
            pass  # state, not history: the next cycle's batch replaces it
        except LogFenced:
            raise
        except Exception:
            log.exception("hub refused the positions batch")
        hub.feed_updated(update_time)
        published = Counter(etype for etype, _, _ in cycle.events if etype != POSITIONS)
        published[POSITIONS] += 1  # the batch of every current flight
        hub.feed_cycle(FeedCycle(snapshot=cycle.timestamp, pilots=cycle.pilots,
                                 skipped=cycle.skipped, events=dict(published),
                                 at=time.time()))
        self.cycles += 1
        age = (dt.datetime.now(dt.UTC) - update_time).total_seconds()
        log.info(
            "feed %s: snapshot %s, age %.1fs, %d pilots (%d skipped), %d events",
            source,
            cycle.timestamp,
            age,
            cycle.pilots,
            cycle.skipped,
            sum(published.values()),
        )

    def _fence(self) -> tuple[str, str] | None:
        lead = self.lead
        value = lead.fence
        return (lead.lease_key, value) if value is not None and lead.shared else None

    async def _publish_pending(self) -> bool:
        """Publish what waits, oldest first; False when the log stopped answering (what is
        left waits for the next cycle). A leader that lost its lease raises LogFenced."""
        hub = self.hub
        fence = self._fence()
        n = 0
        while self.pending:
            etype, data, stamp, event_id = self.pending[0]
            try:
                await hub.publish(etype, data, timestamp=stamp, event_id=event_id, fence=fence)
            except LogUnavailable:
                self._broker_down()
                return False
            except LogFenced:
                raise
            except Exception:
                log.exception("hub refused a %s event", etype)
            self.pending.popleft()
            n += 1
            if n % PUBLISH_BATCH == 0:
                await trio.lowlevel.checkpoint()
        if self._log_down:
            self._log_down = False
            log.info("feed: the event log answers again: held events published%s",
                     f" ({self._dropped} of the oldest dropped past {MAX_PENDING})"
                     if self._dropped else "")
            self._dropped = 0
        return True

    def _broker_down(self) -> None:
        if not self._log_down:
            self._log_down = True
            log.warning("feed: the event log does not answer: %d event(s) held until it does",
                        len(self.pending))

    async def _save_state(self) -> bool:
        """The detector's state and the events not yet known to be published, for the hub
        that leads next (fenced: only while the lease is ours). False when not saved."""
        held = [list(event) for event in self.pending]
        state = await trio.to_thread.run_sync(self.detector.export_state, held)
        try:
            return await self.lead.save_state(state)
        except (trio.TooSlowError, Exception) as exc:  # the log's trouble is reported there
            log.debug("feed: the detector state was not saved: %s", exc)
            return False

    # -- HTTP -------------------------------------------------------------------------------

    async def run_http(self, url: str, fetch_timeout: float,
                       task_status: trio.TaskStatus[None]) -> None:
        source = safe_url(url)
        headers = {"User-Agent": f"swimctl/{__version__}", "Accept-Encoding": "gzip"}
        limits = httpx.Limits(max_connections=2, max_keepalive_connections=1)
        last_stamp: bytes | None = None
        validators: dict[str, str] = {}
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(fetch_timeout, connect=min(fetch_timeout, 10.0)),
            headers=headers,
            limits=limits,
            follow_redirects=True,
        ) as client:
            task_status.started()
            log.info("feed polling %s every %.1fs", source, self.interval)
            while True:
                started = time.monotonic()
                try:
                    with trio.fail_after(fetch_timeout):
                        raw = await self._fetch(client, url, validators)
                    if raw is None or (last_stamp is not None and _peek_stamp(raw) == last_stamp):
                        log.debug("feed %s: unchanged", source)
                        self.failures = 0
                    else:
                        cycle = await trio.to_thread.run_sync(
                            _decode_and_detect, self.detector, raw, None, False
                        )
                        last_stamp = _peek_stamp(raw)
                        await self.deliver(cycle, source)
                except Exception as exc:
                    validators.clear()  # a failed body must be fetched whole next time
                    await trio.sleep(self.failed(source, exc))
                    continue
                await trio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    @staticmethod
    async def _fetch(
        client: httpx.AsyncClient, url: str, validators: dict[str, str]
    ) -> bytes | None:
        """GET the snapshot; None when the server says it has not changed (304)."""
        request_headers = {}
        if "etag" in validators:
            request_headers["If-None-Match"] = validators["etag"]
        if "last-modified" in validators:
            request_headers["If-Modified-Since"] = validators["last-modified"]
        async with client.stream("GET", url, headers=request_headers) as resp:
            if resp.status_code == 304:
                return None
            if resp.status_code != 200:
                raise FeedError(f"HTTP {resp.status_code}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise FeedError(f"body larger than {MAX_BODY_BYTES} bytes")
                chunks.append(chunk)
            validators.clear()
            for name in ("etag", "last-modified"):
                if name in resp.headers:
                    validators[name] = resp.headers[name]
            return b"".join(chunks)

    # -- the simulator ----------------------------------------------------------------------

    async def run_sim(self, config: SimConfig, task_status: trio.TaskStatus[None]) -> None:
        """The traffic simulator as a feed: every `interval` s its next snapshot, as JSON bytes,
        through the same parse -> detect -> deliver as a fetched one. The snapshots are
        `interval` s apart in their own time (15 s when running flat out), so a simulation
        started now reads as live."""
        step = self.interval if self.interval > 0 else FEED_PERIOD.total_seconds()
        config = attrs.evolve(config, step_s=step)
        sim = await trio.to_thread.run_sync(Simulator, config, self.detector.geo, False)
        source = f"sim:{config.seed}"
        task_status.started()
        log.info("feed simulating %d pilots (seed %d, %gx speed) from %s, every %.1fs",
                 config.pilots, config.seed, config.speed, format_ts(config.start),
                 self.interval)
        while True:
            started = time.monotonic()
            for snap in await trio.to_thread.run_sync(sim.step):
                cycle = await trio.to_thread.run_sync(
                    _decode_and_detect, self.detector, snap.body, None, False
                )
                await self.deliver(cycle, source)
            await trio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    # -- files ------------------------------------------------------------------------------

    async def run_file(self, path: Path, loop: bool, task_status: trio.TaskStatus[None]) -> None:
        source = str(path)
        task_status.started()
        last_stamp: bytes | None = None
        while True:
            try:
                raw = await trio.to_thread.run_sync(_read_snapshot_bytes, path)
                stamp = _peek_stamp(raw)
                if last_stamp is None or stamp != last_stamp:
                    cycle = await trio.to_thread.run_sync(
                        _decode_and_detect, self.detector, raw, None, False
                    )
                    last_stamp = stamp
                    await self.deliver(cycle, source)
                else:
                    self.failures = 0
            except Exception as exc:
                delay = self.failed(source, exc)
                if not loop:
                    return
                await trio.sleep(delay)
                continue
            if not loop:
                return
            await trio.sleep(self.interval)

    async def run_directory(
        self, directory: Path, loop: bool, task_status: trio.TaskStatus[None]
    ) -> None:
        task_status.started()
        shift = dt.timedelta(0)
        reset_first = False
        while True:
            files = await trio.to_thread.run_sync(list_snapshots, directory)
            if not files:
                log.warning("feed %s: no snapshots (*.json, *.json.gz)", directory)
                if not loop:
                    return
                await trio.sleep(max(self.interval, 1.0))
                continue
            log.info("feed replaying %d snapshots from %s", len(files), directory)
            first_time: dt.datetime | None = None
            last_time: dt.datetime | None = None
            for n, path in enumerate(files):
                if n:
                    await trio.sleep(self.interval)
                try:
                    raw = await trio.to_thread.run_sync(_read_snapshot_bytes, path)
                    cycle = await trio.to_thread.run_sync(
                        _decode_and_detect, self.detector, raw, shift or None, reset_first
                    )
                except Exception as exc:
                    self.failed(path.name, exc)  # skip the bad file; no retry of the same bytes
                    continue
                reset_first = False
                if not cycle.stale:
                    first_time = first_time or cycle.update_time
                    last_time = cycle.update_time
                await self.deliver(cycle, path.name)
            if not loop:
                return
            await trio.sleep(self.interval)
            if first_time is not None and last_time is not None:
                # next pass: same snapshots, later times; flights start afresh
                shift += (last_time - first_time) + FEED_PERIOD
                reset_first = True
