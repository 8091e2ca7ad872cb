#!/usr/bin/env python3
"""Build `swimctl/data/traffic.csv.gz`: how busy each airport is on VATSIM, for the simulator.

Run from the repository root (snapshots default to ../shared/data/vatsim):

    python3 scripts/build_traffic.py [--src DIR] [--out swimctl/data]

Counts every filed departure and arrival field over the recorded data-feed snapshots and keeps
those the shipped airport table knows. The simulator draws its flights' fields in proportion to
these counts, so the fields that are busy on the network are busy in the simulation.

Output: `icao,movements`, busiest first (ties by code), gzip without a time stamp.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def known_airports(data: Path) -> set[str]:
    text = gzip.decompress((data / "airports.csv.gz").read_bytes()).decode("utf-8")
    rows = csv.reader(io.StringIO(text))
    next(rows, None)
    return {row[0] for row in rows}


def count_movements(src: Path, known: set[str]) -> Counter[str]:
    movements: Counter[str] = Counter()
    files = sorted(src.glob("*.json.gz"))
    if not files:
        sys.exit(f"no snapshots (*.json.gz) in {src}")
    for path in files:
        doc = json.loads(gzip.decompress(path.read_bytes()))
        for pilot in doc.get("pilots", []):
            plan = pilot.get("flight_plan") or {}
            for key in ("departure", "arrival"):
                code = str(plan.get(key) or "").strip().upper()
                if code in known:
                    movements[code] += 1
    return movements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=ROOT.parent / "shared/data/vatsim")
    parser.add_argument("--out", type=Path, default=ROOT / "swimctl/data")
    args = parser.parse_args()
    movements = count_movements(args.src, known_airports(args.out))
    lines = ["icao,movements"] + [
        f"{code},{n}" for code, n in sorted(movements.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    body = ("\n".join(lines) + "\n").encode()
    (args.out / "traffic.csv.gz").write_bytes(gzip.compress(body, compresslevel=9, mtime=0))
    print(f"traffic.csv.gz: {len(movements)} airports, {sum(movements.values())} movements")


if __name__ == "__main__":
    main()
