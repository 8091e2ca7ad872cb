"""One simulated pilot: a connection's life as a plan of motion segments and marks.

A pilot's life is a generator (`lifecycle`) that yields motion segments (motion.py) and marks
(connect, disconnect, a new flight plan, a true departure or arrival) in time order. `Pilot`
pulls it forward to any time, so the simulator can sample every pilot once per snapshot while
each mark keeps the exact time it happened at. The rates below say how messy the traffic is;
they are guesses from watching the network, and each case is one a detector meets there.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Generator, Iterator
from typing import Any

import attrs

from .motion import FT_PER_NM_GLIDE, Route, Segment, State, Stay, line
from .world import (
    BIZJET,
    HEAVY,
    HELICOPTER,
    JET,
    PISTON,
    TURBOPROP,
    AircraftType,
    Field,
)

# -- how messy the traffic is --------------------------------------------------------------------
P_NO_PLAN = 0.06  # connects without a flight plan (recorded snapshots: 4-7 %)
P_FILE_LATER = 0.45  # ... of those, files one a few minutes after connecting
P_NEVER_FLIES = 0.04  # connects at the stand and leaves without moving
P_IDLE_HOURS = 0.02  # sits connected at the stand for hours, then leaves
P_DISCONNECT_IN_FLIGHT = 0.03  # connection lost somewhere en route
P_RECONNECT = 0.6  # ... of those, back under the same callsign minutes later
P_QUICK_RECONNECT = 0.15  # ... of the reconnects, back within seconds
P_DISCONNECT_TAXI_IN = 0.08  # leaves while still taxiing in
P_TURNAROUND = 0.10  # files the next leg and flies again without reconnecting
P_AMEND = 0.05  # amends the route while taxiing out
P_DIVERT = 0.015  # lands somewhere other than planned
P_GO_AROUND = 0.025  # goes around once before landing
P_REJECTED_TAKEOFF = 0.004  # aborts the take-off roll, taxis back, goes again
P_SITS_ON_RUNWAY = 0.012  # lines up and waits minutes before rolling
P_SITS_AFTER_LANDING = 0.008  # stops on the runway after landing and waits
P_FAST_TAXI = 0.01  # taxis a stretch at 42-58 kt
P_PISTON_LOCAL = 0.45  # piston flights that stay at their field (circuits, local)
P_TOUCH_AND_GO = 0.7  # ... a circuit ends in a touch-and-go rather than a full stop

EVENT = "event"
CONNECT = "connect"
DISCONNECT = "disconnect"
PLAN = "plan"
DROP_AT = "drop_at"  # (DROP_AT, delay s, reconnect delay s or None): connection lost later

Mark = tuple[Any, ...]
Item = Segment | Mark
# A phase of a flight: the segments and marks it yields, then what it hands the next phase.
Phase = Generator[Item, None, Any]


@attrs.frozen
class Context:
    """What a lifecycle may ask of the simulator: its randomness, fields, flight plans."""

    rng: random.Random
    pick_field: Callable[[], Field]
    field_near: Callable[[Field, float, float, AircraftType], Field | None]
    make_plan: Callable[..., dict[str, Any]]


class Pilot:
    """A pilot client: identity, its snapshot record, and where its life has got to."""

    __slots__ = ("actype", "callsign", "cid", "connected", "drop", "flight_uid", "gen", "gone",
                 "home", "logon", "plan", "record", "seg", "seg_t0", "slot")

    def __init__(self, cid: int, callsign: str, actype: AircraftType, home: Field,
                 record: dict[str, Any], slot: int) -> None:
        self.cid = cid
        self.callsign = callsign
        self.actype = actype
        self.home = home
        self.record = record
        self.slot = slot  # its place in the snapshot's lag buckets
        self.plan: dict[str, Any] | None = None
        self.connected = False
        self.gone = False
        self.logon = ""
        self.flight_uid = 0
        # a connection change due mid-segment: (when, CONNECT or DISCONNECT, reconnect delay)
        self.drop: tuple[float, str, float | None] | None = None
        self.seg: Segment = Stay((home.latitude, home.longitude, 0.0, 0.0, 0.0), 0.0)
        self.seg_t0 = 0.0
        self.gen: Iterator[Item] = iter(())

    def sample(self, t: float) -> State:
        return self.seg.at(t - self.seg_t0)


def lifecycle(ctx: Context, pilot: Pilot) -> Iterator[Item]:
    """Everything one pilot does from connecting to leaving the network."""
    rng = ctx.rng
    ac = pilot.actype
    field = pilot.home
    yield (CONNECT,)
    stand = _stand(field, rng)
    here = _ground_state(field, stand, rng.uniform(0, 360))
    planless = rng.random() < P_NO_PLAN
    if rng.random() < P_IDLE_HOURS:
        yield (PLAN, None if planless else ctx.make_plan(pilot, field, ctx.pick_field(), ac))
        yield Stay(here, rng.uniform(3600, 4 * 3600))
        yield (DISCONNECT,)
        return
    if rng.random() < P_NEVER_FLIES:
        yield (PLAN, None if planless else ctx.make_plan(pilot, field, ctx.pick_field(), ac))
        yield Stay(here, rng.uniform(120, 1800))
        yield (DISCONNECT,)
        return
    local = ac.category in (PISTON, HELICOPTER) and rng.random() < P_PISTON_LOCAL
    dest = field if local else (ctx.field_near(field, *ac.trip_nm, ac) or field)
    local = local or dest is field
    plan: dict[str, Any] | None = None
    if planless and rng.random() < P_FILE_LATER:
        yield Stay(here, rng.uniform(60, 480))
        planless = False
    if not planless:
        plan = ctx.make_plan(pilot, field, dest, ac)
        yield (PLAN, plan)
    elif ac.category not in (PISTON, HELICOPTER) and rng.random() < 0.5:
        yield Stay(here, rng.uniform(120, 1800))  # an airliner without a plan mostly leaves
        yield (DISCONNECT,)
        return
    while True:
        yield Stay(here, _stand_time(ac, rng))
        if ac.category == HELICOPTER:
            landed = yield from _helicopter(ctx, pilot, field, dest, stand)
        elif local:
            landed = yield from _circuits(ctx, pilot, field, stand)
        else:
            landed = yield from _trip(ctx, pilot, field, dest, stand)
        if landed is None:
            return  # gone for good somewhere on the way
        field, stand, here = landed
        if rng.random() < P_TURNAROUND and ac.category != HELICOPTER:
            yield Stay(here, rng.uniform(300, 1800))
            dest = ctx.field_near(field, *ac.trip_nm, ac) or field
            local = dest is field
            if pilot.plan is not None or rng.random() < 0.5:
                yield (PLAN, ctx.make_plan(pilot, field, dest, ac))
            continue
        yield Stay(here, rng.uniform(5, 600))
        yield (DISCONNECT,)
        return


# -- phases ---------------------------------------------------------------------------------------

Landed = tuple[Field, tuple[float, float], State] | None


def _trip(ctx: Context, pilot: Pilot, field: Field, dest: Field,
          stand: tuple[float, float]) -> Phase:
    """Stand to stand between two fields: taxi, take-off, en route, approach, landing, taxi."""
    rng = ctx.rng
    ac = pilot.actype
    yield from _taxi_out(ctx, field, stand)
    if pilot.plan is not None and rng.random() < P_AMEND:
        yield (PLAN, {**pilot.plan, "route": pilot.plan["route"] + " DCT",
                      "revision_id": pilot.plan["revision_id"] + 1})
    airborne_at, _ = yield from _take_off(ctx, pilot, field)
    if rng.random() < P_DIVERT and ac.category in (JET, HEAVY, TURBOPROP, BIZJET):
        alternate = ctx.field_near(dest, 30, 200, ac)
        if alternate is not None and alternate is not field:
            if pilot.plan is not None and rng.random() < 0.5:
                pilot_plan = {**pilot.plan, "arrival": alternate.icao,
                              "revision_id": pilot.plan["revision_id"] + 1}
                yield from _en_route(ctx, pilot, airborne_at, alternate,
                                     before_descent=(PLAN, pilot_plan))
            else:
                yield from _en_route(ctx, pilot, airborne_at, alternate)
            dest = alternate
        else:
            yield from _en_route(ctx, pilot, airborne_at, dest)
    else:
        yield from _en_route(ctx, pilot, airborne_at, dest)
    if rng.random() < P_GO_AROUND:
        yield from _approach(ctx, pilot, dest, go_around=True)
    return (yield from _land_and_taxi_in(ctx, pilot, dest))


def _taxi_out(ctx: Context, field: Field, stand: tuple[float, float]) -> Iterator[Item]:
    rng = ctx.rng
    hold = field.runway_point(-0.08, 0.12)
    yield from _taxi(rng, field, stand, hold)


def _take_off(ctx: Context, pilot: Pilot, field: Field) -> Phase:
    """Line up, (maybe wait), roll, lift off (a true departure), climb out; returns the state
    at the end of the initial climb."""
    rng = ctx.rng
    ac = pilot.actype
    hold = field.runway_point(-0.08, 0.12)
    start = field.runway_point(0.0)
    hdg = field.runway_hdg
    while True:
        g0 = field.ground_ft(*hold)
        g1 = field.ground_ft(*start)
        yield line(field, hold, start, 8, 8, g0, g1, hdg=None)
        wait = rng.uniform(180, 1200) if rng.random() < P_SITS_ON_RUNWAY else rng.uniform(0, 50)
        yield Stay((*field.to_latlon(*start), g1, 0.0, hdg), wait)
        accel = rng.uniform(*ac.accel)
        vr = ac.liftoff_kts + rng.uniform(-5, 8)
        if rng.random() < P_REJECTED_TAKEOFF and vr > 70:
            abort = rng.uniform(55, min(vr - 10, 100))
            run = abort * abort / (2 * accel) / 3600
            p_abort = field.runway_point(run)
            yield line(field, start, p_abort, 0, abort, g1, field.ground_ft(*p_abort))
            decel = rng.uniform(3.0, 5.0)
            stop_nm = (abort * abort - 15 * 15) / (2 * decel) / 3600
            p_stop = field.runway_point(run + stop_nm)
            yield line(field, p_abort, p_stop, abort, 15, field.ground_ft(*p_abort),
                       field.ground_ft(*p_stop))
            yield Stay((*field.to_latlon(*p_stop), field.ground_ft(*p_stop), 0.0, hdg),
                       rng.uniform(20, 120))
            yield from _taxi(rng, field, p_stop, hold)
            continue
        run_nm = vr * vr / (2 * accel) / 3600
        p_lift = field.runway_point(run_nm)
        g_lift = field.ground_ft(*p_lift)
        yield line(field, start, p_lift, 0, vr, g1, g_lift)
        yield (EVENT, "flight.departed", field.icao)
        # initial climb straight ahead to 1,500 ft above the field (GA: 800 ft)
        rise = 1500.0 if ac.category not in (PISTON,) else 800.0
        climb_fps = ac.climb_fpm * rng.uniform(0.8, 1.2) / 60.0
        seconds = rise / climb_fps
        v_end = vr + (25 if ac.category in (JET, HEAVY, BIZJET) else 12)
        dist = (vr + v_end) / 2 * seconds / 3600
        p_end = field.runway_point(run_nm + dist)
        yield line(field, p_lift, p_end, vr, v_end, g_lift, g_lift + rise)
        lat, lon = field.to_latlon(*p_end)
        return (lat, lon, g_lift + rise, v_end, hdg), p_end


def _en_route(ctx: Context, pilot: Pilot, start: State, dest: Field,
              before_descent: Mark | None = None) -> Iterator[Item]:
    """Climb, cruise and descend on the great circle to the destination's approach fix."""
    rng = ctx.rng
    ac = pilot.actype
    lat, lon, alt, _, _ = start
    fix_nm, fix_agl = _fix(ac)
    fix_xy = dest.runway_point(-fix_nm)
    fix_lat, fix_lon = dest.to_latlon(*fix_xy)
    fix_alt = dest.ground_ft(*fix_xy) + fix_agl
    route = Route(lat, lon, fix_lat, fix_lon)
    total = route.total_nm
    wind = rng.uniform(-60, 80) if ac.cruise_tas > 250 else rng.uniform(-20, 20)
    gs_cruise = max(60.0, ac.cruise_tas + wind)
    gs_climb = max(60.0, 0.72 * ac.cruise_tas + wind / 2) if ac.cruise_tas > 250 \
        else 0.85 * gs_cruise
    gs_desc = max(60.0, 0.8 * ac.cruise_tas + wind / 2) if ac.cruise_tas > 250 \
        else gs_cruise
    climb_fpm = ac.climb_fpm * rng.uniform(0.7, 1.0) * (0.75 if ac.cruise_tas > 250 else 0.9)
    k_climb = gs_climb / (60.0 * climb_fpm)  # NM per ft climbed
    k_desc = 3.0 / 1000.0  # NM per ft descended
    lo, hi = ac.cruise_alt
    cruise = float(rng.randrange(lo // 500, hi // 500 + 1) * 500)
    fits = (total + alt * k_climb + fix_alt * k_desc) / (k_climb + k_desc)
    cruise = max(min(cruise, fits), alt, fix_alt)
    climb_nm = max(0.0, (cruise - alt) * k_climb)
    desc_nm = max(0.0, (cruise - fix_alt) * k_desc)
    cruise_nm = max(0.0, total - climb_nm - desc_nm)
    arcs: list[Segment] = []
    s = 0.0
    if climb_nm > 0:
        arcs.append(route.arc(s, climb_nm, gs_climb, alt, cruise))
        s += climb_nm
    if cruise_nm > 0:
        arcs.append(route.arc(s, cruise_nm, gs_cruise, cruise, cruise))
        s += cruise_nm
    descent = route.arc(s, max(0.0, total - s), gs_desc, cruise, fix_alt)
    if rng.random() < P_DISCONNECT_IN_FLIGHT:
        airborne = sum(a.duration for a in arcs) + descent.duration
        reconnect = None
        if rng.random() < P_RECONNECT:
            reconnect = rng.uniform(2, 14) if rng.random() < P_QUICK_RECONNECT \
                else rng.uniform(20, 480)
        yield (DROP_AT, rng.uniform(0, airborne), reconnect)
    yield from arcs
    if before_descent is not None:
        yield before_descent
    yield descent


def _fix(ac: AircraftType) -> tuple[float, float]:
    """Where the approach starts: NM from the threshold and height above the field."""
    if ac.category in (JET, HEAVY, BIZJET):
        return 12.0, 3000.0
    if ac.category == TURBOPROP:
        return 9.0, 2200.0
    if ac.category == HELICOPTER:
        return 3.0, 600.0
    return 4.0, 1100.0


def _approach(ctx: Context, pilot: Pilot, dest: Field, go_around: bool = False,
              touch_and_go: bool = False) -> Phase:
    """From the fix down the final approach to touchdown (the caller lands); with
    `go_around`, down to a few hundred feet, then climb away and come back to the fix."""
    rng = ctx.rng
    ac = pilot.actype
    fix_nm, fix_agl = _fix(ac)
    vapp = ac.approach_kts + rng.uniform(-5, 10)
    p_fix = dest.runway_point(-fix_nm)
    gate_nm = min(4.0, fix_nm - 1.0)
    p_gate = dest.runway_point(-gate_nm)
    p_td = dest.runway_point(rng.uniform(0.12, 0.3))
    g_td = dest.ground_ft(*p_td)
    v_fix = min(ac.cruise_tas * 0.8, 210.0) if ac.cruise_tas > 250 else vapp + 15
    yield line(dest, p_fix, p_gate, v_fix, vapp + 5, dest.ground_ft(*p_fix) + fix_agl,
               g_td + gate_nm * FT_PER_NM_GLIDE)
    if not go_around:
        yield line(dest, p_gate, p_td, vapp + 5, vapp, g_td + gate_nm * FT_PER_NM_GLIDE, g_td)
        return vapp, p_td, g_td
    # go around at 100-400 ft: climb away on the runway heading, then fly back to the fix
    height = rng.uniform(100, 400)
    p_ga = dest.runway_point(-height / FT_PER_NM_GLIDE)
    yield line(dest, p_gate, p_ga, vapp + 5, vapp, g_td + gate_nm * FT_PER_NM_GLIDE,
               g_td + height)
    p_up = dest.runway_point(4.0)
    yield line(dest, p_ga, p_up, vapp, vapp + 40, g_td + height, g_td + 2000)
    p_side = dest.runway_point(4.0, 4.0)
    yield line(dest, p_up, p_side, vapp + 40, vapp + 60, g_td + 2000, g_td + 2500)
    p_back = dest.runway_point(-fix_nm, 4.0)
    yield line(dest, p_side, p_back, vapp + 60, vapp + 60, g_td + 2500, g_td + 3000)
    yield line(dest, p_back, p_fix, vapp + 60, v_fix, g_td + 3000,
               dest.ground_ft(*p_fix) + fix_agl)
    return None


def _land_and_taxi_in(ctx: Context, pilot: Pilot, dest: Field) -> Phase:
    rng = ctx.rng
    ac = pilot.actype
    approach = yield from _approach(ctx, pilot, dest)
    vapp, p_td, _g_td = approach
    yield (EVENT, "flight.arrived", dest.icao)
    p_exit, _v_exit = yield from _rollout(rng, ac, dest, p_td, vapp)
    if rng.random() < P_SITS_AFTER_LANDING:
        yield Stay((*dest.to_latlon(*p_exit), dest.ground_ft(*p_exit), 0.0, dest.runway_hdg),
                   rng.uniform(60, 600))
    stand = _stand(dest, rng)
    if rng.random() < P_DISCONNECT_TAXI_IN:
        yield from _taxi(rng, dest, p_exit, stand, cut=rng.uniform(0.1, 0.9))
        yield (DISCONNECT,)
        return None
    yield from _taxi(rng, dest, p_exit, stand)
    return dest, stand, _ground_state(dest, stand, rng.uniform(0, 360))


def _rollout(rng: random.Random, ac: AircraftType, field: Field, p_td: tuple[float, float],
             vapp: float, v_exit: float | None = None) -> Phase:
    decel = rng.uniform(*ac.decel)
    v_exit = rng.uniform(15, 30) if v_exit is None else v_exit
    nm = (vapp * vapp - v_exit * v_exit) / (2 * decel) / 3600
    h = math.radians(field.runway_hdg)
    p_exit = (p_td[0] + math.sin(h) * nm, p_td[1] + math.cos(h) * nm)
    yield line(field, p_td, p_exit, vapp, v_exit, field.ground_ft(*p_td),
               field.ground_ft(*p_exit))
    return p_exit, v_exit


def _circuits(ctx: Context, pilot: Pilot, field: Field,
              stand: tuple[float, float]) -> Phase:
    """Pattern work: take off, fly circuits ending in touch-and-goes or full stops (a full
    stop is an arrival, the next take-off a departure), then taxi back in."""
    rng = ctx.rng
    ac = pilot.actype
    yield from _taxi_out(ctx, field, stand)
    laps = rng.randrange(2, 8)
    climbed, p_up = yield from _take_off(ctx, pilot, field)
    for lap in range(laps):
        yield from _circuit(rng, ac, field, p_up, climbed[2], climbed[3])
        vapp = ac.approach_kts + rng.uniform(-3, 6)
        p_td = field.runway_point(rng.uniform(0.08, 0.2))
        g_td = field.ground_ft(*p_td)
        p_final = field.runway_point(-1.5)
        yield line(field, p_final, p_td, vapp + 5, vapp, g_td + 1.5 * FT_PER_NM_GLIDE, g_td)
        last = lap == laps - 1
        if not last and rng.random() < P_TOUCH_AND_GO:
            # touch and go: never slower than the mid-40s, lifts off again at once
            v_min = max(46.0, vapp - rng.uniform(5, 12))
            p_slow = yield from _rollout(rng, ac, field, p_td, vapp, v_exit=v_min)
            p_roll, _ = p_slow
            vr = max(ac.liftoff_kts + rng.uniform(-2, 5), v_min + 5)
            run = (vr * vr - v_min * v_min) / (2 * rng.uniform(*ac.accel)) / 3600
            h = math.radians(field.runway_hdg)
            p_lift = (p_roll[0] + math.sin(h) * run, p_roll[1] + math.cos(h) * run)
            g_lift = field.ground_ft(*p_lift)
            yield line(field, p_roll, p_lift, v_min, vr, field.ground_ft(*p_roll), g_lift)
            p_up = (p_lift[0] + math.sin(h) * 1.0, p_lift[1] + math.cos(h) * 1.0)
            climbed = (0.0, 0.0, g_lift + 500, vr + 10, field.runway_hdg)
            yield line(field, p_lift, p_up, vr, vr + 10, g_lift, g_lift + 500)
            continue
        yield (EVENT, "flight.arrived", field.icao)
        p_exit, _ = yield from _rollout(rng, ac, field, p_td, vapp)
        if last:
            yield from _taxi(rng, field, p_exit, stand)
            return field, stand, _ground_state(field, stand, rng.uniform(0, 360))
        yield from _taxi(rng, field, p_exit, field.runway_point(-0.08, 0.12))
        climbed, p_up = yield from _take_off(ctx, pilot, field)
    return None  # not reached: the last lap always lands


def _circuit(rng: random.Random, ac: AircraftType, field: Field, start: tuple[float, float],
             alt: float, v0: float) -> Phase:
    """From the end of the climb-out: crosswind, downwind and base at pattern height, to the
    start of final."""
    v = ac.approach_kts + 20
    top = field.ground_ft(*field.threshold) + 1000
    side = rng.choice((-1.2, 1.2))
    pts = [field.runway_point(field.runway_nm + 1.5), field.runway_point(field.runway_nm + 1.5,
                                                                          side),
           field.runway_point(-1.5, side), field.runway_point(-1.5)]
    previous = start
    first = True
    for p in pts:
        target = top if p is not pts[-1] else top - 300
        yield line(field, previous, p, v0 if first else v, v, alt, target)
        previous, alt, first = p, target, False


def _helicopter(ctx: Context, pilot: Pilot, field: Field, dest: Field,
                stand: tuple[float, float]) -> Phase:
    """Lift off vertically from the pad, hover, transition, fly low, hover, set down."""
    rng = ctx.rng
    ac = pilot.actype
    g = field.ground_ft(*stand)
    lat, lon = field.to_latlon(*stand)
    yield (EVENT, "flight.departed", field.icao)
    # lift into a low hover, check, then transition forward
    hover = g + rng.uniform(5, 15)
    yield line(field, stand, stand, 0, 0, g, hover, duration=rng.uniform(2, 5))
    yield Stay((lat, lon, hover, 0.0, 0.0), rng.uniform(3, 15), hover=True)
    if dest is field:  # a hop to a field nearby, else out and back
        dest = ctx.field_near(field, 5, 30, ac) or field
    target = dest
    fix_nm, fix_agl = _fix(ac)
    brg = _bearing(lat, lon, target.latitude, target.longitude) if target is not field \
        else rng.uniform(0, 360)
    h = math.radians(brg)
    accel = rng.uniform(*ac.accel)
    v_end = 60.0
    t1 = v_end / accel
    d1 = v_end / 2 * t1 / 3600
    p1 = (stand[0] + math.sin(h) * d1, stand[1] + math.cos(h) * d1)
    yield line(field, stand, p1, 0, v_end, hover, g + 400)
    p1_lat, p1_lon = field.to_latlon(*p1)
    start = (p1_lat, p1_lon, g + 400, v_end, brg)
    if target is field:
        # out 5-15 NM and back
        far = rng.uniform(5, 15)
        p_far = (stand[0] + math.sin(h) * far, stand[1] + math.cos(h) * far)
        cruise = g + rng.uniform(800, 1500)
        yield line(field, p1, p_far, v_end, ac.cruise_tas * 0.9, g + 400, cruise)
        p_fix = field.runway_point(-fix_nm)
        yield line(field, p_far, p_fix, ac.cruise_tas * 0.9, ac.cruise_tas * 0.8, cruise,
                   field.ground_ft(*p_fix) + fix_agl)
        dest = field
    else:
        yield from _en_route(ctx, pilot, start, dest)
    pad = _stand(dest, rng)
    p_fix = dest.runway_point(-fix_nm)
    g_pad = dest.ground_ft(*pad)
    # the approach ends in a low hover over the pad, then it settles
    hover_alt = g_pad + rng.uniform(5, 15)
    v0 = ac.cruise_tas * 0.8
    yield line(dest, p_fix, pad, v0, 0, dest.ground_ft(*p_fix) + fix_agl, hover_alt)
    plat, plon = dest.to_latlon(*pad)
    yield Stay((plat, plon, hover_alt, 0.0, 0.0), rng.uniform(3, 20), hover=True)
    yield line(dest, pad, pad, 0, 0, hover_alt, g_pad, duration=rng.uniform(3, 6))
    yield (EVENT, "flight.arrived", dest.icao)
    return dest, pad, (plat, plon, g_pad, 0.0, 0.0)


# -- ground movement -------------------------------------------------------------------------------


def _taxi(rng: random.Random, field: Field, p0: tuple[float, float], p1: tuple[float, float],
          cut: float | None = None) -> Phase:
    """Taxi p0 -> p1 over one or two intermediate points, with holds; with `cut`, stop after
    that share of the legs (the pilot leaves mid-taxi)."""
    points = [p0]
    for _ in range(rng.randrange(1, 3)):
        f = rng.random()
        points.append((p0[0] + (p1[0] - p0[0]) * f + rng.uniform(-0.25, 0.25),
                       p0[1] + (p1[1] - p0[1]) * f + rng.uniform(-0.25, 0.25)))
    points.append(p1)
    legs = len(points) - 1
    last = legs if cut is None else max(1, int(legs * cut))
    for i in range(last):
        a, b = points[i], points[i + 1]
        v = rng.uniform(10, 24)
        if rng.random() < P_FAST_TAXI:
            v = rng.uniform(42, 58)
        yield line(field, a, b, v, v, field.ground_ft(*a), field.ground_ft(*b))
        if i < legs - 1 and rng.random() < 0.35:
            yield Stay(_ground_state(field, b, 0.0), rng.uniform(5, 90))


def _stand(field: Field, rng: random.Random) -> tuple[float, float]:
    r = field.apron_nm * math.sqrt(rng.random())
    a = rng.uniform(0, 2 * math.pi)
    return field.apron[0] + r * math.sin(a), field.apron[1] + r * math.cos(a)


def _ground_state(field: Field, p: tuple[float, float], hdg: float) -> State:
    lat, lon = field.to_latlon(*p)
    return (lat, lon, field.ground_ft(*p), 0.0, hdg)


def _stand_time(ac: AircraftType, rng: random.Random) -> float:
    if ac.category in (PISTON, HELICOPTER):
        return rng.uniform(60, 600)
    return rng.uniform(300, 1800)


def _bearing(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    la1, la2 = math.radians(lat1), math.radians(lat2)
    dlon = math.radians(lon2 - lon1)
    return math.degrees(math.atan2(math.sin(dlon) * math.cos(la2), math.cos(la1) * math.sin(la2)
                                   - math.sin(la1) * math.cos(la2) * math.cos(dlon))) % 360.0


__all__ = ["Context", "Pilot", "lifecycle"]
