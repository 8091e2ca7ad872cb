"""The services a CI run provides are there: scripts/test.sh starts Redis when none answers on
127.0.0.1:6379 (the multi-hub work builds on it). With CI set this must pass, never skip."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import IN_CI


def redis_ping(host: str = "127.0.0.1", port: int = 6379) -> bytes:
    with socket.create_connection((host, port), timeout=3) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64)


def test_redis_answers_on_loopback() -> None:
    try:
        reply = redis_ping()
    except OSError as exc:
        if IN_CI:
            pytest.fail(f"no Redis on 127.0.0.1:6379 under CI ({exc}): scripts/test.sh starts one")
        pytest.skip(f"no Redis on 127.0.0.1:6379 ({exc}); scripts/test.sh starts one")
    assert reply.startswith(b"+PONG"), reply
