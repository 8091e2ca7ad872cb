"""scripts/test.sh says what it will install, in one line, before doing anything."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_test_sh_says_in_one_line_what_it_will_install(tmp_path: Path) -> None:
    """On a checkout without .venv: the plan names pip and .venv (and whatever Debian
    packages this machine lacks), and SWIM_TEST_PLAN_ONLY=1 stops there, creating nothing."""
    src = tmp_path / "src"
    (src / "scripts").mkdir(parents=True)
    for name in ("scripts/test.sh", "scripts/odbc_setup.sh", "pyproject.toml"):
        shutil.copy2(ROOT / name, src / name)
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["SWIM_TEST_PLAN_ONLY"] = "1"
    out = subprocess.run(["bash", "scripts/test.sh"], capture_output=True, text=True,
                         timeout=60, cwd=src, env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1, out.stdout
    assert lines[0].startswith("test.sh: will install ")
    assert "swimctl[test] and its dependencies (pip, into .venv)" in lines[0]
    assert not (src / ".venv").exists()


def test_the_scripts_parse() -> None:
    for name in ("test.sh", "build-binary.sh", "odbc_setup.sh"):
        shell = "sh" if name == "odbc_setup.sh" else "bash"
        out = subprocess.run([shell, "-n", str(ROOT / "scripts" / name)], capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 0, (name, out.stderr)
