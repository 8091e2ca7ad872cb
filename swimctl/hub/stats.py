"""Counters the hub keeps for itself, read by `status`, the logs, the metrics exporter and
`swimctl top` (through `status` with `hub: true`)."""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Any

import attrs

from swimctl.wire.encodings import plain_size

FANOUT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                  0.25, 0.5, 1.0)


@attrs.define
class Histogram:
    """Cumulative-bucket histogram kept by the hub itself, read by the metrics exporter."""

    bounds: tuple[float, ...] = FANOUT_BUCKETS
    counts: list[int] = attrs.field(factory=lambda: [0] * (len(FANOUT_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1


@attrs.define
class FeedCycle:
    """What the feed's last cycle brought: its snapshot time, pilots, and events by type."""

    snapshot: str  # the snapshot's update time, ISO-8601
    pilots: int
    skipped: int
    events: dict[str, int]
    at: float  # time.time() when it was published

    def to_dict(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot, "pilots": self.pilots, "skipped": self.skipped,
                "events": [{"type": t, "count": n} for t, n in sorted(self.events.items())],
                "events_total": sum(self.events.values())}


@attrs.define
class BrokerState:
    """A hub's standing on a shared broker (`serve --broker`), set by the broker wiring and
    read by `/metrics` (`swim_broker_up`, `swim_broker_read_lag_seconds`, `swim_feed_leader`)
    and `swimctl top`'s hubs panel. None on a hub without a broker.

    `peers` lists what other hubs on the broker report about themselves, each a dict with the
    keys `hub_report` gives this hub (`hub_id`, `clients`, `leader`, `read_lag_seconds`,
    `broker_up`); empty when the broker does not share them."""

    up: bool = False
    read_lag_seconds: float | None = None
    leader: bool | None = None
    peers: list[dict[str, Any]] = attrs.field(factory=list)


@attrs.define
class HubStats:
    """Counters the status reply, logs and metrics read."""

    fanout: Histogram = attrs.field(factory=Histogram)
    bytes_sent_closed: int = 0  # bytes sent by connections that have gone
    direct_bytes: int = 0  # bytes of events written by fan-out's fast path (hub/plans.py)
    # Frames handed to clients that negotiated permessage-deflate: their bytes as plain
    # frames, and as they went out (small ones stay plain, so the two meet there).
    deflate_plain_bytes: int = 0
    deflate_wire_bytes: int = 0

    events: Counter[str] = attrs.field(factory=Counter)
    deliveries: int = 0
    slow_consumers: int = 0
    violation_closes: int = 0  # clients closed with 4003
    # Connections dropped before their request head was read: "per-address cap", "timeout".
    handshakes_dropped: Counter[str] = attrs.field(factory=Counter)
    auth_failures: int = 0
    resumes_recovered: int = 0
    resumes_lost: int = 0
    fanout_seconds: list[float] = attrs.field(factory=list)  # drained by the metrics exporter
    positions_encodings: int = 0
    # Connections the hub closed, by close code (4001 revoked, 4003 violations, 4008 slow...).
    closes: Counter[int] = attrs.field(factory=Counter)
    cap_refusals: int = 0  # handshakes refused at the key's tier cap (CONNECTION_LIMIT)
    rate_limited: int = 0  # messages answered RATE_LIMITED
    feed_cycles: int = 0
    last_cycle: FeedCycle | None = None
    broker: BrokerState | None = None

    def count_deflated(self, payload: bytes, frame: bytes, deliveries: int = 1) -> None:
        """`deliveries` copies of `frame`, the deflate encoding of `payload`, handed out."""
        self.deflate_plain_bytes += plain_size(payload) * deliveries
        self.deflate_wire_bytes += len(frame) * deliveries

    def observe_fanout(self, seconds: float) -> None:
        """One fan-out step (one event, or a coalesced burst)."""
        self.fanout.observe(seconds)
        self.fanout_seconds.append(seconds)
        if len(self.fanout_seconds) > 10_000:
            del self.fanout_seconds[:5_000]
