"""Three `swimctl serve` processes on one Redis behave as one hub: one stream, one set of
limits, and clients that move between them without losing or repeating an event."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from swimctl import client as swim
from tests.hubprocs import SWIMCTL, HubProcess, make_key
from tests.rawws import RawClient
from tests.redis_server import RedisServer


class Cluster:
    def __init__(self, directory: Path, redis: RedisServer, hubs: list[HubProcess]) -> None:
        self.directory = directory
        self.redis = redis
        self.hubs = hubs
        self.db = hubs[0].db

    @property
    def urls(self) -> list[str]:
        return [hub.url for hub in self.hubs]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    redis = RedisServer(tmp_path / "redis").start()
    db = f"sqlite:///{tmp_path}/keys.db"
    make_key(db)  # creates the table before three hubs race to
    hubs = [HubProcess(name, tmp_path, db, redis.url, "--heartbeat", "2")
            for name in ("a", "b", "c")]
    try:
        for hub in hubs:
            hub.start()
        yield Cluster(tmp_path, redis, hubs)
    finally:
        for hub in hubs:
            hub.close()
        redis.stop()


async def connect(url: str, key: str) -> tuple[RawClient, dict[str, Any]]:
    """A raw WebSocket (no nursery: any of them may be closed in any order) and its first
    message."""
    ws = await RawClient.open(url, key)
    return ws, await ws.message()


async def ask(ws: RawClient, body: dict[str, Any]) -> dict[str, Any]:
    return await ws.request(body)


async def next_event(ws: RawClient) -> dict[str, Any]:
    with trio.fail_after(10):
        while True:
            message = await ws.message()
            if "." in message["type"]:
                return message


async def test_every_hub_serves_one_stream_in_one_order(cluster: Cluster) -> None:
    key, _ = make_key(cluster.db)
    system, _ = make_key(cluster.db, "system")
    opened = [await connect(url, key) for url in cluster.urls]
    assert len({hello["data"]["epoch"] for _, hello in opened}) == 1  # one epoch everywhere
    for ws, _ in opened:
        assert (await ask(ws, {"action": "subscribe", "channels": ["ctp.*"]}))["type"] \
            == "subscribed"
    publisher_a, _ = await connect(cluster.urls[0], system)
    publisher_c, _ = await connect(cluster.urls[2], system)
    seqs = []
    for i in range(20):
        target = publisher_a if i % 2 else publisher_c
        ack = await ask(target, {"action": "publish", "channel": "ctp.slot",
                                 "data": {"i": i}, "event_id": f"slot-{i}"})
        assert ack["type"] == "publish_ack" and ack["accepted"] == 1
        seqs.append(ack["seq"])
    again = await ask(publisher_a, {"action": "publish", "channel": "ctp.slot",
                                    "data": {"i": 3}, "event_id": "slot-3"})
    assert again["duplicates"] == 1 and again["seq"] == seqs[3]  # stored once, via either hub
    assert seqs == list(range(seqs[0], seqs[0] + 20))  # dense and global
    received: list[list[tuple[int, str]]] = []
    for ws, _ in opened:
        got = []
        while len(got) < 20:
            event = await next_event(ws)
            if event["type"] == "ctp.slot":
                got.append((event["seq"], event["event_id"]))
        received.append(got)
    assert received[0] == received[1] == received[2]
    assert [s for s, _ in received[0]] == seqs
    status = [await ask(ws, {"action": "status"}) for ws, _ in opened]
    assert len({s["data"]["hub_id"] for s in status}) == 3  # each client sees which hub it is on
    for ws in (*(o[0] for o in opened), publisher_a, publisher_c):
        await ws.stream.aclose()


async def test_a_keys_cap_counts_its_connections_on_every_hub(cluster: Cluster) -> None:
    key, _ = make_key(cluster.db)
    opened: list[RawClient] = []
    try:
        for i in range(50):  # the developer tier's cap, spread over the three hubs
            ws, hello = await connect(cluster.urls[i % 3], key)
            opened.append(ws)
            assert hello["type"] == "connected", (i, hello)
        ws, hello = await connect(cluster.urls[1], key)
        assert hello["type"] == "error" and hello["code"] == "CONNECTION_LIMIT"
        assert (await ws.close_frame())[0] == 4002
        await ws.stream.aclose()
        await opened.pop(0).stream.aclose()  # a seat on hub a frees one for hub c
        with trio.fail_after(10):
            while True:
                ws, hello = await connect(cluster.urls[2], key)
                opened.append(ws)
                if hello["type"] == "connected":
                    break
                await trio.sleep(0.1)
    finally:
        for ws in opened:
            await ws.stream.aclose()


async def test_kill_9_of_a_hub_loses_and_repeats_nothing(cluster: Cluster) -> None:
    """Clients on the killed hub move to another and resume there; the events published
    meanwhile arrive once each, in seq order."""
    key, _ = make_key(cluster.db)
    system, _ = make_key(cluster.db, "system")
    total = 300
    got: dict[int, list[int]] = {i: [] for i in range(3)}
    gaps: list[swim.Resumed] = []

    async def follower(i: int, ready: trio.Event) -> None:
        urls = cluster.urls[i:] + cluster.urls[:i]  # each starts on a different hub
        async with swim.connect(urls, key, backoff_initial=0.1, backoff_max=0.5) as client:
            await client.subscribe(["ctp.*"])
            ready.set()
            async for item in client:
                if isinstance(item, swim.Resumed):
                    gaps.append(item)
                elif isinstance(item, swim.Event) and item.type == "ctp.n":
                    got[i].append(item.seq or 0)
                    if len(got[i]) >= total:
                        return

    async with trio.open_nursery() as nursery:
        for i in range(3):
            ready = trio.Event()
            nursery.start_soon(follower, i, ready)
            await ready.wait()
        publisher, _ = await connect(cluster.urls[2], system)
        for n in range(total):
            if n == 100:
                cluster.hubs[0].kill()
            ack = await ask(publisher, {"action": "publish", "channel": "ctp.n",
                                        "data": {"n": n}, "event_id": f"n-{n}"})
            assert ack["accepted"] == 1
            await trio.sleep(0.01)
        with trio.fail_after(30):
            while any(len(v) < total for v in got.values()):
                await trio.sleep(0.05)
        await publisher.stream.aclose()
        nursery.cancel_scope.cancel()
    for i in range(3):
        assert got[i] == sorted(set(got[i])) and len(got[i]) == total, i
    assert gaps and all(g.recovered for g in gaps)  # the one on hub a resumed, with no gap


async def test_a_revoked_key_is_closed_on_every_hub(cluster: Cluster) -> None:
    key, key_id = make_key(cluster.db)
    opened = [await connect(url, key) for url in cluster.urls]
    await trio.run_process([*SWIMCTL, "keys", "revoke", str(key_id), "--db", cluster.db],
                           capture_stdout=True)
    codes = []
    for ws, _ in opened:  # revalidation runs every 10 s on each hub
        codes.append((await ws.close_frame(timeout=15))[0])
        await ws.stream.aclose()
    assert codes == [4001, 4001, 4001]


async def test_a_restarted_hub_keeps_the_epoch_and_resumes_with_no_gap(
        cluster: Cluster) -> None:
    key, _ = make_key(cluster.db)
    system, _ = make_key(cluster.db, "system")
    publisher, hello = await connect(cluster.urls[1], system)
    epoch = hello["data"]["epoch"]
    for n in range(5):
        await ask(publisher, {"action": "publish", "channel": "ctp.n", "data": {"n": n}})
    hub = cluster.hubs[0]
    assert hub.stop() == 0
    hub.start()
    ws, hello = await connect(hub.url, key)
    assert hello["data"]["epoch"] == epoch and hello["data"]["seq"] == 5
    reply = await ask(ws, {"action": "subscribe", "channels": ["ctp.*"],
                           "resume": {"epoch": epoch, "seq": 2}})
    assert reply["recovered"] is True
    replayed = [(await next_event(ws))["seq"] for _ in range(3)]
    assert replayed == [3, 4, 5]
    for opened in (publisher, ws):
        await opened.stream.aclose()


def test_a_broker_that_is_not_redis_is_one_line(tmp_path: Path) -> None:
    out = subprocess.run([*SWIMCTL, "serve", "--broker", "http://x", "--port", "0"],
                         capture_output=True, text=True, timeout=30,
                         env={"SWIM_DB": f"sqlite:///{tmp_path}/k.db", "PATH": "/usr/bin"})
    assert out.returncode != 0 and "--broker" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1

