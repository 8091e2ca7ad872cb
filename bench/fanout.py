"""Fan-out benchmark: the swimctl hub beside a `websockets` asyncio peer, in the same run.

    python bench/fanout.py --quick      # about 2 minutes: N = 100, 1,000, 10,000, one repetition
    python bench/fanout.py              # full: three repetitions each, medians reported

Each side is one server process (the real `run_service`, or bench/peer_websockets.py) and
several load-generator processes (bench/loadgen.py) holding the client connections on
127.0.0.1. Workloads, per N: idle (RSS per connection), blast (M small events back to back),
paced (a fixed broadcast rate), floor (the paced events by a bare os.write loop in each
server's process: the least any one-write-per-delivery server could spend), vatsim (2,000-
position batch + 30 lifecycle events per cycle; subscribers split between no filter and
distinct airport filters) and, at N <= 1,000, vatsim-filtered (every subscriber a distinct
airport filter). Server CPU comes from
/proc/PID/stat over the whole phase, deliveries are counted by the clients. Results go to
bench/results/fanout-<mode>-<time>.json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from array import array
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from hub_server import hub_main  # noqa: E402
from loadgen import client_main, raise_nofile  # noqa: E402
from peer_websockets import peer_main  # noqa: E402
from workload import subscriber_filter  # noqa: E402

CTX = mp.get_context("spawn")
TICK = os.sysconf("SC_CLK_TCK")
PHASE_TIMEOUT = 90.0


def proc_cpu(pid: int) -> float:
    """utime + stime of a process, seconds (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pct(values: list[float] | array, q: float) -> float:
    if not len(values):
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


class Side:
    """One server (hub or peer) and the load-generator processes connected to it."""

    def __init__(self, kind: str, n: int, procs: int, pin: bool, *,
                 server_option: Any = None, deflate: bool = False) -> None:
        """`server_option`: the hub's HubConfig overrides or the peer's `compression`;
        `deflate`: the clients offer permessage-deflate (bench/compression.py)."""
        self.kind, self.n = kind, n
        self.pipe, child = CTX.Pipe()
        target = hub_main if kind.startswith("hub") else peer_main
        cpus = sorted(os.sched_getaffinity(0))
        server_cpus = {cpus[0]} if pin and len(cpus) > 1 else None
        client_cpus = set(cpus[1:]) if server_cpus else None
        self.proc = CTX.Process(target=target, args=(child, server_cpus, server_option),
                                daemon=True)
        self.proc.start()
        tag, info = self.pipe.recv()
        assert tag == "ready", tag
        self.pid, self.port, self.key = info["pid"], info["port"], info["key"]
        self.clients: list[tuple[Any, Any]] = []
        for _ in range(procs):
            parent, child = CTX.Pipe()
            proc = CTX.Process(target=client_main,
                               args=(child, "127.0.0.1", self.port, self.key, client_cpus,
                                     deflate),
                               daemon=True)
            proc.start()
            self.clients.append((parent, proc))
        self.shares = [list(range(i, n, procs)) for i in range(procs)]
        self.unfiltered = n  # subscribers taking everything (the rest: one airport each)

    def call(self, *msg: Any) -> Any:
        self.pipe.send(msg)
        return self.pipe.recv()

    def connect(self) -> dict[str, float]:
        self.call("gc")
        rss0 = proc_rss_kib(self.pid)
        t0 = time.perf_counter()
        for (pipe, _), share in zip(self.clients, self.shares, strict=True):
            pipe.send(("connect", share))
        ready = sum(pipe.recv()[1] for pipe, _ in self.clients)
        took = time.perf_counter() - t0
        time.sleep(1.0)
        self.call("gc")
        rss1 = proc_rss_kib(self.pid)
        if ready != self.n:
            raise RuntimeError(f"{self.kind}: only {ready} of {self.n} clients connected")
        return {"connect_s": took, "rss0_kib": rss0, "rss1_kib": rss1,
                "idle_kib_per_conn": (rss1 - rss0) / self.n}

    def subscribe(self, unfiltered: int) -> None:
        """The first `unfiltered` subscribers take everything; the rest one airport each
        (nothing is sent when that is already so)."""
        if unfiltered == self.unfiltered:
            return
        self.unfiltered = unfiltered
        for (pipe, _), share in zip(self.clients, self.shares, strict=True):
            pipe.send(("subscribe", {i: subscriber_filter(i, i >= unfiltered) for i in share}))
        ready = sum(pipe.recv()[1] for pipe, _ in self.clients)
        if ready != self.n:
            raise RuntimeError(f"{self.kind}: {ready} of {self.n} re-subscribed")

    def phase(self, phase: int, cmd: str, params: dict[str, Any]) -> dict[str, Any]:
        for pipe, _ in self.clients:
            pipe.send(("phase", phase))
        for pipe, _ in self.clients:
            assert pipe.recv()[0] == "armed"
        cpu0 = proc_cpu(self.pid)
        t0 = time.perf_counter()
        tag, server = self.call(cmd, phase, params)
        assert tag == "done", tag
        reports = []
        for pipe, _ in self.clients:
            if not pipe.poll(PHASE_TIMEOUT):
                raise RuntimeError(f"{self.kind} {cmd}: clients did not finish in time")
            reports.append(pipe.recv()[1])
        wall = time.perf_counter() - t0
        cpu = proc_cpu(self.pid) - cpu0
        lat = array("d")
        for r in reports:
            lat.frombytes(r["lat"])
        deliveries = sum(r["deliveries"] for r in reports)
        published = server["published"]
        unfiltered_ok = all(r["unfiltered_min"] == r["unfiltered_max"] == published
                            for r in reports if r["unfiltered_conns"])
        out = {
            "side": self.kind, "workload": cmd, "n": self.n, "params": params,
            "published": published, "deliveries": deliveries, "wall_s": wall,
            "positions_bytes": sum(r.get("positions_bytes", 0) for r in reports),
            "positions_deliveries": sum(r.get("positions_deliveries", 0) for r in reports),
            "compressed_frames": sum(r.get("compressed_frames", 0) for r in reports),
            "server_cpu_s": cpu,
            "deliveries_per_s": deliveries / wall if wall else 0.0,
            "cpu_us_per_delivery": cpu / deliveries * 1e6 if deliveries else 0.0,
            "fanout_event_ms": {k: v * 1e3 if k != "n" else v
                                for k, v in server["fanout_event"].items()},
            "fanout_positions_ms": {k: v * 1e3 if k != "n" else v
                                    for k, v in server["fanout_positions"].items()},
            "publish_cpu_s": server["publish_cpu"],
            "fanout_steps": server.get("fanout_steps"),
            "short_writes": server.get("short_writes", 0),
            "latency_ms": {"p50": pct(lat, 0.5) * 1e3, "p99": pct(lat, 0.99) * 1e3},
            "order_errors": sum(r["order_errors"] for r in reports),
            "parse_errors": sum(r["parse_errors"] for r in reports),
            "closed": sum(r["closed"] for r in reports),
            "unfiltered_complete": unfiltered_ok,
            "slow_consumers": server["slow_consumers"],
            "backlogged_at_end": server.get("backlogged_at_end"),
        }
        if cmd == "vatsim":
            out["cpu_ms_per_cycle"] = cpu / params["cycles"] * 1e3
        return out

    def stop(self) -> None:
        for pipe, proc in self.clients:
            try:
                pipe.send(("stop",))
                pipe.poll(10) and pipe.recv()
            except (BrokenPipeError, EOFError, OSError):
                pass
            proc.join(5)
            if proc.is_alive():
                proc.kill()
        with contextlib.suppress(BrokenPipeError, EOFError, OSError):
            self.call("stop")
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()


def plan(n: int, full: bool) -> list[tuple[str, dict[str, Any], int]]:
    """(workload, params, unfiltered subscribers) in the order run, sized to ~1-3 s each."""
    scale = 2 if full else 1
    blast = max(10, min(4000, 200_000 * scale // n))
    rate = max(2.0, 40_000 / n)
    seconds = 4.0 if full else 2.0
    cycles = 5 if full else 3
    unfiltered = min(n // 10, 100)
    steps: list[tuple[str, dict[str, Any], int]] = [
        ("blast", {"count": blast}, n),
        ("paced", {"rate": rate, "count": int(rate * seconds)}, n),
        ("floor", {"rate": rate, "count": int(rate * seconds)}, n),  # bare loop, each side
        ("vatsim", {"cycles": cycles, "interval": 0.5 if n <= 1000 else 1.5}, unfiltered),
    ]
    if n <= 1000:
        steps.append(("vatsim-filtered", {"cycles": cycles * 2, "interval": 0.25}, 0))
    return steps


def run(ns: list[int], reps: int, full: bool, budget: float, pin: bool) -> dict[str, Any]:
    raise_nofile()
    deadline = time.monotonic() + budget
    results: dict[str, Any] = {"runs": [], "idle": [], "started": time.time(),
                               "host": platform.node(), "python": platform.python_version(),
                               "cpus": os.cpu_count(), "reps": reps, "pinned": pin,
                               "mode": "full" if full else "quick"}
    phase = 0
    for n in ns:
        if time.monotonic() > deadline:
            print(f"time budget spent: skipping N={n}", flush=True)
            continue
        procs = 1 if n <= 100 else 2 if n <= 1000 else 4
        sides = {}
        try:
            for kind in ("hub", "peer"):
                sides[kind] = Side(kind, n, procs, pin)
                idle = {"side": kind, "n": n, **sides[kind].connect()}
                results["idle"].append(idle)
                print(f"N={n:>6} {kind:4} connected in {idle['connect_s']:.1f}s, idle "
                      f"{idle['idle_kib_per_conn']:.1f} KiB/conn", flush=True)
            for rep in range(reps):
                order = ("hub", "peer") if rep % 2 == 0 else ("peer", "hub")
                for workload, params, unfiltered in plan(n, full):
                    cmd = "vatsim" if workload.startswith("vatsim") else workload
                    for kind in order:
                        side = sides[kind]
                        side.subscribe(unfiltered)
                        phase += 1
                        rec = side.phase(phase, cmd, params)
                        rec["workload"], rec["rep"] = workload, rep
                        results["runs"].append(rec)
                        extra = (f" cycle {rec['cpu_ms_per_cycle']:.1f} ms CPU"
                                 if "cpu_ms_per_cycle" in rec else "")
                        print(f"N={n:>6} {kind:4} {workload:15} {rec['deliveries']:>8} deliv "
                              f"{rec['cpu_us_per_delivery']:6.2f} us/deliv "
                              f"fan-out p99 {rec['fanout_event_ms']['p99']:7.2f} ms "
                              f"lat p99 {rec['latency_ms']['p99']:8.1f} ms{extra} "
                              f"err {rec['order_errors']}/{rec['parse_errors']}"
                              f"{'' if rec['unfiltered_complete'] else ' INCOMPLETE'}",
                              flush=True)
        finally:
            for side in sides.values():
                side.stop()
    results["summary"] = summarize(results)
    return results


FIGURES = [
    ("deliveries/s", lambda r: r["deliveries_per_s"], "{:,.0f}"),
    ("CPU µs/delivery", lambda r: r["cpu_us_per_delivery"], "{:.2f}"),
    ("fan-out p50 ms", lambda r: r["fanout_event_ms"]["p50"], "{:.2f}"),
    ("fan-out p99 ms", lambda r: r["fanout_event_ms"]["p99"], "{:.2f}"),
    ("positions fan-out p50 ms", lambda r: r["fanout_positions_ms"]["p50"], "{:.1f}"),
    ("latency p50 ms", lambda r: r["latency_ms"]["p50"], "{:.2f}"),
    ("latency p99 ms", lambda r: r["latency_ms"]["p99"], "{:.2f}"),
    ("CPU ms/cycle", lambda r: r.get("cpu_ms_per_cycle", 0.0), "{:.1f}"),
]


WORKLOADS = ["blast", "paced", "floor", "vatsim", "vatsim-filtered"]


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Median per (N, workload, side) of each figure, and hub/peer ratios."""
    rows = []
    keys = sorted({(r["n"], r["workload"]) for r in results["runs"]},
                  key=lambda k: (k[0], WORKLOADS.index(k[1])))
    for n, workload in keys:
        for name, get, fmt in FIGURES:
            vals = {}
            for side in ("hub", "peer"):
                # The hub's floor is set beside the peer's paced runs (see markdown()).
                wanted = "paced" if workload == "floor" and side == "peer" else workload
                runs = [r for r in results["runs"]
                        if r["n"] == n and r["workload"] == wanted and r["side"] == side]
                vals[side] = statistics.median(get(r) for r in runs) if runs else 0.0
            if not vals["hub"] and not vals["peer"]:
                continue
            if name.startswith("positions") and not workload.startswith("vatsim"):
                continue
            rows.append({"n": n, "workload": workload, "figure": name, "fmt": fmt, **vals,
                         "ratio": vals["hub"] / vals["peer"] if vals["peer"] else None})
            if workload == "floor" and name == "CPU µs/delivery":
                own = {side: [get(r) for r in results["runs"] if r["n"] == n
                              and r["workload"] == "floor" and r["side"] == side]
                       for side in ("hub", "peer")}
                if own["hub"] and own["peer"]:
                    h, p = statistics.median(own["hub"]), statistics.median(own["peer"])
                    rows.append({"n": n, "workload": workload,
                                 "figure": "CPU µs/delivery, each side's own floor",
                                 "fmt": fmt, "hub": h, "peer": p, "ratio": h / p})
    for n in sorted({i["n"] for i in results["idle"]}):
        vals = {i["side"]: i["idle_kib_per_conn"] for i in results["idle"] if i["n"] == n}
        rows.append({"n": n, "workload": "idle", "figure": "RSS KiB/conn", "fmt": "{:.1f}",
                     "hub": vals.get("hub", 0.0), "peer": vals.get("peer", 0.0),
                     "ratio": vals["hub"] / vals["peer"] if vals.get("peer") else None})
    return rows


def markdown(results: dict[str, Any]) -> str:
    errors = sum(r["order_errors"] + r["parse_errors"] for r in results["runs"])
    incomplete = sum(1 for r in results["runs"] if not r["unfiltered_complete"])
    short = sum(r.get("short_writes") or 0 for r in results["runs"])
    lines = [
        f"# Fan-out benchmark ({results['mode']}, {results['reps']} repetition(s), medians)",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(results['started']))} UTC, "
        f"Python {results['python']}, {results['cpus']} CPUs, server pinned to its own CPU: "
        f"{results['pinned']}. Frames out of order or "
        f"unparsable: {errors}; phases where an unfiltered client missed an event: "
        f"{incomplete}; short writes in the floor loop (would void it): {short}.",
        "",
        "\"floor\" is the paced workload written by a bare loop in each server's process, one "
        "`os.write` per connection and no server code. Its first rows set the hub's floor "
        "beside the peer's paced run, so that ratio is the lowest any one-write-per-delivery "
        "server could reach here; the row \"each side's own floor\" compares the two floors.",
        "",
        "| N | workload | figure | hub | peer | hub/peer |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for row in results["summary"]:
        fmt = row["fmt"]
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "–"
        lines.append(f"| {row['n']:,} | {row['workload']} | {row['figure']} | "
                     f"{fmt.format(row['hub'])} | {fmt.format(row['peer'])} | {ratio} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repetition (~2 minutes)")
    parser.add_argument("--reps", type=int, help="repetitions (default 1 quick, 3 full)")
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--budget", type=float, help="seconds before remaining N are skipped")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--pin", action="store_true",
                        help="pin the server to CPU 0 and the load generators to the rest (on a "
                        "shared 2-core box this made every figure worse: off by default)")
    args = parser.parse_args()
    full = not args.quick
    reps = args.reps or (3 if full else 1)
    budget = args.budget or (600.0 if full else 150.0)
    results = run(args.n, reps, full, budget, args.pin)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(results["started"]))
    base = out / f"fanout-{results['mode']}-{stamp}"
    base.with_suffix(".json").write_text(json.dumps(results, indent=1))
    text = markdown(results)
    base.with_suffix(".md").write_text(text)
    print(text)
    print(f"saved {base}.json and .md")


if __name__ == "__main__":
    main()
