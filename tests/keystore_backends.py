"""The key databases the key-store tests run against: SQLite (a file), and PostgreSQL and
MariaDB through their ODBC drivers.

Without `CI` an ODBC backend skips (with the reason) when pyodbc, the driver or the server is
missing; with `CI` set it fails instead, so a broken CI service can never pass silently.
Override the connection strings with SWIM_TEST_PG_ODBC / SWIM_TEST_MARIADB_ODBC.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import uuid
from pathlib import Path
from typing import Any, NoReturn

import attrs
import pytest

from swimctl.keys.records import TIERS
from swimctl.keys.store import usage_table_for

ODBC: dict[str, tuple[str, str]] = {
    "postgresql": (
        "PostgreSQL Unicode",
        os.environ.get(
            "SWIM_TEST_PG_ODBC",
            "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=5432;DATABASE=test;UID=postgres;",
        ),
    ),
    "mariadb": (
        "MariaDB Unicode",
        os.environ.get(
            "SWIM_TEST_MARIADB_ODBC",
            "DRIVER={MariaDB Unicode};SERVER=127.0.0.1;PORT=3306;DATABASE=test;UID=root;PWD=;",
        ),
    ),
}
PORTS = {"postgresql": "5432", "mariadb": "3306"}
SETUP_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "odbc_setup.sh"

# An older deployment's table: plain-text keys in a narrow column, no revoked_at.
LEGACY_DDL: dict[str, str] = {
    "sqlite": (
        "CREATE TABLE {t} (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "api_key VARCHAR({w}) UNIQUE, tier VARCHAR(16) NOT NULL, owner_name VARCHAR(64), "
        "owner_email VARCHAR(64), description VARCHAR(255), expires_at DATETIME, "
        "created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP, last_used_at DATETIME, "
        "is_active BIT NOT NULL DEFAULT 1)"
    ),
    "postgresql": (
        "CREATE TABLE {t} (id SERIAL PRIMARY KEY, api_key VARCHAR({w}) NOT NULL UNIQUE, "
        "tier VARCHAR(16) NOT NULL, owner_name VARCHAR(100) NOT NULL, owner_email VARCHAR(100), "
        "description TEXT, expires_at TIMESTAMP, created_at TIMESTAMP NOT NULL DEFAULT now(), "
        "last_used_at TIMESTAMP, is_active SMALLINT NOT NULL DEFAULT 1)"
    ),
    "mariadb": (
        "CREATE TABLE {t} (id INT AUTO_INCREMENT PRIMARY KEY, "
        "api_key VARCHAR({w}) NOT NULL UNIQUE, tier VARCHAR(16) NOT NULL, "
        "owner_name VARCHAR(100) NOT NULL, owner_email VARCHAR(100), description TEXT, "
        "expires_at DATETIME, "
        "created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP, "
        "last_used_at DATETIME, is_active TINYINT(1) NOT NULL DEFAULT 1)"
    ),
}


def unavailable(reason: str) -> NoReturn:
    """Skip locally, fail in CI: the services are mandatory there."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and {reason}", pytrace=False)
    pytest.skip(reason)


def _register_drivers() -> None:
    if SETUP_SCRIPT.exists():
        subprocess.run(["sh", str(SETUP_SCRIPT)], capture_output=True, check=False, timeout=60)


def odbc_connection_string(name: str) -> str:
    """The connection string of a reachable server, else skip (fail under CI)."""
    driver, conn_str = ODBC[name]
    try:
        import pyodbc
    except ImportError as exc:
        unavailable(f"pyodbc cannot be imported ({exc}); install unixodbc and pyodbc")
    if driver not in pyodbc.drivers():
        _register_drivers()
        if driver not in pyodbc.drivers():
            unavailable(
                f"ODBC driver {driver!r} is not installed/registered "
                f"(have {pyodbc.drivers()}); see scripts/odbc_setup.sh"
            )
    try:
        pyodbc.connect(conn_str, timeout=5).close()
    except pyodbc.Error as exc:
        unavailable(f"{name} is not reachable via {conn_str!r}: {exc}")
    return conn_str


def odbc_raw(conn_str: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """One statement on a connection of its own (autocommit), outside the store."""
    import pyodbc

    conn = pyodbc.connect(conn_str, timeout=5, autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute(sql, params)
        return [tuple(row) for row in cur.fetchall()] if cur.description else []
    finally:
        conn.close()


@attrs.define
class Backend:
    """One database, as the tests reach it: the store's URL, and raw SQL beside the store."""

    name: str  # sqlite | postgresql | mariadb
    target: str  # the SQLite file, or the ODBC connection string

    @property
    def url(self) -> str:
        return f"sqlite:///{self.target}" if self.name == "sqlite" else f"odbc:{self.target}"

    @property
    def widens(self) -> bool:
        """Whether `migrate` widens a narrow api_key column (SQLite ignores widths)."""
        return self.name != "sqlite"

    def raw(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.name != "sqlite":
            return odbc_raw(self.target, sql, params)
        conn = sqlite3.connect(self.target)
        try:
            cur = conn.execute(sql, params)
            rows = [tuple(row) for row in cur.fetchall()] if cur.description else []
            conn.commit()
            return rows
        finally:
            conn.close()

    def cells(self, table: str) -> list[str]:
        """Every value of every column, as text: what an attacker with the database sees."""
        return [str(cell) for row in self.raw(f"SELECT * FROM {table}") for cell in row]

    def drop(self, table: str) -> None:
        for name in (usage_table_for(table), table):
            self.raw(f"DROP TABLE IF EXISTS {name}")

    def make_legacy_table(self, table: str, keys: list[str | None], width: int = 32) -> None:
        """The old deployment's shape (api_key `width` characters wide), holding `keys` as
        they were stored (plain or hashed)."""
        self.raw(LEGACY_DDL[self.name].format(t=table, w=width))
        for index, key in enumerate(keys):
            self.raw(f"INSERT INTO {table} (api_key, tier, owner_name) VALUES (?, ?, ?)",
                     (key, TIERS[index % len(TIERS)], f"legacy-{index}"))

    def unreachable_url(self, tmp_path: Path) -> str:
        """A URL of this kind whose database cannot be reached."""
        if self.name == "sqlite":
            blocker = tmp_path / "file"
            blocker.write_text("not a directory")
            return f"sqlite:///{blocker}/sub/keys.db"
        port = PORTS[self.name]
        return "odbc:" + self.target.replace(f"PORT={port}", "PORT=1")


def unique_table() -> str:
    return f"swim_api_keys_t{uuid.uuid4().hex[:12]}"
