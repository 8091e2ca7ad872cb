"""`swimctl record FILE`: what a subscription receives, into an event file, one flushed line per
event, until Ctrl-C, `--duration` or `--count`.

Built on swimctl.client, which reconnects and resumes; every gap it could not fill (the hub's
`recovered: false`, or a hub restart) is counted and named in the summary, so a recording
never silently claims to be complete.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import trio
import typer

from swimctl.cli.common import (
    AirportOption,
    ArtccOption,
    BboxOption,
    CaFileOption,
    CallsignPrefixOption,
    KeyOption,
    UrlsOption,
    fail,
    parse_duration,
    warn_unknown_airports,
)
from swimctl.client import (
    AuthError,
    Event,
    HandshakeRejected,
    RequestError,
    Resumed,
    State,
    StateChange,
    SwimError,
    TLSError,
    connect,
)
from swimctl.client import HubError as HubNotice
from swimctl.recordings import EventWriter

LIFECYCLE = ["flight.created", "flight.updated", "flight.departed", "flight.arrived",
             "flight.deleted", "tmi.*"]


@attrs.define
class RecordStats:
    written: int = 0
    by_type: Counter[str] = attrs.field(factory=Counter)
    gaps: list[str] = attrs.field(factory=list)
    reconnects: int = 0
    notices: list[str] = attrs.field(factory=list)
    started: float = 0.0
    finished: float = 0.0


def parse_bbox(text: str) -> dict[str, float]:
    """`N,S,E,W` in degrees, checked as the hub would (PROTOCOL.md section 5)."""
    parts = text.split(",")
    if len(parts) != 4:
        raise ValueError("--bbox takes N,S,E,W, e.g. 42,39,-72,-76")
    try:
        north, south, east, west = (float(p) for p in parts)
    except ValueError:
        raise ValueError("--bbox takes four numbers N,S,E,W") from None
    if not all(math.isfinite(v) for v in (north, south, east, west)):
        raise ValueError("--bbox numbers must be finite")
    if not (-90 <= south < north <= 90) or not (-180 <= east <= 180 and -180 <= west <= 180):
        raise ValueError("--bbox: need -90 <= S < N <= 90 and E, W within ±180")
    return {"north": north, "south": south, "east": east, "west": west}


def channels_for(events: str | None, positions: bool) -> list[str]:
    chans = [c.strip() for c in events.split(",") if c.strip()] if events else list(LIFECYCLE)
    if positions and "flight.positions" not in chans:
        chans.append("flight.positions")
    return chans


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def record_events(
    path: str, url: str | list[str], key: str, *, channels: list[str], filters: dict[str, Any],
    ca_file: str | None, duration: float | None, count: int | None, heartbeats: bool,
    stats: RecordStats, quiet: bool = False,
) -> None:
    """Subscribe and write until the duration passes or `count` events are written."""
    stats.started = trio.current_time()
    writer: EventWriter | None = None  # opened with the first event: a failure leaves no file
    try:
        async with connect(url, key, ca_file=ca_file) as client, trio.open_nursery() as inner:
            # Subscribe in the background and read items here: a fatal error (bad key) ends
            # the item stream with the error, while a subscribe waiter might never wake.
            inner.start_soon(lambda: client.subscribe(channels, **filters))
            with trio.move_on_after(duration if duration is not None else math.inf):
                async for item in client:
                    if isinstance(item, Event):
                        if item.is_heartbeat and not heartbeats:
                            continue
                        text = item.text.encode()
                        if writer is None:
                            writer = EventWriter(path)
                        writer.write(text if b"\n" not in text else item.envelope.encode())
                        stats.written += 1
                        stats.by_type[item.type] += 1
                        if count is not None and stats.written >= count:
                            break
                    elif isinstance(item, Resumed):
                        if not item.recovered:
                            stats.gaps.append(item.reason or "events were missed")
                            _say(f"gap: {item.reason}", quiet)
                    elif isinstance(item, StateChange):
                        if item.state is State.DISCONNECTED:
                            stats.reconnects += 1
                            _say(f"disconnected ({item.reason}); retrying in "
                                 f"{item.retry_in} s", quiet)
                    elif isinstance(item, HubNotice):
                        stats.notices.append(f"{item.code}: {item.message}")
                        _say(f"hub: {item.code}: {item.message}", quiet)
            inner.cancel_scope.cancel()
            await client.aclose()
    finally:
        if writer is not None:
            writer.close()
        stats.finished = trio.current_time()


def _say(text: str, quiet: bool) -> None:
    if not quiet:
        print(f"swimctl record: {text}", file=sys.stderr, flush=True)


def print_summary(path: str, stats: RecordStats, interrupted: bool) -> None:
    elapsed = max(stats.finished - stats.started, 0.0)
    head = "interrupted: " if interrupted else ""
    print(f"{head}wrote {stats.written} events to {path} in {elapsed:.1f} s", file=sys.stderr)
    for etype, number in sorted(stats.by_type.items()):
        print(f"  {etype}: {number}", file=sys.stderr)
    if stats.reconnects:
        print(f"reconnects: {stats.reconnects}", file=sys.stderr)
    if stats.gaps:
        print(f"gaps reported by the hub (events missed): {len(stats.gaps)}", file=sys.stderr)
        for gap in stats.gaps[:5]:
            print(f"  {gap}", file=sys.stderr)
    else:
        print("gaps: none", file=sys.stderr)


def record(
    file: str = typer.Argument(..., metavar="FILE",
                               help="Output: .jsonl or .jsonl.gz (appended to)."),
    url: list[str] = UrlsOption,
    key: str = KeyOption,
    airport: list[str] = AirportOption,
    artcc: list[str] = ArtccOption,
    callsign_prefix: list[str] = CallsignPrefixOption,
    bbox: str = BboxOption,
    events: str = typer.Option(None, "--events", envvar="SWIM_EVENTS", metavar="CHANNELS",
                               help="Comma-separated channels (default: flight lifecycle "
                               "events and tmi.*)."),
    positions: bool = typer.Option(False, "--positions", envvar="SWIM_POSITIONS",
                                   help="Also record flight.positions."),
    heartbeats: bool = typer.Option(False, "--heartbeats", envvar="SWIM_RECORD_HEARTBEATS",
                                    help="Also record heartbeats."),
    duration: str = typer.Option(None, "--duration", envvar="SWIM_RECORD_DURATION",
                                 metavar="DURATION",
                                 help="Stop after this long: seconds (90), or 30s, 10m, 2h."),
    count: int = typer.Option(None, "--count", min=1, envvar="SWIM_RECORD_COUNT", metavar="N",
                              help="Stop after this many events."),
    ca_file: str = CaFileOption,
    quiet: bool = typer.Option(False, "--quiet", "-q", envvar="SWIM_QUIET",
                               help="No progress notices on stderr."),
) -> None:
    """Record a live subscription to an event file (replay it with `swimctl replay`)."""
    if not key:
        fail("--key (or SWIM_API_KEY) is required")
    bad = [u for u in url if not u.startswith(("ws://", "wss://"))]
    if bad:
        fail(f"--url must be a ws:// or wss:// URL, not {bad[0]!r}")
    if not (file.endswith(".jsonl") or file.endswith(".jsonl.gz")):
        fail("FILE must end in .jsonl or .jsonl.gz")
    if not Path(file).resolve().parent.is_dir():
        fail(f"no such directory for {file}")
    filters: dict[str, Any] = {}
    try:
        if bbox:
            box = parse_bbox(bbox)
            filters["bbox"] = (box["north"], box["south"], box["east"], box["west"])
        seconds = parse_duration(duration).total_seconds() if duration else None
    except ValueError as exc:
        fail(str(exc))
    if airport:
        filters["airports"] = airport
        warn_unknown_airports(airport)
    if artcc:
        filters["artccs"] = artcc
    if callsign_prefix:
        filters["callsign_prefix"] = callsign_prefix
    channels = channels_for(events, positions)
    stats = RecordStats()
    interrupted = False
    try:
        trio.run(lambda: record_events(
            file, url, key, channels=channels, filters=filters, ca_file=ca_file,
            duration=seconds, count=count, heartbeats=heartbeats, stats=stats, quiet=quiet))
    except KeyboardInterrupt:
        interrupted = True
    except (OSError, SwimError, BaseExceptionGroup) as exc:
        err = _unwrap(exc)
        if stats.written or stats.reconnects:  # a run that got somewhere: say how far
            print_summary(file, stats, False)
        if isinstance(err, AuthError):
            fail(f"the hub refused the API key (AUTH_FAILED): {err}")
        if isinstance(err, RequestError):
            fail(f"the hub refused the subscription ({err.code}): {err.message}")
        if isinstance(err, TLSError | HandshakeRejected):
            fail(str(err))
        if isinstance(err, OSError):
            fail(f"cannot write {file}: {err.strerror or err}")
        if isinstance(err, BaseExceptionGroup):
            raise
        fail(str(err))
    print_summary(file, stats, interrupted)
    if interrupted:
        raise typer.Exit(130)
