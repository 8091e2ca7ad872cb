"""Per-key usage history and the hub's own figures, from live hubs on 127.0.0.1: exact counts
when a client falls behind, writes while the hub runs and across a database outage, the same
numbers in /metrics and in `status` with `hub: true`, and a SIGTERM'd `swimctl serve` that
writes what it counted before it exits. (The same session on every database is in
test_keystore_contract.py.)"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import trio

from swimctl.core.usage import UsageRow
from swimctl.keys.store import KeyStore
from tests.conftest import Harness, StartHub, request
from tests.usage_session import CountingClient

SWIMCTL = [sys.executable, "-m", "swimctl"]


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not await trio.to_thread.run_sync(check):
            await trio.sleep(0.05)


async def stop(h: Harness, *clients: CountingClient) -> None:
    """Stop the hub gracefully while the clients answer its close; return once the usage
    meter's last write is over."""
    async with trio.open_nursery() as nursery:
        for client in clients:
            nursery.start_soon(client.finish)
        await h.handle.shutdown()
    await h.handle.extras["usage"].finished.wait()


def totals(rows: list[UsageRow], key_id: int) -> UsageRow:
    """A key's rows added up across days (a test may run across UTC midnight)."""
    total = UsageRow(dt.date.min, key_id)
    for row in rows:
        if row.key_id == key_id:
            total = total.plus(row)
    return total


async def test_counts_stay_exact_when_a_client_falls_behind(start_hub: StartHub) -> None:
    """A reader with a tiny receive window makes the fan-out's fast path write short and
    queue the rest: its bytes are then counted by its outbox, not twice, not lost."""
    h = await start_hub(heartbeat_interval=3600.0)
    slow = await CountingClient.connect(h.url, h.keys["developer"], rcvbuf=4096)
    fast = await CountingClient.connect(h.url, h.keys["developer"])
    for client in (slow, fast):
        await client.until(others=1)
        await client.send({"action": "subscribe", "channels": ["ctp.*"]})
        await client.until(others=2)
    demotions = h.hub.demotions.count
    pad = "x" * 900
    for i in range(600):
        await h.hub.publish("ctp.bulk", {"i": i, "pad": pad})
    await fast.until(events=600)
    assert h.hub.demotions.count > demotions  # the slow one did fall behind
    await slow.until(events=600, timeout=20)
    await stop(h, slow, fast)
    rows = await trio.to_thread.run_sync(h.store.usage)
    got = totals(rows, h.key_id)
    assert (got.connections, got.events_delivered) == (2, 1200)
    assert got.bytes_sent == slow.received + fast.received


async def test_usage_while_running_in_metrics_and_in_status(start_hub: StartHub) -> None:
    h = await start_hub(options={"metrics_port": 0}, usage_interval=0.2,
                        heartbeat_interval=3600.0)
    base = h.handle.extras["metrics_url"]
    dev = await CountingClient.connect(h.url, h.keys["developer"])
    partner = await CountingClient.connect(h.url, h.keys["partner"])
    for client in (dev, partner):
        await client.until(others=1)
        await client.send({"action": "subscribe", "channels": ["ctp.*"]})
        await client.until(others=2)
    for i in range(4):
        await h.hub.publish("ctp.n", {"i": i})
    await dev.until(events=4)
    await partner.until(events=4)

    # Written while the hub runs (every usage_interval), not only at the end.
    def written() -> bool:
        return totals(h.store.usage(), h.key_id).events_delivered == 4

    await eventually(written)

    metrics = (await trio.to_thread.run_sync(httpx.get, f"{base}/metrics")).text
    for line in ('swim_tier_events_delivered_total{tier="developer"} 4.0',
                 'swim_tier_connections_opened_total{tier="developer"} 1.0',
                 f'swim_key_connections{{key_id="{h.key_ids["partner"]}",tier="partner"}} 1.0',
                 f'swim_key_events_delivered_total{{key_id="{h.key_ids["partner"]}",'
                 'tier="partner"} 4.0'):
        assert line in metrics, line
    assert f'key_id="{h.key_id}"' not in metrics  # developer keys: per tier only
    assert re.search(r'^swim_tier_sent_bytes_total\{tier="developer"\} [1-9]', metrics, re.M)

    async with h.connect("system") as ws:
        reply = await request(ws, {"action": "status", "hub": True})
        status, report = reply["data"], reply["data"]["hub"]
        assert report["connected_clients"] == status["connected_clients"] == 3
        assert report["seq"] == status["seq"] and report["epoch"] == status["epoch"]
        tiers = {t["tier"]: t for t in report["tiers"]}
        assert tiers["developer"]["open"] == 1 and tiers["system"]["open"] == 1
        assert tiers["developer"]["connections"] == 1  # opened since the hub started
        assert tiers["developer"]["events_delivered"] == 4
        keys = {k["key_id"]: k for k in report["keys"]}
        assert keys[h.key_id]["owner"] == "test developer" and keys[h.key_id]["open"] == 1
        assert {"type": "ctp.n", "count": 4} in report["events"]
        assert report["hubs"][0]["clients"] == 3 and report["hubs"][0]["self"] is True
        assert report["usage"]["ok"] is True and report["keystore_up"] is True
    async with h.connect("developer") as ws:
        refused = await request(ws, {"action": "status", "hub": True})
        assert refused["type"] == "error" and refused["code"] == "FORBIDDEN"
        plain = await request(ws, {"action": "status"})
        assert "hub" not in plain["data"]
    await stop(h, dev, partner)


async def test_a_database_outage_keeps_the_counts_for_later(start_hub: StartHub,
                                                             tmp_path: Path) -> None:
    h = await start_hub(usage_interval=0.1, heartbeat_interval=3600.0)
    usage = h.handle.extras["usage"]
    db = tmp_path / "keys.db"
    dev = await CountingClient.connect(h.url, h.keys["developer"])
    await dev.until(others=1)
    await dev.send({"action": "subscribe", "channels": ["ctp.*"]})
    await dev.until(others=2)
    db.rename(tmp_path / "away.db")  # the database is gone: writes fail
    for i in range(3):
        await h.hub.publish("ctp.n", {"i": i})
    await dev.until(events=3)
    await eventually(lambda: not usage.condition.ok)
    (tmp_path / "away.db").rename(db)
    await eventually(lambda: usage.condition.ok)
    got = totals(await trio.to_thread.run_sync(h.store.usage), h.key_id)
    assert (got.connections, got.events_delivered) == (1, 3)
    await stop(h, dev)


def make_key(db: str, tier: str) -> tuple[str, int]:
    out = subprocess.run([*SWIMCTL, "keys", "create", "--tier", tier, "--owner", tier,
                          "--json", "--db", db], capture_output=True, text=True, check=True)
    created = orjson.loads(out.stdout)
    return created["api_key"], created["id"]


def start_serve(db: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*SWIMCTL, "serve", "--port", "0", "--heartbeat", "3600"],
                            env={**os.environ, "SWIM_DB": db}, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)


async def test_sigterm_writes_what_the_hub_holds_before_exiting(tmp_path: Path) -> None:
    """`swimctl serve` as a real process, stopped with SIGTERM long before its first write
    would be due: every count is in the database when the process has exited."""
    db = f"sqlite:///{tmp_path}/keys.db"
    dev_key, dev_id = make_key(db, "developer")
    sys_key, sys_id = make_key(db, "system")
    proc = start_serve(db)
    try:
        assert proc.stderr is not None
        line = await trio.to_thread.run_sync(proc.stderr.readline)
        match = re.search(r"listening on (ws://\S+)", line)
        assert match, line
        url = match.group(1)
        reader = await CountingClient.connect(url, dev_key)
        publisher = await CountingClient.connect(url, sys_key)
        await reader.until(others=1)
        await publisher.until(others=1)
        await reader.send({"action": "subscribe", "channels": ["ctp.*"]})
        await reader.until(others=2)
        for i in range(7):
            await publisher.send({"action": "publish", "channel": "ctp.n", "data": {"i": i}})
        await publisher.until(others=8)  # 7 publish_ack
        await reader.until(events=7)
        opened = time.monotonic()
        await trio.sleep(1.5)
        async with trio.open_nursery() as nursery:
            for client in (reader, publisher):
                nursery.start_soon(client.finish)
            proc.send_signal(signal.SIGTERM)
        code = await trio.to_thread.run_sync(proc.wait, 10)
        held = time.monotonic() - opened
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert code == 0
    rows = KeyStore(db).usage()
    reading, publishing = totals(rows, dev_id), totals(rows, sys_id)
    assert (reading.connections, reading.events_delivered) == (1, 7)
    assert reading.bytes_sent == reader.received
    assert (publishing.connections, publishing.events_delivered) == (1, 0)
    assert publishing.bytes_sent == publisher.received
    assert 1 <= reading.connection_seconds <= held + 2
