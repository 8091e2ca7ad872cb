"""Is an `--airport` code one the hub will ever see? The shipped airport table says.

The hub filters on exact ICAO codes, so `--airport JFK` matches nothing and a `tail` waits in
silence; a ground stop at `ZZZZ` stops nobody. The commands ask here first and say so, with a
suggestion from the table (`KJFK` for `JFK`).
"""

from __future__ import annotations

import csv
import gzip
import io
from importlib import resources

# Prefixes tried first for a three-letter code: the ones most often left off (the
# contiguous US, Canada, Alaska and the Pacific, Australia).
PREFERRED_PREFIXES = "KCPY"


def load_codes() -> frozenset[str]:
    """Every code in the airport table shipped with the package."""
    raw = (resources.files("swimctl") / "data" / "airports.csv.gz").read_bytes()
    with io.TextIOWrapper(gzip.GzipFile(fileobj=io.BytesIO(raw)), encoding="utf-8") as text:
        return frozenset(row["icao"].strip().upper() for row in csv.DictReader(text))


def suggestions(code: str, codes: frozenset[str]) -> list[str]:
    """Codes a person probably meant (pure): a prefix added to a three-letter code (the IATA
    habit), else the code with two neighbouring letters swapped (a typo)."""
    code = code.strip().upper()
    if len(code) == 3:
        found = sorted((c for c in codes if len(c) == 4 and c[1:] == code),
                       key=lambda c: (PREFERRED_PREFIXES.find(c[0]) % 99, c))
        if found:
            return found[:3]
    swapped = (code[:i] + code[i + 1] + code[i] + code[i + 2:] for i in range(len(code) - 1))
    return sorted({c for c in swapped if c in codes})[:3]


def unknown_airport(code: str, codes: frozenset[str], flag: str = "--airport") -> str | None:
    """One line about a code the table does not hold, or None when it is there (pure)."""
    upper = code.strip().upper()
    if upper in codes:
        return None
    near = suggestions(upper, codes)
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    return f"{flag} {code}: not in the airport table{hint}"
