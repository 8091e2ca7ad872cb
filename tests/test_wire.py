"""RFC 6455 server side without sockets: the upgrade checks and the client-frame reader."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swimctl.wire.frames import close_frame
from swimctl.wire.websocket import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    FrameReader,
    Refusal,
    Upgrade,
    accept_token,
    check_upgrade,
)
from tests.rawws import client_frame

GOOD = [(b"Host", b"h"), (b"Upgrade", b"websocket"), (b"Connection", b"keep-alive, Upgrade"),
        (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="), (b"Sec-WebSocket-Version", b"13")]


def test_rfc_example_accept_token() -> None:
    assert accept_token("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_a_valid_upgrade_is_accepted() -> None:
    upgrade = check_upgrade(b"GET", b"/api/swim/v1/ws?x=1", b"1.1", GOOD)
    assert isinstance(upgrade, Upgrade) and upgrade.target == "/api/swim/v1/ws?x=1"


@pytest.mark.parametrize(("change", "status"), [
    ({"method": b"POST"}, 405),
    ({"version": b"1.0"}, 505),
    ({"drop": b"Upgrade"}, 426),
    ({"drop": b"Connection"}, 426),
    ({"set": (b"Sec-WebSocket-Version", b"8")}, 426),
    ({"drop": b"Sec-WebSocket-Version"}, 426),
    ({"set": (b"Sec-WebSocket-Key", b"short")}, 400),
    ({"set": (b"Sec-WebSocket-Key", b"!!!!")}, 400),
    ({"drop": b"Sec-WebSocket-Key"}, 400),
])
def test_bad_upgrades_are_refused_with_a_status(change: dict, status: int) -> None:
    headers = [h for h in GOOD if h[0] != change.get("drop")]
    if "set" in change:
        name, value = change["set"]
        headers = [h for h in headers if h[0] != name] + [(name, value)]
    refused = check_upgrade(change.get("method", b"GET"), b"/", change.get("version", b"1.1"),
                            headers)
    assert isinstance(refused, Refusal) and refused.status == status


def feed_all(data: bytes, limit: int = 1 << 20) -> list[tuple[int, object]]:
    return FrameReader(limit).feed(data)


def test_messages_pings_and_close() -> None:
    data = (client_frame(b'{"a":1}') + client_frame(b"hi", 9) + client_frame(b"\x00\x01", 2)
            + client_frame(b"", 10) + client_frame(b"\x03\xe8bye", 8))
    assert feed_all(data) == [(TEXT, '{"a":1}'), (PING, b"hi"), (BINARY, b"\x00\x01"),
                              (PONG, b""), (CLOSE, (1000, "bye"))]


def test_fragments_reassemble_around_a_control_frame() -> None:
    data = (client_frame(b'{"a":', fin=False) + client_frame(b"p", 9)
            + client_frame(b'"b', 0, fin=False) + client_frame(b'"}', 0))
    assert feed_all(data) == [(PING, b"p"), (TEXT, '{"a":"b"}')]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=40), max_size=30))
def test_any_split_of_the_bytes_gives_the_same_messages(cuts: list[int]) -> None:
    text = "é" * 300  # multi-byte characters split across reads
    data = (client_frame(text.encode(), fin=False) + client_frame(b"x", 9)
            + client_frame(b"", 0) + client_frame(b'"z"') + client_frame(os.urandom(200), 2))
    reader, got, pos = FrameReader(1 << 20), [], 0
    for cut in cuts:
        got += reader.feed(data[pos:pos + cut])
        pos += cut
    got += reader.feed(data[pos:])
    assert got == feed_all(data)
    assert [k for k, _ in got] == [PING, TEXT, TEXT, BINARY]


@pytest.mark.parametrize(("data", "code"), [
    (client_frame(b"x", masked=False), 1002),
    (client_frame(b"x", rsv=4), 1002),
    (client_frame(b"x", rsv=1), 1002),  # RSV1 without permessage-deflate
    (client_frame(b"x", 3), 1002),  # reserved data opcode
    (client_frame(b"x", 0xB), 1002),  # reserved control opcode
    (client_frame(b"x" * 126, 9), 1002),  # control frame over 125 bytes
    (client_frame(b"x", 9, fin=False), 1002),  # fragmented control frame
    (client_frame(b"x", 0), 1002),  # continuation with nothing to continue
    (client_frame(b"x", fin=False) + client_frame(b"y"), 1002),  # new message mid-message
    (client_frame(b"\xff\xfe"), 1007),  # invalid UTF-8
    (client_frame(b"\x03", 8), 1002),  # close with one byte
    (client_frame(b"\x03\xed", 8), 1002),  # close code 1005 may not be sent
    (client_frame(b"\x03\xe8\xff", 8), 1007),  # close reason not UTF-8
    (client_frame(b"", length=2000)[:8], 1009),  # refused from the header alone
])
def test_violations_carry_their_close_code(data: bytes, code: int) -> None:
    from swimctl.wire.websocket import Violation

    with pytest.raises(Violation) as info:
        feed_all(data, limit=1000)
    assert info.value.code == code


def test_close_frame_reason_is_cut_on_a_character_boundary() -> None:
    frame = close_frame(1001, "é" * 100)
    assert len(frame) <= 2 + 125 and frame[1] <= 125
    frame[4:].decode("utf-8")
