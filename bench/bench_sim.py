#!/usr/bin/env python3
"""CPU of one feed cycle on simulated traffic at 2,000, 10,000 and 30,000 pilots.

Per scale, a Simulator is warmed up (a steady population), one snapshot primes a Detector
(everyone is new), then each timed cycle measures with `time.process_time()`:

- make: the simulator's step (flight physics, the v3 document, orjson encoding) -- what
  `--feed sim` adds to a hub, and what a real feed does not cost;
- detect: `parse_snapshot` of the bytes plus `Detector.process` -- the feed's worker-thread half;
- deliver: the feed runner's `deliver` into a real Hub with no clients -- every event numbered,
  stored for resume and serialised once, the positions batch included, the snapshot state
  replaced;
- feed cycle = detect + deliver, the hub's cost of one refresh of any feed.

Each timed cycle starts from cold caches: a buffer three times the L3 is streamed through
first (not timed). A hub's cycles are 15 s apart, with the fan-out to clients and the sockets
in between, so each cycle meets caches full of other work; back to back, the 2,000-pilot cycle
(a 1.8 MB document) would instead run from a warm L3 and its per-pilot cost look half of
what it is in service, while a 30,000-pilot one cannot fit either way. `--hot` measures
back to back, for comparison.

Reports medians. The bars (issue 18): feed cycle at 10,000 pilots <= 250 ms; 30,000 <= 16x
the 2,000 figure (linear growth). Bounded by --runs and --max-seconds per scale.

    python3 bench/bench_sim.py [--scales 2000,10000,30000] [--runs 15] [--max-seconds 60]
                               [--hot] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from pathlib import Path

import trio

from swimctl.core.detect import Detector
from swimctl.core.geo import load_geo
from swimctl.core.sim import SimConfig, Simulator
from swimctl.hub.config import HubConfig
from swimctl.hub.engine import Hub
from swimctl.hub.sources.feed import _decode_and_detect, _Runner

START = dt.datetime(2026, 1, 1, 18, 0, tzinfo=dt.UTC)


EVICT_BYTES = 96 * 1024 * 1024  # three times this machine's 32 MB L3


def evict(buffer: bytearray) -> None:
    """Push this process's working set out of the CPU caches (not timed)."""
    buffer[::4096] = bytes(len(buffer[::4096]))
    bytes(buffer)


async def measure(pilots: int, runs: int, max_seconds: float, hot: bool) -> dict[str, float]:
    geo = load_geo()
    t0 = time.process_time()
    sim = Simulator(SimConfig(pilots=pilots, seed=1, start=START, feed_faults=False), geo,
                    truth=False)
    warm_up = time.process_time() - t0
    detector = Detector(geo)
    hub = Hub(HubConfig())
    runner = _Runner(hub, detector, 15.0, 1.0)
    samples: dict[str, list[float]] = {"make": [], "detect": [], "deliver": []}
    events: list[int] = []
    sizes: list[int] = []
    buffer = bytearray(EVICT_BYTES)
    first = sim.step()[0]
    await runner.deliver(_decode_and_detect(detector, first.body, None, False), "bench")
    deadline = time.monotonic() + max_seconds
    while len(samples["make"]) < runs and time.monotonic() < deadline:
        if not hot:
            evict(buffer)
        c0 = time.process_time()
        [snap] = sim.step()
        c1 = time.process_time()
        cycle = _decode_and_detect(detector, snap.body, None, False)
        c2 = time.process_time()
        await runner.deliver(cycle, "bench")
        c3 = time.process_time()
        samples["make"].append(c1 - c0)
        samples["detect"].append(c2 - c1)
        samples["deliver"].append(c3 - c2)
        events.append(len(cycle.events))
        sizes.append(len(snap.body))
    med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    feed = [d + v for d, v in zip(samples["detect"], samples["deliver"], strict=True)]
    med["feed_cycle"] = statistics.median(feed) * 1000
    total = [m + f for m, f in zip(samples["make"], feed, strict=True)]
    med["with_sim"] = statistics.median(total) * 1000
    med["runs"] = len(feed)
    med["warm_up_s"] = warm_up
    med["events"] = statistics.median(events)
    med["snapshot_mb"] = statistics.median(sizes) / 1e6
    return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="2000,10000,30000")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--max-seconds", type=float, default=60.0,
                        help="per scale, for the timed cycles")
    parser.add_argument("--hot", action="store_true",
                        help="time cycles back to back, caches warm from the last one")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results: dict[int, dict[str, float]] = {}
    print(f"{'pilots':>7} {'MB':>5} {'events':>6} {'make':>8} {'detect':>8} {'deliver':>8} "
          f"{'feed cycle':>10} {'+ make':>8}  (ms CPU, median; "
          f"{'warm' if args.hot else 'cold'} caches)")
    for scale in (int(s) for s in args.scales.split(",")):
        r = trio.run(measure, scale, args.runs, args.max_seconds, args.hot)
        results[scale] = r
        print(f"{scale:7d} {r['snapshot_mb']:5.1f} {r['events']:6.0f} {r['make']:8.1f} "
              f"{r['detect']:8.1f} {r['deliver']:8.1f} {r['feed_cycle']:10.1f} "
              f"{r['with_sim']:8.1f}  ({r['runs']:.0f} runs; warm-up {r['warm_up_s']:.1f} s)")
    if 10000 in results:
        r = results[10000]
        print(f"bar: feed cycle at 10,000 <= 250 ms: {r['feed_cycle']:.0f} ms, "
              + ("met" if r["feed_cycle"] <= 250 else "NOT met")
              + f" (with the simulator itself: {r['with_sim']:.0f} ms)")
    if 2000 in results and 30000 in results:
        for key in ("feed_cycle", "with_sim"):
            ratio = results[30000][key] / results[2000][key]
            print(f"bar: 30,000 <= 16 x 2,000 ({key}): {ratio:.1f}x, "
                  + ("met" if ratio <= 16 else "NOT met"))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
