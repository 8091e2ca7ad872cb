"""The single-file `swimctl` (scripts/build-binary.sh) works on its own.

Built (or found up to date: the script skips an unchanged build), copied into an empty
directory and run there with a bare PATH (/usr/bin:/bin: no venv, no pyenv), no PYTHONPATH and
no source tree in sight: `--version`, `keys create`, and `serve --demo` with the `tail --json`
the demo prints, which must receive an event. Runs with CI set (the build takes about a
minute on a fresh clone); skipped without it.
"""

from __future__ import annotations

import fcntl
import queue
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import IO

import orjson
import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "build-binary.sh"

pytestmark = pytest.mark.skipif(not IN_CI, reason="builds the binary (~1 min): runs with CI set")


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The suite's workers may each reach this module: one builds, the other waits and then
    # finds the build up to date (the script's own check), instead of both writing build/.
    (ROOT / "build").mkdir(exist_ok=True)
    with (ROOT / "build" / ".binary-test.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=600,
                               cwd=ROOT)
    assert build.returncode == 0, build.stdout + build.stderr
    assert "build-binary: " in build.stdout
    home = tmp_path_factory.mktemp("elsewhere")
    copy = home / "swimctl"
    shutil.copy2(ROOT / "dist" / "swimctl", copy)
    return copy


def bare_env(home: Path) -> dict[str, str]:
    """What a machine without Python tooling gives a program: no venv, no PYTHON* settings."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
            "TMPDIR": str(home)}


def run(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["./swimctl", *args], capture_output=True, text=True, timeout=60,
                          cwd=binary.parent, env=bare_env(binary.parent))


def test_the_binary_stands_alone(binary: Path) -> None:
    assert not (binary.parent / "swimctl" / "__init__.py").exists()
    from swimctl import __version__

    version = run(binary, "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"swimctl {__version__}"
    created = run(binary, "keys", "create", "--tier", "developer", "--owner", "binary test",
                  "--db", f"sqlite:///{binary.parent}/keys.db", "--json")
    assert created.returncode == 0, created.stderr
    assert orjson.loads(created.stdout)["api_key"].startswith("swim_dev_")


class Lines:
    """A process's output line by line, with a timeout per line (a reader thread: select()
    cannot see what Python already buffered), so a silent process fails the test instead of
    hanging it."""

    def __init__(self, stream: IO[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.queue.put(line)
        self.queue.put("")

    def next(self, seconds: float) -> str:
        try:
            return self.queue.get(timeout=seconds)
        except queue.Empty:
            return ""


def test_the_binary_serves_the_demo_and_tails_it(binary: Path) -> None:
    env = bare_env(binary.parent)
    hub = subprocess.Popen(["./swimctl", "serve", "--demo", "--port", "0"], cwd=binary.parent,
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert hub.stdout is not None
        hub_lines = Lines(hub.stdout)
        banner = ""
        while "--airport KJFK" not in banner:
            line = hub_lines.next(60)
            assert line, f"no demo banner: {banner!r}"
            banner += line
        # The tail command the banner prints names this very binary, so it works as pasted.
        match = re.search(r"(\S+) tail --url (\S+) --key (\S+)", banner)
        assert match, banner
        assert Path(match.group(1)) == binary
        tail = subprocess.Popen(
            [match.group(1), "tail", "--json", "--events", "*", "--url", match.group(2),
             "--key", match.group(3)], cwd=binary.parent, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        try:
            assert tail.stdout is not None
            first = Lines(tail.stdout).next(60)
        finally:
            tail.send_signal(signal.SIGINT)
            tail_code = tail.wait(30)
        assert first, "tail --json received nothing from the demo"
        event = orjson.loads(first)
        assert "." in event["type"] and "timestamp" in event, first
        assert tail_code == 0
    finally:
        hub.send_signal(signal.SIGINT)
        code = hub.wait(30)
    assert code == 0
