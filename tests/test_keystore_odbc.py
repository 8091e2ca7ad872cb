"""KeyStore against live PostgreSQL and MariaDB through their ODBC drivers.

Without `CI` these skip (with the reason) when pyodbc, the driver or the server is missing; with
`CI` set they fail instead, so a broken CI service can never pass silently. Each test works on
its own uniquely named table and drops it, so reruns and parallel runs do not collide.
Override the connection strings with SWIM_TEST_PG_ODBC / SWIM_TEST_MARIADB_ODBC.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from swimctl.keys.records import (
    TIERS,
    KeyStoreError,
    KeyStoreUnavailable,
    generate_key,
    hash_key,
    utc_naive,
)
from swimctl.keys.store import KeyStore

pytestmark = pytest.mark.services

BACKENDS: dict[str, tuple[str, str]] = {
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

SETUP_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "odbc_setup.sh"

LEGACY_DDL: dict[str, str] = {
    "postgresql": (
        "CREATE TABLE {t} (id SERIAL PRIMARY KEY, api_key VARCHAR(32) NOT NULL UNIQUE, "
        "tier VARCHAR(16) NOT NULL, owner_name VARCHAR(100) NOT NULL, owner_email VARCHAR(100), "
        "description TEXT, expires_at TIMESTAMP, created_at TIMESTAMP NOT NULL DEFAULT now(), "
        "last_used_at TIMESTAMP, is_active SMALLINT NOT NULL DEFAULT 1)"
    ),
    "mariadb": (
        "CREATE TABLE {t} (id INT AUTO_INCREMENT PRIMARY KEY, api_key VARCHAR(32) NOT NULL UNIQUE, "
        "tier VARCHAR(16) NOT NULL, owner_name VARCHAR(100) NOT NULL, owner_email VARCHAR(100), "
        "description TEXT, expires_at DATETIME, "
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


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(dialect name, connection string) for a reachable server, else skip/fail."""
    name = request.param
    driver, conn_str = BACKENDS[name]
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
    return name, conn_str


def _raw(conn_str: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    import pyodbc

    conn = pyodbc.connect(conn_str, timeout=5, autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute(sql, params)
        return [tuple(row) for row in cur.fetchall()] if cur.description else []
    finally:
        conn.close()


@pytest.fixture
def table(backend: tuple[str, str]) -> Iterator[str]:
    name = f"swim_api_keys_t{uuid.uuid4().hex[:12]}"
    yield name
    _raw(backend[1], f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
def store(backend: tuple[str, str], table: str) -> Iterator[KeyStore]:
    ks = KeyStore(f"odbc:{backend[1]}", table=table)
    yield ks
    ks.close()


def assert_no_key_stored(conn_str: str, table: str, keys: list[str]) -> None:
    cells = [str(c) for row in _raw(conn_str, f"SELECT * FROM {table}") for c in row]
    assert cells
    for key in keys:
        secret = key.split("_", 2)[2] if key.startswith("swim_") else key
        for cell in cells:
            assert key not in cell and secret not in cell


def test_dialect_detected_from_connection(backend: tuple[str, str], store: KeyStore) -> None:
    assert store.dialect.name == backend[0]


def test_lifecycle(backend: tuple[str, str], store: KeyStore, table: str) -> None:
    assert store.init_db() is True
    assert store.init_db() is False

    aware = dt.datetime.now(dt.timezone(dt.timedelta(hours=-5))) + dt.timedelta(days=3)
    key, record = store.create(
        "partner", "Zoë Ops", owner_email="ops@example.org", description="feed ✈",
        expires_at=aware,
    )
    assert record.expires_at == utc_naive(aware)
    found = store.lookup(key)
    assert found == record and found.usable()
    assert found.expires_at.tzinfo is None and found.is_active is True
    assert store.get(record.id) == record
    assert store.lookup(generate_key("partner")) is None

    when = dt.datetime(2031, 1, 2, 3, 4, 5)
    store.touch(record.id, when)
    assert store.get(record.id).last_used_at == when

    keys = [key] + [store.create(tier, f"owner-{tier}")[0] for tier in TIERS]
    assert len(store.list()) == 5

    new_key, new = store.rotate(record.id)
    keys.append(new_key)
    assert (new.tier, new.owner_name, new.owner_email, new.description, new.expires_at) == (
        "partner", "Zoë Ops", "ops@example.org", "feed ✈", record.expires_at,
    )
    old = store.lookup(key)
    assert old is not None and old.is_active is False and not old.usable()
    assert store.lookup(new_key) == new
    with pytest.raises(KeyStoreError, match="revoked"):
        store.rotate(record.id)

    assert store.revoke(new.id) is True
    assert store.revoke(new.id) is True  # MariaDB reports 0 changed rows here
    assert store.revoke(10_000_000) is False
    assert store.lookup(new_key).is_active is False
    assert len(store.list()) == 4
    assert len(store.list(include_inactive=True)) == 6

    assert_no_key_stored(backend[1], table, keys)
    stored = {row[0] for row in _raw(backend[1], f"SELECT api_key FROM {table}")}
    assert stored == {hash_key(k) for k in keys}


def test_expired_key_is_not_usable(store: KeyStore) -> None:
    key, _ = store.create("public", "x", expires_at=utc_naive() - dt.timedelta(minutes=5))
    record = store.lookup(key)
    assert record is not None and record.is_active and not record.usable()
    assert record.status() == "expired"
    assert store.list() == []


def test_concurrent_rotations_have_one_winner(store: KeyStore) -> None:
    _, record = store.create("developer", "racer")
    results: list[object] = []

    def worker() -> None:
        try:
            results.append(store.rotate(record.id))
        except KeyStoreError as exc:
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len([r for r in results if isinstance(r, tuple)]) == 1
    assert len(store.list()) == 1


def test_migrate_legacy_plain_text_table(
    backend: tuple[str, str], store: KeyStore, table: str
) -> None:
    name, conn_str = backend
    _raw(conn_str, LEGACY_DDL[name].format(t=table))
    plain = ["swim_pub_" + uuid.uuid4().hex[:16], "swim_sys_" + uuid.uuid4().hex[:20], "old-key-1"]
    for index, key in enumerate(plain):
        _raw(
            conn_str,
            f"INSERT INTO {table} (api_key, tier, owner_name) VALUES (?, ?, ?)",
            (key, TIERS[index], f"legacy-{index}"),
        )

    report = store.migrate()
    assert (report.created, report.widened, report.hashed, report.already_hashed) == (
        False, True, 3, 0,
    )
    with store._transaction() as cur:
        column = store._api_key_column(cur)
    assert column is not None and column.max_length == 64 and not column.nullable
    for index, key in enumerate(plain):
        record = store.lookup(key)
        assert record is not None and record.owner_name == f"legacy-{index}" and record.usable()
    assert_no_key_stored(conn_str, table, plain)

    again = store.migrate()
    assert (again.created, again.widened, again.hashed, again.already_hashed) == (
        False, False, 0, 3,
    )
    for key in plain:
        assert store.lookup(key) is not None
    # The migrated table is fully usable: new keys and rotation on the legacy schema.
    new_key, new = store.create("developer", "after-migrate")
    assert store.lookup(new_key) == new
    _, rotated = store.rotate(store.lookup(plain[0]).id)
    assert rotated.tier == "public" and store.lookup(plain[0]).is_active is False


def test_unreachable_server_is_unavailable(backend: tuple[str, str], table: str) -> None:
    name, conn_str = backend
    port = "5432" if name == "postgresql" else "3306"
    dead = conn_str.replace(f"PORT={port}", "PORT=1")
    ks = KeyStore(f"odbc:{dead}", table=table)
    with pytest.raises(KeyStoreUnavailable, match="key store unavailable"):
        ks.lookup(generate_key("public"))
