"""`swimctl serve` (being written)."""

import typer


def serve() -> None:
    """Run the hub."""
    raise typer.Exit(1)
