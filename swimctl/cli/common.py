"""Options and helpers shared by the subcommands."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, NoReturn

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

from swimctl.hub.config import DEFAULT_PORT, WS_PATH
from swimctl.keys.store import default_db_url

DEFAULT_URL = f"ws://127.0.0.1:{DEFAULT_PORT}{WS_PATH}"


class _Argument(TyperArgument):
    """An argument whose metavar (ID, FILE) says it all: no `<str>` tag beside it."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def _flags_without_type_tags(params: list[Any]) -> list[Any]:
    """A flag takes no value, so its help shows no `<bool>` tag; values have metavars a
    person reads (ICAO, FILE, URL, SECONDS), given where each option is declared."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
        elif type(param) is TyperArgument and param.metavar:
            param.__class__ = _Argument
    return params


class Command(TyperCommand):
    """Every swimctl command: help without type tags (see `_flags_without_type_tags`)."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_type_tags(super().get_params(ctx))


class Group(TyperGroup):
    """Every swimctl command group, likewise."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_type_tags(super().get_params(ctx))

DbOption: str = typer.Option(
    None,
    "--db",
    envvar="SWIM_DB",
    metavar="URL",
    help="Key database: sqlite:///PATH (default: in the user data dir) or odbc:<conn string>.",
    show_default=False,
)


def resolve_db(db: str | None) -> str:
    return db or default_db_url()


def plain_table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns aligned with two spaces and every value whole (pure): what a table becomes when
    standard output is a pipe or a file, where a terminal's width means nothing and a cut
    value (`GS-KJFK…`) would be lost to grep, awk and the reader."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows,
                                                                        strict=True)]
    lines = []
    for row in (headers, *rows):
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def warn(message: str) -> None:
    """One line on stderr about something that will not do what the user likely meant."""
    typer.echo(f"swimctl: warning: {message}", err=True)


def warn_unknown_airports(codes: list[str], flag: str = "--airport") -> None:
    """The hub matches exact ICAO codes: a code it will never see makes a filter that matches
    nothing, so say so (with the likely code) instead of waiting in silence."""
    if not codes:
        return
    from swimctl.cli.airports import load_codes, unknown_airport

    table = load_codes()
    for code in codes:
        line = unknown_airport(code, table, flag)
        if line:
            warn(f"{line} (the hub matches exact ICAO codes: this filter matches nothing)")


def fail(message: str, code: int = 1) -> NoReturn:
    """One clear line on stderr and a non-zero exit: never a traceback to a user."""
    typer.echo(f"swimctl: error: {message}", err=True)
    raise typer.Exit(code)


_DURATION_UNITS: dict[str, int] = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_BARE_SECONDS = re.compile(r"\d+(\.\d+)?")
# Far enough for any real expiry, near enough that datetime arithmetic never overflows.
_DURATION_MAX = dt.timedelta(days=100 * 366)
DURATION_HINT = "seconds (90) or a number and a unit: 30s, 10m, 2h, 90d, 2w, or 1d12h"


def parse_duration(text: str) -> dt.timedelta:
    """A bare number of seconds (`90`, `2.5`, as `sleep` and `timeout` take it), or `30s`,
    `10m`, `2h`, `90d`, `2w` and sums like `1d12h`; positive and at most 100 years.

    Raises ValueError with a message fit for `fail`.
    """
    compact = "".join(text.split()).lower()
    if _BARE_SECONDS.fullmatch(compact):
        seconds: float = float(compact)
    elif compact and not _DURATION_PART.sub("", compact):
        seconds = sum(int(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(compact))
    else:
        raise ValueError(f"invalid duration {text!r}: use {DURATION_HINT}")
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: must be longer than zero")
    if seconds > _DURATION_MAX.total_seconds():
        raise ValueError(f"invalid duration {text!r}: longer than 100 years")
    return dt.timedelta(seconds=seconds)


def leaf_exceptions(exc: BaseException) -> list[BaseException]:
    """The real errors inside (nested) exception groups, as trio nurseries raise them."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaf_exceptions(sub)]
    return [exc]


# Options of the commands that connect to a hub (tail, record, replay --to, tmi): one
# definition each, so a flag means the same thing, with the same variable, everywhere.
UrlOption: str = typer.Option(DEFAULT_URL, "--url", envvar="SWIM_URL", metavar="URL",
                              help="Hub WebSocket URL.")
UrlsOption: list[str] = typer.Option(
    [DEFAULT_URL], "--url", envvar="SWIM_URL", metavar="URL",
    help="Hub WebSocket URL; repeat it for hubs that share one event log (serve --broker): "
    "after a disconnect the next one is tried, and the stream resumes there.")
KeyOption: str = typer.Option(None, "--key", envvar="SWIM_API_KEY", show_default=False,
                              metavar="KEY",
                              help="API key (prefer the SWIM_API_KEY variable: it stays out of "
                              "shell history).")
CaFileOption: str = typer.Option(None, "--ca-file", envvar="SWIM_CA_FILE", metavar="FILE",
                                 help="CA bundle (PEM) to verify a wss:// hub.")
AirportOption: list[str] = typer.Option([], "--airport", envvar="SWIM_AIRPORT", metavar="ICAO",
                                        help="ICAO code (repeatable; the variable takes a "
                                        "space-separated list).")
ArtccOption: list[str] = typer.Option([], "--artcc", envvar="SWIM_ARTCC", metavar="ID",
                                      help="ARTCC/FIR id (repeatable; the variable takes a "
                                      "space-separated list).")
CallsignPrefixOption: list[str] = typer.Option([], "--callsign-prefix",
                                               envvar="SWIM_CALLSIGN_PREFIX",
                                               metavar="PREFIX",
                                               help="Callsign prefix (repeatable; the variable "
                                               "takes a space-separated list).")
BboxOption: str = typer.Option(None, "--bbox", envvar="SWIM_BBOX", metavar="N,S,E,W",
                               help="Bounding box N,S,E,W in degrees.")
