"""Coalescing: events published back to back (a burst) are written to each client in one
system call per run of events, not one per event.

The first event after a quiet spell goes out at once; events following it within the window
wait at most that long, or until the held run reaches MAX_EVENTS or MAX_BYTES. Anything else
that writes to a client a held event may reach, or changes who gets what, flushes first
(`flush`, `flush_for`), so no client ever sees events out of order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import trio

from swimctl.hub.client import Client
from swimctl.hub.stats import HubStats
from swimctl.stream.base import LogEvent

log = logging.getLogger("swimctl.hub")

T = TypeVar("T")

# A run of held events stays small beside the outbox bound and the kernel buffers, and a
# burst never waits for a full window.
MAX_EVENTS = 128
MAX_BYTES = 64 * 1024


class Coalescer:
    def __init__(self, window: float, fan_out: Callable[[Sequence[LogEvent]], None],
                 stats: HubStats) -> None:
        self.window = window
        self._fan_out = fan_out
        self.stats = stats
        self.active = False  # True while `run` runs: otherwise every event goes out at once
        self._pending: list[LogEvent] = []
        self._pending_bytes = 0
        self._pending_types: set[str] = set()
        self._ready = trio.Event()
        self._last = float("-inf")  # trio time at the end of the last fan-out

    def add(self, event: LogEvent) -> None:
        """Fan `event` out now, or hold it with the burst it belongs to."""
        if self.active and (self._pending or self._in_burst()):
            self._pending.append(event)
            self._pending_bytes += len(event.payload)
            self._pending_types.add(event.type)
            if len(self._pending) >= MAX_EVENTS or self._pending_bytes >= MAX_BYTES:
                self.flush()
            elif len(self._pending) == 1:
                self._ready.set()
        else:
            self.timed(self._fan_out, (event,))

    def _in_burst(self) -> bool:
        return trio.current_time() - self._last < self.window

    def flush(self) -> None:
        """Fan out the held events, in order, now."""
        if not self._pending:
            return
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        self._pending_types = set()
        try:
            self.timed(self._fan_out, pending)
        except Exception:  # a bug must not take the coalescer, and with it the hub, down
            log.exception("fan-out of %d held events failed", len(pending))

    def flush_for(self, client: Client) -> None:
        """Flush first if a held event may reach `client`: a reply or snapshot must not
        overtake it. A publisher's acks (it subscribes to nothing) leave a burst held."""
        if self._pending and any(client.subs.route(etype) is not None
                                 for etype in self._pending_types):
            self.flush()

    def timed(self, fan_out: Callable[[T], None], what: T) -> None:
        """Run one fan-out step and record how long it took (the swim_fanout_seconds
        histogram); the coalescing window counts from its end."""
        started = time.perf_counter()
        fan_out(what)
        elapsed = time.perf_counter() - started
        self.stats.observe_fanout(elapsed)
        if self.active:
            self._last = trio.current_time()

    async def run(self) -> None:
        """Flush held events once the window since the last fan-out has passed."""
        if self.window <= 0:
            return
        self.active = True
        try:
            while True:
                await self._ready.wait()
                self._ready = trio.Event()
                await trio.sleep_until(self._last + self.window)
                self.flush()
        finally:
            self.active = False
            self.flush()
