"""Refused handshakes without I/O: a per-address throttle on failed authentications, and a
summary of refusals for the log.

A flood of made-up keys must cost the hub almost nothing and never slow down valid clients:
malformed keys are refused before any lookup (`swimctl.keys.records.looks_like_key`), an
address whose failures run over its budget is refused before any lookup too, and the log gets
one line per interval instead of one per refusal.
"""

from __future__ import annotations

import ipaddress
import time
from collections import Counter
from collections.abc import Callable

import attrs

MAX_SOURCES_PER_SUMMARY = 1000  # addresses counted one by one in a summary; the rest as "other"


def address_key(host: str) -> str:
    """The unit a throttle counts: an IPv4 address, or an IPv6 /64 (one subscriber's network:
    an attacker has billions of addresses inside it)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@attrs.define
class FailureThrottle:
    """Failed authentications per source: a bucket of `burst` failures, refilled at `rate` per
    second. While an address's bucket is empty its handshakes are refused without a lookup.

    The table is bounded: past `max_sources` it forgets the sources whose buckets have refilled
    (they have nothing to remember), then the longest-known ones.
    """

    rate: float = 1.0
    burst: float = 20.0
    max_sources: int = 100_000
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = attrs.field(factory=dict)  # source: tokens, at

    @property
    def enabled(self) -> bool:
        return self.burst > 0

    def _tokens(self, source: str, now: float) -> float:
        tokens, at = self._buckets.get(source, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def allows(self, source: str) -> bool:
        """Whether a handshake from `source` may cost a lookup now."""
        if not self.enabled or source not in self._buckets:
            return True
        return self._tokens(source, self.clock()) >= 1.0

    def retry_after(self, source: str) -> float:
        """Seconds until `source` may try again (0 when it may now)."""
        if not self.enabled or self.rate <= 0:
            return 0.0 if self.allows(source) else float("inf")
        missing = 1.0 - self._tokens(source, self.clock())
        return max(0.0, missing / self.rate)

    def failed(self, source: str) -> None:
        """One failed authentication from `source`."""
        if not self.enabled:
            return
        now = self.clock()
        tokens = max(0.0, self._tokens(source, now) - 1.0)
        self._buckets.pop(source, None)  # re-insert: dict order is then least recently failed
        self._buckets[source] = (tokens, now)
        if len(self._buckets) > self.max_sources:
            self._prune(now)

    def _prune(self, now: float) -> None:
        for source in [s for s in self._buckets if self._tokens(s, now) >= self.burst]:
            del self._buckets[source]
        excess = len(self._buckets) - self.max_sources
        for source in list(self._buckets)[: max(0, excess)]:
            del self._buckets[source]

    def throttled_sources(self) -> int:
        """How many sources are refused right now (for /metrics)."""
        now = self.clock()
        return sum(1 for s in self._buckets if self._tokens(s, now) < 1.0)


@attrs.define
class RefusalSummary:
    """Counts refusals by reason and source; `flush` turns an interval's worth into one line."""

    totals: Counter[str] = attrs.field(factory=Counter)  # by reason, ever (for /metrics)
    _reasons: Counter[str] = attrs.field(factory=Counter)
    _sources: Counter[str] = attrs.field(factory=Counter)

    def note(self, reason: str, source: str | None) -> None:
        self.totals[reason] += 1
        self._reasons[reason] += 1
        where = source or "unknown address"
        if where in self._sources or len(self._sources) < MAX_SOURCES_PER_SUMMARY:
            self._sources[where] += 1
        else:
            self._sources["other addresses"] += 1

    def flush(self, interval: float) -> str | None:
        """The line for the interval just ended, or None when nothing was refused."""
        total = sum(self._reasons.values())
        if not total:
            return None
        reasons = ", ".join(f"{n} {why}" for why, n in self._reasons.most_common())
        top = ", ".join(f"{src} ×{n}" for src, n in self._sources.most_common(3))
        more = len(self._sources) - 3
        self._reasons.clear()
        self._sources.clear()
        return (f"refused {total} connection(s) in the last {interval:.0f} s: {reasons}; "
                f"from {top}{f' and {more} more' if more > 0 else ''}")
