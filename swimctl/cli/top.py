"""`swimctl top`: the hub's health and usage at a glance, refreshed every second.

It speaks the hub's own protocol with a system-tier key: `status` with `"hub": true` returns the
whole hub's running totals (hub/report.py) and the view (cli/topview.py) turns each two of them
into rates. On a terminal it is a full-screen view until `q` or Ctrl-C; `--json` (or output into
a pipe) prints one snapshot, with rates over one interval, and exits.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import termios
import threading
import time
import tty
from collections.abc import Iterator
from typing import Any

import trio
import typer

from swimctl import client as swim
from swimctl.cli.common import CaFileOption, KeyOption, UrlOption, fail, leaf_exceptions
from swimctl.cli.topview import TopState, build_view, render
from swimctl.core.model import dumps

HUB_REQUEST = {"action": "status", "hub": True}


class _Stop(Exception):
    """The one line `top` ends with, and its exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


async def _report(client: swim.SwimClient, wait: float) -> dict[str, Any] | None:
    """The hub's report, or None when none came within `wait` (disconnected)."""
    with trio.move_on_after(wait):
        try:
            reply = await client.request(dict(HUB_REQUEST))
        except swim.RequestError as exc:
            if exc.code == "FORBIDDEN":
                raise _Stop("swimctl top needs a system-tier key (swim_sys_...): the hub "
                            "shows its figures to the operator's keys only") from None
            raise _Stop(f"the hub refused the request: {exc.message}") from None
        data = reply.get("data")
        report = data.get("hub") if isinstance(data, dict) else None
        if not isinstance(report, dict) or "uptime" not in report:
            raise _Stop("this hub does not report its figures (it predates `swimctl top`)")
        return report
    return None


async def _drain(client: swim.SwimClient, state: TopState) -> None:
    """Read the client's items (heartbeats, state changes) so its queue never fills."""
    async for item in client:
        if isinstance(item, swim.StateChange):
            state.state = item.state.value
            state.detail = (f"— retrying in {item.retry_in:.1f}s: {item.reason}"
                            if item.state is swim.State.DISCONNECTED else "")


async def _one_snapshot(url: str, key: str, ca_file: str | None, interval: float) -> None:
    async with swim.connect(url, key, ca_file=ca_file, reconnect=False) as client:
        state = TopState(url)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain, client, state)
            first = await _report(client, 10.0)
            if first is None:
                raise _Stop(f"no answer from {url} within 10 s")
            await trio.sleep(interval)
            second = await _report(client, 10.0)
            if second is None:
                raise _Stop(f"no answer from {url} within 10 s")
            nursery.cancel_scope.cancel()
    view = build_view(second, first)
    sys.stdout.write(dumps({"url": url, **view.to_dict()}).decode() + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def _cbreak(fd: int) -> Iterator[bool]:
    """Single keys without Enter (Ctrl-C still signals); restored on any exit."""
    try:
        saved = termios.tcgetattr(fd)
    except termios.error:
        yield False
        return
    try:
        tty.setcbreak(fd)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _wait_for_q(fd: int, stop: threading.Event) -> None:
    """In a worker thread: return when `q` is typed (or `stop` is set)."""
    while not stop.is_set():
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            data = os.read(fd, 32)
            if not data or b"q" in data or b"Q" in data:
                return


async def _keys(scope: trio.CancelScope) -> None:
    stop = threading.Event()
    try:
        await trio.to_thread.run_sync(_wait_for_q, sys.stdin.fileno(), stop,
                                      abandon_on_cancel=True)
        scope.cancel()
    finally:
        stop.set()


async def _signals(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


async def _live(url: str, key: str, ca_file: str | None, interval: float) -> None:
    from rich.console import Console
    from rich.live import Live

    # Size from the terminal itself (and follow resizes), not from COLUMNS/LINES values a
    # parent exported.
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)
    console = Console()
    state = TopState(url)

    def draw() -> Any:
        return render(state, console.width, console.height)

    with _cbreak(sys.stdin.fileno()) as keys_work:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_signals, nursery.cancel_scope)
            if keys_work:
                nursery.start_soon(_keys, nursery.cancel_scope)
            async with swim.connect(url, key, ca_file=ca_file) as client:
                nursery.start_soon(_drain, client, state)
                with Live(draw(), console=console, screen=True, auto_refresh=False,
                          redirect_stdout=False, redirect_stderr=False) as live:
                    next_at = time.monotonic()
                    while True:
                        report = await _report(client, max(2.0, interval * 2))
                        if report is not None:
                            state.add(report)
                        live.update(draw(), refresh=True)
                        next_at = max(next_at + interval, time.monotonic())
                        await trio.sleep_until(trio.current_time()
                                               + (next_at - time.monotonic()))


async def _run(url: str, key: str, ca_file: str | None, interval: float, as_json: bool,
               outcome: list[_Stop]) -> None:
    try:
        if as_json:
            await _one_snapshot(url, key, ca_file, interval)
        else:
            await _live(url, key, ca_file, interval)
    except (Exception, BaseExceptionGroup) as exc:  # nurseries wrap what their tasks raise
        leaves = leaf_exceptions(exc)
        for leaf in leaves:
            if isinstance(leaf, _Stop):
                outcome.append(leaf)
            elif isinstance(leaf, swim.AuthError):
                outcome.append(_Stop(f"{leaf} (check --key / SWIM_API_KEY)"))
            elif isinstance(leaf, swim.SwimError):
                outcome.append(_Stop(str(leaf)))
        if not outcome:
            raise


def top(
    url: str = UrlOption,
    key: str = KeyOption,
    ca_file: str = CaFileOption,
    interval: float = typer.Option(1.0, "--interval", envvar="SWIM_TOP_INTERVAL", min=0.2,
                                   max=60, metavar="SECONDS",
                                   help="Seconds between refreshes (and what --json's rates "
                                   "are measured over)."),
    as_json: bool = typer.Option(False, "--json",
                                 help="Print one snapshot as JSON and exit (the default when "
                                 "not a terminal)."),
) -> None:
    """The hub at a glance, live: clients by tier, top keys, events/s, fan-out, closes, feed.
    Needs a system-tier key; q or Ctrl-C quits."""
    if not key:
        fail("no API key: pass --key or set SWIM_API_KEY (a system-tier key)")
    if ca_file and not os.path.isfile(ca_file):
        fail(f"--ca-file {ca_file}: no such file")
    json_mode = as_json or not sys.stdout.isatty()
    outcome: list[_Stop] = []
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(_run, url, key, ca_file, interval, json_mode, outcome)
    if outcome:
        fail(str(outcome[0]), outcome[0].code)
