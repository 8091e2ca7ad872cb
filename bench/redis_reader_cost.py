"""What reading one event from Redis costs a hub's process: XREAD BLOCK against a Pub/Sub push.

    python bench/redis_reader_cost.py            # 3 rounds of 1,000 events, under a minute
    python bench/redis_reader_cost.py --n 300 --rounds 1

The question behind it: the shared log's reader re-issues `XREAD BLOCK` after every wake-up,
one command sent to Redis per event when events come one at a time. A reader subscribed to a
Pub/Sub channel (centrifuge's Redis broker delivers this way, with the stream kept for
recovery) only receives. Would that close the CPU gap between `--broker` and the in-process
stream (docs/PERFORMANCE.md, "Several hubs on one Redis")?

Against a redis-server of its own on a free port of 127.0.0.1 (tests/redis_server.py), a
writer process adds N ~330-byte entries 2 ms apart, either as XADD to a stream or as PUBLISH
to a channel; the reader, this process, is the hub's own RESP code on trio
(swimctl/stream/resp.py), and reports its CPU (process time) per event received. The writer's
CPU and Redis's are not counted. Alternating, medians over the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from swimctl.stream.resp import RespConnection, RespParser, encode_command
from tests.redis_server import RedisServer

WRITER = """
import socket, sys, time
port, n, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = socket.create_connection(("127.0.0.1", port))
payload = b"x" * 330
for i in range(1, n + 1):
    cmd = ([b"XADD", b"log", b"%d-0" % i, b"p", payload] if mode == "xread"
           else [b"PUBLISH", b"events", b"%d:" % i + payload])
    s.sendall(b"*%d\\r\\n" % len(cmd)
              + b"".join(b"$%d\\r\\n%s\\r\\n" % (len(a), a) for a in cmd))
    s.recv(100)
    time.sleep(0.002)
"""


def writer(port: int, n: int, mode: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(port), str(n), mode])


async def xread_reader(port: int, n: int) -> float:
    """The shared log's way: XREAD BLOCK from the head, again after every reply."""
    connection = RespConnection(f"redis://127.0.0.1:{port}/0")
    await connection.call("DEL", "log")
    head = 0
    proc = writer(port, n, "xread")
    started = time.process_time()
    while head < n:
        reply = await connection.call("XREAD", "COUNT", 100, "BLOCK", 1000, "STREAMS", "log",
                                      f"{head}-0")
        for _stream, entries in reply or ():
            for identifier, _fields in entries:
                head = int(identifier.split(b"-")[0])
    cpu = time.process_time() - started
    await connection.aclose()
    await trio.to_thread.run_sync(proc.wait)
    return cpu / n


async def pubsub_reader(port: int, n: int) -> float:
    """Subscribed once; every event is a push, nothing sent back."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    parser = RespParser()
    await stream.send_all(encode_command(("SUBSCRIBE", "events")))
    received, started = 0, 0.0
    proc: subprocess.Popen[bytes] | None = None
    while received < n:
        data = await stream.receive_some(65536)
        if not data:
            raise RuntimeError("Redis closed the connection")
        parser.feed(data)
        while isinstance(reply := parser.reply(), list):
            if reply[0] == b"subscribe":
                proc = writer(port, n, "pubsub")
                started = time.process_time()
            elif reply[0] == b"message":
                received = int(reply[2].split(b":", 1)[0])
    cpu = time.process_time() - started
    await stream.aclose()
    assert proc is not None
    await trio.to_thread.run_sync(proc.wait)
    return cpu / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="events per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        redis = RedisServer(Path(directory)).start()
        try:
            xread: list[float] = []
            pubsub: list[float] = []
            for round_ in range(args.rounds):
                order = [("xread", xread_reader, xread), ("pubsub", pubsub_reader, pubsub)]
                if round_ % 2:
                    order.reverse()
                for label, reader, into in order:
                    into.append(trio.run(reader, redis.port, args.n))
                    print(f"round {round_ + 1}: {label:6} {into[-1] * 1e6:6.0f} µs CPU/event",
                          flush=True)
        finally:
            redis.stop()
    x, p = statistics.median(xread), statistics.median(pubsub)
    print(f"median over {args.rounds} rounds of {args.n}: XREAD {x * 1e6:.0f} µs, "
          f"Pub/Sub {p * 1e6:.0f} µs, saving {(x - p) * 1e6:.0f} µs CPU per event")


if __name__ == "__main__":
    main()
