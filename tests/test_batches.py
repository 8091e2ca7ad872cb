"""Batches in parts without a hub: cutting to the frame bound, joining the latest complete
batch, the typed SDKs' field rules, and the outbox replacing only whole older batches."""

from __future__ import annotations

import socket
from typing import Any

import orjson
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from swimctl.core.batches import (
    BatchAssembler,
    FrameTooLarge,
    envelope_measure,
    part_data,
    payload_limit,
    split_batch,
    split_sizes,
    typed_record,
)
from swimctl.core.model import Envelope
from swimctl.hub.outbox import EVENT, POSITIONS, Outbox
from swimctl.wire.frames import text_frame
from tests.conftest import StartHub, no_message, recv, request
from tests.test_compat import fleet

STAMP = "2026-11-26T13:17:27.106Z"


def test_payload_limit_counts_the_frame_header() -> None:
    assert len(text_frame(b"x" * payload_limit(65536))) == 65536
    assert len(text_frame(b"x" * payload_limit(1 << 20))) == 1 << 20
    assert len(text_frame(b"x" * payload_limit(4096))) == 4096


@given(st.lists(st.integers(1, 300), max_size=60), st.integers(0, 200))
def test_split_sizes_keeps_order_and_bounds(sizes: list[int], overhead: int) -> None:
    budget = 700
    if any(s > budget - overhead - 2 for s in sizes):
        with pytest.raises(FrameTooLarge):
            split_sizes(sizes, overhead, budget)
        return
    ranges = split_sizes(sizes, overhead, budget)
    assert [i for a, b in ranges for i in range(a, b)] == list(range(len(sizes)))
    for a, b in ranges:
        assert overhead + 2 + sum(sizes[a:b]) + (b - a - 1) <= budget or b - a == 1


@given(st.integers(0, 400), st.sampled_from([4096, 9000, 65536]))
def test_every_part_is_a_frame_within_the_bound(n: int, max_frame: int) -> None:
    records = [{"callsign": f"X{i}", "latitude": i / 7, "longitude": -i / 3,
                "altitude_ft": i * 100, "dep": "KJFK"} for i in range(n)]
    measure = envelope_measure("flight.positions", STAMP, "pub-1", "pub-1")
    chunks = split_batch(records, measure, payload_limit(max_frame))
    assert [r for c in chunks for r in c] == records
    for n_part, chunk in enumerate(chunks, 1):
        label = "pub-1" if len(chunks) > 1 else None
        data = part_data(chunk, label, n_part, len(chunks))
        frame = text_frame(Envelope("flight.positions", STAMP, data, 10**18,
                                    f"pub-1#{n_part}").encode())
        assert len(frame) <= max_frame
    if len(chunks) == 1:
        assert "batch_id" not in part_data(chunks[0], None, 1, 1)


def test_a_record_that_cannot_fit_alone_is_refused() -> None:
    measure = envelope_measure("flight.positions", STAMP, None, "b")
    with pytest.raises(FrameTooLarge):
        split_batch([{"callsign": "x" * 5000}, {"callsign": "y"}], measure, 4000)


def test_the_assembler_keeps_the_latest_complete_batch() -> None:
    state = BatchAssembler()
    assert state.add({"count": 1, "positions": [{"n": 0}]}, "e-1")  # a batch of one frame
    assert (state.batch_id, state.records) == ("e-1", [{"n": 0}])
    part = {"batch_id": "b", "parts": 3}
    assert not state.add({**part, "part": 1, "positions": [{"n": 1}]})
    assert not state.add({**part, "part": 3, "positions": [{"n": 3}]})
    assert state.records == [{"n": 0}]  # an incomplete batch never shows
    assert not state.add({"batch_id": "c", "part": 1, "parts": 2, "positions": [{"n": 9}]})
    assert state.add({**part, "part": 2, "positions": [{"n": 2}]})
    assert (state.batch_id, state.records) == ("b", [{"n": 1}, {"n": 2}, {"n": 3}])
    for n in range(10):  # abandoned batches do not pile up
        state.add({"batch_id": f"x{n}", "part": 1, "parts": 2, "positions": []})
    assert len(state._pending) <= 4
    # part beyond parts: no valid batch keys, so a whole batch of its own, like any odd event
    assert state.add({"batch_id": "z", "part": 3, "parts": 2, "positions": []})
    assert (state.batch_id, state.records) == ("", [])


def test_typed_record() -> None:
    good = {"latitude": 1.0, "longitude": 2, "altitude_ft": 3}
    assert typed_record(good, needs_position=True) is good
    fixed = typed_record({**good, "altitude_ft": 2.5, "heading_deg": float("nan"),
                          "groundspeed_kts": False}, needs_position=True)
    assert fixed == {"latitude": 1.0, "longitude": 2, "altitude_ft": 2}
    for bad in ({"latitude": None, "longitude": 1}, {"longitude": 1}, "x",
                {"latitude": float("inf"), "longitude": 1}, {"latitude": True, "longitude": 1}):
        assert typed_record(bad, needs_position=True) is None
    assert typed_record({"altitude_ft": None}, needs_position=False) == {}


async def test_the_outbox_replaces_only_whole_batches_not_yet_started() -> None:
    """A socket nobody reads: once the kernel is full, chunks queue. A newer batch's part
    drops queued older batches, except the one whose bytes began to go out, and never the
    earlier parts of its own batch."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    outbox = Outbox(trio.SocketStream(trio.socket.from_stdlib_socket(ours)), ours.fileno(),
                    1 << 30)
    try:
        chunk = b"x" * 3000
        outbox.push(chunk, POSITIONS, "a")  # a's first part: written (part of it at least)
        while outbox.queued_bytes == 0:
            outbox.push(chunk, POSITIONS, "a")
        outbox.push(chunk, POSITIONS, "a")  # a started: its rest stays
        for _ in range(3):
            outbox.push(chunk, POSITIONS, "b")
        outbox.push(b"event", EVENT)
        outbox.push(chunk, POSITIONS, "c")  # b, complete and not started, goes
        outbox.push(chunk, POSITIONS, "c")  # c's own first part stays
        tags = list(outbox._batches or ())
        assert "b" not in tags and tags.count("c") == 2 and "a" in tags
        assert b"event" in list(outbox._chunks or ())
        outbox.push(chunk, POSITIONS, "d")  # c not started: goes; a still started: stays
        tags = list(outbox._batches or ())
        assert "c" not in tags and "a" in tags and tags.count("d") == 1
        outbox.push(chunk, POSITIONS)  # an untagged batch replaces every unstarted one
        assert "d" not in list(outbox._batches or ())
    finally:
        outbox.close()
        ours.close()
        theirs.close()


def test_measure_matches_the_envelope_the_log_builds() -> None:
    data = {"count": 1, "positions": [{"a": 1}], "batch_id": "x", "part": 1, "parts": 1}
    real = len(orjson.dumps(Envelope("flight.positions", STAMP, data, 123, "e-123").to_dict()))
    measured = envelope_measure("flight.positions", STAMP, None, "x")(
        {"count": 1, "positions": [{"a": 1}], "part": 1, "parts": 1})
    # never under (a frame never passes the bound); over only by the widest seq and id
    assert real <= measured <= real + 60


async def test_a_filtered_client_gets_its_slice_of_the_whole_batch_in_one_frame(
        start_hub: StartHub) -> None:
    """Unfiltered: every part. Filtered: one frame, its flights from all the parts, with the
    last part's seq and no part keys; a slice too big for a frame goes part by part."""
    hub = await start_hub(heartbeat_interval=60)
    flights = fleet(3000)
    few = [f for f in flights if f["callsign"].startswith("DAL12")]
    wide = [f for f in flights if "KJFK" in (f["dep"], f["arr"])]
    async with hub.connect() as everything, hub.connect() as narrow, \
            hub.connect() as broad:
        await request(everything, {"action": "subscribe", "channels": ["flight.positions"]})
        await request(narrow, {"action": "subscribe", "channels": ["flight.positions"],
                                "filters": {"callsign_prefix": ["DAL12"]}})
        await request(broad, {"action": "subscribe", "channels": ["flight.positions"],
                              "filters": {"airports": ["KJFK"]}})
        await hub.hub.publish_positions(flights)
        parts = [await recv(everything) for _ in range(11)]
        assert [p["data"]["part"] for p in parts] == list(range(1, 12))
        one = await recv(narrow)
        assert one["seq"] == parts[-1]["seq"] and "part" not in one["data"]
        assert one["data"]["positions"] == few and one["data"]["count"] == len(few)
        assert len({(f["flight_uid"] - 10**10) // 300 for f in few}) > 1  # several parts
        await no_message(narrow)
        got: list[dict[str, Any]] = []
        while len(got) < len(wide):  # a fifth of the batch: more than a frame holds
            message = await recv(broad)
            assert "part" in message["data"]
            got += message["data"]["positions"]
        assert got == wide
