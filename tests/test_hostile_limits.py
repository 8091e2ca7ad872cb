"""Issue 19 items 1, 4 and 8 against a live hub on 127.0.0.1: subscriptions and `status` are
bounded per connection, unread replies and pongs count toward the outbox bound, pings take
rate-limit tokens, and half-sent handshakes are cut short and capped per address."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import orjson
import trio

from swimctl.core.routing import MAX_FILTER_VALUES, MAX_PATTERNS
from tests.conftest import Harness, StartHub, request
from tests.rawws import RawClient, client_frame

FULL_FILTER = {  # 3,000 values: the most one request may carry on these keys
    "airports": [f"A{i:04d}" for i in range(1000)],
    "artccs": [f"Z{i:04d}" for i in range(1000)],
    "callsign_prefix": [f"C{i:04d}" for i in range(1000)],
}


def patterns(start: int, count: int) -> list[str]:
    return [f"ctp.p{i}" for i in range(start, start + count)]


async def test_patterns_and_filter_values_are_bounded_per_connection(hub: Harness) -> None:
    async with hub.connect() as ws:
        for start in range(0, MAX_PATTERNS, 64):
            reply = await request(ws, {"action": "subscribe",
                                       "channels": patterns(start, 64)})
            assert reply["type"] == "subscribed", reply
        reply = await request(ws, {"action": "subscribe", "channels": ["ctp.one_more"]})
        assert reply["code"] == "INVALID_SUBSCRIBE" and "128 channel patterns" in \
            reply["message"]
        # Re-subscribing held patterns is not growth: allowed, with a 3,000-value filter.
        reply = await request(ws, {"action": "subscribe", "channels": patterns(0, 64),
                                   "filters": FULL_FILTER})
        assert reply["type"] == "subscribed"
        spare = MAX_FILTER_VALUES - 3000
        other = {"airports": [f"B{i:04d}" for i in range(spare)]}
        reply = await request(ws, {"action": "subscribe", "channels": ["ctp.p64"],
                                   "filters": other})
        assert reply["type"] == "subscribed", reply
        reply = await request(ws, {"action": "subscribe", "channels": ["ctp.p65"],
                                   "filters": {"airports": ["KJFK"]}})
        assert reply["code"] == "INVALID_FILTER" and "4000 filter values" in reply["message"]
        status = await request(ws, {"action": "status"})
        assert len(status["data"]["subscriptions"]) == MAX_PATTERNS
        assert "ctp.p65" in status["data"]["subscriptions"]  # unchanged by the refusal


async def test_status_reply_stays_small_with_every_pattern_filtered(hub: Harness) -> None:
    async with hub.connect() as ws:
        for start in range(0, MAX_PATTERNS, 64):
            await request(ws, {"action": "subscribe", "channels": patterns(start, 64),
                               "filters": FULL_FILTER})
        await ws.send_message(orjson.dumps({"action": "status"}).decode())
        raw = await ws.get_message()
        assert len(raw) < 64 * 1024, len(raw)  # not 128 echoes of a 40 KB filter
        status = orjson.loads(raw)["data"]
        assert status["filters_truncated"] is True
        assert len(status["subscriptions"]) == MAX_PATTERNS
        assert 0 < len(status["filters"]) < MAX_PATTERNS
        assert status["filters"]["ctp.p0"]["airports"][:2] == ["A0000", "A0001"]


async def drain_until_close(client: RawClient, timeout: float = 20.0) -> tuple[list[dict],
                                                                                int | None]:
    """Read every frame up to the hub's close frame: (text messages, close code)."""
    texts: list[dict] = []
    with trio.fail_after(timeout):
        while True:
            opcode, payload = await client.frame()
            if opcode == 1:
                texts.append(orjson.loads(payload))
            elif opcode == 8:
                return texts, int.from_bytes(payload[:2], "big") if payload else None


async def test_unread_status_replies_pass_the_bound_and_close_4008(
        start_hub: StartHub) -> None:
    hub = await start_hub(outbox_limit=65536, rate_burst=100_000)
    client = await RawClient.connect(hub, rcvbuf=4096, tier="developer")
    await client.send({"action": "subscribe", "channels": patterns(0, 64),
                       "filters": FULL_FILTER})
    sent = 0
    with trio.fail_after(20):
        while hub.hub.stats.slow_consumers == 0 and sent < 5000:
            await client.send({"action": "status"})  # and never read the answers
            sent += 1
    assert hub.hub.stats.slow_consumers == 1, sent
    texts, code = await drain_until_close(client)
    assert code == 4008 and texts[-1]["code"] == "SLOW_CONSUMER"
    assert sum(m["type"] == "status" for m in texts) < sent


async def test_a_ping_flood_takes_rate_tokens_and_is_closed_4003(hub: Harness) -> None:
    """1,000,000 pings without reading: the first 20 (the bucket) get pongs, the rest errors
    until the violation limit closes the connection; the outbox never grows."""
    client = await RawClient.connect(hub, tier="developer")
    await client.message()  # connected
    peak = 0
    flooding = True

    async def watch_outboxes() -> None:
        nonlocal peak
        while flooding:
            for other in list(hub.hub.clients.values()):
                peak = max(peak, other.outbox.queued_bytes)
            await trio.sleep(0.005)

    batch = b"".join(client_frame(b"", 9) for _ in range(10_000))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_outboxes)
        with trio.move_on_after(20):
            try:
                for _ in range(100):  # 1,000,000 pings
                    await client.stream.send_all(batch)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the hub hung up on us: that is the point
        flooding = False
    assert hub.hub.stats.violation_closes == 1
    assert hub.hub.stats.slow_consumers == 0
    assert peak < 16 * 1024
    with trio.fail_after(10):
        while hub.hub.clients:
            await trio.sleep(0.02)


async def test_unread_pongs_pass_the_bound_and_close_4008(start_hub: StartHub) -> None:
    hub = await start_hub(outbox_limit=65536, rate_burst=10_000_000)
    client = await RawClient.connect(hub, rcvbuf=4096, tier="developer")
    batch = b"".join(client_frame(b"p" * 125, 9) for _ in range(1000))
    with trio.fail_after(30):
        for _ in range(1000):  # at most 1,000,000 pings of 125 bytes
            if hub.hub.stats.slow_consumers:
                break
            await client.stream.send_all(batch)
    assert hub.hub.stats.slow_consumers == 1
    with trio.fail_after(10):
        while hub.hub.clients:
            await trio.sleep(0.02)


async def open_from(hub: Harness, source: str) -> trio.SocketStream:
    url = urlsplit(hub.url)
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    await sock.bind((source, 0))
    await sock.connect((url.hostname, url.port))
    return trio.SocketStream(sock)


async def closed_by_peer(stream: trio.SocketStream) -> bool:
    try:
        return await stream.receive_some(4096) == b""
    except trio.BrokenResourceError:  # reset
        return True


async def test_half_sent_handshakes_are_capped_per_address(start_hub: StartHub) -> None:
    hub = await start_hub(handshakes_per_address=4)
    half = b"GET /api/swim/v1/ws HTTP/1.1\r\nHost: x\r\n"
    held = [await open_from(hub, "127.0.0.3") for _ in range(4)]
    for stream in held:
        await stream.send_all(half)
    with trio.fail_after(5):
        while sum(hub.handle.server.pending.values()) < 4:
            await trio.sleep(0.01)
    extra = await open_from(hub, "127.0.0.3")
    with trio.fail_after(2):  # closed unread, long before any timeout
        assert await closed_by_peer(extra)
    assert hub.hub.stats.handshakes_dropped["per-address cap"] == 1
    # Another address is not affected.
    other = await RawClient.connect(hub, tier="developer")
    assert (await other.message())["type"] == "connected"
    for stream in held:
        await stream.aclose()


async def test_a_half_sent_request_head_is_dropped_after_3_s(hub: Harness) -> None:
    url = urlsplit(hub.url)
    stream = await trio.open_tcp_stream(url.hostname, url.port)
    started = time.monotonic()
    await stream.send_all(b"GET /api/swim/v1/ws HTTP/1.1\r\nHost: x\r\nUpgr")
    with trio.fail_after(6):  # it was 10 s
        assert await closed_by_peer(stream)
    assert 2.5 < time.monotonic() - started < 5
    assert hub.hub.stats.handshakes_dropped["timeout"] == 1
