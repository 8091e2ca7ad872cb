"""`swimctl tmi issue|modify|release|list`: traffic-management programs through a running hub.

Program ids are made here, readable and unique: `GS-KJFK-20261126-1`, numbered past every id
the hub can tell us about for that airport (its active programs and the `tmi.*` events it still
holds), with TmiBook.next_id. Each command publishes with its own random `event_id`, reused only
for its own retries, so a retry is never applied twice and two commands never collide.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import sys
from typing import Any

import orjson
import trio
import typer

from swimctl.cli.common import (
    CaFileOption,
    Command,
    KeyOption,
    UrlOption,
    fail,
    parse_duration,
    plain_table,
    warn_unknown_airports,
)
from swimctl.client.publisher import (
    HubError,
    HubSession,
    connect,
    publish_body,
    publish_once,
)
from swimctl.core.model import format_ts, parse_ts, utc_now
from swimctl.core.tmi import TmiBook

app = typer.Typer(help="Issue, modify, release and list ground stops and ground delay programs.",
                  no_args_is_help=True)

_ICAO = re.compile(r"^[A-Z0-9]{3,4}$")
_ARTCC = re.compile(r"^[A-Z0-9]{3,4}$")


def parse_time(text: str, flag: str, now: dt.datetime | None = None) -> dt.datetime:
    """ISO-8601, `now`, or relative to now: `+30m`, `+2h`, `+1h30m`."""
    now = now or utc_now()
    value = text.strip()
    if value.lower() == "now":
        return now
    if value.startswith("+"):
        try:
            return now + parse_duration(value[1:])
        except ValueError:
            raise ValueError(f"{flag}: {value!r} is not a time: use +30m, +2h or ISO-8601") \
                from None
    try:
        return parse_ts(value)
    except ValueError:
        raise ValueError(f"{flag}: {value!r} is not a time: use +30m, +2h or ISO-8601 like "
                         "2026-11-26T20:00Z") from None


def parse_scope(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [s.strip().upper() for s in text.split(",") if s.strip()]
    if not items or not all(_ARTCC.match(s) for s in items):
        raise ValueError(f"--scope: {text!r} is not a comma-separated list of ARTCCs like ZNY,ZDC")
    return items


def new_event_id(action: str) -> str:
    return f"tmi-{action}-{secrets.token_hex(8)}"


def next_program_id(program_type: str, airport: str, day: dt.date,
                    seen: list[tuple[str, dict[str, Any]]]) -> str:
    """TmiBook.next_id over every program the hub told us about (pure)."""
    book = TmiBook()
    for event_type, data in seen:
        book.apply(event_type, data)
    return book.next_id(program_type, airport, day)


def _require_key(key: str | None, what: str = "a system-tier key") -> str:
    if not key:
        fail(f"--key (or SWIM_API_KEY) is required: {what}")
    return key


def _hub_error_text(exc: HubError) -> str:
    if exc.code == "AUTH_FAILED":
        return f"the hub refused the API key (AUTH_FAILED): {exc.message}"
    if exc.code == "FORBIDDEN":
        return "this needs a system-tier key (FORBIDDEN): the hub refused to publish"
    if exc.code == "INVALID_PUBLISH":
        return f"the hub refused it (INVALID_PUBLISH): {exc.message}"
    return str(exc)


def _run(func: Any, *args: Any) -> Any:
    try:
        return trio.run(func, *args)
    except HubError as exc:
        fail(_hub_error_text(exc))
    except trio.TooSlowError:
        fail("the hub did not answer in time")
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


async def _known_programs(session: HubSession, airport: str | None
                          ) -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any]]]]:
    """(active programs, every tmi event the hub still holds) for one airport or all.

    Asks for the hub's history from seq 0 (`resume`) and a snapshot: held events come first,
    then `tmi.active`, so reading up to `tmi.active` collects both."""
    epoch = session.hello.get("data", {}).get("epoch")
    body: dict[str, Any] = {"action": "subscribe", "channels": ["tmi.*"], "snapshot": True}
    if airport:
        body["filters"] = {"airports": [airport]}
    if isinstance(epoch, str):
        body["resume"] = {"epoch": epoch, "seq": 0}
    session.keep_events = True
    reply = await session.request(body)
    if reply.get("type") == "error":
        raise HubError(str(reply.get("code")), str(reply.get("message")))
    seen: list[tuple[str, dict[str, Any]]] = []
    while True:
        event = await session.next_event()
        if event.get("type") == "tmi.active":
            programs = [p for p in event.get("data", {}).get("programs", [])
                        if isinstance(p, dict)]
            seen.extend(("tmi.issued", p) for p in programs)
            session.keep_events = False
            session.events.clear()
            return programs, seen
        if isinstance(event.get("data"), dict):
            seen.append((event["type"], event["data"]))


async def _publish(session: HubSession, channel: str, data: dict[str, Any], action: str
                   ) -> dict[str, Any]:
    return await publish_once(session, publish_body(channel, data, new_event_id(action)))


def _emit_program(data: dict[str, Any], as_json: bool, verb: str) -> None:
    if as_json:
        typer.echo(orjson.dumps(data).decode())
        return
    typer.echo(data.get("program_id", ""))
    parts = [f"{verb} {data.get('program_type')} at {data.get('airport')}",
             f"{data.get('start_time')} to {data.get('end_time')}"]
    if data.get("program_rate") is not None:
        parts.append(f"rate {data['program_rate']}/h")
    if data.get("scope"):
        parts.append("scope " + ",".join(data["scope"]))
    if data.get("reason"):
        parts.append(f"reason: {data['reason']}")
    print(", ".join(parts), file=sys.stderr)


@app.command("issue", cls=Command)
def issue(
    program_type: str = typer.Option(..., "--type", envvar="SWIM_TMI_TYPE", metavar="GS|GDP",
                                     help="GS (ground stop) or GDP."),
    airport: str = typer.Option(..., "--airport", envvar="SWIM_TMI_AIRPORT", metavar="ICAO",
                                help="ICAO code, e.g. KJFK."),
    until: str = typer.Option(..., "--until", envvar="SWIM_TMI_UNTIL", metavar="TIME",
                              help="End: ISO-8601 or relative (+30m, +2h)."),
    start: str = typer.Option(None, "--start", envvar="SWIM_TMI_START", metavar="TIME",
                              help="Start (default now): ISO or relative."),
    reason: str = typer.Option("", "--reason", envvar="SWIM_TMI_REASON", metavar="TEXT",
                               help="Why, in words."),
    rate: int = typer.Option(None, "--rate", min=1, envvar="SWIM_TMI_RATE", metavar="N",
                             help="GDP arrivals per hour (GDP only)."),
    avg_delay: int = typer.Option(None, "--avg-delay", min=0, envvar="SWIM_TMI_AVG_DELAY",
                                  metavar="MINUTES",
                                  help="GDP average delay, min."),
    max_delay: int = typer.Option(None, "--max-delay", min=0, envvar="SWIM_TMI_MAX_DELAY",
                                  metavar="MINUTES",
                                  help="GDP maximum delay, min."),
    scope: str = typer.Option(None, "--scope", envvar="SWIM_TMI_SCOPE", metavar="ARTCCS",
                              help="ARTCCs in scope, e.g. ZNY,ZDC."),
    program_id: str = typer.Option(None, "--id", envvar="SWIM_TMI_ID", metavar="PROGRAM_ID",
                                   help="Use this program id (default: next "
                                   "free TYPE-AIRPORT-YYYYMMDD-N)."),
    unlisted_airport: bool = typer.Option(
        False, "--unlisted-airport", envvar="SWIM_TMI_UNLISTED_AIRPORT",
        help="Issue it even though --airport is not in the airport table."),
    as_json: bool = typer.Option(False, "--json", help="Print the issued program as JSON."),
    url: str = UrlOption,
    key: str = KeyOption,
    ca_file: str = CaFileOption,
) -> None:
    """Issue a ground stop or ground delay program; prints its program id."""
    ptype = program_type.upper()
    if ptype not in ("GS", "GDP"):
        fail("--type must be GS or GDP")
    icao = airport.strip().upper()
    if not _ICAO.match(icao):
        fail(f"--airport: {airport!r} is not an ICAO code like KJFK")
    if not unlisted_airport:
        from swimctl.cli.airports import load_codes, unknown_airport

        unknown = unknown_airport(icao, load_codes())
        if unknown:
            fail(f"{unknown} (give --unlisted-airport to issue it all the same)")
    if ptype == "GS" and (rate is not None or avg_delay is not None or max_delay is not None):
        fail("--rate, --avg-delay and --max-delay apply to a GDP, not a GS")
    if ptype == "GDP" and rate is None:
        fail("a GDP needs --rate (arrivals per hour)")
    now = utc_now()
    try:
        begin = parse_time(start, "--start", now) if start else now
        end = parse_time(until, "--until", now)
        areas = parse_scope(scope)
    except ValueError as exc:
        fail(str(exc))
    if end <= begin:
        fail("--until must be after --start")
    if end <= now:
        fail("--until is in the past")
    data: dict[str, Any] = {
        "program_type": ptype, "airport": icao, "start_time": format_ts(begin),
        "end_time": format_ts(end), "reason": reason, "status": "ACTIVE",
    }
    if ptype == "GDP":
        data["program_rate"] = rate
        if avg_delay is not None:
            data["avg_delay_min"] = avg_delay
        if max_delay is not None:
            data["max_delay_min"] = max_delay
    if areas:
        data["scope"] = areas
    api_key = _require_key(key)

    async def run() -> dict[str, Any]:
        async with connect(url, api_key, ca_file) as session:
            if program_id:
                return await _publish(session, "tmi.issued", {"program_id": program_id, **data},
                                      "issue")
            _, seen = await _known_programs(session, icao)
            for _ in range(5):  # another issuer may take the same number: take the next
                pid = next_program_id(ptype, icao, begin.date(), seen)
                try:
                    await _publish(session, "tmi.issued", {"program_id": pid, **data}, "issue")
                except HubError as exc:
                    if exc.code == "INVALID_PUBLISH" and "already active" in exc.message:
                        seen.append(("tmi.issued", {"program_id": pid}))
                        continue
                    raise
                return {"program_id": pid, **data}
            raise HubError("", "could not find a free program id; give one with --id")

    result = _run(run)
    if program_id:
        result = {"program_id": program_id, **data}
    _emit_program(result, as_json, "issued")


def _program_from_list(programs: list[dict[str, Any]], program_id: str) -> dict[str, Any]:
    for program in programs:
        if program.get("program_id") == program_id:
            return program
    raise HubError("", f"no active program {program_id!r} (see `swimctl tmi list`)")


@app.command("modify", cls=Command)
def modify(
    program_id: str = typer.Argument(..., metavar="PROGRAM_ID",
                                    help="The program, e.g. GS-KJFK-20261126-1."),
    until: str = typer.Option(None, "--until", envvar="SWIM_TMI_UNTIL", metavar="TIME",
                              help="New end: ISO-8601 or relative (+30m)."),
    rate: int = typer.Option(None, "--rate", min=1, envvar="SWIM_TMI_RATE", metavar="N",
                             help="New GDP rate (arrivals per hour)."),
    reason: str = typer.Option(None, "--reason", envvar="SWIM_TMI_REASON", metavar="TEXT",
                               help="New reason."),
    scope: str = typer.Option(None, "--scope", envvar="SWIM_TMI_SCOPE", metavar="ARTCCS",
                              help="New ARTCC scope, e.g. ZNY,ZDC."),
    as_json: bool = typer.Option(False, "--json", help="Print the modified program as JSON."),
    url: str = UrlOption,
    key: str = KeyOption,
    ca_file: str = CaFileOption,
) -> None:
    """Change an active program's end time, rate, reason or scope."""
    if until is None and rate is None and reason is None and scope is None:
        fail("nothing to change: give --until, --rate, --reason or --scope")
    now = utc_now()
    changes: dict[str, Any] = {"program_id": program_id}
    try:
        if until is not None:
            end = parse_time(until, "--until", now)
            if end <= now:
                fail("--until is in the past (use `swimctl tmi release` to end it now)")
            changes["end_time"] = format_ts(end)
        areas = parse_scope(scope)
    except ValueError as exc:
        fail(str(exc))
    if areas is not None:
        changes["scope"] = areas
    if rate is not None:
        changes["program_rate"] = rate
    if reason is not None:
        changes["reason"] = reason
    api_key = _require_key(key)

    async def run() -> dict[str, Any]:
        async with connect(url, api_key, ca_file) as session:
            programs, _ = await _known_programs(session, None)
            current = _program_from_list(programs, program_id)
            if rate is not None and current.get("program_type") != "GDP":
                raise HubError("", f"{program_id} is a {current.get('program_type')}: --rate "
                               "applies to a GDP")
            await _publish(session, "tmi.modified", changes, "modify")
            return {**current, **changes}

    _emit_program(_run(run), as_json, "modified")


@app.command("release", cls=Command)
def release(
    program_id: str = typer.Argument(..., metavar="PROGRAM_ID",
                                    help="The program, e.g. GS-KJFK-20261126-1."),
    reason: str = typer.Option(None, "--reason", envvar="SWIM_TMI_REASON", metavar="TEXT",
                               help="Why it ends now."),
    as_json: bool = typer.Option(False, "--json", help="Print the released program as JSON."),
    url: str = UrlOption,
    key: str = KeyOption,
    ca_file: str = CaFileOption,
) -> None:
    """End an active program now (status RELEASED)."""
    api_key = _require_key(key)
    data: dict[str, Any] = {"program_id": program_id}
    if reason is not None:
        data["reason"] = reason

    async def run() -> dict[str, Any]:
        async with connect(url, api_key, ca_file) as session:
            programs, _ = await _known_programs(session, None)
            current = _program_from_list(programs, program_id)
            await _publish(session, "tmi.released", data, "release")
            return {**current, **data, "status": "RELEASED"}

    _emit_program(_run(run), as_json, "released")


@app.command("list", cls=Command)
def list_programs(
    airport: list[str] = typer.Option([], "--airport", envvar="SWIM_TMI_AIRPORT",
                                      metavar="ICAO", help="Only these airports (repeatable; "
                                      "the variable takes a space-separated list)."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines, one program per line."),
    url: str = UrlOption,
    key: str = typer.Option(None, "--key", envvar="SWIM_API_KEY", show_default=False,
                            metavar="KEY", help="API key (any tier can list)."),
    ca_file: str = CaFileOption,
) -> None:
    """The programs active now, from the hub's snapshot."""
    api_key = _require_key(key, "an API key of any tier")
    airports = [a.strip().upper() for a in airport]
    for code in airports:
        if not _ICAO.match(code):
            fail(f"--airport: {code!r} is not an ICAO code like KJFK")
    warn_unknown_airports(airports)

    async def run() -> list[dict[str, Any]]:
        async with connect(url, api_key, ca_file) as session:
            body: dict[str, Any] = {"action": "subscribe", "channels": ["tmi.*"],
                                    "snapshot": True}
            if airports:
                body["filters"] = {"airports": airports}
            reply = await session.request(body)
            if reply.get("type") == "error":
                raise HubError(str(reply.get("code")), str(reply.get("message")))
            while True:
                event = await session.next_event()
                if event.get("type") == "tmi.active":
                    return [p for p in event.get("data", {}).get("programs", [])
                            if isinstance(p, dict)]

    programs = _run(run)
    if as_json:
        for program in programs:
            typer.echo(orjson.dumps(program).decode())
        return
    if not programs:
        typer.echo("no active programs")
        return
    headers = ["id", "type", "airport", "start", "end", "rate", "scope", "reason"]
    rows = []
    for p in programs:
        rate_text = str(p["program_rate"]) if p.get("program_rate") is not None else ""
        rows.append([str(p.get("program_id")), str(p.get("program_type")),
                     str(p.get("airport")), str(p.get("start_time")), str(p.get("end_time")),
                     rate_text, ",".join(p.get("scope") or []), str(p.get("reason") or "")])
    if not sys.stdout.isatty():  # a pipe or a file: whole values, no box
        typer.echo(plain_table(headers, rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*headers)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
