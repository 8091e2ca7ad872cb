"""The hub's view of one live, authenticated connection: a leaf, so the engine, the fan-out
plans and the server can all name it without importing each other."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from swimctl.core.model import format_ts_seconds
from swimctl.core.routing import Subscriptions
from swimctl.hub.outbox import Outbox


@attrs.define(eq=False)
class Client:
    """The hub's view of one live, authenticated connection."""

    client_id: str
    tier: str
    key_id: int
    outbox: Outbox
    connected_at: str = attrs.field(factory=format_ts_seconds)
    subs: Subscriptions = attrs.field(factory=Subscriptions)
    messages_sent: int = 0
    # Usage accounting (hub/usage.py): frames counted in messages_sent that are not stream
    # events (heartbeats, snapshots), bytes fan-out's fast path wrote past the outbox
    # (hub/plans.py folds them in), messages refused as over the rate limit.
    non_stream_frames: int = 0
    direct_bytes: int = 0
    rate_limited: int = 0
    close_code: int | None = None
    close_reason: str = ""
    on_close: Callable[[], None] | None = None  # set by the server: starts the close

    def request_close(self, code: int, reason: str) -> None:
        """Ask the connection's own task to close; the first reason given wins."""
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
            self.outbox.accept_events = False
            if self.on_close is not None:
                self.on_close()
