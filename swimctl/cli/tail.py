"""`swimctl tail`: follow a hub's events, as a live view on a terminal or JSON lines otherwise.

Behaves like `tail -f` / `kubectl logs -f`: runs until Ctrl-C (exit 0), survives hub restarts
and network drops (state visible, gaps reported), and never prints a traceback or the key.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import trio
import typer

from swimctl import client as swim
from swimctl.cli.common import (
    AirportOption,
    ArtccOption,
    BboxOption,
    CaFileOption,
    CallsignPrefixOption,
    KeyOption,
    UrlsOption,
    fail,
    warn_unknown_airports,
)
from swimctl.cli.tui import TailState, apply_event, notice, render

DEFAULT_EVENTS = (
    "flight.created,flight.departed,flight.arrived,flight.deleted,flight.updated,tmi.*"
)


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """`N,S,E,W` in degrees; raises ValueError with a message fit for `fail`."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise ValueError("--bbox takes N,S,E,W (four numbers in degrees)")
    try:
        north, south, east, west = (float(p) for p in parts)
    except ValueError:
        raise ValueError("--bbox takes N,S,E,W (four numbers in degrees)") from None
    if north <= south:
        raise ValueError("--bbox: north must be greater than south")
    return north, south, east, west


def _split(values: list[str]) -> list[str]:
    """Repeatable options also accept comma-separated lists."""
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _wants_heartbeats(channels: list[str]) -> bool:
    return any(c in ("*", "system.*", "system.heartbeat") for c in channels)


class _Outcome:
    """How the run ended: the one line to print and the exit code."""

    def __init__(self) -> None:
        self.message: str | None = None
        self.code = 0

    def fail(self, message: str, scope: trio.CancelScope) -> None:
        if self.message is None:
            self.message = message
            self.code = 1
        scope.cancel()


def _err(line: str) -> None:
    try:
        sys.stderr.write(f"swimctl: {line}\n")
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        pass


def _state_line(item: swim.StateChange, url: str) -> str | None:
    if item.state is swim.State.CONNECTED:
        return f"connected to {url}"
    if item.state is swim.State.DISCONNECTED:
        return f"disconnected: {item.reason}; retrying in {item.retry_in:.1f}s"
    return None


def state_detail(item: swim.StateChange) -> str:
    """What the live view shows after the state word (DISCONNECTED — retrying in ...)."""
    if item.state is swim.State.DISCONNECTED:
        return f"— retrying in {item.retry_in:.1f}s (attempt {item.attempt}): {item.reason}"
    return ""


def _resumed_line(item: swim.Resumed) -> str:
    if item.recovered:
        return f"resumed after seq {item.from_seq}: nothing missed"
    return f"warning: GAP: {item.reason} (resume point seq {item.from_seq}, epoch {item.epoch})"


async def _json_loop(client: swim.SwimClient, want_heartbeats: bool) -> None:
    """One envelope per line, exactly as received, flushed per line (for pipes and jq)."""
    out = sys.stdout
    async for item in client:
        if isinstance(item, swim.Event):
            if item.is_heartbeat and not want_heartbeats:
                continue
            out.write(item.text + "\n")
            out.flush()
        elif isinstance(item, swim.StateChange):
            line = _state_line(item, client.url)
            if line:
                _err(line)
        elif isinstance(item, swim.Resumed):
            _err(_resumed_line(item))
        elif isinstance(item, swim.HubError):
            _err(f"hub error {item.code}: {item.message}")


async def _live_loop(client: swim.SwimClient) -> None:
    """The htop-style view: redrawn a few times a second, restored on any exit."""
    from rich.console import Console
    from rich.live import Live

    # Size from the terminal itself (and follow resizes), not from a COLUMNS/LINES value some
    # parent process exported, which rich would otherwise take as fixed.
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)
    console = Console()
    state = TailState(url=client.url)

    def draw() -> Any:
        state.last_seq = client.last_seq
        return render(state, time.monotonic(), console.height)

    with Live(draw(), console=console, screen=True, auto_refresh=False,
              redirect_stdout=False, redirect_stderr=False) as live:
        async with trio.open_nursery() as nursery:

            async def refresher() -> None:
                while True:
                    live.update(draw(), refresh=True)
                    await trio.sleep(0.25)

            nursery.start_soon(refresher)
            async for item in client:
                if isinstance(item, swim.Event):
                    apply_event(state, item.type, item.timestamp, item.data, item.seq)
                elif isinstance(item, swim.StateChange):
                    state.state = item.state.value
                    state.state_detail = state_detail(item)
                elif isinstance(item, swim.Resumed):
                    if not item.recovered:
                        notice(state, _resumed_line(item))
                elif isinstance(item, swim.HubError):
                    notice(state, f"hub error {item.code}: {item.message}", "yellow")
            nursery.cancel_scope.cancel()


async def _watch_signals(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


async def _run(
    url: list[str], key: str, channels: list[str], filters: dict[str, Any], json_mode: bool,
    ca_file: str | None, outcome: _Outcome,
) -> None:
    async with trio.open_nursery() as nursery:
        scope = nursery.cancel_scope
        nursery.start_soon(_watch_signals, scope)
        try:
            async with swim.connect(url, key, ca_file=ca_file) as client:

                async def subscribe() -> None:
                    try:
                        await client.subscribe(channels, snapshot=not json_mode, **filters)
                    except swim.RequestError as exc:
                        outcome.fail(f"the hub rejected the subscription: {exc.message}",
                                     scope)
                    except swim.SwimError:
                        pass  # the item loop reports it

                nursery.start_soon(subscribe)
                if json_mode:
                    await _json_loop(client, _wants_heartbeats(channels))
                else:
                    await _live_loop(client)
        except swim.AuthError as exc:
            outcome.fail(f"{exc} (check --key / SWIM_API_KEY)", scope)
        except swim.SwimError as exc:
            outcome.fail(str(exc), scope)
        except BrokenPipeError:
            _silence_stdout()
        scope.cancel()


def _silence_stdout() -> None:
    """After the reader of a pipe went away (`| head`), exit quietly like coreutils."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def tail(
    url: list[str] = UrlsOption,
    key: str = KeyOption,
    airport: list[str] = AirportOption,
    artcc: list[str] = ArtccOption,
    callsign_prefix: list[str] = CallsignPrefixOption,
    bbox: str = BboxOption,
    events: str = typer.Option(DEFAULT_EVENTS, "--events", envvar="SWIM_EVENTS", metavar="CHANNELS",
                               help="Comma-separated channel patterns."),
    positions: bool = typer.Option(False, "--positions", envvar="SWIM_POSITIONS",
                                   help="Also show flight.positions."),
    json_out: bool = typer.Option(False, "--json",
                                  help="One JSON envelope per line (default when not a tty)."),
    ca_file: str = CaFileOption,
) -> None:
    """Follow the hub's events: a live table on a terminal, JSON lines otherwise."""
    if not key:
        fail("no API key: pass --key or set SWIM_API_KEY")
    channels = _split([events])
    if positions and "flight.positions" not in channels:
        channels.append("flight.positions")
    if not channels:
        fail("--events needs at least one channel pattern")
    filters: dict[str, Any] = {}
    if airport:
        filters["airports"] = _split(airport)
        warn_unknown_airports(filters["airports"])
    if artcc:
        filters["artccs"] = _split(artcc)
    if callsign_prefix:
        filters["callsign_prefix"] = _split(callsign_prefix)
    if bbox:
        try:
            filters["bbox"] = parse_bbox(bbox)
        except ValueError as exc:
            fail(str(exc))
    if ca_file and not os.path.isfile(ca_file):
        fail(f"--ca-file {ca_file}: no such file")
    json_mode = json_out or not sys.stdout.isatty()
    outcome = _Outcome()
    try:
        trio.run(_run, url, key, channels, filters, json_mode, ca_file, outcome)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        _silence_stdout()
    if outcome.message is not None:
        fail(outcome.message, outcome.code)
