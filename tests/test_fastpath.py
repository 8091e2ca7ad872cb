"""The fan-out fast path is correct: shared frames written straight to sockets, a backlog
drained by one writer with writev, trio-websocket's own writes queued between whole frames.

No timing assertions on speed: only order, integrity, bounds and who gets what.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import trio

from swimctl.core.filters import compile_filter
from swimctl.core.routing import PositionIndex, Subscriptions, airport_keys, slice_records
from tests.conftest import Harness, StartHub, recv, request
from tests.rawws import RawClient

PAD = "p" * 3000


async def raw_subscribed(hub: Harness, channels: list[str], rcvbuf: int | None = None,
                         filters: dict[str, Any] | None = None) -> RawClient:
    client = await RawClient.connect(hub, rcvbuf)
    assert (await client.message())["type"] == "connected"
    await resubscribe(client, channels, filters)
    return client


async def resubscribe(client: RawClient, channels: list[str],
                      filters: dict[str, Any] | None = None) -> None:
    body: dict[str, Any] = {"action": "subscribe", "channels": channels}
    if filters:
        body["filters"] = filters
    await client.send(body)
    assert (await client.message())["type"] == "subscribed"


async def test_every_client_gets_every_frame_in_order_while_pinging(start_hub: StartHub) -> None:
    """Frames bigger than a socket buffer force partial writes and backlogs; the clients' pings
    make trio-websocket write pongs meanwhile. A pong spliced into a half-sent frame would
    break the framing (trio-websocket closes with a protocol error) or lose a ping."""
    # integrity here; bounds are tested below (frames over 64 KiB need a raised frame bound)
    hub = await start_hub(outbox_limit=64 << 20, max_frame_bytes=1 << 20)
    clients, events, sizes = 12, 300, (10, 3000, 70_000)
    received: dict[int, list[int]] = {}
    pongs: dict[int, int] = {}

    async def reader(i: int, ready: trio.Event) -> None:
        async with hub.connect("system") as ws:
            await request(ws, {"action": "subscribe", "channels": ["ctp.*"]})
            received[i], pongs[i] = [], 0
            ready.set()

            async def pinger() -> None:
                while True:
                    await ws.ping()  # returns when the pong arrives
                    pongs[i] += 1
                    await trio.sleep(0.001)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(pinger)
                while len(received[i]) < events:
                    msg = await recv(ws, timeout=30)
                    assert len(msg["data"]["pad"]) == sizes[msg["data"]["i"] % len(sizes)]
                    received[i].append(msg["data"]["i"])
                nursery.cancel_scope.cancel()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i in range(clients):
                ready = trio.Event()
                nursery.start_soon(reader, i, ready)
                await ready.wait()
            for n in range(events):
                await hub.hub.publish("ctp.load", {"i": n, "pad": "x" * sizes[n % len(sizes)]})
                if n % 10 == 0:
                    await trio.sleep(0.005)
    for i in range(clients):
        assert received[i] == list(range(events))
        assert pongs[i] > 0


async def test_close_frame_comes_last_after_the_backlog(start_hub: StartHub) -> None:
    """Closing a client with frames still queued: every queued event first, then the close
    frame, then nothing."""
    hub = await start_hub()
    client = await raw_subscribed(hub, ["ctp.*"])
    first = hub.hub.log.head + 1
    for n in range(200):  # ~0.6 MB: more than the socket buffers, so most of it queues
        await hub.hub.publish("ctp.load", {"i": n, "pad": PAD})
    hub.hub.shutdown()  # close 1001 to everyone
    seqs: list[int] = []
    with trio.fail_after(20):
        while True:
            opcode, payload = await client.frame()
            if opcode == 8:
                break
            assert opcode == 1
            seqs.append(orjson.loads(payload)["seq"])
        assert int.from_bytes(payload[:2], "big") == 1001
        await client.send_raw(payload[:2], 8)  # answer the close handshake
        try:
            extra = await client.frame()
        except (EOFError, trio.BrokenResourceError, OSError):
            extra = None
    assert extra is None, f"a frame after the close frame: {extra!r}"
    assert seqs == list(range(first, first + 200))


async def test_stalled_client_is_cut_off_at_its_bound_and_others_get_everything(
    start_hub: StartHub,
) -> None:
    limit = 256 * 1024
    hub = await start_hub(outbox_limit=limit)
    stalled = await raw_subscribed(hub, ["ctp.*"], rcvbuf=4096)  # then never reads
    stalled_client = next(c for c in hub.hub.clients.values() if c.subs.patterns)
    readers, events = 6, 400
    got: dict[int, list[int]] = {i: [] for i in range(readers)}
    frame_size = len(PAD) + 200
    largest = 0

    async def reader(i: int, ready: trio.Event) -> None:
        client = await raw_subscribed(hub, ["ctp.*"])
        ready.set()
        while len(got[i]) < events:
            got[i].append((await client.message())["data"]["i"])

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i in range(readers):
                ready = trio.Event()
                nursery.start_soon(reader, i, ready)
                await ready.wait()
            for n in range(events):
                await hub.hub.publish("ctp.load", {"i": n, "pad": PAD})
                largest = max(largest, stalled_client.outbox.queued_bytes)
                await trio.sleep(0.001)
    assert all(got[i] == list(range(events)) for i in range(readers))
    assert stalled_client.close_code == 4008
    assert hub.hub.stats.slow_consumers == 1
    assert largest <= limit + frame_size  # bounded: the limit plus the frame that crossed it
    # Reading again, the stalled client finds intact frames, then SLOW_CONSUMER, then 4008.
    codes: list[str] = []
    with trio.fail_after(20):
        while True:
            opcode, payload = await stalled.frame()
            if opcode == 8:
                break
            msg = orjson.loads(payload)
            if msg["type"] == "error":
                codes.append(msg["code"])
    assert codes == ["SLOW_CONSUMER"]
    assert int.from_bytes(payload[:2], "big") == 4008


async def test_client_gone_mid_backlog_does_not_disturb_others(start_hub: StartHub) -> None:
    hub = await start_hub()
    gone = await raw_subscribed(hub, ["ctp.*"], rcvbuf=4096)
    stays = await raw_subscribed(hub, ["ctp.*"])
    for n in range(50):
        await hub.hub.publish("ctp.load", {"i": n, "pad": PAD})
    await gone.stream.aclose()  # with frames queued for it
    seen: list[int] = []

    async def read() -> None:
        while len(seen) < 100:
            seen.append((await stays.message())["data"]["i"])

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            for n in range(50, 100):
                await hub.hub.publish("ctp.load", {"i": n, "pad": PAD})
                await trio.sleep(0.002)
    assert seen == list(range(100))


# -- the indexes give exactly what the plain filters give ---------------------------------------

CODES = ["KJFK", "kjfk", "EGLL", "KLAX", "LFPG", "EDDF", "KBOS"]


def _record(rng: random.Random) -> Any:
    rec: dict[str, Any] = {"callsign": rng.choice(["DAL1", "BAW2", "AFR3", "dlh4"]),
                           "latitude": rng.uniform(-80, 80), "longitude": rng.uniform(-170, 170),
                           "current_artcc": rng.choice(["ZNY", "KZNY", "EGTT", "LFFF"])}
    shape = rng.randrange(6)
    if shape == 0:
        rec["dep"], rec["arr"] = rng.choice(CODES), rng.choice([*CODES, None])
    elif shape == 1:
        rec["dep"] = rng.choice([*CODES, None, 5])
    elif shape == 2:
        rec["arr"] = rng.choice(CODES)
    elif shape == 3:
        rec["airport"] = rng.choice([*CODES, None])
    elif shape == 4:
        rec["dep"], rec["arr"] = rng.choice(CODES), rng.choice(CODES)
    return rec  # shape 5: no airport attribute at all


def _filter(rng: random.Random) -> Any:
    raw: dict[str, Any] = {}
    if rng.random() < 0.8:
        raw["airports"] = rng.sample(CODES, rng.randrange(1, 3))
    if rng.random() < 0.25:
        raw["artccs"] = ["ZNY"]
    if rng.random() < 0.2:
        raw["callsign_prefix"] = ["DAL", "DLH"]
    if rng.random() < 0.2:
        raw["bbox"] = {"north": 60, "south": 0, "east": 50, "west": -100}
    return compile_filter(raw or {"airports": ["KJFK"]})


def test_position_index_slices_exactly_like_the_filters() -> None:
    rng = random.Random(5)
    for _ in range(300):
        records = [_record(rng) for _ in range(rng.randrange(0, 60))]
        index = PositionIndex(records)
        route = tuple(_filter(rng) for _ in range(rng.randrange(1, 3)))
        assert index.slice(route) == slice_records(route, records)


def test_fast_route_accepts_exactly_like_the_filters() -> None:
    rng = random.Random(6)
    for _ in range(300):
        subs = Subscriptions()
        for pattern in rng.sample(["flight.*", "flight.departed", "tmi.*", "system.*"], 2):
            subs.set((pattern,), _filter(rng) if rng.random() < 0.8 else compile_filter(None))
        for etype in ("flight.departed", "flight.created", "tmi.issued", "system.heartbeat",
                      "tmi.active"):
            data = _record(rng)
            fast = subs.fast_route(etype)
            if fast is None or fast == ():
                expected = fast is not None
            elif isinstance(fast, frozenset):
                keys = airport_keys(data)
                passes = etype.startswith("system.") or etype == "tmi.active"
                expected = passes or keys is None or not fast.isdisjoint(keys)
            else:
                expected = any(f.accepts(etype, data) for f in fast)
            assert expected == subs.accepts(etype, data), (etype, data, subs.echo())


async def test_stalled_client_memory_is_released_on_close(start_hub: StartHub) -> None:
    hub = await start_hub(outbox_limit=64 * 1024)
    stalled = await raw_subscribed(hub, ["ctp.*"], rcvbuf=4096)
    client = next(iter(hub.hub.clients.values()))
    for n in range(100):
        await hub.hub.publish("ctp.load", {"i": n, "pad": PAD})
        assert client.outbox.queued_bytes <= 64 * 1024 + len(PAD) + 200
    assert client.close_code == 4008
    await stalled.stream.aclose()
    with trio.fail_after(10):
        while hub.hub.clients:
            await trio.sleep(0.01)
    assert client.outbox.queued_bytes == 0


async def test_airport_index_delivers_once_and_only_to_matching_clients(
    start_hub: StartHub,
) -> None:
    """The per-type target index lists a client under each of its airports; an event whose
    dep and arr are both among them still reaches it once."""
    hub = await start_hub()
    specs = {
        "both": {"airports": ["KJFK", "KLAX"]},
        "jfk": {"airports": ["kjfk"]},
        "other": {"airports": ["EGLL"]},
        "mixed": {"airports": ["KLAX"], "callsign_prefix": ["DAL"]},
        "all": None,
    }
    clients: dict[str, RawClient] = {}
    for name, flt in specs.items():
        client = await raw_subscribed(hub, ["flight.*", "system.*"], filters=flt)
        clients[name] = client
    events = [
        {"callsign": "DAL1", "dep": "KJFK", "arr": "KLAX"},
        {"callsign": "UAL2", "dep": "KLAX", "arr": "KLAX"},
        {"callsign": "BAW3", "dep": "EGLL", "arr": "KJFK"},
        {"callsign": "AFR4", "dep": None, "arr": None},
        {"callsign": "DLH5"},  # no airport attribute: airport filters do not test it
    ]
    for data in events:
        await hub.hub.publish("flight.departed", data)
    await hub.hub.publish("system.mark", {})
    expected = {
        "both": ["DAL1", "UAL2", "BAW3", "DLH5"],
        "jfk": ["DAL1", "BAW3", "DLH5"],
        "other": ["BAW3", "DLH5"],
        "mixed": ["DAL1"],
        "all": ["DAL1", "UAL2", "BAW3", "AFR4", "DLH5"],
    }
    with trio.fail_after(10):
        for name, client in clients.items():
            seen: list[str] = []
            while True:
                msg = await client.message()
                if msg["type"] == "system.mark":
                    break
                seen.append(msg["data"]["callsign"])
            assert seen == expected[name], name


# -- the per-type fast list of file descriptors (targets.py) --------------------------------------


async def test_a_backlog_made_by_a_reply_is_never_overtaken_by_the_fast_list(
    start_hub: StartHub,
) -> None:
    """A client already in a plan's fast list falls behind through a reply, not through
    fan-out. Events published after that must queue behind the reply, not jump ahead of it
    with a direct write; once the backlog drains, events flow again, in order."""
    hub = await start_hub(outbox_limit=64 << 20)
    client = await raw_subscribed(hub, ["ctp.*"], rcvbuf=4096)
    other = await raw_subscribed(hub, ["ctp.*"])
    await hub.hub.publish("ctp.load", {"i": 0})  # builds the plan: both clients in the fast list
    target = next(c for c in hub.hub.clients.values() if c.outbox.fd is not None
                  and c.subs.patterns and c.outbox.direct)
    big = orjson.dumps({"type": "filler", "pad": "r" * 2_000_000})
    for c in hub.hub.clients.values():
        hub.hub.send(c, big)  # far more than the socket buffers: a backlog for each
    assert not target.outbox.direct
    for n in range(1, 40):
        await hub.hub.publish("ctp.load", {"i": n, "pad": PAD})
    for raw in (client, other):
        seen: list[Any] = []
        with trio.fail_after(20):
            while len(seen) < 41:
                msg = await raw.message()
                seen.append(msg["data"]["i"] if msg["type"] == "ctp.load" else msg["type"])
        assert seen == [0, "filler", *range(1, 40)]
    with trio.fail_after(10):  # drained: direct again, and later events still arrive in order
        while not all(c.outbox.direct for c in hub.hub.clients.values()):
            await trio.sleep(0.01)
    for n in range(40, 60):
        await hub.hub.publish("ctp.load", {"i": n})
    for raw in (client, other):
        with trio.fail_after(10):
            assert [(await raw.message())["data"]["i"] for _ in range(20)] == list(range(40, 60))


async def test_status_counts_every_message_the_fast_list_wrote(start_hub: StartHub) -> None:
    """The fast path counts events per plan, not per client; `status` still shows exactly
    what the client was sent, before and after the plans are rebuilt."""
    hub = await start_hub()
    async with hub.connect("system") as ws:
        await request(ws, {"action": "subscribe", "channels": ["ctp.*", "flight.*"]})
        for n in range(7):
            await hub.hub.publish("ctp.load", {"i": n})
        await hub.hub.publish("flight.departed", {"callsign": "DAL1", "dep": "KJFK"})
        for _ in range(8):
            assert "." in (await recv(ws))["type"]
        status = await request(ws, {"action": "status"})
        assert status["data"]["messages_sent"] == 8
        # A new subscription rebuilds the plans (their counts are folded into the client).
        await request(ws, {"action": "subscribe", "channels": ["ctp.*"]})
        for n in range(3):
            await hub.hub.publish("ctp.load", {"i": n})
        for _ in range(3):
            await recv(ws)
        status = await request(ws, {"action": "status"})
        assert status["data"]["messages_sent"] == 11


# -- coalescing: a burst goes out in runs, and nothing overtakes what is held ---------------------


async def _events(raw: RawClient, count: int) -> list[tuple[str, int]]:
    out = []
    with trio.fail_after(10):
        while len(out) < count:
            msg = await raw.message()
            out.append((msg["type"], msg.get("seq", -1)))
    return out


async def test_held_events_are_flushed_by_the_coalescer_alone(start_hub: StartHub) -> None:
    hub = await start_hub(coalesce_window=0.05)
    raw = await raw_subscribed(hub, ["ctp.*"])
    fan_outs = hub.hub.stats.fanout.count
    seqs = [(await hub.hub.publish("ctp.load", {"i": n})).seq for n in range(10)]
    assert len(hub.hub.coalescer._pending) == 9  # the first went out at once; the rest wait
    assert [s for _, s in await _events(raw, 10)] == seqs
    assert hub.hub.stats.fanout.count == fan_outs + 2


async def test_held_events_reach_a_client_before_its_reply(start_hub: StartHub) -> None:
    hub = await start_hub(coalesce_window=5.0)  # held until something flushes them
    raw = await raw_subscribed(hub, ["ctp.*"])
    seqs = [(await hub.hub.publish("ctp.load", {"i": n})).seq for n in range(10)]
    await raw.send({"action": "ping", "id": "p"})
    got = await _events(raw, 11)
    assert got[:10] == [("ctp.load", s) for s in seqs]
    assert got[10][0] == "pong"


async def test_resume_while_events_are_held_delivers_each_once(start_hub: StartHub) -> None:
    hub = await start_hub(coalesce_window=5.0)
    witness = await raw_subscribed(hub, ["ctp.*"])
    first = (await hub.hub.publish("ctp.load", {"i": 0})).seq
    held = [(await hub.hub.publish("ctp.load", {"i": n})).seq for n in range(1, 10)]
    assert hub.hub.coalescer._pending
    late = await RawClient.connect(hub)  # admitted: the held events go out to the witness
    assert (await late.message())["type"] == "connected"
    await late.send({"action": "subscribe", "channels": ["ctp.*"],
                     "resume": {"epoch": hub.hub.log.epoch, "seq": first}})
    reply = await late.message()
    assert reply["type"] == "subscribed" and reply["recovered"] is True
    more = (await hub.hub.publish("ctp.load", {"i": 10})).seq
    hub.hub.flush()
    assert [s for _, s in await _events(late, 10)] == [*held, more]
    assert [s for _, s in await _events(witness, 11)] == [first, *held, more]
    with trio.move_on_after(0.3):
        extra = await late.message()
        raise AssertionError(f"delivered twice: {extra}")


async def test_a_burst_goes_out_in_runs_in_stream_order(start_hub: StartHub) -> None:
    """Mixed types, an unfiltered client, an airport-filtered one and one unfiltered for one
    type but filtered for another: each gets exactly its events, in order, and the burst
    took two fan-out steps (the first event alone, then the held 59 in runs), not 60."""
    hub = await start_hub(coalesce_window=5.0)
    everyone = await raw_subscribed(hub, ["ctp.*", "flight.*"])
    jfk = await raw_subscribed(hub, ["ctp.*", "flight.*"], filters={"airports": ["KJFK"]})
    mixed = await raw_subscribed(hub, ["ctp.*"])
    await resubscribe(mixed, ["flight.*"], {"airports": ["KJFK"]})
    fan_outs = hub.hub.stats.fanout.count
    published: list[tuple[str, int, str | None]] = []
    for n in range(60):
        if n % 20 < 12:
            etype, data = "ctp.load", {"i": n, "airport": "KJFK" if n % 2 else "EGLL"}
        else:
            etype, data = "flight.departed", {"callsign": f"T{n}",
                                              "dep": "KJFK" if n % 3 else "KLAX"}
        seq = (await hub.hub.publish(etype, data)).seq
        published.append((etype, seq, data.get("airport") or data.get("dep")))
    hub.hub.flush()
    assert hub.hub.stats.fanout.count - fan_outs == 2
    assert await _events(everyone, 60) == [(t, s) for t, s, _ in published]
    want_jfk = [(t, s) for t, s, a in published if a == "KJFK"]
    assert await _events(jfk, len(want_jfk)) == want_jfk
    want_mixed = [(t, s) for t, s, a in published if t == "ctp.load" or a == "KJFK"]
    assert await _events(mixed, len(want_mixed)) == want_mixed


async def test_a_publishers_acks_leave_its_burst_held(start_hub: StartHub) -> None:
    """Acks go to a publisher that subscribes to nothing, so they need not flush; a
    subscriber's own reply still comes after every event held before it."""
    hub = await start_hub(coalesce_window=5.0)
    watcher = await raw_subscribed(hub, ["ctp.*"])
    async with hub.connect("system") as publisher:
        seqs = []
        for n in range(5):
            ack = await request(publisher, {"action": "publish", "channel": "ctp.load",
                                            "data": {"i": n}})
            assert ack["type"] == "publish_ack"
            seqs.append(ack["seq"])
        assert [e.seq for e in hub.hub.coalescer._pending] == seqs[1:]
    await watcher.send({"action": "ping", "id": "w"})
    got = await _events(watcher, 6)
    assert got == [*(("ctp.load", s) for s in seqs), ("pong", -1)]


async def test_a_mixed_burst_to_clients_taking_every_type_arrives_whole_and_in_order(
    start_hub: StartHub,
) -> None:
    """A feed cycle's shape: lifecycle events of several types, interleaved, to clients that
    take all of them (written as one burst) and to an airport-filtered client (event by
    event). Both see the stream's order; counts stay exact."""
    hub = await start_hub(coalesce_window=5.0)
    unfiltered = [await raw_subscribed(hub, ["flight.*"]) for _ in range(3)]
    jfk = await raw_subscribed(hub, ["flight.*"], filters={"airports": ["KJFK"]})
    types = ["flight.created", "flight.departed", "flight.arrived", "flight.deleted"]
    published = []
    for n in range(40):
        etype, dep = types[(n * 7) % 4], "KJFK" if n % 3 == 0 else "EGLL"
        appended = await hub.hub.publish(etype, {"callsign": f"T{n}", "dep": dep})
        published.append((etype, appended.seq, dep))
    hub.hub.flush()
    for raw in unfiltered:
        assert await _events(raw, 40) == [(t, s) for t, s, _ in published]
    want = [(t, s) for t, s, d in published if d == "KJFK"]
    assert await _events(jfk, len(want)) == want
    await unfiltered[0].send({"action": "status"})
    status = await unfiltered[0].message()
    assert status["data"]["messages_sent"] == 40


async def test_two_hubs_in_one_process_keep_their_own_plans(start_hub: Any) -> None:
    """Routing changes and outbox demotions are counted per hub: a client of one hub that
    falls behind or resubscribes does not make the other hub rebuild its plans."""
    first, second = await start_hub(), await start_hub()
    async with first.connect() as ws_a, second.connect() as ws_b:
        for ws in (ws_a, ws_b):
            await request(ws, {"action": "subscribe", "channels": ["flight.*"]})
        await first.hub.publish("flight.departed", {"callsign": "A1"})
        await second.hub.publish("flight.departed", {"callsign": "B1"})
        plan_b = second.hub._targets.plan("flight.departed", second.hub.clients)
        assert plan_b.fast_ready()
        [client_a] = first.hub.clients.values()
        client_a.outbox.accept_events = False  # leaves the direct state: a demotion in A
        assert plan_b.fast_ready()
        assert second.hub._targets.plan("flight.departed", second.hub.clients) is plan_b
        await request(ws_a, {"action": "subscribe", "channels": ["tmi.*"]})
        assert second.hub._targets.plan("flight.departed", second.hub.clients) is plan_b
