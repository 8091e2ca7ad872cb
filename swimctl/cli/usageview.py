"""How `swimctl keys usage` and `swimctl top` show numbers: pure functions, no terminal.

Bars use eighth blocks so a small chart still tells 3 from 4; sizes and durations are short on a
terminal and whole (bytes, seconds) everywhere else, where a script reads them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from swimctl.core.usage import COUNTS, UsageRow

EIGHTHS = " ▏▎▍▌▋▊▉█"
SPARKS = "▁▂▃▄▅▆▇█"


def bar(value: float, peak: float, width: int) -> str:
    """A horizontal bar `width` cells long at `peak`; any value above zero shows at least an
    eighth of a cell, so "a little" never looks like "nothing"."""
    if value <= 0 or peak <= 0 or width <= 0:
        return ""
    eighths = max(1, round(min(value, peak) / peak * width * 8))
    full, part = divmod(eighths, 8)
    return "█" * full + (EIGHTHS[part] if part else "")


def sparkline(values: Sequence[float | None], width: int) -> str:
    """The last `width` values as one line of block heights, scaled from zero to their peak
    (None, a sample not taken, is a space)."""
    shown = list(values)[-width:] if width > 0 else []
    peak = max((v for v in shown if v is not None), default=0.0)
    out = []
    for value in shown:
        if value is None:
            out.append(" ")
        elif peak <= 0:
            out.append(SPARKS[0])
        else:
            out.append(SPARKS[min(len(SPARKS) - 1, int(value / peak * (len(SPARKS) - 1) + 0.5))])
    return "".join(out)


def size(count: float) -> str:
    """Bytes as 512 B, 1.5 kB, 12.3 MB, 4.0 GB (powers of 1000, as `ls --si`)."""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def count(value: float) -> str:
    """1,234 up to 99,999; then 123.4k, 1.2M, 3.4G."""
    if abs(value) < 100_000:
        return f"{value:,.0f}"
    for unit, scale in (("k", 1e3), ("M", 1e6), ("G", 1e9)):
        if abs(value) < scale * 1000 or unit == "G":
            return f"{value / scale:.1f}{unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def duration(seconds: float) -> str:
    """45s, 12m05s, 3h02m, 2d04h."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def refusals(row: UsageRow) -> str:
    """auth/cap/rate, as the column header says."""
    return f"{row.refusals_auth}/{row.refusals_cap}/{row.refusals_rate}"


def by_day(rows: Iterable[UsageRow], first: dt.date, last: dt.date) -> list[UsageRow]:
    """One row per day from `first` to `last`, every key added up, days without use as zero
    rows (key_id 0), so a chart shows the gaps."""
    summed: dict[dt.date, UsageRow] = {}
    for row in rows:
        total = summed.get(row.day, UsageRow(row.day, 0))
        summed[row.day] = total.plus(UsageRow(row.day, 0, **dict(zip(COUNTS, row.counts(),
                                                                        strict=True))))
    days = []
    day = first
    while day <= last:
        days.append(summed.get(day, UsageRow(day, 0)))
        day += dt.timedelta(days=1)
    return days


def by_key(rows: Iterable[UsageRow]) -> list[UsageRow]:
    """Each key's rows added up over the period (the day is its last one), most events first."""
    summed: dict[int, UsageRow] = {}
    for row in rows:
        before = summed.get(row.key_id)
        summed[row.key_id] = row if before is None else UsageRow(
            max(before.day, row.day), row.key_id,
            **dict(zip(COUNTS, before.plus(row).counts(), strict=True)))
    return sorted(summed.values(), key=lambda r: (-r.events_delivered, r.key_id))
