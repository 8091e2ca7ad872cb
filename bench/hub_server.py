"""The hub under test: the real `swimctl.hub.service.run_service` in its own process, driven over
a multiprocessing pipe (a hidden control channel; nothing of it reaches the hub's protocol).

Publishing goes through `Hub.publish`, exactly as an events file or a system-tier publisher
would, with one trio checkpoint after each event (what a real source does between events).
"""

from __future__ import annotations

import gc
import os
import tempfile
import time
from multiprocessing.connection import Connection
from typing import Any

import trio
from workload import Vatsim, floor_round, small_event, stamp

MARK = "system.mark"


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0, "n": 0}
    ordered = sorted(values)
    n = len(ordered)
    return {"p50": ordered[n // 2], "p99": ordered[min(n - 1, int(n * 0.99))],
            "max": ordered[-1], "n": n}


async def _control(pipe: Connection, handle: Any, key: str) -> None:
    from swimctl.hub.engine import Hub

    hub: Hub = handle.hub
    port = int(handle.url.rsplit(":", 1)[1].split("/", 1)[0])
    vatsim = Vatsim()
    gc.collect()
    pipe.send(("ready", {"port": port, "key": key, "pid": os.getpid()}))
    while True:
        cmd, *args = await trio.to_thread.run_sync(pipe.recv)
        if cmd == "stop":
            pipe.send(("stopped",))
            return
        if cmd == "gc":
            gc.collect()
            pipe.send(("ok", len(hub.clients)))
            continue
        phase, params = args
        hub.stats.fanout_seconds.clear()
        steps0 = hub.stats.fanout.count
        started = time.perf_counter()
        cpu0 = time.process_time()
        fan: dict[str, list[float]] = {"event": [], "positions": []}
        sync_cpu = 0.0
        published = 0
        short_writes = 0  # floor only: a short write there would break the framing
        if cmd == "blast":
            for i in range(params["count"]):
                t0 = time.thread_time()
                await hub.publish("flight.departed", stamp(small_event(i)))
                sync_cpu += time.thread_time() - t0
                published += 1
                await trio.lowlevel.checkpoint()
            fan["event"] = list(hub.stats.fanout_seconds)
        elif cmd == "paced":
            rate, count = params["rate"], params["count"]
            t_start = trio.current_time()
            for i in range(count):
                await trio.sleep_until(t_start + i / rate)
                t0 = time.thread_time()
                await hub.publish("flight.departed", stamp(small_event(i)))
                sync_cpu += time.thread_time() - t0
                published += 1
            fan["event"] = list(hub.stats.fanout_seconds)
        elif cmd == "floor":
            # The paced events again, written by a bare loop (one os.write per connection,
            # no hub code at all) to the same sockets: what any server that makes one system
            # call per delivery costs on this machine, with these clients, in this run.
            rate, count = params["rate"], params["count"]
            fds = [c.outbox.fd for c in hub.clients.values() if c.outbox.fd is not None]
            t_start = trio.current_time()
            for i in range(count):
                await trio.sleep_until(t_start + i / rate)
                short, cpu, wall = floor_round(fds, i)
                short_writes, sync_cpu = short_writes + short, sync_cpu + cpu
                fan["event"].append(wall)
                published += 1
        elif cmd == "vatsim":
            for _ in range(params["cycles"]):
                t_cycle = trio.current_time()
                t0 = time.thread_time()
                hub.stats.fanout_seconds.clear()
                await hub.publish("flight.positions", vatsim.positions_data())
                fan["positions"].extend(hub.stats.fanout_seconds)
                hub.stats.fanout_seconds.clear()
                for etype, data in vatsim.lifecycle():
                    await hub.publish(etype, stamp(data))
                hub.flush()  # what the coalescer would do a window later: time it here
                fan["event"].extend(hub.stats.fanout_seconds)
                sync_cpu += time.thread_time() - t0
                published += 31
                await trio.sleep_until(t_cycle + params["interval"])
        hub.flush()  # anything still held by coalescing goes before the mark
        steps = hub.stats.fanout.count - steps0
        backlogged = sum(1 for c in hub.clients.values() if c.outbox.depth)
        await hub.publish(MARK, {"phase": phase})
        pipe.send(("done", {
            "backlogged_at_end": backlogged,  # connections with frames queued in user space
            "published": published,
            "fanout_steps": steps,
            "short_writes": short_writes,  # fewer than published when bursts were coalesced
            "elapsed": time.perf_counter() - started,
            "publish_cpu": sync_cpu,
            "fanout_event": _quantiles(fan["event"]),
            "fanout_positions": _quantiles(fan["positions"]),
            "cpu_in_process": time.process_time() - cpu0,
            "slow_consumers": hub.stats.slow_consumers,
        }))


async def _main(pipe: Connection, overrides: dict[str, Any]) -> None:
    from swimctl.hub.config import HubConfig
    from swimctl.hub.service import ServeOptions, run_service
    from swimctl.keys import DEFAULT_TIER_CAPS, KeyStore

    tmp = tempfile.mkdtemp(prefix="swimbench-")
    db_url = f"sqlite:///{tmp}/keys.db"
    key, _ = KeyStore(db_url).create("system", "fan-out benchmark")
    caps = {**DEFAULT_TIER_CAPS, "system": 1_000_000}
    config = HubConfig(**{"port": 0, "db_url": db_url, "heartbeat_interval": 3600.0,
                          "tier_caps": caps, **overrides})
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(run_service, ServeOptions(config=config,
                                                               load_geography=False))
        await _control(pipe, handle, key)
        nursery.cancel_scope.cancel()


def hub_main(pipe: Connection, cpus: set[int] | None = None,
             overrides: dict[str, Any] | None = None) -> None:
    """Entry point of the hub process; `overrides`: HubConfig fields (compression=False)."""
    from loadgen import pin, raise_nofile

    pin(cpus)
    raise_nofile()
    trio.run(_main, pipe, overrides or {})
