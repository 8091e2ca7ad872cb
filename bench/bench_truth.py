#!/usr/bin/env python3
"""The detector against the simulator's truth: precision, recall and time errors per type.

Runs the simulated feed (lost, repeated and late snapshots included) through parse_snapshot
and a Detector -- the feed's own path -- and matches every detected created / departed /
arrived / deleted event with the true one of the same flight within one feed interval (the
gap between the two snapshots the detector had around the true moment). The bar (issue 18):
>= 99.5 % precision and recall per type over >= 2 simulated hours at 2,000 pilots.

    python3 bench/bench_truth.py [--pilots 2000] [--hours 2] [--seeds 1,2,3,4]
                                 [--max-seconds 600] [--examples 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from swimctl.core.geo import load_geo
from swimctl.core.sim import SimConfig
from swimctl.core.sim.score import SCORED_TYPES, TypeScore, evaluate, report

START = dt.datetime(2026, 1, 1, 18, 0, tzinfo=dt.UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pilots", type=int, default=2000)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--seeds", default="1,2,3,4")
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="stop starting new seeds after this much wall time")
    parser.add_argument("--examples", type=int, default=3,
                        help="misses and false detections to show per type")
    args = parser.parse_args()
    cycles = round(args.hours * 3600 / 15)
    geo = load_geo()
    total = {t: TypeScore() for t in SCORED_TYPES}
    deadline = time.monotonic() + args.max_seconds
    for seed in (int(s) for s in args.seeds.split(",")):
        if time.monotonic() > deadline:
            print(f"time budget spent; seed {seed} and later skipped")
            break
        c0 = time.process_time()
        result = evaluate(SimConfig(pilots=args.pilots, seed=seed, start=START), cycles, geo)
        cpu = time.process_time() - c0
        print(f"\nseed {seed}: {args.pilots} pilots, {args.hours:g} h ({cycles} refreshes, "
              f"{result.snapshots} snapshots delivered, {result.stale} stale), {cpu:.0f} s CPU")
        print(report(result.scores))
        for etype, s in result.scores.items():
            t = total[etype]
            t.true += s.true
            t.detected += s.detected
            t.found += s.found
            t.correct += s.correct
            t.errors += s.errors
            for stamp, data in s.misses[: args.examples]:
                print(f"  missed   {etype} {stamp} {data['callsign']} at {data.get('airport')}")
            for stamp, data in s.spurious[: args.examples]:
                print(f"  spurious {etype} {stamp} {data['callsign']}")
    print("\nall seeds:")
    print(report(total))
    worst = min(min(s.precision, s.recall) for s in total.values())
    print(f"bar: precision and recall >= 99.5 % per type: {worst * 100:.2f} % worst, "
          + ("met" if worst >= 0.995 else "NOT met"))


if __name__ == "__main__":
    main()
