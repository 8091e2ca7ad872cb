"""The whole hub's figures in one JSON-ready dict: the `hub` object of a `status` reply asked
with `"hub": true` by a system-tier key, which `swimctl top` draws every second.

Everything is a running total or a gauge read at this moment, so a reader takes two reports
and divides the differences by the time between them (`uptime`) for rates; the fan-out
histogram is sent as bucket counts for the same reason. Lists of objects (not maps keyed by
type or tier) keep the shape fixed for any client. Reading costs one pass over the clients.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from swimctl.core.usage import COUNTS, UsageLedger
from swimctl.keys.records import TIERS

if TYPE_CHECKING:
    from swimctl.hub.auth import Authenticator
    from swimctl.hub.engine import Hub
    from swimctl.hub.health import Watched
    from swimctl.hub.usage import UsageMeter

TOP_KEYS = 20  # keys listed: every key with open connections first, by events delivered


def hub_entry(hub_id: str, hub: Hub) -> dict[str, Any]:
    """This hub as the hubs panel lists it; a broker (BrokerState) adds its standing."""
    broker = hub.stats.broker
    return {
        "hub_id": hub_id,
        "self": True,
        "clients": len(hub.clients),
        "broker_up": None if broker is None else broker.up,
        "leader": None if broker is None else broker.leader,
        "read_lag_seconds": None if broker is None else broker.read_lag_seconds,
    }


class HubReport:
    """Builds the report from the hub's live parts (any of which may be missing in tests)."""

    def __init__(self, hub: Hub, hub_id: str, *, auth: Authenticator | None = None,
                 usage: UsageMeter | None = None, watched: Watched | None = None) -> None:
        self.hub = hub
        self.hub_id = hub_id
        self.auth = auth
        self.usage = usage
        self.watched = watched

    def __call__(self) -> dict[str, Any]:
        hub, stats = self.hub, self.hub.stats
        hub.flush()  # held events count as published and delivered
        if self.usage is not None:
            self.usage.collect()
        live_by_tier = dict.fromkeys(TIERS, 0)
        for client in hub.clients.values():
            live_by_tier[client.tier] = live_by_tier.get(client.tier, 0) + 1
        hist = stats.fanout
        cycle = stats.last_cycle
        return {
            "hub_id": self.hub_id,
            "uptime": round(time.monotonic() - hub.started, 3),
            "epoch": hub.log.epoch,
            "seq": hub.log.head,
            "connected_clients": len(hub.clients),
            "tiers": self._tiers(live_by_tier),
            "events": [{"type": t, "count": n} for t, n in sorted(stats.events.items())],
            "deliveries": stats.deliveries,
            "fanout": {"bounds": list(hist.bounds), "counts": list(hist.counts),
                       "count": hist.count, "sum": hist.total},
            "slow_consumers": stats.slow_consumers,
            "rate_limited": stats.rate_limited,
            "cap_refusals": stats.cap_refusals,
            "auth_failures": stats.auth_failures,
            "closes": [{"code": c, "count": n} for c, n in sorted(stats.closes.items())],
            "feed": {
                "age_seconds": hub.feed_age(),
                "cycles": stats.feed_cycles,
                "last_cycle": None if cycle is None else cycle.to_dict(),
            },
            "keys": self._keys(),
            "hubs": self._hubs(),
            "keystore_up": None if self.auth is None else self.auth.available,
            "usage": self._usage(),
            "components": self._components(),
        }

    def _tiers(self, live: dict[str, int]) -> list[dict[str, Any]]:
        ledger = self.usage.ledger if self.usage is not None else UsageLedger()
        rows = []
        for tier, count in live.items():
            totals = UsageLedger.totals(ledger.by_tier.get(tier))
            rows.append({"tier": tier, "open": count, **totals})  # connections: opened
        return rows

    def _keys(self) -> list[dict[str, Any]]:
        if self.usage is None:
            return []
        ledger = self.usage.ledger
        live = ledger.live()
        owners = self.auth.owners if self.auth is not None else {}

        def rank(key_id: int) -> tuple[bool, float]:
            counts = ledger.by_key.get(key_id)
            return (key_id in live, counts[COUNTS.index("events_delivered")] if counts else 0)

        chosen = sorted(set(live) | set(ledger.by_key), key=rank, reverse=True)[:TOP_KEYS]
        return [{"key_id": key_id, "tier": ledger.tier_of.get(key_id, ""),
                 "owner": owners.get(key_id), "open": live.get(key_id, 0),
                 **UsageLedger.totals(ledger.by_key.get(key_id))}
                for key_id in chosen]

    def _hubs(self) -> list[dict[str, Any]]:
        entries = [hub_entry(self.hub_id, self.hub)]
        broker = self.hub.stats.broker
        if broker is not None:
            entries += [{**peer, "self": False} for peer in broker.peers
                        if peer.get("hub_id") != self.hub_id]
        return entries

    def _usage(self) -> dict[str, Any]:
        meter = self.usage
        if meter is None:
            return {"ok": None, "pending_rows": 0, "written_rows": 0, "last_write_age": None}
        age = None if meter.last_write is None else round(meter.clock() - meter.last_write, 1)
        return {"ok": meter.condition.ok, "pending_rows": meter.ledger.pending_rows,
                "written_rows": meter.written_rows, "last_write_age": age}

    def _components(self) -> list[dict[str, Any]]:
        conditions = list(self.watched.conditions()) if self.watched is not None else []
        return [{"component": c.part, "ok": c.ok, "problem": c.problem} for c in conditions]
