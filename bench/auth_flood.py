"""Valid clients' connect time while a flood of bad-key handshakes hits the hub (issue 19, item 7).

Starts `swimctl serve` from a source tree (`--source`, default this checkout) on 127.0.0.1
with a fresh SQLite key store and one valid key, then:

1. baseline: `--probes` valid connects one after another, no flood;
2. for each flood kind, a separate process opens `--count` handshakes with bad keys,
   `--concurrency` at a time, on raw sockets (send the upgrade, read until the hub closes),
   while this process keeps connecting a valid client every `--probe-interval` seconds.

A connect is timed from the TCP connect to the `connected` message. Reported per phase:
valid-connect p50/p95/max (medians, not means, on a shared machine), the flood's duration, the
hub's CPU seconds and the log lines it wrote. Everything is bounded in count and time and
talks only to 127.0.0.1.

    python bench/auth_flood.py                      # this checkout
    python bench/auth_flood.py --source /tmp/base   # another tree (e.g. a `git archive`)
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing as mp
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import trio
from trio_websocket import open_websocket_url

WS_PATH = "/api/swim/v1/ws"
KINDS = {
    "malformed": lambda: "swim_dev_" + secrets.token_hex(8),
    "well-formed unknown": lambda: "swim_dev_" + secrets.token_hex(32),
}


def flood(port: int, kind: str, count: int, concurrency: int, done: mp.Queue) -> None:  # type: ignore[type-arg]
    """The flooder process: `count` bad-key handshakes on raw sockets."""
    make = KINDS[kind]

    async def one() -> None:
        key = make()
        request = (f"GET {WS_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                   f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                   f"X-SWIM-API-Key: {key}\r\n\r\n").encode()
        try:
            with trio.move_on_after(10):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                async with stream:
                    await stream.send_all(request)
                    got = b""
                    while b"AUTH_FAILED" not in got:  # the refusal, then we hang up
                        chunk = await stream.receive_some(4096)
                        if not chunk:
                            break
                        got += chunk
        except (OSError, trio.BrokenResourceError):
            pass

    async def main() -> None:
        slots = trio.Semaphore(concurrency)

        async def guarded() -> None:
            try:
                await one()
            finally:
                slots.release()

        async with trio.open_nursery() as nursery:
            for _ in range(count):
                await slots.acquire()  # at most `concurrency` handshakes in flight
                nursery.start_soon(guarded)

    start = time.monotonic()
    trio.run(main)
    done.put(time.monotonic() - start)


async def valid_connect(url: str, key: str) -> float:
    start = time.perf_counter()
    with trio.fail_after(30):
        async with open_websocket_url(url, extra_headers=[(b"X-SWIM-API-Key", key.encode())]) \
                as ws:
            hello = orjson.loads(await ws.get_message())
            elapsed = time.perf_counter() - start
    assert hello["type"] == "connected", hello
    return elapsed


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"{statistics.median(ms):7.1f} {p95:7.1f} {ms[-1]:7.1f} {len(ms):6d}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=str(Path(__file__).resolve().parent.parent),
                        help="source tree whose swimctl runs the hub")
    parser.add_argument("--count", type=int, default=5000, help="bad handshakes per flood")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--probes", type=int, default=100, help="baseline valid connects")
    parser.add_argument("--probe-interval", type=float, default=0.02)
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated flood kinds")
    args = parser.parse_args()
    assert args.count <= 20_000 and args.concurrency <= 500, "bounded load only"

    work = Path(tempfile.mkdtemp(prefix="auth-flood-"))
    db = f"sqlite:///{work}/keys.db"
    env = {**os.environ, "PYTHONPATH": args.source, "SWIM_DB": db,
           "SWIM_STATE_DIR": str(work / "state")}
    cmd = [sys.executable, "-m", "swimctl"]
    key = orjson.loads(subprocess.run([*cmd, "keys", "create", "--tier", "partner", "--owner",
                                       "bench", "--json"], cwd=args.source, env=env, check=True,
                                      capture_output=True).stdout)["api_key"]
    log_path = work / "hub.log"
    with log_path.open("w") as log_file:
        hub = subprocess.Popen([*cmd, "serve", "--port", "0"], cwd=args.source, env=env,
                               stderr=log_file, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not (m := re.search(r"listening on (ws://\S+)", log_path.read_text())):
            assert hub.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        url = m.group(1)
        port = int(url.split(":")[2].split("/")[0])
        print(f"hub from {args.source}; {args.count} bad handshakes per flood, "
              f"{args.concurrency} at a time; valid connects in ms")
        print(f"{'phase':<28} {'p50':>7} {'p95':>7} {'max':>7} {'n':>6}  flood_s  hub_cpu_s  "
              "log_lines")

        async def baseline() -> list[float]:
            return [await valid_connect(url, key) for _ in range(args.probes)]

        cpu0, lines0 = cpu_seconds(hub.pid), len(log_path.read_text().splitlines())
        times = trio.run(baseline)
        print(f"{'no flood':<28} {summary(times)}  {'-':>7}  {cpu_seconds(hub.pid) - cpu0:9.2f}"
              f"  {len(log_path.read_text().splitlines()) - lines0:9d}")
        for kind in args.kinds.split(","):
            time.sleep(6)  # let the negative cache and any throttle from the last phase lapse
            cpu0, lines0 = cpu_seconds(hub.pid), len(log_path.read_text().splitlines())
            done: mp.Queue = mp.Queue()  # type: ignore[type-arg]
            flooder = mp.Process(target=flood, args=(port, kind, args.count, args.concurrency,
                                                     done))
            flooder.start()

            async def probe(flooder: mp.Process) -> list[float]:
                out: list[float] = []
                while flooder.is_alive():
                    out.append(await valid_connect(url, key))
                    await trio.sleep(args.probe_interval)
                return out

            times = trio.run(probe, flooder)
            flooder.join(60)
            seconds = done.get(timeout=5)
            time.sleep(11)  # one refusal-summary interval, so its line is counted
            print(f"{'flood: ' + kind:<28} {summary(times)}  {seconds:7.1f}  "
                  f"{cpu_seconds(hub.pid) - cpu0:9.2f}  "
                  f"{len(log_path.read_text().splitlines()) - lines0:9d}")
    finally:
        hub.terminate()
        hub.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
