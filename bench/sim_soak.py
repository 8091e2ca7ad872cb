#!/usr/bin/env python3
"""A hub on the traffic simulator under subscribers for minutes: does its memory stay flat?

Starts `swimctl serve --feed sim` as its own process on 127.0.0.1 (10,000 pilots by default),
connects `--clients` WebSocket subscribers (bench/loadgen.py's raw epoll clients, one process,
at nice 10) each filtered to one of the busiest airports, and samples the hub's resident
memory every `--sample` seconds for `--minutes`. The hub keeps `--history-age` seconds of
events for resume; once that window is full, memory should stop growing (the default hour
cannot fill in a ten-minute run, so the run shortens it; the growth rate while it fills is
reported too). Everything is bounded: the run stops after --minutes, the hub is stopped.

    python3 bench/sim_soak.py [--pilots 10000] [--clients 1000] [--minutes 10]
                              [--history-age 120] [--sample 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import LoadGen, raise_nofile

from swimctl.core.geo import load_geo
from swimctl.core.sim.world import load_traffic
from swimctl.keys.store import KeyStore

ROOT = Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) / 1024  # type: ignore[union-attr]


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pilots", type=int, default=10000)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--history-age", type=float, default=120.0)
    parser.add_argument("--sample", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not 0 < args.minutes <= 60:
        sys.exit("--minutes: 0 < m <= 60")
    raise_nofile()
    work = tempfile.TemporaryDirectory(prefix="swimctl-soak-")
    db = f"sqlite:///{Path(work.name) / 'keys.db'}"
    store = KeyStore(db)
    store.init_db()
    key, _ = store.create("developer", "soak", description="bench/sim_soak.py")
    airports = [f.icao for f in load_traffic(load_geo()).fields[:200]]

    hub = subprocess.Popen(
        [sys.executable, "-m", "swimctl", "serve", "--port", "0", "--db", db,
         "--feed", "sim", "--sim-pilots", str(args.pilots),
         "--history-age", str(args.history_age),
         "--tier-limit", f"developer={args.clients + 10}", "--log-format", "json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "HOME": work.name})
    try:
        assert hub.stderr is not None
        line = hub.stderr.readline()
        port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
        # the hub logs every feed cycle: keep its stderr drained so it never blocks
        threading.Thread(target=lambda: [None for _ in hub.stderr], daemon=True).start()
        gen = LoadGen(None, "127.0.0.1", port, key)  # type: ignore[arg-type]
        t_setup = time.monotonic()
        connected = gen.connect(list(range(args.clients)))
        subscribed = gen.subscribe({i: {"airports": [airports[i % len(airports)]]}
                                    for i in range(args.clients)})
        print(f"hub pid {hub.pid}: {connected} connected, {subscribed} subscribed with airport "
              f"filters in {time.monotonic() - t_setup:.1f} s")
        samples: list[tuple[float, float, float, int]] = []
        start = time.monotonic()
        end = start + args.minutes * 60
        next_sample = start
        cpu0 = cpu_s(hub.pid)
        while time.monotonic() < end:
            if hub.poll() is not None:
                sys.exit(f"the hub exited ({hub.returncode})")
            if time.monotonic() >= next_sample:
                elapsed = time.monotonic() - start
                samples.append((elapsed, rss_mb(hub.pid), cpu_s(hub.pid) - cpu0,
                                gen.deliveries))
                print(f"{elapsed / 60:5.1f} min  hub RSS {samples[-1][1]:7.1f} MB  "
                      f"hub CPU {samples[-1][2]:6.1f} s  deliveries {gen.deliveries}",
                      flush=True)
                next_sample += args.sample
            gen.poll(0.2)
        closed = sum(1 for c in gen.conns.values() if c.close_code is not None
                     or c.state == "eof")
    finally:
        hub.send_signal(signal.SIGTERM)
        hub.wait(15)
        work.cleanup()
    filled = [s for s in samples if s[0] >= args.history_age + 60]
    rss = [s[1] for s in filled] or [samples[-1][1]]
    early = [s for s in samples if 30 <= s[0] <= args.history_age]
    fill_rate = ((early[-1][1] - early[0][1]) / ((early[-1][0] - early[0][0]) / 60)
                 if len(early) >= 2 and early[-1][0] > early[0][0] else 0.0)
    result = {
        "pilots": args.pilots, "clients": args.clients, "minutes": args.minutes,
        "history_age_s": args.history_age, "connected": connected, "subscribed": subscribed,
        "closed": closed, "order_errors": gen.order_errors, "parse_errors": gen.parse_errors,
        "deliveries": gen.deliveries, "rss_after_fill_min_mb": min(rss),
        "rss_after_fill_max_mb": max(rss), "rss_first_mb": samples[0][1],
        "rss_growth_while_filling_mb_per_min": fill_rate,
        "hub_cpu_s": samples[-1][2], "samples": samples,
    }
    print(f"after the history window filled: RSS {min(rss):.0f}-{max(rss):.0f} MB "
          f"(spread {max(rss) - min(rss):.0f} MB); while filling: {fill_rate:.0f} MB/min; "
          f"hub CPU {samples[-1][2] / (samples[-1][0] or 1) * 100:.0f} % of a core; "
          f"{gen.deliveries} deliveries, {closed} connections closed, "
          f"{gen.order_errors} out of order")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
