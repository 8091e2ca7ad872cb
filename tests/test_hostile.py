"""Hostile and random frames against a live hub: each gets the right error, nobody else notices.

The hub runs in a background thread (its own trio loop) for the whole module, so hypothesis
can throw hundreds of examples at the same process while a bystander client keeps receiving
events; clients use the `websockets` sync client over real sockets.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from swimctl.hub.config import HubConfig
from swimctl.hub.service import ServeOptions, run_service
from swimctl.keys.store import KeyStore


class ThreadedHub:
    def __init__(self, db_url: str, **overrides: Any) -> None:
        self.config = HubConfig(port=0, db_url=db_url, **overrides)
        self.ready = threading.Event()
        self.url = ""
        self.handle: Any = None
        self.token: Any = None
        self.thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        async with trio.open_nursery() as nursery:
            self.handle = await nursery.start(
                run_service, ServeOptions(config=self.config, load_geography=False)
            )
            self.url = self.handle.url
            self.token = trio.lowlevel.current_trio_token()
            self.ready.set()

    def start(self) -> None:
        self.thread.start()
        assert self.ready.wait(10)

    def publish(self, event_type: str, data: dict[str, Any]) -> int:
        async def publish() -> int:
            return (await self.handle.hub.publish(event_type, data)).seq

        return trio.from_thread.run(publish, trio_token=self.token)

    def stop(self) -> None:
        trio.from_thread.run_sync(self.handle.cancel_scope.cancel, trio_token=self.token)
        self.thread.join(5)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ThreadedHub, str]]:
    db = f"sqlite:///{tmp_path_factory.mktemp('hostile')}/keys.db"
    key, _ = KeyStore(db).create("developer", "hostile tests")
    hub = ThreadedHub(db, rate_per_second=10_000, rate_burst=10_000,
                      violation_limit=1_000_000)
    hub.start()
    yield hub, key
    hub.stop()


@contextmanager
def open_client(url: str, key: str) -> Iterator[ClientConnection]:
    with connect(url, additional_headers={"X-SWIM-API-Key": key}, open_timeout=5,
                 max_size=None) as ws:
        hello = json.loads(ws.recv(timeout=5))
        assert hello["type"] == "connected"
        yield ws


# Each strategy yields (frame to send, the error code the protocol requires for it).
text = st.text(max_size=200)
not_json = text.filter(lambda s: not _is_json(s)).map(lambda s: (s, "INVALID_JSON"))
binary = st.binary(max_size=300).map(lambda b: (b, "INVALID_JSON"))
finite = st.floats(allow_nan=False, allow_infinity=False)
scalar = st.none() | st.booleans() | st.integers() | finite | text
non_object = (scalar | st.lists(scalar, max_size=5)).map(
    lambda v: (json.dumps(v), "INVALID_JSON"))
deep = st.integers(1100, 20_000).map(lambda n: ("[" * n + "]" * n, "INVALID_JSON"))
bad_action = (scalar.filter(lambda v: not isinstance(v, str)) | text.filter(
    lambda s: s not in ("subscribe", "unsubscribe", "ping", "status", "publish")
)).map(lambda a: (json.dumps({"action": a, "id": 1}), "UNKNOWN_ACTION"))
bad_channels = (st.just([]) | st.lists(st.integers(), min_size=1, max_size=3) | st.just(None)
                ).map(lambda c: (json.dumps({"action": "subscribe", "channels": c}),
                                 "INVALID_SUBSCRIBE"))
bad_channel_name = text.filter(lambda s: s != "*" and not s.endswith(".*") and "." not in s
                               ).map(lambda c: (json.dumps({"action": "subscribe",
                                                            "channels": [c]}),
                                                "INVALID_CHANNEL"))
bad_filter = (
    st.dictionaries(text.filter(lambda k: k not in (
        "airports", "artccs", "firs", "callsign_prefix", "bbox")), scalar, min_size=1,
        max_size=3)
    | st.builds(lambda n, s: {"bbox": {"north": n, "south": s, "east": 0, "west": 1}},
                st.floats(-90, 90), st.floats(-90, 90)).filter(
        lambda f: f["bbox"]["north"] <= f["bbox"]["south"])
    | st.builds(lambda v: {"airports": v}, scalar | st.lists(st.integers(), min_size=1))
).map(lambda f: (json.dumps({"action": "subscribe", "channels": ["flight.*"], "filters": f}),
                 "INVALID_FILTER"))
forbidden = st.just((json.dumps({"action": "publish", "channel": "flight.departed",
                                 "data": {}}), "FORBIDDEN"))
huge = st.integers(66_000, 300_000).map(lambda n: (json.dumps({"action": "ping",
                                                               "pad": "x" * n}),
                                                   "MESSAGE_TOO_LARGE"))
hostile = (not_json | binary | non_object | deep | bad_action | bad_channels
           | bad_channel_name | bad_filter | forbidden | huge)


def _is_json(s: str) -> bool:
    try:
        json.loads(s)
    except ValueError:
        return False
    return True


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(frames=st.lists(hostile, min_size=1, max_size=8))
def test_hostile_frames_get_the_right_error_and_the_hub_keeps_serving(
    live: tuple[ThreadedHub, str], frames: list[tuple[str | bytes, str]]
) -> None:
    hub, key = live
    with open_client(hub.url, key) as bystander, open_client(hub.url, key) as attacker:
        bystander.send(json.dumps({"action": "subscribe", "channels": ["ctp.*"]}))
        assert json.loads(bystander.recv(timeout=5))["type"] == "subscribed"
        for frame, code in frames:
            attacker.send(frame)
            reply = json.loads(attacker.recv(timeout=5))
            assert reply["type"] == "error", reply
            assert reply["code"] == code, (frame if len(frame) < 300 else len(frame), reply)
        # the attacker's connection still works, and the bystander never noticed
        attacker.send(json.dumps({"action": "ping", "id": "still"}))
        assert json.loads(attacker.recv(timeout=5)) | {"timestamp": ""} == {
            "type": "pong", "id": "still", "timestamp": ""}
        seq = hub.publish("ctp.check", {"n": len(frames)})
        event = json.loads(bystander.recv(timeout=5))
        assert event["seq"] == seq and event["data"] == {"n": len(frames)}


def test_a_flood_is_cut_off_and_others_are_not_delayed(tmp_path: Any) -> None:
    db = f"sqlite:///{tmp_path}/keys.db"
    key, _ = KeyStore(db).create("developer", "flood")
    hub = ThreadedHub(db)
    hub.start()
    try:
        with open_client(hub.url, key) as bystander, open_client(hub.url, key) as flooder:
            bystander.send(json.dumps({"action": "subscribe", "channels": ["ctp.*"]}))
            bystander.recv(timeout=5)
            sent = 0
            try:
                for _ in range(5000):
                    flooder.send('{"action":"ping"}')
                    sent += 1
            except ConnectionClosed:
                pass
            codes = []
            try:
                while True:
                    codes.append(json.loads(flooder.recv(timeout=5)).get("code", "pong"))
            except ConnectionClosed as exc:
                assert exc.rcvd is not None and exc.rcvd.code == 4003
            assert "RATE_LIMITED" in codes
            started = time.monotonic()
            hub.publish("ctp.check", {"ok": True})
            assert json.loads(bystander.recv(timeout=5))["data"] == {"ok": True}
            assert time.monotonic() - started < 2.0
    finally:
        hub.stop()
