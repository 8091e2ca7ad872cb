"""Per-key usage history: what each key's connections used, per UTC day, into `swim_api_usage`.

The hub tells the meter of every client admitted, refused and gone (`Hub.watchers`) and of
every refused key that exists (`Authenticator.on_key_refused`); the meter reads each open
connection's running counts (stream events, bytes, rate refusals) when it writes, at each UTC
midnight and whenever `/metrics` or `swimctl top` asks, and the pure ledger (core/usage.py)
turns the readings into per-day additions. The additions go to the key database in a worker
thread at most once per `usage_interval` (60 s), and once more when the hub stops, after its
clients have gone, so a hub stopped with SIGTERM writes everything it counted.

A write that fails (the database is down, the table is missing and cannot be made) keeps the
additions in memory for the next attempt: nothing is lost or counted twice, and the failure is
one log line and `/healthz` `degraded` ("usage history"), never a refused client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from swimctl.core.usage import UsageLedger, next_midnight
from swimctl.hub.health import Condition
from swimctl.keys.records import KeyRecord, KeyStoreError
from swimctl.keys.store import describe_error

if TYPE_CHECKING:
    from swimctl.hub.client import Client
    from swimctl.hub.engine import Hub
    from swimctl.keys.store import KeyStore

log = logging.getLogger("swimctl.usage")

FINAL_WRITE_TIMEOUT = 3.0  # seconds the last write at shutdown may take


class UsageMeter:
    """Counts per key and day while the hub runs; writes the counts to the key database."""

    def __init__(self, hub: Hub, store: KeyStore, *, interval: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.hub = hub
        self.store = store
        self.interval = max(0.01, interval)
        self.clock = clock
        self.ledger = UsageLedger()
        self.condition = Condition("usage history", log)
        self.written_rows = 0  # rows added to the table since the hub started (for /metrics)
        self.last_write: float | None = None  # clock() of the last successful write
        self.stopped = False  # after the final write: later events have nowhere to go
        self.finished = trio.Event()  # set once the final write is over (done or given up)

    # -- what the hub tells us ---------------------------------------------------------------

    def joined(self, client: Client) -> None:
        if not self.stopped:
            self.ledger.opened(client, client.key_id, client.tier, self.clock())

    def left(self, client: Client) -> None:
        if not self.stopped:
            events, sent = self.hub.usage_of(client)
            self.ledger.closed(client, events, sent, client.rate_limited, self.clock())

    def refused(self, key_id: int, tier: str, kind: str) -> None:
        if not self.stopped:
            self.ledger.refused(key_id, tier, kind, self.clock())

    def key_refused(self, record: KeyRecord) -> None:
        """A key that exists was refused at the handshake (revoked, expired)."""
        self.refused(record.id, record.tier, "auth")

    def collect(self) -> None:
        """Read every open connection's counts into the ledger (cheap: no I/O)."""
        now = self.clock()
        usage_of = self.hub.usage_of
        for session in self.ledger.sessions():
            client: Any = session
            events, sent = usage_of(client)
            self.ledger.progress(client, events, sent, client.rate_limited, now)

    # -- writing -----------------------------------------------------------------------------

    async def write(self, *, final: bool = False) -> bool:
        """Add what was counted since the last write to the table; False when it failed (the
        rows stay pending)."""
        rows = self.ledger.take(final=final)
        if not rows:
            return True
        try:
            await trio.to_thread.run_sync(self.store.add_usage, rows, abandon_on_cancel=True)
        except Exception as exc:  # bookkeeping: never a reason to stop the hub
            self.ledger.restore(rows)
            reason = str(exc) if isinstance(exc, KeyStoreError) else describe_error(exc)
            self.condition.fail(reason, "usage is kept in memory and written when the "
                                "database takes it")
            return False
        self.condition.clear("usage written again")
        self.written_rows += len(rows)
        self.last_write = self.clock()
        return True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Write every `interval` seconds (reading the counts at each UTC midnight too, so a
        day gets what happened in it) until cancelled; then write what is left."""
        task_status.started()
        try:
            due = self.clock() + self.interval
            while True:
                now = self.clock()
                await trio.sleep(max(0.0, min(due, next_midnight(now)) - now))
                self.collect()
                if self.clock() >= due:
                    await self.write()
                    due = self.clock() + self.interval
        finally:
            await self._final_write()

    async def _final_write(self) -> None:
        """At shutdown (the clients have gone by now): everything still counted, bounded in
        time, so a stuck database cannot hold the process."""
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + FINAL_WRITE_TIMEOUT
            self.collect()
            self.stopped = True
            pending = self.ledger.pending_rows
            if not await self.write(final=True):
                log.error("usage history: the last %d row(s) could not be written at shutdown",
                          pending)
        if scope.cancelled_caught:
            log.error("usage history: the key database did not take the last %d row(s) within "
                      "%.0f s of shutdown", pending, FINAL_WRITE_TIMEOUT)
        self.finished.set()
