"""The completions and the man page are generated from the CLI; the committed copies must match.

Also: every option of every command can be set from a SWIM_* environment variable, except the
ones where that makes no sense (help, version, completion, output-format flags) and a
documented allow-list (now empty) of options that still lack one.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gen_docs.py"
# What the `swimctl` console script runs; argv[0] decides the prog name and so the complete var.
CONSOLE_SCRIPT = "import sys; sys.argv[0] = 'swimctl'; from swimctl.cli.app import main; main()"
REGENERATE = "run `python scripts/gen_docs.py` and commit the result"


def _load_gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_docs", module)
    spec.loader.exec_module(module)
    return module


gen_docs = _load_gen_docs()


# ----------------------------------------------------------------------------- staleness


def test_committed_files_are_up_to_date(tmp_path: Path) -> None:
    written = gen_docs.write(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in written] == list(gen_docs.OUTPUTS)
    stale = []
    for rel in gen_docs.OUTPUTS:
        committed = ROOT / rel
        fresh = (tmp_path / rel).read_text(encoding="utf-8")
        if not committed.is_file() or committed.read_text(encoding="utf-8") != fresh:
            stale.append(rel)
    assert not stale, f"generated files are stale: {', '.join(stale)}; {REGENERATE}"


def test_generation_is_deterministic() -> None:
    assert gen_docs.generate() == gen_docs.generate()


def test_script_runs_and_check_mode(tmp_path: Path) -> None:
    # Different hash seeds: nothing may depend on set or dict-of-hash ordering.
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONHASHSEED": "1"},
    )
    assert run.returncode == 0, run.stderr
    check = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONHASHSEED": "2"},
    )
    assert check.returncode == 0, check.stderr
    (tmp_path / "man" / "swimctl.1").write_text("stale\n")
    check = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 1
    assert "man/swimctl.1" in check.stderr and "gen_docs.py" in check.stderr


# ----------------------------------------------------------------------------- content


@pytest.mark.parametrize("shell", gen_docs.SHELLS)
def test_completion_scripts_call_back_into_swimctl(shell: str) -> None:
    text = gen_docs.completion_script(shell)
    assert "_SWIMCTL_COMPLETE=complete_" + shell in text
    assert "swimctl" in text
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_bash_completion_round_trip() -> None:
    """What the bash script does at completion time: call swimctl with the complete var set."""
    env = {
        "_SWIMCTL_COMPLETE": "complete_bash",
        "COMP_WORDS": "swimctl serve --hea",
        "COMP_CWORD": "2",
    }
    run = subprocess.run(
        [sys.executable, "-c", CONSOLE_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        env={**_base_env(), **env},
    )
    assert "--heartbeat" in run.stdout.split(), (run.stdout, run.stderr)


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SWIM_")}


def test_man_page_covers_every_command_and_option() -> None:
    man = gen_docs.generate()["man/swimctl.1"]
    for section in (
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "ENVIRONMENT",
        "FILES",
        "EXIT STATUS",
        "SEE ALSO",
    ):
        assert f"\n.SH {section}\n" in man, section
    root = gen_docs.command_tree()
    for node in gen_docs.walk(root):
        if len(node.path) > 1:
            assert f'.SH "{gen_docs.roff(node.name.upper())}"' in man, node.name
        for param in gen_docs.params(node):
            if gen_docs.is_option(param):
                for opt in param.opts:
                    assert gen_docs.bold(opt) in man, (node.name, opt)
            for env in gen_docs.envvars(param):
                assert gen_docs.bold(env) in man, env


# ----------------------------------------------------------------------------- env vars

#: Options where an environment variable makes no sense: they ask for help, the version or
#: shell-completion setup, or choose the output format of one invocation.
NO_ENV_BY_DESIGN: frozenset[str] = frozenset(
    {"--help", "--version", "--install-completion", "--show-completion", "--json"}
)

#: Options that still lack a SWIM_* env var: none since issue 8. Keep it empty; an entry needs
#: a reason. The test fails both when an option is missing from it and when an entry is obsolete.
ALLOWED_WITHOUT_ENV: frozenset[tuple[str, str]] = frozenset()


def _options_without_swim_env() -> tuple[set[tuple[str, str]], list[str]]:
    missing: set[tuple[str, str]] = set()
    wrong_prefix: list[str] = []
    for node in gen_docs.walk(gen_docs.command_tree()):
        for param in gen_docs.params(node):
            if not gen_docs.is_option(param):
                continue
            names = {*param.opts, *getattr(param, "secondary_opts", [])}
            env = gen_docs.envvars(param)
            if names & NO_ENV_BY_DESIGN:
                continue
            if not env:
                missing.add((node.name, gen_docs.primary_name(param)))
            wrong_prefix += [
                f"{node.name} {gen_docs.primary_name(param)}: {e}"
                for e in env
                if not e.startswith("SWIM_")
            ]
    return missing, wrong_prefix


def test_every_option_has_a_swim_env_var() -> None:
    missing, wrong_prefix = _options_without_swim_env()
    assert not wrong_prefix, f"env vars must start with SWIM_: {wrong_prefix}"
    new = sorted(missing - ALLOWED_WITHOUT_ENV)
    assert not new, (
        f"options without a SWIM_* env var: {new}; add envvar='SWIM_...' to the option "
        "(or, if one makes no sense, to ALLOWED_WITHOUT_ENV with a reason)"
    )


def test_env_allow_list_has_no_obsolete_entries() -> None:
    missing, _ = _options_without_swim_env()
    obsolete = sorted(ALLOWED_WITHOUT_ENV - missing)
    assert not obsolete, (
        f"these options have an env var now (or are gone): {obsolete}; "
        "remove them from ALLOWED_WITHOUT_ENV in tests/test_generated_docs.py"
    )


# ----------------------------------------------------------------------------- deploy files


def _cli_envvars() -> set[str]:
    return {
        env
        for node in gen_docs.walk(gen_docs.command_tree())
        for param in gen_docs.params(node)
        for env in gen_docs.envvars(param)
    }


def _serve_options() -> set[str]:
    [serve] = [n for n in gen_docs.walk(gen_docs.command_tree()) if n.path == ("swimctl", "serve")]
    return {
        name
        for p in gen_docs.params(serve)
        if gen_docs.is_option(p)
        for name in gen_docs.option_names(p)
    }


UNITS = ("deploy/swimctl.service", "deploy/swimctl@.service")


def test_deploy_files_use_real_options_and_env_vars() -> None:
    """The units and docs/deploy.md name only SWIM_* vars and serve options that exist."""
    doc = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    units = {rel: (ROOT / rel).read_text(encoding="utf-8") for rel in UNITS}
    known_env = _cli_envvars()
    for source, text in (*units.items(), ("docs/deploy.md", doc)):
        named = set(re.findall(r"\bSWIM_[A-Z_]+\b", text)) - {"SWIM_TEST_FRESH_VENV"}
        unknown = sorted(named - known_env)
        assert not unknown, f"{source} names env vars the CLI does not read: {unknown}"
    for source, unit in units.items():
        [exec_start] = [ln for ln in unit.splitlines() if ln.startswith("ExecStart=")]
        argv = exec_start.split("=", 1)[1].split()
        assert argv[:2] == ["/opt/swimctl/bin/swimctl", "serve"], source
        used = {tok for tok in argv if tok.startswith("--")}
        assert used <= _serve_options(), (source, sorted(used - _serve_options()))
        assert source in doc, f"docs/deploy.md does not mention {source}"
    assert "deploy/nginx.conf" in doc


def _unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            name, value = line.split("=", 1)
            settings.setdefault(name.strip(), []).append(value.strip())
    return settings


def test_template_unit_matches_the_rolling_restart_recipe() -> None:
    """deploy/swimctl@.service: on a broker, a stop timeout above the 20 s a drain may take,
    and the ports nginx.conf and the restart loop in docs/deploy.md expect (809N, 910N)."""
    unit = (ROOT / "deploy" / "swimctl@.service").read_text(encoding="utf-8")
    settings = _unit_settings(unit)
    env = dict(value.split("=", 1) for value in settings["Environment"])
    assert env["SWIM_BROKER"].startswith("redis://")
    assert settings["KillSignal"] == ["SIGTERM"]
    assert float(settings["TimeoutStopSec"][0]) > 20  # the drain's worst case (service.py)
    [exec_start] = settings["ExecStart"]
    argv = exec_start.split()
    assert argv[argv.index("--port") + 1] == "809%i"
    assert argv[argv.index("--metrics-port") + 1] == "910%i"
    assert "--feed" in argv
    nginx = (ROOT / "deploy" / "nginx.conf").read_text(encoding="utf-8")
    for n in (1, 2, 3):
        assert f"server 127.0.0.1:809{n} " in nginx, f"nginx.conf lacks hub {n} (809{n})"
    doc = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert 'systemctl restart "swimctl@$i"' in doc
    assert '"http://127.0.0.1:910$i/healthz"' in doc


def _systemd_analyze_version() -> int | None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return None
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.match(r"systemd (\d+)", out.stdout)
    return int(found.group(1)) if found else None


@pytest.mark.parametrize("rel", UNITS)
def test_units_pass_systemd_analyze_verify(rel: str, tmp_path: Path) -> None:
    """A lint: `systemd-analyze verify` finds no unknown key, bad value or bad specifier.
    The units use settings of systemd 247+ (ProtectProc=), so an older one would warn about
    keys the file has right; it runs on 250+. It needs no running systemd, but it does check
    that the executables exist, so /opt/swimctl/bin/swimctl becomes a stub here."""
    version = _systemd_analyze_version()
    if version is None or version < 250:
        pytest.skip(f"systemd-analyze 250+ not available (found {version})")
    stub = tmp_path / "bin" / "swimctl"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    text = (ROOT / rel).read_text(encoding="utf-8")
    unit = tmp_path / Path(rel).name
    unit.write_text(text.replace("/opt/swimctl/bin/swimctl", str(stub)), encoding="utf-8")
    run = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    # It exits 0 on mere warnings (an unknown key is "ignoring"): any line about the file fails.
    about_unit = [ln for ln in (run.stdout + run.stderr).splitlines() if unit.name in ln]
    assert run.returncode == 0 and not about_unit, run.stdout + run.stderr
