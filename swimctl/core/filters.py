"""Subscription filters (PROTOCOL.md section 5): compiled once, matched per event and per position.

A filter is validated and normalised at subscribe time into sets, a prefix tuple and a box, so
the fan-out path does only set lookups and comparisons. Values within a key are ORed, keys are
ANDed, and a key tests only events that carry its attribute. An event that carries none of
the attributes any key reads (a relayed `splits.*` event, say) has nothing to be tested on:
it goes to unfiltered subscriptions only, as with the PHP hub, whose filters drop an event
that lacks their field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs

from swimctl.core.channels import is_hub_only
from swimctl.core.model import dumps

MAX_VALUES = 1000
MAX_VALUE_LEN = 32
# `firs` and `constrained_firs` (the PHP hub's name in PERTI's CTP API) are `artccs` aliases.
FILTER_KEYS = frozenset({"airports", "artccs", "firs", "constrained_firs", "callsign_prefix",
                         "bbox"})
# The keys of an event's data that some filter key reads: airports (dep, arr, a TMI's
# airport), ARTCC (current_artcc, a TMI's scope or ARTCC), callsign, position.
FILTERED_FIELDS = frozenset({"dep", "arr", "airport", "current_artcc", "scope", "artcc",
                             "airport_artcc", "callsign", "latitude", "longitude"})

AirportArtcc = Callable[[str], "str | None"]


def carries_filter_fields(data: dict[str, Any]) -> bool:
    """Whether a filter has anything to test in `data`; an event without it reaches only
    unfiltered subscriptions."""
    return "callsign" in data or not FILTERED_FIELDS.isdisjoint(data)


class FilterError(ValueError):
    """A filter the hub cannot accept; answered with INVALID_FILTER."""


def normalize_artcc(code: str) -> str:
    """`ZNY` and `KZNY` name the same ARTCC: US ids drop the leading K."""
    code = code.strip().upper()
    if len(code) == 4 and code[0] == "K" and code[1] == "Z":
        return code[1:]
    return code


@attrs.frozen
class BBox:
    north: float
    south: float
    east: float
    west: float

    def contains(self, lat: Any, lon: Any) -> bool:
        if not isinstance(lat, int | float) or not isinstance(lon, int | float):
            return False
        if lat > self.north or lat < self.south:
            return False
        if self.west <= self.east:
            return self.west <= lon <= self.east
        # west > east: the box crosses the antimeridian.
        return lon >= self.west or lon <= self.east


@attrs.frozen
class Filter:
    """One pattern's compiled filter. `key` is canonical JSON: equal filters share encodings."""

    airports: frozenset[str] | None = None
    artccs: frozenset[str] | None = None
    callsign_prefixes: tuple[str, ...] | None = None
    bbox: BBox | None = None
    echo: dict[str, Any] = attrs.field(factory=dict, eq=False)
    key: str = ""
    airport_artcc: AirportArtcc | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def empty(self) -> bool:
        return (
            self.airports is None
            and self.artccs is None
            and self.callsign_prefixes is None
            and self.bbox is None
        )

    def accepts(self, event_type: str, data: dict[str, Any]) -> bool:
        """Whether a (non-positions) event passes; hub-only types are never filtered (a
        `tmi.active` program list is sliced instead, like a positions batch)."""
        if self.empty or is_hub_only(event_type):
            return True
        return self._accepts_record(data) and carries_filter_fields(data)

    def accepts_position(self, position: dict[str, Any]) -> bool:
        return self._accepts_record(position) and carries_filter_fields(position)

    def _accepts_record(self, data: dict[str, Any]) -> bool:
        if self.airports is not None:
            if "dep" in data or "arr" in data:
                dep, arr = data.get("dep"), data.get("arr")
                if not (
                    (isinstance(dep, str) and dep.upper() in self.airports)
                    or (isinstance(arr, str) and arr.upper() in self.airports)
                ):
                    return False
            elif "airport" in data:
                airport = data.get("airport")
                if not (isinstance(airport, str) and airport.upper() in self.airports):
                    return False
        if self.artccs is not None:
            if "current_artcc" in data:
                artcc = data.get("current_artcc")
                if not (isinstance(artcc, str) and normalize_artcc(artcc) in self.artccs):
                    return False
            elif "airport" in data and not self._tmi_in_artccs(data):
                return False
        if self.callsign_prefixes is not None and "callsign" in data:
            callsign = data.get("callsign")
            if not (isinstance(callsign, str) and callsign.upper().startswith(
                self.callsign_prefixes
            )):
                return False
        if self.bbox is not None and "latitude" in data and "longitude" in data:
            return self.bbox.contains(data.get("latitude"), data.get("longitude"))
        return True

    def _tmi_in_artccs(self, data: dict[str, Any]) -> bool:
        """A TMI matches an ARTCC filter by its airport's ARTCC or any ARTCC in its scope."""
        assert self.artccs is not None
        scope = data.get("scope")
        if isinstance(scope, list) and any(
            isinstance(s, str) and normalize_artcc(s) in self.artccs for s in scope
        ):
            return True
        for key in ("airport_artcc", "artcc"):
            value = data.get(key)
            if isinstance(value, str) and normalize_artcc(value) in self.artccs:
                return True
        airport = data.get("airport")
        if isinstance(airport, str) and self.airport_artcc is not None:
            artcc = self.airport_artcc(airport.upper())
            return artcc is not None and normalize_artcc(artcc) in self.artccs
        return False

    def slice_positions(self, positions: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.empty:
            return list(positions)
        return [p for p in positions if self._accepts_record(p) and carries_filter_fields(p)]


NO_FILTER = Filter(echo={}, key="{}")


def _codes(name: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise FilterError(f"`{name}` must be a list of strings")
    if len(value) > MAX_VALUES:
        raise FilterError(f"`{name}` holds more than {MAX_VALUES} values")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item.strip() or len(item) > MAX_VALUE_LEN:
            raise FilterError(f"`{name}` must hold non-empty strings of at most {MAX_VALUE_LEN}")
        out.append(item.strip().upper())
    return out


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FilterError(f"bbox `{name}` must be a number")
    if value != value:  # NaN
        raise FilterError(f"bbox `{name}` must be a number")
    return float(value)


def _bbox(value: Any) -> BBox:
    if not isinstance(value, dict):
        raise FilterError("`bbox` must be an object {north, south, east, west}")
    if set(value) != {"north", "south", "east", "west"}:
        raise FilterError("`bbox` needs exactly north, south, east and west")
    north, south = _number("north", value["north"]), _number("south", value["south"])
    east, west = _number("east", value["east"]), _number("west", value["west"])
    for lat in (north, south):
        if not -90.0 <= lat <= 90.0:
            raise FilterError("bbox latitudes must be within ±90")
    for lon in (east, west):
        if not -180.0 <= lon <= 180.0:
            raise FilterError("bbox longitudes must be within ±180")
    if north <= south:
        raise FilterError("bbox north must be greater than south")
    return BBox(north=north, south=south, east=east, west=west)


def compile_filter(raw: Any, airport_artcc: AirportArtcc | None = None) -> Filter:
    """Validate a client's `filters` object. Empty lists mean "no filter on this key"
    (older clients send them that way)."""
    if raw is None:
        return NO_FILTER if airport_artcc is None else attrs.evolve(
            NO_FILTER, airport_artcc=airport_artcc
        )
    if not isinstance(raw, dict):
        raise FilterError("`filters` must be an object")
    unknown = set(raw) - FILTER_KEYS
    if unknown:
        raise FilterError(f"unknown filter key(s): {', '.join(sorted(unknown))}")
    echo: dict[str, Any] = {}
    airports = artccs = prefixes = None
    bbox = None
    if "airports" in raw:
        codes = _codes("airports", raw["airports"])
        if codes:
            airports = frozenset(codes)
            echo["airports"] = sorted(airports)
    art: set[str] = set()
    for name in ("artccs", "firs", "constrained_firs"):
        if name in raw:
            art.update(normalize_artcc(c) for c in _codes(name, raw[name]))
    if len(art) > MAX_VALUES:  # `firs` is an alias: the bound is on the merged key
        raise FilterError(f"`artccs` and its aliases together hold more than {MAX_VALUES} "
                          "values")
    if art:
        artccs = frozenset(art)
        echo["artccs"] = sorted(artccs)
    if "callsign_prefix" in raw:
        value = raw["callsign_prefix"]
        if isinstance(value, str):  # a single prefix is unambiguous; accept it as a list of one
            value = [value]
        codes = _codes("callsign_prefix", value)
        if codes:
            prefixes = tuple(sorted(set(codes)))
            echo["callsign_prefix"] = list(prefixes)
    if "bbox" in raw and raw["bbox"] is not None:
        bbox = _bbox(raw["bbox"])
        echo["bbox"] = attrs.asdict(bbox)
    key = dumps(echo).decode() if echo else "{}"
    return Filter(
        airports=airports,
        artccs=artccs,
        callsign_prefixes=prefixes,
        bbox=bbox,
        echo=echo,
        key=key,
        airport_artcc=airport_artcc,
    )
