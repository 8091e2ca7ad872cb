"""docs/protocol.md cannot drift from the hub: every example in it is checked against real output.

A real hub runs in-process, fed with three recorded VATSIM snapshots from the test fixtures
(so flight events are real detector output) and with TMI programs published over the socket by a
system-tier key. Each `<!-- example: NAME -->` block in the doc must have the same keys (at the
envelope level, in `data`, and in each position / program) and the same JSON types as the
message captured for NAME. Each `<!-- request: NAME -->` block is sent to the hub as is and
must be answered without an error. Every error and close code the doc names must exist in
swimctl/core/protocol.py, and every one there must be documented.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from swimctl.core import protocol
from swimctl.core.model import format_ts
from swimctl.hub.sources.feed import run_feed
from tests.conftest import Harness, StartHub, recv, recv_until, request

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "vatsim"
# two snapshots 15 s apart, then one 34 minutes later: every flight event type happens
RECORDED = ("2023-08-07T232929Z", "2023-08-07T232944Z", "2023-08-08T000359Z")
BLOCK = re.compile(r"<!--\s*(example|request):\s*([\w.\-]+)\s*-->\s*```json\n(.*?)```", re.S)
FLIGHT_TYPES = ("flight.created", "flight.updated", "flight.departed", "flight.arrived",
                "flight.deleted", "flight.positions")
# One example per relayed family: published by a system-tier key with the doc's own `data`.
RELAYED_EXAMPLES = ("ctp.edct.assigned", "splits.activated", "cdm.ctot", "aman.sequence",
                    "simtraffic.lifecycle.departed")


def doc_blocks(kind: str) -> dict[str, Any]:
    """Blocks of one kind in the doc, by name (a name used twice is a doc bug)."""
    out: dict[str, Any] = {}
    for found_kind, name, body in BLOCK.findall(DOC.read_text()):
        if found_kind != kind:
            continue
        assert name not in out, f"{kind} {name!r} appears twice in docs/protocol.md"
        try:
            out[name] = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            msg = f"{kind} {name!r} in docs/protocol.md is not JSON: {exc}"
            raise AssertionError(msg) from None
    return out


# -- shape comparison --------------------------------------------------------------------------


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def shape_errors(doc: Any, real: Any, where: str) -> list[str]:
    """Differences in keys and JSON types between a doc example and real output. `null` on
    either side matches any type (dep/arr and other optional values are null at times);
    lists compare each doc item with the first real item; objects recurse."""
    tdoc, treal = json_type(doc), json_type(real)
    if "null" in (tdoc, treal):
        return []
    if tdoc != treal:
        return [f"{where}: doc has {tdoc}, hub sends {treal}"]
    if tdoc == "object":
        errors = []
        if set(doc) != set(real):
            missing, extra = sorted(set(real) - set(doc)), sorted(set(doc) - set(real))
            errors.append(f"{where}: keys differ; doc lacks {missing}, doc adds {extra}")
        for key in sorted(set(doc) & set(real)):
            errors += shape_errors(doc[key], real[key], f"{where}.{key}")
        return errors
    if tdoc == "array" and doc and real:
        errors = []
        for i, item in enumerate(doc):
            errors += shape_errors(item, real[0], f"{where}[{i}]")
        return errors
    return []


# -- capturing real output ---------------------------------------------------------------------


async def send(ws: WebSocketConnection, body: dict[str, Any]) -> None:
    await ws.send_message(orjson.dumps(body).decode())


def future(hours: float) -> str:
    return format_ts(dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours))


def recorded_feed(directory: Path) -> str:
    for name in RECORDED:
        shutil.copy(FIXTURES / f"{name}.vatsim-data.json.gz", directory)
    return str(directory)


async def capture(h: Harness, feed_dir: str) -> dict[str, dict[str, Any]]:
    """Every message the doc shows, taken from a real hub, by example name."""
    got: dict[str, dict[str, Any]] = {}
    headers = [(b"X-SWIM-API-Key", h.keys["developer"].encode())]
    async with h.connect("system") as pub, h.connect(headers=headers,
                                                     expect_connected=False) as ws:
        got["connected"] = await recv(ws)
        got["reply.subscribed"] = await request(ws, {
            "action": "subscribe", "id": 1, "channels": ["flight.*", "tmi.*"],
            "filters": {"airports": ["KJFK"]}})
        got["reply.unsubscribed"] = await request(ws, {"action": "unsubscribe", "id": 2,
                                                       "channels": ["flight.*", "tmi.*"]})
        got["reply.pong"] = await request(ws, {"action": "ping", "id": 3})
        got["reply.error"] = await request(ws, {"action": "subscribe", "id": 4,
                                                "channels": ["flights.*"]})
        # Everything, unfiltered, then the recorded feed: real detector output. Its batches
        # of every flight are larger than a frame: they come in parts.
        await request(ws, {"action": "subscribe", "channels": ["*"]})
        wanted = (*FLIGHT_TYPES[:-1], "flight.positions.part", "system.heartbeat")
        async with trio.open_nursery() as nursery:
            await nursery.start(run_feed, h.hub, feed_dir, 0.0, False)
            with trio.fail_after(30):
                while not all(t in got for t in wanted):
                    msg = orjson.loads(await ws.get_message())
                    if msg["type"] == "system.heartbeat" and "feed_age_seconds" not in msg[
                            "data"]:
                        continue  # one from before the feed's first cycle
                    name = msg["type"] + (".part" if "part" in msg["data"] else "")
                    got.setdefault(name, msg)
            nursery.cancel_scope.cancel()
        # A batch that fits one frame: a publisher's, of two flights in ZNY the feed reported
        # (it is the latest batch now, so the snapshot below, filtered on ZNY, is them).
        part = got["flight.positions.part"]["data"]["positions"]
        two = [p for p in part if p["current_artcc"] == "ZNY"][:2]
        assert len(two) == 2
        await request(pub, {"action": "publish", "channel": "flight.positions",
                            "data": {"count": 2, "positions": two}})
        got["flight.positions"] = await recv_until(ws, lambda m: m["type"] == "flight.positions"
                                                   and "part" not in m["data"])
        for name in RELAYED_EXAMPLES:
            await request(pub, {"action": "publish", "channel": name,
                                "data": doc_blocks("example")[name]["data"]})
            got[name] = await recv_until(ws, lambda m, name=name: m["type"] == name)
        gs = {"program_id": "GS-KJFK-20261126-1", "program_type": "GS", "airport": "KJFK",
              "start_time": future(0), "end_time": future(2),
              "reason": "thunderstorms", "scope": ["ZNY", "ZDC", "ZBW"]}
        gdp = {"program_id": "GDP-KEWR-20261126-1", "program_type": "GDP", "airport": "KEWR",
               "start_time": future(0), "end_time": future(4), "reason": "low ceilings",
               "program_rate": 30, "avg_delay_min": 45, "max_delay_min": 120}
        got["reply.publish_ack"] = await request(pub, {
            "action": "publish", "id": "p1", "channel": "tmi.issued", "data": gs,
            "event_id": "tmi-gs-kjfk-1"})
        await request(pub, {"action": "publish", "channel": "tmi.issued", "data": gdp})
        await request(pub, {"action": "publish", "channel": "tmi.modified", "data": {
            "program_id": gdp["program_id"], "program_rate": 24, "avg_delay_min": 60}})
        await request(pub, {"action": "publish", "channel": "tmi.released",
                            "data": {"program_id": gs["program_id"]}})
        got["tmi.issued"] = await recv_until(ws, lambda m: m["type"] == "tmi.issued")
        got["tmi.issued.gdp"] = await recv_until(ws, lambda m: m["type"] == "tmi.issued")
        got["tmi.modified"] = await recv_until(ws, lambda m: m["type"] == "tmi.modified")
        got["tmi.released"] = await recv_until(ws, lambda m: m["type"] == "tmi.released")
        got["reply.status"] = await request(ws, {"action": "status", "id": 5})
        got["reply.status.hub"] = await request(pub, {"action": "status", "hub": True,
                                                      "id": "st2"})
        # Snapshot and resume, on a fresh subscription of this connection.
        await request(ws, {"action": "unsubscribe"})
        await request(pub, {"action": "publish", "channel": "tmi.issued", "data": gs | {
            "program_id": "GS-KJFK-20261126-2"}})
        connected = got["connected"]["data"]
        got["reply.subscribed.resume"] = await request(ws, {
            "action": "subscribe", "id": 6, "channels": ["flight.positions", "tmi.*"],
            "filters": {"artccs": ["ZNY"]}, "snapshot": True,
            "resume": {"epoch": connected["epoch"], "seq": h.hub.log.head - 1}})
        snap = await recv_until(ws, lambda m: m["data"].get("snapshot") is True)
        got["flight.positions.snapshot"] = snap
        got["tmi.active"] = await recv_until(ws, lambda m: m["type"] == "tmi.active")
    return got


@pytest.fixture
async def captured(start_hub: StartHub, tmp_path: Path) -> dict[str, dict[str, Any]]:
    h = await start_hub(heartbeat_interval=0.5)
    return await capture(h, recorded_feed(tmp_path))


# -- the checks --------------------------------------------------------------------------------


async def test_every_example_matches_real_hub_output(captured: dict[str, Any]) -> None:
    examples = doc_blocks("example")
    assert examples, "docs/protocol.md has no marked examples"
    unknown = sorted(set(examples) - set(captured))
    assert not unknown, f"examples the test cannot capture (add them to capture()): {unknown}"
    # Every event type and reply the hub sends is documented by an example.
    undocumented = sorted(set(captured) - set(examples))
    assert not undocumented, f"no example in docs/protocol.md for {undocumented}"
    errors: list[str] = []
    for name, example in examples.items():
        errors += shape_errors(example, captured[name], name)
    assert not errors, "docs/protocol.md drifted from the hub:\n" + "\n".join(errors)


async def test_snapshot_frames_carry_no_seq(captured: dict[str, Any]) -> None:
    """What the doc says about state frames versus stream events."""
    for name in ("flight.positions.snapshot", "tmi.active"):
        assert "seq" not in captured[name] and "event_id" not in captured[name], name
    for name in (*FLIGHT_TYPES, "tmi.issued", *RELAYED_EXAMPLES):
        assert isinstance(captured[name]["seq"], int), name
    assert captured["reply.subscribed.resume"]["recovered"] is True


async def test_relayed_examples_are_delivered_as_published(captured: dict[str, Any]) -> None:
    """Each relayed family's example is what its publisher's `data` becomes, unchanged."""
    examples = doc_blocks("example")
    for name in RELAYED_EXAMPLES:
        assert captured[name]["data"] == examples[name]["data"], name


async def test_every_request_example_is_accepted(start_hub: StartHub) -> None:
    h = await start_hub()
    requests = doc_blocks("request")
    assert {"subscribe", "unsubscribe", "ping", "status", "publish"} <= set(requests)
    async with h.connect("system") as ws:
        for name, body in requests.items():
            if "resume" in body:  # the doc's epoch is an example; use this hub's
                body["resume"] = {"epoch": h.hub.log.epoch, "seq": h.hub.log.head}
            if body.get("channel", "").startswith("tmi."):
                body["data"] |= {"start_time": future(0), "end_time": future(1)}
            reply = await request(ws, body)
            assert reply["type"] != "error", (name, reply)
            if "id" in body:
                assert reply["id"] == body["id"], name


def test_error_and_close_codes_exist() -> None:
    text = DOC.read_text()
    real_codes = {v for k, v in vars(protocol).items()
                  if k.isupper() and isinstance(v, str) and v.isupper() and v == k}
    real_closes = {v for k, v in vars(protocol).items()
                   if k.startswith("CLOSE_") and isinstance(v, int)}
    doc_codes = set(re.findall(r"^\|\s*`([A-Z_]+)`\s*\|", text, re.M))
    doc_closes = {int(c) for c in re.findall(r"^\|\s*`?(\d{4})`?\s*\|", text, re.M)}
    assert doc_codes, "the error-code table is missing"
    assert doc_closes, "the close-code table is missing"
    assert doc_codes <= real_codes, f"doc names unknown codes {doc_codes - real_codes}"
    assert real_codes <= doc_codes, f"undocumented error codes {real_codes - doc_codes}"
    assert doc_closes <= real_closes, f"doc names unknown close codes {doc_closes - real_closes}"
    assert real_closes <= doc_closes, f"undocumented close codes {real_closes - doc_closes}"


async def test_key_transports_the_doc_lists(start_hub: StartHub) -> None:
    """Header, Bearer and (kept for compatibility) the query string all authenticate; a bad
    key gets AUTH_FAILED then close 4001, as section 1 says."""
    h = await start_hub()
    key = h.keys["public"]
    async with h.connect(headers=[(b"x-swim-api-key", key.encode())]) as ws:
        assert (await request(ws, {"action": "ping"}))["type"] == "pong"
    async with h.connect(headers=[(b"Authorization", b"Bearer " + key.encode())]) as ws:
        assert (await request(ws, {"action": "ping"}))["type"] == "pong"
    async with h.connect(url=f"{h.url}?api_key={key}", headers=[]) as ws:
        reply = await request(ws, {"action": "subscribe", "channels": "tmi.*",
                                   "filters": {"callsign_prefix": "AAL", "airports": []}})
        assert reply["channels"] == ["tmi.*"]
        assert reply["filters"] == {"callsign_prefix": ["AAL"]}
    async with h.connect(key="swim_dev_not_a_key", expect_connected=False) as ws:
        error = await recv(ws)
        assert error["type"] == "error" and error["code"] == protocol.AUTH_FAILED
        with pytest.raises(ConnectionClosed) as info:
            await recv(ws)
        assert info.value.reason.code == protocol.CLOSE_AUTH
