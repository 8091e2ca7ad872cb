"""Several hubs on one Redis (issue 15): what `serve --broker` costs beside the in-process stream.

    python bench/broker.py              # 5 repetitions, about 3-4 minutes
    python bench/broker.py --reps 1     # one repetition

Starts, on 127.0.0.1 only, a redis-server of its own on a free port (tests/redis_server.py)
and four `swimctl serve` processes from this checkout (bench/abuse.py's `Hub`: a fresh key
store each, a system-tier key, connection caps lifted):

- **A**: no `--broker`, `--state-dir none`: the in-process stream (stream/memory.py);
- **B**: `--broker redis://…/0`, alone on DB 0 of the fresh redis-server;
- **C1, C2**: `--broker redis://…/1`, two hubs on DB 1 of the same redis-server.

Load generators (bench/loadgen.py, nice 10) hold N unfiltered subscribers on A and on B, and
N/2 on each of C1 and C2. A publisher process holds system-tier WebSocket connections to the
hubs (raw frames, loadgen's parser) and publishes ~330-byte `flight.departed` events stamped
with their send time (bench/workload.py), so a subscriber's receive time minus `t` is the
publish→deliver latency, through the hub's publish path, the log and the fan-out. A client
may not publish `system.mark`, so a phase ends when every subscriber has received a marker
event (`flight.updated` carrying `bench_mark`) published after every event of the phase was
acknowledged.

Phases of one repetition (the order of each pair alternates between repetitions):

- paced A, paced B: `--rate` events/s for `--seconds` on one connection → latency p50/p99 and
  hub CPU per delivery (utime + stime from /proc/PID/stat over the phase / deliveries counted
  by the clients);
- blast B, blast C: `--blast` events as fast as `--pub-conns` publishing connections (each
  with `--window` unacknowledged) get them appended; in C the connections are split over the
  two hubs. → delivered events per second in total (end to end: first publish to the last
  subscriber's marker) and CPU per delivery over both hubs;
- blast A: the same against the in-process stream, for reference.

Each phase also records each hub's fan-out steps (`swim_fanout_seconds_count` from its
`/metrics`, read outside the CPU window): one per event unless coalescing joined a burst.

Results: bench/results/broker-<time>.json (every phase) and .md (medians over repetitions,
ratios, the three targets of issue 15). `--pool A.json B.json …` prints the same summary over
the repetitions of several result files together, without running anything.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from abuse import Hub  # noqa: E402
from fanout import CTX, pct, proc_cpu  # noqa: E402
from loadgen import Conn, LoadGen, client_frame, raise_nofile  # noqa: E402
from workload import small_event, stamp  # noqa: E402

from tests.redis_server import RedisServer  # noqa: E402

PHASE_TIMEOUT = 90.0
EVENT = "flight.departed"
MARK = "flight.updated"  # the phase's end marker: a type a system-tier key may publish
MARK_FIELD = b'"bench_mark"'
STEPS = "swim_fanout_seconds_count"
HUB_ARGS = ["--tier-limit", "system=100000", "--handshakes-per-address", "0",
            "--heartbeat", "3600", "--coalesce-ms", "1"]


# -- the subscribers: loadgen's clients, with a published marker ending each phase -------------


UID = b'"flight_uid":'


class MarkedLoadGen(LoadGen):
    """bench/loadgen.py's client; the phase's end is a published `bench_mark` event. It also
    keeps, per event (`flight_uid`), the earliest receive time minus `t` over its
    connections: the latency to the first subscriber, without the fan-out's spread."""

    def reset_phase(self) -> None:
        super().reset_phase()
        self.first: dict[int, float] = {}

    def report(self) -> dict[str, Any]:
        return {**super().report(), "first": self.first}

    def message(self, conn: Conn, payload: bytes, now: float, wire: int = 0) -> None:
        if MARK_FIELD not in payload:
            count = len(self.lat)
            super().message(conn, payload, now)
            if len(self.lat) > count:
                at = payload.find(UID) + len(UID)
                uid = int(payload[at:payload.index(b",", at)])
                lat = self.lat[-1]
                if lat < self.first.get(uid, float("inf")):
                    self.first[uid] = lat
            return
        msg = orjson.loads(payload)
        seq = msg.get("seq")
        if seq is not None:
            if seq <= conn.last_seq:
                self.order_errors += 1
            conn.last_seq = seq
        if msg["data"].get("bench_mark") == self.phase and conn.phase_seen != self.phase:
            conn.phase_seen = self.phase
            self.done += 1


def subscriber_main(pipe: Any, port: int, key: str) -> None:
    """One load-generator process (as loadgen.client_main, with the marked client)."""
    raise_nofile()
    os.nice(10)
    MarkedLoadGen(pipe, "127.0.0.1", port, key).run()


class Subscribers:
    """N subscribers on one hub, over `procs` load-generator processes."""

    def __init__(self, hub: Hub, n: int, procs: int) -> None:
        self.hub, self.n = hub, n
        self.clients: list[tuple[Any, Any]] = []
        for _ in range(procs):
            parent, child = CTX.Pipe()
            proc = CTX.Process(target=subscriber_main,
                               args=(child, hub.port, hub.keys["system"]), daemon=True)
            proc.start()
            self.clients.append((parent, proc))
        self.shares = [list(range(i, n, procs)) for i in range(procs)]

    def connect(self) -> float:
        t0 = time.perf_counter()
        for (pipe, _), share in zip(self.clients, self.shares, strict=True):
            pipe.send(("connect", share))
        ready = sum(pipe.recv()[1] for pipe, _ in self.clients)
        if ready != self.n:
            raise RuntimeError(f"only {ready} of {self.n} subscribers connected")
        return time.perf_counter() - t0

    def arm(self, phase: int) -> None:
        for pipe, _ in self.clients:
            pipe.send(("phase", phase))
        for pipe, _ in self.clients:
            assert pipe.recv()[0] == "armed"

    def reports(self) -> list[dict[str, Any]]:
        out = []
        for pipe, _ in self.clients:
            if not pipe.poll(PHASE_TIMEOUT):
                raise RuntimeError("subscribers did not see the phase's marker in time")
            out.append(pipe.recv()[1])
        return out

    def stop(self) -> None:
        for pipe, proc in self.clients:
            with contextlib.suppress(BrokenPipeError, EOFError, OSError):
                pipe.send(("stop",))
                pipe.poll(10) and pipe.recv()
            proc.join(5)
            if proc.is_alive():
                proc.kill()


# -- the publisher ------------------------------------------------------------------------------


class Publisher(LoadGen):
    """Publishing connections: loadgen's sockets, handshake and frame parser, no subscription.
    Driven over a pipe: ("open", name, port, key, count), ("publish", spec), ("stop",)."""

    def __init__(self, pipe: Any) -> None:
        super().__init__(pipe, "127.0.0.1", 0, "")
        self.groups: dict[str, list[Conn]] = {}
        self.acks: dict[int, int] = {}
        self.errors: list[dict[str, Any]] = []
        self.next_index = 0

    def message(self, conn: Conn, payload: bytes, now: float, wire: int = 0) -> None:
        msg = orjson.loads(payload)
        kind = msg.get("type")
        if kind == "connected":
            conn.state = "ready"
        elif kind == "publish_ack":
            self.acks[conn.index] = self.acks.get(conn.index, 0) + 1
        elif kind == "error":
            self.acks[conn.index] = self.acks.get(conn.index, 0) + 1
            self.errors.append(msg)

    def open(self, name: str, port: int, key: str, count: int) -> int:
        self.port, self.key = port, key
        before = set(self.conns)
        indices = list(range(self.next_index, self.next_index + count))
        self.next_index += count
        self.connect(indices, timeout=30.0)
        conns = [self.conns[fd] for fd in set(self.conns) - before]
        for conn in conns:
            conn.sock.settimeout(10)  # sendall waits rather than fail on a full buffer
        self.groups[name] = conns
        return sum(1 for c in conns if c.state == "ready")

    def send(self, conn: Conn, etype: str, data: dict[str, Any]) -> None:
        body = {"action": "publish", "channel": etype, "data": data}
        conn.sock.sendall(client_frame(orjson.dumps(body)))

    def acked(self, conns: list[Conn]) -> int:
        return sum(self.acks.get(c.index, 0) for c in conns)

    def wait_acks(self, conns: list[Conn], want: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.acked(conns) < want:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.acked(conns)} of {want} publishes acknowledged")
            self.poll(0.01)

    def publish(self, spec: dict[str, Any]) -> dict[str, Any]:
        groups = [self.groups[name] for name in spec["hubs"]]
        # Taken in turn from each hub's connections, so a split blast is split evenly.
        conns = [g[i] for i in range(max(map(len, groups))) for g in groups
                 if i < len(g)][:spec["conns"]]
        base = self.acked(conns)
        errors0 = len(self.errors)
        count = spec["count"]
        t0 = time.perf_counter()
        if spec["kind"] == "paced":
            rate = spec["rate"]
            for i in range(count):
                target = t0 + i / rate
                while (wait := target - time.perf_counter()) > 0:
                    self.poll(min(wait, 0.02))
                self.send(conns[0], EVENT, stamp(small_event(i)))
        else:  # blast: round robin, at most `window` unacknowledged on each connection
            sent = {c.index: 0 for c in conns}
            done0 = {c.index: self.acks.get(c.index, 0) for c in conns}
            i = 0
            while i < count:
                for conn in conns:
                    room = spec["window"] - (sent[conn.index]
                                             - (self.acks.get(conn.index, 0)
                                                - done0[conn.index]))
                    for _ in range(max(0, min(room, count - i))):
                        self.send(conn, EVENT, stamp(small_event(i)))
                        sent[conn.index] += 1
                        i += 1
                self.poll(0.001)
        self.wait_acks(conns, base + count)
        appended = time.perf_counter() - t0
        self.send(conns[0], MARK, {"callsign": "MARK", "bench_mark": spec["phase"]})
        self.wait_acks(conns, base + count + 1)
        return {"sent": count, "append_s": appended, "errors": len(self.errors) - errors0,
                "first_error": self.errors[errors0] if len(self.errors) > errors0 else None}

    def serve(self) -> None:
        while True:
            cmd, *args = self.pipe.recv()
            if cmd == "open":
                self.pipe.send(("opened", self.open(*args)))
            elif cmd == "publish":
                self.pipe.send(("published", self.publish(args[0])))
            elif cmd == "stop":
                for conn in self.conns.values():
                    conn.sock.close()
                self.pipe.send(("stopped",))
                return


def publisher_main(pipe: Any) -> None:
    raise_nofile()
    Publisher(pipe).serve()


# -- the run ------------------------------------------------------------------------------------


class Bench:
    def __init__(self, work: Path, n: int, pub_conns: int) -> None:
        self.work, self.n, self.pub_conns = work, n, pub_conns
        self.redis = RedisServer(work / "redis")
        self.hubs: dict[str, Hub] = {}
        self.subs: dict[str, Subscribers] = {}
        self.pub: Any = None
        self.phase_no = 0

    def start(self) -> None:
        work, n, pub_conns = self.work, self.n, self.pub_conns
        self.redis.start()
        db0 = f"redis://127.0.0.1:{self.redis.port}/0"
        db1 = f"redis://127.0.0.1:{self.redis.port}/1"
        self.hubs = {
            "A": Hub(work, "A", *HUB_ARGS, state=False),
            "B": Hub(work, "B", *HUB_ARGS, "--broker", db0, state=False),
            "C1": Hub(work, "C1", *HUB_ARGS, "--broker", db1, state=False),
            "C2": Hub(work, "C2", *HUB_ARGS, "--broker", db1, state=False),
        }
        for hub in self.hubs.values():
            hub.start()
        procs = 2 if n >= 1000 else 1
        for name, hub in self.hubs.items():
            size = n if name in ("A", "B") else n // 2
            self.subs[name] = Subscribers(hub, size, procs if size >= 1000 else 1)
        self.pub_pipe, child = CTX.Pipe()
        self.pub = CTX.Process(target=publisher_main, args=(child,), daemon=True)
        self.pub.start()
        for name, hub in self.hubs.items():
            count = pub_conns if name in ("A", "B") else pub_conns // 2
            self.pub_pipe.send(("open", name, hub.port, hub.keys["system"], count))
            opened = self.pub_pipe.recv()[1]
            if opened != count:
                raise RuntimeError(f"{name}: {opened} of {count} publishing connections")
        self.connect_s = {name: subs.connect() for name, subs in self.subs.items()}

    def phase(self, config: str, spec: dict[str, Any]) -> dict[str, Any]:
        names = ["C1", "C2"] if config == "C" else [config]
        groups = [self.subs[name] for name in names]
        self.phase_no += 1
        for group in groups:
            group.arm(self.phase_no)
        pids = {name: self.hubs[name].pid for name in names}
        steps0 = {name: self.hubs[name].metric(STEPS) for name in names}
        cpu0 = {name: proc_cpu(pid) for name, pid in pids.items()}
        redis0 = proc_cpu(self.redis.proc.pid)
        t0 = time.perf_counter()
        self.pub_pipe.send(("publish", {**spec, "hubs": names, "phase": self.phase_no}))
        if not self.pub_pipe.poll(PHASE_TIMEOUT):
            raise RuntimeError(f"{config}: publishing did not finish in time")
        published = self.pub_pipe.recv()[1]
        by_hub = {name: group.reports() for name, group in zip(names, groups, strict=True)}
        wall = time.perf_counter() - t0
        cpu = {name: proc_cpu(pid) - cpu0[name] for name, pid in pids.items()}
        redis_cpu = proc_cpu(self.redis.proc.pid) - redis0
        steps = {name: self.hubs[name].metric(STEPS) - steps0[name] for name in names}
        reports = [r for name in names for r in by_hub[name]]
        lat = array("d")
        first: dict[int, float] = {}
        for r in reports:
            lat.frombytes(r["lat"])
            for uid, value in r["first"].items():
                first[uid] = min(value, first.get(uid, value))
        firsts = list(first.values())
        deliveries = sum(r["deliveries"] for r in reports)
        per_hub = {}
        for name in names:
            got = sum(r["deliveries"] for r in by_hub[name])
            per_hub[name] = {"deliveries": got, "cpu_s": cpu[name], "fanout_steps": steps[name],
                             "cpu_us_per_delivery": cpu[name] / got * 1e6 if got else 0.0}
        total_cpu = sum(cpu.values())
        sent = published["sent"]
        complete = all(r["unfiltered_min"] == r["unfiltered_max"] == sent for r in reports)
        return {
            "config": config, "workload": spec["kind"], "spec": spec,
            "subscribers": sum(group.n for group in groups),
            "published": sent, "append_s": published["append_s"],
            "publish_errors": published["errors"], "first_error": published["first_error"],
            "deliveries": deliveries, "complete": complete,
            "wall_s": wall, "deliveries_per_s": deliveries / wall if wall else 0.0,
            "hub_cpu_s": total_cpu,
            # fan-out steps (the hubs' swim_fanout_seconds_count): one per event unless
            # coalescing joined a burst; the marker and its flush count too
            "fanout_steps_per_hub": statistics.mean(steps.values()),
            "cpu_us_per_delivery": total_cpu / deliveries * 1e6 if deliveries else 0.0,
            "per_hub": per_hub, "redis_cpu_s": redis_cpu,
            "redis_cpu_us_per_event": redis_cpu / sent * 1e6 if sent else 0.0,
            "latency_ms": {"p50": pct(lat, 0.5) * 1e3, "p99": pct(lat, 0.99) * 1e3,
                           "max": max(lat) * 1e3 if len(lat) else 0.0},
            "first_latency_ms": {"p50": pct(firsts, 0.5) * 1e3, "p99": pct(firsts, 0.99) * 1e3,
                                 "events": len(firsts)},
            "order_errors": sum(r["order_errors"] for r in reports),
            "parse_errors": sum(r["parse_errors"] for r in reports),
            "closed": sum(r["closed"] for r in reports),
        }

    def idle(self, seconds: float) -> dict[str, float]:
        """Each hub's CPU (ms per second) with its subscribers connected and nothing
        published: what runs anyway (renewals, the broker's reader and exchanges)."""
        pids = {name: hub.pid for name, hub in self.hubs.items()}
        pids["redis"] = self.redis.proc.pid
        cpu0 = {name: proc_cpu(pid) for name, pid in pids.items()}
        time.sleep(seconds)
        return {name: (proc_cpu(pid) - cpu0[name]) / seconds * 1e3 for name, pid in pids.items()}

    def stop(self) -> None:
        if self.pub is not None:
            with contextlib.suppress(BrokenPipeError, EOFError, OSError):
                self.pub_pipe.send(("stop",))
                self.pub_pipe.poll(10) and self.pub_pipe.recv()
            self.pub.join(5)
            if self.pub.is_alive():
                self.pub.kill()
        for subs in self.subs.values():
            subs.stop()
        for hub in self.hubs.values():
            hub.stop()
        self.redis.stop()


def plan(rep: int, args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    paced = {"kind": "paced", "rate": args.rate, "count": int(args.rate * args.seconds),
             "conns": 1}
    blast = {"kind": "blast", "count": args.blast, "conns": args.pub_conns,
             "window": args.window}
    first, second = ("A", "B") if rep % 2 == 0 else ("B", "A")
    one, two = ("B", "C") if rep % 2 == 0 else ("C", "B")
    return [(first, paced), (second, paced), (one, blast), (two, blast), ("A", blast)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_nofile()
    results: dict[str, Any] = {
        "started": time.time(), "host": platform.node(), "python": platform.python_version(),
        "cpus": os.cpu_count(), "load_before": os.getloadavg(), "args": vars(args),
        "runs": [],
    }
    deadline = time.monotonic() + args.budget
    with tempfile.TemporaryDirectory(prefix="swimbroker-") as tmp:
        bench = Bench(Path(tmp), args.n, args.pub_conns)
        try:
            bench.start()
            results["connect_s"] = bench.connect_s
            print(f"connected: {bench.connect_s}", flush=True)
            warm = {"kind": "blast", "count": 200, "conns": 2, "window": 16}
            for config in ("A", "B", "C"):  # first fan-outs build the plans: not measured
                bench.phase(config, warm)
            for rep in range(args.reps):
                if time.monotonic() > deadline:
                    print(f"time budget spent: {rep} of {args.reps} repetitions", flush=True)
                    break
                idle = bench.idle(args.idle)
                results.setdefault("idle_cpu_ms_per_s", []).append(idle)
                print(f"rep {rep} idle CPU ms/s: "
                      + ", ".join(f"{k} {v:.1f}" for k, v in idle.items()), flush=True)
                for config, spec in plan(rep, args):
                    rec = bench.phase(config, spec)
                    rec["rep"] = rep
                    results["runs"].append(rec)
                    print(f"rep {rep} {config} {spec['kind']:5} {rec['deliveries']:>8} deliv "
                          f"{rec['deliveries_per_s']:>10,.0f}/s "
                          f"{rec['cpu_us_per_delivery']:6.2f} us/deliv "
                          f"lat p50 {rec['latency_ms']['p50']:7.2f} "
                          f"p99 {rec['latency_ms']['p99']:7.2f} ms "
                          f"first p50 {rec['first_latency_ms']['p50']:6.2f} "
                          f"p99 {rec['first_latency_ms']['p99']:6.2f} ms "
                          f"redis {rec['redis_cpu_us_per_event']:6.1f} us/event "
                          f"err {rec['publish_errors']}/{rec['order_errors']}/"
                          f"{rec['parse_errors']}{'' if rec['complete'] else ' INCOMPLETE'}",
                          flush=True)
        finally:
            bench.stop()
    results["load_after"] = os.getloadavg()
    results["summary"] = summarize(results["runs"])
    idles = results.get("idle_cpu_ms_per_s", [])
    results["summary"]["idle_cpu_ms_per_s"] = {
        name: statistics.median(i[name] for i in idles) for name in (idles[0] if idles else {})}
    return results


def _median(runs: list[dict[str, Any]], config: str, kind: str, get: Any) -> float:
    vals = [get(r) for r in runs if r["config"] == config and r["workload"] == kind]
    vals = [v for v in vals if v == v]  # a figure an older result file lacks is NaN
    return statistics.median(vals) if vals else float("nan")


def _per_rep(runs: list[dict[str, Any]], kind: str, num: str, den: str, get: Any,
             op: Any) -> list[float]:
    out = []
    for rep in sorted({r["rep"] for r in runs}):
        a = [r for r in runs if r["rep"] == rep and r["workload"] == kind and r["config"] == num]
        b = [r for r in runs if r["rep"] == rep and r["workload"] == kind and r["config"] == den]
        if a and b:
            out.append(op(get(a[0]), get(b[0])))
    return out


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def cpu(r: dict[str, Any]) -> float:
        return r["cpu_us_per_delivery"]

    def p50(r: dict[str, Any]) -> float:
        return r["latency_ms"]["p50"]

    def p99(r: dict[str, Any]) -> float:
        return r["latency_ms"]["p99"]

    def rate(r: dict[str, Any]) -> float:
        return r["deliveries_per_s"]

    def redis(r: dict[str, Any]) -> float:
        return r["redis_cpu_us_per_event"]

    def first50(r: dict[str, Any]) -> float:
        return r["first_latency_ms"]["p50"]

    def first99(r: dict[str, Any]) -> float:
        return r["first_latency_ms"]["p99"]

    def appended(r: dict[str, Any]) -> float:
        return r["published"] / r["append_s"] if r["append_s"] else 0.0

    def steps(r: dict[str, Any]) -> float:
        return r.get("fanout_steps_per_hub", float("nan"))

    table = {}
    for kind, configs in (("paced", ("A", "B")), ("blast", ("A", "B", "C"))):
        for config in configs:
            table[f"{kind} {config}"] = {
                name: _median(runs, config, kind, get)
                for name, get in (("cpu_us_per_delivery", cpu), ("latency_p50_ms", p50),
                                  ("latency_p99_ms", p99), ("deliveries_per_s", rate),
                                  ("redis_cpu_us_per_event", redis),
                                  ("first_p50_ms", first50), ("first_p99_ms", first99),
                                  ("appended_per_s", appended),
                                  ("fanout_steps_per_hub", steps))}

    def ratio(x: float, y: float) -> float:
        return x / y if y else float("nan")

    def diff(x: float, y: float) -> float:
        return x - y

    added_p99 = _per_rep(runs, "paced", "B", "A", p99, diff)
    added_p50 = _per_rep(runs, "paced", "B", "A", p50, diff)
    added_first_p99 = _per_rep(runs, "paced", "B", "A", first99, diff)
    added_first_p50 = _per_rep(runs, "paced", "B", "A", first50, diff)
    cpu_ratio = _per_rep(runs, "paced", "B", "A", cpu, ratio)
    blast_cpu_ratio = _per_rep(runs, "blast", "B", "A", cpu, ratio)
    two_vs_one = _per_rep(runs, "blast", "C", "B", rate, ratio)
    broker_vs_inproc = _per_rep(runs, "blast", "B", "A", rate, ratio)

    def med(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    return {
        "medians": table,
        "per_rep": {"added_p99_ms": added_p99, "added_p50_ms": added_p50,
                    "added_first_p99_ms": added_first_p99,
                    "added_first_p50_ms": added_first_p50,
                    "paced_cpu_ratio": cpu_ratio, "blast_cpu_ratio": blast_cpu_ratio,
                    "two_hubs_vs_one": two_vs_one, "blast_broker_vs_inproc": broker_vs_inproc},
        "added_p99_ms": med(added_p99), "added_p50_ms": med(added_p50),
        "added_first_p99_ms": med(added_first_p99), "added_first_p50_ms": med(added_first_p50),
        "paced_cpu_ratio": med(cpu_ratio), "blast_cpu_ratio": med(blast_cpu_ratio),
        "two_hubs_vs_one": med(two_vs_one), "blast_broker_vs_inproc": med(broker_vs_inproc),
        "targets": {
            "added_p99_le_5ms": med(added_p99) <= 5.0,
            "cpu_ratio_le_1.1": med(cpu_ratio) <= 1.1,
            "two_hubs_ge_one": med(two_vs_one) >= 1.0,
        },
    }


def markdown(results: dict[str, Any]) -> str:
    s = results["summary"]
    a = results["args"]
    runs = results["runs"]
    errors = sum(r["publish_errors"] + r["order_errors"] + r["parse_errors"] for r in runs)
    incomplete = sum(1 for r in runs if not r["complete"])
    reps = len({r["rep"] for r in runs})
    lines = [
        f"# Several hubs on one Redis ({reps} repetition(s), medians)",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(results['started']))} UTC, "
        f"Python {results['python']}, {results['cpus']} CPUs, load average before "
        f"{results['load_before'][0]:.2f}, after {results['load_after'][0]:.2f}. "
        f"N = {a['n']:,} subscribers (A, B; C: {a['n'] // 2:,} on each of two hubs); paced "
        f"{a['rate']:g} events/s for {a['seconds']:g} s; blast {a['blast']:,} events over "
        f"{a['pub_conns']} publishing connections, window {a['window']}. Publish errors, "
        f"frames out of order or unparsable: {errors}; phases where a subscriber missed an "
        f"event: {incomplete}.",
        "",
        "A = one hub, in-process stream (`--state-dir none`); B = one hub, `--broker` (Redis "
        "DB 0); C = two hubs, `--broker` on one Redis (DB 1). CPU = the hubs' utime + stime "
        "over the phase / deliveries counted by the subscribers; Redis CPU per published "
        "event beside it.",
        "",
        "Latency is per delivery (every subscriber's receive time minus the publisher's "
        "stamp, so it includes the fan-out's spread over N sockets); \"first\" is per event, "
        "to the first subscriber that got it (the publish path and the log, without the "
        "spread). \"appended/s\" is the publish rate the hubs acknowledged; \"fan-out "
        "steps\" is each hub's swim_fanout_seconds_count over the phase (one per event, "
        "fewer when coalescing joined a burst; the marker counts too).",
        "",
        "| phase | deliveries/s | hub CPU µs/delivery | latency p50 / p99 ms | "
        "first p50 / p99 ms | appended/s | fan-out steps per hub | Redis CPU µs/event |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in s["medians"].items():
        lines.append(f"| {name} | {row['deliveries_per_s']:,.0f} | "
                     f"{row['cpu_us_per_delivery']:.2f} | {row['latency_p50_ms']:.2f} / "
                     f"{row['latency_p99_ms']:.2f} | {row['first_p50_ms']:.2f} / "
                     f"{row['first_p99_ms']:.2f} | {row['appended_per_s']:,.0f} | "
                     f"{row['fanout_steps_per_hub']:,.0f} | "
                     f"{row['redis_cpu_us_per_event']:.1f} |")

    def each(values: list[float], fmt: str) -> str:
        return ", ".join(fmt.format(v) for v in values)

    per = s["per_rep"]
    met = {True: "met", False: "**not met**"}
    lines += [
        "",
        "| target (issue 15) | median of repetitions | per repetition | |",
        "|---|---:|---|---|",
        f"| publish→deliver p99 added by Redis, 1,000 subscribers ≤ 5 ms (B − A, paced) | "
        f"{s['added_p99_ms']:.2f} ms | {each(per['added_p99_ms'], '{:.2f}')} | "
        f"{met[s['targets']['added_p99_le_5ms']]} |",
        f"| hub CPU per delivery ≤ 1.1 × in-process (B / A, paced) | "
        f"{s['paced_cpu_ratio']:.2f} | {each(per['paced_cpu_ratio'], '{:.2f}')} | "
        f"{met[s['targets']['cpu_ratio_le_1.1']]} |",
        f"| two hubs on one Redis deliver ≥ one hub, events/s in total (C / B, blast) | "
        f"{s['two_hubs_vs_one']:.2f} | {each(per['two_hubs_vs_one'], '{:.2f}')} | "
        f"{met[s['targets']['two_hubs_ge_one']]} |",
        "",
        f"For reference: added p50 {s['added_p50_ms']:.2f} ms "
        f"({each(per['added_p50_ms'], '{:.2f}')}); added to the first subscriber, p50 "
        f"{s['added_first_p50_ms']:.2f} ms ({each(per['added_first_p50_ms'], '{:.2f}')}), "
        f"p99 {s['added_first_p99_ms']:.2f} ms "
        f"({each(per['added_first_p99_ms'], '{:.2f}')}); blast CPU per delivery B / A "
        f"{s['blast_cpu_ratio']:.2f} ({each(per['blast_cpu_ratio'], '{:.2f}')}); blast "
        f"deliveries/s B / A {s['blast_broker_vs_inproc']:.2f} "
        f"({each(per['blast_broker_vs_inproc'], '{:.2f}')}).",
    ]
    idle = s.get("idle_cpu_ms_per_s") or {}
    if idle:
        lines += ["", "Idle, subscribers connected, nothing published (CPU ms per second, "
                  "median): " + ", ".join(f"{k} {v:.1f}" for k, v in idle.items()) + "."]
    return "\n".join(lines) + "\n"


def pool(files: list[str]) -> None:
    """Print the summary (markdown) of several runs' repetitions taken together."""
    pooled: dict[str, Any] | None = None
    offset = 0
    for name in files:
        results = json.loads(Path(name).read_text())
        for rec in results["runs"]:
            rec["rep"] += offset
        offset = max(r["rep"] for r in results["runs"]) + 1
        if pooled is None:
            pooled = results
        else:
            pooled["runs"] += results["runs"]
            pooled["idle_cpu_ms_per_s"] = (pooled.get("idle_cpu_ms_per_s", [])
                                           + results.get("idle_cpu_ms_per_s", []))
            pooled["load_after"] = results["load_after"]
    assert pooled is not None
    pooled["summary"] = summarize(pooled["runs"])
    idles = pooled.get("idle_cpu_ms_per_s", [])
    pooled["summary"]["idle_cpu_ms_per_s"] = {
        key: statistics.median(i[key] for i in idles) for key in (idles[0] if idles else {})}
    print(f"(pooled: {', '.join(files)})\n")
    print(markdown(pooled))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="subscribers per configuration")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--rate", type=float, default=40.0, help="paced events per second")
    parser.add_argument("--seconds", type=float, default=4.0, help="paced phase length")
    parser.add_argument("--blast", type=int, default=400,
                        help="events per blast phase (400 × 1,000 subscribers: what the "
                        "kernel buffers hold, so the clients' parsing lags less)")
    parser.add_argument("--pub-conns", type=int, default=8,
                        help="publishing connections in a blast (split over C's two hubs)")
    parser.add_argument("--window", type=int, default=32,
                        help="unacknowledged publishes per connection in a blast")
    parser.add_argument("--idle", type=float, default=3.0,
                        help="seconds of each repetition's idle CPU measurement")
    parser.add_argument("--budget", type=float, default=300.0,
                        help="seconds after which no further repetition starts")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--pool", nargs="+", metavar="JSON",
                        help="no run: the medians and targets over the repetitions of these "
                        "result files together")
    args = parser.parse_args()
    if args.pool:
        pool(args.pool)
        return
    if args.blast // args.pub_conns > 4000:
        parser.error("a blast over 4,000 events per connection meets the system tier's "
                     "rate limit (burst 4,000): add --pub-conns")
    results = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp_ = time.strftime("%Y%m%d-%H%M%S", time.gmtime(results["started"]))
    base = out / f"broker-{stamp_}"
    base.with_suffix(".json").write_text(json.dumps(results, indent=1))
    text = markdown(results)
    base.with_suffix(".md").write_text(text)
    print(text)
    print(f"saved {base}.json and .md")


if __name__ == "__main__":
    main()
