#!/usr/bin/env bash
# Build dist/swimctl: one executable file holding Python, swimctl, its data files and every
# runtime dependency (PyInstaller --onefile). It runs on a Linux machine of the same
# architecture with a glibc at least as new as the build machine's; nothing else is needed
# there (no Python, no venv). Key databases: SQLite (ODBC needs the pip install with the
# [odbc] extra and the system's drivers, so the binary leaves pyodbc out).
#
#   scripts/build-binary.sh            # build, or say it is up to date
#   scripts/build-binary.sh --force    # build even when the sources are unchanged
#
# The tools live in build/binary-venv (made on first use); the build is skipped when the
# sources, pyproject.toml and this script are unchanged since the last one (dist/swimctl.sha256
# records their hash). Prints the file's size and the time taken.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
PYINSTALLER_SPEC="pyinstaller>=6.10,<7"
TOOLS=build/binary-venv
OUT=dist/swimctl
STAMP=dist/swimctl.sha256
started=$(date +%s)

sources_hash() {
  { find swimctl -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | sort -z \
      | xargs -0 sha256sum; sha256sum pyproject.toml scripts/build-binary.sh; } | sha256sum \
    | cut -d' ' -f1
}

want=$(sources_hash)
if [ "${1:-}" != "--force" ] && [ -x "$OUT" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
  echo "build-binary: $OUT is up to date ($(du -h "$OUT" | cut -f1)); --force rebuilds it"
  exit 0
fi

if [ ! -x "$TOOLS/bin/python" ]; then
  echo "build-binary: making $TOOLS (PyInstaller and swimctl's dependencies)"
  "$PYTHON" -m venv "$TOOLS"
fi
# Not editable: the binary must hold a copy of the package, not a path to this checkout.
"$TOOLS/bin/python" -m pip install -q --disable-pip-version-check "$PYINSTALLER_SPEC" .

work=$(mktemp -d "${TMPDIR:-/tmp}/swimctl-binary.XXXXXX")
trap 'rm -rf "$work"' EXIT
cat >"$work/swimctl_main.py" <<'EOF'
from swimctl.cli.app import main

main()
EOF
# mypyc-compiled packages (coredis among them) import a top-level helper module named by a
# hash, which PyInstaller's analysis cannot see: name each one found in the tools venv.
mypyc_helpers=()
while IFS= read -r name; do
  mypyc_helpers+=(--hidden-import "$name")
done < <("$TOOLS/bin/python" - <<'PY'
import pathlib, sysconfig
for path in pathlib.Path(sysconfig.get_paths()["platlib"]).glob("*__mypyc*.so"):
    print(path.name.split(".", 1)[0])
PY
)
# --collect-submodules: the CLI imports some modules only when a command needs them.
"$TOOLS/bin/python" -m PyInstaller --onefile --name swimctl --noconfirm --clean \
  --log-level WARN --collect-data swimctl --collect-submodules swimctl \
  --collect-submodules coredis "${mypyc_helpers[@]}" \
  --exclude-module pyodbc --exclude-module tkinter \
  --distpath "$work/dist" --workpath "$work/build" --specpath "$work" \
  "$work/swimctl_main.py" >"$work/pyinstaller.log" 2>&1 || {
  cat "$work/pyinstaller.log" >&2
  echo "build-binary: PyInstaller failed" >&2
  exit 1
}
mkdir -p dist
mv -f "$work/dist/swimctl" "$OUT"
echo "$want" >"$STAMP"
size=$(du -h "$OUT" | cut -f1)
echo "build-binary: built $OUT ($size) in $(( $(date +%s) - started )) s"
