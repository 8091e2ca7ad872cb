#!/usr/bin/env bash
# The whole test suite on a fresh machine, in its own virtual environment (.venv here).
#
# Says in one line what it is about to install, then installs only what is missing:
#   - Debian packages, when running as root with apt-get: python3-venv if `python3 -m venv`
#     cannot work, the ODBC drivers the key-store tests use, tmux (the live-view test) and
#     redis-server (for the multi-hub work) when no Redis answers on 127.0.0.1:6379;
#   - Python packages: swimctl with its [test] extra, editable, into .venv (again only when
#     pyproject.toml changed since the last install).
# Then starts Redis if none answers, runs ruff and mypy, and runs pytest (in two workers) with any
# arguments given.
# Nothing goes into the system's own Python. SWIM_TEST_PLAN_ONLY=1 prints the plan and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.swimctl-test-stamp
want_stamp=$(sha256sum pyproject.toml | cut -d' ' -f1)

redis_answers() {  # a PING on 127.0.0.1:6379 answered +PONG (bash's /dev/tcp: no client needed)
  local reply=""
  { exec 3<>/dev/tcp/127.0.0.1/6379; } 2>/dev/null || return 1
  printf 'PING\r\n' >&3
  read -r -t 2 reply <&3 || true
  exec 3<&- 3>&-
  [[ $reply == +PONG* ]]
}

need_apt=()
if [ ! -x "$VENV/bin/python" ] && ! "$PYTHON" -c 'import ensurepip' >/dev/null 2>&1; then
  need_apt+=(python3-venv)
fi
command -v odbcinst >/dev/null 2>&1 || need_apt+=(unixodbc)
ls /usr/lib/*/odbc/psqlodbcw.so >/dev/null 2>&1 || need_apt+=(odbc-postgresql)
ls /usr/lib/*/odbc/libmaodbc.so >/dev/null 2>&1 || need_apt+=(odbc-mariadb)
command -v tmux >/dev/null 2>&1 || need_apt+=(tmux)
start_redis=no
if ! redis_answers; then
  start_redis=yes
  command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
fi
can_apt=no
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then can_apt=yes; fi

need_pip=no
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want_stamp" ]; then
  need_pip=yes
fi

plan=()
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ $can_apt = yes ]; then
    plan+=("Debian packages ${need_apt[*]} (apt-get)")
  else
    plan+=("nothing from Debian (not root: ${need_apt[*]} missing, their tests may fail)")
  fi
fi
if [ $need_pip = yes ]; then plan+=("swimctl[test] and its dependencies (pip, into $VENV)"); fi
if [ $start_redis = yes ]; then plan+=("then start redis-server on 127.0.0.1:6379"); fi
if [ ${#plan[@]} -eq 0 ]; then
  echo "test.sh: nothing to install ($VENV is up to date, Redis answers)"
else
  summary=$(printf '%s; ' "${plan[@]}")
  echo "test.sh: will install ${summary%; }"
fi
[ "${SWIM_TEST_PLAN_ONLY:-}" = 1 ] && exit 0

if [ ${#need_apt[@]} -gt 0 ] && [ $can_apt = yes ]; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Debian's driver packages register themselves; make sure the names the tests use exist.
if command -v odbcinst >/dev/null 2>&1; then
  sh scripts/odbc_setup.sh >/dev/null || echo "test.sh: warning: ODBC driver registration failed" >&2
fi

if [ $start_redis = yes ] && command -v redis-server >/dev/null 2>&1; then
  # As CI machines start it: loopback only, nothing kept on disk.
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --logfile "${TMPDIR:-/tmp}/swimctl-test-redis.log" >/dev/null
  for _ in $(seq 50); do redis_answers && break; sleep 0.1; done
  redis_answers || echo "test.sh: warning: redis-server did not answer on 127.0.0.1:6379" >&2
fi

if [ $need_pip = yes ]; then
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'
  echo "$want_stamp" >"$STAMP"
fi

"$VENV/bin/python" -m ruff check .
"$VENV/bin/python" -m mypy
# Two workers (SWIM_TEST_WORKERS): most tests wait on real hubs, databases and timers rather than
# the CPU, so two halve the wall time on two cores; worksteal evens out the long tests.
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider -n "${SWIM_TEST_WORKERS:-2}" \
  --dist worksteal --cov --cov-report=term:skip-covered "$@"
