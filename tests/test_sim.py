"""The traffic simulator: a seed's determinism, snapshots shaped like the recorded ones, messy
traffic, the detector scored against the truth, the `sim` command, the `--feed sim` source, and
the demo's traffic at KJFK."""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
from typer.testing import CliRunner

from swimctl.cli.app import app
from swimctl.core.detect import Detector, parse_snapshot
from swimctl.core.geo import load_geo
from swimctl.core.model import parse_ts
from swimctl.core.sim import SimConfig, Simulator
from swimctl.core.sim.score import SCORED_TYPES, evaluate, report
from swimctl.hub.demo import DEMO_FEED_INTERVAL, DEMO_SIM_PILOTS, DEMO_SIM_SPEED
from swimctl.hub.sources.feed import list_snapshots, run_feed
from swimctl.recordings import ReadReport, read_events
from tests.test_feed import FakeHub, check_cycle_order, wait_for

FIXTURES = Path(__file__).parent / "fixtures" / "vatsim"
START = dt.datetime(2026, 1, 1, 18, 0, tzinfo=dt.UTC)


def real_snapshots() -> list[dict[str, Any]]:
    return [orjson.loads(gzip.decompress(p.read_bytes())) for p in sorted(FIXTURES.glob("*.gz"))]


def first_bodies(config: SimConfig, steps: int) -> tuple[list[bytes], list[Any]]:
    sim = Simulator(config)
    bodies = [snap.body for _ in range(steps) for snap in sim.step()]
    return bodies, sim.take_truth()


# -- determinism -----------------------------------------------------------------------------


def test_same_seed_and_start_give_the_same_bytes() -> None:
    config = SimConfig(pilots=300, seed=7, start=START)
    bodies, truth = first_bodies(config, 12)
    again, truth_again = first_bodies(config, 12)
    assert bodies == again and truth == truth_again
    other, _ = first_bodies(SimConfig(pilots=300, seed=8, start=START), 12)
    assert other != bodies
    # a later start moves every time stamp, not the traffic
    later, _ = first_bodies(SimConfig(pilots=300, seed=7, start=START + dt.timedelta(hours=1)),
                            12)
    pilots = [(p["callsign"], p["latitude"], p["altitude"]) for p in
              orjson.loads(bodies[-1])["pilots"]]
    assert pilots == [(p["callsign"], p["latitude"], p["altitude"]) for p in
                      orjson.loads(later[-1])["pilots"]]


def test_sim_command_writes_the_same_files_twice(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["sim", "--pilots", "200", "--cycles", "8", "--seed", "3",
            "--start", "2026-01-01T18:00:00Z"]
    first = runner.invoke(app, [*args, "--out", str(tmp_path / "a"), "--truth",
                                str(tmp_path / "truth.jsonl.gz")])
    second = runner.invoke(app, [*args, "--out", str(tmp_path / "b"), "--truth",
                                 str(tmp_path / "truth2.jsonl.gz")])
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert names[0] == "2026-01-01T180000Z.vatsim-data.json.gz" and len(names) == 8
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "truth.jsonl.gz").read_bytes() == (tmp_path / "truth2.jsonl.gz").read_bytes()
    # the files are what the feed's directory source reads, in time order
    assert [p.name for p in list_snapshots(tmp_path / "a")] == names
    # the truth is an event file any of our readers takes, in time order
    rep = ReadReport()
    events = [env for _, env in read_events(tmp_path / "truth.jsonl.gz", rep)]
    assert rep.bad == 0 and events
    assert {e.type for e in events} <= set(SCORED_TYPES)
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)
    assert all("callsign" in e.data and isinstance(e.data["flight_uid"], int) for e in events)
    assert "true events" in first.output


@pytest.mark.parametrize("args, message", [
    (["--start", "tomorrow"], "--start 'tomorrow' is not an ISO 8601 time"),
    (["--cycles", "0"], "--cycles"),
])
def test_sim_command_refuses_bad_input_in_one_line(tmp_path: Path, args: list[str],
                                                    message: str) -> None:
    result = CliRunner().invoke(app, ["sim", "--out", str(tmp_path / "o"), "--cycles", "1",
                                      *args])
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output


# -- shape against the recorded snapshots ----------------------------------------------------


def _types(records: list[Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for rec in records:
        for key, value in rec.items():
            out[key].add(type(value).__name__)
    return out


def test_snapshot_has_every_key_and_type_real_ones_have() -> None:
    """Every section, and in it every key with a type the recorded documents use: what the
    detector reads (cid, callsign, logon_time, position, altitude, groundspeed, heading, the
    flight plan's fields) and everything else a VATSIM tool may read."""
    real = [doc for doc in real_snapshots() if "military_ratings" in doc]  # current schema
    assert len(real) == 3
    sim = orjson.loads(first_bodies(SimConfig(pilots=600, start=START), 2)[0][-1])
    assert list(sim) == list(real[0])
    for section in real[0]:
        if section == "general":
            want = _types([doc["general"] for doc in real])
            got = _types([sim["general"]])
        else:
            want = _types([r for doc in real for r in doc[section]])
            got = _types(sim[section])
        for key, types in want.items():
            assert key in got, f"{section}.{key} missing"
            assert got[key] <= types, f"{section}.{key}: {got[key]} not in {types}"
        assert set(got) <= set(want), f"{section}: keys real snapshots lack {set(got) - set(want)}"
    plans = [p["flight_plan"] for p in sim["pilots"] if p["flight_plan"]]
    real_plans = [p["flight_plan"] for doc in real for p in doc["pilots"] if p["flight_plan"]]
    assert _types(plans) == {k: v for k, v in _types(real_plans).items()}
    # pilots without a flight plan, as on the network (recorded: 4-7 %)
    assert 0.02 < sum(1 for p in sim["pilots"] if p["flight_plan"] is None) / 600 < 0.12


def test_detector_output_carries_what_clients_read() -> None:
    """The fields the PERTI SDK's examples (and ours) read from flight events are filled: the
    plan's fields where a plan exists, integer speeds and altitudes, an ARTCC for positions
    over land."""
    sim = Simulator(SimConfig(pilots=400, start=START))
    det = Detector(sim.geo)
    events = [e for _ in range(3) for s in sim.step()
              for e in det.process(parse_snapshot(s.body)).events]
    created = [d for t, d, _ in events if t == "flight.created"]
    planned = [d for d in created if d["dep"]]
    assert len(planned) > 300
    for d in planned:
        assert isinstance(d["arr"], str) and isinstance(d["equipment"], str)
        assert isinstance(d["route"], str | None)
        for key in ("altitude_ft", "groundspeed_kts", "heading_deg", "cid", "flight_uid"):
            assert type(d[key]) is int
    tagged = [d for d in created if d["current_artcc"]]
    assert len(tagged) > 0.8 * len(created)


def test_traffic_is_messy() -> None:
    """What real traffic has, the simulated traffic has too, at small rates."""
    sim = Simulator(SimConfig(pilots=2000, start=START))
    categories = Counter(p.actype.category for p in sim.pilots if p.connected)
    assert categories["heavy"] > 150 and categories["piston"] > 10
    per_flight: dict[int, list[str]] = defaultdict(list)
    callsign_flights: dict[str, set[int]] = defaultdict(set)
    for _ in range(240):
        sim.step()
        for etype, data, _ in sim.take_truth():
            per_flight[data["flight_uid"]].append(etype)
            callsign_flights[data["callsign"]].add(data["flight_uid"])
    # pilots back under the same callsign (a new connection: a new flight)
    assert any(len(uids) > 1 for uids in callsign_flights.values())
    # flights that depart more than once (circuits with full stops, next legs)
    assert any(seq.count("flight.departed") > 1 for seq in per_flight.values())
    # flights gone in the air (deleted after departing, before any arrival)
    assert any(seq[-2:] == ["flight.departed", "flight.deleted"] for seq in per_flight.values())


def test_the_feed_loses_repeats_and_delays_snapshots() -> None:
    """Over five simulated hours of a small network: refreshes lost (no document), repeated
    (the same document twice) and held back (delivered after the next one, stale)."""
    sim = Simulator(SimConfig(pilots=20, start=START), truth=False)
    lost = twice = late = 0
    last = None
    for _ in range(1200):
        out = sim.step()
        lost += not out
        twice += len(out) == 2 and out[0] is out[1]
        for snap in out:
            late += last is not None and snap.time < last
            last = max(last or snap.time, snap.time)
    assert lost >= 1 and twice >= 1 and late >= 1, (lost, twice, late)


# -- ground truth ----------------------------------------------------------------------------


def test_detector_against_the_truth() -> None:
    """One simulated hour at 2,000 pilots through parse_snapshot and the Detector (the feed's
    path): per type, precision and recall of at least 99.5 %, each match within one feed
    interval of the true time. bench/bench_truth.py runs the same for two hours and more."""
    result = evaluate(SimConfig(pilots=2000, seed=11, start=START), 240)
    print(report(result.scores))
    for etype, s in result.scores.items():
        assert s.true > 250, (etype, s.true)
        assert s.precision >= 0.995 and s.recall >= 0.995, (etype, s.precision, s.recall)
    # exact where the detector can be: logon times
    assert result.scores["flight.created"].error_quantile(0.99) < 0.01


# -- the feed source and the demo -----------------------------------------------------------


async def test_feed_sim_goes_through_the_feed_path() -> None:
    hub = FakeHub()
    config = SimConfig(pilots=300, seed=2, start=START)
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: run_feed(hub, "sim", 0.0, sim=config,
                                                         task_status=task_status))
        await wait_for(lambda: len(hub.updates()) >= 6)
        nursery.cancel_scope.cancel()
    check_cycle_order(hub, cancelled=True)
    times = hub.updates()
    assert times[0] - START < dt.timedelta(seconds=1)
    # flat out: snapshots 15 s apart in their own time, however fast they are made
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert all(13 < g < 32 for g in gaps), gaps
    created = hub.events("flight.created")
    assert len(created) >= 300
    positions = [c[1] for c in hub.calls if c[0] == "publish_positions"]
    assert abs(len(positions[-1]) - 300) <= 3


def test_demo_traffic_at_kjfk() -> None:
    """The demo's settings, five minutes of its wall time through the detector: a departure or
    an arrival at KJFK (what `tail --airport KJFK` shows) at least every 30 s on average, and
    no flight anywhere departs twice without landing in between."""
    config = SimConfig(pilots=DEMO_SIM_PILOTS, speed=DEMO_SIM_SPEED, step_s=DEMO_FEED_INTERVAL,
                       start=START)
    sim = Simulator(config, load_geo(), truth=False)
    det = Detector(sim.geo)
    at_kjfk = 0
    last_move: dict[int, str] = {}
    wall = 300  # seconds of the demo's wall time
    steps = int(wall / DEMO_FEED_INTERVAL)
    for _ in range(steps):
        for snap in sim.step():
            for etype, data, stamp in det.process(parse_snapshot(snap.body)).events:
                if etype not in ("flight.departed", "flight.arrived"):
                    continue
                assert parse_ts(stamp) <= sim.document_time
                if "KJFK" in (data["dep"], data["arr"]):
                    at_kjfk += 1
                uid = data["flight_uid"]
                assert not (etype == last_move.get(uid) == "flight.departed"), data
                last_move[uid] = etype
    print(f"{at_kjfk} movements at KJFK in {wall} s of demo time")
    assert at_kjfk >= wall / 30, at_kjfk
