"""The hub over real sockets on 127.0.0.1 with real WebSocket clients (PROTOCOL.md 1-6)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import pytest
import trio
import websockets
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from tests.conftest import Harness, StartHub, no_message, recv, recv_until, request

DEP_JFK = {"callsign": "DAL1", "flight_uid": 1, "dep": "KJFK", "arr": "KLAX",
           "off_utc": "2026-11-26T18:30:00Z", "latitude": 40.64, "longitude": -73.78,
           "current_artcc": "ZNY"}
DEP_LAX = {**DEP_JFK, "callsign": "UAL2", "flight_uid": 2, "dep": "KLAX", "arr": "KSFO",
           "latitude": 33.94, "longitude": -118.4, "current_artcc": "ZLA"}


def position(callsign: str, dep: str, arr: str, lat: float, lon: float, artcc: str) -> dict:
    return {"callsign": callsign, "flight_uid": hash(callsign) & 0xFFFF, "latitude": lat,
            "longitude": lon, "altitude_ft": 35000, "groundspeed_kts": 450, "heading_deg": 90,
            "vertical_rate_fpm": 0, "current_artcc": artcc, "dep": dep, "arr": arr}


BATCH = [
    position("DAL1", "KJFK", "KLAX", 40.7, -74.0, "ZNY"),
    position("UAL2", "KLAX", "KSFO", 34.0, -118.0, "ZLA"),
    position("BAW3", "EGLL", "KJFK", 51.0, -20.0, "EGGX"),
    position("QFA4", "YSSY", "NZAA", -35.0, 170.0, "NZZO"),
]


async def publish_batch(hub: Harness, batch: list[dict] = BATCH) -> int:
    data = {"count": len(batch), "positions": batch}
    return (await hub.hub.publish("flight.positions", data)).seq


# -- connecting ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["header", "bearer", "query"])
async def test_each_key_transport_connects(hub: Harness, transport: str) -> None:
    key = hub.keys["developer"]
    url, headers = hub.url, [(b"X-SWIM-API-Key", key.encode())]
    if transport == "bearer":
        headers = [(b"Authorization", f"Bearer {key}".encode())]
    elif transport == "query":
        url, headers = f"{hub.url}?api_key={key}", []
    async with hub.connect(url=url, headers=headers) as ws:
        reply = await request(ws, {"action": "status"})
        assert reply["data"]["tier"] == "developer"


async def test_connected_message_shape(hub: Harness) -> None:
    async with open_websocket_url(
        hub.url, extra_headers=[(b"x-swim-api-key", hub.keys["partner"].encode())]
    ) as ws:
        hello = await recv(ws)
    data = hello["data"]
    assert hello["type"] == "connected"
    assert data["client_id"].startswith("client_") and data["version"] == "1.0.0"
    assert data["server_time"].endswith("Z") and data["tier"] == "partner"
    assert data["epoch"] == hub.hub.log.epoch and data["seq"] == 0
    assert data["heartbeat_interval"] == 30


@pytest.mark.parametrize("key", [None, "swim_dev_" + "0" * 64, "x" * 1000])
async def test_bad_or_missing_key_gets_auth_failed_and_4001(hub: Harness, key: str | None) -> None:
    headers = [] if key is None else [(b"X-SWIM-API-Key", key.encode())]
    async with open_websocket_url(hub.url, extra_headers=headers) as ws:
        error = await recv(ws)
        assert error["type"] == "error" and error["code"] == "AUTH_FAILED"
        with pytest.raises(ConnectionClosed) as info:
            await recv(ws)
    assert info.value.reason.code == 4001


async def test_revoked_and_expired_keys_are_refused(hub: Harness) -> None:
    import datetime as dt

    hub.store.revoke(hub.key_ids["public"])
    key, _ = hub.store.create("developer", "old", expires_at=dt.datetime(2020, 1, 1,
                                                                          tzinfo=dt.UTC))
    for bad in (hub.keys["public"], key):
        async with hub.connect(key=bad, expect_connected=False) as ws:
            error = await recv(ws)
            assert error["code"] == "AUTH_FAILED"
            assert "revoked" in error["message"] or "expired" in error["message"]


async def test_other_paths_get_404(hub: Harness) -> None:
    with pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(hub.url.replace("/api/swim/v1/ws", "/ws")):
            pass
    assert info.value.status_code == 404


async def test_tier_cap_per_key_closes_with_4002(start_hub: StartHub) -> None:
    hub = await start_hub(tier_caps={"public": 2, "developer": 50, "partner": 500,
                                     "system": 10000})
    async with hub.connect("public"), hub.connect("public"):
        async with hub.connect("public", expect_connected=False) as third:
            error = await recv(third)
            assert error["code"] == "CONNECTION_LIMIT"
            with pytest.raises(ConnectionClosed) as info:
                await recv(third)
            assert info.value.reason.code == 4002
        # another key of the same tier has its own count
        other, _ = hub.store.create("public", "other")
        async with hub.connect(key=other):
            pass


async def test_field_python_sdk_client_websockets_asyncio(hub: Harness) -> None:
    """The field's SDK uses the `websockets` asyncio client: same contract, unchanged."""
    url, key = hub.url, hub.keys["developer"]

    async def session() -> list[dict[str, Any]]:
        seen = []
        async with websockets.connect(url, additional_headers={"X-SWIM-API-Key": key}) as ws:
            seen.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"action": "subscribe", "channels": ["flight.departed"],
                                      "filters": {"airports": ["KJFK"]}}))
            seen.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"action": "ping"}))
            seen.append(json.loads(await ws.recv()))
            seen.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
        return seen

    async def publish_later() -> None:
        with trio.fail_after(5):
            while not any(c.subs.patterns for c in hub.hub.clients.values()):
                await trio.sleep(0.01)
        await trio.sleep(0.1)
        await hub.hub.publish("flight.departed", DEP_LAX)
        await hub.hub.publish("flight.departed", DEP_JFK)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(publish_later)
        seen = await trio.to_thread.run_sync(asyncio.run, session())
    assert [m["type"] for m in seen] == ["connected", "subscribed", "pong", "flight.departed"]
    assert seen[3]["data"]["callsign"] == "DAL1"


# -- actions ---------------------------------------------------------------------------------


async def test_every_action_echoes_its_id(hub: Harness) -> None:
    async with hub.connect("system") as ws:
        sub = await request(ws, {"action": "subscribe", "channels": ["flight.*"], "id": "a"})
        assert sub == {"type": "subscribed", "channels": ["flight.*"], "filters": {}, "id": "a"}
        pong = await request(ws, {"action": "ping", "id": 2})
        assert pong["type"] == "pong" and pong["id"] == 2 and pong["timestamp"].endswith("Z")
        status = await request(ws, {"action": "status", "id": None})
        assert status["id"] is None and status["data"]["subscriptions"] == ["flight.*"]
        for key in ("client_id", "connected_at", "messages_sent"):
            assert key in status["data"]
        ack = await request(ws, {"action": "publish", "channel": "ctp.slot.assigned",
                                 "data": {"slot": 1}, "id": 3.5})
        assert ack["type"] == "publish_ack" and ack["id"] == 3.5 and ack["accepted"] == 1
        unsub = await request(ws, {"action": "unsubscribe", "channels": ["flight.*"], "id": 4})
        assert unsub == {"type": "unsubscribed", "channels": ["flight.*"], "id": 4}
        unsub = await request(ws, {"action": "unsubscribe"})
        assert unsub == {"type": "unsubscribed", "channels": ["all"]}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("{not json", "INVALID_JSON"),
        ({"action": "fly"}, "UNKNOWN_ACTION"),
        ({"action": "subscribe", "channels": []}, "INVALID_SUBSCRIBE"),
        ({"action": "subscribe", "channels": ["weather.*"]}, "INVALID_CHANNEL"),
        ({"action": "subscribe", "channels": ["*"], "filters": {"bbox": {"north": 1}}},
         "INVALID_FILTER"),
        ({"action": "publish", "channel": "flight.departed", "data": {}}, "FORBIDDEN"),
    ],
)
async def test_error_replies_keep_the_connection(hub: Harness, body: Any, code: str) -> None:
    async with hub.connect("developer") as ws:
        raw = body if isinstance(body, str) else orjson.dumps({**body, "id": 9}).decode()
        await ws.send_message(raw)
        error = await recv(ws)
        assert error["type"] == "error" and error["code"] == code and error["message"]
        if not isinstance(body, str):
            assert error["id"] == 9
        assert (await request(ws, {"action": "ping"}))["type"] == "pong"


async def test_invalid_channel_applies_nothing_of_the_request(hub: Harness) -> None:
    async with hub.connect() as ws:
        error = await request(ws, {"action": "subscribe", "channels": ["flight.departed", "x"]})
        assert error["code"] == "INVALID_CHANNEL"
        status = await request(ws, {"action": "status"})
        assert status["data"]["subscriptions"] == []


async def test_invalid_publish_and_binary_frames(hub: Harness) -> None:
    async with hub.connect("system") as ws:
        error = await request(ws, {"action": "publish", "channel": "system.heartbeat",
                                   "data": {}})
        assert error["code"] == "INVALID_PUBLISH"
        error = await request(ws, {"action": "publish", "channel": "tmi.issued",
                                   "data": {"program_id": "X"}})
        assert error["code"] == "INVALID_PUBLISH"
        await ws.send_message(b"\x00\x01binary")
        assert (await recv(ws))["code"] == "INVALID_JSON"


async def test_message_too_large_keeps_the_connection(hub: Harness) -> None:
    async with hub.connect() as ws:
        await ws.send_message(json.dumps({"action": "ping", "pad": "x" * 70_000}))
        assert (await recv(ws))["code"] == "MESSAGE_TOO_LARGE"
        assert (await request(ws, {"action": "ping"}))["type"] == "pong"


async def test_rate_limit_then_repeated_violations_close_4003(hub: Harness) -> None:
    async with hub.connect() as ws:
        try:
            for _ in range(45):
                await ws.send_message('{"action":"ping"}')
        except ConnectionClosed:  # the hub may close while the flood goes on
            pass
        codes: list[str] = []
        with pytest.raises(ConnectionClosed) as info:
            while True:
                msg = await recv(ws)
                codes.append(msg.get("code") or msg["type"])
        assert info.value.reason.code == 4003
        assert codes[:20] == ["pong"] * 20
        assert "RATE_LIMITED" in codes and len(codes) <= 40


async def test_publish_is_system_only_and_deduplicated(hub: Harness) -> None:
    async with hub.connect("system") as pub, hub.connect("developer") as sub:
        await request(sub, {"action": "subscribe", "channels": ["ctp.*"]})
        body = {"action": "publish", "channel": "ctp.slot.assigned", "data": {"slot": 7},
                "event_id": "slot-7"}
        first = await request(pub, body)
        second = await request(pub, body)
        assert (first["accepted"], first["duplicates"]) == (1, 0)
        assert (second["accepted"], second["duplicates"]) == (0, 1)
        assert first["seq"] == second["seq"] and first["event_id"] == "slot-7"
        event = await recv(sub)
        assert event["type"] == "ctp.slot.assigned" and event["event_id"] == "slot-7"
        assert event["seq"] == first["seq"] and event["data"] == {"slot": 7}
        await no_message(sub)


# -- channels and filters -------------------------------------------------------------------


async def test_wildcards_and_exact_channels(hub: Harness) -> None:
    async with hub.connect() as everything, hub.connect() as flights, hub.connect() as exact:
        await request(everything, {"action": "subscribe", "channels": ["*"]})
        await request(flights, {"action": "subscribe", "channels": ["flight.*"]})
        await request(exact, {"action": "subscribe", "channels": ["flight.arrived"]})
        await hub.hub.publish("flight.departed", DEP_JFK)
        await hub.hub.publish("tmi.released", {"program_id": "x", "airport": "KJFK"})
        await hub.hub.publish("flight.arrived", DEP_LAX)
        assert [(await recv(everything))["type"] for _ in range(3)] == [
            "flight.departed", "tmi.released", "flight.arrived"]
        assert [(await recv(flights))["type"] for _ in range(2)] == [
            "flight.departed", "flight.arrived"]
        assert (await recv(exact))["type"] == "flight.arrived"
        for ws in (everything, flights, exact):
            await no_message(ws, 0.1)


async def test_per_pattern_filters(hub: Harness) -> None:
    """All positions unfiltered and departures only for KJFK, on one connection."""
    async with hub.connect() as ws:
        await request(ws, {"action": "subscribe", "channels": ["flight.positions"]})
        await request(ws, {"action": "subscribe", "channels": ["flight.departed"],
                           "filters": {"airports": ["KJFK"]}})
        await hub.hub.publish("flight.departed", DEP_LAX)
        await hub.hub.publish("flight.departed", DEP_JFK)
        await publish_batch(hub)
        dep = await recv(ws)
        assert dep["type"] == "flight.departed" and dep["data"]["callsign"] == "DAL1"
        batch = await recv(ws)
        assert batch["type"] == "flight.positions" and batch["data"]["count"] == 4


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"airports": ["KJFK"]}, ["DAL1", "BAW3"]),
        ({"artccs": ["KZNY"]}, ["DAL1"]),
        ({"firs": ["NZZO", "EGGX"]}, ["BAW3", "QFA4"]),
        ({"callsign_prefix": ["UAL", "QFA"]}, ["UAL2", "QFA4"]),
        ({"bbox": {"north": 45, "south": 30, "east": -70, "west": -125}}, ["DAL1", "UAL2"]),
        ({"bbox": {"north": 0, "south": -60, "east": -170, "west": 160}}, ["QFA4"]),
        ({"airports": ["KJFK"], "bbox": {"north": 60, "south": 45, "east": 0, "west": -40}},
         ["BAW3"]),
    ],
)
async def test_positions_are_filtered_inside_the_batch(
    hub: Harness, filters: dict, expected: list[str]
) -> None:
    async with hub.connect() as ws, hub.connect() as unfiltered:
        await request(ws, {"action": "subscribe", "channels": ["flight.*"], "filters": filters})
        await request(unfiltered, {"action": "subscribe", "channels": ["flight.positions"]})
        seq = await publish_batch(hub)
        batch = await recv(ws)
        assert batch["seq"] == seq
        assert [p["callsign"] for p in batch["data"]["positions"]] == expected
        assert batch["data"]["count"] == len(expected)
        assert (await recv(unfiltered))["data"]["count"] == 4


async def test_no_batch_when_no_position_matches(hub: Harness) -> None:
    async with hub.connect() as ws:
        await request(ws, {"action": "subscribe", "channels": ["flight.positions"],
                           "filters": {"airports": ["ZZZZ"]}})
        await publish_batch(hub)
        await hub.hub.publish("flight.departed", DEP_JFK)
        await no_message(ws)


async def test_equal_filters_share_one_encoding(hub: Harness) -> None:
    async with hub.connect() as a, hub.connect() as b, hub.connect() as c:
        for ws in (a, b):
            await request(ws, {"action": "subscribe", "channels": ["flight.positions"],
                               "filters": {"airports": ["KJFK"]}})
        await request(c, {"action": "subscribe", "channels": ["flight.positions"],
                          "filters": {"airports": ["KLAX"]}})
        before = hub.hub.stats.positions_encodings
        await publish_batch(hub)
        got = [await recv(ws) for ws in (a, b, c)]
        assert got[0] == got[1] and got[2]["data"]["count"] == 2  # DAL1 and UAL2
        assert hub.hub.stats.positions_encodings - before == 2


async def test_tmi_filters(hub: Harness) -> None:
    gs = {"program_id": "GS-KJFK-1", "program_type": "GS", "airport": "KJFK",
          "start_time": "2026-11-26T18:00:00Z", "end_time": "2099-11-26T19:00:00Z",
          "reason": "weather", "scope": ["ZNY", "ZDC"]}
    async with hub.connect("system") as pub, hub.connect() as jfk, hub.connect() as lax, \
            hub.connect() as zdc:
        await request(jfk, {"action": "subscribe", "channels": ["tmi.*"],
                            "filters": {"airports": ["KJFK"]}})
        await request(lax, {"action": "subscribe", "channels": ["tmi.*"],
                            "filters": {"airports": ["KLAX"]}})
        await request(zdc, {"action": "subscribe", "channels": ["tmi.*"],
                            "filters": {"artccs": ["KZDC"]}})
        ack = await request(pub, {"action": "publish", "channel": "tmi.issued", "data": gs})
        assert ack["accepted"] == 1
        assert (await recv(jfk))["data"]["program_id"] == "GS-KJFK-1"
        assert (await recv(zdc))["data"]["airport"] == "KJFK"
        await no_message(lax)
        released = await request(pub, {"action": "publish", "channel": "tmi.released",
                                       "data": {"program_id": "GS-KJFK-1"}})
        assert released["accepted"] == 1
        event = await recv(jfk)
        assert event["type"] == "tmi.released" and event["data"]["status"] == "RELEASED"
        assert event["data"]["airport"] == "KJFK"


# -- seq, history, resume, snapshot ----------------------------------------------------------


async def test_resume_across_a_forced_disconnect_has_no_gap_and_no_duplicate(
    hub: Harness,
) -> None:
    received: list[int] = []
    async with hub.connect() as ws:
        hello_epoch = hub.hub.log.epoch
        await request(ws, {"action": "subscribe", "channels": ["flight.*"]})
        for i in range(10):
            await hub.hub.publish("flight.created",
                                  {"callsign": f"A{i}", "dep": "KJFK", "arr": None})
        for _ in range(10):
            received.append((await recv(ws))["seq"])
        client = next(iter(hub.hub.clients.values()))
        client.request_close(1011, "test: forced disconnect")
        with pytest.raises(ConnectionClosed):
            while True:
                received.append((await recv(ws))["seq"])
    for i in range(10, 25):  # published while the client is away
        await hub.hub.publish("flight.created", {"callsign": f"A{i}", "dep": "KJFK", "arr": None})
        await hub.hub.publish("tmi.released", {"program_id": f"P{i}"})  # not subscribed: skipped
    async with hub.connect() as ws:
        reply = await request(ws, {"action": "subscribe", "channels": ["flight.*"],
                                   "resume": {"epoch": hello_epoch, "seq": received[-1]}})
        assert reply["recovered"] is True
        for _ in range(15):
            received.append((await recv(ws))["seq"])
        await hub.hub.publish("flight.created", {"callsign": "LIVE", "dep": "KJFK", "arr": None})
        live = await recv(ws)
        received.append(live["seq"])
        assert live["data"]["callsign"] == "LIVE"
    flight_seqs = [e.seq for e in hub.hub.log.since(hello_epoch, 0) or []
                   if e.type == "flight.created"]
    assert received == flight_seqs
    assert len(set(received)) == len(received) == 26


async def test_resume_not_recovered_when_epoch_differs_or_history_is_gone(
    start_hub: StartHub,
) -> None:
    hub = await start_hub(history_size=5)
    for i in range(20):
        await hub.hub.publish("flight.created", {"i": i})
    async with hub.connect() as ws:
        reply = await request(ws, {"action": "subscribe", "channels": ["*"],
                                   "resume": {"epoch": "nope", "seq": 3}})
        assert reply["recovered"] is False
        reply = await request(ws, {"action": "subscribe", "channels": ["*"],
                                   "resume": {"epoch": hub.hub.log.epoch, "seq": 3}})
        assert reply["recovered"] is False
        reply = await request(ws, {"action": "subscribe", "channels": ["*"],
                                   "resume": {"epoch": hub.hub.log.epoch, "seq": 16}})
        assert reply["recovered"] is True
        assert [(await recv(ws))["seq"] for _ in range(4)] == [17, 18, 19, 20]


async def test_resume_replays_only_what_the_subscription_accepts(hub: Harness) -> None:
    epoch = hub.hub.log.epoch
    await hub.hub.publish("flight.departed", DEP_LAX)
    await hub.hub.publish("flight.departed", DEP_JFK)
    await publish_batch(hub)
    async with hub.connect() as ws:
        await request(ws, {"action": "subscribe", "channels": ["flight.*"],
                           "filters": {"airports": ["KJFK"]}, "resume": {"epoch": epoch,
                                                                          "seq": 0}})
        dep = await recv(ws)
        batch = await recv(ws)
        assert dep["data"]["callsign"] == "DAL1" and dep["seq"] == 2
        assert [p["callsign"] for p in batch["data"]["positions"]] == ["DAL1", "BAW3"]
        await no_message(ws)


async def test_snapshot_sends_positions_and_active_tmis_filtered(hub: Harness) -> None:
    await publish_batch(hub)  # the snapshot is the latest batch delivered
    gs = {"program_id": "GS-KJFK-1", "program_type": "GS", "airport": "KJFK",
          "start_time": "2026-11-26T18:00:00Z", "end_time": "2099-01-01T00:00:00Z",
          "reason": "wx", "status": "ACTIVE"}
    await hub.hub.publish("tmi.issued", gs)
    async with hub.connect() as ws:
        reply = await request(ws, {"action": "subscribe", "channels": ["flight.positions",
                                                                       "tmi.*"],
                                   "filters": {"airports": ["KJFK"]}, "snapshot": True})
        assert reply["type"] == "subscribed"
        batch = await recv(ws)
        assert batch["type"] == "flight.positions" and batch["data"]["snapshot"] is True
        assert [p["callsign"] for p in batch["data"]["positions"]] == ["DAL1", "BAW3"]
        active = await recv(ws)
        assert active["type"] == "tmi.active"
        assert [p["program_id"] for p in active["data"]["programs"]] == ["GS-KJFK-1"]
    async with hub.connect() as ws:
        await request(ws, {"action": "subscribe", "channels": ["tmi.*"],
                           "filters": {"airports": ["KLAX"]}, "snapshot": True})
        active = await recv(ws)
        assert active["type"] == "tmi.active" and active["data"]["programs"] == []


async def test_every_streamed_event_has_seq_and_epoch_is_stable(hub: Harness) -> None:
    async with hub.connect() as ws:
        await request(ws, {"action": "subscribe", "channels": ["*"]})
        for _ in range(3):
            await hub.hub.publish("splits.changed", {"x": 1})
        seqs = [(await recv(ws))["seq"] for _ in range(3)]
        assert seqs == [1, 2, 3]


async def test_heartbeat_carries_last_seq(start_hub: StartHub) -> None:
    hub = await start_hub(heartbeat_interval=0.2)
    async with hub.connect() as ws:
        await hub.hub.publish("flight.created", {"callsign": "A"})
        beat = await recv_until(ws, lambda m: m["type"] == "system.heartbeat", timeout=3)
        assert beat["data"]["seq"] == 1 and beat["data"]["connected_clients"] == 1
        assert isinstance(beat["data"]["uptime_seconds"], int) and "seq" not in beat


async def test_tmi_expires_on_time(start_hub: StartHub) -> None:
    import datetime as dt

    from swimctl.core.model import format_ts

    hub = await start_hub()
    end = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)
    async with hub.connect() as ws:
        await request(ws, {"action": "subscribe", "channels": ["tmi.*"]})
        await hub.hub.publish("tmi.issued", {
            "program_id": "GS-KJFK-X", "program_type": "GS", "airport": "KJFK",
            "start_time": format_ts(), "end_time": format_ts(end), "reason": "wx",
            "status": "ACTIVE"})
        assert (await recv(ws))["type"] == "tmi.issued"
        released = await recv(ws, timeout=4)
        assert released["type"] == "tmi.released" and released["data"]["status"] == "EXPIRED"
        late = (dt.datetime.now(dt.UTC) - end).total_seconds()
        assert -0.05 <= late < 1.6
        assert hub.hub.tmi.active() == []


# -- revocation ------------------------------------------------------------------------------


async def test_revoked_key_is_closed_4001_while_connected(start_hub: StartHub) -> None:
    hub = await start_hub(key_revalidate_interval=0.3)
    async with hub.connect("partner") as ws, hub.connect("developer") as other:
        hub.store.revoke(hub.key_ids["partner"])
        with trio.fail_after(3):
            error = await recv_until(ws, lambda m: m["type"] == "error", timeout=3)
            assert error["code"] == "AUTH_FAILED"
            with pytest.raises(ConnectionClosed) as info:
                await recv(ws)
        assert info.value.reason.code == 4001
        assert (await request(other, {"action": "ping"}))["type"] == "pong"


async def test_rate_limited_echoes_id_and_system_publishers_get_a_higher_rate(
    hub: Harness,
) -> None:
    async with hub.connect("developer") as ws:
        for i in range(25):
            await ws.send_message(orjson.dumps({"action": "ping", "id": i}).decode())
        replies = [await recv(ws) for _ in range(25)]
        limited = [r for r in replies if r.get("code") == "RATE_LIMITED"]
        assert limited and all(isinstance(r["id"], int) for r in limited)
    async with hub.connect("system") as ws:
        for i in range(200):
            await ws.send_message(orjson.dumps({"action": "ping", "id": i}).decode())
        replies = [await recv(ws) for _ in range(200)]
        assert [r["type"] for r in replies] == ["pong"] * 200


async def test_a_message_past_one_mebibyte_is_closed_1009_and_others_carry_on(
    hub: Harness,
) -> None:
    async with hub.connect() as big, hub.connect() as other:
        await request(other, {"action": "subscribe", "channels": ["ctp.*"]})
        with pytest.raises(ConnectionClosed) as info:
            await big.send_message(json.dumps({"action": "ping", "pad": "x" * 1_200_000}))
            await recv(big)
        assert info.value.reason.code == 1009
        await hub.hub.publish("ctp.after", {"ok": True})
        assert (await recv(other))["data"] == {"ok": True}
