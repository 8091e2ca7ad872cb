"""Hubs on a shared event log (`serve --broker`), in-process, against a redis-server of the
test's own that can be taken away, restarted empty, or restarted with its AOF."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed

from tests.conftest import Harness, launch_hub, recv, recv_until, request
from tests.redis_server import RedisServer, Sentinel


async def two_hubs(nursery: trio.Nursery, tmp_path: Path, redis: RedisServer,
                   **overrides: object) -> tuple[Harness, Harness]:
    first = await launch_hub(nursery, tmp_path, broker=redis.url, **overrides)
    second = await launch_hub(nursery, tmp_path, broker=redis.url, **overrides)
    return first, second


async def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


async def test_an_event_published_on_one_hub_resumes_on_another(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        first, second = await two_hubs(nursery, tmp_path, redis)
        assert first.hub.log.epoch == second.hub.log.epoch
        for n in range(6):
            appended = await first.hub.publish("ctp.n", {"n": n})
            assert appended.seq == n + 1
        await wait_for(lambda: second.hub.log.head == 6)
        async with second.connect() as ws:
            reply = await request(ws, {"action": "subscribe", "channels": ["ctp.*"],
                                       "resume": {"epoch": first.hub.log.epoch, "seq": 3}})
            assert reply["recovered"] is True
            assert [(await recv(ws))["data"]["n"] for _ in range(3)] == [3, 4, 5]
            await first.hub.publish("ctp.n", {"n": 6})  # live, through the other hub
            assert (await recv(ws))["seq"] == 7
    finally:
        redis.stop()


async def test_redis_restarted_empty_means_a_new_epoch_and_an_honest_gap(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        hub = await launch_hub(nursery, tmp_path, broker=redis.url)
        old_epoch = hub.hub.log.epoch
        async with hub.connect() as ws:
            await request(ws, {"action": "subscribe", "channels": ["ctp.*"]})
            await hub.hub.publish("ctp.n", {"n": 0})
            await recv_until(ws, lambda m: m["type"] == "ctp.n")
            redis.restart()  # no persistence: the log, its counter and its epoch are gone
            with pytest.raises(ConnectionClosed) as info, trio.fail_after(15):
                while True:
                    await ws.get_message()
            assert info.value.reason.code == 1012
        assert hub.hub.log.epoch != old_epoch
        async with hub.connect() as ws:
            reply = await request(ws, {"action": "subscribe", "channels": ["ctp.*"],
                                       "resume": {"epoch": old_epoch, "seq": 1}})
            assert reply["recovered"] is False
            assert (await hub.hub.publish("ctp.n", {"n": 1})).seq == 1  # numbering restarted
    finally:
        redis.stop()


async def test_redis_restarted_with_its_aof_keeps_the_epoch(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis", appendonly=True).start()
    try:
        hub = await launch_hub(nursery, tmp_path, broker=redis.url)
        epoch = hub.hub.log.epoch
        for n in range(3):
            await hub.hub.publish("ctp.n", {"n": n})
        redis.restart()
        with trio.fail_after(15):
            while True:
                try:
                    appended = await hub.hub.publish("ctp.n", {"n": 3})
                    break
                except Exception:
                    await trio.sleep(0.2)
        assert appended.seq == 4 and hub.hub.log.epoch == epoch
        await wait_for(lambda: hub.hub.log.head == 4)
        async with hub.connect() as ws:
            reply = await request(ws, {"action": "subscribe", "channels": ["ctp.*"],
                                       "resume": {"epoch": epoch, "seq": 1}})
            assert reply["recovered"] is True
            assert [(await recv(ws))["seq"] for _ in range(3)] == [2, 3, 4]
    finally:
        redis.stop()


async def test_with_redis_away_clients_stay_and_a_publish_is_refused_in_time(
        nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="swimctl.broker")
    redis = RedisServer(tmp_path / "redis", appendonly=True).start()
    try:
        hub = await launch_hub(nursery, tmp_path, options={"metrics_port": 0},
                               broker=redis.url, heartbeat_interval=0.5)
        base = hub.handle.extras["metrics_url"]
        async with hub.connect("system") as ws, httpx.AsyncClient() as http:
            await request(ws, {"action": "subscribe", "channels": ["system.*"]})
            redis.stop()
            started = trio.current_time()
            reply = await request(ws, {"action": "publish", "channel": "ctp.x", "data": {},
                                       "event_id": "x1", "id": 1}, timeout=10)
            assert reply["code"] == "BROKER_UNAVAILABLE" and reply["id"] == 1
            assert trio.current_time() - started < 4.5
            await wait_for(lambda: not hub.hub.log.up)
            health = await http.get(f"{base}/healthz")
            assert health.status_code == 503 and "event log" in health.text
            metrics = (await http.get(f"{base}/metrics")).text
            assert "swim_broker_up 0.0" in metrics
            beat = await recv_until(ws, lambda m: m["type"] == "system.heartbeat", timeout=5)
            assert beat["data"]["connected_clients"] == 1  # still connected, still beating
            redis.start()
            await wait_for(lambda: hub.hub.log.up, timeout=15)
            reply = await request(ws, {"action": "publish", "channel": "ctp.x", "data": {},
                                       "event_id": "x1"})
            assert reply["accepted"] == 1  # the retry, with the same id, is stored once
            assert (await http.get(f"{base}/healthz")).status_code == 200
        downs = [r for r in caplog.records if "unreachable" in r.message]
        backs = [r for r in caplog.records if "is back" in r.message]
        assert len(downs) == 1 and len(backs) == 1  # once each way, not once per attempt
    finally:
        redis.stop()


async def replication_offset(server: RedisServer, field: bytes) -> int:
    info = (await trio.run_process(["redis-cli", "-p", str(server.port), "info", "replication"],
                                   capture_stdout=True)).stdout
    for line in info.splitlines():
        if line.startswith(field + b":"):
            return int(line.split(b":", 1)[1])
    return -1


async def replicated(primary: RedisServer, replica: RedisServer) -> None:
    """Wait until the replica has everything the primary has written so far."""
    target = await replication_offset(primary, b"master_repl_offset")
    with trio.fail_after(10):
        while await replication_offset(replica, b"slave_repl_offset") < target:
            await trio.sleep(0.05)


async def test_through_sentinel_the_log_follows_a_failover(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    """A second Redis as a replica and a Sentinel watching the first: the hub finds the
    primary through Sentinel, and after the primary dies it publishes to the promoted one."""
    primary = RedisServer(tmp_path / "primary", appendonly=True,
                          extra=("--repl-diskless-sync-delay", "0")).start()
    replica = RedisServer(tmp_path / "replica", appendonly=True,
                          extra=("--replicaof", "127.0.0.1", str(primary.port))).start()
    sentinel = None
    try:
        with trio.fail_after(10):
            while b"master_link_status:up" not in (await trio.run_process(
                    ["redis-cli", "-p", str(replica.port), "info", "replication"],
                    capture_stdout=True)).stdout:
                await trio.sleep(0.1)
        sentinel = Sentinel(tmp_path / "sentinel", primary).start()
        hub = await launch_hub(nursery, tmp_path, broker=sentinel.url)
        epoch = hub.hub.log.epoch
        for n in range(3):
            await hub.hub.publish("ctp.n", {"n": n})
        await replicated(primary, replica)  # the replica has copied them
        primary.stop()
        with trio.fail_after(30):  # down after 1 s, then Sentinel's election and promotion
            while True:
                try:
                    appended = await hub.hub.publish("ctp.n", {"n": 3}, event_id="after")
                    break
                except Exception:
                    await trio.sleep(0.3)
        assert appended.seq == 4 and hub.hub.log.epoch == epoch
        await wait_for(lambda: hub.hub.log.head == 4, timeout=15)
    finally:
        if sentinel is not None:
            sentinel.stop()
        replica.stop()
        primary.stop()
