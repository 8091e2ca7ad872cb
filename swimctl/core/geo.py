"""Airports (position, elevation, ARTCC/FIR) and ARTCC/FIR tagging of a position.

The data is built by `scripts/build_geodata.py` into `swimctl/data/` and read once per process
(`load_geo`). Boundary lookups go through a precomputed 1-degree grid: most cells lie wholly in
one FIR and answer with a dict hit; a cell a boundary crosses lists the few features to ray-cast,
and each feature's edges are bucketed by latitude band so a ray cast only looks at edges near the
point. US ARTCCs are published as `ZNY` (not `KZNY`), elsewhere the FIR id (`EGTT`).
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import math
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import attrs
import orjson

from swimctl.core.filters import normalize_artcc  # one spelling of ARTCC ids

__all__ = ["Airport", "Geo", "load_geo", "normalize_artcc"]

NM_PER_DEG_LAT = 60.0  # one minute of latitude is one nautical mile
_BAND_DEG = 1.0  # latitude band of the per-feature edge index


@attrs.frozen(slots=True)
class Airport:
    """One aerodrome; `elevation_ft` is None where no source knows it."""

    icao: str
    latitude: float
    longitude: float
    elevation_ft: int | None
    artcc: str | None


class _Feature:
    """One boundary feature with its edges indexed by latitude band (built on first use)."""

    __slots__ = ("_bands", "id", "rings")

    def __init__(self, fid: str, rings: list[list[float]]) -> None:
        self.id = fid
        self.rings = rings
        self._bands: dict[int, list[tuple[float, float, float, float]]] | None = None

    def _index(self) -> dict[int, list[tuple[float, float, float, float]]]:
        bands: dict[int, list[tuple[float, float, float, float]]] = {}
        for flat in self.rings:
            n = len(flat) // 2
            x0, y0 = flat[-2], flat[-1]
            for i in range(n):
                x1, y1 = flat[2 * i], flat[2 * i + 1]
                if y0 != y1:
                    edge = (x0, y0, x1, y1)
                    lo, hi = (y0, y1) if y0 < y1 else (y1, y0)
                    for band in range(math.floor(lo / _BAND_DEG), math.floor(hi / _BAND_DEG) + 1):
                        bands.setdefault(band, []).append(edge)
                x0, y0 = x1, y1
        self._bands = bands
        return bands

    def contains(self, lat: float, lon: float) -> bool:
        """Even-odd ray cast (eastward) over the edges whose latitude span covers `lat`."""
        bands = self._bands if self._bands is not None else self._index()
        inside = False
        for x0, y0, x1, y1 in bands.get(math.floor(lat / _BAND_DEG), ()):
            if (y1 > lat) != (y0 > lat) and lon < x1 + (lat - y1) * (x0 - x1) / (y0 - y1):
                inside = not inside
        return inside


class Geo:
    """Airport table plus FIR/ARTCC boundaries; immutable after construction, thread-safe."""

    def __init__(
        self,
        airports: dict[str, Airport],
        features: list[_Feature],
        cells: dict[int, str | tuple[int, ...]],
        cell_deg: float = 1.0,
    ) -> None:
        self._airports = airports
        self._features = features
        self._cells = cells
        self._cell_deg = cell_deg
        # airports bucketed by 1-degree cell for "nearest airport within a few miles"
        self._airport_grid: dict[tuple[int, int], list[Airport]] = {}
        for apt in airports.values():
            key = (math.floor(apt.latitude), math.floor(apt.longitude))
            self._airport_grid.setdefault(key, []).append(apt)

    @classmethod
    def from_files(cls, airports_path: Path | None = None,
                   boundaries_path: Path | None = None) -> Geo:
        """Read the shipped data files (or the given ones)."""
        data = resources.files("swimctl") / "data"
        apt_bytes = (
            airports_path.read_bytes() if airports_path else (data / "airports.csv.gz").read_bytes()
        )
        bnd_bytes = (
            boundaries_path.read_bytes()
            if boundaries_path
            else (data / "boundaries.json.gz").read_bytes()
        )
        airports: dict[str, Airport] = {}
        text = gzip.decompress(apt_bytes).decode("utf-8")
        reader = csv.reader(io.StringIO(text))
        next(reader, None)
        for code, lat, lon, elev, artcc in reader:
            airports[code] = Airport(
                code, float(lat), float(lon), int(elev) if elev else None, artcc or None
            )
        doc = orjson.loads(gzip.decompress(bnd_bytes))
        features = [_Feature(f["id"], f["rings"]) for f in doc["features"]]
        cells: dict[int, str | tuple[int, ...]] = {
            int(k): v if isinstance(v, str) else tuple(v) for k, v in doc["cells"].items()
        }
        return cls(airports, features, cells, float(doc.get("cell_deg", 1.0)))

    def __len__(self) -> int:
        return len(self._airports)

    def airport(self, icao: str | None) -> Airport | None:
        """The airport with this ICAO code (or FAA id for small US fields), else None."""
        if not icao:
            return None
        return self._airports.get(icao.strip().upper())

    def airport_artcc(self, icao: str | None) -> str | None:
        """The ARTCC/FIR responsible for an airport (FAA data for the US, VATSpy elsewhere)."""
        apt = self.airport(icao)
        return apt.artcc if apt else None

    def artcc_at(self, lat: float, lon: float) -> str | None:
        """The ARTCC/FIR whose boundary contains the point, or None (e.g. unclaimed ocean)."""
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            return None
        size = self._cell_deg
        row = min(math.floor(lat / size) + 90, 179)
        col = min(max(math.floor(lon / size) + 180, 0), 359)
        entry = self._cells.get(row * 360 + col)
        if entry is None or isinstance(entry, str):
            return entry
        features = self._features
        for idx in entry:
            if idx < 0:
                return features[-idx - 1].id  # this feature covers the whole cell
            feat = features[idx]
            if feat.contains(lat, lon):
                return feat.id
        return None

    def nearby_airports(self, lat: float, lon: float) -> Iterator[Airport]:
        """Airports in the point's 1-degree cell and its 8 neighbours."""
        r0, c0 = math.floor(lat), math.floor(lon)
        grid = self._airport_grid
        for r in (r0 - 1, r0, r0 + 1):
            for c in (c0 - 1, c0, c0 + 1):
                cc = (c + 180) % 360 - 180  # wrap across the antimeridian
                yield from grid.get((r, cc), ())

    def nearest_airport(self, lat: float, lon: float, max_nm: float) -> Airport | None:
        """The closest airport within `max_nm` nautical miles (max_nm up to about 60)."""
        best: Airport | None = None
        best_d = max_nm
        for apt in self.nearby_airports(lat, lon):
            d = distance_nm(lat, lon, apt.latitude, apt.longitude)
            if d <= best_d:
                best, best_d = apt, d
        return best


def distance_nm(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Equirectangular distance; within 0.1 % of great-circle at the few-mile range we use."""
    dlon = (lon2 - lon1 + 180.0) % 360.0 - 180.0
    x = dlon * math.cos(math.radians((lat1 + lat2) / 2))
    y = lat2 - lat1
    return math.hypot(x, y) * NM_PER_DEG_LAT


@functools.cache
def load_geo() -> Geo:
    """The shipped geography, loaded once per process."""
    return Geo.from_files()
