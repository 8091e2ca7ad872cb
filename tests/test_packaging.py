"""The wheel ships the code, the data files and the `swimctl` console script.

The wheel is built from a copy of the project in a temp dir (so no build/ or egg-info lands in
the working tree) with `python -m pip wheel . --no-deps`; building takes ~10 s and runs in the
normal suite. Installing it into a fresh venv and running `swimctl --version` needs the runtime
dependencies from an index, so it runs with CI set (or SWIM_TEST_FRESH_VENV=1).
"""

from __future__ import annotations

import configparser
import email
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import swimctl

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "swimctl" / "data"
REQUIRED_DATA = (
    "swimctl/data/airports.csv.gz",
    "swimctl/data/boundaries.json.gz",
    "swimctl/data/LICENSES.md",
)
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", "*.egg-info")


def _source_files(top: Path) -> list[str]:
    """Files under top (relative to ROOT, posix), as they should appear in the wheel."""
    return sorted(
        p.relative_to(ROOT).as_posix()
        for p in top.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"}
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("packaging")
    src = work / "src"
    src.mkdir()
    shutil.copytree(ROOT / "swimctl", src / "swimctl", ignore=_IGNORE)
    for name in ("pyproject.toml", "README.md", "LICENSE", "LICENSE.md", "MANIFEST.in"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, src / name)
    out = work / "dist"
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", str(out)],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert run.returncode == 0, f"pip wheel failed:\n{run.stdout}\n{run.stderr}"
    wheels = sorted(out.glob("swimctl-*.whl"))
    assert len(wheels) == 1, wheels
    yield wheels[0]


def _names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def _dist_info(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as zf:
        [path] = [n for n in zf.namelist() if n.endswith(f".dist-info/{name}")]
        return zf.read(path).decode("utf-8")


def test_wheel_name_and_version(wheel: Path) -> None:
    assert wheel.name.startswith(f"swimctl-{swimctl.__version__}-")
    assert wheel.name.endswith("-py3-none-any.whl")
    meta = email.message_from_string(_dist_info(wheel, "METADATA"))
    assert meta["Name"] == "swimctl"
    assert meta["Version"] == swimctl.__version__
    assert meta["Requires-Python"] == ">=3.11"
    requires = {
        r.split(">")[0].split("=")[0].split(";")[0].strip().lower()
        for r in meta.get_all("Requires-Dist") or []
    }
    assert {"trio", "trio-websocket", "typer", "platformdirs"} <= requires


@pytest.mark.parametrize("path", REQUIRED_DATA)
def test_required_data_files_are_shipped(wheel: Path, path: str) -> None:
    assert (ROOT / path).is_file(), f"{path} missing from the source tree"
    assert path in _names(wheel)


def test_every_data_file_is_shipped(wheel: Path) -> None:
    """Everything under swimctl/data/ — including the traffic table — ends up in the wheel."""
    expected = _source_files(DATA)
    assert expected, "swimctl/data/ is empty"
    missing = sorted(set(expected) - _names(wheel))
    assert not missing, f"data files not in the wheel (check package-data): {missing}"


def test_data_files_are_intact(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        for path in REQUIRED_DATA:
            assert zf.read(path) == (ROOT / path).read_bytes(), path


def test_every_module_is_shipped(wheel: Path) -> None:
    expected = [p for p in _source_files(ROOT / "swimctl") if p.endswith(".py")]
    missing = sorted(set(expected) - _names(wheel))
    assert not missing, f"modules not in the wheel (a package without __init__.py?): {missing}"


def test_no_tests_or_tooling_in_the_wheel(wheel: Path) -> None:
    stray = sorted(
        n for n in _names(wheel) if n.split("/")[0] in {"tests", "bench", "scripts", "notes"}
    )
    assert not stray, stray


def test_console_script_entry_point(wheel: Path) -> None:
    entry_points = configparser.ConfigParser()
    entry_points.read_string(_dist_info(wheel, "entry_points.txt"))
    assert entry_points["console_scripts"]["swimctl"].strip() == "swimctl.cli.app:main"
    from swimctl.cli import app as app_module

    assert callable(app_module.main)


@pytest.mark.skipif(
    os.environ.get("SWIM_TEST_FRESH_VENV") != "1" and not os.environ.get("CI"),
    reason="installs the wheel and its dependencies into a new venv; runs with CI or "
    "SWIM_TEST_FRESH_VENV=1",
)
def test_fresh_venv_install_runs(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    install = subprocess.run(
        [str(bindir / "python"), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert install.returncode == 0, f"{install.stdout}\n{install.stderr}"
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith(("SWIM_", "PYTHON"))}
    version = subprocess.run(
        [str(bindir / "swimctl"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env,
        cwd=tmp_path,  # not the checkout: the installed package must be the one imported
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"swimctl {swimctl.__version__}"
    # The data files are found through the installed package, not the source tree.
    probe = subprocess.run(
        [
            str(bindir / "python"),
            "-c",
            "import importlib.resources as r, swimctl; "
            "d = r.files('swimctl') / 'data'; "
            "print(all((d / n).is_file() for n in "
            "('airports.csv.gz', 'boundaries.json.gz', 'LICENSES.md')), swimctl.__file__)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env,
        cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    ok, location = probe.stdout.split()
    assert ok == "True"
    assert Path(location).resolve().is_relative_to(venv.resolve())
