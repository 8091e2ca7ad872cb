"""The completions and the man page are generated from the CLI; the committed copies must match.

Also: every option of every command can be set from a SWIM_* environment variable, except the
ones where that makes no sense (help, version, completion, output-format flags) and a
documented allow-list (now empty) of options that still lack one.
"""

from __future__ import annotations

import importlib.util
import os
import re
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


def test_deploy_files_use_real_options_and_env_vars() -> None:
    """The unit and docs/deploy.md name only SWIM_* vars and serve options that exist."""
    unit = (ROOT / "deploy" / "swimctl.service").read_text(encoding="utf-8")
    doc = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    known_env = _cli_envvars()
    for source, text in (("deploy/swimctl.service", unit), ("docs/deploy.md", doc)):
        named = set(re.findall(r"\bSWIM_[A-Z_]+\b", text)) - {"SWIM_TEST_FRESH_VENV"}
        unknown = sorted(named - known_env)
        assert not unknown, f"{source} names env vars the CLI does not read: {unknown}"
    [exec_start] = [ln for ln in unit.splitlines() if ln.startswith("ExecStart=")]
    assert exec_start.split("=", 1)[1].split()[:2] == ["/opt/swimctl/bin/swimctl", "serve"]
    used = {tok for tok in exec_start.split() if tok.startswith("--")}
    assert used <= _serve_options(), sorted(used - _serve_options())
    assert "deploy/swimctl.service" in doc and "deploy/nginx.conf" in doc
