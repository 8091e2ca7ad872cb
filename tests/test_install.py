"""The README's first command works as written with Debian's own Python.

Debian 12 and recent Ubuntu refuse `python3 -m pip install .` into the system Python
(`externally-managed-environment`, PEP 668), which the README's first command once was. The
command it shows now makes its own venv. Here it runs, as a new user would paste it, in a copy
of the source tree with `/usr/bin/python3` first on PATH (not the pyenv one CI runs under),
until the demo hub prints its banner; then the `tail` command the banner prints receives an
event, and Ctrl-C stops the hub with status 0. Runs with CI set (it installs the dependencies
into a new venv: about half a minute); skipped without it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import orjson
import pytest

from tests.conftest import IN_CI
from tests.test_binary import Lines

ROOT = Path(__file__).resolve().parent.parent
DEBIAN_PYTHON = Path("/usr/bin/python3")
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "__pycache__",
                                     "*.egg-info", ".pytest_cache", ".ruff_cache")

pytestmark = pytest.mark.skipif(not IN_CI, reason="installs into a new venv: runs with CI set")


def readme_first_command() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Start here")
    block = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert block, "the README's Start here section has no sh block"
    return block.group(1).strip()


def debian_env() -> dict[str, str]:
    """The user's environment with Debian's python3 first on PATH and no venv active."""
    env = {k: v for k, v in os.environ.items()
           if k != "VIRTUAL_ENV" and not k.startswith(("PYTHON", "PYENV", "SWIM_"))}
    env["PATH"] = "/usr/bin:/bin"
    return env


def test_the_old_command_is_refused_on_debian_python() -> None:
    """Why the README changed: Debian's python3 refuses a system-wide pip install."""
    if not DEBIAN_PYTHON.exists():
        pytest.fail("this test needs Debian's /usr/bin/python3 (python3 and python3-pip)")
    out = subprocess.run([str(DEBIAN_PYTHON), "-m", "pip", "install", "--dry-run", "."],
                         capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env=debian_env())
    assert out.returncode != 0 and "externally-managed-environment" in out.stderr, out.stderr


def test_readme_first_command_runs_the_demo_with_debian_python(tmp_path: Path) -> None:
    if not DEBIAN_PYTHON.exists():
        pytest.fail("this test needs Debian's /usr/bin/python3 (and python3-venv)")
    command = readme_first_command()
    assert "serve --demo" in command and "pip install" in command, command
    src = tmp_path / "swimctl-src"
    shutil.copytree(ROOT, src, ignore=COPY_IGNORE)
    env = debian_env()
    env["SWIM_PORT"] = "0"  # the command as written, on a free port (8090 may be taken here)
    hub = subprocess.Popen(["bash", "-c", command], cwd=src, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert hub.stdout is not None
        lines = Lines(hub.stdout)
        seen = ""
        while "--airport KJFK" not in seen:
            line = lines.next(300)
            assert line, f"no demo banner; the command printed:\n{seen[-3000:]}"
            seen += line
        cfg = (src / ".venv" / "pyvenv.cfg").read_text()
        assert re.search(r"^home = /usr/bin$", cfg, re.M), cfg  # Debian's python3 made it
        match = re.search(r"(\S+) tail --url (\S+) --key (\S+)", seen)
        assert match, seen
        assert match.group(1) == str(src / ".venv" / "bin" / "swimctl")
        tail = subprocess.Popen(
            [match.group(1), "tail", "--json", "--events", "*", "--url", match.group(2),
             "--key", match.group(3)], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        try:
            assert tail.stdout is not None
            first = Lines(tail.stdout).next(60)
        finally:
            tail.send_signal(signal.SIGINT)
            tail.wait(30)
        assert first, "the printed tail command received nothing"
        assert "." in orjson.loads(first)["type"]
    finally:
        os.killpg(hub.pid, signal.SIGINT)
        code = hub.wait(60)
    assert code == 0
