"""Every attack of issue 19, replayed against a live hub, and what each cost.

Starts `swimctl serve` subprocesses on 127.0.0.1 from this checkout (a main hub, plus a hub of
its own for each attack that needs another configuration: a tiny disk, a low open-files
limit, a restart), each with a fresh SQLite key store and state directory. For each attack it
samples the attacked hub's RSS and open descriptors (before, peak during, after a 2 s settle)
while a separate process connects a valid client every 100 ms (connect p50/p95 from the TCP
connect to the `connected` message), then judges the outcome. Prints one table row per attack.

Every attack is bounded in count and in time (the machine has 2 shared cores), and all
traffic goes to 127.0.0.1 (half-sent handshakes come from 127.0.0.2 and up, the valid probes
from 127.0.0.1).

    python bench/abuse.py                 # all 13
    python bench/abuse.py --only 1,4,11   # some
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import multiprocessing as mp
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from swimctl.keys import KeyStore

WS_PATH = "/api/swim/v1/ws"
SWIMCTL = [sys.executable, "-m", "swimctl"]
ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Hub:
    """One `swimctl serve` with its own keys (one per tier), state directory and log."""

    def __init__(self, work: Path, name: str, *args: str,
                 preexec: Callable[[], None] | None = None, port: int | None = None,
                 state: bool = True) -> None:
        self.dir = work / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = f"sqlite:///{self.dir}/keys.db"
        store = KeyStore(self.db)
        store.init_db()
        self.keys: dict[str, str] = {}
        self.ids: dict[str, int] = {}
        for tier in ("developer", "partner", "system"):
            self.keys[tier], record = store.create(tier, "abuse bench")
            self.ids[tier] = record.id
        store.close()
        self.port = port or free_port()
        self.metrics_port = free_port()
        self.args = ["--port", str(self.port), "--metrics-port", str(self.metrics_port),
                     "--state-dir", str(self.dir / "state") if state else "none", *args]
        self.preexec = preexec
        self.log = self.dir / "hub.log"
        self.url = f"ws://127.0.0.1:{self.port}{WS_PATH}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Hub:
        env = {**os.environ, "SWIM_DB": self.db, "PYTHONPATH": str(ROOT)}
        with self.log.open("a") as log_file:
            self.proc = subprocess.Popen([*SWIMCTL, "serve", *self.args], env=env,
                                         stderr=log_file, stdout=subprocess.DEVNULL,
                                         preexec_fn=self.preexec)
        self.starts += 1
        deadline = time.monotonic() + 30
        while self.log.read_text().count("listening on") < self.starts:
            assert self.proc.poll() is None and time.monotonic() < deadline, \
                self.log.read_text()[-2000:]
            time.sleep(0.05)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def metric(self, name: str, labels: str = "") -> float:
        text = self.get("/metrics")[1]
        match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
        return float(match.group(1)) if match else float("nan")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}",
                                        timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


def usage(pid: int) -> tuple[int, int]:
    """(RSS bytes, open descriptors) of a process; (0, 0) once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) * 1024  # type: ignore[union-attr]
        return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, AttributeError):
        return 0, 0


class Sampler(threading.Thread):
    """Peak RSS and descriptors of `hub` (whatever process it runs now), every 20 ms."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(daemon=True)
        self.hub = hub
        self.peak_rss = self.peak_fds = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            rss, fds = usage(self.hub.pid)
            self.peak_rss, self.peak_fds = max(self.peak_rss, rss), max(self.peak_fds, fds)
            time.sleep(0.02)


def probe(url: str, key: str, stop: Any, out: Any) -> None:
    """The valid client (its own process): connect, wait for `connected`, close; every 100 ms."""

    async def main() -> tuple[list[float], int]:
        times: list[float] = []
        failed = 0
        while not stop.is_set():
            start = time.perf_counter()
            try:
                with trio.fail_after(10):
                    async with open_websocket_url(
                            url, extra_headers=[(b"X-SWIM-API-Key", key.encode())]) as ws:
                        hello = orjson.loads(await ws.get_message())
                        if hello.get("type") != "connected":
                            raise ValueError(hello)
                        times.append(time.perf_counter() - start)
            except Exception:
                failed += 1
            await trio.sleep(0.1)
        return times, failed

    out.put(trio.run(main))


ROWS: list[list[str]] = []


@contextlib.contextmanager
def measured(number: int, name: str, params: str, hub: Hub,
             probes: bool = True) -> Iterator[dict[str, Any]]:
    """Measure `hub` around the block; the block sets result["ok"] and result["detail"]."""
    result: dict[str, Any] = {"ok": False, "detail": ""}
    rss0, fds0 = usage(hub.pid)
    sampler = Sampler(hub)
    sampler.start()
    stop, out = mp.Event(), mp.Queue()
    prober = mp.Process(target=probe, args=(hub.url, hub.keys["partner"], stop, out))
    if probes:
        prober.start()
    started = time.monotonic()
    try:
        yield result
    except Exception as exc:  # a broken attack is a row, not the end of the run
        while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        result["detail"] = f"bench error: {type(exc).__name__}: {exc}"[:160]
        result["ok"] = False
    took = time.monotonic() - started
    times: list[float] = []
    failed = 0
    if probes:
        stop.set()
        times, failed = out.get(timeout=30)
        prober.join(10)
    time.sleep(2)
    rss2, fds2 = usage(hub.pid) if hub.alive() else (0, 0)
    sampler.done.set()
    sampler.join()
    ms = sorted(t * 1000 for t in times)
    p50 = f"{statistics.median(ms):.1f}" if ms else "-"
    p95 = f"{ms[min(len(ms) - 1, int(len(ms) * 0.95))]:.1f}" if ms else "-"
    detail = result["detail"] + (f"; {failed} probe(s) failed" if failed else "")
    ROWS.append([f"{number}. {name}", params,
                 f"{rss0 / MIB:.0f} / {sampler.peak_rss / MIB:.0f} / {rss2 / MIB:.0f}",
                 f"{fds0} / {sampler.peak_fds} / {fds2}", f"{p50} / {p95}",
                 ("ok: " if result["ok"] else "FAIL: ") + detail + f" ({took:.0f} s)"])
    print(" | ".join(ROWS[-1]), flush=True)


# -- client helpers ----------------------------------------------------------------------------


def upgrade(port: int, key: str) -> bytes:
    return (f"GET {WS_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            f"X-SWIM-API-Key: {key}\r\n\r\n").encode()


def frame(payload: bytes, opcode: int = 1) -> bytes:
    n = len(payload)
    head = bytes((0x80 | opcode,))
    if n < 126:
        head += bytes((0x80 | n,))
    elif n < 65536:
        head += bytes((0x80 | 126,)) + n.to_bytes(2, "big")
    else:
        head += bytes((0x80 | 127,)) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload  # a zero mask: the payload goes as it is


async def raw_client(hub: Hub, tier: str = "developer", source: str | None = None,
                     rcvbuf: int | None = None) -> trio.SocketStream:
    """A WebSocket client on a plain socket, past its 101 (what follows is left unread)."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if source:
        await sock.bind((source, 0))
    await sock.connect(("127.0.0.1", hub.port))
    stream = trio.SocketStream(sock)
    await stream.send_all(upgrade(hub.port, hub.keys[tier]))
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        got += chunk
    return stream


async def publisher(hub: Hub, count: int, make: Callable[[int], dict[str, Any]],
                    seconds: float) -> int:
    """Publish `count` events (system key) within `seconds`; returns how many were acked."""
    acked = 0
    with trio.move_on_after(seconds):
        async with open_websocket_url(hub.url, extra_headers=[
                (b"X-SWIM-API-Key", hub.keys["system"].encode())], max_message_size=1 << 22) \
                as ws:
            await ws.get_message()
            window = 64
            sent = 0
            while acked < count:
                while sent < count and sent - acked < window:
                    await ws.send_message(orjson.dumps({"action": "publish",
                                                        **make(sent)}).decode())
                    sent += 1
                msg = orjson.loads(await ws.get_message())
                if msg.get("type") in ("publish_ack", "error"):
                    acked += 1
    return acked


# -- the attacks -------------------------------------------------------------------------------

BIG_FILTER = {  # about 52 KB of filter, within the 64 KiB message bound
    "airports": [f"A{i:019d}" for i in range(1000)],
    "artccs": [f"Z{i:019d}" for i in range(1000)],
    "callsign_prefix": [f"C{i:019d}" for i in range(400)],
}


def attack_1(hub: Hub) -> None:
    params = ("50 conns of one key: 2 subscribes (64 patterns, 52 KB filter), 8 unread status, "
              "38 more subscribes")
    with measured(1, "status/subscription bomb", params, hub) as result:
        answers: list[str] = []
        sizes: list[int] = []
        closes: list[int] = []

        def subscribe(n: int) -> bytes:
            return orjson.dumps({"action": "subscribe", "filters": BIG_FILTER,
                                 "channels": [f"ctp.p{n}x{i}" for i in range(64)]})

        async def hostile() -> None:  # never reads
            stream = await raw_client(hub, rcvbuf=8192)
            messages = [subscribe(0), subscribe(1), *[b'{"action":"status"}'] * 8,
                        *[subscribe(n) for n in range(2, 40)]]
            with contextlib.suppress(trio.BrokenResourceError):
                for message in messages:
                    await stream.send_all(frame(message))
                    await trio.sleep(0.11)  # within 10/s
            await trio.sleep(3)
            await stream.aclose()

        async def reader() -> None:  # the same requests, answers read
            async with open_websocket_url(hub.url, extra_headers=[
                    (b"X-SWIM-API-Key", hub.keys["developer"].encode())],
                    max_message_size=1 << 28) as ws:
                await ws.get_message()
                try:
                    for n in range(40):
                        await ws.send_message(subscribe(n).decode())
                        answer = orjson.loads(await ws.get_message())
                        answers.append(answer.get("code") or answer["type"])
                        if n == 1:
                            for _ in range(8):
                                await ws.send_message('{"action":"status"}')
                                sizes.append(len(await ws.get_message()))
                        await trio.sleep(0.11)
                except ConnectionClosed as exc:
                    closes.append(exc.reason.code)

        async def main() -> None:
            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(reader)
                    for _ in range(49):  # the developer cap is 50
                        nursery.start_soon(hostile)

        trio.run(main)
        subscribed = answers.count("subscribed")
        result["ok"] = hub.alive() and max(sizes) < 64 * 1024 and closes == [4003]
        result["detail"] = (f"{subscribed} subscribes applied (128 patterns), "
                            f"{len(answers) - subscribed} refused "
                            f"({', '.join(sorted(set(answers) - {'subscribed'}))}), then close "
                            f"{closes}; status ≤ {max(sizes) / 1024:.0f} KiB")


def attack_2(work: Path) -> None:
    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (512 * 1024, 512 * 1024))

    hub = Hub(work, "disk", "--record", str(work / "disk" / "rec"), preexec=small_disk,
              state=False).start()
    try:
        with measured(2, "full disk under --record", "files capped at 512 KiB "
                      "(RLIMIT_FSIZE); 5,000 events of 1 KB random", hub) as result:
            acked = trio.run(publisher, hub, 5000, lambda i: {
                "channel": "ctp.fill", "data": {"i": i, "pad": secrets.token_hex(512)}}, 60.0)
            time.sleep(6)  # a retry interval
            status, body = hub.get("/healthz")
            failures = hub.metric("swim_component_failures_total", '{component="recorder"}')
            first = body.splitlines()[0] if body else ""
            result["ok"] = hub.alive() and acked == 5000 and "recorder" in body
            result["detail"] = (f"{acked} published; hub alive; /healthz {status} {first}; "
                                f"recorder write failures {failures:.0f}")
    finally:
        hub.stop()


def attack_3(work: Path) -> None:
    events = work / "offset" / "events.jsonl"
    events.parent.mkdir(parents=True, exist_ok=True)
    events.touch()
    (events.parent / "events.jsonl.offset").mkdir()
    hub = Hub(work, "offset", "--events-file", str(events)).start()
    try:
        with measured(3, "unwritable events-file offset", "offset path is a directory; "
                      "1,000 lines", hub) as result:
            got: list[int] = []

            async def main() -> None:
                async with open_websocket_url(hub.url, extra_headers=[
                        (b"X-SWIM-API-Key", hub.keys["developer"].encode())]) as ws:
                    await ws.get_message()
                    await ws.send_message('{"action":"subscribe","channels":["ctp.*"]}')
                    await ws.get_message()
                    with events.open("ab") as out:
                        for i in range(1000):
                            out.write(orjson.dumps({"type": "ctp.line", "timestamp":
                                                   "2026-11-26T18:00:00Z", "data": {"i": i}})
                                      + b"\n")
                    with trio.move_on_after(30):
                        while len(got) < 1000:
                            msg = orjson.loads(await ws.get_message())
                            if msg["type"] == "ctp.line":
                                got.append(msg["data"]["i"])

            trio.run(main)
            status, body = hub.get("/healthz")
            result["ok"] = hub.alive() and got == list(range(1000)) and "offset" in body
            result["detail"] = (f"{len(got)}/1000 delivered in order; hub alive; /healthz "
                                f"{status} degraded: events file offset")
    finally:
        hub.stop()


def attack_4(hub: Hub) -> None:
    with measured(4, "ping flood", "1,000,000 pings, pongs never read", hub) as result:
        before = hub.metric("swim_violation_closes_total")

        async def main() -> int:
            stream = await raw_client(hub, rcvbuf=8192)
            batch = frame(b"", 9) * 10_000
            sent = 0
            with trio.move_on_after(60):
                try:
                    for _ in range(100):
                        await stream.send_all(batch)
                        sent += 10_000
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            await stream.aclose()
            return sent

        sent = trio.run(main)
        closes = hub.metric("swim_violation_closes_total") - before
        result["ok"] = hub.alive() and closes == 1
        result["detail"] = (f"closed 4003 after the 20-ping bucket and 20 RATE_LIMITED "
                            f"({closes:.0f}); {sent:,} pings sent before the hub hung up")


def attack_5(work: Path) -> None:
    from swimctl import client as swim

    events = work / "restart" / "events.jsonl"
    events.parent.mkdir(parents=True, exist_ok=True)
    events.touch()
    hub = Hub(work, "restart", "--events-file", str(events), "--heartbeat", "1").start()
    count, rate, down = 1000, 200.0, 1.0
    try:
        with measured(5, "kill -9 and restart", f"{count} events at {rate:.0f}/s, kill -9 at "
                      f"{count // 2}, down {down:.0f} s", hub) as result:
            got: list[int] = []
            recovered: list[bool] = []

            async def main() -> None:
                async def feed() -> None:
                    start = trio.current_time()
                    with events.open("ab") as out:
                        for i in range(count):
                            await trio.sleep_until(start + i / rate)
                            out.write(orjson.dumps({"type": "ctp.slot", "timestamp":
                                                   "2026-11-26T18:00:00Z", "event_id":
                                                   f"s-{i}", "data": {"i": i}}) + b"\n")
                            out.flush()

                with trio.fail_after(60):
                    async with trio.open_nursery() as nursery, swim.connect(
                            hub.url, hub.keys["developer"], backoff_initial=0.2,
                            backoff_max=0.5) as client:
                        await client.subscribe(["ctp.*"])
                        nursery.start_soon(feed)
                        async for item in client:
                            if isinstance(item, swim.Resumed):
                                recovered.append(item.recovered)
                            if isinstance(item, swim.Event) and not item.is_heartbeat:
                                got.append(item.data["i"])
                                if len(got) == count // 2:
                                    hub.kill9()
                                    await trio.sleep(down)
                                    await trio.to_thread.run_sync(hub.start)
                                if len(got) >= count:
                                    break
                        nursery.cancel_scope.cancel()

            trio.run(main)
            lost = count - len(set(got))
            repeated = len(got) - len(set(got))
            result["ok"] = lost == 0 and repeated == 0 and all(recovered) and bool(recovered)
            result["detail"] = (f"{lost} lost, {repeated} repeated, resumed recovered="
                                f"{recovered}")
    finally:
        hub.stop()


def attack_6(work: Path) -> None:
    rec = work / "crash" / "rec"
    hub = Hub(work, "crash", "--record", str(rec)).start()
    try:
        with measured(6, "recorder and kill -9", "2,000 events, kill -9 while recording, "
                      "restart, 500 more", hub) as result:
            trio.run(publisher, hub, 2000, lambda i: {"channel": "ctp.rec",
                                                     "data": {"i": i}}, 30.0)
            hub.kill9()
            hub.start()
            trio.run(publisher, hub, 500, lambda i: {"channel": "ctp.rec",
                                                    "data": {"i": 2000 + i}}, 30.0)
            time.sleep(1)
            hub.stop()
            files = sorted(rec.glob("*.jsonl.gz"))
            tested = [subprocess.run(["gzip", "-t", str(f)], capture_output=True).returncode
                      for f in files]
            lines = sum(len(gzip.decompress(f.read_bytes()).splitlines()) for f in files)
            result["ok"] = bool(files) and not any(tested)
            result["detail"] = (f"{len(files)} file(s), gzip -t ok on all: {not any(tested)}; "
                                f"{lines} of 2,500 lines readable (what was buffered, at most "
                                "0.25 s, went with the kill)")
            hub.start()
    finally:
        hub.stop()


def attack_7(hub: Hub) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from auth_flood import flood  # the flooder of bench/auth_flood.py

    for kind in ("malformed", "well-formed unknown"):
        with measured(7, f"bad-key flood: {kind}", "5,000 handshakes, 50 at a time", hub) \
                as result:
            done: mp.Queue = mp.Queue()  # type: ignore[type-arg]
            flooder = mp.Process(target=flood, args=(hub.port, kind, 5000, 50, done))
            flooder.start()
            flooder.join(120)
            seconds = done.get(timeout=5)
            lookups = hub.metric("swim_auth_lookups_total")
            result["ok"] = hub.alive()
            result["detail"] = (f"flood took {seconds:.1f} s; key-store lookups so far "
                                f"{lookups:.0f}")
        time.sleep(6)  # the throttle and negative cache lapse


def attack_8(hub: Hub) -> None:
    with measured(8, "half-sent handshakes", "2,000 conns from 127.0.0.2, request head "
                  "never finished", hub) as result:
        closed_at_once = 0
        held = 0

        async def one() -> None:
            nonlocal closed_at_once, held
            sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                await sock.bind(("127.0.0.2", 0))
                await sock.connect(("127.0.0.1", hub.port))
                stream = trio.SocketStream(sock)
                await stream.send_all(b"GET " + WS_PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n")
                started = trio.current_time()
                with trio.move_on_after(15):
                    with contextlib.suppress(trio.BrokenResourceError):
                        await stream.receive_some(1024)
                if trio.current_time() - started < 0.5:
                    closed_at_once += 1
                else:
                    held += 1
                await stream.aclose()
            except OSError:
                closed_at_once += 1

        async def main() -> None:
            with trio.fail_after(120):
                async with trio.open_nursery() as nursery:
                    for _ in range(2000):
                        nursery.start_soon(one)
                        await trio.sleep(0.002)

        trio.run(main)
        cap = hub.metric("swim_handshakes_dropped_total", '{reason="per-address cap"}')
        timeout = hub.metric("swim_handshakes_dropped_total", '{reason="timeout"}')
        result["ok"] = hub.alive() and held <= 64 * 3
        result["detail"] = (f"{held} held until the 3 s timeout, {closed_at_once} closed "
                            f"at once (cap 64 per address); dropped: cap {cap:.0f}, "
                            f"timeout {timeout:.0f}")


def attack_9(hub: Hub) -> None:
    with measured(9, "revoked key", "a key revoked with one connection open", hub) as result:
        store = KeyStore(hub.db)
        key, record = store.create("developer", "to revoke")
        times: dict[str, float] = {}

        async def main() -> None:
            headers = [(b"X-SWIM-API-Key", key.encode())]
            async with open_websocket_url(hub.url, extra_headers=headers) as ws:
                await ws.get_message()
                store.revoke(record.id)
                revoked = time.monotonic()

                async def watch_open() -> None:
                    with contextlib.suppress(ConnectionClosed):
                        while True:
                            await ws.get_message()
                    times["open closed"] = time.monotonic() - revoked

                async def try_new() -> None:
                    while True:
                        async with open_websocket_url(hub.url, extra_headers=headers) as new:
                            msg = orjson.loads(await new.get_message())
                        if msg.get("code") == "AUTH_FAILED":
                            times["new refused"] = time.monotonic() - revoked
                            return
                        await trio.sleep(0.25)

                with trio.fail_after(30):
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(watch_open)
                        nursery.start_soon(try_new)

        trio.run(main)
        store.close()
        result["ok"] = max(times.values()) <= 11
        result["detail"] = ", ".join(f"{k} after {v:.1f} s" for k, v in times.items())


def attack_10(hub: Hub) -> None:
    with measured(10, "key database deleted", "keys.db moved away, then back", hub) \
            as result:
        path = Path(hub.db.removeprefix("sqlite:///"))
        aside = path.with_name("keys.db.aside")
        times: dict[str, float] = {}

        def health() -> int:
            return hub.get("/healthz")[0]

        path.rename(aside)
        gone = time.monotonic()
        while health() != 503 and time.monotonic() - gone < 30:
            time.sleep(0.2)
        times["healthz 503"] = time.monotonic() - gone
        aside.rename(path)
        back = time.monotonic()
        while health() != 200 and time.monotonic() - back < 30:
            time.sleep(0.2)
        times["healthz 200 again"] = time.monotonic() - back
        result["ok"] = all(v < 12 for v in times.values())
        result["detail"] = ", ".join(f"{k} after {v:.1f} s" for k, v in times.items())


def attack_11(hub: Hub) -> None:
    with measured(11, "history by bytes", "10,000 publishes of 60 KB (history bound "
                  "64 MiB)", hub) as result:
        before = usage(hub.pid)[0]
        pad = "y" * 60_000
        acked = trio.run(publisher, hub, 10_000, lambda i: {
            "channel": "ctp.big", "event_id": f"big-{i}", "data": {"i": i, "pad": pad}}, 240.0)
        held = hub.metric("swim_history_bytes")
        disk = hub.metric("swim_state_journal_bytes")
        after = usage(hub.pid)[0]
        grown = (after - before) / MIB
        result["ok"] = acked == 10_000 and held <= 64 * MIB and grown < 2 * 64
        result["detail"] = (f"{acked} acked; history holds {held / MIB:.0f} MiB of payload, "
                            f"journal {disk / MIB:.0f} MiB on disk; RSS +{grown:.0f} MiB after")


def attack_12(work: Path) -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, 96))

    hub = Hub(work, "fds", "--handshakes-per-address", "0", preexec=low_limit).start()
    try:
        with measured(12, "descriptor exhaustion", "150 idle connections, hard limit 96",
                      hub, probes=False) as result:
            hogs = [socket.create_connection(("127.0.0.1", hub.port), timeout=5)
                    for _ in range(150)]
            time.sleep(2)
            for hog in hogs:
                hog.close()
            time.sleep(1)

            async def valid() -> str:
                with trio.fail_after(10):
                    async with open_websocket_url(hub.url, extra_headers=[
                            (b"X-SWIM-API-Key", hub.keys["developer"].encode())]) as ws:
                        return str(orjson.loads(await ws.get_message())["type"])

            connected = trio.run(valid)
            text = hub.log.read_text()
            errors = text.count("cannot accept connections")
            result["ok"] = (connected == "connected" and "Traceback" not in text
                            and errors == 1)
            result["detail"] = (f"{errors} ERROR line, no traceback: "
                                f"{'Traceback' not in text}; a valid client connects after")
    finally:
        hub.stop()


def attack_13(hub: Hub) -> None:
    with measured(13, "input that should be refused", "artccs+firs 2×1,000, ctp.a..b, NUL, "
                  "a 30-digit id", hub) as result:
        many = {"artccs": [f"Z{i:03d}" for i in range(1000)],
                "firs": [f"F{i:03d}" for i in range(1000)]}
        cases = [
            (orjson.dumps({"action": "subscribe", "channels": ["flight.*"], "filters": many}
                          ).decode(), "INVALID_FILTER"),
            ('{"action":"subscribe","channels":["ctp.a..b"]}', "INVALID_CHANNEL"),
            ('{"action":"subscribe","channels":["ctp.a\\u0000b"]}', "INVALID_CHANNEL"),
            ('{"action":"ping","id":123456789012345678901234567890}', "INVALID_JSON"),
        ]
        got: list[str] = []

        async def main() -> None:
            async with open_websocket_url(hub.url, extra_headers=[
                    (b"X-SWIM-API-Key", hub.keys["developer"].encode())]) as ws:
                await ws.get_message()
                for text, _ in cases:
                    await ws.send_message(text)
                    msg = orjson.loads(await ws.get_message())
                    got.append(str(msg.get("code") or msg.get("type")))

        trio.run(main)
        want = [code for _, code in cases]
        result["ok"] = got == want
        result["detail"] = f"answered {', '.join(got)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated attack numbers")
    args = parser.parse_args()
    only = {int(n) for n in args.only.split(",") if n}
    work = Path(tempfile.mkdtemp(prefix="swim-abuse-"))
    main_hub = Hub(work, "main").start()
    print(f"hub from {ROOT}; RSS MiB and descriptors before / peak / after; valid-client "
          "connect ms p50 / p95 during the attack", flush=True)
    plan: list[tuple[int, Callable[[], None]]] = [
        (1, lambda: attack_1(main_hub)),
        (2, lambda: attack_2(work)),
        (3, lambda: attack_3(work)),
        (4, lambda: attack_4(main_hub)),
        (5, lambda: attack_5(work)),
        (6, lambda: attack_6(work)),
        (7, lambda: attack_7(main_hub)),
        (8, lambda: attack_8(main_hub)),
        (9, lambda: attack_9(main_hub)),
        (11, lambda: attack_11(main_hub)),
        (12, lambda: attack_12(work)),
        (13, lambda: attack_13(main_hub)),
        (10, lambda: attack_10(main_hub)),  # last: it takes the key store away
    ]
    try:
        with measured(0, "baseline", "no attack, 5 s", main_hub) as result:
            time.sleep(5)
            result["ok"], result["detail"] = True, "-"
        for number, run in plan:
            if not only or number in only:
                run()
    finally:
        main_hub.stop()
        shutil.rmtree(work, ignore_errors=True)
    print()
    print("| attack | parameters | RSS MiB before / peak / after | fds before / peak / after "
          "| connect ms p50 / p95 | verdict |")
    print("|---|---|---|---|---|---|")
    for row in ROWS:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
