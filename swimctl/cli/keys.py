"""`swimctl keys`: manage API keys in the key database.

Every failure a user can cause (bad tier, bad expiry, unknown id, unreachable database, bad
URL) ends in one `swimctl: error: ...` line on stderr and a non-zero exit. A plain key is
printed exactly once, by `create` or `rotate`; nothing else ever prints one.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

from swimctl.cli.common import (
    Command,
    DbOption,
    fail,
    parse_duration,
    plain_table,
    resolve_db,
)
from swimctl.core.model import dumps
from swimctl.core.usage import UsageRow
from swimctl.keys import (
    KEEP,
    TIERS,
    KeyRecord,
    KeyStore,
    KeyStoreError,
)
from swimctl.keys.records import utc_naive

app = typer.Typer(help="Manage API keys (stored as SHA-256 hashes).", no_args_is_help=True)

ExpiresInOption: str | None = typer.Option(
    None,
    "--expires-in",
    envvar="SWIM_KEY_EXPIRES_IN",
    metavar="DURATION",
    help="Lifetime from now, e.g. 90d, 12h, 30m, 2w (a bare number is seconds).",
    show_default=False,
)
ExpiresAtOption: str | None = typer.Option(
    None,
    "--expires-at",
    envvar="SWIM_KEY_EXPIRES_AT",
    metavar="TIME",
    help="Absolute expiry, ISO-8601 (naive means UTC), e.g. 2099-01-01T00:00:00Z.",
    show_default=False,
)
JsonOption: bool = typer.Option(False, "--json", help="Print JSON instead of text.")


@contextmanager
def _errors() -> Iterator[None]:
    """Turn key-store errors into the one-line failure users get."""
    try:
        yield
    except KeyStoreError as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        if text.startswith("no key database at "):
            fail(f"{text}: check --db / SWIM_DB, or make one with `swimctl keys create`")
        if any(sign in text for sign in MISSING_TABLE):
            fail("the key database has no key table yet: create a key, or run "
                 "`swimctl keys init-db` (check --db / SWIM_DB if you expected one)")
        fail(text)


# How SQLite, PostgreSQL, MariaDB and SQL Server say a table is missing.
MISSING_TABLE = ("no such table", "does not exist", "doesn't exist", "Invalid object name")


def _store(db: str | None, *, create: bool = True) -> KeyStore:
    """The key store; `create=False` for commands that work on existing keys, which must not
    leave a new, empty database (and its directories) behind a mistyped --db."""
    with _errors():
        return KeyStore(resolve_db(db), create=create)
    raise AssertionError("unreachable")  # pragma: no cover - fail() exits


def _parse_id(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        fail(f"invalid key id {text!r}: expected a positive integer")
    if value <= 0:
        fail(f"invalid key id {text!r}: expected a positive integer")
    return value


def _parse_expiry(expires_in: str | None, expires_at: str | None) -> dt.datetime | None:
    """Naive-UTC expiry from the two mutually exclusive options; None when neither is given."""
    if expires_in is not None and expires_at is not None:
        fail("give --expires-in or --expires-at, not both")
    now = utc_naive()
    if expires_in is not None:
        try:
            return now + parse_duration(expires_in)
        except ValueError as exc:
            fail(f"--expires-in: {exc}")
    if expires_at is not None:
        try:
            moment = dt.datetime.fromisoformat(expires_at.strip())
        except ValueError:
            fail(f"--expires-at: invalid ISO-8601 time {expires_at!r}")
        moment = utc_naive(moment)
        if moment <= now:
            fail(f"--expires-at: {moment.isoformat()}Z is not in the future")
        return moment
    return None


def _when(moment: dt.datetime | None) -> str:
    return "-" if moment is None else moment.isoformat(sep=" ") + "Z"


def _minute(moment: dt.datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M")


def _echo_json(obj: Any) -> None:
    typer.echo(dumps(obj).decode())


def _print_new_key(api_key: str, record: KeyRecord, as_json: bool, verb: str) -> None:
    """The only place a plain key is printed: stdout, once."""
    if as_json:
        _echo_json({"api_key": api_key, **record.to_dict()})
        return
    typer.echo(api_key)
    expiry = f", expires {_when(record.expires_at)}" if record.expires_at else ""
    typer.echo(
        f"{verb} key id {record.id}, tier {record.tier}, owner {record.owner_name}{expiry} "
        "(shown once: store it now)",
        err=True,
    )


@app.command(cls=Command)
def create(
    tier: str = typer.Option(..., "--tier", envvar="SWIM_KEY_TIER", metavar="TIER",
                             help=f"One of: {', '.join(TIERS)}."),
    owner: str = typer.Option(..., "--owner", envvar="SWIM_KEY_OWNER", metavar="NAME",
                              help="Who the key is for."),
    email: str | None = typer.Option(None, "--email", envvar="SWIM_KEY_EMAIL", metavar="EMAIL",
                                     help="Owner's contact address."),
    description: str | None = typer.Option(None, "--description", envvar="SWIM_KEY_DESCRIPTION",
                                           metavar="TEXT",
                                           help="What the key is for."),
    expires_in: str | None = ExpiresInOption,
    expires_at: str | None = ExpiresAtOption,
    as_json: bool = JsonOption,
    db: str = DbOption,
) -> None:
    """Create a key and print it once; only its hash is stored."""
    tier = tier.strip().lower()
    if tier not in TIERS:
        fail(f"unknown tier {tier!r}; choose from {', '.join(TIERS)}")
    expires = _parse_expiry(expires_in, expires_at)
    store = _store(db)
    with _errors():
        api_key, record = store.create(
            tier, owner, owner_email=email, description=description, expires_at=expires
        )
    _print_new_key(api_key, record, as_json, "created")


@app.command("list", cls=Command)
def list_keys(
    show_all: bool = typer.Option(
        False, "--all", envvar="SWIM_KEY_LIST_ALL", help="Include revoked and expired keys.",
        show_default=False,
    ),
    as_json: bool = JsonOption,
    db: str = DbOption,
) -> None:
    """List keys (usable ones unless --all); secrets are never shown."""
    store = _store(db, create=False)
    with _errors():
        records = store.list(include_inactive=show_all)
    if as_json:
        _echo_json([record.to_dict() for record in records])
        return
    if not records:
        typer.echo("no keys" if show_all else "no usable keys (--all shows revoked and expired)")
        return
    if not sys.stdout.isatty():  # a pipe or a file: whole values, no box (times in UTC)
        typer.echo(plain_table(
            ["ID", "Tier", "Owner", "Email", "Expires", "Last used", "Status", "Description"],
            [[str(r.id), r.tier, r.owner_name, r.owner_email or "-", _minute(r.expires_at),
              _minute(r.last_used_at), r.status(), r.description or "-"] for r in records]))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(
        box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, caption="times in UTC"
    )
    table.add_column("ID", justify="right", no_wrap=True)
    table.add_column("Tier", no_wrap=True)
    table.add_column("Owner", overflow="fold", min_width=5)
    table.add_column("Email", overflow="fold", min_width=5)
    table.add_column("Expires", no_wrap=True)
    table.add_column("Last used", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Description", overflow="fold", min_width=11)
    for r in records:
        table.add_row(
            str(r.id), r.tier, r.owner_name, r.owner_email or "-", _minute(r.expires_at),
            _minute(r.last_used_at), r.status(), r.description or "-",
        )
    Console().print(table)


def _get(store: KeyStore, key_id: int) -> KeyRecord:
    with _errors():
        record = store.get(key_id)
    if record is None:
        fail(f"no key with id {key_id}")
    return record


@app.command(cls=Command)
def show(
    key_id: str = typer.Argument(..., metavar="ID", help="Key id (see `swimctl keys list`)."),
    as_json: bool = JsonOption,
    db: str = DbOption,
) -> None:
    """Show one key's record (never the key itself)."""
    record = _get(_store(db, create=False), _parse_id(key_id))
    if as_json:
        _echo_json(record.to_dict())
        return
    for label, value in (
        ("id", str(record.id)),
        ("tier", record.tier),
        ("owner", record.owner_name),
        ("email", record.owner_email or "-"),
        ("description", record.description or "-"),
        ("created", _when(record.created_at)),
        ("expires", _when(record.expires_at)),
        ("last used", _when(record.last_used_at)),
        ("status", record.status()),
        *([("revoked", _when(record.revoked_at))] if record.revoked_at else []),
    ):
        typer.echo(f"{label + ':':<13}{value}")


@app.command(cls=Command)
def revoke(
    key_id: str = typer.Argument(..., metavar="ID", help="Key id to revoke."),
    db: str = DbOption,
) -> None:
    """Revoke a key: running hubs refuse it and close its connections within 10 s."""
    ident = _parse_id(key_id)
    store = _store(db, create=False)
    with _errors():
        before = store.revoke_key(ident)
    if before is None:
        fail(f"no key with id {ident}")
    if before.is_active:
        typer.echo(f"revoked key {ident}")
    elif before.revoked_at is not None:
        typer.echo(f"key {ident} was already revoked, at {_when(before.revoked_at)}; "
                   "nothing changed")
    else:
        typer.echo(f"key {ident} was already revoked (when was not recorded: revoked before "
                   "`swimctl keys migrate` added revoked_at); nothing changed")


@app.command(cls=Command)
def rotate(
    key_id: str = typer.Argument(..., metavar="ID", help="Key id to replace."),
    expires_in: str | None = ExpiresInOption,
    expires_at: str | None = ExpiresAtOption,
    no_expiry: bool = typer.Option(
        False, "--no-expiry", envvar="SWIM_KEY_NO_EXPIRY", help="The new key never expires.",
        show_default=False,
    ),
    as_json: bool = JsonOption,
    db: str = DbOption,
) -> None:
    """Issue a new key for the same owner and tier and revoke the old one, atomically.

    The new key keeps the old expiry unless --expires-in, --expires-at or --no-expiry is given.
    """
    ident = _parse_id(key_id)
    if no_expiry and (expires_in is not None or expires_at is not None):
        fail("--no-expiry cannot be combined with --expires-in or --expires-at")
    expires = _parse_expiry(expires_in, expires_at)
    store = _store(db, create=False)
    with _errors():
        if no_expiry:
            api_key, record = store.rotate(ident, expires_at=None)
        elif expires is not None:
            api_key, record = store.rotate(ident, expires_at=expires)
        else:
            api_key, record = store.rotate(ident, expires_at=KEEP)
    _print_new_key(api_key, record, as_json, f"rotated key {ident}:")


@app.command("init-db", cls=Command)
def init_db(db: str = DbOption) -> None:
    """Create the key table if it does not exist (safe to repeat)."""
    store = _store(db)
    with _errors():
        created = store.init_db()
        dialect = store.dialect.name
    state = "created" if created else "already exists"
    typer.echo(f"table {store.table} {state}, with {store.usage_table} beside it ({dialect})")


@app.command(cls=Command)
def migrate(as_json: bool = JsonOption, db: str = DbOption) -> None:
    """Hash plain-text keys in an existing table in place and add what newer versions use
    (revoked_at, the usage table); keys keep working; safe to repeat."""
    store = _store(db)
    with _errors():
        report = store.migrate()
    if as_json:
        _echo_json(
            {
                "created": report.created,
                "widened": report.widened,
                "hashed": report.hashed,
                "already_hashed": report.already_hashed,
                "skipped": report.skipped,
                "added_columns": list(report.added_columns),
                "usage_created": report.usage_created,
            }
        )
        return
    if report.created:
        typer.echo(f"table {store.table} did not exist: created it")
    if report.usage_created:
        typer.echo(f"created table {store.usage_table} (per-key usage history)")
    if report.widened:
        typer.echo("widened api_key to 64 characters")
    for name in report.added_columns:
        typer.echo(f"added column {name}")
    typer.echo(
        f"hashed {report.hashed} plain-text keys; {report.already_hashed} already hashed; "
        f"{report.skipped} empty skipped"
    )


@app.command(cls=Command)
def usage(
    key: str | None = typer.Option(None, "--key", envvar="SWIM_USAGE_KEY", metavar="ID",
                                   help="Only this key id (see `swimctl keys list`).",
                                   show_default=False),
    days: int = typer.Option(30, "--days", envvar="SWIM_USAGE_DAYS", metavar="N", min=1,
                             max=3660, help="Days back from today (UTC), today included."),
    as_json: bool = JsonOption,
    db: str = DbOption,
) -> None:
    """Per-key usage per UTC day, as the hubs wrote it: connections, connection time, stream
    events delivered, bytes, refusals (auth/cap/rate), with a bar chart of events per day."""
    ident = _parse_id(key) if key is not None else None
    store = _store(db, create=False)
    today = utc_naive().date()
    since = today - dt.timedelta(days=days - 1)
    with _errors():
        try:
            rows = store.usage(key_id=ident, since=since)
        except KeyStoreError as exc:
            if any(sign in str(exc) for sign in MISSING_TABLE):
                fail(f"the key database has no usage table ({store.usage_table}) yet: run "
                     "`swimctl keys migrate` (a hub on SQLite makes it when it starts)")
            raise
        records = {r.id: r for r in store.list(include_inactive=True)}
    if ident is not None and ident not in records:
        fail(f"no key with id {ident}")
    if as_json:
        _echo_json([{**row.to_dict(), "owner": records[row.key_id].owner_name
                     if row.key_id in records else None,
                     "tier": records[row.key_id].tier if row.key_id in records else None}
                    for row in rows])
        return
    scope = f"key {ident}" if ident is not None else "all keys"
    if not rows:
        typer.echo(f"no usage recorded for {scope} since {since.isoformat()} (UTC)")
        return
    _print_usage(rows, records, scope, since, today)


def _print_usage(rows: list[UsageRow], records: dict[int, KeyRecord], scope: str,
                 since: dt.date, today: dt.date) -> None:
    """Per day (with a bar of events), then per key; whole numbers into a pipe."""
    from swimctl.cli import usageview as view

    first = min(row.day for row in rows)
    days = view.by_day(rows, first, today)
    keys = view.by_key(rows)

    def owner(key_id: int) -> str:
        record = records.get(key_id)
        return record.owner_name if record is not None else "?"

    def tier(key_id: int) -> str:
        record = records.get(key_id)
        return record.tier if record is not None else "?"

    if not sys.stdout.isatty():
        typer.echo(plain_table(
            ["Day", "Connections", "Seconds", "Events", "Bytes", "Refused a/c/r"],
            [[d.day.isoformat(), str(d.connections), str(d.connection_seconds),
              str(d.events_delivered), str(d.bytes_sent), view.refusals(d)] for d in days]))
        typer.echo("")
        typer.echo(plain_table(
            ["Key", "Owner", "Tier", "Connections", "Seconds", "Events", "Bytes",
             "Refused a/c/r"],
            [[str(k.key_id), owner(k.key_id), tier(k.key_id), str(k.connections),
              str(k.connection_seconds), str(k.events_delivered), str(k.bytes_sent),
              view.refusals(k)] for k in keys]))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    peak = max(d.events_delivered for d in days)
    headers = ("day", "conns", "time", "events", "bytes", "refused")
    cells = [(d.day.isoformat(), view.count(d.connections), view.duration(d.connection_seconds),
              view.count(d.events_delivered), view.size(d.bytes_sent), view.refusals(d))
             for d in days]
    # Each column: its widest cell, a space either side and one between columns; the bars
    # take what the numbers leave.
    used = sum(max(len(h), *(len(c[i]) for c in cells)) + 3 for i, h in enumerate(headers))
    width = max(8, console.width - used - 3)
    chart = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False,
                  title=f"usage of {scope}, {first.isoformat()} to {today.isoformat()} (UTC)",
                  title_justify="left", caption="refused: auth / cap / rate",
                  caption_justify="left")
    chart.add_column("day", no_wrap=True)
    for name in headers[1:]:
        chart.add_column(name, justify="right", no_wrap=True)
    chart.add_column("events per day", no_wrap=True, overflow="crop", max_width=width)
    for d, row in zip(days, cells, strict=True):
        chart.add_row(*row, view.bar(d.events_delivered, peak, width),
                      style="dim" if d.is_empty() else "")
    console.print(chart)
    per_key = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    per_key.add_column("key", justify="right", no_wrap=True)
    per_key.add_column("owner", overflow="fold", min_width=5)
    per_key.add_column("tier", no_wrap=True)
    for name in ("conns", "time", "events", "bytes", "refused"):
        per_key.add_column(name, justify="right", no_wrap=True)
    for k in keys:
        per_key.add_row(str(k.key_id), owner(k.key_id), tier(k.key_id), view.count(k.connections),
                        view.duration(k.connection_seconds), view.count(k.events_delivered),
                        view.size(k.bytes_sent), view.refusals(k))
    console.print(per_key)
