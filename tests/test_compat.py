"""Issue 13 on a live hub, as the field's clients see it: the upstream channel set, error
frames the typed SDKs can read, no frame over 64 KiB (a 5,000-flight batch in parts, per
filter, in snapshots, resumes and slow-client replacement), close frames, integer fields.
Raw sockets wherever a WebSocket library would hide the bytes."""

from __future__ import annotations

import logging
import random
from typing import Any

import orjson
import pytest
import trio
from typer.testing import CliRunner

from swimctl.cli.app import app
from tests.conftest import Harness, StartHub, no_message, recv, request
from tests.rawws import RawClient, client_frame

FRAME_BOUND = 64 * 1024
FLIGHTS = 5000


def fleet(n: int = FLIGHTS, seed: int = 13) -> list[dict[str, Any]]:
    """`n` positions shaped like the detector's (about 230 bytes each on the wire)."""
    rnd = random.Random(seed)
    airports = ["KJFK", "KLAX", "EGLL", "EDDF", "KATL", "RJTT", "YSSY", "LFPG", "KORD", "OMDB"]
    out = []
    for i in range(n):
        dep, arr = rnd.sample(airports, 2)
        out.append({"callsign": f"{rnd.choice(['DAL', 'BAW', 'UAL', 'AFR'])}{i}",
                    "flight_uid": 10_000_000_000 + i,
                    "latitude": round(rnd.uniform(-60, 70), 5),
                    "longitude": round(rnd.uniform(-180, 180), 5),
                    "altitude_ft": rnd.randrange(0, 41000),
                    "groundspeed_kts": rnd.randrange(500), "heading_deg": rnd.randrange(360),
                    "vertical_rate_fpm": rnd.randrange(-3000, 3000),
                    "current_artcc": rnd.choice(["ZNY", "ZLA", "EGTT", None]),
                    "dep": dep, "arr": arr})
    return out


async def raw(hub: Harness, tier: str = "developer", rcvbuf: int | None = None) -> RawClient:
    client = await RawClient.connect(hub, rcvbuf, tier=tier)
    assert (await client.message())["type"] == "connected"
    return client


async def raw_request(client: RawClient, body: dict[str, Any]) -> dict[str, Any]:
    await client.send(body)
    while True:
        msg = await client.message()
        if "." not in msg["type"]:
            return msg


class Frames:
    """Every frame a raw client reads, with its size on the wire (header included)."""

    def __init__(self, client: RawClient) -> None:
        self.client = client
        self.sizes: list[int] = []

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        with trio.fail_after(timeout):
            opcode, payload = await self.client.frame()
        assert opcode == 1 and self.client.last_first_byte & 0x80  # text, final
        header = 2 + (2 if 126 <= len(payload) < 65536 else 8 if len(payload) >= 65536 else 0)
        self.sizes.append(header + len(payload))
        return orjson.loads(payload)

    async def batch(self, snapshot: bool = False) -> list[dict[str, Any]]:
        """The frames of one positions batch (one frame, or every part of one batch_id)."""
        first = await self.next()
        while first["type"] != "flight.positions" or bool(
                first["data"].get("snapshot")) != snapshot:
            first = await self.next()
        parts = [first]
        total = first["data"].get("parts", 1)
        while len(parts) < total:
            parts.append(await self.next())
        return parts


def check_parts(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each part valid alone; together one batch in order. Returns its positions."""
    ids = {p["data"].get("batch_id") for p in parts}
    assert len(ids) == 1
    positions = []
    for n, msg in enumerate(parts, 1):
        data = msg["data"]
        assert data["count"] == len(data["positions"]) > 0
        if len(parts) > 1:
            assert (data["part"], data["parts"]) == (n, len(parts)), data.keys()
        positions += data["positions"]
    return positions


# -- channels -----------------------------------------------------------------------------------


async def test_flight_position_alias_delivers_batches_beside_other_channels(
        hub: Harness) -> None:
    """PERTI's airline_fleet_tracker.py and swim-ws-client.js subscribe with the singular."""
    client = await raw(hub)
    reply = await raw_request(client, {"action": "subscribe",
                                       "channels": ["flight.position", "flight.departed"]})
    assert reply == {"type": "subscribed", "channels": ["flight.position", "flight.departed"],
                     "filters": {}}
    await hub.hub.publish("flight.departed", {"callsign": "DAL1", "dep": "KJFK"})
    await hub.hub.publish("flight.positions", {"positions": fleet(2)})
    assert (await client.message())["type"] == "flight.departed"
    batch = await client.message()
    assert batch["type"] == "flight.positions" and batch["data"]["count"] == 2
    status = await raw_request(client, {"action": "status"})
    assert status["data"]["subscriptions"] == ["flight.position", "flight.departed"]
    # both names: each batch once; unsubscribing the alias by its name stops it
    await raw_request(client, {"action": "subscribe", "channels": ["flight.positions"]})
    await hub.hub.publish("flight.positions", {"positions": fleet(3)})
    assert (await client.message())["data"]["count"] == 3
    await raw_request(client, {"action": "unsubscribe",
                               "channels": ["flight.position", "flight.positions"]})
    await hub.hub.publish("flight.positions", {"positions": fleet(4)})
    await hub.hub.publish("flight.departed", {"callsign": "DAL2", "dep": "KJFK"})
    assert (await client.message())["data"]["callsign"] == "DAL2"


async def test_simtraffic_publish_dedupe_ack_history_and_prefix_subscribe(hub: Harness) -> None:
    epoch = hub.hub.log.epoch
    async with hub.connect("system") as pub, hub.connect() as sub, hub.connect() as other:
        await request(sub, {"action": "subscribe", "channels": ["simtraffic.lifecycle.*"]})
        await request(other, {"action": "subscribe", "channels": ["simtraffic.sessions.*"]})
        body = {"action": "publish", "channel": "simtraffic.lifecycle.departed",
                "event_id": "st-1", "data": {"callsign": "DAL1203",
                                             "departure_afld": "KATL"}}
        ack = await request(pub, body)
        assert ack["type"] == "publish_ack" and ack["accepted"] == 1
        again = await request(pub, body)
        assert (again["accepted"], again["duplicates"], again["seq"]) == (0, 1, ack["seq"])
        got = await recv(sub)
        assert got["type"] == "simtraffic.lifecycle.departed" and got["event_id"] == "st-1"
        await no_message(sub, 0.2)
        await no_message(other, 0.1)
    async with hub.connect() as late:
        reply = await request(late, {"action": "subscribe", "channels": ["simtraffic.*"],
                                     "resume": {"epoch": epoch, "seq": 0}})
        assert reply["recovered"] is True
        assert (await recv(late))["seq"] == ack["seq"]


@pytest.mark.parametrize("family", ["ctp", "splits", "cdm", "aman", "simtraffic"])
async def test_every_family_publishes_and_filters_by_the_fields_it_carries(
        hub: Harness, family: str) -> None:
    """Filters apply where the payload has their field; an event with none reaches only
    unfiltered subscriptions (it used to pass airport filters)."""
    async with hub.connect("system") as pub, hub.connect() as plain, \
            hub.connect() as jfk, hub.connect() as dal:
        await request(plain, {"action": "subscribe", "channels": [f"{family}.*"]})
        await request(jfk, {"action": "subscribe", "channels": [f"{family}.*"],
                            "filters": {"airports": ["KJFK"]}})
        await request(dal, {"action": "subscribe", "channels": [f"{family}.*"],
                            "filters": {"callsign_prefix": ["DAL"]}})
        events = [{"note": "nothing to filter on"}, {"airport": "KJFK"},
                  {"callsign": "DAL5", "dep": "KBOS"}, {"callsign": "BAW1", "dep": "KJFK"}]
        for n, data in enumerate(events):
            ack = await request(pub, {"action": "publish", "channel": f"{family}.x.e{n}",
                                      "data": data})
            assert ack["accepted"] == 1
        got = {name: [] for name in ("plain", "jfk", "dal")}
        for name, ws in (("plain", plain), ("jfk", jfk), ("dal", dal)):
            want = {"plain": 4, "jfk": 2, "dal": 2}[name]
            for _ in range(want):
                got[name].append((await recv(ws))["type"].rsplit(".", 1)[1])
            await no_message(ws, 0.1)
        assert got == {"plain": ["e0", "e1", "e2", "e3"], "jfk": ["e1", "e3"],
                       "dal": ["e1", "e2"]}


async def test_an_operator_family_needs_no_code(start_hub: StartHub) -> None:
    hub = await start_hub(families=("vacc",))
    async with hub.connect("system") as pub, hub.connect() as sub:
        await request(sub, {"action": "subscribe", "channels": ["vacc.*"]})
        ack = await request(pub, {"action": "publish", "channel": "vacc.event.posted",
                                  "data": {"title": "FNO"}})
        assert ack["type"] == "publish_ack"
        assert (await recv(sub))["data"] == {"title": "FNO"}
        refused = await request(pub, {"action": "publish", "channel": "nope.x", "data": {}})
        assert refused["code"] == "INVALID_PUBLISH"


def test_serve_family_option_refuses_a_bad_name_before_listening() -> None:
    result = CliRunner().invoke(app, ["serve", "--family", "vacc", "--family", "Bad-Name",
                                      "--port", "0"])
    assert result.exit_code != 0
    assert "--family" in result.output and "'Bad-Name'" in result.output


# -- errors ---------------------------------------------------------------------------------------


async def test_every_error_frame_carries_data_code_and_message(hub: Harness) -> None:
    """C#: `message.Data.GetProperty("code")`; Java: `data.get("code")`."""
    client = await raw(hub)
    cases = [({"action": "subscribe", "channels": ["flights.*"], "id": 1}, "INVALID_CHANNEL"),
             ({"action": "dance"}, "UNKNOWN_ACTION"),
             ({"action": "publish", "channel": "ctp.x", "data": {}}, "FORBIDDEN"),
             ({"action": "subscribe", "channels": ["tmi.*"], "filters": {"phase": ["X"]}},
              "INVALID_FILTER")]
    for body, code in cases:
        reply = await raw_request(client, body)
        assert reply["code"] == reply["data"]["code"] == code
        assert reply["message"] == reply["data"]["message"] and reply["message"]
    await client.send_raw(b"not json", 1)
    reply = await client.message()
    assert reply["data"] == {"code": "INVALID_JSON", "message": reply["message"]}


async def test_handshake_and_publish_errors_have_data(hub: Harness) -> None:
    async with hub.connect(key="swim_dev_" + "0" * 64, expect_connected=False) as ws:
        error = await recv(ws)
    assert error["data"] == {"code": "AUTH_FAILED", "message": error["message"]}
    async with hub.connect("system") as pub:
        big = {"pad": "x" * 65_400}
        reply = await request(pub, {"action": "publish", "channel": "ctp.big", "data": big})
        assert reply["code"] == reply["data"]["code"] == "MESSAGE_TOO_LARGE"
        assert "frame bound" in reply["message"]


# -- frame size: 5,000 flights --------------------------------------------------------------------


async def test_5000_flights_go_out_in_parts_of_at_most_64_kib(hub: Harness) -> None:
    flights = fleet()
    client = await raw(hub)
    filtered = await raw(hub)
    await raw_request(client, {"action": "subscribe", "channels": ["flight.positions"]})
    await raw_request(filtered, {"action": "subscribe", "channels": ["flight.positions"],
                                 "filters": {"callsign_prefix": ["DAL"],
                                             "airports": ["KJFK", "EGLL"]}})
    await hub.hub.publish("flight.positions", {"count": FLIGHTS, "positions": flights})
    frames = Frames(client)
    parts = await frames.batch()
    assert len(parts) > 17 and max(frames.sizes) <= FRAME_BOUND
    assert check_parts(parts) == flights
    seqs = [p["seq"] for p in parts]
    assert seqs == list(range(seqs[0], seqs[0] + len(parts)))  # each part its own event
    assert len({p["event_id"] for p in parts}) == len(parts)
    # filtered: each part sliced alone, keeping its part number and the batch's parts
    sliced = Frames(filtered)
    want = [f for f in flights if f["callsign"].startswith("DAL")
            and ({f["dep"], f["arr"]} & {"KJFK", "EGLL"})]
    got_parts = []
    while sum(len(p["data"]["positions"]) for p in got_parts) < len(want):
        got_parts.append(await sliced.next())
    assert [f for p in got_parts for f in p["data"]["positions"]] == want
    assert all(p["data"]["parts"] == len(parts) and p["data"]["count"] > 0 for p in got_parts)
    assert [p["data"]["part"] for p in got_parts] == sorted({p["data"]["part"]
                                                            for p in got_parts})
    assert max(sliced.sizes) <= FRAME_BOUND


async def test_snapshot_and_resume_work_per_part(hub: Harness) -> None:
    flights = fleet()
    epoch = hub.hub.log.epoch
    before = hub.hub.log.head
    await hub.hub.publish("flight.positions", {"positions": flights[:10]})
    first_id = (await hub.hub.publish("flight.positions", {"positions": flights})).seq
    # an incomplete batch never becomes the snapshot; the latest complete one does
    assert hub.hub.positions_state.records == flights
    client = await raw(hub)
    reply = await raw_request(client, {"action": "subscribe", "channels": ["flight.position"],
                                       "snapshot": True,
                                       "resume": {"epoch": epoch, "seq": before}})
    assert reply["recovered"] is True
    frames = Frames(client)
    small = await frames.batch()
    assert check_parts(small) == flights[:10] and "part" not in small[0]["data"]
    replayed = await frames.batch()
    assert replayed[0]["seq"] == first_id and check_parts(replayed) == flights
    snap = await frames.batch(snapshot=True)
    assert check_parts(snap) == flights
    assert all("seq" not in p and p["data"]["snapshot"] is True for p in snap)
    assert len({p["data"]["batch_id"] for p in snap}) == 1
    assert snap[0]["data"]["batch_id"] == replayed[0]["data"]["batch_id"]
    assert max(frames.sizes) <= FRAME_BOUND
    # a filtered snapshot is cut again from what the filter keeps
    other = await raw(hub)
    await raw_request(other, {"action": "subscribe", "channels": ["flight.*"],
                              "filters": {"airports": ["KJFK"]}, "snapshot": True})
    only = check_parts(await Frames(other).batch(snapshot=True))
    assert only == [f for f in flights if "KJFK" in (f["dep"], f["arr"])]


async def test_a_slow_client_loses_whole_older_batches_only(start_hub: StartHub) -> None:
    """Not reading while four 5,000-flight batches go out: the client still gets every
    part of each batch it gets any part of, and the newest batch whole."""
    hub = await start_hub(outbox_limit=8 << 20)
    slow = await raw(hub, rcvbuf=16384)
    await raw_request(slow, {"action": "subscribe", "channels": ["flight.positions", "ctp.*"]})
    [live] = hub.hub.clients.values()
    batches = []
    for n in range(4):
        flights = fleet(seed=n)
        batches.append(flights)
        await hub.hub.publish("flight.positions", {"positions": flights})
        assert live.outbox.queued_bytes > 0  # the client is behind
    await hub.hub.publish("ctp.done", {"n": 1})
    frames = Frames(slow)
    seen: dict[str, list[dict[str, Any]]] = {}
    with trio.fail_after(30):
        while True:
            msg = await frames.next()
            if msg["type"] == "ctp.done":
                break
            seen.setdefault(msg["data"]["batch_id"], []).append(msg)
    assert max(frames.sizes) <= FRAME_BOUND
    delivered = [check_parts(parts) for parts in seen.values()]
    for parts in seen.values():
        assert len(parts) == parts[0]["data"]["parts"]  # whole batches only
    assert delivered[-1] == batches[-1]
    assert len(delivered) < len(batches)  # older queued batches were replaced


# -- closing -------------------------------------------------------------------------------------


async def test_a_fragmented_message_over_the_hard_limit_gets_1009(
        hub: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="swimctl.server")
    client = await raw(hub)
    chunk = b"x" * 65536
    await client.stream.send_all(client_frame(b'{"pad":"' + chunk, fin=False))
    with trio.fail_after(10):
        try:
            for _ in range(17):  # 17 x 64 KiB: past 1 MiB
                await client.stream.send_all(client_frame(chunk, 0, fin=False))
        except trio.BrokenResourceError:
            pass  # the hub may close before the last fragment
    code, reason = await client.close_frame()
    assert code == 1009 and "1048576" in reason
    await client.eof()
    with trio.fail_after(5):
        while not any("protocol error (1009" in r.message for r in caplog.records):
            await trio.sleep(0.02)


# -- types ---------------------------------------------------------------------------------------


async def test_integer_fields_are_integers_and_positions_have_coordinates(
        start_hub: StartHub) -> None:
    hub = await start_hub(heartbeat_interval=0.2)
    client = await raw(hub)
    await raw_request(client, {"action": "subscribe", "channels": ["flight.*"]})
    heartbeat = await client.message()
    assert heartbeat["type"] == "system.heartbeat"
    status = (await raw_request(client, {"action": "status"}))["data"]
    for data in (heartbeat["data"], status):
        assert type(data["connected_clients"]) is int and type(data["uptime_seconds"]) is int
    async with hub.connect("system") as pub:
        positions = [{"callsign": "A1", "latitude": 1.5, "longitude": 2.5, "altitude_ft": 3500.6,
                      "groundspeed_kts": 250.0, "heading_deg": None, "vertical_rate_fpm": "up"},
                     {"callsign": "A2", "latitude": None, "longitude": 3.0},
                     {"callsign": "A3", "longitude": 3.0},
                     {"callsign": "A4", "latitude": 4, "longitude": 5, "altitude_ft": True}]
        await request(pub, {"action": "publish", "channel": "flight.positions",
                            "data": {"count": 99, "positions": positions}})
        await request(pub, {"action": "publish", "channel": "flight.departed",
                            "data": {"callsign": "A1", "altitude_ft": 1200.4}})
    batch = await client.message()
    while batch["type"] != "flight.positions":
        batch = await client.message()
    assert batch["data"] == {"count": 2, "positions": [
        {"callsign": "A1", "latitude": 1.5, "longitude": 2.5, "altitude_ft": 3501,
         "groundspeed_kts": 250},
        {"callsign": "A4", "latitude": 4, "longitude": 5}]}
    departed = await client.message()
    while departed["type"] != "flight.departed":
        departed = await client.message()
    assert departed["data"]["altitude_ft"] == 1200 and type(departed["data"]["altitude_ft"]) is int
