"""Compression benchmark: the hub with permessage-deflate beside itself without it, and beside
a `websockets` peer compressing per connection (its default), in the same run.

    python bench/compression.py --quick    # N = 1,000 and 10,000, one repetition (~4 minutes)
    python bench/compression.py            # three repetitions, medians (~8 minutes)

Three servers hold N connections each, every client offering permessage-deflate the way
`websockets` and browsers do (bench/loadgen.py inflates what comes compressed):

- hub-plain: the hub with `--compression off` (it declines the offer): the baseline;
- hub-deflate: the hub as shipped, one compressed frame per event shared by its clients;
- peer-deflate: bench/peer_websockets.py with websockets' default compression, which keeps
  a compressor per connection and compresses each message once per client.

Workloads (bench/workload.py, the same traffic for all three): `vatsim`, VATSIM-shaped cycles
(a 2,000-flight positions batch and 30 lifecycle events; min(N/10, 100) subscribers take
everything, the rest one airport each, so positions go out whole and as slices); `paced`,
lifecycle events at a steady rate; `blast`, lifecycle events back to back. Figures: server CPU
per delivery from /proc; wire bytes per positions delivery (a batch in parts counts once, with
all its parts' bytes) counted by the clients; publish -> delivery latency seen by the clients
(who inflate on the same machine) and the server's own fan-out time (publish -> the last
client's bytes handed to its socket); idle RSS per connection. Results go to
bench/results/compression-<mode>-<time>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from fanout import Side, raise_nofile  # noqa: E402

SIDES: dict[str, tuple[str, Any]] = {  # name: (server, its option)
    "hub-plain": ("hub", {"compression": False}),
    "hub-deflate": ("hub", {"compression": True}),
    "peer-deflate": ("peer", "deflate"),
}


def plan(n: int, full: bool) -> list[tuple[str, dict[str, Any], int]]:
    """(workload, params, unfiltered subscribers), each phase about 2-6 s."""
    cycles = 4 if full else 3
    return [
        ("vatsim", {"cycles": cycles, "interval": 0.5 if n <= 1000 else 1.5}, min(n // 10, 100)),
        ("paced", {"rate": max(2.0, 40_000 / n), "count": int(max(2.0, 40_000 / n) * 2)}, n),
        ("blast", {"count": max(10, min(400, 100_000 // n))}, n),
    ]


def run(ns: list[int], reps: int, full: bool, pin: bool) -> dict[str, Any]:
    raise_nofile()
    results: dict[str, Any] = {"runs": [], "idle": [], "started": time.time(), "reps": reps,
                               "mode": "full" if full else "quick"}
    phase = 10_000
    for n in ns:
        procs = 2 if n <= 1000 else 4
        sides: dict[str, Side] = {}
        try:
            for name, (kind, option) in SIDES.items():
                side = sides[name] = Side(kind, n, procs, pin, server_option=option,
                                          deflate=True)
                side.kind = name
                idle = {"side": name, "n": n, **side.connect()}
                results["idle"].append(idle)
                print(f"N={n:>6} {name:12} connected in {idle['connect_s']:.1f}s, idle "
                      f"{idle['idle_kib_per_conn']:.1f} KiB/conn", flush=True)
            names = list(sides)
            for rep in range(reps):
                order = names[rep % 3:] + names[:rep % 3]  # each side goes first in turn
                for workload, params, unfiltered in plan(n, full):
                    for name in order:
                        side = sides[name]
                        side.subscribe(unfiltered)
                        phase += 1
                        rec = side.phase(phase, workload, params)
                        rec["side"], rec["rep"] = name, rep
                        results["runs"].append(rec)
                        per_frame = (rec["positions_bytes"] / rec["positions_deliveries"]
                                     if rec["positions_deliveries"] else 0.0)
                        print(f"N={n:>6} {name:12} {workload:7} {rec['deliveries']:>8} deliv "
                              f"{rec['cpu_us_per_delivery']:7.2f} us/deliv "
                              f"positions {per_frame:9.0f} B/delivery "
                              f"lat p99 {rec['latency_ms']['p99']:8.1f} ms "
                              f"compressed {rec['compressed_frames']} "
                              f"err {rec['order_errors']}/{rec['parse_errors']}"
                              f"{'' if rec['unfiltered_complete'] else ' INCOMPLETE'}",
                              flush=True)
        finally:
            for side in sides.values():
                side.stop()
    results["summary"] = summarize(results)
    return results


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Medians per (N, workload, side), and the ratios the targets are stated in."""
    rows: list[dict[str, Any]] = []
    for n in sorted({r["n"] for r in results["runs"]}):
        for workload in ("vatsim", "paced", "blast"):
            runs = {name: [r for r in results["runs"] if r["n"] == n
                           and r["workload"] == workload and r["side"] == name]
                    for name in SIDES}
            figures = {
                "CPU µs/delivery": lambda r: r["cpu_us_per_delivery"],
                "latency p99 ms": lambda r: r["latency_ms"]["p99"],
                "latency p50 ms": lambda r: r["latency_ms"]["p50"],
                "server fan-out p99 ms": lambda r: r["fanout_event_ms"]["p99"],
            }
            if workload == "vatsim":
                figures["server positions fan-out p99 ms"] = (
                    lambda r: r["fanout_positions_ms"]["p99"])
                figures["wire bytes per positions delivery"] = (
                    lambda r: r["positions_bytes"] / r["positions_deliveries"]
                    if r["positions_deliveries"] else 0.0)
            for figure, get in figures.items():
                vals = {name: median([get(r) for r in rs]) for name, rs in runs.items()}
                rows.append({"n": n, "workload": workload, "figure": figure, **vals})
        idle = {i["side"]: i["idle_kib_per_conn"] for i in results["idle"] if i["n"] == n}
        rows.append({"n": n, "workload": "idle", "figure": "RSS KiB/conn", **idle})
    for row in rows:
        plain, deflate, peer = (row.get(name, 0.0) for name in SIDES)
        row["deflate/plain"] = deflate / plain if plain else None
        row["deflate/peer"] = deflate / peer if peer else None
    return rows


def markdown(results: dict[str, Any]) -> str:
    errors = sum(r["order_errors"] + r["parse_errors"] for r in results["runs"])
    incomplete = sum(1 for r in results["runs"] if not r["unfiltered_complete"])
    lines = [
        f"# Compression benchmark ({results['mode']}, {results['reps']} repetition(s), "
        "medians)",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(results['started']))} UTC. Every "
        "client offers permessage-deflate. Frames out of order or unparsable: "
        f"{errors}; phases where an unfiltered client missed an event: {incomplete}.",
        "",
        "| N | workload | figure | hub-plain | hub-deflate | peer-deflate | deflate/plain "
        "| deflate/peer |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in results["summary"]:
        cells = [f"{row.get(name, 0.0):,.2f}" for name in SIDES]
        ratios = [f"{row[k]:.2f}" if row[k] is not None else "–"
                  for k in ("deflate/plain", "deflate/peer")]
        lines.append(f"| {row['n']:,} | {row['workload']} | {row['figure']} | "
                     + " | ".join(cells + ratios) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repetition")
    parser.add_argument("--reps", type=int, help="repetitions (default 1 quick, 3 full)")
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--pin", action="store_true",
                        help="servers on one CPU, load generators on the others")
    args = parser.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    results = run(args.n, reps, not args.quick, args.pin)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"compression-{results['mode']}-{time.strftime('%Y%m%d-%H%M%S')}"
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str))
    text = markdown(results)
    (out / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
