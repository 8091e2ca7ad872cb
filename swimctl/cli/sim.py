"""`swimctl sim --out DIR`: simulated VATSIM traffic as snapshot files, and the truth behind it.

Writes one VATSIM v3 data-feed document per refresh, named like recorded ones
(`2026-01-01T180015Z.vatsim-data.json.gz`), directly in DIR, so `swimctl serve --feed DIR`
(or any tool that reads the feed) can play them. With `--truth FILE` it also writes the true
lifecycle events, each stamped with the moment it happened, as an event file (the hub's JSON
Lines envelope): the answer key for a flight-event detector.

The same seed and start give the same bytes: gzip members carry no time stamp. The feed's own
faults are in the files as a downloader would see them: a lost refresh is a missing file; a
repeated one is the same file again.
"""

from __future__ import annotations

import datetime as dt
import gzip
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import typer

from swimctl.cli.common import fail
from swimctl.core.model import parse_ts
from swimctl.core.sim import TRUTH_TYPES, SimConfig, Simulator


def snapshot_name(when: dt.datetime, compress: bool) -> str:
    """The name recorded snapshots go by: their time to the second."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H%M%SZ") + (
        ".vatsim-data.json.gz" if compress else ".vatsim-data.json")


def sim(
    out: Path = typer.Option(..., "--out", envvar="SWIM_SIM_OUT", metavar="DIR", file_okay=False,
                             help="Directory for the snapshot files (created if missing)."),
    pilots: int = typer.Option(2000, "--pilots", envvar="SWIM_SIM_PILOTS", metavar="N", min=0,
                               max=200_000, help="Pilots online at any time."),
    cycles: int = typer.Option(..., "--cycles", envvar="SWIM_SIM_CYCLES", metavar="N", min=1,
                               max=1_000_000, help="Feed refreshes to simulate."),
    seed: int = typer.Option(1, "--seed", envvar="SWIM_SIM_SEED", metavar="N", min=0,
                             help="Random seed: the same seed and start give the same files."),
    truth: Path = typer.Option(None, "--truth", envvar="SWIM_SIM_TRUTH", metavar="FILE",
                               dir_okay=False,
                               help="Write the true lifecycle events (created, departed, "
                               "arrived, deleted) to this event file (.jsonl, or .jsonl.gz)."),
    start: str = typer.Option(None, "--start", envvar="SWIM_SIM_START", metavar="TIME",
                              show_default=False,
                              help="Simulated time of the first snapshot, ISO 8601 "
                              "(default: now, to the second)."),
    interval: float = typer.Option(15.0, "--interval", envvar="SWIM_SIM_INTERVAL",
                                   metavar="SECONDS", min=2, max=3600,
                                   help="Simulated seconds between snapshots."),
    compress: bool = typer.Option(True, "--gzip/--no-gzip", envvar="SWIM_SIM_GZIP",
                                  help="Write .json.gz files (or plain .json)."),
) -> None:
    """Simulate VATSIM traffic into snapshot files (and, with --truth, the true events)."""
    when = dt.datetime.now(dt.UTC).replace(microsecond=0)
    if start is not None:
        try:
            when = parse_ts(start)
        except ValueError:
            fail(f"--start {start!r} is not an ISO 8601 time (e.g. 2026-01-01T18:00:00Z)")
    truth_file: Any = None  # a file or a GzipFile around one
    if truth is not None:
        try:
            raw = truth.open("wb")
        except OSError as exc:
            fail(f"cannot write {truth}: {exc.strerror or exc}")
        truth_file = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") \
            if truth.name.endswith(".gz") else raw
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create {out}: {exc.strerror or exc}")
    simulator = Simulator(SimConfig(pilots=pilots, seed=seed, start=when, step_s=interval),
                          truth=truth is not None)
    written: set[str] = set()
    delivered = 0
    counts: Counter[str] = Counter()
    try:
        for _ in range(cycles):
            for snap in simulator.step():
                delivered += 1
                name = snapshot_name(snap.time, compress)
                if name in written:
                    continue  # a repeated refresh: the same document again
                body = gzip.compress(snap.body, compresslevel=6, mtime=0) if compress \
                    else snap.body
                (out / name).write_bytes(body)
                written.add(name)
            if truth_file is not None:
                lines = []
                for etype, data, stamp in simulator.take_truth():
                    counts[etype] += 1
                    lines.append(orjson.dumps({"type": etype, "timestamp": stamp, "data": data}))
                if lines:
                    truth_file.write(b"\n".join(lines) + b"\n")
    except OSError as exc:
        fail(f"writing failed: {exc.strerror or exc}")
    finally:
        if truth_file is not None:
            truth_file.close()
            if truth_file is not raw:
                raw.close()
    lost, twice = cycles - len(written), delivered - len(written)
    typer.echo(f"{len(written)} snapshots of {pilots:,} pilots in {out}: {cycles} refreshes "
               f"{interval:g} s apart from {simulator.config.start:%Y-%m-%dT%H:%M:%SZ} "
               f"({lost} lost and {twice} served twice, as the live feed sometimes does)")
    if truth is not None:
        summary = ", ".join(f"{counts[t]} {t.split('.')[1]}" for t in TRUTH_TYPES)
        typer.echo(f"{sum(counts.values())} true events in {truth}: {summary}")
