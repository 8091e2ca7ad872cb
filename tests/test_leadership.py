"""One hub runs the feed for every hub on a broker: the lease, the takeover, fencing, and a
hub that drains on SIGTERM. Three `swimctl serve` processes, one redis-server and one
VATSIM-like HTTP feed (the traffic simulator), all on 127.0.0.1."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.fleet import INTERVAL, TTL, fleet, lifecycle_problems
from tests.hubprocs import make_key
from tests.rawws import RawClient


async def collect(ws: RawClient, into: list[dict[str, Any]]) -> None:
    while True:
        message = await ws.message()
        if message["type"].startswith("flight.") and message["type"] != "flight.positions":
            into.append(message)


async def test_one_hub_polls_and_a_killed_leader_is_replaced_without_a_burst(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    async with fleet(tmp_path, nursery) as f:
        leader = await f.one_leader()
        key, _ = make_key(f.db)
        watcher_hub = (leader + 1) % 3
        ws = await RawClient.open(f.hubs[watcher_hub].url, key)
        assert (await ws.message())["type"] == "connected"
        await ws.request({"action": "subscribe", "channels": ["flight.*"]})
        events: list[dict[str, Any]] = []
        nursery.start_soon(collect, ws, events)
        before = f.feed.requests
        await trio.sleep(6)
        polls = f.feed.requests - before
        assert polls <= 6 * 1.5 / INTERVAL, polls  # one hub polls, not three
        assert await f.leaders() == [leader]
        seqs_before = len(events)
        killed_at = trio.current_time()
        f.hubs[leader].kill()
        successor = await f.one_leader(timeout=TTL + INTERVAL + 10, not_=leader)
        takeover = trio.current_time() - killed_at
        assert successor != leader and takeover <= TTL + INTERVAL + 3, takeover
        await trio.sleep(6)
        assert seqs_before > 0 and len(events) > seqs_before  # the feed goes on
        assert lifecycle_problems(events) == []  # no re-created burst, no double departure
        log = f.hubs[successor].log()
        assert "feed: this hub leads now" in log and "took over" in log


async def test_a_paused_leader_cannot_publish_after_the_takeover(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    async with fleet(tmp_path, nursery) as f:
        leader = await f.one_leader()
        key, _ = make_key(f.db)
        ws = await RawClient.open(f.hubs[(leader + 1) % 3].url, key)
        assert (await ws.message())["type"] == "connected"
        await ws.request({"action": "subscribe", "channels": ["flight.*"]})
        events: list[dict[str, Any]] = []
        nursery.start_soon(collect, ws, events)
        await trio.sleep(2)
        f.hubs[leader].signal(signal.SIGSTOP)  # a GC pause longer than its lease
        successor = await f.one_leader(timeout=TTL + INTERVAL + 10, not_=leader)
        await trio.sleep(2)
        f.hubs[leader].signal(signal.SIGCONT)
        with trio.fail_after(15):
            while "no longer leads" not in f.hubs[leader].log():
                await trio.sleep(0.2)
        await trio.sleep(3)
        assert await f.leaders() == [successor]
        assert lifecycle_problems(events) == []
        # the deposed hub runs no feed: it reports no feed age (no false SwimFeedStale)
        async with httpx.AsyncClient(timeout=5) as http:
            deposed = await http.get(f"http://127.0.0.1:{f.metrics[leader]}/metrics")
            running = await http.get(f"http://127.0.0.1:{f.metrics[successor]}/metrics")
        assert "swim_feed_age_seconds " in running.text
        assert "swim_feed_age_seconds" not in deposed.text


async def test_sigterm_drains_in_waves_and_hands_the_feed_over_at_once(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    async with fleet(tmp_path, nursery) as f:
        leader = await f.one_leader()
        key, _ = make_key(f.db)
        clients = []
        for _ in range(20):
            ws = await RawClient.open(f.hubs[leader].url, key)
            assert (await ws.message())["type"] == "connected"
            clients.append(ws)
        closed_at: list[float] = []

        async def until_closed(ws: RawClient) -> None:
            code, _ = await ws.close_frame(timeout=20)
            assert code == 1001
            closed_at.append(trio.current_time())

        started = trio.current_time()
        f.hubs[leader].signal(signal.SIGTERM)
        async with trio.open_nursery() as waiting:
            for ws in clients:
                waiting.start_soon(until_closed, ws)
            successor = await f.one_leader(timeout=10, not_=leader)
            handed_over = trio.current_time() - started
        assert handed_over < TTL, handed_over  # released at once, not waited out
        assert len(closed_at) == 20
        assert max(closed_at) - min(closed_at) >= 2.0  # spread over the drain, in waves
        exit_code = await trio.to_thread.run_sync(f.hubs[leader].wait, 20.0)
        assert exit_code == 0 and trio.current_time() - started < 20
        assert successor != leader

        # A second TERM (a supervisor's, an impatient ^C) cuts the drain short, still cleanly.
        other = 3 - leader - successor
        late = [await RawClient.open(f.hubs[other].url, key) for _ in range(20)]
        for ws in late:
            assert (await ws.message())["type"] == "connected"
        started = trio.current_time()
        f.hubs[other].signal(signal.SIGTERM)
        await trio.sleep(0.3)
        f.hubs[other].signal(signal.SIGTERM)
        for ws in late:
            code, _ = await ws.close_frame(timeout=10)
            assert code == 1001
        assert trio.current_time() - started < 3.0  # not the 5 s drain
        assert await trio.to_thread.run_sync(f.hubs[other].wait, 20.0) == 0
        assert "again: closing the remaining connections now" in f.hubs[other].log()

