"""Payloads shared by the hub driver and the websockets peer, so both fan out the same bytes.

Deterministic (seeded), so the hub and the peer see identical traffic in one run.
"""

from __future__ import annotations

import functools
import os
import random
import time
from typing import Any

import orjson

from swimctl.core.model import format_ts
from swimctl.wire.frames import text_frame

ROUTE = "DCT BUZAD T420 ELLX DCT TNT UN57 POL UN601 INPIP N601 RESNO NATB PORTI DCT"
N_AIRPORTS = 1500
N_FLIGHTS = 2000
LIFECYCLE_PER_CYCLE = 30
LIFECYCLE_TYPES = ("flight.created", "flight.departed", "flight.arrived", "flight.deleted")


@functools.cache
def airports() -> tuple[str, ...]:
    """ICAO-like codes; rank order doubles as popularity (Zipf-ish traffic)."""
    rng = random.Random(11)
    seen: set[str] = set()
    out: list[str] = []
    letters = "ABCDEFGHIJKLMNOPRSTUVWYZ"
    while len(out) < N_AIRPORTS:
        code = rng.choice("KECLR") + "".join(rng.choice(letters) for _ in range(3))
        if code not in seen:
            seen.add(code)
            out.append(code)
    return tuple(out)


def small_event(i: int) -> dict[str, Any]:
    """A ~300-byte lifecycle event (frame ≈ 330 bytes with the envelope); `t` is stamped at
    send time by the server so clients can measure latency."""
    return {
        "callsign": f"BAW{100 + i % 9000}",
        "flight_uid": i,
        "dep": "EGLL",
        "arr": "KJFK",
        "off_utc": "2026-11-26T18:30:00Z",
        "latitude": 51.4706,
        "longitude": -0.461941,
        "current_artcc": "EGTT",
        "route": ROUTE,
        "t": 0.0,
    }


def stamp(data: dict[str, Any]) -> dict[str, Any]:
    """A copy carrying the send time (wall clock, shared by every process on this machine)."""
    return {**data, "t": time.time()}


class Vatsim:
    """One VATSIM-shaped cycle: a 2,000-flight positions batch and 30 lifecycle events."""

    def __init__(self) -> None:
        rng = random.Random(23)
        self.airports = airports()
        weights = [1.0 / (rank + 1) for rank in range(len(self.airports))]
        self.rng = rng
        self.weights = weights
        self.positions: list[dict[str, Any]] = []
        for i in range(N_FLIGHTS):
            dep, arr = rng.choices(self.airports, weights, k=2)
            self.positions.append({
                "callsign": f"{rng.choice(['DAL', 'UAL', 'BAW', 'AFR', 'DLH'])}{i}",
                "flight_uid": 100000 + i,
                "latitude": round(rng.uniform(-60, 70), 4),
                "longitude": round(rng.uniform(-180, 180), 4),
                "altitude_ft": rng.randrange(0, 41000, 100),
                "groundspeed_kts": rng.randrange(0, 520),
                "heading_deg": rng.randrange(0, 360),
                "vertical_rate_fpm": rng.randrange(-3000, 3000, 100),
                "current_artcc": rng.choice(["ZNY", "ZDC", "ZLA", "EGTT", "EDGG", "LFFF"]),
                "dep": dep,
                "arr": arr,
            })
        self.cycle_no = 0

    def positions_data(self) -> dict[str, Any]:
        return {"count": len(self.positions), "positions": self.positions, "t": time.time()}

    def lifecycle(self) -> list[tuple[str, dict[str, Any]]]:
        """The next cycle's 30 events (same sequence in every process)."""
        self.cycle_no += 1
        out = []
        for j in range(LIFECYCLE_PER_CYCLE):
            p = self.positions[(self.cycle_no * 37 + j * 53) % len(self.positions)]
            etype = LIFECYCLE_TYPES[j % len(LIFECYCLE_TYPES)]
            data = {k: p[k] for k in ("callsign", "flight_uid", "dep", "arr", "latitude",
                                      "longitude", "current_artcc")}
            out.append((etype, data))
        return out


def subscriber_filter(index: int, filtered: bool) -> dict[str, Any] | None:
    """Distinct airport filter per filtered subscriber (distinct up to N_AIRPORTS)."""
    if not filtered:
        return None
    codes = airports()
    return {"airports": [codes[index % len(codes)]]}


def floor_frame(i: int) -> bytes:
    """Paced event `i` framed by hand, for the bare write loop of the floor workload."""
    return text_frame(orjson.dumps({"type": "flight.departed", "timestamp": format_ts(),
                                    "data": stamp(small_event(i))}))


def floor_round(fds: list[int], i: int) -> tuple[int, float, float]:
    """One event of the floor workload: (short writes, thread CPU seconds, wall seconds)."""
    t0, w0 = time.thread_time(), time.perf_counter()
    short = write_each(fds, floor_frame(i))
    return short, time.thread_time() - t0, time.perf_counter() - w0


def write_each(fds: list[int], frame: bytes) -> int:
    """The floor: one os.write per descriptor and nothing else. Returns how many writes fell
    short (each would break that connection's framing, so a run with any is void)."""
    short = 0
    for fd in fds:
        try:
            if os.write(fd, frame) != len(frame):
                short += 1
        except BlockingIOError:
            short += 1
    return short
