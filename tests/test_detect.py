"""Flight-event detection on real (pseudonymised) VATSIM snapshots and on edited copies."""

from __future__ import annotations

import copy
import datetime as dt
import gzip
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swimctl.core.detect import Detector, FeedError, flight_uid, parse_snapshot, snapshot_time
from swimctl.core.geo import Geo, load_geo
from swimctl.core.model import FlightData, Position, converter, format_ts, parse_ts

FIXTURES = Path(__file__).parent / "fixtures" / "vatsim"
NY_BOX = (40.45, 41.25, -74.3, -73.6)  # New York metro: south, north, west, east


def load(name: str) -> dict[str, Any]:
    return parse_snapshot(gzip.decompress((FIXTURES / f"{name}.vatsim-data.json.gz").read_bytes()))


@pytest.fixture(scope="module")
def geo() -> Geo:
    return load_geo()


@pytest.fixture(scope="module")
def snap_a() -> dict[str, Any]:
    return load("2023-08-07T232929Z")


@pytest.fixture(scope="module")
def snap_b() -> dict[str, Any]:
    return load("2023-08-07T232944Z")


@pytest.fixture(scope="module")
def snap_old() -> dict[str, Any]:
    return load("2023-03-12T172418Z")


@pytest.fixture(scope="module")
def two_cycles(geo, snap_a, snap_b):
    det = Detector(geo)
    return det, det.process(snap_a), det.process(snap_b)


def by_type(events, etype: str) -> list[dict[str, Any]]:
    return [data for t, data, _ in events if t == etype]


def with_time(snapshot: dict[str, Any], moment: dt.datetime) -> dict[str, Any]:
    out = copy.deepcopy(snapshot)
    out["general"]["update_timestamp"] = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return out


def test_snapshots_are_15_seconds_apart(snap_a, snap_b) -> None:
    delta = snapshot_time(snap_b) - snapshot_time(snap_a)
    assert round(delta.total_seconds()) == 15


def test_first_cycle_creates_everyone(two_cycles, snap_a) -> None:
    _, first, _ = two_cycles
    counts = Counter(t for t, _, _ in first.events)
    assert counts == {"flight.created": len(snap_a["pilots"]), "flight.positions": 1}
    assert first.skipped == 0
    batch = by_type(first.events, "flight.positions")[0]
    assert batch["count"] == len(batch["positions"]) == len(snap_a["pilots"])
    assert all(ts == first.timestamp for _, _, ts in first.events)
    assert first.timestamp == "2023-08-07T23:29:29.885Z"


def test_take_off_roll_is_not_yet_a_departure(two_cycles, snap_b) -> None:
    """AIE701 (CYYT) and EUR1EM (LTFM) go from 13-14 kt to 70-73 kt between A and B: on the
    take-off roll, still at the field's height. They depart once they have climbed, stamped
    with the estimated lift-off, which lies after B."""
    det, _, second = two_cycles
    assert not by_type(second.events, "flight.departed")
    assert not by_type(second.events, "flight.arrived")
    rolling = {p["callsign"]: p for p in snap_b["pilots"] if p["callsign"] in ("AIE701", "EUR1EM")}
    assert {c: p["groundspeed"] >= 70 for c, p in rolling.items()} == {"AIE701": True,
                                                                       "EUR1EM": True}
    t_b = snapshot_time(snap_b)
    climbed = copy.deepcopy(snap_b)
    for p in climbed["pilots"]:
        if p["callsign"] in rolling:
            p.update(altitude=p["altitude"] + 500, groundspeed=155, latitude=p["latitude"] + 0.01)
    third = det.process(with_time(climbed, t_b + dt.timedelta(seconds=15)))
    departed = {d["callsign"]: (d, ts) for t, d, ts in third.events if t == "flight.departed"}
    assert set(departed) == {"AIE701", "EUR1EM"}
    assert departed["AIE701"][0]["dep"] == "CYYT"
    assert departed["EUR1EM"][0]["dep"] == "LTFM"
    for data, stamp in departed.values():
        assert data["off_utc"] == stamp
        # 500 ft at the climb rate of a 155-kt aircraft: about 14 s before the third sample
        assert t_b < parse_ts(stamp) < t_b + dt.timedelta(seconds=15)
        assert list(data) == [
            "callsign", "flight_uid", "dep", "arr", "off_utc",
            "latitude", "longitude", "current_artcc",
        ]  # fmt: skip
        assert isinstance(data["flight_uid"], int)
    assert departed["EUR1EM"][0]["current_artcc"] == "LTBB"


def test_airborne_connections_are_created_never_departed(geo, snap_a, snap_b) -> None:
    det = Detector(geo)
    first = det.process(snap_a)
    airborne = {d["callsign"] for d in by_type(first.events, "flight.created")
                if d["groundspeed_kts"] >= 100}  # fmt: skip
    assert len(airborne) > 300
    second = det.process(snap_b)
    departed = {d["callsign"] for d in by_type(second.events, "flight.departed")}
    assert not airborne & departed
    # pilots that connect in the second snapshot are created and nothing else
    new = {d["callsign"] for d in by_type(second.events, "flight.created")}
    assert new == {"ACA390", "N3TW", "RYR165K", "AA815"}
    for etype in ("flight.departed", "flight.arrived", "flight.updated"):
        assert not new & {d["callsign"] for d in by_type(second.events, etype)}


def test_airborne_then_moving_is_not_departed(geo, snap_a) -> None:
    """A pilot first seen in the air never departs, however it moves afterwards."""
    pilot = next(p for p in snap_a["pilots"] if p["callsign"] == "DLR22")
    t0 = snapshot_time(snap_a)
    det = Detector(geo)
    events = []
    for n in range(4):
        snap = with_time({"general": snap_a["general"], "pilots": [dict(pilot)]},
                         t0 + dt.timedelta(seconds=15 * n))  # fmt: skip
        snap["pilots"][0]["altitude"] = pilot["altitude"] + 500 * n
        snap["pilots"][0]["latitude"] = pilot["latitude"] - 0.01 * n
        events += det.process(snap).events
    assert Counter(t for t, _, _ in events) == {"flight.created": 1, "flight.positions": 4}


def test_every_position_over_new_york_is_zny(two_cycles, geo, snap_old) -> None:
    _, first, second = two_cycles
    old = Detector(geo).process(snap_old)
    s, n, w, e = NY_BOX
    seen = 0
    for cycle in (first, second, old):
        for pos in cycle.positions:
            if s < pos["latitude"] < n and w < pos["longitude"] < e:
                assert pos["current_artcc"] == "ZNY", pos
                seen += 1
    assert seen > 40
    dlr = [p for c in (first, second) for p in c.positions if p["callsign"] == "DLR22"]
    assert len(dlr) == 2 and {p["current_artcc"] for p in dlr} == {"ZNY"}


def test_vertical_rate_and_positions_batch(two_cycles) -> None:
    _, _, second = two_cycles
    batch = by_type(second.events, "flight.positions")[0]
    assert batch["count"] == len(batch["positions"])
    moved = {p["callsign"]: p for p in batch["positions"]}
    assert "DLR22" in moved and "GTI72" not in moved  # GTI72 sat still at its JFK gate
    # 4268 ft -> 4893 ft in 14.99 s
    assert moved["DLR22"]["vertical_rate_fpm"] == round((4893 - 4268) * 60 / 14.9915)
    assert moved["DLR22"]["altitude_ft"] == 4893
    # all current positions are handed over, moved or not
    assert len(second.positions) == 758  # 757 pilots + JBU1421, missing once
    assert {p["callsign"] for p in second.positions} >= {"GTI72", "DLR22", "JBU1421"}


def test_payload_shapes_match_the_model(two_cycles) -> None:
    _, first, second = two_cycles
    created = by_type(first.events, "flight.created")[0]
    assert list(created) == [f.name for f in attrs.fields(FlightData)]
    assert converter.unstructure(converter.structure(created, FlightData)) == created
    for pos in first.positions[:50]:
        assert list(pos) == [f.name for f in attrs.fields(Position)]
        assert converter.unstructure(converter.structure(pos, Position)) == pos
        for key in ("flight_uid", "altitude_ft", "groundspeed_kts", "heading_deg",
                    "vertical_rate_fpm"):  # fmt: skip
            assert type(pos[key]) is int
        assert type(pos["latitude"]) is float and type(pos["longitude"]) is float
    updated = by_type(second.events, "flight.updated")
    assert {d["callsign"]: d["changes"] for d in updated} == {
        "N906PR": ["route"],
        "GKDR": ["route"],
    }
    assert list(updated[0]) == [f.name for f in attrs.fields(FlightData)] + ["changes"]
    orjson.dumps([e[1] for e in first.events + second.events])  # JSON-clean


def test_deleted_after_two_missed_snapshots(geo, snap_a, snap_b) -> None:
    det = Detector(geo, deleted_after=2)
    det.process(snap_a)
    second = det.process(snap_b)
    assert not by_type(second.events, "flight.deleted")  # JBU1421 missed once
    third = det.process(with_time(snap_b, snapshot_time(snap_b) + dt.timedelta(seconds=15)))
    deleted = by_type(third.events, "flight.deleted")
    assert [d["callsign"] for d in deleted] == ["JBU1421"]
    assert list(deleted[0]) == ["callsign", "flight_uid", "dep", "arr"]
    assert "JBU1421" not in {p["callsign"] for p in third.positions}
    # nothing else happens in a repeat of the same traffic
    assert Counter(t for t, _, _ in third.events) == {"flight.deleted": 1}


def test_stale_snapshot_has_no_events(geo, snap_a) -> None:
    det = Detector(geo)
    det.process(snap_a)
    again = det.process(snap_a)
    assert again.stale and again.events == []
    assert len(again.positions) == len(snap_a["pilots"])


def test_arrival_at_jfk(geo, snap_a) -> None:
    """An inbound flight on final, then slowed on the runway at KJFK, arrives."""
    pilot = copy.deepcopy(next(p for p in snap_a["pilots"] if p["callsign"] == "UPS752"))
    t0 = snapshot_time(snap_a)
    det = Detector(geo)
    samples = [  # lat, lon, altitude, groundspeed
        (40.70, -73.70, 2000, 160),
        (40.66, -73.76, 400, 140),
        (40.645, -73.785, 20, 90),  # roll-out: in the dead band's airborne side
        (40.640, -73.790, 15, 25),  # slowed down on the ground
        (40.641, -73.791, 15, 10),
    ]
    events = []
    for n, (lat, lon, alt, gs) in enumerate(samples):
        pilot.update(latitude=lat, longitude=lon, altitude=alt, groundspeed=gs)
        snap = {"general": snap_a["general"], "pilots": [copy.deepcopy(pilot)]}
        events += det.process(with_time(snap, t0 + dt.timedelta(seconds=15 * n))).events
    arrived = by_type(events, "flight.arrived")
    assert len(arrived) == 1
    assert arrived[0]["arr"] == "KJFK" and arrived[0]["current_artcc"] == "ZNY"
    # decided once slow (t0 + 45 s), stamped with the touchdown: after the last sample in the
    # air (400 ft, t0 + 15 s), no later than the first one rolling on the runway (t0 + 30 s)
    touchdown = parse_ts(arrived[0]["in_utc"])
    assert t0 + dt.timedelta(seconds=15) < touchdown <= t0 + dt.timedelta(seconds=30)
    assert not by_type(events, "flight.departed")


def fly(geo: Geo, pilot: dict[str, Any], general: dict[str, Any], t0: dt.datetime,
        samples: list[tuple[float, float, int, int]], step: float = 15.0) -> list[Any]:
    """One pilot through a sequence of (lat, lon, altitude, groundspeed) samples."""
    det = Detector(geo)
    events = []
    for n, (lat, lon, alt, gs) in enumerate(samples):
        pilot = dict(pilot, latitude=lat, longitude=lon, altitude=alt, groundspeed=gs)
        snap = {"general": general, "pilots": [pilot]}
        events += det.process(with_time(snap, t0 + dt.timedelta(seconds=step * n))).events
    return [e for e in events if e[0] != "flight.positions"]


def test_rejected_take_off_and_fast_taxi_are_not_departures(geo, snap_a) -> None:
    """Fast on the runway without climbing is not flying: an aborted roll at 90 kt and a taxi
    at 55 kt leave the flight on the ground; it departs once it has climbed."""
    pilot = copy.deepcopy(next(p for p in snap_a["pilots"] if p["callsign"] == "GTI72"))
    lat, lon, alt = pilot["latitude"], pilot["longitude"], pilot["altitude"]
    t0 = snapshot_time(snap_a)
    samples = [(lat, lon, alt, 0), (lat + 0.002, lon, alt + 3, 18), (lat + 0.006, lon, alt + 8, 90),
               (lat + 0.008, lon, alt + 6, 20), (lat + 0.004, lon, alt + 2, 55),
               (lat + 0.002, lon, alt, 10), (lat + 0.006, lon, alt + 20, 120),
               (lat + 0.02, lon, alt + 700, 160)]
    events = fly(geo, pilot, snap_a["general"], t0, samples)
    departed = [(d, ts) for t, d, ts in events if t == "flight.departed"]
    assert len(departed) == 1
    assert not [e for e in events if e[0] == "flight.arrived"]
    # lift-off between the roll at 120 kt (t0 + 90 s) and the sample 700 ft up (t0 + 105 s)
    off = parse_ts(departed[0][1])  # (stamps carry milliseconds)
    assert t0 + dt.timedelta(seconds=89.999) <= off < t0 + dt.timedelta(seconds=105)


def test_helicopter_hover_is_neither_ground_nor_landed(geo, snap_a) -> None:
    """A helicopter lifting into a low hover has departed by the time it climbs away, and one
    hovering over its pad has not landed until its altitude holds on the ground."""
    pilot = copy.deepcopy(next(p for p in snap_a["pilots"] if p["callsign"] == "GTI72"))
    lat, lon, g = pilot["latitude"], pilot["longitude"], pilot["altitude"]
    t0 = snapshot_time(snap_a)
    samples = [(lat, lon, g, 0), (lat, lon, g, 0), (lat, lon, g + 9, 0),  # hover from t0+30
               (lat + 0.001, lon, g + 160, 25), (lat + 0.02, lon, g + 900, 110),
               (lat + 0.003, lon, g + 300, 30), (lat + 0.001, lon, g + 60, 8),
               (lat, lon, g + 11, 0), (lat, lon, g + 8, 0),  # hovering over the pad
               (lat, lon, g, 0), (lat, lon, g, 0)]  # down at t0 + 135 s, holding
    events = fly(geo, pilot, snap_a["general"], t0, samples)
    kinds = [(t, parse_ts(ts)) for t, _, ts in events if t != "flight.created"]
    assert [k for k, _ in kinds] == ["flight.departed", "flight.arrived"]
    (_, off), (_, on) = kinds
    assert t0 + dt.timedelta(seconds=15) < off <= t0 + dt.timedelta(seconds=30)
    assert t0 + dt.timedelta(seconds=120) < on <= t0 + dt.timedelta(seconds=135)


def test_connects_and_disconnects_are_stamped_when_they_happened(geo, snap_a, snap_b) -> None:
    """A new pilot's flight.created carries its logon time; flight.deleted the time of the
    first snapshot that no longer held the flight, though sent only after the second miss."""
    det = Detector(geo, deleted_after=2)
    det.process(snap_a)
    second = det.process(snap_b)
    created = {d["callsign"]: ts for t, d, ts in second.events if t == "flight.created"}
    logons = {p["callsign"]: p["logon_time"] for p in snap_b["pilots"] if p["callsign"] in created}
    assert created and all(ts == format_ts(parse_ts(logons[c])) for c, ts in created.items())
    assert all(snapshot_time(snap_a) < parse_ts(ts) <= snapshot_time(snap_b)
               for ts in created.values())
    third = det.process(with_time(snap_b, snapshot_time(snap_b) + dt.timedelta(seconds=15)))
    (_, data, stamp), = [e for e in third.events if e[0] == "flight.deleted"]
    assert data["callsign"] == "JBU1421" and stamp == second.timestamp != third.timestamp


def test_departure_without_flight_plan_names_the_field(geo, snap_a) -> None:
    pilot = copy.deepcopy(next(p for p in snap_a["pilots"] if p["callsign"] == "N98SK"))
    assert pilot["flight_plan"] is None
    t0 = snapshot_time(snap_a)
    det = Detector(geo)
    det.process(with_time({"general": snap_a["general"], "pilots": [pilot]}, t0))
    pilot = dict(pilot, groundspeed=120, altitude=600)
    cycle = det.process(
        with_time({"general": snap_a["general"], "pilots": [pilot]}, t0 + dt.timedelta(seconds=15))
    )
    departed = by_type(cycle.events, "flight.departed")
    assert len(departed) == 1 and departed[0]["dep"] == "KJFK" and departed[0]["arr"] is None


def test_old_schema_and_null_flight_plans(geo, snap_old) -> None:
    assert "military_rating" not in snap_old["pilots"][0]
    cycle = Detector(geo).process(snap_old)
    assert cycle.skipped == 0
    created = by_type(cycle.events, "flight.created")
    assert len(created) == len(snap_old["pilots"]) == 1706
    null_plan = {p["callsign"] for p in snap_old["pilots"] if p["flight_plan"] is None}
    assert len(null_plan) == 105
    for data in created:
        if data["callsign"] in null_plan:
            assert data["dep"] is None and data["arr"] is None
            assert data["equipment"] is None and data["route"] is None
    assert sum(1 for d in created if d["current_artcc"]) > 1500


def test_malformed_pilots_are_skipped(geo, snap_a) -> None:
    good = copy.deepcopy(snap_a["pilots"][:5])
    bad: list[Any] = [
        "not a pilot",
        None,
        {"callsign": "NOCID"},
        dict(good[0], cid=None),
        dict(good[0], callsign="", cid=1),
        dict(good[0], latitude="north", cid=2),
        dict(good[0], latitude=95.0, cid=3),
        dict(good[0], altitude=float("nan"), cid=4),
        dict(good[0], groundspeed=True, cid=5),
        dict(good[0], altitude=2**70, cid=6),  # cannot be sent as a JSON number
        dict(good[0], cid=2**60),
        {k: v for k, v in good[0].items() if k != "logon_time"},
    ]
    odd = [
        dict(good[1], transponder=1200, cid=11),  # transponder as a number
        dict(good[2], flight_plan="garbage", cid=12),
        dict(good[3], cid="1234567", altitude="3500"),  # numbers as strings
        {k: v for k, v in good[4].items() if k not in ("heading", "flight_plan", "server")},
    ]
    snap = {"general": snap_a["general"], "pilots": bad + odd}
    cycle = Detector(geo).process(snap)
    assert cycle.skipped == len(bad)
    created = by_type(cycle.events, "flight.created")
    assert len(created) == len(odd)
    assert {d["cid"] for d in created} >= {11, 12, 1234567}
    assert next(d for d in created if d["cid"] == 12)["dep"] is None


def test_parse_snapshot_errors() -> None:
    with pytest.raises(FeedError, match="invalid JSON"):
        parse_snapshot(b'{"general": {')
    with pytest.raises(FeedError, match="not a JSON object"):
        parse_snapshot(b"[]")
    with pytest.raises(FeedError, match="general"):
        parse_snapshot(b'{"pilots": []}')
    with pytest.raises(FeedError, match="pilots"):
        parse_snapshot(b'{"general": {"update_timestamp": "2023-01-01T00:00:00Z"}}')
    with pytest.raises(FeedError, match="update_timestamp"):
        parse_snapshot(b'{"general": {}, "pilots": []}')
    legacy = parse_snapshot(b'{"general": {"update": "20230312172418"}, "pilots": []}')
    assert snapshot_time(legacy) == dt.datetime(2023, 3, 12, 17, 24, 18, tzinfo=dt.UTC)


def test_flight_uid_is_stable_and_js_safe() -> None:
    uid = flight_uid(1234567, "DAL1", "2023-08-07T22:42:12.1880217Z")
    assert uid == flight_uid(1234567, "DAL1", "2023-08-07T22:42:12.1880217Z")
    assert 0 <= uid < 2**53
    assert uid != flight_uid(1234567, "DAL1", "2023-08-07T22:42:13.1880217Z")


def test_reset_deletes_everyone(geo, snap_a) -> None:
    det = Detector(geo)
    det.process(snap_a)
    events = det.reset()
    assert len(events) == len(snap_a["pilots"])
    assert {t for t, _, _ in events} == {"flight.deleted"}
    assert len(det) == 0 and det.last_time is None
    assert len(by_type(det.process(snap_a).events, "flight.created")) == len(snap_a["pilots"])


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                               max_size=3),
    max_leaves=5,
)  # fmt: skip
_KEYS = ["cid", "callsign", "logon_time", "latitude", "longitude", "altitude", "groundspeed",
         "heading", "transponder", "flight_plan"]  # fmt: skip


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    mutations=st.lists(
        st.tuples(st.integers(0, 9), st.sampled_from(_KEYS), st.booleans(), _json_values),
        max_size=12,
    )
)
def test_detector_survives_mutated_pilots(geo, snap_a, mutations) -> None:
    base = [copy.deepcopy(p) for p in snap_a["pilots"][:10]]
    det = Detector(geo)
    det.process({"general": snap_a["general"], "pilots": base})
    pilots = copy.deepcopy(base)
    for idx, key, delete, value in mutations:
        if delete:
            pilots[idx].pop(key, None)
        else:
            pilots[idx][key] = value
    snap = with_time({"general": snap_a["general"], "pilots": pilots},
                     snapshot_time(snap_a) + dt.timedelta(seconds=15))  # fmt: skip
    cycle = det.process(snap)
    assert cycle.skipped <= len(pilots)
    orjson.dumps([e[1] for e in cycle.events])
    for pos in cycle.positions:
        assert type(pos["altitude_ft"]) is int and type(pos["vertical_rate_fpm"]) is int


# -- carrying the state to another hub (feed leadership) -----------------------------------------


def test_a_detector_restored_mid_run_emits_exactly_what_the_original_would(geo) -> None:
    """The hub taking over the feed starts from its predecessor's state: the events after the
    handover are the ones one detector would have produced without it (no re-created
    flights, departures spanning the handover detected once)."""
    from swimctl.core.sim import SimConfig, Simulator

    sim = Simulator(SimConfig(pilots=300, seed=5, start=dt.datetime(2026, 1, 1, 18, tzinfo=dt.UTC),
                              speed=20.0))
    bodies = [parse_snapshot(snap.body) for _ in range(40) for snap in sim.step()]
    original = Detector(geo)
    for body in bodies[:20]:
        original.process(body)
    held = [["flight.created", {"callsign": "TEST1"}, "2026-01-01T18:00:00Z", "feed:x:0"]]
    successor = Detector(geo)
    assert successor.load_state(original.export_state(held)) == held
    assert len(successor) == len(original)
    after_original = [original.process(body).events for body in bodies[20:]]
    after_successor = [successor.process(body).events for body in bodies[20:]]
    assert after_successor == after_original
    assert any(etype == "flight.departed" for cycle in after_original for etype, _, _ in cycle)


@pytest.mark.parametrize("state", [b"", b"not zlib", __import__("zlib").compress(b"[1, 2]"),
                                   __import__("zlib").compress(b'{"format": 99}'),
                                   __import__("zlib").compress(b'{"format": 1}')])
def test_unreadable_detector_state_is_refused_and_changes_nothing(geo, snap_a, state) -> None:
    from swimctl.core.detect import StateError

    det = Detector(geo)
    det.process(snap_a)
    before = len(det)
    with pytest.raises(StateError):
        det.load_state(state)
    assert len(det) == before
