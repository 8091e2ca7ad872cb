"""Counters the hub keeps for itself, read by `status`, the logs and the metrics exporter."""

from __future__ import annotations

import bisect
from collections import Counter

import attrs

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
class HubStats:
    """Counters the status reply, logs and metrics read."""

    fanout: Histogram = attrs.field(factory=Histogram)
    bytes_sent_closed: int = 0  # bytes sent by connections that have gone
    direct_bytes: int = 0  # bytes of events written by fan-out's fast path (hub/plans.py)

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

    def observe_fanout(self, seconds: float) -> None:
        """One fan-out step (one event, or a coalesced burst)."""
        self.fanout.observe(seconds)
        self.fanout_seconds.append(seconds)
        if len(self.fanout_seconds) > 10_000:
            del self.fanout_seconds[:5_000]
