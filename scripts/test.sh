#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need, then runs them.
# ODBC drivers come from Debian's packages (installed only when missing and running as root);
# the Python packages go into the current interpreter's environment.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v odbcinst >/dev/null 2>&1 || need_apt+=(unixodbc)
[ -e /usr/lib/x86_64-linux-gnu/odbc/psqlodbcw.so ] || [ -e /usr/lib/aarch64-linux-gnu/odbc/psqlodbcw.so ] || need_apt+=(odbc-postgresql)
ls /usr/lib/*/odbc/libmaodbc.so >/dev/null 2>&1 || need_apt+=(odbc-mariadb)
command -v tmux >/dev/null 2>&1 || need_apt+=(tmux)
if [ ${#need_apt[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${need_apt[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Debian's driver packages register themselves; make sure the names the tests use exist.
if command -v odbcinst >/dev/null 2>&1; then
  sh scripts/odbc_setup.sh >/dev/null || echo "warning: ODBC driver registration failed" >&2
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
python3 -m ruff check .
python3 -m mypy
exec python3 -m pytest -q --cov --cov-report=term:skip-covered "$@"
