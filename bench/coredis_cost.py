"""What one Redis command costs the hub's process in CPU: coredis on trio, as `--broker` uses it.

    python bench/coredis_cost.py          # a few seconds, a redis-server of its own

Against a redis-server of its own on a free port of 127.0.0.1 (tests/redis_server.py):
GET and PING one after another, and the shared log's delivery pattern (one task blocked in
XREAD, woken by an XADD from another task, a few ms apart), each in CPU (process time) and
wall time per call. No hub code: the client library alone.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import coredis
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.redis_server import RedisServer


async def measure(url: str, n: int) -> None:
    client: Any = coredis.Redis.from_url(url)
    async with client:
        await client.set("k", "v")
        calls: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("GET", lambda: client.get("k")), ("PING", client.ping)]
        for label, call in calls:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for _ in range(n):
                await call()
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            print(f"coredis {coredis.__version__} {label}: {cpu / n * 1e6:.0f} µs CPU, "
                  f"{wall / n * 1e6:.0f} µs wall per call", flush=True)

        async def reader(count: int) -> None:
            last = "0-0"
            for _ in range(count):
                found = await client.xread({"s": last}, count=10, block=1000)
                last = found[b"s"][-1].identifier

        events = n // 4
        cpu0 = time.process_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader, events)
            for i in range(events):
                await client.xadd("s", {"f": str(i)})
                await trio.sleep(0.002)
        cpu = time.process_time() - cpu0
        print(f"XADD + a blocked XREAD woken by it: {cpu / events * 1e6:.0f} µs CPU per event "
              "(both sides, in one process)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="calls per command")
    args = parser.parse_args()
    server = RedisServer(Path(tempfile.mkdtemp(prefix="coredis-cost-")) / "redis").start()
    try:
        trio.run(measure, server.url, args.n)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
