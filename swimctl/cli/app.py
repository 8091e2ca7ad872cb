"""The root typer app. Subcommands live in their own modules and register here."""

from __future__ import annotations

import typer

from swimctl import __version__
from swimctl.cli import keys, record, replay, serve, sim, tail, tmi

app = typer.Typer(
    name="swimctl",
    help="Real-time flight-event hub (SWIM) for VATSIM: serve, tail, keys, record, replay, tmi, "
    "sim.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"swimctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """swimctl: the SWIM hub and its tools."""


app.command("serve")(serve.serve)
app.command("tail")(tail.tail)
app.add_typer(keys.app, name="keys")
app.command("replay")(replay.replay)
app.command("record")(record.record)
app.add_typer(tmi.app, name="tmi")
app.command("sim")(sim.sim)


def main() -> None:
    app()
