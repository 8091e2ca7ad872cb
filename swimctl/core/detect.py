"""VATSIM v3 snapshot N-1 + snapshot N -> flight events. Pure: no I/O, no clock, no trio.

A flight is one pilot connection, identified by (cid, callsign, logon_time): a reconnect or a
callsign change is a new flight. `Detector.process` takes one parsed snapshot and returns the
events of that cycle (created, updated, departed, arrived, deleted, and one positions batch of
the flights whose position changed) plus every current position, for snapshot-on-subscribe.

Each sample of a flight is classified on the ground or in the air (with a dead band in which
it keeps its state); a change is a departure or an arrival. A flight on the ground departs only
on evidence of flight (it has climbed from where it stood), so a take-off roll, a rejected one
or a fast taxi is not a departure. Every event carries when it happened, not when it was seen:
the logon time, the lift-off or touchdown placed between the samples around it from the recent
profile, the first snapshot that no longer held the flight. Measured against the traffic
simulator's truth (swimctl.core.sim); docs/detection.md explains the choices and the figures.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import zlib
from collections.abc import Mapping
from typing import Any

import attrs
import orjson

from .geo import Airport, Geo, distance_nm
from .model import format_ts, parse_ts

__all__ = [
    "AIRBORNE_MIN_GS_KTS",
    "AIRPORT_RADIUS_NM",
    "GROUND_MAX_GS_KTS",
    "LIFTED_FT",
    "ON_GROUND_MAX_AGL_FT",
    "Cycle",
    "Detector",
    "Event",
    "FeedError",
    "flight_uid",
    "parse_snapshot",
    "snapshot_time",
]

# At or above this groundspeed a flight first seen, or last seen in the air, counts as airborne;
# one on the ground is rolling (on its take-off roll, or taxiing fast) until it has climbed.
AIRBORNE_MIN_GS_KTS = 50
# At or below this groundspeed (and near a field, low) a flight counts as on the ground. Fast
# taxi is 20-30 kt; 40 kt leaves room for a high-speed exit after landing. Between this and
# AIRBORNE_MIN_GS_KTS is a dead band: a touch-and-go rolls through it and stays in the air.
GROUND_MAX_GS_KTS = 40
# Height above field elevation still counted as on the ground. Pilot clients report true
# altitude with sim and QNH errors of some tens of feet; 300 ft also covers fields whose
# published elevation is a reference point lower than parts of the aerodrome, while a slow
# aircraft (helicopter, balloon) above this is airborne.
ON_GROUND_MAX_AGL_FT = 300
# Distance from an airport's reference point that still counts as "at" the airport. The
# largest aerodromes (KDEN, KDFW, OERK) have stands and runway ends 3-4 NM from the point.
AIRPORT_RADIUS_NM = 5.0
# A flight that was on the ground has left it once it is this much higher than where it last
# stood. Measured against the flight's own last ground altitude, not the field's published
# elevation, so neither wrong elevation data nor QNH errors matter; runway slopes stay far
# below it. Until then a fast flight is on its take-off roll (or a rejected one, or a fast
# taxi) and has not departed.
LIFTED_FT = 100
# Faster than this nothing is still on its take-off roll (jets lift off at 130-180 kt).
ROLL_MAX_GS_KTS = 200
# Above its ground level by this much a flight has left the ground, though it may not be
# clearly flying yet (a helicopter hovering, a jet just rotated): the lift-off lies between
# the last sample below it and the first one above. A stationary flight cannot have climbed
# a slope; a taxiing one may have a little; a fast roll gets room for runway slope and the
# altitude noise of a moving aircraft.
OFF_GROUND_STILL_FT = 5
OFF_GROUND_SLOW_FT = 20
OFF_GROUND_FAST_FT = 60
# Slower than this and level for three samples running, near a field and within
# FAST_TAXI_MAX_AGL_FT of its published height, a flight last seen in the air has landed and
# taxis fast (pilots do taxi at 50-58 kt). Nothing flies level that slowly that low for 30 s.
FAST_TAXI_MAX_GS_KTS = 60
FAST_TAXI_MAX_AGL_FT = 100
# Within this of the ground level it was on a flight is still on the runway (or just above
# it): rolling samples this close keep the lift-off window open.
NEAR_GROUND_FT = 40
# A sample this much above where a flight came to a stop after landing was surely still in the
# air (runway slope and altitude noise stay well below it): touchdown is placed from there.
CLEAR_FT = 100
# A flight that was slow in its previous sample (a helicopter over its pad, a light aircraft at
# the end of its roll-out) has landed only once its altitude holds: when standing still, to
# the foot; when moving, within this many feet plus what a 1 % slope gives over the distance.
SETTLED_FT = 5
# Recent samples kept per flight below cruise speed, to place lift-off and touchdown between
# snapshots: twelve (three minutes) cover a landing roll-out and a fast taxi after it (an
# arrival is decided once the flight is slow), the approach samples before them, and a
# helicopter's hover and settling.
HISTORY = 12
HISTORY_MAX_GS_KTS = 250
# Climb and descent rates assumed where the samples do not measure them: the initial climb
# grows with speed (about 14 ft/min per knot: a jet at 170 kt climbs ~2,400 ft/min, a light
# single at 65 kt ~900); a final approach descends at ~700-800 ft/min.
CLIMB_FPM_PER_KT = 14.0
APPROACH_FPM = 750.0

_GROUND = 1
_AIRBORNE = 2
_ROLLING = 3  # fast on the ground from a ground state: not departed (yet)
_LIFTING = 4  # just off the ground (hover, rotation), not yet clearly flying

Event = tuple[str, dict[str, Any], str]
# Sanity bounds of a pilot record. Beyond them a record is garbage (and could not be sent to a
# JavaScript client as an exact number), so the pilot is skipped rather than published.
_MIN_ALT_FT = -2_000  # the Dead Sea shore is at -1,400 ft
_MAX_ALT_FT = 1_000_000  # far above anything a flight simulator flies
_MAX_GS_KTS = 20_000  # orbital speed is about 15,000 kt
_UID_MASK = (1 << 53) - 1  # JavaScript numbers are exact up to 2**53


class FeedError(ValueError):
    """A snapshot that cannot be used: not JSON, not an object, or missing its core keys."""


def parse_snapshot(raw: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """Decode a VATSIM v3 document and check the keys detection cannot do without."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FeedError(f"invalid JSON ({len(raw)} bytes): {exc}") from None
    if not isinstance(doc, dict):
        raise FeedError("snapshot is not a JSON object")
    general = doc.get("general")
    if not isinstance(general, dict):
        raise FeedError("snapshot has no `general` object")
    if not isinstance(doc.get("pilots"), list):
        raise FeedError("snapshot has no `pilots` list")
    snapshot_time(doc)
    return doc


def snapshot_time(snapshot: Mapping[str, Any]) -> dt.datetime:
    """The snapshot's `general.update_timestamp` (or legacy `general.update`) as aware UTC."""
    general = snapshot.get("general")
    if not isinstance(general, Mapping):
        raise FeedError("snapshot has no `general` object")
    stamp = general.get("update_timestamp")
    if isinstance(stamp, str):
        try:
            return parse_ts(stamp)
        except ValueError:
            pass
    legacy = general.get("update")
    if isinstance(legacy, str | int):
        try:
            return dt.datetime.strptime(str(legacy), "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
        except ValueError:
            pass
    raise FeedError("snapshot has no valid `general.update_timestamp`")


def flight_uid(cid: int, callsign: str, logon_time: str) -> int:
    """Stable 53-bit id of a flight: the same triple gives the same id in every process."""
    digest = hashlib.blake2b(f"{cid}|{callsign}|{logon_time}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & _UID_MASK


@attrs.define(slots=True)
class Cycle:
    """What one snapshot produced: its time, the events in order, and all current positions."""

    update_time: dt.datetime
    timestamp: str
    events: list[Event]
    positions: list[dict[str, Any]]
    pilots: int = 0
    skipped: int = 0
    stale: bool = False  # not newer than the last snapshot processed: no events


STATE_FORMAT = 1


class StateError(ValueError):
    """Detector state that cannot be taken over."""


def _revive(name: str, value: Any) -> Any:
    """A _Flight field as JSON gave it back: tuples were lists, NaN was null."""
    if name in ("lat", "lon") and value is None:
        return math.nan
    if name in ("plan", "raw_plan", "lift", "descent") and isinstance(value, list):
        return tuple(value)
    if name == "history" and isinstance(value, list):
        return [tuple(entry) for entry in value]
    return value


class _Flight:
    """Everything remembered about one flight between cycles."""

    __slots__ = (
        "alt",
        "artcc",
        "callsign",
        "cid",
        "descent",
        "ground_alt",
        "ground_t",
        "gs",
        "hdg",
        "history",
        "lat",
        "lift",
        "lon",
        "missing",
        "missing_since",
        "plan",
        "pos",
        "raw_plan",
        "seen",
        "settling",
        "state",
        "state_airport",
        "uid",
        "vr",
    )

    def __init__(self, uid: int, cid: int, callsign: str) -> None:
        self.uid = uid
        self.cid = cid
        self.callsign = callsign
        self.plan: tuple[str | None, str | None, str | None, str | None] = (None,) * 4
        self.raw_plan: tuple[Any, ...] | None = None  # the fields `plan` was read from
        self.lat = self.lon = math.nan
        self.alt = self.gs = self.hdg = self.vr = 0
        self.artcc: str | None = None
        self.state = 0  # _GROUND, _AIRBORNE, or 0 when never decided
        self.state_airport: str | None = None
        self.missing = 0
        self.missing_since = ""  # stamp of the first snapshot that no longer held it
        self.seen = 0.0
        self.pos: dict[str, Any] = {}
        # where and when it was last known to stand on the ground (for its lift-off)
        self.ground_alt: int | None = None
        self.ground_t = 0.0
        # (time, height above ground, groundspeed) of the first sample off the ground since
        # then, if any
        self.lift: tuple[float, int, int] | None = None
        self.settling = False  # an arrival waiting for the altitude to hold
        # the last two samples of its last descent: (t0, alt0, t1, alt1)
        self.descent: tuple[float, int, float, int] | None = None
        # (time, altitude, groundspeed) of the last few samples below cruise speed
        self.history: list[tuple[float, int, int]] = []


_PLAN_FIELDS = ("dep", "arr", "equipment", "route")


def _text(value: Any, upper: bool = False) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value:
        return None
    text: str = value.upper() if upper else value
    return text


def _plan(fp: Any) -> tuple[str | None, str | None, str | None, str | None]:
    """(dep, arr, equipment, route) of a flight plan; a missing or odd plan is all None."""
    if not isinstance(fp, dict):
        return (None, None, None, None)
    equipment = _text(fp.get("aircraft_short"))
    if equipment is None:
        full = _text(fp.get("aircraft_faa")) or _text(fp.get("aircraft"))
        if full:
            # "H/B744/L" or "A320/M-VGDW/C": the type is the part with more than one letter
            parts = [p for p in full.split("-")[0].split("/") if len(p) > 1]
            equipment = parts[0] if parts else None
    return (
        _text(fp.get("departure"), True),
        _text(fp.get("arrival"), True),
        equipment,
        _text(fp.get("route")),
    )


def _stamp(moment: float, now: float, now_stamp: str) -> str:
    """An event time as it goes on the wire; the snapshot's own stamp when it is that."""
    if moment >= now:
        return now_stamp
    return format_ts(dt.datetime.fromtimestamp(moment, dt.UTC))


def _num(value: Any) -> float:
    """A finite number from a JSON value; raises on anything else (the pilot is skipped)."""
    if value.__class__ is int or value.__class__ is float:
        if value == value and value not in (math.inf, -math.inf):
            return value
        raise ValueError("not finite")
    if isinstance(value, bool) or value is None:
        raise ValueError("not a number")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError("not finite")
    return out


class Detector:
    """The flight state machine. Not thread-safe: one detector per feed, one cycle at a time."""

    def __init__(self, geo: Geo, deleted_after: int = 2) -> None:
        if deleted_after < 1:
            raise ValueError("deleted_after must be at least 1")
        self.geo = geo
        self.deleted_after = deleted_after
        self._flights: dict[tuple[int, str, str], _Flight] = {}
        self._last_time: dt.datetime | None = None
        self._first_time: float | None = None  # of the first snapshot since a reset

    def __len__(self) -> int:
        return len(self._flights)

    @property
    def last_time(self) -> dt.datetime | None:
        """Time of the last snapshot processed."""
        return self._last_time

    def current_positions(self) -> list[dict[str, Any]]:
        """The last known position of every tracked flight."""
        return [f.pos for f in self._flights.values()]

    # -- carrying the state to another process ---------------------------------------------------

    def export_state(self, held: list[Any] | None = None) -> bytes:
        """Everything the detector remembers, as bytes another detector can take over from
        (`load_state`): so a hub that takes over the feed from another (hub/leadership.py)
        neither re-creates every flight nor loses a departure spanning the handover.

        `held`: the events this state already produced that may not be in the log yet. They
        travel with it (written ahead of publishing), so whoever takes the state over
        publishes them rather than losing them, or detecting them a second time."""
        flights = [[list(key), [getattr(flight, name) for name in _Flight.__slots__]]
                   for key, flight in self._flights.items()]
        doc = {"format": STATE_FORMAT,
               "last_time": format_ts(self._last_time) if self._last_time else None,
               "first_time": self._first_time, "deleted_after": self.deleted_after,
               "flights": flights, "held": held or []}
        return zlib.compress(orjson.dumps(doc), 1)

    def load_state(self, state: bytes) -> list[Any]:
        """Take over from `export_state`'s bytes and return the events held with them;
        StateError when they are not such state (the caller starts fresh instead)."""
        try:
            doc = orjson.loads(zlib.decompress(state))
            if doc.get("format") != STATE_FORMAT:
                raise StateError("detector state of another format")
            flights: dict[tuple[int, str, str], _Flight] = {}
            for key, values in doc["flights"]:
                cid, callsign, logon = key
                flight = _Flight(0, int(cid), str(callsign))
                for name, value in zip(_Flight.__slots__, values, strict=True):
                    setattr(flight, name, _revive(name, value))
                flights[(int(cid), str(callsign), str(logon))] = flight
            last = doc.get("last_time")
            last_time = parse_ts(last) if last else None
            held = doc.get("held") or []
            if not isinstance(held, list):
                raise TypeError("held events are not a list")
        except (zlib.error, orjson.JSONDecodeError, AttributeError, KeyError, TypeError,
                ValueError) as exc:
            raise StateError(f"unreadable detector state: {exc}") from None
        self._flights = flights
        self._last_time = last_time
        self._first_time = doc.get("first_time")
        return held

    def reset(self, when: dt.datetime | None = None) -> list[Event]:
        """Forget every flight; returns a `flight.deleted` for each (timestamped `when`)."""
        stamp = format_ts(when or self._last_time or dt.datetime.now(dt.UTC))
        events = [("flight.deleted", self._deleted(f), stamp) for f in self._flights.values()]
        self._flights.clear()
        self._last_time = None
        self._first_time = None
        return events

    # -- one cycle -------------------------------------------------------------------------

    def process(
        self, snapshot: Mapping[str, Any], *, time_shift: dt.timedelta | None = None
    ) -> Cycle:
        """Diff one snapshot against the state; `time_shift` moves event times (replay loops)."""
        when = snapshot_time(snapshot)
        if time_shift:
            when += time_shift
        stamp = format_ts(when)
        pilots = snapshot.get("pilots")
        if not isinstance(pilots, list):
            raise FeedError("snapshot has no `pilots` list")
        if self._last_time is not None and when <= self._last_time:
            return Cycle(when, stamp, [], self.current_positions(), len(pilots), 0, stale=True)

        now = when.timestamp()
        if self._first_time is None:
            self._first_time = now
        first = self._first_time
        shift = time_shift.total_seconds() if time_shift else 0.0
        flights = self._flights
        geo = self.geo
        artcc_at = geo.artcc_at
        events: list[Event] = []
        changed: list[dict[str, Any]] = []
        skipped = 0

        for rec in pilots:
            try:
                if not isinstance(rec, dict):
                    raise TypeError("pilot is not an object")
                cid = rec["cid"]
                cid = cid if cid.__class__ is int else int(cid)
                callsign = rec["callsign"]
                logon = rec["logon_time"]
                if not isinstance(callsign, str) or not callsign or not isinstance(logon, str):
                    raise TypeError("callsign/logon_time")
                # Fast paths for what orjson gives (floats, ints); anything else through _num.
                # A non-finite float fails the range checks (NaN compares false) or round().
                lat = rec["latitude"]
                if lat.__class__ is not float:
                    lat = float(_num(lat))
                lon = rec["longitude"]
                if lon.__class__ is not float:
                    lon = float(_num(lon))
                if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
                    raise ValueError("position out of range")
                alt = rec["altitude"]
                alt = alt if alt.__class__ is int else round(_num(alt))
                gs = rec["groundspeed"]
                gs = gs if gs.__class__ is int else round(_num(gs))
                if not (
                    0 <= cid <= _UID_MASK
                    and _MIN_ALT_FT <= alt <= _MAX_ALT_FT
                    and 0 <= gs <= _MAX_GS_KTS
                ):
                    raise ValueError("value out of range")
                hdg = rec.get("heading", 0)
                if hdg.__class__ is int:
                    hdg %= 360
                else:
                    hdg = round(_num(hdg)) % 360 if hdg is not None else 0
                fp = rec.get("flight_plan")
                # the plan's raw fields: re-read only when they change (rarely)
                raw_plan = (
                    (fp.get("departure"), fp.get("arrival"), fp.get("aircraft_short"),
                     fp.get("aircraft_faa"), fp.get("aircraft"), fp.get("route"))
                    if fp.__class__ is dict else None
                )
            except (KeyError, TypeError, ValueError, OverflowError):
                skipped += 1
                continue

            key = (cid, callsign, logon)
            flight = flights.get(key)
            if flight is not None and flight.seen == now:
                skipped += 1  # the same connection twice in one snapshot: keep the first
                continue
            is_new = flight is None
            if flight is None:
                flight = _Flight(flight_uid(cid, callsign, logon), cid, callsign)
                flights[key] = flight
            flight.missing = 0
            if is_new or raw_plan != flight.raw_plan:
                plan = _plan(fp)
                flight.raw_plan = raw_plan
            else:
                plan = flight.plan

            moved = is_new or (
                lat != flight.lat
                or lon != flight.lon
                or alt != flight.alt
                or gs != flight.gs
                or hdg != flight.hdg
            )
            plan_changed = plan != flight.plan
            if moved:
                if not is_new:
                    elapsed = now - flight.seen
                    flight.vr = round((alt - flight.alt) * 60.0 / elapsed) if elapsed > 0 else 0
                if is_new or lat != flight.lat or lon != flight.lon:
                    flight.artcc = artcc_at(lat, lon)
                flight.lat, flight.lon, flight.alt, flight.gs, flight.hdg = lat, lon, alt, gs, hdg
            flight.seen = now
            old_plan = flight.plan
            flight.plan = plan
            if moved or plan_changed:
                flight.pos = {
                    "callsign": callsign,
                    "flight_uid": flight.uid,
                    "latitude": lat,
                    "longitude": lon,
                    "altitude_ft": alt,
                    "groundspeed_kts": gs,
                    "heading_deg": hdg,
                    "vertical_rate_fpm": flight.vr,
                    "current_artcc": flight.artcc,
                    "dep": plan[0],
                    "arr": plan[1],
                }
                if moved:
                    changed.append(flight.pos)

            if is_new:
                events.append(("flight.created", self._flight_data(flight),
                               self._connected_at(logon, first, now, shift, stamp)))
            elif plan_changed:
                data = self._flight_data(flight)
                data["changes"] = [
                    name for name, a, b in zip(_PLAN_FIELDS, old_plan, plan, strict=True) if a != b
                ]
                events.append(("flight.updated", data, stamp))

            if moved or flight.settling:
                if gs >= HISTORY_MAX_GS_KTS and flight.state == _AIRBORNE:
                    flight.settling = False  # cruising: nothing to classify or remember
                    if flight.history:
                        flight.history = []
                else:
                    self._track(flight, now, stamp, events)
            elif flight.state == _GROUND:
                flight.ground_t = now

        # one pass over every flight: the ones this snapshot lacked, and everyone's position
        positions: list[dict[str, Any]] = []
        gone: list[tuple[int, str, str]] = []
        for key, flight in flights.items():
            if flight.seen != now:
                if not flight.missing:
                    flight.missing_since = stamp
                flight.missing += 1
                if flight.missing >= self.deleted_after:
                    gone.append(key)
                    # stamped when it left: the first snapshot without it, not this one
                    events.append(("flight.deleted", self._deleted(flight),
                                   flight.missing_since))
                    continue
            positions.append(flight.pos)
        for key in gone:
            del flights[key]

        if changed:
            events.append(
                ("flight.positions", {"count": len(changed), "positions": changed}, stamp)
            )
        self._last_time = when
        return Cycle(when, stamp, events, positions, len(pilots), skipped)

    # -- helpers ---------------------------------------------------------------------------

    def _track(self, flight: _Flight, now: float, stamp: str, events: list[Event]) -> None:
        """Classify a flight's new sample; a change of state is a departure or an arrival,
        stamped with when the lift-off or touchdown happened."""
        alt = flight.alt
        if flight.gs < HISTORY_MAX_GS_KTS:
            history = flight.history
            if flight.state == _AIRBORNE and history and history[-1][1] - alt >= NEAR_GROUND_FT:
                # still coming down: remembered beyond the history, in case a long fast taxi
                # after landing pushes the approach out of it
                flight.descent = (history[-1][0], history[-1][1], now, alt)
            history.append((now, alt, flight.gs))
            if len(history) > HISTORY:
                del history[0]
        elif flight.history:
            flight.history = []
        flight.settling = False
        state, airport = self._classify(flight)
        if state in (_ROLLING, _LIFTING):
            self._off_ground(flight, now, state)
            return
        if not state:
            return
        previous, prev_airport = flight.state, flight.state_airport
        if previous == _AIRBORNE and state == _GROUND and self._settling(flight):
            flight.settling = True  # look again at the next sample, moved or not
            return
        flight.state = state
        if state == _GROUND:
            flight.state_airport = airport
            flight.ground_alt = alt
            flight.ground_t = now
            flight.lift = None
        if previous == _GROUND and state == _AIRBORNE:
            off = _stamp(self._lift_off(flight, now), now, stamp)
            events.append(("flight.departed",
                           self._movement(flight, "off_utc", off, prev_airport), off))
        elif previous == _AIRBORNE and state == _GROUND:
            on = _stamp(self._touchdown(flight, now), now, stamp)
            events.append(("flight.arrived", self._movement(flight, "in_utc", on, airport), on))
            flight.descent = None

    def _classify(self, flight: _Flight) -> tuple[int, str | None]:
        """(_GROUND, airport), (_AIRBORNE, None), (_ROLLING | _LIFTING, None), or (0, None)
        for the dead band.

        A flight on the ground leaves it only with evidence of flight: higher than where it
        last stood by LIFTED_FT, or faster than any take-off roll. Until then it is rolling
        (fast, on the runway) or lifting (off the ground, not yet clearly flying).
        """
        gs = flight.gs
        on_ground = flight.state == _GROUND and flight.ground_alt is not None
        if on_ground:
            climbed = flight.alt - flight.ground_alt  # type: ignore[operator]
            if climbed >= LIFTED_FT or gs >= ROLL_MAX_GS_KTS:
                return _AIRBORNE, None
            if gs >= AIRBORNE_MIN_GS_KTS:
                return (_LIFTING if climbed >= OFF_GROUND_FAST_FT else _ROLLING), None
            if climbed >= (OFF_GROUND_STILL_FT if gs <= 5 else OFF_GROUND_SLOW_FT):
                return _LIFTING, None
        fast_taxi = False
        if not on_ground and gs > GROUND_MAX_GS_KTS:
            fast_taxi = gs < FAST_TAXI_MAX_GS_KTS and self._taxiing_fast(flight)
            if not fast_taxi:
                return (_AIRBORNE if gs >= AIRBORNE_MIN_GS_KTS else 0), None
        elif gs > GROUND_MAX_GS_KTS:
            return 0, None
        airport = self._airport_near(flight)
        if airport is None:
            return 0, None
        if not on_ground and airport.elevation_ft is not None and (
            flight.alt - airport.elevation_ft
            > (FAST_TAXI_MAX_AGL_FT if fast_taxi else ON_GROUND_MAX_AGL_FT)
        ):
            # slow but well above the field (hovering, very slow), or level and fast-taxi
            # slow but not down at the field's height (a low pass)
            return (_AIRBORNE if gs >= AIRBORNE_MIN_GS_KTS or not fast_taxi else 0), None
        return _GROUND, airport.icao

    @staticmethod
    def _taxiing_fast(flight: _Flight) -> bool:
        """Slower than FAST_TAXI_MAX_GS_KTS three samples running at a level altitude: no
        aircraft flies level at a fast taxi's pace for half a minute (a touch-and-go rolls
        for seconds; the sample before it, on short final, may look level with the roll, the
        one after is climbing), so this one has landed and taxis fast; it is judged like a
        slow one, near a field and down at its height."""
        history = flight.history
        if len(history) < 3:
            return False
        for (t0, a0, gs0), (t1, a1, gs1) in ((history[-3], history[-2]),
                                             (history[-2], history[-1])):
            if gs0 >= FAST_TAXI_MAX_GS_KTS or gs1 >= FAST_TAXI_MAX_GS_KTS:
                return False
            if abs(a1 - a0) > SETTLED_FT + (gs0 + gs1) / 2 * (t1 - t0) / 60.0:
                return False
        return True

    @staticmethod
    def _off_ground(flight: _Flight, now: float, state: int) -> None:
        """A flight still counted on the ground: rolling on the runway moves its last time on
        the ground on; the first sample off it is the latest a lift-off can have been."""
        if state == _ROLLING:
            flight.ground_t = now
            flight.lift = None
        elif flight.lift is None:
            flight.lift = (now, flight.alt - (flight.ground_alt or flight.alt), flight.gs)

    @staticmethod
    def _settling(flight: _Flight) -> bool:
        """Slow in its previous sample and still changing altitude (a helicopter hovering or
        coming down onto its pad): not landed yet. Standing still, a flight on the ground
        reports the same altitude every time; moving, it may have rolled down a slope."""
        history = flight.history
        if len(history) < 2:
            return False
        t0, a0, gs0 = history[-2]
        if gs0 >= AIRBORNE_MIN_GS_KTS:
            return False
        if gs0 <= 5 and flight.gs <= 5:
            return flight.alt != a0
        slope_ft = (gs0 + flight.gs) / 2 * (history[-1][0] - t0) / 60.0
        return abs(flight.alt - a0) > SETTLED_FT + slope_ft

    @staticmethod
    def _connected_at(logon: str, first: float, now: float, shift: float, stamp: str) -> str:
        """When a new flight connected: its `logon_time` when that falls while this detector
        has been watching (so the time is exact even if the flight was missing from a
        snapshot or two), else this snapshot's time (connected before we started, or a logon
        time that cannot be right)."""
        try:
            born = parse_ts(logon).timestamp() + shift
        except ValueError:
            return stamp
        if first < born <= now:
            return format_ts(dt.datetime.fromtimestamp(born, dt.UTC))
        return stamp

    @staticmethod
    def _lift_off(flight: _Flight, now: float) -> float:
        """When the flight left the ground, inside the window between its last sample on the
        ground and its first one off it: back from its height at its climb rate (measured
        since the last sample if that one was already flying, else one that fits its speed);
        from a hover, halfway, since a hover says nothing of how long it lasted."""
        ground = flight.ground_alt if flight.ground_alt is not None else flight.alt
        t_hi, height, gs = now, flight.alt - ground, flight.gs
        if flight.lift is not None:
            t_hi, height, gs = flight.lift
            if gs <= 5:
                return (flight.ground_t + t_hi) / 2
        rate = 0.0
        history = flight.history
        if flight.lift is None and len(history) >= 2:
            t0, a0, _ = history[-2]
            if t0 > flight.ground_t and now > t0 and a0 - ground >= NEAR_GROUND_FT:
                rate = (flight.alt - a0) * 60.0 / (now - t0)
        if rate <= 0:
            rate = min(3500.0, max(500.0, gs * CLIMB_FPM_PER_KT))
        estimate = t_hi - max(0, height) * 60.0 / rate
        return min(t_hi, max(flight.ground_t, estimate))

    @staticmethod
    def _touchdown(flight: _Flight, now: float) -> float:
        """When the flight touched down.

        A helicopter: walking back over the stationary samples it has just stood in, the
        first one above the sample after it (by OFF_GROUND_STILL_FT) was a hover; touchdown
        lies between the two, halfway, since a hover says nothing of how long it lasted.
        Otherwise from the approach: the last sample CLEAR_FT above where the flight now
        stands (beyond runway slope and altitude noise), followed down at the descent rate
        measured over the samples before it (or a normal approach rate), and no later than
        the first sample after it back near the ground (rolling out).
        """
        history = flight.history
        upper = now
        for i in range(len(history) - 2, -1, -1):
            t_i, a_i, gs_i = history[i]
            if gs_i > 5:
                break
            if a_i - history[i + 1][1] >= OFF_GROUND_STILL_FT:
                return (t_i + upper) / 2
            upper = t_i
        ground = flight.alt
        for i in range(len(history) - 2, -1, -1):
            t_i, a_i, _ = history[i]
            if a_i - ground < NEAR_GROUND_FT:
                upper = t_i  # rolling out already
            if a_i - ground < CLEAR_FT:
                continue
            rate = APPROACH_FPM
            for j in range(i - 1, -1, -1):  # over up to 30 s of approach before it
                t_j, a_j, _ = history[j]
                if t_i - t_j > 31.0:
                    break
                if t_i > t_j and a_j > a_i:
                    measured = (a_j - a_i) * 60.0 / (t_i - t_j)
                    rate = measured if 150.0 <= measured <= 3000.0 else APPROACH_FPM
            estimate = t_i + (a_i - ground) * 60.0 / rate
            return min(upper, max(t_i, estimate))
        if flight.descent is not None:  # the approach has left the history: its last descent
            t0, a0, t1, a1 = flight.descent
            rate = (a0 - a1) * 60.0 / (t1 - t0) if t1 > t0 else APPROACH_FPM
            if not 150.0 <= rate <= 3000.0:
                rate = APPROACH_FPM
            if a1 - ground >= CLEAR_FT:
                return min(upper, t1 + (a1 - ground) * 60.0 / rate)
            return min(t1, max(t0, t0 + (a0 - ground) * 60.0 / rate))
        return upper

    def _airport_near(self, flight: _Flight) -> Airport | None:
        """The planned departure/arrival field if the flight is at it, else the nearest field."""
        geo = self.geo
        for code in (flight.plan[0], flight.plan[1]):
            apt = geo.airport(code)
            if apt is not None and (
                distance_nm(flight.lat, flight.lon, apt.latitude, apt.longitude)
                <= AIRPORT_RADIUS_NM
            ):
                return apt
        return geo.nearest_airport(flight.lat, flight.lon, AIRPORT_RADIUS_NM)

    @staticmethod
    def _flight_data(flight: _Flight) -> dict[str, Any]:
        """`flight.created` / `flight.updated` data, keys in model.FlightData order."""
        dep, arr, equipment, route = flight.plan
        return {
            "callsign": flight.callsign,
            "flight_uid": flight.uid,
            "cid": flight.cid,
            "dep": dep,
            "arr": arr,
            "equipment": equipment,
            "route": route,
            "latitude": flight.lat,
            "longitude": flight.lon,
            "altitude_ft": flight.alt,
            "groundspeed_kts": flight.gs,
            "heading_deg": flight.hdg,
            "current_artcc": flight.artcc,
        }

    @staticmethod
    def _movement(flight: _Flight, key: str, stamp: str, airport: str | None) -> dict[str, Any]:
        """`flight.departed` / `flight.arrived` data; a flight with no plan names the field."""
        dep, arr = flight.plan[0], flight.plan[1]
        if key == "off_utc":
            dep = dep or airport
        else:
            arr = arr or airport
        return {
            "callsign": flight.callsign,
            "flight_uid": flight.uid,
            "dep": dep,
            "arr": arr,
            key: stamp,
            "latitude": flight.lat,
            "longitude": flight.lon,
            "current_artcc": flight.artcc,
        }

    @staticmethod
    def _deleted(flight: _Flight) -> dict[str, Any]:
        return {
            "callsign": flight.callsign,
            "flight_uid": flight.uid,
            "dep": flight.plan[0],
            "arr": flight.plan[1],
        }
