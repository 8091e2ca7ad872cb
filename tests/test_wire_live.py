"""The hub's WebSocket layer on real sockets: every byte as a client sees it."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import pytest
import trio

from tests.conftest import Harness, recv, request
from tests.rawws import RawClient, client_frame


async def raw_connected(hub: Harness, tier: str = "developer") -> RawClient:
    client = await RawClient.connect(hub, tier=tier)
    assert (await client.message())["type"] == "connected"
    return client


@pytest.mark.parametrize(("frame", "code"), [
    (client_frame(b"\xff\xfe"), 1007),
    (client_frame(b"x", rsv=2), 1002),
    (client_frame(b"x", 0xC), 1002),
    (client_frame(b"\x03\xed", 8), 1002),
    (client_frame(b"x", masked=False), 1002),
    (client_frame(b"", length=2 << 20)[:10], 1009),
])
async def test_a_protocol_error_gets_a_close_frame_then_tcp_close(
        hub: Harness, frame: bytes, code: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="swimctl.server")
    async with hub.connect() as bystander:
        await request(bystander, {"action": "subscribe", "channels": ["flight.*"]})
        client = await raw_connected(hub)
        await client.stream.send_all(frame)
        got, _ = await client.close_frame()
        assert got == code
        await client.eof()
        await hub.hub.publish("flight.departed", {"callsign": "DAL1"})
        assert (await recv(bystander))["data"] == {"callsign": "DAL1"}
    with trio.fail_after(5):
        while not any("protocol error" in r.message for r in caplog.records):
            await trio.sleep(0.02)
    line = next(r.message for r in caplog.records if "protocol error" in r.message)
    assert line.startswith("disconnected client_") and f"({code}:" in line


async def test_pings_are_answered_and_a_client_close_is_echoed(
        hub: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="swimctl.server")
    client = await raw_connected(hub)
    await client.send_raw(b"are you there", 9)
    assert await client.frame() == (10, b"are you there")
    await client.send_raw(b"\x0f\xa0bye", 8)  # 4000
    assert await client.close_frame() == (4000, "")
    await client.eof()
    with trio.fail_after(5):
        while not any("peer closed (4000)" in r.message for r in caplog.records):
            await trio.sleep(0.02)


async def test_a_hub_close_waits_for_the_peer_and_is_logged(
        hub: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="swimctl.server")
    client = await raw_connected(hub)
    [live] = hub.hub.clients.values()
    live.request_close(4008, "slow consumer")
    assert await client.close_frame() == (4008, "slow consumer")
    await client.send_raw(b"\x0f\xa8", 8)
    await client.eof()
    with trio.fail_after(5):
        while not any("hub closed (4008: slow consumer)" in r.message for r in caplog.records):
            await trio.sleep(0.02)


BAD_REQUESTS = [
    (b"POST /api/swim/v1/ws HTTP/1.1\r\nHost: h\r\n\r\n", 405),
    (b"GET /api/swim/v1/ws HTTP/1.1\r\nHost: h\r\n\r\n", 426),
    (b"GET /api/swim/v1/ws HTTP/1.0\r\nHost: h\r\n\r\n", 505),
    (b"GET /api/swim/v1/ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade"
     b"\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
    (b"GET /api/swim/v1/ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade"
     b"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 7\r\n\r\n",
     426),
    (b"GET /elsewhere HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 404),
    (b"NOT HTTP AT ALL\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\nBad Header Line\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"a" * 20000 + b"\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: nope\r\n\r\n", 400),
]


@pytest.mark.parametrize(("raw", "status"), BAD_REQUESTS)
async def test_malformed_handshakes_get_an_http_error_and_the_hub_serves_on(
        hub: Harness, raw: bytes, status: int) -> None:
    url = urlsplit(hub.url)
    stream = await trio.open_tcp_stream(url.hostname, url.port)
    await stream.send_all(raw)
    answer = b""
    with trio.fail_after(5):
        while chunk := await stream.receive_some(65536):
            answer += chunk
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:80]
    await stream.aclose()
    async with hub.connect() as ws:
        assert (await request(ws, {"action": "ping"}))["type"] == "pong"


async def test_frames_sent_with_the_upgrade_request_are_read(hub: Harness) -> None:
    """A client may pipeline its first message right behind the upgrade request."""
    url = urlsplit(hub.url)
    stream = await trio.open_tcp_stream(url.hostname, url.port)
    await stream.send_all(
        f"GET {url.path} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"X-SWIM-API-Key: {hub.keys['developer']}\r\n\r\n".encode()
        + client_frame(b'{"action":"ping","id":7}'))
    client = RawClient(stream)
    with trio.fail_after(5):
        while b"\r\n\r\n" not in client.buf:
            client.buf += await stream.receive_some(65536)
    _, _, rest = bytes(client.buf).partition(b"\r\n\r\n")
    client.buf = bytearray(rest)
    assert (await client.message())["type"] == "connected"
    reply = await client.message()
    assert reply["type"] == "pong" and reply["id"] == 7
