"""The shared model: timestamps, envelopes and the cattrs converter, without I/O."""

from __future__ import annotations

import datetime as dt

import pytest

from swimctl.core.model import (
    Envelope,
    EnvelopeError,
    Position,
    TmiProgram,
    envelope_from_obj,
    format_ts,
    parse_ts,
    structure_or_none,
)

POSITION = {"callsign": "DAL1", "flight_uid": 7, "latitude": 40, "longitude": -73.5,
            "altitude_ft": 35000, "groundspeed_kts": 450, "heading_deg": 90,
            "vertical_rate_fpm": -500, "current_artcc": "ZNY", "dep": "KJFK", "arr": None,
            "extra": "ignored"}


def test_timestamps_have_milliseconds_and_z_and_parse_vatsim_precision() -> None:
    moment = dt.datetime(2026, 11, 26, 18, 30, 2, 512_345, tzinfo=dt.UTC)
    assert format_ts(moment) == "2026-11-26T18:30:02.512Z"
    assert parse_ts("2023-08-07T23:29:29.8856438Z") == dt.datetime(
        2023, 8, 7, 23, 29, 29, 885_643, tzinfo=dt.UTC)
    assert parse_ts("2026-11-26T18:30:00") == dt.datetime(2026, 11, 26, 18, 30, tzinfo=dt.UTC)


def test_envelope_wire_order_and_optional_keys() -> None:
    env = Envelope("flight.departed", "2026-11-26T18:30:02.512Z", {"a": 1}, 5, "e-5")
    assert list(env.to_dict()) == ["type", "timestamp", "seq", "event_id", "data"]
    assert Envelope("ctp.x", "t", {}).to_dict() == {"type": "ctp.x", "timestamp": "t",
                                                     "data": {}}


@pytest.mark.parametrize(
    "obj",
    [[], {"type": "weather.x", "timestamp": "2026-11-26T00:00:00Z", "data": {}},
     {"type": "flight.departed", "timestamp": "yesterday", "data": {}},
     {"type": "flight.departed", "timestamp": "2026-11-26T00:00:00Z", "data": []},
     {"type": "flight.departed", "timestamp": "2026-11-26T00:00:00Z", "data": {}, "seq": "1"}],
)
def test_bad_envelopes_are_refused(obj: object) -> None:
    with pytest.raises(EnvelopeError):
        envelope_from_obj(obj)


def test_payloads_structure_through_the_converter() -> None:
    pos = structure_or_none(POSITION, Position)
    assert pos is not None and pos.latitude == 40.0 and isinstance(pos.latitude, float)
    assert pos.arr is None and pos.current_artcc == "ZNY"
    assert structure_or_none({"callsign": "X"}, Position) is None
    assert structure_or_none({**POSITION, "flight_uid": "seven"}, Position) is None
    assert structure_or_none(["not", "a", "dict"], Position) is None


def test_tmi_program_wire_shape_round_trips() -> None:
    gs = TmiProgram("GS-KJFK-20261126-1", "GS", "KJFK", "2026-11-26T18:00:00.000Z",
                    "2026-11-26T19:00:00.000Z", "weather")
    assert gs.to_data() == {
        "program_id": "GS-KJFK-20261126-1", "program_type": "GS", "airport": "KJFK",
        "start_time": "2026-11-26T18:00:00.000Z", "end_time": "2026-11-26T19:00:00.000Z",
        "reason": "weather", "status": "ACTIVE"}
    gdp = TmiProgram("GDP-KSFO-20261126-1", "GDP", "KSFO", "a", "b", "low ceilings",
                     program_rate=30, avg_delay_min=45, max_delay_min=120, scope=["ZOA"])
    data = gdp.to_data()
    assert data["program_rate"] == 30 and data["scope"] == ["ZOA"]
    assert structure_or_none(data, TmiProgram) == gdp
