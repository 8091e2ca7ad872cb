"""The layout keeps its promises: core/ is pure, and docs/architecture.md names real modules."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "swimctl"
# What a pure module may not reach, directly or through what it imports: the event loop,
# sockets, the network, databases and the shell around the core.
FORBIDDEN = ("trio", "trio_websocket", "socket", "ssl", "sqlite3", "pyodbc", "httpx",
             "coredis", "h11", "swimctl.hub", "swimctl.stream", "swimctl.keys.store",
             "swimctl.cli", "swimctl.client")


def core_modules() -> list[str]:
    return sorted("swimctl.core." + p.stem for p in (PACKAGE / "core").glob("*.py")
                  if p.stem != "__init__") + [
        "swimctl.core." + p.parent.name for p in (PACKAGE / "core").glob("*/__init__.py")]


def test_core_modules_import_nothing_with_io_directly() -> None:
    for path in (PACKAGE / "core").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                assert not name.startswith(FORBIDDEN), f"{path.name} imports {name}"


def test_core_modules_pull_in_no_io_at_all() -> None:
    """Importing every core module, in a fresh interpreter, loads none of the forbidden ones."""
    code = (
        "import sys\n"
        f"for name in {core_modules()!r}:\n"
        "    __import__(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}\n"
        f"             or m.startswith({FORBIDDEN!r}))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert out.stdout.strip() == "", out.stdout


def test_architecture_doc_names_only_modules_that_exist_and_every_module() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    start = doc.index("## Modules")
    table = doc[start:doc.index("\n## ", start + 1)]
    named = set(re.findall(r"`([a-z_]+(?:/[a-z_]+)*(?:\.py|/))`", table))
    assert named, "no module table found"
    for name in named:
        assert (PACKAGE / name).exists(), f"docs/architecture.md names {name}, which is gone"
    modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")}
    covered = {m for m in modules if m in named or any(
        n.endswith("/") and m.startswith(n) for n in named)}
    assert modules == covered, f"modules the doc does not describe: {sorted(modules - covered)}"
