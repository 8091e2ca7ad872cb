"""permessage-deflate: negotiation and frames without sockets, then a live hub with real
clients (websockets with its defaults, raw sockets that check every bit)."""

from __future__ import annotations

import asyncio
import json
import os
import zlib
from typing import Any

import orjson
import pytest
import trio
import websockets

from swimctl.hub.metrics import HubCollector
from swimctl.wire.deflate import (
    MIN_COMPRESSED_PAYLOAD,
    accept_offer,
    compress,
    deflate_frame,
    inflate,
    is_compressed,
    negotiate,
    parse_offers,
)
from swimctl.wire.encodings import DEFLATE, PLAIN, plain_size
from swimctl.wire.frames import text_frame
from swimctl.wire.websocket import TEXT, FrameReader, Violation
from tests.conftest import StartHub
from tests.rawws import RawClient, client_frame
from tests.test_compat import fleet

BOTH = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
WEBSOCKETS_OFFER = "permessage-deflate; client_max_window_bits"  # its default, and browsers'


def offer(value: str) -> list[tuple[bytes, bytes]]:
    return [(b"sec-websocket-extensions", value.encode())]


# -- negotiation ----------------------------------------------------------------------------


def test_the_usual_offers_are_accepted_with_both_no_context_takeovers() -> None:
    assert negotiate(offer(WEBSOCKETS_OFFER)) == BOTH
    assert negotiate(offer("permessage-deflate")) == BOTH
    assert negotiate(offer("permessage-deflate; client_no_context_takeover; "
                           "server_no_context_takeover")) == BOTH
    # a server window limit must be answered; 15 is the one the shared frames use
    assert negotiate(offer("permessage-deflate; server_max_window_bits=15")) == \
        BOTH + "; server_max_window_bits=15"
    assert negotiate(offer('permessage-deflate; client_max_window_bits="10"')) == BOTH


def test_offers_the_hub_cannot_honour_are_declined_and_the_next_one_taken() -> None:
    assert negotiate([]) is None
    assert negotiate(offer("x-webkit-deflate-frame")) is None
    for bad in ("server_max_window_bits=10",  # the shared frame needs the full window
                "server_max_window_bits", "client_max_window_bits=16",
                "client_max_window_bits=08", "mystery_param",
                "server_no_context_takeover; server_no_context_takeover",
                "server_no_context_takeover=1"):
        assert accept_offer(parse_offers([f"permessage-deflate; {bad}"])[0][1]) is None, bad
    assert negotiate(offer("permessage-deflate; server_max_window_bits=10, "
                           "permessage-deflate")) == BOTH
    assert negotiate([(b"Sec-WebSocket-Extensions", b"foo; a=1"),
                      (b"sec-websocket-extensions", b"permessage-deflate")]) == BOTH


# -- server frames --------------------------------------------------------------------------


def test_frames_depend_only_on_themselves_and_small_ones_stay_plain() -> None:
    batch = orjson.dumps({"type": "flight.positions", "data": {"positions": fleet(200)}})
    frame = deflate_frame(batch)
    assert frame[0] == 0xC1  # FIN, RSV1, text
    assert len(frame) < len(batch) / 4
    body = frame[4:] if frame[1] == 126 else frame[10:]
    # a fresh inflater, twice: nothing from an earlier message is needed
    for _ in range(2):
        assert zlib.decompressobj(-15).decompress(body + b"\x00\x00\xff\xff") == batch
    small = b'{"type":"pong","timestamp":"2026-12-01T00:00:00.000Z"}'
    assert len(small) < MIN_COMPRESSED_PAYLOAD
    assert deflate_frame(small) == text_frame(small)
    random = os.urandom(3000)  # deflate would only add to it: sent plain
    assert deflate_frame(random) == text_frame(random)
    hexed = random.hex().encode()  # half of it is redundant: compressed
    assert is_compressed(deflate_frame(hexed)) and len(deflate_frame(hexed)) < len(hexed)
    assert plain_size(batch) == len(text_frame(batch))


def test_client_messages_inflate_within_the_limit() -> None:
    message = orjson.dumps({"action": "subscribe", "channels": ["flight.*"]}) * 20
    assert inflate(compress(message), 65536) == message
    with pytest.raises(Exception, match="once inflated"):
        inflate(compress(b"0" * (1 << 22)), 1 << 20)  # a 4 MiB bomb in about 4 KiB


def reader_events(reader: FrameReader, *frames: bytes) -> list[tuple[int, Any]]:
    out: list[tuple[int, Any]] = []
    for frame in frames:
        out += reader.feed(frame)
    return out


def test_frame_reader_inflates_only_what_was_negotiated() -> None:
    message = orjson.dumps({"action": "status", "pad": "y" * 500})
    data = compress(message)
    assert reader_events(FrameReader(1 << 20, deflate=True),
                         client_frame(data, rsv=4)) == [(TEXT, message.decode())]
    # fragmented: RSV1 on the first frame only
    half = len(data) // 2
    assert reader_events(FrameReader(1 << 20, deflate=True),
                         client_frame(data[:half], fin=False, rsv=4),
                         client_frame(b"", opcode=9),  # a ping between the fragments
                         client_frame(data[half:], opcode=0)) == \
        [(9, b""), (TEXT, message.decode())]
    # uncompressed messages still work on a compressing connection
    assert reader_events(FrameReader(1 << 20, deflate=True),
                         client_frame(message)) == [(TEXT, message.decode())]
    cases = [
        (False, [client_frame(data, rsv=4)], 1002),  # RSV1 without the extension
        (True, [client_frame(data[:half], fin=False, rsv=4),
                client_frame(data[half:], opcode=0, rsv=4)], 1002),  # RSV1 on a continuation
        (True, [client_frame(b"", opcode=9, rsv=4)], 1002),  # RSV1 on a control frame
        (True, [client_frame(data, rsv=2)], 1002),  # RSV2: nobody's
        (True, [client_frame(b"\xff\xff\xff\xff garbage", rsv=4)], 1007),
        (True, [client_frame(compress(b"0" * (2 << 20)), rsv=4)], 1009),  # a deflate bomb
    ]
    for deflate, frames, code in cases:
        with pytest.raises(Violation) as info:
            reader_events(FrameReader(1 << 20, deflate=deflate), *frames)
        assert info.value.code == code, (frames, info.value.reason)


# -- a live hub -----------------------------------------------------------------------------


def comparable(message: dict[str, Any]) -> Any:
    """What must be equal between a compressing and a plain client: all but the per-client
    and per-moment fields."""
    if message["type"] in ("connected", "system.heartbeat", "status"):
        return message["type"]
    if "seq" not in message:  # state (snapshots, tmi.active): stamped when sent
        return {k: v for k, v in message.items() if k != "timestamp"}
    return message


def summary(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """A short view of a session, for a readable failure."""
    return [(m["type"], m.get("seq"), m.get("data", {}).get("part"),
             m.get("data", {}).get("snapshot"), len(m.get("data", {}).get("positions", ())))
            for m in messages]


async def websockets_session(url: str, key: str, compression: str | None,
                             resume: list[Any] | None, positions: int) -> list[dict[str, Any]]:
    """PERTI's Python SDK flow: websockets.connect with its defaults, subscribe, read."""
    got: list[dict[str, Any]] = []
    async with websockets.connect(f"{url}?api_key={key}", compression=compression,
                                  ping_interval=30, ping_timeout=10) as ws:
        negotiated = ws.response.headers.get("Sec-WebSocket-Extensions")
        assert negotiated == (BOTH if compression else None), negotiated
        body: dict[str, Any] = {"action": "subscribe",
                                "channels": ["flight.*", "flight.position", "tmi.*"],
                                "filters": {}}
        if resume is None:
            body["snapshot"] = True
        else:  # no snapshot: a newer batch may replace a queued one (the slow-client rule)
            body["resume"] = {"epoch": resume[0], "seq": resume[1]}
        await ws.send(json.dumps(body))
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "system.heartbeat":
                continue
            got.append(message)
            if sum(len(m["data"]["positions"]) for m in got
                   if m["type"] == "flight.positions" and "seq" in m) >= positions:
                break
    return got


async def test_websockets_clients_decode_the_same_events_with_and_without_compression(
    start_hub: StartHub, nursery: trio.Nursery,
) -> None:
    hub = await start_hub(heartbeat_interval=0.3)
    key = hub.keys["developer"]
    flights = fleet(3000)  # three frames of positions (the 64 KiB frame bound)
    await hub.hub.publish("flight.positions", {"positions": flights[:500]})  # a snapshot
    epoch = hub.hub.log.epoch
    first_seq = hub.hub.log.head

    async def both(resume: list[Any] | None, positions: int,
                   publish: bool) -> list[list[dict[str, Any]]]:
        results: list[list[dict[str, Any]]] = [[], []]

        async def one(index: int, compression: str | None) -> None:
            results[index] = await trio.to_thread.run_sync(
                asyncio.run, websockets_session(hub.url, key, compression, resume, positions))

        with trio.fail_after(10):  # the last pair is gone
            while hub.hub.clients:
                await trio.sleep(0.01)
        async with trio.open_nursery() as inner:
            inner.start_soon(one, 0, "deflate")
            inner.start_soon(one, 1, None)
            if not publish:  # a resume: the replay ends the sessions by itself, maybe
                return results  # before this task would have seen them subscribed
            with trio.fail_after(10):
                while sum(bool(c.subs.patterns) for c in hub.hub.clients.values()) < 2:
                    await trio.sleep(0.01)
            encodings = sorted(c.outbox.encoding for c in hub.hub.clients.values())
            assert encodings == [PLAIN, DEFLATE]
            await hub.hub.publish("flight.departed", {"callsign": "DAL1", "flight_uid": 1,
                                                      "dep": "KJFK", "arr": "KLAX"})
            await hub.hub.publish("flight.positions", {"positions": flights})
        return results

    with trio.fail_after(60):
        live = await both(None, 3000, True)  # the snapshot, then the departure and the batch
        resumed = await both([epoch, first_seq], 3000, False)  # those two, replayed
    for compressed, plain in (live, resumed):
        assert summary(compressed) == summary(plain), repr((summary(compressed), summary(plain)))
        assert [comparable(m) for m in compressed] == [comparable(m) for m in plain], \
            "same shape, different content"
        assert sum(len(m["data"].get("positions", ())) for m in compressed
                   if m["type"] == "flight.positions") >= 3000
    assert any(m["data"].get("snapshot") for m in live[0] if m["type"] == "flight.positions")
    assert [m.get("recovered") for m in resumed[0]
            if m["type"] == "subscribed"] == [True]
    stats = hub.hub.stats
    assert 0 < stats.deflate_wire_bytes < 0.3 * stats.deflate_plain_bytes
    metrics = {family.name: family.samples[0].value
               for family in HubCollector(hub.hub).collect()
               if family.name.startswith("swim_compress")}
    assert metrics["swim_compression_plain_bytes"] == stats.deflate_plain_bytes
    assert metrics["swim_compression_wire_bytes"] == stats.deflate_wire_bytes


async def test_raw_frames_carry_rsv1_and_no_context_and_plain_clients_get_plain(
    start_hub: StartHub,
) -> None:
    hub = await start_hub(heartbeat_interval=60)
    deflating = await RawClient.connect(hub, extensions=WEBSOCKETS_OFFER)
    plain = await RawClient.connect(hub)
    assert f"Sec-WebSocket-Extensions: {BOTH}".encode() in deflating.head
    assert b"Sec-WebSocket-Extensions" not in plain.head
    flights = fleet(200)  # one frame
    for client in (deflating, plain):
        assert (await client.message())["type"] == "connected"
        assert (await client.request({"action": "subscribe",
                                      "channels": ["flight.*"]}))["type"] == "subscribed"
    deflating.compressed = 0  # the connected message and the ack were long enough, too
    for _ in range(3):  # the same content three times: a carried-over context would show
        await hub.hub.publish("flight.positions", {"positions": flights})
    await hub.hub.publish("flight.created", {"flight_uid": 9})  # under the threshold
    for client in (deflating, plain):
        got = [await client.message() for _ in range(4)]
        assert [m["type"] for m in got] == ["flight.positions"] * 3 + ["flight.created"]
        assert all(m["data"]["positions"] == flights for m in got[:3])
    assert deflating.compressed == 3  # the batches, not the small event
    assert plain.compressed == 0
    collector = {f.name: f.samples for f in HubCollector(hub.hub).collect()}
    assert collector["swim_compressed_connections"][0].value == 1
    assert collector["swim_compressed_connections_ratio"][0].value == 0.5


async def test_compressed_client_messages_and_the_deflate_bomb(start_hub: StartHub) -> None:
    hub = await start_hub(heartbeat_interval=60)
    client = await RawClient.connect(hub, extensions="permessage-deflate")
    assert (await client.message())["type"] == "connected"
    body = orjson.dumps({"action": "subscribe", "channels": ["flight.*"], "id": "a"})
    await client.stream.send_all(client_frame(compress(body), rsv=4))
    reply = await client.message()
    assert (reply["type"], reply["id"]) == ("subscribed", "a")
    # over the protocol's 64 KiB once inflated: refused like a plain one, the connection lives
    big = orjson.dumps({"action": "ping", "pad": "z" * 100_000})
    await client.stream.send_all(client_frame(compress(big), rsv=4))
    assert (await client.message())["code"] == "MESSAGE_TOO_LARGE"
    # a bomb: 16 MiB of zeros in 16 KiB, closed with 1009 after at most 1 MiB was inflated
    bomb = compress(b"0" * (16 << 20))
    assert len(bomb) < 20_000
    await client.stream.send_all(client_frame(bomb, rsv=4))
    code, _ = await client.close_frame()
    assert code == 1009
    others = await RawClient.connect(hub, extensions="permessage-deflate")
    assert (await others.message())["type"] == "connected"  # the hub serves on


async def test_the_slow_client_bound_counts_compressed_bytes(start_hub: StartHub) -> None:
    limit = 256 * 1024
    hub = await start_hub(outbox_limit=limit, heartbeat_interval=60)
    deflating = await RawClient.connect(hub, 4096, extensions=WEBSOCKETS_OFFER)
    plain = await RawClient.connect(hub, 4096)
    ids = []
    for client in (deflating, plain):
        assert (await client.message())["type"] == "connected"
        status = await client.request({"action": "status"})
        ids.append(status["data"]["client_id"])
        await client.request({"action": "subscribe", "channels": ["ctp.*"]})
    slow_deflate, slow_plain = (hub.hub.clients[i] for i in ids)
    pad = "route DCT " * 800  # 8 KB that deflates to a few dozen bytes
    with trio.fail_after(20):
        for i in range(400):  # 3.2 MB plain; neither client reads
            await hub.hub.publish("ctp.load", {"i": i, "pad": pad})
    assert slow_plain.close_code == 4008
    assert slow_deflate.close_code is None
    queued = slow_deflate.outbox.queued_bytes
    assert 0 < queued < limit
    frame = deflate_frame(orjson.dumps({"type": "ctp.load", "data": {"i": 1, "pad": pad}}))
    # what is queued is compressed frames (about this size each), not plain ones
    assert queued < 400 * (len(frame) + 64)
    assert hub.hub.stats.slow_consumers == 1


async def test_compression_off_answers_no_extension(start_hub: StartHub) -> None:
    hub = await start_hub(compression=False, heartbeat_interval=60)
    client = await RawClient.connect(hub, extensions=WEBSOCKETS_OFFER)
    assert b"Sec-WebSocket-Extensions" not in client.head
    assert (await client.message())["type"] == "connected"
    await client.stream.send_all(client_frame(compress(b'{"action":"ping"}'), rsv=4))
    code, _ = await client.close_frame()
    assert code == 1002  # RSV1 was not negotiated
