"""The peer: a minimal fan-out server on `websockets` (asyncio), the fastest Python peer.

It speaks just enough of the SWIM protocol for the benchmark's clients (connected message,
subscribe with filters, events with seq) and fans out each event's pre-encoded payload with
`websockets.broadcast()`. Filters reuse swimctl's compiled filters, and a positions batch is
sliced and encoded once per distinct filter, as the hub does; no auth, history or limits.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from multiprocessing.connection import Connection
from typing import Any

import orjson
from hub_server import MARK, _quantiles
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from workload import Vatsim, floor_round, small_event, stamp

from swimctl.core.filters import Filter, compile_filter
from swimctl.core.model import format_ts


class Peer:
    def __init__(self) -> None:
        self.subs: dict[ServerConnection, Filter | None] = {}
        self.seq = 0
        self.fanout: list[float] = []

    async def handler(self, ws: ServerConnection) -> None:
        await ws.send(orjson.dumps({"type": "connected", "data": {"seq": self.seq}}), text=True)
        try:
            async for message in ws:
                req = orjson.loads(message)
                if req.get("action") != "subscribe":
                    continue
                flt = compile_filter(req.get("filters") or None)
                self.subs[ws] = None if flt.empty else flt
                await ws.send(orjson.dumps({"type": "subscribed", "channels": req["channels"],
                                            "filters": flt.echo}), text=True)
        except ConnectionClosed:
            pass  # clients of the benchmark just go away at the end
        finally:
            self.subs.pop(ws, None)

    def _envelope(self, etype: str, data: dict[str, Any]) -> bytes:
        self.seq += 1
        return orjson.dumps({"type": etype, "timestamp": format_ts(), "seq": self.seq,
                             "event_id": f"e-{self.seq}", "data": data})

    def publish(self, etype: str, data: dict[str, Any]) -> None:
        """Encode once, pick the accepting connections, broadcast; timed like Hub.publish."""
        payload = self._envelope(etype, data)
        started = time.perf_counter()
        targets = [ws for ws, f in self.subs.items() if f is None or f.accepts(etype, data)]
        broadcast(targets, payload, text=True)
        self.fanout.append(time.perf_counter() - started)

    def publish_positions(self, data: dict[str, Any]) -> None:
        self.seq += 1
        seq, ts = self.seq, format_ts()
        started = time.perf_counter()
        groups: dict[str, tuple[Filter | None, list[ServerConnection]]] = {}
        for ws, f in self.subs.items():
            key = "" if f is None else f.key
            groups.setdefault(key, (f, []))[1].append(ws)
        for f, members in groups.values():
            if f is None:
                body = data
            else:
                kept = f.slice_positions(data["positions"])
                if not kept:
                    continue
                body = {**data, "count": len(kept), "positions": kept}
            broadcast(members, orjson.dumps({"type": "flight.positions", "timestamp": ts,
                                             "seq": seq, "event_id": f"e-{seq}",
                                             "data": body}), text=True)
        self.fanout.append(time.perf_counter() - started)


async def _control(pipe: Connection, peer: Peer, port: int) -> None:
    loop = asyncio.get_running_loop()
    vatsim = Vatsim()
    gc.collect()
    pipe.send(("ready", {"port": port, "key": "none", "pid": os.getpid()}))
    while True:
        cmd, *args = await loop.run_in_executor(None, pipe.recv)
        if cmd == "stop":
            pipe.send(("stopped",))
            return
        if cmd == "gc":
            gc.collect()
            pipe.send(("ok", len(peer.subs)))
            continue
        phase, params = args
        peer.fanout.clear()
        started = time.perf_counter()
        cpu0 = time.process_time()
        fan: dict[str, list[float]] = {"event": [], "positions": []}
        sync_cpu = 0.0
        published = 0
        short_writes = 0
        if cmd == "blast":
            for i in range(params["count"]):
                t0 = time.thread_time()
                peer.publish("flight.departed", stamp(small_event(i)))
                sync_cpu += time.thread_time() - t0
                published += 1
                await asyncio.sleep(0)
            fan["event"] = list(peer.fanout)
        elif cmd == "paced":
            rate, count = params["rate"], params["count"]
            t_start = loop.time()
            for i in range(count):
                await asyncio.sleep(max(0.0, t_start + i / rate - loop.time()))
                t0 = time.thread_time()
                peer.publish("flight.departed", stamp(small_event(i)))
                sync_cpu += time.thread_time() - t0
                published += 1
            fan["event"] = list(peer.fanout)
        elif cmd == "floor":
            # As in hub_server.py: the paced events by a bare loop, one os.write per
            # connection, no websockets code, so each side's own floor is known.
            rate, count = params["rate"], params["count"]
            fds = [ws.transport.get_extra_info("socket").fileno() for ws in peer.subs]
            t_start = loop.time()
            for i in range(count):
                await asyncio.sleep(max(0.0, t_start + i / rate - loop.time()))
                short, cpu, wall = floor_round(fds, i)
                short_writes, sync_cpu = short_writes + short, sync_cpu + cpu
                fan["event"].append(wall)
                published += 1
        elif cmd == "vatsim":
            for _ in range(params["cycles"]):
                t_cycle = loop.time()
                t0 = time.thread_time()
                peer.fanout.clear()
                peer.publish_positions(vatsim.positions_data())
                fan["positions"].extend(peer.fanout)
                peer.fanout.clear()
                for etype, data in vatsim.lifecycle():
                    peer.publish(etype, stamp(data))
                fan["event"].extend(peer.fanout)
                sync_cpu += time.thread_time() - t0
                published += 31
                await asyncio.sleep(max(0.0, t_cycle + params["interval"] - loop.time()))
        peer.publish(MARK, {"phase": phase})
        pipe.send(("done", {
            "published": published,
            "elapsed": time.perf_counter() - started,
            "publish_cpu": sync_cpu,
            "fanout_event": _quantiles(fan["event"]),
            "fanout_positions": _quantiles(fan["positions"]),
            "cpu_in_process": time.process_time() - cpu0,
            "slow_consumers": 0,
            "short_writes": short_writes,
        }))


async def _main(pipe: Connection, compression: str | None) -> None:
    peer = Peer()
    async with serve(peer.handler, "127.0.0.1", 0, compression=compression, ping_interval=None,
                     backlog=4096, max_queue=4) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        await _control(pipe, peer, port)


def peer_main(pipe: Connection, cpus: set[int] | None = None,
              compression: str | None = None) -> None:
    """Entry point of the peer process. `compression="deflate"`: websockets' default
    permessage-deflate, a compressor per connection (bench/compression.py)."""
    from loadgen import pin, raise_nofile

    pin(cpus)
    raise_nofile()
    logging.getLogger("websockets").setLevel(logging.CRITICAL)
    asyncio.run(_main(pipe, compression))
