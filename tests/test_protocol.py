"""Client actions parsed without sockets (PROTOCOL.md sections 2 and 6)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from swimctl.core import protocol as p
from swimctl.core.channels import DEFAULT_CHANNELS, pattern_matches


def parse(obj: object) -> p.Request:
    return p.parse_request(orjson.dumps(obj).decode())


def code_of(raw: str | bytes) -> str:
    with pytest.raises(p.ProtocolError) as info:
        p.parse_request(raw)
    return info.value.code


def test_subscribe_with_everything() -> None:
    req = parse({"action": "subscribe", "channels": ["flight.*", "tmi.issued"],
                 "filters": {"airports": ["KJFK"]}, "resume": {"epoch": "abc", "seq": 5},
                 "snapshot": True, "id": "r1"})
    assert isinstance(req, p.Subscribe)
    assert req.channels == ("flight.*", "tmi.issued")
    assert req.resume == ("abc", 5) and req.snapshot and req.request_id == "r1"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", p.INVALID_JSON),
        (b'{"action":"ping"}', p.INVALID_JSON),
        ("[1,2]", p.INVALID_JSON),
        ('{"action":"dance"}', p.UNKNOWN_ACTION),
        ('{"no_action":1}', p.UNKNOWN_ACTION),
        ('{"action":"subscribe"}', p.INVALID_SUBSCRIBE),
        ('{"action":"subscribe","channels":[]}', p.INVALID_SUBSCRIBE),
        ('{"action":"subscribe","channels":[1]}', p.INVALID_SUBSCRIBE),
        ('{"action":"subscribe","channels":["flight.nope"]}', p.INVALID_CHANNEL),
        ('{"action":"subscribe","channels":["weather.*"]}', p.INVALID_CHANNEL),
        ('{"action":"subscribe","channels":["flight.*"],"filters":{"x":1}}', p.INVALID_FILTER),
        ('{"action":"subscribe","channels":["*"],"resume":{"epoch":1,"seq":2}}',
         p.INVALID_SUBSCRIBE),
        ('{"action":"subscribe","channels":["*"],"snapshot":"yes"}', p.INVALID_SUBSCRIBE),
        ('{"action":"unsubscribe","channels":["nope"]}', p.INVALID_CHANNEL),
        ('{"action":"publish","channel":"flight.*","data":{}}', p.INVALID_PUBLISH),
        ('{"action":"publish","channel":"system.heartbeat","data":{}}', p.INVALID_PUBLISH),
        ('{"action":"publish","channel":"flight.departed","data":[]}', p.INVALID_PUBLISH),
        ('{"action":"publish","channel":"flight.departed","data":{},"event_id":5}',
         p.INVALID_PUBLISH),
    ],
)
def test_error_codes(raw: str | bytes, code: str) -> None:
    assert code_of(raw) == code


def test_request_id_is_echoed_on_errors() -> None:
    with pytest.raises(p.ProtocolError) as info:
        parse({"action": "subscribe", "channels": ["bad"], "id": 7})
    assert info.value.request_id == 7
    reply = orjson.loads(p.error_reply(info.value.code, info.value.message, 7))
    message = info.value.message
    assert reply == {"type": "error", "code": "INVALID_CHANNEL", "message": message,
                     "data": {"code": "INVALID_CHANNEL", "message": message}, "id": 7}


def test_patterns() -> None:
    assert pattern_matches("*", "flight.departed")
    assert pattern_matches("flight.*", "flight.departed")
    assert pattern_matches("ctp.*", "ctp.slot.assigned")
    assert not pattern_matches("flight.*", "tmi.issued")
    assert DEFAULT_CHANNELS.valid_pattern("ctp.anything.goes")
    assert not DEFAULT_CHANNELS.valid_pattern("flight.")


def test_the_upstream_channel_set() -> None:
    """Every pattern the PHP hub's subscribe accepts, and its simtraffic publishes."""
    upstream = ["flight.position", "flight.positions", "flight.departed", "flight.arrived",
                "flight.created", "flight.updated", "flight.deleted", "tmi.issued",
                "tmi.modified", "tmi.released", "ctp.slots.optimized", "ctp.session.updated",
                "ctp.edct.assigned", "cdm.updated", "cdm.edct", "cdm.ctot", "cdm.gs",
                "aman.sequence", "aman.updated", "tmi.*", "flight.*", "system.*", "ctp.*",
                "cdm.*", "aman.*", "system.heartbeat", "splits.*", "simtraffic.*",
                "simtraffic.lifecycle.*", "simtraffic.lifecycle.departed"]
    assert [c for c in upstream if not DEFAULT_CHANNELS.valid_pattern(c)] == []
    assert DEFAULT_CHANNELS.publish_error("simtraffic.lifecycle.departed") is None
    # the alias matches the batch type and nothing else; prefixes match below themselves
    assert pattern_matches("flight.position", "flight.positions")
    assert not pattern_matches("flight.position", "flight.departed")
    assert pattern_matches("simtraffic.lifecycle.*", "simtraffic.lifecycle.metering")
    assert not pattern_matches("simtraffic.lifecycle.*", "simtraffic.sessions.open")
    # a fixed family takes no sub-prefix pattern; a relayed one needs a well-formed prefix
    for bad in ("flight.positions.*", "simtraffic..*", "simtraffic.a b.*", "flight.positionz"):
        assert not DEFAULT_CHANNELS.valid_pattern(bad), bad
    assert DEFAULT_CHANNELS.publish_error("flight.position") is not None


def test_an_operator_adds_families_by_value() -> None:
    table = DEFAULT_CHANNELS.with_families(["vacc", "ctp"])
    assert table.valid_pattern("vacc.*") and table.publish_error("vacc.notice.posted") is None
    assert not DEFAULT_CHANNELS.valid_pattern("vacc.*")  # the default is untouched
    assert table.known == DEFAULT_CHANNELS.known
    for bad in ("Vacc", "v-acc", "", "x" * 33, "vacc.sub"):
        with pytest.raises(ValueError, match="lower-case"):
            DEFAULT_CHANNELS.with_families([bad])


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["action", "channels", "filters", "id", "data",
                                       "channel", "resume", "snapshot", "event_id",
                                       "airports", "bbox", "north"]) | st.text(max_size=5),
                      children, max_size=5),
    max_leaves=20,
))
def test_any_json_is_a_request_or_a_protocol_error(value: object) -> None:
    try:
        raw = orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        return
    try:
        p.parse_request(raw)
    except p.ProtocolError as exc:
        assert exc.code in {p.INVALID_JSON, p.UNKNOWN_ACTION, p.INVALID_SUBSCRIBE,
                            p.INVALID_CHANNEL, p.INVALID_FILTER, p.INVALID_PUBLISH}


def test_deep_nesting_is_invalid_json_not_a_crash() -> None:
    assert code_of("[" * 5000 + "]" * 5000) == p.INVALID_JSON


@pytest.mark.parametrize(
    "channel",
    ["ctp.a..b", "ctp.", "ctp.slot.", "ctp..slot", "ctp.sl\x00ot", "ctp.slot\x00", "ctp.a b",
     "ctp.slot\n", "ctp.é", "CTP.slot"],
)
def test_malformed_channel_names_are_refused_everywhere(channel: str) -> None:
    """Empty segments, NUL and other control characters are not channel names."""
    assert code_of(orjson.dumps({"action": "subscribe", "channels": [channel]}).decode()) \
        == p.INVALID_CHANNEL
    assert code_of(orjson.dumps({"action": "publish", "channel": channel, "data": {}}).decode()) \
        == p.INVALID_PUBLISH


def test_well_formed_relayed_names_still_pass() -> None:
    for name in ("ctp.slot.assigned", "splits.changed", "cdm.TOBT_update", "aman.seq-1"):
        assert DEFAULT_CHANNELS.valid_pattern(name)
        assert isinstance(parse({"action": "publish", "channel": name, "data": {}}), p.Publish)


@pytest.mark.parametrize("literal", ["123456789012345678901234567890", "9007199254740992",
                                     "-9007199254740992", "18446744073709551615", "1e300"])
def test_an_id_that_cannot_be_echoed_exactly_is_refused(literal: str) -> None:
    raw = '{"action": "ping", "id": ' + literal + "}"
    with pytest.raises(p.ProtocolError) as info:
        p.parse_request(raw)
    assert info.value.code == p.INVALID_JSON and info.value.request_id is p.MISSING
    assert p.request_id_of(raw) is p.MISSING  # the rate-limited path does not echo it either


@pytest.mark.parametrize("value", [9007199254740991, -9007199254740991, 0, 1.5, "x" * 40,
                                   "123456789012345678901234567890", True, None])
def test_ids_in_the_safe_range_come_back_unchanged(value: object) -> None:
    raw = orjson.dumps({"action": "ping", "id": value}).decode()
    req = p.parse_request(raw)
    assert req.request_id == value
    assert orjson.loads(p.pong_reply(req.request_id))["id"] == value
