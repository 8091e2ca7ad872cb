#!/usr/bin/env python3
"""CPU cost of one feed cycle on a ~2,000-pilot snapshot: parse + diff + ARTCC tagging + events.

The 2023-03-12 fixture (1,706 pilots) is topped up to --pilots by cloning pilots with new cids
and jittered positions. Each timed cycle parses snapshot N from bytes and diffs it against
N-1 in a warm detector, where every pilot has moved a little (like the live feed, where nearly
every airborne flight moves between refreshes). Reports the median `time.process_time()`.

    python3 bench/bench_detect.py [--pilots 2000] [--runs 30] [--max-seconds 20]
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import gzip
import random
import statistics
import time
from pathlib import Path

import orjson

from swimctl.core.detect import Detector, parse_snapshot
from swimctl.core.geo import load_geo

FIXTURE = (
    Path(__file__).resolve().parent.parent
    / "tests/fixtures/vatsim/2023-03-12T172418Z.vatsim-data.json.gz"
)


def synthesize(pilots: int, seed: int = 1) -> dict:
    """The fixture snapshot with at least `pilots` pilots."""
    doc = orjson.loads(gzip.decompress(FIXTURE.read_bytes()))
    rng = random.Random(seed)
    base = doc["pilots"]
    extra = []
    while len(base) + len(extra) < pilots:
        p = copy.deepcopy(rng.choice(base))
        p["cid"] = 9_000_000 + len(extra)
        p["callsign"] = f"{p['callsign'][:5]}{len(extra)}"
        p["latitude"] = max(-89.0, min(89.0, p["latitude"] + rng.uniform(-2, 2)))
        p["longitude"] = (p["longitude"] + rng.uniform(-2, 2) + 180) % 360 - 180
        extra.append(p)
    doc["pilots"] = base + extra
    return doc


def step(doc: dict, seconds: int, rng: random.Random) -> bytes:
    """The next refresh: time advanced, moving flights moved, encoded as the feed sends it."""
    doc = copy.deepcopy(doc)
    when = dt.datetime(2023, 3, 12, 17, 24, 18, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)
    doc["general"]["update_timestamp"] = when.strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    for p in doc["pilots"]:
        if p["groundspeed"] > 0:
            p["latitude"] = round(p["latitude"] + rng.uniform(-0.02, 0.02), 5)
            p["longitude"] = round(p["longitude"] + rng.uniform(-0.02, 0.02), 5)
            p["altitude"] += rng.choice((-100, 0, 0, 100))
    return orjson.dumps(doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pilots", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--max-seconds", type=float, default=20.0)
    args = parser.parse_args()

    t0 = time.perf_counter()
    geo = load_geo()
    load_s = time.perf_counter() - t0
    doc = synthesize(args.pilots)
    rng = random.Random(2)
    frames = [step(doc, 15 * i, rng) for i in range(args.runs + 1)]
    print(
        f"pilots: {len(doc['pilots'])}, snapshot {len(frames[0]) / 1e6:.1f} MB, "
        f"geo load {load_s * 1000:.0f} ms (wall)"
    )

    det = Detector(geo)
    first = det.process(parse_snapshot(frames[0]))  # warm-up: everyone is created
    samples: list[float] = []
    events = 0
    deadline = time.monotonic() + args.max_seconds
    for raw in frames[1:]:
        if time.monotonic() > deadline:
            break
        c0 = time.process_time()
        cycle = det.process(parse_snapshot(raw))
        samples.append(time.process_time() - c0)
        events += len(cycle.events)
    median_ms = statistics.median(samples) * 1000
    print(f"first cycle (all created): {len(first.events)} events")
    print(
        f"steady cycle: median {median_ms:.1f} ms CPU, min {min(samples) * 1000:.1f} ms, "
        f"max {max(samples) * 1000:.1f} ms over {len(samples)} runs "
        f"({events / len(samples):.0f} events/cycle)"
    )
    print("target <= 100 ms:", "met" if median_ms <= 100 else "NOT met")


if __name__ == "__main__":
    main()
