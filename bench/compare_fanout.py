"""Before and after: the figures of several bench/fanout.py runs of two checkouts, side by side.

    python bench/compare_fanout.py --side before b1.json b2.json --side after a1.json a2.json

For each figure: the hub's value in every run, the median of each side, its ratio to the first
side, and the peer's (bench/peer_websockets.py, the same code in every checkout) from the same
runs as the reference for machine noise: whatever moves the peer between sides is not the
hub's doing. Prints a markdown table; `--out FILE` writes it too.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

# (label, N, workload, figure name in fanout.py's summary)
FIGURES = [
    ("CPU µs/delivery, blast", 1000, "blast", "CPU µs/delivery"),
    ("CPU µs/delivery, blast", 10000, "blast", "CPU µs/delivery"),
    ("CPU µs/delivery, paced", 1000, "paced", "CPU µs/delivery"),
    ("CPU µs/delivery, paced", 10000, "paced", "CPU µs/delivery"),
    ("CPU µs/delivery, bare write loop (floor)", 1000, "floor",
     "CPU µs/delivery, each side's own floor"),
    ("CPU µs/delivery, bare write loop (floor)", 10000, "floor",
     "CPU µs/delivery, each side's own floor"),
    ("paced ÷ own bare write loop, same process and run", 1000, "paced/floor", ""),
    ("paced ÷ own bare write loop, same process and run", 10000, "paced/floor", ""),
    ("fan-out p99 ms, paced", 1000, "paced", "fan-out p99 ms"),
    ("fan-out p99 ms, paced", 10000, "paced", "fan-out p99 ms"),
    ("VATSIM cycle CPU ms, split subscribers", 1000, "vatsim", "CPU ms/cycle"),
    ("VATSIM cycle CPU ms, split subscribers", 10000, "vatsim", "CPU ms/cycle"),
    ("VATSIM cycle CPU ms, all airport-filtered", 1000, "vatsim-filtered", "CPU ms/cycle"),
    ("idle RSS KiB/connection", 1000, "idle", "RSS KiB/conn"),
    ("idle RSS KiB/connection", 10000, "idle", "RSS KiB/conn"),
]


def figure(run: dict[str, Any], n: int, workload: str, name: str, side: str) -> float | None:
    for row in run["summary"]:
        if row["n"] == n and row["workload"] == workload and row["figure"] == name:
            return float(row[side])
    return None


def paced_over_floor(run: dict[str, Any], n: int, side: str) -> float | None:
    """Paced CPU per delivery over the same process's bare write loop, in the same run."""
    paced = figure(run, n, "paced", "CPU µs/delivery", side)
    floor = figure(run, n, "floor", "CPU µs/delivery, each side's own floor", side)
    return paced / floor if paced and floor else None


def values(runs: list[dict[str, Any]], get: Any) -> list[float]:
    return [v for v in (get(r) for r in runs) if v is not None]


def fmt(v: float) -> str:
    return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"


def table(sides: list[tuple[str, list[dict[str, Any]]]]) -> str:
    """One row per figure: each side's hub values (median in bold), its ratio to the first
    side, then the peer's medians and ratios from the same runs."""
    base = sides[0][0]
    head = ["figure", "N"]
    head += [f"hub {name} ({len(runs)} runs)" for name, runs in sides]
    head += [f"hub {name}/{base}" for name, _ in sides[1:]]
    head += [f"peer {name}" for name, _ in sides]
    head += [f"peer {name}/{base}" for name, _ in sides[1:]]
    lines = ["| " + " | ".join(head) + " |",
             "|---|---:|" + "---|" * len(sides) + "---:|" * (len(head) - 2 - len(sides))]
    rows: list[tuple[str, int, Any]] = [
        (label, n, lambda r, side, n=n: paced_over_floor(r, n, side)) if w == "paced/floor"
        else (label, n, lambda r, side, n=n, w=w, f=f: figure(r, n, w, f, side))
        for label, n, w, f in FIGURES]
    for label, n, get in rows:
        hub = [values(runs, lambda r, g=get: g(r, "hub")) for _, runs in sides]
        peer = [values(runs, lambda r, g=get: g(r, "peer")) for _, runs in sides]
        if not all(hub):
            continue
        mh = [statistics.median(v) for v in hub]
        mp = [statistics.median(v) if v else float("nan") for v in peer]
        cells = [label, f"{n:,}"]
        cells += [f"**{fmt(m)}** ({', '.join(fmt(v) for v in vals)})"
                  for m, vals in zip(mh, hub, strict=True)]
        cells += [f"{m / mh[0]:.2f}" for m in mh[1:]]
        cells += [fmt(m) for m in mp]
        cells += [f"{m / mp[0]:.2f}" if mp[0] else "–" for m in mp[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", nargs="+", action="append", required=True,
                        metavar=("NAME", "JSON"),
                        help="a name and its fanout JSON files (repeat: the first is the base)")
    parser.add_argument("--out", help="also write the table here")
    args = parser.parse_args()
    sides = [(name, [json.loads(Path(p).read_text()) for p in files])
             for name, *files in args.side]
    text = table(sides)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
