"""What `--help` shows a person, and what a mistake on the command line looks like.

Every help screen names values with words a person reads (ICAO, FILE, URL, SECONDS) and shows
nothing for flags, never a type tag like `<bool>` or `<list[str]>`. A usage mistake (an unknown
option, a value of the wrong kind, a missing option) is one `swimctl: error:` line, not a
usage banner and a box, and exits with status 2.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from swimctl.cli.app import app
from tests.test_generated_docs import gen_docs

SWIMCTL = [sys.executable, "-m", "swimctl"]
TYPE_TAG = re.compile(r"<(bool|str|int|float|text|list\[[^\]]*\]|[a-z]+ range|path)>")
READABLE = re.compile(r"^[A-Z][A-Z0-9_]*([=,|][A-Z0-9_]+)*$")


GEN = gen_docs  # the click command tree, as the man page sees it
COMMANDS = [node.path[1:] for node in GEN.walk(GEN.command_tree())]


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "swimctl")
def test_help_shows_no_type_tags(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    tags = TYPE_TAG.findall(result.output)
    assert not tags, f"`swimctl {' '.join(path)} --help` shows type tags {tags}"


def test_every_value_has_a_readable_metavar_and_flags_have_none() -> None:
    wrong = []
    for node in GEN.walk(GEN.command_tree()):
        for param in GEN.params(node):
            shown = param.display_type_rich(node.ctx)
            if getattr(param, "is_flag", False):
                if shown:
                    wrong.append(f"{node.name} {param.opts}: flag shows {shown!r}")
            elif param.param_type_name == "argument":
                if not (param.metavar and READABLE.match(param.metavar)):
                    wrong.append(f"{node.name} {param.name}: metavar {param.metavar!r}")
            elif not (shown and READABLE.match(shown)):
                wrong.append(f"{node.name} {param.opts}: shows {shown!r}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["serve", "--port", "notaport"], "'--port'"),
        (["serve", "--no-such-option"], "--no-such-option"),
        (["keys", "create"], "'--tier'"),
        (["tail", "--count", "3"], "--count"),
        (["no-such-command"], "no-such-command"),
    ],
)
def test_usage_mistakes_are_one_line(args: list[str], needle: str) -> None:
    out = subprocess.run([*SWIMCTL, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("swimctl: error: "), out.stderr
    assert needle in lines[0] and "--help" in lines[0]
    assert out.stdout == ""
