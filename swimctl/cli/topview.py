"""The `swimctl top` dashboard as pure functions: hub reports in, a view and rich renderables out.

A report (`status` with `hub: true`, hub/report.py) holds running totals; two of them a few
seconds apart give the rates, and the fan-out histogram's bucket counts give p50/p99 over the
same stretch. Nothing here touches a socket or a terminal: tests feed reports and render at a
fixed size.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import attrs
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from swimctl.cli.usageview import count, duration, size, sparkline
from swimctl.keys.records import TIERS

HISTORY = 600  # samples kept per series (10 minutes at the default interval)
TIER_SHORT = {"public": "pub", "developer": "dev", "partner": "par", "system": "sys"}
CLOSE_NAMES = {1001: "shutdown", 4001: "revoked", 4002: "limit", 4003: "violations",
               4008: "slow"}


def quantile(bounds: list[float], counts: list[int], q: float) -> float | None:
    """The q-quantile of observations bucketed by upper `bounds` (`counts` has one more entry,
    the +Inf bucket), interpolated inside its bucket as Prometheus' histogram_quantile does;
    None without observations. Past the last bound the last bound is the answer."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            if i >= len(bounds):
                return bounds[-1]
            lower = bounds[i - 1] if i else 0.0
            return lower + (bounds[i] - lower) * max(0.0, rank - seen) / n
        seen += n
    return bounds[-1]


def _by(items: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    return {item[key]: item for item in items}


@attrs.define
class View:
    """What the screen (and `--json`) shows for one refresh."""

    hub_id: str
    uptime: float
    seq: int
    epoch: str
    clients: int
    connections: dict[str, int]
    interval: float | None  # seconds between the two reports the rates come from
    events_per_second: dict[str, float]
    events_total: dict[str, int]
    deliveries_per_second: float | None
    fanout_p50: float | None
    fanout_p99: float | None
    slow_consumers: int
    closes: dict[int, int]
    closes_recent: dict[int, int]
    rate_limited: int
    rate_limited_per_second: float | None
    cap_refusals: int
    auth_failures: int
    feed_age: float | None
    feed_cycles: int
    last_cycle: dict[str, Any] | None
    keys: list[dict[str, Any]]
    hubs: list[dict[str, Any]]
    keystore_up: bool | None
    usage: dict[str, Any]
    problems: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the same numbers the screen shows (`swimctl top --json`)."""
        data = attrs.asdict(self)
        data["closes"] = [{"code": c, "count": n} for c, n in sorted(self.closes.items())]
        data["closes_recent"] = [{"code": c, "count": n}
                                 for c, n in sorted(self.closes_recent.items())]
        data["connections"] = [{"tier": t, "count": n} for t, n in self.connections.items()]
        data["events"] = [{"type": t, "per_second": self.events_per_second.get(t),
                           "total": n} for t, n in sorted(self.events_total.items())]
        del data["events_per_second"], data["events_total"]
        return data


def build_view(report: dict[str, Any], before: dict[str, Any] | None = None) -> View:
    """The view of `report`, with rates over the time since `before` (an earlier report of
    the same hub and epoch; otherwise no rates)."""
    if before is not None and (before.get("hub_id") != report.get("hub_id")
                               or before.get("uptime", 0) >= report.get("uptime", 0)):
        before = None  # another hub, or the hub restarted: totals went back to zero
    elapsed = None if before is None else report["uptime"] - before["uptime"]
    events_now = {e["type"]: e["count"] for e in report.get("events", [])}
    rates: dict[str, float] = {}
    deliveries = rate_limited = None
    p50 = p99 = None
    recent: dict[int, int] = {}
    keys = [dict(k) for k in report.get("keys", [])]
    fanout = report.get("fanout", {})
    if before is not None and elapsed:
        events_then = {e["type"]: e["count"] for e in before.get("events", [])}
        rates = {t: (n - events_then.get(t, 0)) / elapsed for t, n in events_now.items()}
        deliveries = (report["deliveries"] - before["deliveries"]) / elapsed
        rate_limited = (report["rate_limited"] - before["rate_limited"]) / elapsed
        then = before.get("fanout", {}).get("counts", [])
        diff = [n - (then[i] if i < len(then) else 0)
                for i, n in enumerate(fanout.get("counts", []))]
        p50 = quantile(fanout.get("bounds", []), diff, 0.5)
        p99 = quantile(fanout.get("bounds", []), diff, 0.99)
        closes_then = {c["code"]: c["count"] for c in before.get("closes", [])}
        recent = {c["code"]: c["count"] - closes_then.get(c["code"], 0)
                  for c in report.get("closes", [])}
        keys_then = _by(before.get("keys", []), "key_id")
        for key in keys:
            old = keys_then.get(key["key_id"])
            key["per_second"] = None if old is None else \
                (key["events_delivered"] - old["events_delivered"]) / elapsed
    else:
        for key in keys:
            key["per_second"] = None
    keys.sort(key=lambda k: (-(k["per_second"] or 0), -k["events_delivered"], k["key_id"]))
    connections = {t: 0 for t in TIERS}
    for tier in report.get("tiers", []):
        connections[tier["tier"]] = tier["open"]
    feed = report.get("feed") or {}
    problems = [f"{c['component']}: {c['problem']}" for c in report.get("components", [])
                if not c.get("ok")]
    if report.get("keystore_up") is False:
        problems.insert(0, "key store unavailable: new connections are refused")
    return View(
        hub_id=report.get("hub_id", "?"), uptime=report.get("uptime", 0.0),
        seq=report.get("seq", 0), epoch=report.get("epoch", ""),
        clients=report.get("connected_clients", 0), connections=connections,
        interval=elapsed, events_per_second=rates, events_total=events_now,
        deliveries_per_second=deliveries, fanout_p50=p50, fanout_p99=p99,
        slow_consumers=report.get("slow_consumers", 0),
        closes={c["code"]: c["count"] for c in report.get("closes", [])},
        closes_recent=recent, rate_limited=report.get("rate_limited", 0),
        rate_limited_per_second=rate_limited, cap_refusals=report.get("cap_refusals", 0),
        auth_failures=report.get("auth_failures", 0), feed_age=feed.get("age_seconds"),
        feed_cycles=feed.get("cycles", 0), last_cycle=feed.get("last_cycle"), keys=keys,
        hubs=report.get("hubs", []), keystore_up=report.get("keystore_up"),
        usage=report.get("usage", {}), problems=problems,
    )


@attrs.define
class TopState:
    """What `top` remembers between refreshes: the last report, the view, and history for the
    sparklines."""

    url: str
    state: str = "connecting"
    detail: str = ""
    report: dict[str, Any] | None = None
    view: View | None = None
    history: dict[str, deque[float | None]] = attrs.field(factory=dict)
    type_history: dict[str, deque[float | None]] = attrs.field(factory=dict)
    updated: float | None = None  # monotonic time of the last report

    def add(self, report: dict[str, Any], now: float | None = None) -> View:
        """Fold in a new report: the view with rates since the previous one, and history."""
        view = build_view(report, self.report)
        self.report, self.view = report, view
        self.updated = time.monotonic() if now is None else now
        if view.interval is None:
            return view
        total = sum(view.events_per_second.values())
        for name, value in (("events", total), ("deliveries", view.deliveries_per_second),
                            ("p99", view.fanout_p99), ("feed_age", view.feed_age),
                            ("clients", float(view.clients))):
            self.history.setdefault(name, deque(maxlen=HISTORY)).append(value)
        for etype in set(view.events_total) | set(self.type_history):
            series = self.type_history.setdefault(etype, deque(maxlen=HISTORY))
            series.append(view.events_per_second.get(etype, 0.0))
        return view


# -- rendering -----------------------------------------------------------------------------------


def _rate(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 10:
        return f"{value:.1f}"
    return count(value)


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 1:
        return f"{seconds * 1000:.1f}ms"
    return f"{seconds:.2f}s"


def _spark(state: TopState, name: str, width: int) -> str:
    return sparkline(list(state.history.get(name, ())), width)


def _header(state: TopState, width: int) -> list[Text]:
    view = state.view
    assert view is not None
    spark = max(0, min(30, width - 62))
    title = Text()
    title.append("swimctl top ", style="bold")
    title.append(view.hub_id, style="bold cyan")
    title.append(f"  up {duration(view.uptime)}  seq {view.seq:,}  ")
    title.append(state.state.upper(), style="bold green" if state.state == "connected"
                 else "bold red")
    if state.detail:
        title.append(f" {state.detail}", style="red")
    conns = Text()
    conns.append("clients ", style="bold")
    conns.append(f"{view.clients:,}  ")
    conns.append("  ".join(f"{TIER_SHORT.get(t, t)} {n:,}" for t, n in view.connections.items()))
    if spark:
        conns.append("  " + _spark(state, "clients", spark), style="cyan")
    total = sum(view.events_per_second.values()) if view.interval else None
    traffic = Text()
    traffic.append("events/s ", style="bold")
    traffic.append(_rate(total))
    if spark:
        traffic.append(" " + _spark(state, "events", spark // 2), style="green")
    traffic.append("  deliveries/s ", style="bold")
    traffic.append(_rate(view.deliveries_per_second))
    if spark:
        traffic.append(" " + _spark(state, "deliveries", spark // 2), style="green")
    fan = Text()
    fan.append("fan-out ", style="bold")
    fan.append(f"p50 {_ms(view.fanout_p50)}  p99 {_ms(view.fanout_p99)}")
    if spark:
        fan.append("  " + _spark(state, "p99", spark), style="yellow")
    limits = Text()
    limits.append("closed: slow ", style="bold")
    limits.append(f"{view.closes.get(4008, 0):,}",
                  style="bold red" if view.closes_recent.get(4008) else "")
    limits.append(" violations ", style="bold")
    limits.append(f"{view.closes.get(4003, 0):,}",
                  style="bold red" if view.closes_recent.get(4003) else "")
    limits.append("  rate-limited ", style="bold")
    limits.append(f"{view.rate_limited:,} ({_rate(view.rate_limited_per_second)}/s)")
    limits.append("  refused: auth ", style="bold")
    limits.append(f"{view.auth_failures:,}")
    limits.append(" cap ", style="bold")
    limits.append(f"{view.cap_refusals:,}")
    lines = [title, conns, traffic, fan, limits, _feed_line(state, spark)]
    for line in lines:  # one screen line each, whatever the width
        line.no_wrap, line.overflow = True, "ellipsis"
    return lines


def _feed_line(state: TopState, spark: int) -> Text:
    view = state.view
    assert view is not None
    line = Text()
    line.append("feed ", style="bold")
    if view.feed_age is None and not view.feed_cycles:
        line.append("none (no --feed on this hub)", style="dim")
        return line
    age = view.feed_age
    stale = age is not None and age > 60
    line.append(f"age {duration(age) if age is not None else '—'}",
                style="bold red" if stale else "")
    if spark:
        line.append(" " + _spark(state, "feed_age", spark // 2), style="magenta")
    cycle = view.last_cycle
    if cycle:
        parts = ", ".join(f"{e['type'].split('.')[-1]} {e['count']}"
                          for e in cycle.get("events", []))
        line.append(f"  last cycle {str(cycle.get('snapshot', ''))[11:19]}Z: "
                    f"{cycle.get('pilots', 0):,} pilots, {cycle.get('events_total', 0):,} "
                    f"events" + (f" ({parts})" if parts else ""))
    return line


def _events_table(state: TopState, rows: int, width: int) -> Table:
    view = state.view
    assert view is not None
    table = Table(box=None, header_style="bold", pad_edge=False, expand=True)
    table.add_column("event type", no_wrap=True, overflow="ellipsis", ratio=2)
    table.add_column("ev/s", justify="right", no_wrap=True)
    table.add_column("total", justify="right", no_wrap=True)
    spark = max(0, min(40, width - 42))
    if spark:
        table.add_column("trend", no_wrap=True, width=spark)
    ranked = sorted(view.events_total, key=lambda t: (-view.events_per_second.get(t, 0.0),
                                                      -view.events_total[t], t))
    for etype in ranked[:rows]:
        cells = [etype, _rate(view.events_per_second.get(etype) if view.interval else None),
                 count(view.events_total[etype])]
        if spark:
            cells.append(sparkline(list(state.type_history.get(etype, ())), spark))
        table.add_row(*cells)
    if not ranked:
        table.add_row(Text("no events yet", style="dim"), "", "", *([""] if spark else []))
    return table


def _keys_table(state: TopState, rows: int, width: int) -> Table:
    view = state.view
    assert view is not None
    table = Table(box=None, header_style="bold", pad_edge=False, expand=True)
    table.add_column("key", justify="right", no_wrap=True)
    table.add_column("owner", no_wrap=True, overflow="ellipsis", ratio=1, min_width=6)
    table.add_column("tier", no_wrap=True)
    table.add_column("open", justify="right", no_wrap=True)
    table.add_column("ev/s", justify="right", no_wrap=True)
    table.add_column("delivered", justify="right", no_wrap=True)
    if width >= 70:
        table.add_column("bytes", justify="right", no_wrap=True)
    for key in view.keys[:rows]:
        cells = [str(key["key_id"]), key.get("owner") or "?",
                 TIER_SHORT.get(key["tier"], key["tier"]), str(key["open"]),
                 _rate(key.get("per_second")), count(key["events_delivered"])]
        if width >= 70:
            cells.append(size(key["bytes_sent"]))
        table.add_row(*cells, style="" if key["open"] else "dim")
    if not view.keys:
        table.add_row("", Text("no keys connected yet", style="dim"), "", "", "", "",
                      *([""] if width >= 70 else []))
    return table


def _hubs_table(view: View) -> Table | None:
    """Only when there is more than this hub to show: a broker, or peers on it."""
    if len(view.hubs) < 2 and all(h.get("broker_up") is None for h in view.hubs):
        return None
    table = Table(box=None, header_style="bold", pad_edge=False, expand=True)
    for name in ("hub", "clients", "leader", "read lag", "broker"):
        table.add_column(name, no_wrap=True, justify="left" if name == "hub" else "right")
    for entry in view.hubs:
        leader = entry.get("leader")
        lag = entry.get("read_lag_seconds")
        up = entry.get("broker_up")
        table.add_row(
            entry.get("hub_id", "?") + (" (this)" if entry.get("self") else ""),
            f"{entry.get('clients', 0):,}",
            "yes" if leader else ("no" if leader is False else "—"),
            _ms(lag) if lag is not None else "—",
            "up" if up else ("DOWN" if up is False else "—"),
            style="bold red" if up is False else "",
        )
    return table


def _section(title: str) -> Text:
    return Text(title, style="bold reverse")


def render(state: TopState, width: int = 80, height: int = 24,
           now: float | None = None) -> RenderableType:
    """The whole screen for a terminal `width` × `height`: header lines, then events by type
    and the top keys (side by side when wide, else one above the other), the hubs when there
    are several, problems, and a status line."""
    if state.view is None:
        return Text(f"swimctl top {state.url}  {state.state.upper()} {state.detail}\n"
                    "waiting for the hub's first report…  (q quits)")
    view = state.view
    now = time.monotonic() if now is None else now
    lines: list[RenderableType] = list(_header(state, width))
    for problem in view.problems[:2]:
        lines.append(Text(problem, style="bold red"))
    hubs = _hubs_table(view)
    hub_lines = 0 if hubs is None else len(view.hubs) + 2
    left = max(2, height - len(lines) - hub_lines - 3)  # sections, headers, status line
    if width >= 140:
        rows = max(1, left - 2)
        grid = Table.grid(expand=True, padding=(0, 2))
        grid.add_column(ratio=1)
        grid.add_column(ratio=1)
        grid.add_row(_section(" events by type "), _section(" top keys by deliveries "))
        half = (width - 2) // 2
        grid.add_row(_events_table(state, rows, half), _keys_table(state, rows, half))
        lines.append(grid)
    else:
        events_rows = max(1, (left - 4) // 2)
        keys_rows = max(1, left - 4 - events_rows)
        lines += [_section(" events by type "), _events_table(state, events_rows, width),
                  _section(" top keys by deliveries "), _keys_table(state, keys_rows, width)]
    if hubs is not None:
        lines += [_section(" hubs "), hubs]
    age = None if state.updated is None else now - state.updated
    status = Text(style="dim")
    status.append(f"{state.url}  ")
    status.append(f"updated {age:.0f}s ago  " if age is not None and age >= 2 else "")
    status.append("q or Ctrl-C quits")
    lines.append(status)
    return Group(*lines)
