"""Three `swimctl serve` processes sharing one redis-server (with AOF) and one VATSIM-like
feed (the traffic simulator over HTTP), each hub with its metrics port: what the leadership
and chaos tests run against."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.hubprocs import HubProcess, make_key
from tests.redis_server import RedisServer, free_port
from tests.simfeed import SimFeed

TTL = 3.0
INTERVAL = 1.0


class Fleet:
    def __init__(self, hubs: list[HubProcess], metrics: list[int], feed: SimFeed,
                 redis: RedisServer) -> None:
        self.hubs = hubs
        self.metrics = metrics
        self.feed = feed
        self.redis = redis
        self.db = hubs[0].db

    async def health(self, index: int) -> str:
        async with httpx.AsyncClient(timeout=2) as http:
            try:
                answer = await http.get(f"http://127.0.0.1:{self.metrics[index]}/healthz")
            except httpx.HTTPError:
                return ""
        return answer.text

    async def leaders(self) -> list[int]:
        return [i for i in range(len(self.hubs)) if "leads: feed" in await self.health(i)]

    async def one_leader(self, timeout: float = 20.0, not_: int | None = None) -> int:
        with trio.fail_after(timeout):
            while True:
                found = [i for i in await self.leaders() if i != not_]
                if len(found) == 1:
                    return found[0]
                await trio.sleep(0.2)


@asynccontextmanager
async def fleet(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Fleet]:
    feed = SimFeed(pilots=150, period=INTERVAL, speed=30.0)
    feed_url = await nursery.start(feed.run)
    redis = RedisServer(tmp_path / "redis", appendonly=True).start()
    db = f"sqlite:///{tmp_path}/keys.db"
    make_key(db)
    metrics = [free_port() for _ in range(3)]
    hubs = [HubProcess(name, tmp_path, db, redis.url, "--feed", feed_url, "--feed-interval",
                       str(INTERVAL), "--feed-lease-ttl", str(TTL), "--heartbeat", "1",
                       "--metrics-port", str(port))
            for name, port in zip("abc", metrics, strict=True)]
    try:
        for hub in hubs:
            hub.start()
        yield Fleet(hubs, metrics, feed, redis)
    finally:
        for hub in hubs:
            hub.close()
        redis.stop()


def lifecycle_problems(events: list[dict[str, Any]]) -> list[str]:
    """A flight created twice without a deletion between, or departed twice without an
    arrival: what a takeover that forgot the detector's state would produce."""
    problems = []
    alive: dict[str, bool] = {}
    flying: dict[str, bool] = {}
    for event in events:
        callsign = event["data"].get("callsign")
        etype = event["type"]
        if etype == "flight.created":
            if alive.get(callsign):
                problems.append(f"{callsign} created twice")
            alive[callsign] = True
        elif etype == "flight.deleted":
            alive[callsign] = False
            flying[callsign] = False
        elif etype == "flight.departed":
            if flying.get(callsign):
                problems.append(f"{callsign} departed twice")
            flying[callsign] = True
        elif etype == "flight.arrived":
            flying[callsign] = False
    return problems
