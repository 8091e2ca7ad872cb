"""What only the ODBC key stores have, against live PostgreSQL and MariaDB: the dialect read
from the driver, and a too-narrow legacy api_key column widened in place.

Every behaviour a key store must have is checked on these servers (and SQLite) by
test_keystore_contract.py. Without `CI` these skip (with the reason) when pyodbc, the driver or
the server is missing; with `CI` set they fail instead (tests/keystore_backends.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from swimctl.keys.store import KeyStore
from tests.keystore_backends import Backend, odbc_connection_string, unique_table

pytestmark = pytest.mark.services


@pytest.fixture(scope="module", params=["postgresql", "mariadb"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """A reachable server, else skip (fail under CI)."""
    return Backend(request.param, odbc_connection_string(request.param))


@pytest.fixture
def table(backend: Backend) -> Iterator[str]:
    name = unique_table()
    yield name
    backend.drop(name)


def test_dialect_detected_from_the_connection(backend: Backend, table: str) -> None:
    store = KeyStore(backend.url, table=table)
    assert store.dialect.name == backend.name


def test_migrate_widens_a_narrow_api_key_column_keeping_not_null(backend: Backend,
                                                                 table: str) -> None:
    backend.make_legacy_table(table, ["swim_pub_0123456789abcdef", "old-key-1"])
    store = KeyStore(backend.url, table=table)
    with store._transaction() as cur:
        before = store._api_key_column(cur)
    assert before is not None and before.max_length == 32 and not before.nullable
    assert store.migrate().widened
    with store._transaction() as cur:
        after = store._api_key_column(cur)
    assert after is not None and after.max_length == 64 and not after.nullable
    assert store.lookup("old-key-1") is not None
    assert not store.migrate().widened
