"""Load-generator process: many WebSocket clients on raw non-blocking sockets and one epoll.

Minimal RFC 6455 client: handshake, masked client frames (zero mask key), unmasked server
frames. Every text frame is parsed as JSON (intact), events are checked for strictly growing
`seq` (in order), and the receive time minus the event's `t` is recorded (latency). A phase
ends for a connection when the `system.mark` event of that phase arrives (it travels behind
every frame of the phase on the same connection).
"""

from __future__ import annotations

import os
import resource
import select
import socket
import time
import zlib
from array import array
from multiprocessing.connection import Connection
from typing import Any

import orjson

WS_PATH = "/api/swim/v1/ws"
CHANNELS = ["flight.*", "system.*"]


def raise_nofile() -> None:
    """Lift the soft open-files limit to the hard one (10,000 sockets per benchmark side)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pin(cpus: set[int] | None) -> None:
    """Keep this process on `cpus`: the server gets a core of its own, the load generators
    the rest, so fan-out times measure the server rather than the scheduler."""
    if cpus:
        os.sched_setaffinity(0, cpus)


def client_frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client frame with a zero mask key (legal, and the payload needs no XOR)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 0xFE)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0xFF)) + n.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


class Conn:
    __slots__ = ("buf", "close_code", "filtered", "index", "inflater", "last_seq", "need",
                 "phase_seen", "sock", "state")

    def __init__(self, sock: socket.socket, index: int) -> None:
        self.sock = sock
        self.index = index
        self.buf = bytearray()
        self.state = "hs"  # hs → hello → sub → ready
        self.last_seq = 0
        self.need = 0
        self.phase_seen = -1
        self.close_code: int | None = None
        self.filtered = False
        # permessage-deflate: one inflater per connection, kept across messages, so a server
        # that keeps its context (websockets' default) decodes as well as one that does not
        self.inflater: Any = None


class LoadGen:
    def __init__(self, pipe: Connection, host: str, port: int, key: str,
                 deflate: bool = False) -> None:
        self.pipe = pipe
        self.deflate = deflate  # offer permessage-deflate, as websockets and browsers do
        self.host, self.port, self.key = host, port, key
        self.ep = select.epoll()
        self.conns: dict[int, Conn] = {}
        self.phase = -1
        self.done = 0
        self.reset_phase()

    def reset_phase(self) -> None:
        self.lat = array("d")
        self.deliveries = 0
        self.bytes = 0
        self.order_errors = 0
        self.parse_errors = 0
        self.unfiltered_counts: dict[int, int] = {}
        self.done = 0
        self.positions_bytes = 0  # wire bytes (header included) of flight.positions frames
        self.positions_deliveries = 0  # batches (or slices) whole, however many parts
        self.compressed_frames = 0

    # -- connecting --------------------------------------------------------------------------

    def request(self) -> bytes:
        return (f"GET {WS_PATH} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                f"X-SWIM-API-Key: {self.key}\r\n"
                + ("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                   if self.deflate else "")
                + "\r\n").encode()

    def connect(self, indices: list[int], window: int = 200, timeout: float = 120.0) -> int:
        """Open, upgrade and subscribe (unfiltered) every connection, `window` at a time."""
        todo = list(reversed(indices))
        pending = 0
        deadline = time.monotonic() + timeout
        req = self.request()
        while (todo or pending) and time.monotonic() < deadline:
            while todo and pending < window:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.settimeout(10)
                sock.connect((self.host, self.port))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(False)
                sock.send(req)
                conn = Conn(sock, todo.pop())
                self.conns[sock.fileno()] = conn
                self.ep.register(sock.fileno(), select.EPOLLIN)
                pending += 1
            before = self.ready_count()
            self.poll(0.05)
            pending -= self.ready_count() - before
        return self.ready_count()

    def ready_count(self) -> int:
        return sum(1 for c in self.conns.values() if c.state == "ready")

    def subscribe(self, filters: dict[int, dict[str, Any] | None], timeout: float = 60.0) -> int:
        """Re-subscribe each connection (same channels, new filters) and wait for replies."""
        for conn in self.conns.values():
            flt = filters.get(conn.index)
            conn.filtered = flt is not None
            body = {"action": "subscribe", "channels": CHANNELS, "filters": flt or {}}
            conn.state = "sub"
            conn.sock.send(client_frame(orjson.dumps(body)))
        deadline = time.monotonic() + timeout
        while self.ready_count() < len(self.conns) and time.monotonic() < deadline:
            self.poll(0.05)
        return self.ready_count()

    # -- receiving ---------------------------------------------------------------------------

    def poll(self, timeout: float) -> None:
        for fd, _ in self.ep.poll(timeout, 512):
            conn = self.conns.get(fd)
            if conn is None:
                continue
            try:
                data = conn.sock.recv(262144)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                self.ep.unregister(fd)
                conn.state = "eof"
                continue
            self.bytes += len(data)
            conn.buf += data
            if len(conn.buf) >= conn.need:
                self.parse(conn, time.time())

    def parse(self, conn: Conn, now: float) -> None:
        buf = conn.buf
        conn.need = 0
        if conn.state == "hs":
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                conn.state = "refused"
                return
            del buf[:end + 4]
            conn.state = "hello"
        off = 0
        size = len(buf)
        while size - off >= 2:
            b0, b1 = buf[off], buf[off + 1] & 0x7F
            hdr = 2
            if b1 == 126:
                if size - off < 4:
                    break
                b1 = int.from_bytes(buf[off + 2:off + 4], "big")
                hdr = 4
            elif b1 == 127:
                if size - off < 10:
                    break
                b1 = int.from_bytes(buf[off + 2:off + 10], "big")
                hdr = 10
            end = off + hdr + b1
            if end > size:
                conn.need = end - off
                break
            payload = bytes(buf[off + hdr:end])
            wire = end - off
            off = end
            opcode = b0 & 0x0F
            if b0 & 0x40 and opcode == 1:  # RSV1: a compressed message
                if conn.inflater is None:
                    conn.inflater = zlib.decompressobj(-15)
                payload = conn.inflater.decompress(payload + b"\x00\x00\xff\xff")
                self.compressed_frames += 1
            if not b0 & 0x80 or opcode not in (1, 8, 9, 10):
                self.parse_errors += 1
            elif opcode == 1:
                self.message(conn, payload, now, wire)
            elif opcode == 8:
                conn.close_code = int.from_bytes(payload[:2], "big") if payload else 1005
            elif opcode == 9:
                conn.sock.send(client_frame(payload, 10))
        else:
            conn.need = 0
        if off:
            del buf[:off]
            if size - off < 2:
                conn.need = 0

    def message(self, conn: Conn, payload: bytes, now: float, wire: int = 0) -> None:
        try:
            msg = orjson.loads(payload)
            etype = msg["type"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.parse_errors += 1
            return
        seq = msg.get("seq")
        if seq is not None:
            if seq <= conn.last_seq:
                self.order_errors += 1
            conn.last_seq = seq
        if etype == "system.mark":
            if msg["data"].get("phase") == self.phase and conn.phase_seen != self.phase:
                conn.phase_seen = self.phase
                self.done += 1
            return
        if "." in etype:
            data = msg.get("data")
            if etype == "system.heartbeat" or not isinstance(data, dict):
                return
            if etype == "flight.positions":
                self.positions_bytes += wire
                if data.get("part", 1) != data.get("parts", 1):
                    return  # a batch in parts (64 KiB frames): one delivery, on its last part
                self.positions_deliveries += 1
            self.deliveries += 1
            t = data.get("t")
            if t:
                self.lat.append(now - t)
            if not conn.filtered:
                self.unfiltered_counts[conn.index] = self.unfiltered_counts.get(conn.index, 0) + 1
            return
        if etype == "connected" and conn.state == "hello":
            conn.state = "sub"
            body = {"action": "subscribe", "channels": CHANNELS}
            conn.sock.send(client_frame(orjson.dumps(body)))
        elif etype == "subscribed" and conn.state == "sub":
            conn.state = "ready"
        elif etype == "error":
            self.parse_errors += 0  # refusals show up as connections never ready

    # -- the process -------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        counts = list(self.unfiltered_counts.values())
        unfiltered = sum(1 for c in self.conns.values() if not c.filtered)
        return {
            "deliveries": self.deliveries,
            "bytes": self.bytes,
            "positions_bytes": self.positions_bytes,
            "positions_deliveries": self.positions_deliveries,
            "compressed_frames": self.compressed_frames,
            "lat": self.lat.tobytes(),
            "order_errors": self.order_errors,
            "parse_errors": self.parse_errors,
            "unfiltered_conns": unfiltered,
            "unfiltered_min": min(counts) if len(counts) == unfiltered and counts else 0,
            "unfiltered_max": max(counts) if counts else 0,
            "closed": sum(1 for c in self.conns.values() if c.close_code is not None
                          or c.state == "eof"),
        }

    def run(self) -> None:
        self.ep.register(self.pipe.fileno(), select.EPOLLIN)
        while True:
            if self.pipe.poll():
                cmd, *args = self.pipe.recv()
                if cmd == "connect":
                    self.pipe.send(("connected", self.connect(args[0])))
                elif cmd == "subscribe":
                    self.pipe.send(("subscribed", self.subscribe(args[0])))
                elif cmd == "phase":
                    self.reset_phase()
                    self.phase = args[0]
                    self.pipe.send(("armed",))
                elif cmd == "stop":
                    for conn in self.conns.values():
                        conn.sock.close()
                    self.pipe.send(("stopped",))
                    return
            live = sum(1 for c in self.conns.values() if c.state == "ready")
            if self.phase >= 0 and self.done >= live:
                self.pipe.send(("report", self.report()))
                self.phase = -1
            self.poll(0.05)


def client_main(pipe: Connection, host: str, port: int, key: str,
                cpus: set[int] | None = None, deflate: bool = False) -> None:
    """Entry point of one load-generator process."""
    pin(cpus)
    raise_nofile()
    # The harness must not steal the server's CPU: on a 2-core box, clients at nice 10 make
    # fan-out wall times (and latency) reflect the server, not the scheduler.
    os.nice(10)
    LoadGen(pipe, host, port, key, deflate).run()
