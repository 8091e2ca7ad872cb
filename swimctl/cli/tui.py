"""The `swimctl tail` live view as pure functions: state in, rich renderables out.

Nothing here touches a socket or a terminal, so tests render it with a recording Console at a
fixed width and check what a person would see.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import attrs
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from swimctl.core.model import parse_ts

MAX_ROWS = 500
RATE_WINDOW = 10.0  # seconds over which events/s is averaged

STYLES: dict[str, str] = {
    "flight.created": "cyan",
    "flight.updated": "yellow",
    "flight.departed": "bold green",
    "flight.arrived": "bold blue",
    "flight.deleted": "dim red",
    "flight.positions": "dim",
    "tmi.issued": "bold red",
    "tmi.modified": "magenta",
    "tmi.released": "green",
    "tmi.active": "magenta",
}
STATE_STYLES: dict[str, str] = {
    "connected": "bold green",
    "connecting": "yellow",
    "disconnected": "bold red",
    "closed": "red",
}


@attrs.define
class Row:
    """One line of the event table, already reduced to display strings."""

    time: str
    event: str
    callsign: str
    route: str
    altitude: str
    groundspeed: str
    artcc: str
    detail: str
    seq: int | None = None


@attrs.define
class TailState:
    """Everything the view shows; updated by `apply_*`, read by `render`."""

    url: str
    state: str = "connecting"
    state_detail: str = ""
    last_seq: int | None = None
    epoch: str | None = None
    rows: deque[Row] = attrs.field(factory=lambda: deque(maxlen=MAX_ROWS))
    tmis: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    arrivals: deque[float] = attrs.field(factory=deque)  # monotonic times, for events/s
    last_heartbeat: float | None = None  # monotonic
    feed_age: float | None = None
    notices: deque[tuple[str, str]] = attrs.field(factory=lambda: deque(maxlen=3))
    total: int = 0


def _hhmmss(timestamp: str) -> str:
    try:
        return parse_ts(timestamp).strftime("%H:%M:%S")
    except (ValueError, TypeError):
        return "--:--:--"


def _num(value: Any, unit: str = "") -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return ""
    return f"{int(value):,}{unit}"


def _clock(value: Any) -> str:
    """`18:30Z` from an ISO timestamp; the raw text when it does not parse."""
    if not isinstance(value, str) or not value:
        return ""
    try:
        return parse_ts(value).strftime("%H:%MZ")
    except ValueError:
        return value


def row_for(etype: str, timestamp: str, data: dict[str, Any], seq: int | None = None) -> Row:
    """Reduce one event to the columns of the table."""
    dep, arr = data.get("dep"), data.get("arr")
    route = ""
    if dep or arr:
        route = f"{dep or '????'} → {arr or '????'}"
    detail = ""
    callsign = str(data.get("callsign") or "")
    artcc = str(data.get("current_artcc") or "")
    if etype == "flight.departed":
        detail = f"off {_clock(data.get('off_utc'))}".strip()
    elif etype == "flight.arrived":
        detail = f"in {_clock(data.get('in_utc'))}".strip()
    elif etype == "flight.updated":
        changes = data.get("changes")
        if isinstance(changes, list) and changes:
            detail = "changed " + ", ".join(str(c) for c in changes)
    elif etype == "flight.created":
        detail = " ".join(str(v) for v in (data.get("equipment"), data.get("route")) if v)
    elif etype == "flight.positions":
        count = data.get("count")
        detail = f"{count if isinstance(count, int) else 0} positions"
        if data.get("snapshot"):
            detail += " (snapshot)"
    elif etype.startswith("tmi.") and etype != "tmi.active":
        callsign = str(data.get("program_id") or "")
        route = str(data.get("airport") or "")
        detail = tmi_summary(data)
    elif etype == "tmi.active":
        programs = data.get("programs")
        detail = f"{len(programs) if isinstance(programs, list) else 0} active programs"
    return Row(
        time=_hhmmss(timestamp),
        event=etype,
        callsign=callsign,
        route=route,
        altitude=_num(data.get("altitude_ft")),
        groundspeed=_num(data.get("groundspeed_kts")),
        artcc=artcc,
        detail=detail,
        seq=seq,
    )


def tmi_summary(data: dict[str, Any]) -> str:
    """`GS until 19:00Z: weather` / `GDP 30/hr avg 45m until ...`."""
    parts = [str(data.get("program_type") or "")]
    if data.get("program_rate") is not None:
        parts.append(f"{data['program_rate']}/hr")
    if data.get("avg_delay_min") is not None:
        parts.append(f"avg {data['avg_delay_min']}m")
    end = _clock(data.get("end_time"))
    if end:
        parts.append(f"until {end}")
    status = data.get("status")
    if status and status != "ACTIVE":
        parts.append(str(status))
    text = " ".join(p for p in parts if p)
    reason = data.get("reason")
    return f"{text}: {reason}" if reason else text


def apply_event(
    state: TailState,
    etype: str,
    timestamp: str,
    data: dict[str, Any],
    seq: int | None = None,
    now: float | None = None,
) -> None:
    """Fold one event into the view: a table row, TMI book-keeping, rate and heartbeat."""
    now = time.monotonic() if now is None else now
    if etype == "system.heartbeat":
        state.last_heartbeat = now
        age = data.get("feed_age_seconds")
        state.feed_age = float(age) if isinstance(age, int | float) else None
        return
    if seq is not None:
        state.last_seq = seq
    state.total += 1
    state.arrivals.append(now)
    _trim_rate(state, now)
    if etype == "tmi.active":
        programs = data.get("programs")
        state.tmis = {
            str(p.get("program_id")): p for p in programs or () if isinstance(p, dict)
        }
    elif etype in ("tmi.issued", "tmi.modified"):
        state.tmis[str(data.get("program_id"))] = dict(data)
    elif etype == "tmi.released":
        state.tmis.pop(str(data.get("program_id")), None)
    state.rows.append(row_for(etype, timestamp, data, seq))


def _trim_rate(state: TailState, now: float) -> None:
    while state.arrivals and state.arrivals[0] < now - RATE_WINDOW:
        state.arrivals.popleft()


def events_per_second(state: TailState, now: float) -> float:
    _trim_rate(state, now)
    return len(state.arrivals) / RATE_WINDOW


def notice(state: TailState, text: str, style: str = "bold red") -> None:
    """A line the user must see (a gap, a hub error) above the table."""
    state.notices.append((text, style))


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.0f}s"
    return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"


def render_header(state: TailState, now: float) -> RenderableType:
    line = Text()
    line.append("swimctl tail ", style="bold")
    line.append(state.url, style="underline")
    line.append("  ")
    line.append(state.state.upper(), style=STATE_STYLES.get(state.state, ""))
    if state.state_detail:
        line.append(f" {state.state_detail}", style=STATE_STYLES.get(state.state, ""))
    stats = Text(style="dim")
    stats.append(f"seq {state.last_seq if state.last_seq is not None else '—'}")
    stats.append(f"  {events_per_second(state, now):.1f} ev/s")
    stats.append(f"  events {state.total}")
    hb = None if state.last_heartbeat is None else now - state.last_heartbeat
    stats.append(f"  heartbeat {_ago(hb)} ago" if hb is not None else "  heartbeat —")
    stats.append(f"  feed age {_ago(state.feed_age)}")
    lines: list[RenderableType] = [line, stats]
    for text, style in state.notices:
        lines.append(Text(text, style=style))
    return Group(*lines)


def render_events(state: TailState, limit: int) -> RenderableType:
    table = Table(expand=True, box=None, header_style="bold", pad_edge=False)
    table.add_column("time", no_wrap=True, width=8)
    table.add_column("event", no_wrap=True, min_width=15)
    table.add_column("callsign", no_wrap=True, min_width=8)
    table.add_column("dep → arr", no_wrap=True, min_width=11)
    table.add_column("alt ft", justify="right", no_wrap=True)
    table.add_column("gs kt", justify="right", no_wrap=True)
    table.add_column("artcc", no_wrap=True)
    table.add_column("detail", overflow="ellipsis", no_wrap=True, ratio=1)
    rows = list(state.rows)[-limit:] if limit > 0 else []
    for row in rows:
        table.add_row(
            row.time, row.event, row.callsign, row.route, row.altitude, row.groundspeed,
            row.artcc, row.detail, style=STYLES.get(row.event, ""),
        )
    if not rows:
        table.add_row("", Text("waiting for events…", style="dim"), "", "", "", "", "", "")
    return table


def render_tmis(state: TailState) -> RenderableType:
    if not state.tmis:
        body: RenderableType = Text("no active programs", style="dim")
    else:
        table = Table(box=None, expand=True, show_header=False, pad_edge=False)
        table.add_column("airport", style="bold", no_wrap=True)
        table.add_column("id", no_wrap=True)
        table.add_column("summary", ratio=1, overflow="ellipsis", no_wrap=True)
        for pid, program in sorted(state.tmis.items(),
                                   key=lambda kv: (str(kv[1].get("airport")), kv[0])):
            table.add_row(str(program.get("airport") or ""), pid, tmi_summary(program))
        body = table
    return Panel(body, title=f"active TMIs ({len(state.tmis)})", title_align="left",
                 border_style="magenta")


def render(state: TailState, now: float | None = None, height: int = 40) -> RenderableType:
    """The whole screen for a terminal `height` lines tall."""
    now = time.monotonic() if now is None else now
    tmi_lines = max(1, len(state.tmis)) + 2
    header_lines = 2 + len(state.notices)
    limit = max(1, height - header_lines - tmi_lines - 2)  # 1 table header, 1 spare
    return Group(render_header(state, now), render_tmis(state), render_events(state, limit))
