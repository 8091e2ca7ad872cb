"""How an aircraft moves during one stretch of its flight: standing, a straight line near a
field (taxi, take-off roll, approach, circuits), or a great-circle leg between fields.

Each segment has a duration and answers "where is it, how high, how fast, which way" at any
time into it, in closed form: a snapshot samples a segment once, however long it lasts, and a
phase boundary (lift-off, touchdown) falls at an exact time rather than on a sampling step.
Segments can be split at a time, so a disconnect can fall anywhere in one.
"""

from __future__ import annotations

import math

from .world import Field

State = tuple[float, float, float, float, float]  # lat, lon, altitude ft, groundspeed kt, hdg

KT_TO_NM_S = 1.0 / 3600.0
FT_PER_NM_GLIDE = 318.0  # a 3-degree glide path


class Segment:
    __slots__ = ("duration",)

    duration: float

    def at(self, tau: float) -> State:
        raise NotImplementedError

    def split(self, tau: float) -> tuple[Segment, Segment]:
        raise NotImplementedError

    def end(self) -> State:
        return self.at(self.duration)


class Stay(Segment):
    """Not moving (gs 0): parked, holding short, sitting on the runway, or hovering (a
    hover's altitude wanders by a foot or two; a parked aircraft's does not)."""

    __slots__ = ("hover", "state")

    def __init__(self, state: State, duration: float, hover: bool = False) -> None:
        lat, lon, alt, _, hdg = state
        self.state: State = (lat, lon, alt, 0.0, hdg)
        self.duration = max(0.0, duration)
        self.hover = hover

    def at(self, tau: float) -> State:
        return self.state

    def split(self, tau: float) -> tuple[Segment, Segment]:
        return Stay(self.state, tau, self.hover), Stay(self.state, self.duration - tau,
                                                        self.hover)


class Line(Segment):
    """A straight line in a field's local frame at constant acceleration and climb rate."""

    __slots__ = ("acc", "alt0", "climb", "field", "hdg", "ux", "uy", "v0", "x0", "y0")

    def __init__(self, field: Field, x0: float, y0: float, ux: float, uy: float, v0: float,
                 acc: float, alt0: float, climb: float, duration: float, hdg: float) -> None:
        self.field = field
        self.x0, self.y0, self.ux, self.uy = x0, y0, ux, uy
        self.v0, self.acc = v0, acc  # kt, kt/s
        self.alt0, self.climb = alt0, climb  # ft, ft/s
        self.duration = max(0.0, duration)
        self.hdg = hdg

    def at(self, tau: float) -> State:
        s = (self.v0 + 0.5 * self.acc * tau) * tau * KT_TO_NM_S
        lat, lon = self.field.to_latlon(self.x0 + self.ux * s, self.y0 + self.uy * s)
        return lat, lon, self.alt0 + self.climb * tau, self.v0 + self.acc * tau, self.hdg

    def xy(self, tau: float) -> tuple[float, float]:
        s = (self.v0 + 0.5 * self.acc * tau) * tau * KT_TO_NM_S
        return self.x0 + self.ux * s, self.y0 + self.uy * s

    def split(self, tau: float) -> tuple[Segment, Segment]:
        x, y = self.xy(tau)
        first = Line(self.field, self.x0, self.y0, self.ux, self.uy, self.v0, self.acc,
                     self.alt0, self.climb, tau, self.hdg)
        second = Line(self.field, x, y, self.ux, self.uy, self.v0 + self.acc * tau, self.acc,
                      self.alt0 + self.climb * tau, self.climb, self.duration - tau, self.hdg)
        return first, second


def line(field: Field, p0: tuple[float, float], p1: tuple[float, float], v0: float, v1: float,
         alt0: float, alt1: float, duration: float | None = None,
         hdg: float | None = None) -> Line:
    """From p0 to p1 (NM, local frame), speed v0 -> v1 kt, altitude alt0 -> alt1 ft.

    The duration follows from the distance and the mean speed; a line without length (a
    vertical climb, a hover descent) needs `duration`.
    """
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    dist = math.hypot(dx, dy)
    if duration is None:
        mean = (v0 + v1) / 2
        duration = dist / (mean * KT_TO_NM_S) if mean > 0 else 0.0
    if dist > 1e-9:
        ux, uy = dx / dist, dy / dist
        heading = math.degrees(math.atan2(ux, uy)) % 360.0 if hdg is None else hdg
    else:
        ux = uy = 0.0
        heading = hdg or 0.0
    acc = (v1 - v0) / duration if duration > 0 else 0.0
    climb = (alt1 - alt0) / duration if duration > 0 else 0.0
    return Line(field, p0[0], p0[1], ux, uy, v0, acc, alt0, climb, duration, heading)


def _unit(lat: float, lon: float) -> tuple[float, float, float]:
    la, lo = math.radians(lat), math.radians(lon)
    c = math.cos(la)
    return c * math.cos(lo), c * math.sin(lo), math.sin(la)


def distance_nm(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance."""
    a = _unit(lat1, lon1)
    b = _unit(lat2, lon2)
    dot = max(-1.0, min(1.0, a[0] * b[0] + a[1] * b[1] + a[2] * b[2]))
    return math.degrees(math.acos(dot)) * 60.0


class Arc(Segment):
    """Part of a great circle from A to B at constant groundspeed and climb rate."""

    __slots__ = ("a", "alt0", "b", "b_lat", "b_lon", "climb", "gs", "s0", "sin_t", "theta",
                 "total_nm")

    def __init__(self, a: tuple[float, float, float], b: tuple[float, float, float],
                 b_lat: float, b_lon: float, theta: float, s0: float, gs: float, alt0: float,
                 climb: float, duration: float) -> None:
        self.a, self.b, self.b_lat, self.b_lon = a, b, b_lat, b_lon
        self.theta = theta
        self.sin_t = math.sin(theta) or 1e-12
        self.total_nm = math.degrees(theta) * 60.0
        self.s0, self.gs, self.alt0, self.climb = s0, gs, alt0, climb
        self.duration = max(0.0, duration)

    def at(self, tau: float) -> State:
        s = self.s0 + self.gs * tau * KT_TO_NM_S
        f = min(1.0, s / self.total_nm) if self.total_nm > 0 else 1.0
        t = self.theta
        wa = math.sin((1.0 - f) * t) / self.sin_t
        wb = math.sin(f * t) / self.sin_t
        a, b = self.a, self.b
        x = wa * a[0] + wb * b[0]
        y = wa * a[1] + wb * b[1]
        z = wa * a[2] + wb * b[2]
        lat = math.degrees(math.atan2(z, math.hypot(x, y)))
        lon = math.degrees(math.atan2(y, x))
        # course from here to B
        la1 = math.radians(lat)
        la2 = math.radians(self.b_lat)
        dlon = math.radians(self.b_lon - lon)
        cos2 = math.cos(la2)
        hdg = math.degrees(math.atan2(math.sin(dlon) * cos2, math.cos(la1) * math.sin(la2)
                                      - math.sin(la1) * cos2 * math.cos(dlon))) % 360.0
        return lat, lon, self.alt0 + self.climb * tau, self.gs, hdg

    def split(self, tau: float) -> tuple[Segment, Segment]:
        first = Arc(self.a, self.b, self.b_lat, self.b_lon, self.theta, self.s0, self.gs,
                    self.alt0, self.climb, tau)
        second = Arc(self.a, self.b, self.b_lat, self.b_lon, self.theta,
                     self.s0 + self.gs * tau * KT_TO_NM_S, self.gs,
                     self.alt0 + self.climb * tau, self.climb, self.duration - tau)
        return first, second


class Route:
    """The great circle between two points; hands out its arcs by distance flown."""

    __slots__ = ("a", "b", "b_lat", "b_lon", "theta", "total_nm")

    def __init__(self, lat1: float, lon1: float, lat2: float, lon2: float) -> None:
        self.a = _unit(lat1, lon1)
        self.b = _unit(lat2, lon2)
        self.b_lat, self.b_lon = lat2, lon2
        dot = max(-1.0, min(1.0, sum(p * q for p, q in zip(self.a, self.b, strict=True))))
        self.theta = math.acos(dot)
        self.total_nm = math.degrees(self.theta) * 60.0

    def arc(self, s0: float, nm: float, gs: float, alt0: float, alt1: float) -> Arc:
        """`nm` along the route from `s0`, at `gs`, from alt0 to alt1 evenly."""
        duration = nm / (gs * KT_TO_NM_S) if gs > 0 else 0.0
        climb = (alt1 - alt0) / duration if duration > 0 else 0.0
        return Arc(self.a, self.b, self.b_lat, self.b_lon, self.theta, s0, gs, alt0, climb,
                   duration)
