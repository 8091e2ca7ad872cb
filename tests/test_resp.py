"""The lean RESP2 connection of the shared log: the parser without sockets, then a real
redis-server, including one restarted under an open connection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from swimctl.stream.resp import (
    _MISSING,
    RespConnection,
    RespError,
    RespParser,
    RespPool,
    RespProtocolError,
    encode_command,
)
from tests.redis_server import RedisServer


def test_commands_encode_as_bulk_string_arrays() -> None:
    assert encode_command(("GET", b"k", 12)) == b"*3\r\n$3\r\nGET\r\n$1\r\nk\r\n$2\r\n12\r\n"


def test_replies_parse_whole_or_not_at_all() -> None:
    wire = (b"+OK\r\n-NOSCRIPT No matching script\r\n:42\r\n$-1\r\n*-1\r\n$5\r\nhe\r\nl\r\n"
            b"*2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\np\r\n$2\r\n{}\r\n:7\r\n")
    parser = RespParser()
    replies = []
    for byte in wire:  # a byte at a time: every split point
        parser.feed(bytes([byte]))
        while (reply := parser.reply()) is not _MISSING:
            replies.append(reply)
    error = replies[1]
    assert isinstance(error, RespError) and str(error).startswith("NOSCRIPT")
    assert [r for i, r in enumerate(replies) if i != 1] == [
        "OK", 42, None, None, b"he\r\nl", [[b"1-0", [b"p", b"{}"]], 7]]
    parser.feed(b"?what\r\n")
    with pytest.raises(RespProtocolError):
        parser.reply()


async def test_a_real_redis_and_one_restarted_under_the_connection(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        conn = RespConnection(redis.url)
        assert await conn.call("SET", "k", b"v\x00") == "OK"
        assert await conn.call("GET", "k") == b"v\x00"
        with pytest.raises(RespError, match="WRONGTYPE"):
            await conn.call("LPUSH", "k", "x")
        redis.restart()  # the open connection is now closed at the far end
        assert await conn.call("PING") == "PONG"  # replaced once, transparently
        redis.stop()
        with pytest.raises(OSError):
            await conn.call("PING")
        await conn.aclose()
    finally:
        redis.stop()


async def test_a_pool_runs_commands_side_by_side(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        pool = RespPool(redis.url, size=4)
        results: list[Any] = []

        async def blocked(n: int) -> None:  # each holds its connection for 0.3 s
            results.append(await pool.call("BLPOP", f"none-{n}", "0.3"))

        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for n in range(4):
                nursery.start_soon(blocked, n)
        assert results == [None] * 4
        assert trio.current_time() - started < 1.0  # together, not 4 × 0.3 s in a row
        assert await pool.call("INCR", "n") == 1
        await pool.aclose()
    finally:
        redis.stop()
