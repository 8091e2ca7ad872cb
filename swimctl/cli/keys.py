"""`swimctl keys`: manage API keys in the key database."""

from __future__ import annotations

import typer

from swimctl.cli.common import DbOption, fail, resolve_db
from swimctl.keystore import TIERS, KeyStore, KeyStoreError
from swimctl.model import dumps

app = typer.Typer(help="Manage API keys (stored as SHA-256 hashes).", no_args_is_help=True)


@app.command()
def create(
    tier: str = typer.Option(..., "--tier", help=f"One of: {', '.join(TIERS)}."),
    owner: str = typer.Option(..., "--owner", help="Who the key is for."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object instead of text."),
    db: str = DbOption,
) -> None:
    """Create a key and print it once; only its hash is stored."""
    if tier not in TIERS:
        fail(f"unknown tier {tier!r}; choose from {', '.join(TIERS)}")
    try:
        api_key, record = KeyStore(resolve_db(db)).create(tier, owner)
    except KeyStoreError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(dumps({"api_key": api_key, "id": record.id, "tier": record.tier,
                          "owner_name": record.owner_name}).decode())
    else:
        typer.echo(api_key)
        typer.echo(f"id {record.id}, tier {record.tier}, owner {record.owner_name} "
                   "(shown once: store it now)", err=True)
