"""Options and helpers shared by the subcommands."""

from __future__ import annotations

from typing import NoReturn

import typer

from swimctl.keystore import default_db_url

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
