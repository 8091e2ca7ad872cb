"""Options and helpers shared by the subcommands."""

from __future__ import annotations

import datetime as dt
import re
from typing import NoReturn

import typer

from swimctl.hub.config import DEFAULT_PORT, WS_PATH
from swimctl.keys.store import default_db_url

DEFAULT_URL = f"ws://127.0.0.1:{DEFAULT_PORT}{WS_PATH}"

DbOption: str = typer.Option(
    None,
    "--db",
    envvar="SWIM_DB",
    help="Key database: sqlite:///PATH (default: in the user data dir) or odbc:<conn string>.",
    show_default=False,
)


def resolve_db(db: str | None) -> str:
    return db or default_db_url()


def fail(message: str, code: int = 1) -> NoReturn:
    """One clear line on stderr and a non-zero exit: never a traceback to a user."""
    typer.echo(f"swimctl: error: {message}", err=True)
    raise typer.Exit(code)


_DURATION_UNITS: dict[str, int] = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_PART = re.compile(r"(\d+)([smhdw])")
# Far enough for any real expiry, near enough that datetime arithmetic never overflows.
_DURATION_MAX = dt.timedelta(days=100 * 366)


def parse_duration(text: str) -> dt.timedelta:
    """`90d`, `12h`, `30m`, `2w`, `45s` or sums like `1d12h`; positive and at most 100 years.

    Raises ValueError with a message fit for `fail`.
    """
    compact = "".join(text.split()).lower()
    if not compact or _DURATION_PART.sub("", compact):
        raise ValueError(f"invalid duration {text!r}: use e.g. 90d, 12h, 30m, 2w")
    seconds = sum(int(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(compact))
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
UrlOption: str = typer.Option(DEFAULT_URL, "--url", envvar="SWIM_URL", help="Hub WebSocket URL.")
KeyOption: str = typer.Option(None, "--key", envvar="SWIM_API_KEY", show_default=False,
                              help="API key (prefer the SWIM_API_KEY variable: it stays out of "
                              "shell history).")
CaFileOption: str = typer.Option(None, "--ca-file", envvar="SWIM_CA_FILE",
                                 help="CA bundle (PEM) to verify a wss:// hub.")
AirportOption: list[str] = typer.Option([], "--airport", envvar="SWIM_AIRPORT",
                                        help="ICAO code (repeatable; the variable takes a "
                                        "space-separated list).")
ArtccOption: list[str] = typer.Option([], "--artcc", envvar="SWIM_ARTCC",
                                      help="ARTCC/FIR id (repeatable; the variable takes a "
                                      "space-separated list).")
CallsignPrefixOption: list[str] = typer.Option([], "--callsign-prefix",
                                               envvar="SWIM_CALLSIGN_PREFIX",
                                               help="Callsign prefix (repeatable; the variable "
                                               "takes a space-separated list).")
BboxOption: str = typer.Option(None, "--bbox", envvar="SWIM_BBOX",
                               help="Bounding box N,S,E,W in degrees.")
