"""A scripted session with known counts, for the usage-history tests: which connections open,
what each receives, what is refused, and every byte the hub writes to each connection, counted
on the client's side of a plain socket."""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlsplit

import attrs
import orjson
import trio

from swimctl.core.usage import COUNTS, UsageRow
from tests.conftest import Harness

# What the session's hub needs: no heartbeats (they are not usage, but keep the bytes simple),
# a public cap of one connection, and a rate limit of 3 messages with no refill to speak of.
SESSION_CONFIG: dict[str, Any] = {
    "heartbeat_interval": 3600.0,
    "rate_per_second": 0.0001,
    "rate_burst": 3,
    "tier_caps": {"public": 1, "developer": 5, "partner": 5, "system": 10},
}


def masked(payload: bytes, opcode: int = 1) -> bytes:
    mask = os.urandom(4)
    head = bytes((0x80 | opcode, 0x80 | len(payload)))
    if len(payload) >= 126:
        head = bytes((0x80 | opcode, 0x80 | 126)) + len(payload).to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class CountingClient:
    """A WebSocket client that counts every byte it receives, the 101 included."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()
        self.received = 0
        self.events: list[dict[str, Any]] = []  # stream events (those with a seq)
        self.others: list[dict[str, Any]] = []  # replies, snapshots, errors

    @classmethod
    async def connect(cls, url: str, key: str, rcvbuf: int | None = None) -> CountingClient:
        parts = urlsplit(url)
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the window is small from the start
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        await sock.connect((parts.hostname, parts.port))
        self = cls(trio.SocketStream(sock))
        await self.stream.send_all(
            f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nX-SWIM-API-Key: {key}\r\n\r\n".encode())
        while b"\r\n\r\n" not in self.buf:
            await self._more()
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        self.buf = bytearray(rest)
        return self

    async def _more(self) -> bool:
        data = await self.stream.receive_some(65536)
        self.received += len(data)
        self.buf += data
        return bool(data)

    async def send(self, body: dict[str, Any]) -> None:
        await self.stream.send_all(masked(orjson.dumps(body)))

    async def frame(self) -> tuple[int, bytes]:
        while True:
            if len(self.buf) >= 2:
                n, hdr = self.buf[1] & 0x7F, 2
                if n == 126 and len(self.buf) >= 4:
                    n, hdr = int.from_bytes(self.buf[2:4], "big"), 4
                elif n == 127 and len(self.buf) >= 10:
                    n, hdr = int.from_bytes(self.buf[2:10], "big"), 10
                if (n < 126 or hdr > 2) and len(self.buf) >= hdr + n:
                    opcode = self.buf[0] & 0x0F
                    payload = bytes(self.buf[hdr:hdr + n])
                    del self.buf[:hdr + n]
                    return opcode, payload
            if not await self._more():
                raise EOFError

    async def message(self) -> dict[str, Any]:
        """The next text message, filed as an event or not."""
        opcode, payload = await self.frame()
        assert opcode == 1, (opcode, payload)
        msg: dict[str, Any] = orjson.loads(payload)
        (self.events if "seq" in msg and "." in msg["type"] else self.others).append(msg)
        return msg

    async def until(self, events: int = 0, others: int = 0, timeout: float = 5.0) -> None:
        with trio.fail_after(timeout):
            while len(self.events) < events or len(self.others) < others:
                await self.message()

    async def finish(self, timeout: float = 10.0) -> None:
        """Read until the hub's close frame, answer it, then read to the end of TCP."""
        with trio.fail_after(timeout):
            while True:
                try:
                    opcode, payload = await self.frame()
                except EOFError:
                    break
                if opcode == 8:
                    await self.stream.send_all(masked(payload[:2], 8))
                    while await self._more():
                        pass
                    break
        await self.stream.aclose()


@attrs.define
class Session:
    """What the session did, per tier, as usage rows should add up (day left out)."""

    expected: dict[str, dict[str, int]]
    elapsed: float  # seconds from before the first connection to after the last close

    def check(self, h: Harness, rows: list[UsageRow]) -> None:
        """The rows (any days) add up to exactly what was done, per key."""
        by_key: dict[int, dict[str, int]] = {}
        for row in rows:
            totals = by_key.setdefault(row.key_id, dict.fromkeys(COUNTS, 0))
            for name, value in zip(COUNTS, row.counts(), strict=True):
                totals[name] += value
        seconds = {k: v.pop("connection_seconds") for k, v in by_key.items()}
        want = {h.key_ids[tier]: {n: counts.get(n, 0) for n in COUNTS
                                  if n != "connection_seconds"}
                for tier, counts in self.expected.items()}
        assert by_key == want, (by_key, want)
        for key_id, spent in seconds.items():
            assert 0 <= spent <= self.elapsed * want[key_id]["connections"] + 1, (key_id, spent)


async def scripted_session(h: Harness) -> Session:
    """Run the session against a hub started with SESSION_CONFIG; the caller stops the hub
    (which makes the clients finish) and then checks the rows."""
    started = trio.current_time()
    # A revoked key, twice (the second answer comes from the key cache): two auth refusals.
    await trio.to_thread.run_sync(h.store.revoke, h.key_ids["partner"])
    for _ in range(2):
        refused = await CountingClient.connect(h.url, h.keys["partner"])
        assert (await refused.message())["code"] == "AUTH_FAILED"
        await refused.finish()

    # Two developer connections: one unfiltered (fast path), one filtered with a snapshot.
    fast = await CountingClient.connect(h.url, h.keys["developer"])
    slow = await CountingClient.connect(h.url, h.keys["developer"])
    await fast.until(others=1)  # connected
    await slow.until(others=1)
    await fast.send({"action": "subscribe", "channels": ["ctp.*"]})
    await slow.send({"action": "subscribe", "channels": ["flight.*", "tmi.*"],
                     "filters": {"airports": ["KJFK"]}, "snapshot": True})
    await fast.until(others=2)
    await slow.until(others=3)  # subscribed, then the tmi.active snapshot: not an event
    for i in range(5):
        await h.hub.publish("ctp.slot", {"i": i})
    for dep in ("KJFK", "EGLL", "KJFK", "EGLL", "KJFK"):
        await h.hub.publish("flight.departed", {"callsign": f"X{dep}", "dep": dep,
                                                "arr": "KBOS"})
    await fast.send({"action": "status"})
    await fast.send({"action": "ping"})
    await fast.until(events=5, others=4)
    await slow.until(events=3)

    # Public: one connection at the cap, a second refused; five pings against a burst of 3.
    public = await CountingClient.connect(h.url, h.keys["public"])
    await public.until(others=1)
    over = await CountingClient.connect(h.url, h.keys["public"])
    assert (await over.message())["code"] == "CONNECTION_LIMIT"
    await over.finish()
    for _ in range(5):
        await public.send({"action": "ping"})
    await public.until(others=6)
    codes = [m.get("code", m["type"]) for m in public.others[1:]]
    assert sorted(codes) == ["RATE_LIMITED"] * 2 + ["pong"] * 3, codes

    async with trio.open_nursery() as nursery:
        for client in (fast, slow, public):
            nursery.start_soon(client.finish)
        await h.handle.shutdown()
    elapsed = trio.current_time() - started
    return Session({
        "developer": {"connections": 2, "events_delivered": 8,
                      "bytes_sent": fast.received + slow.received},
        "public": {"connections": 1, "bytes_sent": public.received, "refusals_cap": 1,
                   "refusals_rate": 2},
        "partner": {"refusals_auth": 2},
    }, elapsed)
