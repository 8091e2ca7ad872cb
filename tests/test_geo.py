"""Geography: shipped airports and FIR/ARTCC boundaries, and the grid index behind artcc_at."""

from __future__ import annotations

import random

import pytest

from swimctl.core.geo import Geo, distance_nm, load_geo, normalize_artcc


@pytest.fixture(scope="module")
def geo() -> Geo:
    return load_geo()


def test_load_reads_every_airport_and_is_cached() -> None:
    fresh = Geo.from_files()
    assert len(fresh) > 30_000
    assert load_geo() is load_geo()


@pytest.mark.parametrize(
    ("icao", "lat", "lon", "elev", "artcc"),
    [
        ("KJFK", 40.64, -73.78, 13, "ZNY"),
        ("KLGA", 40.78, -73.87, 21, "ZNY"),
        ("EGLL", 51.47, -0.46, 83, "EGTT"),
        ("CYYT", 47.62, -52.75, 461, None),
        ("LTFM", 41.28, 28.75, 325, "LTBB"),
        ("PANC", 61.17, -150.0, 151, "PAZA"),
    ],
)
def test_airports(geo: Geo, icao: str, lat: float, lon: float, elev: int, artcc: str | None):
    apt = geo.airport(icao.lower())
    assert apt is not None
    assert apt.icao == icao
    assert apt.latitude == pytest.approx(lat, abs=0.01)
    assert apt.longitude == pytest.approx(lon, abs=0.01)
    assert apt.elevation_ft == elev
    if artcc is not None:
        assert apt.artcc == artcc
    # an airport's ARTCC agrees with the boundary it lies in
    assert geo.airport_artcc(icao) == geo.artcc_at(apt.latitude, apt.longitude)


def test_unknown_airport(geo: Geo) -> None:
    assert geo.airport("ZZZZ") is None
    assert geo.airport(None) is None
    assert geo.airport_artcc("") is None


@pytest.mark.parametrize(
    ("lat", "lon", "expected"),
    [
        (40.75, -73.98, "ZNY"),  # Manhattan
        (40.57, -73.87, "ZNY"),  # DLR22 climbing out of JFK
        (41.20, -74.22, "ZNY"),  # UPS752 inbound
        (33.94, -118.40, "ZLA"),
        (41.98, -87.90, "ZAU"),
        (51.50, -0.12, "EGTT"),
        (48.35, 11.78, "EDMM"),
        (21.32, -157.92, "PHZH"),
    ],
)
def test_artcc_at(geo: Geo, lat: float, lon: float, expected: str) -> None:
    assert geo.artcc_at(lat, lon) == expected


def test_artcc_at_out_of_range(geo: Geo) -> None:
    assert geo.artcc_at(91.0, 0.0) is None
    assert geo.artcc_at(0.0, 181.0) is None


def test_normalize_artcc() -> None:
    assert normalize_artcc("kzny") == "ZNY"
    assert normalize_artcc("EGTT") == "EGTT"
    assert normalize_artcc("KJFK") == "KJFK"


def test_grid_matches_brute_force(geo: Geo) -> None:
    """Where exactly one FIR id contains a point (by testing every feature), the grid lookup
    must give it; where none does, the lookup must give None."""
    rng = random.Random(7)
    features = geo._features
    checked = 0
    for _ in range(3000):
        lat, lon = rng.uniform(-70, 75), rng.uniform(-180, 180)
        ids = {f.id for f in features if f.contains(lat, lon)}
        got = geo.artcc_at(lat, lon)
        if not ids:
            assert got is None, (lat, lon)
        elif len(ids) == 1:
            assert got == next(iter(ids)), (lat, lon)
        else:
            assert got in ids
        checked += 1
    assert checked == 3000


def test_nearest_airport(geo: Geo) -> None:
    apt = geo.nearest_airport(40.6415, -73.77712, 5.0)  # EDV766 at a JFK gate
    assert apt is not None and apt.icao == "KJFK"
    assert geo.nearest_airport(0.0, -30.0, 5.0) is None  # mid-Atlantic
    assert distance_nm(0, 0, 1, 0) == pytest.approx(60.0)
    assert distance_nm(0, 179.9, 0, -179.9) == pytest.approx(12.0, rel=1e-3)
