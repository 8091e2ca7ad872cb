"""A client that stops reading is cut off at its bound without delaying anyone else."""

from __future__ import annotations

import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed

from tests.conftest import StartHub, recv, recv_until, request

LIMIT = 1 << 20
PAD = "x" * 8000


async def test_stalled_client_is_closed_4008_and_others_get_everything(
    start_hub: StartHub,
) -> None:
    # The slow client reads again only after the whole publishing loop: the hub must still be
    # waiting for its close reply then, however early a busy machine made it cut the client
    # off (with the 2 s default it had given up once, and the client saw 1006).
    hub = await start_hub(outbox_limit=LIMIT, close_timeout=30.0)
    async with hub.connect() as fast, hub.connect() as slow:
        for ws in (fast, slow):
            await request(ws, {"action": "subscribe", "channels": ["ctp.*"]})
        slow_id = (await request(slow, {"action": "status"}))["data"]["client_id"]
        slow_client = hub.hub.clients[slow_id]
        got: list[int] = []

        async def read_fast() -> None:
            while len(got) < 1000:
                got.append((await recv(fast))["data"]["i"])

        largest_backlog = 0
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_fast)
                # `slow` never reads from here on: trio-websocket's one-message queue fills
                # and its socket stops being read.
                for i in range(1000):
                    await hub.hub.publish("ctp.load", {"i": i, "pad": PAD})
                    largest_backlog = max(largest_backlog, slow_client.outbox.queued_bytes)
                    # paced like a busy feed (4 MB/s), so a healthy reader keeps up
                    await trio.sleep(0.002)
        assert got == list(range(1000))
        assert slow_client.close_code == 4008
        assert hub.hub.stats.slow_consumers == 1
        # bounded: never more than the limit plus the frame that crossed it
        assert largest_backlog <= LIMIT + len(PAD) + 100
        assert slow_client.outbox.queued_bytes <= len(PAD) + 200
        # the slow client, reading again, finds the error and then close 4008
        with pytest.raises(ConnectionClosed) as info:
            await recv_until(slow, lambda m: m.get("code") == "SLOW_CONSUMER", timeout=10)
            await recv(slow, timeout=5)
        assert info.value.reason.code == 4008
        with trio.fail_after(5):
            while slow_id in hub.hub.clients:
                await trio.sleep(0.01)


async def test_queued_positions_are_replaced_by_newer_ones(start_hub: StartHub) -> None:
    hub = await start_hub(outbox_limit=LIMIT)
    async with hub.connect() as slow:
        await request(slow, {"action": "subscribe", "channels": ["flight.positions",
                                                                 "ctp.*"]})
        slow_id = (await request(slow, {"action": "status"}))["data"]["client_id"]
        outbox = hub.hub.clients[slow_id].outbox
        positions = [{"callsign": f"C{i}", "dep": "KJFK", "arr": "KBOS", "pad": PAD}
                     for i in range(10)]
        batches = 0
        for _ in range(100_000):  # until the socket is full and a batch has to queue
            await hub.hub.publish("flight.positions", {"count": 10, "positions": positions,
                                                 "batch": batches})
            batches += 1
            if outbox.queued_bytes:
                break
        assert outbox.queued_bytes, "the kernel never filled up"
        await hub.hub.publish("ctp.marker", {"n": 1})
        for _ in range(5):
            await hub.hub.publish("flight.positions", {"count": 10, "positions": positions,
                                                 "batch": batches})
            batches += 1
        assert hub.hub.clients[slow_id].close_code is None
        # At most one whole positions batch is queued (plus a partly written head).
        queued = sum(1 for kind in outbox._kinds if kind == 2)
        assert queued == 1
        seen: list[tuple[str, int]] = []
        with trio.fail_after(10):
            while not seen or seen[-1] != ("flight.positions", batches - 1):
                msg = orjson.loads(await slow.get_message())
                seen.append((msg["type"], msg["data"].get("batch", -1)))
        marker = seen.index(("ctp.marker", -1))
        assert seen[marker + 1:] == [("flight.positions", batches - 1)]
