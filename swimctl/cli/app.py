"""The root typer app. Subcommands live in their own modules and register here."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback

import typer
from typer import _click as click

from swimctl import __version__
from swimctl.cli import keys, record, replay, serve, sim, tail, tmi, top
from swimctl.cli.common import Command, Group

app = typer.Typer(
    name="swimctl",
    help="Real-time flight-event hub (SWIM) for VATSIM: serve, tail, top, keys, record, replay, "
    "tmi, sim.",
    no_args_is_help=True,
    cls=Group,
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
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit.",
        metavar="",
    ),
) -> None:
    """swimctl: the SWIM hub and its tools."""


app.command("serve", cls=Command)(serve.serve)
app.command("tail", cls=Command)(tail.tail)
app.command("top", cls=Command)(top.top)
app.add_typer(keys.app, name="keys", cls=Group)
app.command("replay", cls=Command)(replay.replay)
app.command("record", cls=Command)(record.record)
app.add_typer(tmi.app, name="tmi", cls=Group)
app.command("sim", cls=Command)(sim.sim)


def main() -> None:
    """The `swimctl` program: every mistake is one line on stderr, never a traceback.

    click's own usage errors (a bad number, an unknown option) become one line too, instead of
    a usage banner and a box; an error no command expected is one line naming it (the
    traceback only with SWIM_TRACEBACK=1, for a bug report)."""
    try:
        code = app(standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError:
        code = 2  # the help was printed when the error was made
    except click.exceptions.UsageError as exc:
        hint = f"; see `{exc.ctx.command_path} --help`" if exc.ctx is not None else ""
        _say(f"swimctl: error: {exc.format_message().rstrip('.')}{hint}")
        code = exc.exit_code
    except click.exceptions.ClickException as exc:
        _say(f"swimctl: error: {exc.format_message()}")
        code = exc.exit_code
    except typer.Abort:
        code = 130
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        _quiet_stdout()
        code = 0
    except Exception as exc:  # a bug: still one line for the user
        if os.environ.get("SWIM_TRACEBACK") == "1":
            traceback.print_exc()
        _say(f"swimctl: error: unexpected {type(exc).__name__}: {exc} "
             "(set SWIM_TRACEBACK=1 to see where, and please report it)")
        code = 70
    sys.exit(code if isinstance(code, int) else 0)


def _say(line: str) -> None:
    with contextlib.suppress(BrokenPipeError, ValueError):
        print(" ".join(line.split("\n")), file=sys.stderr, flush=True)


def _quiet_stdout() -> None:
    """The reader of our stdout went away (`| head`): exit quietly, like coreutils."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
