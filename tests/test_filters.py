"""Filters without sockets: every row of PROTOCOL.md section 5."""

from __future__ import annotations

import pytest

from swimctl.core.filters import FilterError, compile_filter, normalize_artcc

JFK_DEP = {"callsign": "DAL123", "dep": "KJFK", "arr": "KLAX", "current_artcc": "ZNY",
           "latitude": 40.6, "longitude": -73.8}


def test_airports_match_dep_or_arr_case_insensitively() -> None:
    f = compile_filter({"airports": ["kjfk"]})
    assert f.accepts("flight.departed", JFK_DEP)
    assert f.accepts("flight.arrived", {**JFK_DEP, "dep": "EGLL", "arr": "KJFK"})
    assert not f.accepts("flight.departed", {**JFK_DEP, "dep": "KBOS"})
    assert f.accepts("tmi.issued", {"airport": "KJFK"})
    assert not f.accepts("tmi.issued", {"airport": "KLAX"})


def test_artccs_and_firs_are_one_key_and_k_prefix_is_equivalent() -> None:
    assert normalize_artcc("KZNY") == "ZNY" and normalize_artcc("EGTT") == "EGTT"
    f = compile_filter({"artccs": ["KZNY"], "firs": ["EGTT"]})
    assert f.echo == {"artccs": ["EGTT", "ZNY"]}
    assert f.accepts("flight.created", JFK_DEP)
    assert f.accepts("flight.created", {**JFK_DEP, "current_artcc": "EGTT"})
    assert not f.accepts("flight.created", {**JFK_DEP, "current_artcc": "ZBW"})
    assert not f.accepts("flight.created", {**JFK_DEP, "current_artcc": None})


def test_tmi_matches_artcc_by_scope_or_airport_artcc() -> None:
    f = compile_filter({"artccs": ["ZNY"]}, airport_artcc={"KJFK": "ZNY"}.get)
    assert f.accepts("tmi.issued", {"airport": "KJFK"})
    assert not f.accepts("tmi.issued", {"airport": "KLAX"})
    assert f.accepts("tmi.issued", {"airport": "KLAX", "scope": ["KZNY"]})


def test_callsign_prefix() -> None:
    f = compile_filter({"callsign_prefix": ["DAL", "aal"]})
    assert f.accepts("flight.departed", JFK_DEP)
    assert f.accepts("flight.departed", {**JFK_DEP, "callsign": "AAL9"})
    assert not f.accepts("flight.departed", {**JFK_DEP, "callsign": "UAL1"})


def test_bbox_and_antimeridian() -> None:
    f = compile_filter({"bbox": {"north": 45, "south": 35, "east": -70, "west": -80}})
    assert f.accepts("flight.departed", JFK_DEP)
    assert not f.accepts("flight.departed", {**JFK_DEP, "longitude": 10.0})
    # deleted carries no coordinates: the box does not test it
    assert f.accepts("flight.deleted", {"callsign": "X", "dep": "A", "arr": "B"})
    pacific = compile_filter({"bbox": {"north": 60, "south": 0, "east": -150, "west": 150}})
    assert pacific.accepts_position({"latitude": 20.0, "longitude": 170.0})
    assert pacific.accepts_position({"latitude": 20.0, "longitude": -170.0})
    assert not pacific.accepts_position({"latitude": 20.0, "longitude": 0.0})


def test_keys_are_anded_values_ored() -> None:
    f = compile_filter({"airports": ["KJFK", "KBOS"], "callsign_prefix": ["DAL"]})
    assert f.accepts("flight.departed", JFK_DEP)
    assert not f.accepts("flight.departed", {**JFK_DEP, "callsign": "UAL1"})


def test_system_events_are_never_filtered() -> None:
    f = compile_filter({"airports": ["KJFK"]})
    assert f.accepts("system.heartbeat", {"connected_clients": 1})


def test_positions_are_sliced_one_by_one() -> None:
    f = compile_filter({"airports": ["KJFK"]})
    batch = [JFK_DEP, {**JFK_DEP, "callsign": "X", "dep": "EGLL", "arr": "LFPG"},
             {**JFK_DEP, "callsign": "Y", "dep": "KBOS", "arr": "KJFK"}]
    assert [p["callsign"] for p in f.slice_positions(batch)] == ["DAL123", "Y"]


def test_empty_lists_mean_no_filter_and_equal_filters_share_a_key() -> None:
    assert compile_filter({"airports": []}).empty
    a = compile_filter({"airports": ["KJFK", "KBOS"]})
    b = compile_filter({"airports": ["kbos", "kjfk"]})
    assert a.key == b.key and a == b


@pytest.mark.parametrize(
    "raw",
    [
        [],
        "KJFK",
        {"airport": ["KJFK"]},
        {"airports": "KJFK"},
        {"airports": [1]},
        {"airports": [""]},
        {"bbox": [1, 2, 3, 4]},
        {"bbox": {"north": 10, "south": 20, "east": 0, "west": 1}},
        {"bbox": {"north": 10, "south": 10, "east": 0, "west": 1}},
        {"bbox": {"north": 91, "south": 0, "east": 0, "west": 1}},
        {"bbox": {"north": 10, "south": 0, "east": 181, "west": 1}},
        {"bbox": {"north": 10, "south": 0, "east": 1}},
        {"bbox": {"north": "10", "south": 0, "east": 1, "west": 0}},
        {"bbox": {"north": True, "south": 0, "east": 1, "west": 0}},
    ],
)
def test_invalid_filters_are_refused(raw: object) -> None:
    with pytest.raises(FilterError):
        compile_filter(raw)


def test_artccs_and_firs_share_one_bound_of_1000() -> None:
    """`firs` is an alias of `artccs`: 1,000 of each must not merge to 2,000 values."""
    artccs = [f"A{i:03d}" for i in range(1000)]
    firs = [f"F{i:03d}" for i in range(1000)]
    with pytest.raises(FilterError, match="together"):
        compile_filter({"artccs": artccs, "firs": firs})
    assert len(compile_filter({"artccs": artccs, "firs": artccs[:10]}).artccs or ()) == 1000
