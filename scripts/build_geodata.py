#!/usr/bin/env python3
"""Build the compact geography files shipped in `swimctl/data/` from the reference sources.

Run from the repository root (sources default to ../shared/data/reference):

    python3 scripts/build_geodata.py [--src DIR] [--out swimctl/data]

Outputs:
- `airports.csv.gz`: icao,latitude,longitude,elevation_ft,artcc — FAA (PERTI `apts.csv`, with
  elevation and responsible ARTCC) first, then OpenFlights (elevation), then VATSpy (position and
  FIR). The artcc column is the FAA responsible ARTCC (US), else the boundary the airport lies
  in, else the VATSpy FIR column.
- `boundaries.json.gz`: VATSpy FIR/ARTCC boundaries (CC BY-SA 4.0) as flat coordinate rings,
  plus a precomputed 1-degree grid: a cell wholly inside one FIR holds that FIR's id; a cell a
  boundary crosses lists the candidate features to test, so runtime lookups are a dict hit or
  a few short ray casts.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import math
import sys
from pathlib import Path

CELL_DEG = 1.0  # grid resolution; 1 degree keeps the grid small and boundary cells few
SUBSEG_DEG = 0.25  # edges are split into pieces this long to mark every cell they cross
COORD_DIGITS = 5  # about 1 m; the sources carry no more real precision than this


def fir_id(raw: str) -> str:
    """VATSpy boundary id to the id we publish: sector suffix dropped, `KZNY` -> `ZNY`."""
    base = raw.split("-", 1)[0].strip().upper()
    if len(base) == 4 and base.startswith("KZ"):
        return base[1:]
    return base


def cell_key(lat: float, lon: float) -> int:
    """Integer key of the grid cell holding (lat, lon); the same formula as swimctl.core.geo."""
    row = min(math.floor(lat / CELL_DEG) + 90, 179)
    col = math.floor(lon / CELL_DEG) + 180
    col = min(max(col, 0), 359)
    return row * 360 + col


def ring_contains(rings: list[list[float]], lat: float, lon: float) -> bool:
    """Even-odd ray cast over every ring (outer rings and holes alike) of one feature."""
    inside = False
    for flat in rings:
        n = len(flat) // 2
        x0, y0 = flat[-2], flat[-1]
        for i in range(n):
            x1, y1 = flat[2 * i], flat[2 * i + 1]
            if (y1 > lat) != (y0 > lat) and lon < x1 + (lat - y1) * (x0 - x1) / (y0 - y1):
                inside = not inside
            x0, y0 = x1, y1
    return inside


def load_boundaries(path: Path) -> list[dict]:
    """Read Boundaries.geojson into flat, rounded, de-duplicated rings per feature."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    features = []
    for feat in doc["features"]:
        props = feat["properties"]
        geom = feat["geometry"]
        polys = geom["coordinates"] if geom["type"] == "MultiPolygon" else [geom["coordinates"]]
        rings: list[list[float]] = []
        for poly in polys:
            for ring in poly:
                flat: list[float] = []
                last = None
                for lon, lat, *_ in ring:
                    pt = (round(float(lon), COORD_DIGITS), round(float(lat), COORD_DIGITS))
                    if pt != last:
                        flat.extend(pt)
                        last = pt
                if len(flat) >= 4 and flat[:2] == flat[-2:]:
                    flat = flat[:-2]  # closing point is implicit
                if len(flat) >= 6:
                    rings.append(flat)
        if not rings:
            continue
        xs = [v for r in rings for v in r[0::2]]
        ys = [v for r in rings for v in r[1::2]]
        area = 0.0
        for flat in rings:
            n = len(flat) // 2
            for i in range(n):
                j = (i + 1) % n
                area += flat[2 * i] * flat[2 * j + 1] - flat[2 * j] * flat[2 * i + 1]
        features.append(
            {
                "id": fir_id(props["id"]),
                "src": props["id"],
                "oceanic": int(str(props.get("oceanic", "0")) == "1"),
                "bbox": [min(xs), min(ys), max(xs), max(ys)],
                "area": abs(area) / 2,
                "rings": rings,
            }
        )
    return features


def build_grid(features: list[dict]) -> dict[str, object]:
    """Classify every cell any feature touches: fixed id, or ordered candidates to test."""
    boundary: dict[int, set[int]] = {}
    for idx, feat in enumerate(features):
        for flat in feat["rings"]:
            n = len(flat) // 2
            for i in range(n):
                x0, y0 = flat[2 * i], flat[2 * i + 1]
                j = (i + 1) % n
                x1, y1 = flat[2 * j], flat[2 * j + 1]
                steps = max(1, math.ceil(max(abs(x1 - x0), abs(y1 - y0)) / SUBSEG_DEG))
                for s in range(steps):
                    ax = x0 + (x1 - x0) * s / steps
                    ay = y0 + (y1 - y0) * s / steps
                    bx = x0 + (x1 - x0) * (s + 1) / steps
                    by = y0 + (y1 - y0) * (s + 1) / steps
                    # every cell in the piece's bounding box (at most 2x2) is marked
                    for lat in (min(ay, by), max(ay, by)):
                        for lon in (min(ax, bx), max(ax, bx)):
                            boundary.setdefault(cell_key(lat, lon), set()).add(idx)
    owners: dict[int, set[int]] = {}
    for idx, feat in enumerate(features):
        west, south, east, north = feat["bbox"]
        r0 = math.floor(south / CELL_DEG)
        r1 = math.floor(north / CELL_DEG)
        c0 = math.floor(west / CELL_DEG)
        c1 = math.floor(east / CELL_DEG)
        for r in range(r0, r1 + 1):
            for c in range(c0, c1 + 1):
                lat = (r + 0.5) * CELL_DEG
                lon = (c + 0.5) * CELL_DEG
                if not (-90 < lat < 90 and -180 < lon < 180):
                    continue
                key = cell_key(lat, lon)
                if idx in boundary.get(key, ()):
                    continue
                if ring_contains(feat["rings"], lat, lon):
                    owners.setdefault(key, set()).add(idx)

    def priority(idx: int) -> tuple[int, float]:
        # domestic before oceanic, then the smaller (more specific) area
        return (features[idx]["oceanic"], features[idx]["area"])

    cells: dict[str, object] = {}
    for key in set(boundary) | set(owners):
        own = owners.get(key, set())
        cands = sorted(boundary.get(key, set()) | own, key=priority)
        ordered: list[int] = []
        for idx in cands:
            if idx in own:
                ordered.append(-idx - 1)  # negative: contains the whole cell, stop here
                break
            ordered.append(idx)
        ids = {features[i if i >= 0 else -i - 1]["id"] for i in ordered}
        if ordered and ordered[-1] < 0 and len(ids) == 1:
            cells[str(key)] = ids.pop()
        else:
            cells[str(key)] = ordered
    return cells


def parse_float(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def build_airports(src: Path, features: list[dict], cells: dict[str, object]) -> list[tuple]:
    """Merge the three airport sources; earlier sources win per field."""
    rows: dict[str, dict] = {}

    with (src / "perti" / "apts.csv").open(encoding="utf-8-sig", newline="") as fh:
        for rec in csv.DictReader(fh):
            code = (rec.get("ICAO_ID") or "").strip().upper() or (
                rec.get("ARPT_ID") or ""
            ).strip().upper()
            lat = parse_float(rec.get("LAT_DECIMAL", ""))
            lon = parse_float(rec.get("LONG_DECIMAL", ""))
            if not code or lat is None or lon is None or code in rows:
                continue
            elev = parse_float(rec.get("ELEV", ""))
            rows[code] = {
                "lat": lat,
                "lon": lon,
                "elev": None if elev is None else round(elev),
                "artcc": None,
                "faa_artcc": (rec.get("RESP_ARTCC_ID") or "").strip().upper() or None,
            }

    with (src / "openflights" / "airports.dat").open(encoding="utf-8", newline="") as fh:
        for rec in csv.reader(fh):
            if len(rec) < 9:
                continue
            code = rec[5].strip().upper()
            if len(code) != 4 or code == "\\N":
                continue
            lat, lon, elev = parse_float(rec[6]), parse_float(rec[7]), parse_float(rec[8])
            if lat is None or lon is None:
                continue
            row = rows.setdefault(code, {"lat": lat, "lon": lon, "elev": None, "artcc": None})
            if row["elev"] is None and elev is not None:
                row["elev"] = round(elev)

    section = None
    with (src / "vatspy" / "VATSpy.dat").open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line or line.startswith(";"):
                continue
            if line.startswith("["):
                section = line
                continue
            if section != "[Airports]":
                continue
            parts = line.split("|")
            if len(parts) < 7:
                continue
            code = parts[0].strip().upper()
            lat, lon = parse_float(parts[2]), parse_float(parts[3])
            if not code or lat is None or lon is None or parts[6].strip() == "1":
                continue  # pseudo airports are FIR label points, not aerodromes
            fir = fir_id(parts[5]) if parts[5].strip() else None
            row = rows.setdefault(code, {"lat": lat, "lon": lon, "elev": None, "artcc": None})
            if row["artcc"] is None and fir:
                row["artcc"] = fir

    # The FAA's responsible ARTCC is authoritative in the US (it decides fields near a boundary);
    # elsewhere the boundary the airport lies in wins over VATSpy's FIR column, so that
    # airport_artcc() agrees with artcc_at() for an aircraft parked there.
    known = {f["id"] for f in features}
    out = []
    for code, row in sorted(rows.items()):
        artcc = row["faa_artcc"] if row.get("faa_artcc") in known else None
        artcc = artcc or lookup(features, cells, row["lat"], row["lon"]) or row["artcc"]
        out.append((code, row["lat"], row["lon"], row["elev"], artcc))
    return out


def lookup(features: list[dict], cells: dict[str, object], lat: float, lon: float) -> str | None:
    """The same lookup swimctl.core.geo does at runtime, used to fill missing airport FIRs."""
    entry = cells.get(str(cell_key(lat, lon)))
    if entry is None or isinstance(entry, str):
        return entry
    for idx in entry:
        if idx < 0:
            return features[-idx - 1]["id"]
        if ring_contains(features[idx]["rings"], lat, lon):
            return features[idx]["id"]
    return None


def write_gz(path: Path, text: str) -> None:
    """gzip with a zero mtime so rebuilding unchanged data gives byte-identical files."""
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
        fh.write(text.encode("utf-8"))


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=here.parent / "shared/data/reference")
    parser.add_argument("--out", type=Path, default=here / "swimctl/data")
    args = parser.parse_args(argv)

    features = load_boundaries(args.src / "vatspy" / "Boundaries.geojson")
    wide = [f["src"] for f in features if f["bbox"][2] - f["bbox"][0] > 180]
    if wide:
        print(f"note: features spanning >180 degrees of longitude: {wide}", file=sys.stderr)
    cells = build_grid(features)
    airports = build_airports(args.src, features, cells)

    args.out.mkdir(parents=True, exist_ok=True)
    doc = {
        "source": "VATSpy Boundaries.geojson (CC BY-SA 4.0), see LICENSES.md",
        "cell_deg": CELL_DEG,
        "features": [
            {"id": f["id"], "src": f["src"], "oceanic": f["oceanic"], "rings": f["rings"]}
            for f in features
        ],
        "cells": cells,
    }
    write_gz(args.out / "boundaries.json.gz", json.dumps(doc, separators=(",", ":")))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["icao", "latitude", "longitude", "elevation_ft", "artcc"])
    for code, lat, lon, elev, artcc in airports:
        writer.writerow(
            [code, f"{lat:.5f}", f"{lon:.5f}", "" if elev is None else elev, artcc or ""]
        )
    write_gz(args.out / "airports.csv.gz", buf.getvalue())
    fixed = sum(1 for v in cells.values() if isinstance(v, str))
    print(
        f"{len(features)} boundary features, {len(cells)} grid cells ({fixed} fixed), "
        f"{len(airports)} airports -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
