"""The commands the docs show must work when pasted: docs/keys.md's are run, in order, on a
new database; and no command anywhere in the docs may carry a date that has already passed
(docs/keys.md once showed `--expires-at 2026-06-30T23:59:59Z`, which then failed)."""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
FENCE = re.compile(r"```(?:sh|console|bash)?\n(.*?)```", re.S)
ISO_DATE = re.compile(r"\b(\d{4}-\d{2}-\d{2})(?:T[\d:]+Z?)?")


def shell_commands(path: Path) -> list[str]:
    """Each command line of the document's code blocks (continuations joined, `$ ` prompts
    dropped), in order."""
    commands: list[str] = []
    for block in FENCE.findall(path.read_text(encoding="utf-8")):
        pending = ""
        for raw in block.splitlines():
            line = raw.removeprefix("$ ").rstrip()
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            line = pending + line
            pending = ""
            if line.strip():
                commands.append(line.strip())
    return commands


def swimctl_shim(directory: Path) -> Path:
    """A `swimctl` on PATH that runs this checkout, as the installed console script would."""
    shim = directory / "swimctl"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m swimctl "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    return shim


def test_every_keys_command_in_docs_keys_md_runs_in_order(tmp_path: Path) -> None:
    commands = [c for c in shell_commands(ROOT / "docs" / "keys.md")
                if c.startswith("swimctl keys ")]
    assert len(commands) >= 12, commands
    bindir = tmp_path / "bin"
    bindir.mkdir()
    swimctl_shim(bindir)
    env = dict(os.environ, SWIM_DB=f"sqlite:///{tmp_path}/keys.db", PYTHONPATH=str(ROOT),
               PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    outputs = []
    for command in commands:
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=60)
        assert done.returncode == 0, f"`{command}` failed:\n{done.stderr}"
        assert "Traceback" not in done.stderr
        outputs.append((command, done.stdout))
    revokes = [out for command, out in outputs if command.startswith("swimctl keys revoke 2")]
    assert revokes[0].startswith("revoked key 2"), revokes
    assert "was already revoked, at " in revokes[1], revokes


def test_no_command_in_the_docs_carries_a_date_in_the_past() -> None:
    today = dt.datetime.now(dt.UTC).date()
    stale = []
    for path in DOCS:
        for command in shell_commands(path):
            if "swimctl" not in command:
                continue
            code = command.split("#", 1)[0]  # a comment may name any date
            for day in ISO_DATE.findall(code):
                if dt.date.fromisoformat(day) <= today:
                    stale.append(f"{path.relative_to(ROOT)}: {command}")
    assert not stale, "commands that will fail as written:\n" + "\n".join(stale)
