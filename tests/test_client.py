"""swimctl.client against the real hub in-process: resume, gaps, auth, liveness, TLS."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import pytest
import trio

from swimctl import client as swim
from tests.conftest import launch_hub, running_hub
from tests.helpers_client import FreezableProxy, subscribed_clients, wait_until


def departed(i: int, dep: str = "KJFK") -> dict[str, Any]:
    return {"callsign": f"AAL{i}", "flight_uid": i, "dep": dep, "arr": "EGLL",
            "off_utc": "2026-11-26T18:30:00Z", "latitude": 40.6, "longitude": -73.8,
            "current_artcc": "ZNY"}


class Collector:
    """Reads a client's items in the background so tests can wait on what arrived."""

    def __init__(self, client: swim.SwimClient) -> None:
        self.client = client
        self.items: list[swim.Item] = []
        self.error: BaseException | None = None
        self.done = trio.Event()

    @property
    def events(self) -> list[swim.Event]:
        return [i for i in self.items if isinstance(i, swim.Event) and not i.is_heartbeat]

    def of(self, kind: type) -> list[Any]:
        return [i for i in self.items if isinstance(i, kind)]

    async def run(self) -> None:
        try:
            async for item in self.client:
                self.items.append(item)
        except swim.SwimError as exc:
            self.error = exc
        finally:
            self.done.set()


async def test_resume_across_forced_disconnect_exactly_once(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as h, trio.open_nursery() as nursery:
        async with swim.connect(h.url, h.key, backoff_initial=0.3) as client:
            col = Collector(client)
            nursery.start_soon(col.run)
            await client.subscribe(["flight.departed"])
            for i in range(5):
                await h.hub.publish("flight.departed", departed(i))
            await wait_until(lambda: len(col.events) == 5)
            next(iter(h.hub.clients.values())).request_close(1011, "test")
            await wait_until(lambda: not h.hub.clients)
            for i in range(5, 10):  # published while the client is away
                await h.hub.publish("flight.departed", departed(i))
            await wait_until(lambda: client.state is swim.State.CONNECTED
                             and subscribed_clients(h.hub))
            for i in range(10, 15):
                await h.hub.publish("flight.departed", departed(i))
            await wait_until(lambda: len(col.events) >= 15)
            await trio.sleep(0.2)
            seqs = [e.seq for e in col.events]
            assert seqs == list(range(1, 16))
            assert [e.callsign for e in col.events] == [f"AAL{i}" for i in range(15)]
            resumed = col.of(swim.Resumed)
            assert len(resumed) == 1 and resumed[0].recovered and resumed[0].from_seq == 5
            states = [s.state for s in col.of(swim.StateChange)]
            assert states == [swim.State.CONNECTED, swim.State.DISCONNECTED,
                              swim.State.CONNECTING, swim.State.CONNECTED]
            assert client.last_seq == 15 and client.epoch == h.hub.log.epoch
        nursery.cancel_scope.cancel()


async def test_overlapping_subscriptions_resume_in_order_without_duplicates(
    tmp_path: Path,
) -> None:
    """Two subscriptions with different filters: after a reconnect the replay of both arrives
    once each, in seq order."""
    async with running_hub(tmp_path) as h, trio.open_nursery() as nursery:
        async with swim.connect(h.url, h.key, backoff_initial=0.3) as client:
            col = Collector(client)
            nursery.start_soon(col.run)
            await client.subscribe(["flight.departed"], airports=["KJFK"])
            await client.subscribe(["flight.*"], airports=["KBOS"])
            await h.hub.publish("flight.departed", departed(0, "KJFK"))
            await wait_until(lambda: len(col.events) == 1)
            next(iter(h.hub.clients.values())).request_close(1011, "test")
            await wait_until(lambda: not h.hub.clients)
            expected = []
            for i in range(1, 13):
                dep = ("KJFK", "KBOS", "KLAX")[i % 3]
                seq = (await h.hub.publish("flight.departed", departed(i, dep))).seq
                if dep != "KLAX":
                    expected.append(seq)
            await wait_until(lambda: client.state is swim.State.CONNECTED)
            for i in range(13, 16):
                seq = (await h.hub.publish("flight.departed", departed(i, "KBOS"))).seq
                expected.append(seq)
            await wait_until(lambda: len(col.events) >= 1 + len(expected))
            await trio.sleep(0.2)
            assert [e.seq for e in col.events] == [1, *expected]
            assert col.of(swim.Resumed)[0].recovered
        nursery.cancel_scope.cancel()


async def test_gap_the_hub_cannot_fill_is_reported(tmp_path: Path) -> None:
    async with running_hub(tmp_path, history_size=3) as h, trio.open_nursery() as nursery:
        async with swim.connect(h.url, h.key, backoff_initial=0.3) as client:
            col = Collector(client)
            nursery.start_soon(col.run)
            await client.subscribe(["flight.departed"])
            await h.hub.publish("flight.departed", departed(0))
            await wait_until(lambda: len(col.events) == 1)
            next(iter(h.hub.clients.values())).request_close(1011, "test")
            await wait_until(lambda: not h.hub.clients)
            for i in range(1, 11):  # more than the hub holds
                await h.hub.publish("flight.departed", departed(i))
            await wait_until(lambda: client.state is swim.State.CONNECTED)
            await h.hub.publish("flight.departed", departed(99))
            await wait_until(lambda: len(col.events) == 2)
            gap = col.of(swim.Resumed)
            assert len(gap) == 1 and gap[0].recovered is False and gap[0].gap
            assert gap[0].from_seq == 1 and "missed" in gap[0].reason
            # The notice comes before the first event after the gap.
            index = col.items.index(gap[0])
            assert col.items.index(col.events[1]) > index
            assert col.events[1].seq == 12 and client.last_seq == 12
        nursery.cancel_scope.cancel()


async def test_hub_restart_1001_reconnects_and_reports_new_epoch(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        first = await launch_hub(nursery, tmp_path, heartbeat_interval=1.0)
        async with swim.connect(first.url, first.key, backoff_initial=0.2,
                                backoff_max=0.5) as client:
            col = Collector(client)
            nursery.start_soon(col.run)
            await client.subscribe(["flight.departed"])
            await first.hub.publish("flight.departed", departed(0))
            await first.hub.publish("flight.departed", departed(1))
            await wait_until(lambda: len(col.events) == 2)
            old_epoch = first.hub.log.epoch
            await first.handle.shutdown()
            await wait_until(lambda: any(s.close_code == 1001
                                         for s in col.of(swim.StateChange)))
            await trio.sleep(0.5)  # a few refused attempts while no hub listens
            second = await launch_hub(nursery, tmp_path, port=first.port,
                                      heartbeat_interval=1.0)
            await wait_until(lambda: client.state is swim.State.CONNECTED
                             and subscribed_clients(second.hub))
            await second.hub.publish("flight.departed", departed(2))
            await wait_until(lambda: len(col.events) == 3)
            resumed = col.of(swim.Resumed)
            assert len(resumed) == 1 and not resumed[0].recovered
            assert resumed[0].previous_epoch == old_epoch
            assert resumed[0].epoch == second.hub.log.epoch != old_epoch
            assert "restarted" in resumed[0].reason
            assert col.events[2].seq == 1 and client.epoch == second.hub.log.epoch
            assert any(s.state is swim.State.DISCONNECTED and "cannot connect" in (s.reason or "")
                       for s in col.of(swim.StateChange))
            await second.handle.shutdown()
        nursery.cancel_scope.cancel()


async def test_bad_key_raises_auth_error_and_never_retries(tmp_path: Path) -> None:
    bad = "swim_dev_" + "0" * 64
    async with running_hub(tmp_path) as h, swim.connect(h.url, bad,
                                                         backoff_initial=0.05) as client:
        with pytest.raises(swim.AuthError) as info:
            async for _ in client:
                pass
        assert "authentication failed" in str(info.value)
        assert "swim_dev_" not in str(info.value)
        with pytest.raises(swim.AuthError):
            await client.subscribe(["flight.departed"])
        await trio.sleep(0.5)
        assert h.hub.stats.auth_failures == 1
        assert client.state is swim.State.CLOSED and client.connections == 0


async def test_revoked_key_4001_stops_a_live_client(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as h, trio.open_nursery() as nursery:
        async with swim.connect(h.url, h.key, backoff_initial=0.05) as client:
            col = Collector(client)
            nursery.start_soon(col.run)
            await client.subscribe(["flight.departed"])
            h.hub.revoke_key(h.key_id, "key revoked")
            await col.done.wait()
            assert isinstance(col.error, swim.AuthError)
            assert "key revoked" in str(col.error)
            await trio.sleep(0.5)
            assert client.connections == 1 and not h.hub.clients
        nursery.cancel_scope.cancel()


async def test_silent_connection_is_detected_and_resumed(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as h, trio.open_nursery() as nursery:
        proxy = FreezableProxy(h.port)
        port = await nursery.start(proxy.run)
        url = f"ws://127.0.0.1:{port}/api/swim/v1/ws"
        async with swim.connect(url, h.key, backoff_initial=0.1) as client:
            col = Collector(client)
            nursery.start_soon(col.run)
            await client.subscribe(["flight.departed"])
            assert client.heartbeat_interval == 1.0
            await h.hub.publish("flight.departed", departed(0))
            await wait_until(lambda: len(col.events) == 1)
            proxy.freeze()
            frozen_at = trio.current_time()
            await h.hub.publish("flight.departed", departed(1))  # held by the dead path
            await wait_until(lambda: client.state is not swim.State.CONNECTED, timeout=6)
            waited = trio.current_time() - frozen_at
            assert waited >= 1.5  # two heartbeat intervals, not sooner (no upper bound: shared CI)
            # The reconnect may already be under way: look for the change that said why.
            await wait_until(lambda: any("no message or heartbeat" in (change.reason or "")
                                         for change in col.of(swim.StateChange)), timeout=3)
            await wait_until(lambda: client.state is swim.State.CONNECTED, timeout=6)
            await h.hub.publish("flight.departed", departed(2))
            await wait_until(lambda: len(col.events) == 3)
            assert [e.seq for e in col.events] == [1, 2, 3]
            assert col.of(swim.Resumed)[0].recovered
            await wait_until(lambda: client.last_heartbeat is not None, timeout=3)
            assert client.heartbeat_age() is not None
        nursery.cancel_scope.cancel()


async def test_connection_limit_4002_backs_off_long(tmp_path: Path) -> None:
    caps = {"public": 5, "developer": 1, "partner": 500, "system": 10000}
    async with running_hub(tmp_path, tier_caps=caps) as h, trio.open_nursery() as nursery:
        async with swim.connect(h.url, h.key) as first:
            await first.subscribe(["flight.departed"])
            async with swim.connect(h.url, h.key, backoff_initial=0.05,
                                    limit_backoff=4.0) as second:
                col = Collector(second)
                nursery.start_soon(col.run)
                await wait_until(lambda: col.of(swim.StateChange))
                change = col.of(swim.StateChange)[0]
                assert change.state is swim.State.DISCONNECTED and change.close_code == 4002
                assert change.retry_in is not None and change.retry_in >= 2.0
        nursery.cancel_scope.cancel()


async def test_subscribe_error_is_raised(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as h, swim.connect(h.url, h.key) as client:
        with pytest.raises(swim.RequestError) as info:
            await client.subscribe(["nosuch.family"])
        assert info.value.code == "INVALID_CHANNEL"
        assert client.subscriptions == []


async def test_typed_accessors_and_heartbeat_feed_age(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as h, trio.open_nursery() as nursery:
        h.hub.feed_updated(__import__("datetime").datetime.now(
            __import__("datetime").UTC))
        async with swim.connect(h.url, h.key) as client:
            col = Collector(client)
            nursery.start_soon(col.run)
            await client.subscribe(["flight.positions"])
            pos = {"callsign": "DAL1", "flight_uid": 7, "latitude": 40.0, "longitude": -73.0,
                   "altitude_ft": 35000, "groundspeed_kts": 450, "heading_deg": 90,
                   "vertical_rate_fpm": 0, "current_artcc": "ZNY", "dep": "KJFK",
                   "arr": "KLAX"}
            await h.hub.publish("flight.positions", {"count": 1, "positions": [pos]})
            await wait_until(lambda: col.events and client.last_heartbeat is not None)
            event = col.events[0]
            assert event.positions[0].callsign == "DAL1"
            assert event.positions[0].altitude_ft == 35000
            assert event.raw["seq"] == event.seq and event.text.startswith("{")
            assert event.envelope.type == "flight.positions"
            assert client.feed_age_seconds is not None and client.feed_age_seconds >= 0
        nursery.cancel_scope.cancel()


async def test_tls_verifies_and_ca_file_adds_trust(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_path, key_path, ca_path = (tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem")
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    ca.cert_pem.write_to_path(str(ca_path))
    async with running_hub(tmp_path, tls_cert=str(cert_path), tls_key=str(key_path)) as h:
        assert h.url.startswith("wss://")
        async with swim.connect(h.url, h.key) as client:
            with pytest.raises(swim.TLSError):
                async for _ in client:
                    pass
        async with swim.connect(h.url, h.key, ca_file=str(ca_path)) as client:
            await client.subscribe(["flight.departed"])
            assert client.state is swim.State.CONNECTED
        assert isinstance(swim.make_ssl_context(str(ca_path)), ssl.SSLContext)


async def test_wrong_path_is_fatal_not_retried(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as h:
        url = h.url.replace("/api/swim/v1/ws", "/nope")
        async with swim.connect(url, h.key, backoff_initial=0.05) as client:
            with pytest.raises(swim.HandshakeRejected) as info:
                async for _ in client:
                    pass
            assert info.value.status == 404 and "wrong URL path" in str(info.value)


async def test_reconnect_false_raises_disconnected(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as h, swim.connect(h.url, h.key, reconnect=False) as client:
        await client.subscribe(["flight.departed"])
        next(iter(h.hub.clients.values())).request_close(1011, "test")
        with pytest.raises(swim.Disconnected) as info:
            async for _ in client:
                pass
        assert info.value.close_code == 1011


async def test_older_hub_without_ids_or_resume_still_works_and_gaps_are_told() -> None:
    """The PHP hub the protocol grew from: no `id` echo, no epoch/seq, no resume. This is an
    emulation (the real hub always has those), kept to the compat subset of PROTOCOL.md."""
    from trio_websocket import serve_websocket

    sessions: list[int] = []

    async def old_hub(request: Any) -> None:
        ws = await request.accept()
        sessions.append(1)
        await ws.send_message('{"type":"connected","data":{"client_id":"c1",'
                              '"server_time":"2026-11-26T18:30:00Z","version":"0.9.0"}}')
        msg = json.loads(await ws.get_message())
        assert msg["action"] == "subscribe" and "resume" not in msg
        await ws.send_message('{"type":"subscribed","channels":["flight.departed"],'
                              '"filters":{}}')
        event = {"type": "flight.departed", "timestamp": "2026-11-26T18:30:02Z",
                 "data": {"callsign": f"OLD{len(sessions)}"}}
        await ws.send_message(json.dumps(event))
        if len(sessions) == 1:
            await ws.aclose(1001, "restart")
        else:
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, old_hub, "127.0.0.1", 0, None)
        url = f"ws://127.0.0.1:{server.port}/api/swim/v1/ws"
        async with swim.connect(url, "k", backoff_initial=0.05, ping_interval=30) as client:
            col = Collector(client)
            nursery.start_soon(col.run)
            with trio.fail_after(5):
                await client.subscribe(["flight.departed"])
            await wait_until(lambda: len(col.events) == 2)
            assert [e.callsign for e in col.events] == ["OLD1", "OLD2"]
            assert [e.seq for e in col.events] == [None, None]
            gap = col.of(swim.Resumed)
            assert len(gap) == 1 and not gap[0].recovered
            assert "does not support resume" in gap[0].reason
            assert col.items.index(gap[0]) < col.items.index(col.events[1])
        nursery.cancel_scope.cancel()


async def test_resume_from_continues_an_earlier_stream(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as h, trio.open_nursery() as nursery:
        for i in range(5):
            await h.hub.publish("flight.departed", departed(i))
        epoch = h.hub.log.epoch
        async with swim.connect(h.url, h.key, resume_from=(epoch, 2)) as client:
            col = Collector(client)
            nursery.start_soon(col.run)
            await client.subscribe(["flight.departed"])
            await wait_until(lambda: len(col.events) == 3)
            assert [e.seq for e in col.events] == [3, 4, 5]
            assert col.of(swim.Resumed)[0].recovered and client.last_seq == 5
        async with swim.connect(h.url, h.key, resume_from=("oldepo", 2)) as client:
            col = Collector(client)
            nursery.start_soon(col.run)
            await client.subscribe(["flight.departed"])
            await wait_until(lambda: col.of(swim.Resumed))
            gap = col.of(swim.Resumed)[0]
            assert not gap.recovered and gap.previous_epoch == "oldepo" and gap.epoch == epoch
            await h.hub.publish("flight.departed", departed(9))
            await wait_until(lambda: len(col.events) == 1)
            assert col.events[0].seq == 6
        nursery.cancel_scope.cancel()


async def test_subscribe_returns_before_a_replay_larger_than_the_queue(tmp_path: Path) -> None:
    """A resume that replays more than queue_size events must not block subscribe(): the
    caller only starts reading once subscribe() has returned."""
    async with running_hub(tmp_path) as h:
        for i in range(100):
            await h.hub.publish("flight.departed", departed(i))
        epoch = h.hub.log.epoch
        async with swim.connect(h.url, h.key, resume_from=(epoch, 0), queue_size=10) as client:
            with trio.fail_after(10):
                reply = await client.subscribe(["flight.departed"])
            assert reply["type"] == "subscribed"
            seqs: list[int] = []
            with trio.fail_after(10):
                async for item in client:
                    if isinstance(item, swim.Event) and not item.is_heartbeat:
                        seqs.append(item.seq or 0)
                        if len(seqs) == 100:
                            break
            assert seqs == list(range(1, 101))
