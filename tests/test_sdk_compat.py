"""The field's own clients against a live hub, unchanged (vATCSCC/PERTI, `sdk/`).

- Python (`sdk/python/swim_client/client.py`): `websockets.connect(url + "?api_key=" +
  key, ping_interval=30, ping_timeout=10)`, `json.dumps` subscribe with the SDK's filter
  dict, `async for message in ws`, and its decoding (`Position.from_dict` calls `float()`
  on coordinates and `int()` on speeds: a null kills it). Reproduced call for call; the
  handshake bytes are checked through a recording proxy.
- JavaScript (`sdk/javascript/src/websocket.ts`, `api/swim/v1/ws/swim-ws-client.js`): the
  browser path, a global `WebSocket` on `url?api_key=`, `JSON.stringify` messages, run in
  Node.
- C# (`sdk/csharp/SwimClient/SwimWebSocketClient.cs`) and Java
  (`sdk/java/swim-client/.../SwimWebSocketClient.java`) cannot run here: their decoding
  rules are applied to every frame a real hub sends (C#: one 64 KiB read per frame,
  `int`/`long`/`double` properties, `Data.GetProperty("code")` on errors; Java:
  `data.get("code")`).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
import pytest
import trio
import websockets

from swimctl.hub.sources.feed import run_feed
from tests.conftest import IN_CI, StartHub, recorded_feed, request
from tests.rawws import RawClient
from tests.test_compat import FLIGHTS, fleet

# What PERTI's airline_fleet_tracker.py subscribes to (flight.position: the alias).
TRACKER_CHANNELS = ["flight.created", "flight.departed", "flight.arrived", "flight.position",
                    "system.heartbeat"]


async def recording_proxy(nursery: trio.Nursery, target: str,
                          seen: bytearray) -> str:
    """A TCP relay to the hub that keeps every byte the client sends; returns its ws:// URL."""
    parts = urlsplit(target)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def relay(client: trio.SocketStream) -> None:
        upstream = await trio.open_tcp_stream(parts.hostname, parts.port)

        async def pump(src: trio.abc.Stream, dst: trio.abc.Stream, keep: bool) -> None:
            try:
                while data := await src.receive_some(65536):
                    if keep:
                        seen.extend(data)
                    await dst.send_all(data)
                await dst.send_eof()  # type: ignore[attr-defined]
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass

        async with client, upstream, trio.open_nursery() as inner:
            inner.start_soon(pump, client, upstream, True)
            inner.start_soon(pump, upstream, client, False)

    nursery.start_soon(trio.serve_listeners, relay, listeners)
    return f"ws://127.0.0.1:{port}{parts.path}"


def sdk_position(data: dict[str, Any]) -> tuple[Any, ...]:
    """`swim_client.events.Position.from_dict`'s conversions."""
    return (data.get("callsign", ""), float(data.get("latitude", 0)),
            float(data.get("longitude", 0)), int(data.get("altitude_ft", 0)),
            int(data.get("groundspeed_kts", 0)), int(data.get("heading_deg", 0)),
            int(data.get("vertical_rate_fpm", 0)))


async def test_python_sdk_flow_unchanged(start_hub: StartHub, nursery: trio.Nursery) -> None:
    hub = await start_hub(heartbeat_interval=0.3)
    sent = bytearray()
    url = await recording_proxy(nursery, hub.url, sent)
    key = hub.keys["developer"]
    flights = fleet()

    async def sdk() -> dict[str, Any]:
        got: dict[str, Any] = {"types": [], "positions": [], "errors": []}
        full_url = f"{url}?{urlencode({'api_key': key})}"
        async with websockets.connect(full_url, ssl=None, ping_interval=30.0,
                                      ping_timeout=10) as ws:
            await ws.send(json.dumps({"action": "subscribe", "channels": TRACKER_CHANNELS,
                                      "filters": {}}))
            async for message in ws:
                msg = json.loads(message)
                kind = msg.get("type", "")
                got["types"].append(kind)
                data = msg.get("data", {})
                if kind == "flight.positions":
                    got["positions"] += [sdk_position(p) for p in data.get("positions", [])]
                    if len(got["positions"]) == FLIGHTS:
                        await ws.send(json.dumps({"action": "subscribe",
                                                  "channels": ["flights.*"], "filters": {}}))
                elif kind == "error":
                    got["errors"].append((msg.get("code"), msg.get("message")))
                    await ws.send(json.dumps({"action": "status"}))
                elif kind == "status":
                    got["status"] = data
                if "status" in got and "system.heartbeat" in got["types"]:
                    await ws.close(1000, "Client disconnect")
        return got

    async def hub_side() -> None:
        with trio.fail_after(10):
            while not any(c.subs.patterns for c in hub.hub.clients.values()):
                await trio.sleep(0.01)
        await hub.hub.publish("flight.departed", {"callsign": "DAL1", "flight_uid": 1,
                                                  "dep": "KJFK", "arr": "KLAX"})
        await hub.hub.publish("flight.positions", {"positions": flights})

    nursery.start_soon(hub_side)
    with trio.fail_after(30):
        got = await trio.to_thread.run_sync(asyncio.run, sdk())
    head = bytes(sent).split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith(f"GET /api/swim/v1/ws?api_key={key} HTTP/1.1\r\n")
    assert "Sec-WebSocket-Extensions: permessage-deflate" in head  # offered (and accepted)
    assert "flight.departed" in got["types"] and "system.heartbeat" in got["types"]
    assert got["types"][0] == "connected"
    assert [p[0] for p in got["positions"]] == [f["callsign"] for f in flights]
    assert got["errors"] == [("INVALID_CHANNEL", "unknown channel 'flights.*'")]
    assert got["status"]["subscriptions"] == TRACKER_CHANNELS


NODE = shutil.which("node")
JS_FLOW = r"""
// PERTI's swim-ws-client.js / websocket.ts browser path, as a field client runs it.
const [url, key, channels] = process.argv.slice(2);
const ws = new WebSocket(`${url}?api_key=${encodeURIComponent(key)}`);
const seen = {types: {}, maxFrame: 0, positions: 0, errors: [], clientId: null};
const send = (data) => ws.send(JSON.stringify(data));
ws.onopen = () => send({action: 'subscribe', channels: channels.split(','), filters: {}});
ws.onmessage = (event) => {
  seen.maxFrame = Math.max(seen.maxFrame, Buffer.byteLength(event.data));
  const msg = JSON.parse(event.data);
  seen.types[msg.type] = (seen.types[msg.type] || 0) + 1;
  switch (msg.type) {
    case 'connected': seen.clientId = msg.data?.client_id; break;
    case 'error':
      seen.errors.push({code: msg.code, message: msg.message});
      send({action: 'ping'});
      break;
    case 'pong': ws.close(1000, 'Client disconnect'); break;
    case 'flight.positions':
      seen.positions += msg.data.positions.length;
      if (seen.positions === Number(process.env.FLIGHTS)) {
        send({action: 'subscribe', channels: ['nope.*'], filters: {}});
      }
      break;
  }
};
ws.onclose = (event) => { seen.close = event.code; console.log(JSON.stringify(seen)); };
"""


@pytest.mark.skipif(NODE is None and not IN_CI, reason="needs Node.js >= 20")
async def test_javascript_sdk_flow_in_node(start_hub: StartHub, tmp_path: Path,
                                           nursery: trio.Nursery) -> None:
    hub = await start_hub()
    script = tmp_path / "flow.js"
    script.write_text(JS_FLOW)
    assert NODE is not None
    flights = fleet()
    done: dict[str, subprocess.CompletedProcess[bytes]] = {}

    async def node() -> None:
        done["run"] = await trio.run_process(
            [NODE, "--experimental-websocket", str(script), hub.url, hub.keys["developer"],
             "flight.position,flight.departed"], capture_stdout=True, capture_stderr=True,
            env={"FLIGHTS": str(FLIGHTS), "PATH": "/usr/bin:/bin"}, check=False)

    with trio.fail_after(30):
        async with trio.open_nursery() as inner:
            inner.start_soon(node)
            while not any(c.subs.patterns for c in hub.hub.clients.values()):
                await trio.sleep(0.02)
            await hub.hub.publish("flight.positions", {"positions": flights})
    run = done["run"]
    assert run.returncode == 0, run.stderr.decode()
    seen = json.loads(run.stdout.decode().strip().splitlines()[-1])
    assert seen["clientId"] and seen["positions"] == FLIGHTS and seen["close"] == 1000
    assert seen["types"]["flight.positions"] > 1 and seen["maxFrame"] <= 64 * 1024
    assert seen["errors"] == [{"code": "INVALID_CHANNEL", "message": "unknown channel 'nope.*'"}]


# -- C# and Java: their decoding rules on every frame a real hub sends --------------------------

INT32, INT64, DOUBLE, STRING = "int", "long", "double", "string?"
# SwimWebSocketClient.cs: the classes each message type's `data` is deserialized into.
CSHARP = {
    "connected": {"client_id": STRING, "server_time": STRING, "version": STRING},
    "flight.created": {"callsign": STRING, "flight_uid": INT64, "dep": STRING, "arr": STRING},
    "flight.departed": {"callsign": STRING, "flight_uid": INT64, "off_utc": STRING},
    "flight.arrived": {"callsign": STRING, "flight_uid": INT64, "in_utc": STRING},
    "flight.deleted": {"callsign": STRING, "flight_uid": INT64},
    "tmi.issued": {"program_id": STRING, "program_type": STRING, "airport": STRING,
                   "start_time": STRING, "end_time": STRING, "reason": STRING},
    "tmi.released": {"program_id": STRING, "program_type": STRING, "airport": STRING},
    "system.heartbeat": {"connected_clients": INT32, "uptime_seconds": INT64},
}
CSHARP_POSITION = {"callsign": STRING, "flight_uid": INT64, "latitude": DOUBLE,
                   "longitude": DOUBLE, "altitude_ft": INT32, "groundspeed_kts": INT32,
                   "heading_deg": INT32, "dep": STRING, "arr": STRING}


def csharp_decodes(value: Any, kind: str) -> bool:
    """System.Text.Json into a property of this type (a missing key is the default)."""
    if kind == STRING:
        return value is None or isinstance(value, str)
    if kind == DOUBLE:
        return isinstance(value, int | float) and not isinstance(value, bool)
    bound = 2**31 if kind == INT32 else 2**63
    return type(value) is int and -bound <= value < bound


def csharp_problems(payload: bytes) -> list[str]:
    if len(payload) > 65536:
        return [f"{len(payload)} bytes: past the 64 KiB receive buffer"]
    msg = orjson.loads(payload)
    data, kind = msg.get("data"), msg["type"]
    if kind == "error":  # message.Data.GetProperty("code" / "message").GetString()
        ok = isinstance(data, dict) and all(isinstance(data.get(k), str)
                                            for k in ("code", "message"))
        return [] if ok else ["error without data.code / data.message"]
    schema = CSHARP.get(kind, {})
    records = [(data, schema)]
    if kind == "flight.positions":
        if type(data.get("count")) is not int:
            return ["count is not an int"]
        records += [(p, CSHARP_POSITION) for p in data["positions"]]
    return [f"{kind}.{name}={record[name]!r} is no {want}" for record, want_schema in records
            for name, want in want_schema.items()
            if name in record and not csharp_decodes(record[name], want)]


async def test_csharp_and_java_sdks_can_decode_every_frame(start_hub: StartHub,
                                                           nursery: trio.Nursery,
                                                           tmp_path: Path) -> None:
    hub = await start_hub(heartbeat_interval=0.3)
    client = await RawClient.connect(hub, tier="developer")
    payloads: list[bytes] = []

    async def read(until: int) -> None:
        while len(payloads) < until:
            opcode, payload = await client.frame()
            assert opcode == 1 and client.last_first_byte & 0x80  # text, never fragmented
            payloads.append(payload)

    await read(1)
    await client.send({"action": "subscribe", "channels": ["flight.*", "tmi.*",
                                                           "system.heartbeat"]})
    await read(2)
    with trio.fail_after(30):
        await nursery.start(run_feed, hub.hub, recorded_feed(tmp_path / "feed"), 0.0, False)
        async with hub.connect("system") as pub:
            ack = await request(pub, {"action": "publish", "channel": "tmi.issued", "data": {
                "program_id": "GS-KJFK-1", "program_type": "GS", "airport": "KJFK",
                "start_time": "2026-01-01T00:00:00Z", "end_time": "2099-01-01T00:00:00Z",
                "reason": "wx"}})
            assert ack["type"] == "publish_ack", ack
        for body in ({"action": "subscribe", "channels": ["flights.*"]}, {"action": "dance"},
                     {"action": "publish", "channel": "ctp.x", "data": {}}):
            await client.send(body)
        while not {"tmi.issued", "flight.departed", "flight.positions",
                   "system.heartbeat"} <= {orjson.loads(p)["type"] for p in payloads} or \
                sum(orjson.loads(p)["type"] == "error" for p in payloads) < 3:
            await read(len(payloads) + 1)
    problems = [p for payload in payloads for p in csharp_problems(payload)]
    assert not problems, problems[:10]
    for payload in payloads:  # Java: data.get("code") on the error handler's `data`
        msg = orjson.loads(payload)
        if msg["type"] == "error":
            assert msg["data"]["code"] == msg["code"]
    assert len(payloads) > 10
