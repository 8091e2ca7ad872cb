#!/usr/bin/env sh
# Register the ODBC drivers the key store tests use, when the Debian packages are installed but
# the driver names are missing from odbcinst.ini (e.g. the ini was replaced or unixodbc was
# installed after the drivers). Idempotent. As root it writes the system odbcinst.ini; otherwise
# it writes ~/.odbcinst.ini, which unixODBC reads as well.
#   PostgreSQL Unicode  <- odbc-postgresql (psqlodbcw.so)
#   MariaDB Unicode     <- odbc-mariadb (libmaodbc.so)
#   SQLite3             <- libsqliteodbc (libsqlite3odbc.so)
#   FreeTDS             <- tdsodbc (libtdsodbc.so), for SQL Server
set -eu

if ! command -v odbcinst >/dev/null 2>&1; then
  echo "odbc_setup: odbcinst not found; install unixodbc (apt-get install unixodbc)" >&2
  exit 1
fi

find_lib() {
  for dir in /usr/lib/x86_64-linux-gnu/odbc /usr/lib/aarch64-linux-gnu/odbc /usr/lib/*/odbc \
             /usr/lib/odbc /usr/local/lib /usr/lib64; do
    if [ -e "$dir/$1" ]; then echo "$dir/$1"; return 0; fi
  done
  return 1
}

register() {  # name library description
  if odbcinst -q -d -n "$1" >/dev/null 2>&1; then
    echo "odbc_setup: driver '$1' already registered"
    return 0
  fi
  if ! lib=$(find_lib "$2"); then
    echo "odbc_setup: driver '$1' not installed ($2 not found); skipping" >&2
    return 0
  fi
  if [ "$(id -u)" = 0 ]; then
    tmp=$(mktemp)
    printf '[%s]\nDescription=%s\nDriver=%s\nUsageCount=1\n' "$1" "$3" "$lib" >"$tmp"
    odbcinst -i -d -f "$tmp" >/dev/null
    rm -f "$tmp"
    where="system odbcinst.ini"
  else
    printf '\n[%s]\nDescription=%s\nDriver=%s\n' "$1" "$3" "$lib" >>"$HOME/.odbcinst.ini"
    where="$HOME/.odbcinst.ini"
  fi
  echo "odbc_setup: registered driver '$1' -> $lib ($where)"
}

register "PostgreSQL Unicode" psqlodbcw.so "PostgreSQL ODBC driver (Unicode version)"
register "MariaDB Unicode" libmaodbc.so "MariaDB Connector/ODBC (Unicode)"
register "SQLite3" libsqlite3odbc.so "SQLite3 ODBC Driver"
register "FreeTDS" libtdsodbc.so "TDS driver (Sybase/MS SQL)"
