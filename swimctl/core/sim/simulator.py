"""The simulated network: a steady population of pilots, one VATSIM v3 snapshot per step, the
true events as they happen, and a feed that now and then loses, repeats or delays a snapshot.

Two clocks: *document time* is what the snapshots say (`update_timestamp`, `logon_time`, the
true events' times) and advances `step_s` per snapshot from `start`; *flight time* is what the
aircraft live by and advances `speed` times faster. At speed 1 they are the same. With a
speed-up the traffic moves faster but its timestamps stay in step with the snapshots, so a hub
fed live never sees a time in the future.

Deterministic: one seed drives the traffic, a second generator (derived from it) the feed's
faults, so the same seed and start give the same bytes; nothing reads the wall clock.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import attrs
import orjson

from swimctl.core.detect import Event, flight_uid
from swimctl.core.geo import Geo, load_geo
from swimctl.core.model import format_ts

from .motion import Stay, distance_nm
from .pilot import CONNECT, DISCONNECT, DROP_AT, EVENT, PLAN, Context, Pilot, lifecycle
from .world import (
    AIRCRAFT,
    BIZJET,
    HELICOPTER,
    PISTON,
    SERVERS,
    TURBOPROP,
    AircraftType,
    Field,
    airline_callsign,
    load_traffic,
    registration,
    server_for,
)

# The feed's own faults, per snapshot. The live feed refreshes about every 15 s; now and then
# a poll gets the previous document again, a refresh is skipped, or a cache serves an older
# document after a newer one.
P_SNAPSHOT_LOST = 0.004
P_SNAPSHOT_TWICE = 0.005
P_SNAPSHOT_LATE = 0.002
P_PILOT_MISSING = 0.0002  # a connected pilot left out of one snapshot
STAMP_JITTER_S = 0.8  # a snapshot's time is its slot plus up to this much
WARMUP_S = 14 * 3600.0  # flight time lived before the first snapshot: long-haul flights included
LAG_BUCKETS = 16  # distinct `last_updated` lags per snapshot (pilot clients report every ~5 s)
TRUTH_TYPES = ("flight.created", "flight.departed", "flight.arrived", "flight.deleted")


@attrs.frozen
class SimConfig:
    """What a simulation is: how many pilots, which seed, when, how fast, how faulty a feed."""

    pilots: int = 2000
    seed: int = 1
    start: dt.datetime = dt.datetime(2026, 1, 1, 18, 0, tzinfo=dt.UTC)
    step_s: float = 15.0  # document seconds between snapshots
    speed: float = 1.0  # flight seconds per document second
    feed_faults: bool = True

    def __attrs_post_init__(self) -> None:
        if self.pilots < 0:
            raise ValueError("pilots must not be negative")
        if self.step_s <= 0:
            raise ValueError("the snapshot step must be positive")
        if not 0 < self.speed <= 1000:
            raise ValueError("speed must be above 0 and at most 1000")
        if self.start.tzinfo is None:
            raise ValueError("start must be an aware time")


@attrs.frozen
class SimSnapshot:
    """One document as the feed delivers it: its time and its JSON bytes."""

    time: dt.datetime
    body: bytes


class Simulator:
    """Steps the network one snapshot at a time; `step()` returns what the feed delivers."""

    def __init__(self, config: SimConfig, geo: Geo | None = None, truth: bool = True) -> None:
        """`truth=False` keeps no true events (a feed that runs for days has no use for them)."""
        self.config = config
        self._keep_truth = truth
        self.geo = geo or load_geo()
        self.traffic = load_traffic(self.geo)
        if not self.traffic.fields:
            raise ValueError("no airports to simulate: the traffic table matches no airport")
        self.small_fields = tuple(f for f in self.traffic.fields if not f.big) or \
            self.traffic.fields
        self.rng = random.Random(config.seed)
        self.feed_rng = random.Random(f"{config.seed}/feed")
        self._types = AIRCRAFT
        self._type_weights = _cumulative(t.weight for t in AIRCRAFT)
        self.pilots: list[Pilot] = []
        self._callsigns: dict[str, Pilot] = {}
        self._cids: set[int] = set()
        self._truth: list[Event] = []
        self._recording = False
        self._held: SimSnapshot | None = None  # a late snapshot, delivered after the next
        self.cycle = 0
        self.time = 0.0  # flight time of the last snapshot (s since start)
        self._start_ts = config.start.astimezone(dt.UTC)
        self.ctx = Context(self.rng, self._pick_field, self._field_near, self._make_plan)
        self._static = _static_sections(self)
        self._warm_up()

    # -- the public surface ----------------------------------------------------------------

    @property
    def document_time(self) -> dt.datetime:
        """The time of the last snapshot made (the start before the first)."""
        return self._doc_time(self.time)

    def take_truth(self) -> list[Event]:
        """The true events since the last call, in the order they happened."""
        truth, self._truth = self._truth, []
        truth.sort(key=lambda e: e[2])
        return truth

    def step(self) -> list[SimSnapshot]:
        """Advance to the next snapshot; the documents the feed delivers now (usually one;
        none when it is lost or held back, two when repeated or when a held one follows)."""
        cfg = self.config
        k = self.cycle
        self.cycle += 1
        doc_s = k * cfg.step_s + self.feed_rng.random() * min(STAMP_JITTER_S, cfg.step_s / 4)
        t = doc_s * cfg.speed
        self._advance_all(t)
        self.time = t
        roll = self.feed_rng.random() if cfg.feed_faults and k > 0 else 1.0
        out: list[SimSnapshot] = []
        if roll < P_SNAPSHOT_LOST:
            self._sample_all(t)  # the aircraft moved all the same
        else:
            snap = SimSnapshot(self._doc_time(t), self.encode(t))
            if roll < P_SNAPSHOT_LOST + P_SNAPSHOT_TWICE:
                out += [snap, snap]
            elif roll < P_SNAPSHOT_LOST + P_SNAPSHOT_TWICE + P_SNAPSHOT_LATE \
                    and self._held is None:
                self._held = snap
            else:
                out.append(snap)
                if self._held is not None:
                    out.append(self._held)
                    self._held = None
        return out

    def encode(self, t: float) -> bytes:
        """The snapshot at flight time `t` (every pilot already advanced there), as JSON."""
        self._sample_all(t)
        rng = self.feed_rng
        pilots = [p.record for p in self.pilots if p.connected]
        missing = len(pilots) * P_PILOT_MISSING
        drop = int(missing) + (1 if rng.random() < missing % 1 else 0)
        for _ in range(drop):
            if pilots:
                del pilots[rng.randrange(len(pilots))]
        when = self._doc_time(t)
        lags = self._lag_stamps(when)
        static = self._static
        for ctl in static["controllers"]:
            ctl["last_updated"] = lags[ctl["cid"] % LAG_BUCKETS]
        for ctl in static["atis"]:
            ctl["last_updated"] = lags[ctl["cid"] % LAG_BUCKETS]
        clients = len(pilots) + len(static["controllers"]) + len(static["atis"])
        doc = {
            "general": {
                "version": 3,
                "reload": 1,
                "update": when.strftime("%Y%m%d%H%M%S"),
                "update_timestamp": vatsim_ts(when),
                "connected_clients": clients,
                "unique_users": clients - len(static["atis"]),
            },
            "pilots": pilots,
            "controllers": static["controllers"],
            "atis": static["atis"],
            "servers": static["servers"],
            "prefiles": static["prefiles"],
            "facilities": FACILITIES,
            "ratings": RATINGS,
            "pilot_ratings": PILOT_RATINGS,
            "military_ratings": MILITARY_RATINGS,
        }
        return orjson.dumps(doc)

    # -- time -------------------------------------------------------------------------------

    def _doc_time(self, t: float) -> dt.datetime:
        return self._start_ts + dt.timedelta(seconds=t / self.config.speed)

    def _lag_stamps(self, when: dt.datetime) -> list[str]:
        return [vatsim_ts(when - dt.timedelta(seconds=0.05 + 0.3 * b)) for b in
                range(LAG_BUCKETS)]

    # -- population -------------------------------------------------------------------------

    def _warm_up(self) -> None:
        """Each pilot slot lives WARMUP_S of flight time before the first snapshot, one pilot
        after another, so the population starts in its steady mix of phases."""
        for _ in range(self.config.pilots):
            t = -self.rng.uniform(0, WARMUP_S)
            while True:
                pilot = self._new_pilot(t)
                if self._advance(pilot, 0.0):
                    self.pilots.append(pilot)
                    break
                t = pilot.seg_t0
        self._recording = self._keep_truth

    def _advance_all(self, t: float) -> None:
        kept: list[Pilot] = []
        for pilot in self.pilots:
            if self._advance(pilot, t):
                kept.append(pilot)
        connected = sum(1 for p in kept if p.connected)
        t0 = self.time
        for _ in range(self.config.pilots - connected):
            born = t0 + (t - t0) * self.rng.random() if t > t0 else t
            pilot = self._new_pilot(born)
            if self._advance(pilot, t):
                kept.append(pilot)
        self.pilots = kept

    def _new_pilot(self, t: float) -> Pilot:
        rng = self.rng
        actype: AircraftType = rng.choices(self._types, cum_weights=self._type_weights)[0]
        small = actype.category in (PISTON, HELICOPTER) and rng.random() < 0.7
        home = self.small_fields[rng.randrange(len(self.small_fields))] if small \
            else self.traffic.pick(rng)
        general = actype.category in (PISTON, HELICOPTER) or (
            actype.category in (TURBOPROP, BIZJET) and rng.random() < 0.5)
        while True:
            callsign = registration(rng, home.icao) if general \
                else airline_callsign(rng, home.icao)
            if callsign not in self._callsigns:
                break
        while True:
            cid = rng.randrange(810_000, 1_999_999)
            if cid not in self._cids:
                break
        record: dict[str, Any] = {
            "cid": cid,
            "name": f"Simulated Pilot {cid}",
            "callsign": callsign,
            "server": server_for(home.icao),
            "pilot_rating": rng.choice((0, 0, 0, 1, 1, 3, 7, 15)),
            "military_rating": 0,
            "latitude": home.latitude,
            "longitude": home.longitude,
            "altitude": 0,
            "groundspeed": 0,
            "transponder": "2000" if not general else rng.choice(("1200", "7000", "2000")),
            "heading": 0,
            "qnh_i_hg": 0.0,
            "qnh_mb": 0,
            "flight_plan": None,
            "logon_time": "",
            "last_updated": "",
        }
        qnh = round(rng.gauss(1014, 7))
        record["qnh_mb"] = qnh
        record["qnh_i_hg"] = round(qnh * 0.02953, 2)
        pilot = Pilot(cid, callsign, actype, home, record, rng.randrange(LAG_BUCKETS))
        self._callsigns[callsign] = pilot
        self._cids.add(cid)
        pilot.seg_t0 = t
        pilot.gen = lifecycle(self.ctx, pilot)
        return pilot

    def _retire(self, pilot: Pilot) -> None:
        if self._callsigns.get(pilot.callsign) is pilot:
            del self._callsigns[pilot.callsign]
        self._cids.discard(pilot.cid)
        pilot.gone = True
        pilot.connected = False

    # -- one pilot through time --------------------------------------------------------------

    def _advance(self, pilot: Pilot, t: float) -> bool:
        """Pull the pilot's life forward to `t`; False when it has left for good."""
        while True:
            seg = pilot.seg
            end = pilot.seg_t0 + seg.duration
            drop = pilot.drop
            if drop is not None and drop[0] <= t and drop[0] <= end:
                when, kind, reconnect = drop
                _, rest = seg.split(max(0.0, when - pilot.seg_t0))
                pilot.seg, pilot.seg_t0 = rest, when
                pilot.drop = None
                if kind == CONNECT:
                    self._mark(pilot, (CONNECT,), when)
                    continue
                self._mark(pilot, (DISCONNECT,), when)
                if reconnect is None:
                    self._retire(pilot)
                    return False
                pilot.drop = (when + reconnect, CONNECT, None)
                continue
            if end > t:
                return True
            pilot.seg_t0 = end
            while True:
                try:
                    item = next(pilot.gen)
                except StopIteration:
                    self._retire(pilot)
                    return False
                if isinstance(item, tuple):
                    if item[0] == DROP_AT:
                        pilot.drop = (end + item[1], DISCONNECT, item[2])
                    else:
                        self._mark(pilot, item, end)
                    continue
                pilot.seg = item
                break

    def _mark(self, pilot: Pilot, mark: tuple[Any, ...], t: float) -> None:
        kind = mark[0]
        if kind == PLAN:
            pilot.plan = mark[1]
            pilot.record["flight_plan"] = mark[1]
        elif kind == CONNECT:
            pilot.logon = vatsim_ts(self._doc_time(t))
            pilot.record["logon_time"] = pilot.logon
            pilot.flight_uid = flight_uid(pilot.cid, pilot.callsign, pilot.logon)
            pilot.connected = True
            self._true("flight.created", pilot, t)
        elif kind == DISCONNECT:
            if pilot.connected:
                pilot.connected = False
                self._true("flight.deleted", pilot, t)
        elif kind == EVENT and pilot.connected:
            self._true(mark[1], pilot, t, mark[2])

    def _true(self, etype: str, pilot: Pilot, t: float, airport: str | None = None) -> None:
        if not self._recording or t < 0:
            return
        plan = pilot.plan
        stamp = format_ts(self._doc_time(t))
        data: dict[str, Any] = {
            "callsign": pilot.callsign,
            "flight_uid": pilot.flight_uid,
            "cid": pilot.cid,
            "dep": plan["departure"] if plan else None,
            "arr": plan["arrival"] if plan else None,
        }
        if etype == "flight.departed":
            data["off_utc"] = stamp
            data["airport"] = airport
        elif etype == "flight.arrived":
            data["in_utc"] = stamp
            data["airport"] = airport
        self._truth.append((etype, data, stamp))

    # -- sampling ---------------------------------------------------------------------------

    def _sample_all(self, t: float) -> None:
        """Write every connected pilot's state at `t` into its record, with the small noise
        pilot clients report (a few feet and knots in the air, nothing when parked)."""
        rnd = self.rng.random
        lags = None
        for pilot in self.pilots:
            if not pilot.connected:
                continue
            seg = pilot.seg
            lat, lon, alt, gs, hdg = seg.at(t - pilot.seg_t0)
            rec = pilot.record
            if gs >= 50:
                alt += (rnd() - 0.5) * 24
                gs += (rnd() - 0.5) * 4
            elif gs > 0:
                alt += (rnd() - 0.5) * 4
            elif seg.__class__ is Stay and seg.hover:
                alt += (rnd() - 0.5) * 8  # a hover wanders
            rec["latitude"] = round(lat, 5)
            rec["longitude"] = round(lon, 5)
            rec["altitude"] = round(alt)
            rec["groundspeed"] = max(0, round(gs))
            rec["heading"] = round(hdg) % 360
            if lags is None:
                lags = self._lag_stamps(self._doc_time(t))
            rec["last_updated"] = lags[pilot.slot]

    # -- choices ------------------------------------------------------------------------------

    def _pick_field(self) -> Field:
        return self.traffic.pick(self.rng)

    def _field_near(self, field: Field, lo: float, hi: float, actype: AircraftType) -> \
            Field | None:
        """A field lo..hi NM from `field`, drawn by how busy it is (GA from small fields too);
        None when none turns up after a few draws."""
        rng = self.rng
        small = actype.category in (PISTON, HELICOPTER)
        for _ in range(60):
            if small and rng.random() < 0.6:
                cand = self.small_fields[rng.randrange(len(self.small_fields))]
            else:
                cand = self.traffic.pick(rng)
            if cand is field:
                continue
            d = distance_nm(field.latitude, field.longitude, cand.latitude, cand.longitude)
            if lo <= d <= hi:
                return cand
        return None

    def _make_plan(self, pilot: Pilot, dep: Field, arr: Field, ac: AircraftType) -> \
            dict[str, Any]:
        rng = self.rng
        vfr = ac.category in (PISTON, HELICOPTER) and rng.random() < 0.7
        nm = distance_nm(dep.latitude, dep.longitude, arr.latitude, arr.longitude)
        lo, hi = ac.cruise_alt
        cruise = rng.randrange(lo // 1000, hi // 1000 + 1) * 1000
        enroute_min = int(nm / max(ac.cruise_tas, 60) * 60) + (20 if nm > 50 else 30)
        now = self._doc_time(pilot.seg_t0) + dt.timedelta(minutes=rng.randrange(5, 40))
        alternate = "" if vfr else self.traffic.pick(rng).icao
        revision = (pilot.plan or {}).get("revision_id", -1) + 1
        squawk = f"{rng.randrange(0, 8)}{rng.randrange(0, 8)}{rng.randrange(0, 8)}" \
            f"{rng.randrange(0, 8)}"
        return {
            "flight_rules": "V" if vfr else "I",
            "aircraft": ac.aircraft,
            "aircraft_faa": ac.aircraft_faa,
            "aircraft_short": ac.code,
            "departure": dep.icao,
            "arrival": arr.icao,
            "alternate": alternate,
            "cruise_tas": str(ac.cruise_tas),
            "altitude": str(cruise) if not vfr else "VFR" if rng.random() < 0.3 else str(cruise),
            "deptime": now.strftime("%H%M"),
            "enroute_time": f"{enroute_min // 60:02d}{enroute_min % 60:02d}",
            "fuel_time": f"{(enroute_min + 75) // 60:02d}{(enroute_min + 75) % 60:02d}",
            "remarks": _remarks(rng, now, pilot.callsign, vfr),
            "route": _route(rng, nm, vfr),
            "revision_id": revision,
            "assigned_transponder": "0000" if vfr else squawk,
        }


# -- formats -----------------------------------------------------------------------------------


def vatsim_ts(when: dt.datetime) -> str:
    """VATSIM's timestamp format: seven fractional digits and `Z`."""
    when = when.astimezone(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond:06d}{when.second % 10}Z"


def _cumulative(weights: Any) -> list[float]:
    out: list[float] = []
    total = 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


_FIX_LETTERS = "ABCDEFGHIKLMNOPRSTUVWXYZ"


def _fix_name(rng: random.Random) -> str:
    return "".join(rng.choice(_FIX_LETTERS) for _ in range(5))


def _route(rng: random.Random, nm: float, vfr: bool) -> str:
    """A route string shaped like filed ones: SID, fixes and airways, STAR; VFR: little."""
    if vfr:
        return rng.choice(("", "DCT", "VFR", "LOCAL"))
    parts = [_fix_name(rng) + str(rng.randrange(1, 9)) + rng.choice("ABCDEFGJKLMNPQRSTUVWXYZ")]
    for _ in range(min(12, 1 + int(nm / 250))):
        airway = rng.choice(("DCT", f"UL{rng.randrange(1, 999)}", f"J{rng.randrange(1, 199)}",
                             f"Q{rng.randrange(1, 199)}", f"N{rng.randrange(1, 999)}",
                             f"T{rng.randrange(1, 999)}"))
        parts += [_fix_name(rng), airway]
    parts += [_fix_name(rng), _fix_name(rng) + str(rng.randrange(1, 9)) + rng.choice("ABCDEFGJ")]
    return " ".join(parts)


def _remarks(rng: random.Random, when: dt.datetime, callsign: str, vfr: bool) -> str:
    if vfr:
        return rng.choice(("/V/", "/V/ VFR LOCAL", "/T/ STUDENT PILOT", "/V/ PATTERN WORK"))
    return (f"PBN/A1B1C1D1O1S1 DOF/{when:%y%m%d} REG/{callsign[:5]} OPR/{callsign[:3]} "
            f"RMK/TCAS SIMBRIEF /V/")


FACILITIES: tuple[dict[str, Any], ...] = tuple(
    {"id": i, "short": s, "long": long} for i, s, long in (
        (0, "OBS", "Observer"), (1, "FSS", "Flight Service Station"),
        (2, "DEL", "Clearance Delivery"), (3, "GND", "Ground"), (4, "TWR", "Tower"),
        (5, "APP", "Approach/Departure"), (6, "CTR", "Enroute")))
RATINGS: tuple[dict[str, Any], ...] = tuple(
    {"id": i, "short": s, "long": long} for i, s, long in (
        (-1, "INAC", "Inactive"), (0, "SUS", "Suspended"), (1, "OBS", "Observer"),
        (2, "S1", "Tower Trainee"), (3, "S2", "Tower Controller"), (4, "S3", "Senior Student"),
        (5, "C1", "Enroute Controller"), (6, "C2", "Controller 2 (not in use)"),
        (7, "C3", "Senior Controller"), (8, "I1", "Instructor"),
        (9, "I2", "Instructor 2 (not in use)"), (10, "I3", "Senior Instructor"),
        (11, "SUP", "Supervisor"), (12, "ADM", "Administrator")))
PILOT_RATINGS: tuple[dict[str, Any], ...] = tuple(
    {"id": i, "short_name": s, "long_name": long} for i, s, long in (
        (0, "NEW", "Basic Member"), (1, "PPL", "Private Pilot License"),
        (3, "IR", "Instrument Rating"), (7, "CMEL", "Commercial Multi-Engine License"),
        (15, "ATPL", "Airline Transport Pilot License"), (31, "FI", "Flight Instructor"),
        (63, "FE", "Flight Examiner")))
MILITARY_RATINGS: tuple[dict[str, Any], ...] = tuple(
    {"id": i, "short_name": s, "long_name": long} for i, s, long in (
        (0, "M0", "No Military Rating"), (1, "M1", "Military Pilot License"),
        (3, "M2", "Military Instrument Rating"), (7, "M3", "Military Multi-Engine Rating"),
        (15, "M4", "Military Mission Ready Pilot")))


def _static_sections(sim: Simulator) -> dict[str, list[dict[str, Any]]]:
    """Controllers and ATIS at the busiest fields, the servers, and prefiled plans: the
    parts of a snapshot detection ignores but real documents always carry."""
    rng = random.Random(f"{sim.config.seed}/static")
    start = sim._start_ts
    busiest = sim.traffic.fields[: max(3, min(200, sim.config.pilots // 25))]
    controllers: list[dict[str, Any]] = []
    atis: list[dict[str, Any]] = []
    cid = 1_500_000
    centres: list[str] = []
    for field in busiest:
        for suffix, facility in (("DEL", 2), ("GND", 3), ("TWR", 4), ("APP", 5)):
            if rng.random() < (0.35 if facility != 4 else 0.7):
                cid += rng.randrange(1, 500)
                controllers.append(_controller(rng, cid, f"{field.icao}_{suffix}", facility,
                                               start))
        if rng.random() < 0.5:
            cid += rng.randrange(1, 500)
            entry = _controller(rng, cid, f"{field.icao}_ATIS", 4, start)
            entry["atis_code"] = rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
            entry["text_atis"] = [f"{field.icao} INFORMATION {entry['atis_code']}. "
                                  f"RUNWAY {round(field.runway_hdg / 10) or 36:02d} IN USE.",
                                  "ADVISE ON INITIAL CONTACT YOU HAVE INFORMATION "
                                  f"{entry['atis_code']}."]
            atis.append(entry)
        artcc = sim.geo.airport_artcc(field.icao)
        if artcc and artcc not in centres and rng.random() < 0.5:
            centres.append(artcc)
            cid += rng.randrange(1, 500)
            controllers.append(_controller(rng, cid, f"{artcc}_CTR", 6, start))
    for n in range(min(40, max(2, sim.config.pilots // 50))):
        cid += rng.randrange(1, 500)
        controllers.append(_controller(rng, cid, f"OBS{n}", 0, start))
    prefiles: list[dict[str, Any]] = []
    for _ in range(max(1, sim.config.pilots // 30)):
        dep, arr = sim.traffic.pick(rng), sim.traffic.pick(rng)
        ac = AIRCRAFT[rng.randrange(len(AIRCRAFT))]
        cid += rng.randrange(1, 500)
        callsign = airline_callsign(rng, dep.icao)
        nm = distance_nm(dep.latitude, dep.longitude, arr.latitude, arr.longitude)
        when = start + dt.timedelta(minutes=rng.randrange(10, 180))
        enroute = int(nm / ac.cruise_tas * 60) + 20
        prefiles.append({
            "cid": cid, "name": f"Simulated Pilot {cid}", "callsign": callsign,
            "flight_plan": {
                "flight_rules": "I", "aircraft": ac.aircraft, "aircraft_faa": ac.aircraft_faa,
                "aircraft_short": ac.code, "departure": dep.icao, "arrival": arr.icao,
                "alternate": sim.traffic.pick(rng).icao, "cruise_tas": str(ac.cruise_tas),
                "altitude": str(ac.cruise_alt[1]), "deptime": when.strftime("%H%M"),
                "enroute_time": f"{enroute // 60:02d}{enroute % 60:02d}",
                "fuel_time": f"{(enroute + 75) // 60:02d}{(enroute + 75) % 60:02d}",
                "remarks": _remarks(rng, when, callsign, False),
                "route": _route(rng, nm, False), "revision_id": 0,
                "assigned_transponder": "0000"},
            "last_updated": vatsim_ts(start - dt.timedelta(minutes=rng.randrange(1, 300))),
        })
    return {"controllers": controllers, "atis": atis, "prefiles": prefiles,
            "servers": [dict(s) for s in SERVERS]}


def _controller(rng: random.Random, cid: int, callsign: str, facility: int,
                start: dt.datetime) -> dict[str, Any]:
    freq = 199.998 if facility == 0 else 118.0 + rng.randrange(0, 800) * 0.025
    return {
        "cid": cid,
        "name": f"Simulated Controller {cid}",
        "callsign": callsign,
        "frequency": f"{freq:.3f}",
        "facility": facility,
        "rating": 1 if facility == 0 else rng.choice((2, 3, 4, 5, 5, 7, 8)),
        "server": SERVERS[rng.randrange(len(SERVERS))]["ident"],
        "visual_range": {0: 40, 2: 20, 3: 20, 4: 50, 5: 150, 6: 600}[facility],
        "text_atis": None if facility in (0, 2, 3) else [f"{callsign} online."],
        "last_updated": "",
        "logon_time": vatsim_ts(start - dt.timedelta(minutes=rng.randrange(5, 400),
                                                     seconds=rng.random() * 60)),
    }


__all__ = ["TRUTH_TYPES", "SimConfig", "SimSnapshot", "Simulator", "vatsim_ts"]
