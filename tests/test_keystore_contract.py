"""What every key store must do, on every database it runs on: SQLite, PostgreSQL and MariaDB.

Each test runs once per backend on its own uniquely named tables, dropped afterwards, so reruns
and parallel runs do not collide. The ODBC backends skip locally when their server or driver is
missing and fail under `CI` (tests/keystore_backends.py). What only one backend has (SQLite's
files, ODBC's dialect detection and column widths) is in test_keystore.py and
test_keystore_odbc.py.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from swimctl.core.usage import UsageRow
from swimctl.keys.records import (
    TIERS,
    KeyRecord,
    KeyStoreError,
    KeyStoreUnavailable,
    generate_key,
    hash_key,
    utc_naive,
)
from swimctl.keys.store import KeyStore
from tests.conftest import launch_hub
from tests.keystore_backends import Backend, odbc_connection_string, unique_table
from tests.usage_session import SESSION_CONFIG, scripted_session

pytestmark = pytest.mark.services

KEY_RE = re.compile(r"swim_(pub|dev|par|sys)_[0-9a-f]{64}")


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mariadb"])
def server(request: pytest.FixtureRequest) -> str | None:
    """The backend's name; for ODBC, checked reachable once per module (else skip/fail)."""
    name: str = request.param
    if name != "sqlite":
        odbc_connection_string(name)
    return name


@pytest.fixture
def backend(server: str, tmp_path: Path) -> Backend:
    if server == "sqlite":
        return Backend("sqlite", str(tmp_path / "keys.db"))
    return Backend(server, odbc_connection_string(server))


@pytest.fixture
def table(backend: Backend) -> Iterator[str]:
    name = unique_table()
    yield name
    backend.drop(name)


def open_store(backend: Backend, table: str) -> KeyStore:
    return KeyStore(backend.url, table=table)


@pytest.fixture
def store(backend: Backend, table: str) -> Iterator[KeyStore]:
    ks = open_store(backend, table)
    ks.init_db()
    yield ks
    ks.close()


def assert_no_key_stored(backend: Backend, table: str, keys: list[str]) -> None:
    cells = backend.cells(table)
    assert cells
    for key in keys:
        secret = key.split("_", 2)[2] if key.startswith("swim_") else key
        for cell in cells:
            assert key not in cell and secret not in cell


# -- creating and finding keys -------------------------------------------------------------------


def test_init_db_is_idempotent(backend: Backend, table: str) -> None:
    ks = open_store(backend, table)
    assert ks.init_db() is True
    assert ks.init_db() is False
    assert open_store(backend, table).init_db() is False


def test_create_lookup_get_roundtrip(store: KeyStore) -> None:
    aware = dt.datetime.now(dt.timezone(dt.timedelta(hours=-5))) + dt.timedelta(days=3)
    key, record = store.create("partner", "Zoë Ops", owner_email="ops@example.org",
                               description="feed ✈", expires_at=aware)
    assert KEY_RE.fullmatch(key) and key.startswith("swim_par_")
    assert record.tier == "partner" and record.is_active and record.usable()
    assert record.expires_at == utc_naive(aware) and record.expires_at.tzinfo is None
    found = store.lookup(key)
    assert found == record and found is not None and found.is_active is True
    assert store.get(record.id) == record
    assert store.lookup(key + "x") is None
    assert store.lookup(generate_key("partner")) is None
    assert store.get(record.id + 100) is None


def test_create_makes_the_table_when_missing(backend: Backend, table: str) -> None:
    key, record = open_store(backend, table).create("public", "Bob")
    assert open_store(backend, table).lookup(key) == record


def test_only_hashes_are_stored(store: KeyStore, backend: Backend, table: str) -> None:
    keys = [store.create(tier, f"owner-{tier}")[0] for tier in TIERS]
    stored = {row[0] for row in backend.raw(f"SELECT api_key FROM {table}")}
    assert stored == {hash_key(k) for k in keys}
    assert_no_key_stored(backend, table, keys)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tier": "gold", "owner_name": "x"}, "unknown tier"),
        ({"tier": "public", "owner_name": "  "}, "owner name"),
        ({"tier": "public", "owner_name": "x" * 256}, "owner name"),
        ({"tier": "public", "owner_name": "x", "description": "d" * 1025}, "description"),
    ],
)
def test_create_rejects_bad_fields(store: KeyStore, kwargs: dict, message: str) -> None:
    with pytest.raises(KeyStoreError, match=message) as info:
        store.create(**kwargs)
    assert not isinstance(info.value, KeyStoreUnavailable)


def test_store_is_usable_from_many_threads(store: KeyStore) -> None:
    key, record = store.create("public", "x")
    seen: list[KeyRecord | None] = []
    threads = [threading.Thread(target=lambda: seen.append(store.lookup(key))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [record] * 8


# -- revoking, touching, expiring, listing -------------------------------------------------------


def test_revoke_and_revoke_twice(store: KeyStore) -> None:
    key, record = store.create("partner", "Carol")
    before = store.revoke_key(record.id)
    assert before is not None and before.is_active  # it was active: revoked now
    revoked = store.lookup(key)
    assert revoked is not None and not revoked.is_active and not revoked.usable()
    assert revoked.status() == "revoked"
    again = store.revoke_key(record.id)  # MariaDB reports 0 changed rows here
    assert again is not None and not again.is_active
    assert again.revoked_at is not None
    assert abs((utc_naive() - again.revoked_at).total_seconds()) < 60
    assert store.revoke(record.id) is True  # harmless twice
    assert store.revoke(record.id + 1000) is False
    assert store.revoke_key(record.id + 1000) is None


def test_touch_records_last_use(store: KeyStore) -> None:
    _key, record = store.create("public", "Dan")
    store.touch(record.id, dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.UTC))
    touched = store.get(record.id)
    assert touched is not None and touched.last_used_at == dt.datetime(2031, 5, 6, 7, 8, 9)
    store.touch(record.id)
    now = store.get(record.id)
    assert now is not None and now.last_used_at is not None
    assert now.last_used_at >= utc_naive() - dt.timedelta(seconds=5)


def test_expired_key_is_not_usable(store: KeyStore) -> None:
    key, _ = store.create("developer", "Eve", expires_at=utc_naive() - dt.timedelta(minutes=1))
    found = store.lookup(key)
    assert found is not None and found.is_active
    assert not found.usable() and found.status() == "expired"
    assert store.list() == []
    _, future = store.create("developer", "Eve", expires_at=utc_naive() + dt.timedelta(1))
    assert future.usable()
    assert not future.usable(now=utc_naive() + dt.timedelta(days=2))


def test_list_filters_revoked_and_expired(store: KeyStore) -> None:
    _, live = store.create("public", "a")
    _, gone = store.create("public", "b")
    _, old = store.create("public", "c", expires_at=utc_naive() - dt.timedelta(hours=1))
    store.revoke(gone.id)
    assert [r.id for r in store.list()] == [live.id]
    assert [r.id for r in store.list(include_inactive=True)] == [live.id, gone.id, old.id]


# -- rotation ------------------------------------------------------------------------------------


def test_rotate_replaces_a_key_atomically(store: KeyStore, backend: Backend, table: str) -> None:
    expires = utc_naive() + dt.timedelta(days=10)
    old_key, old = store.create("system", "Feed", owner_email="ops@x", description="feeder",
                                expires_at=expires)
    new_key, new = store.rotate(old.id)
    assert new_key != old_key and new_key.startswith("swim_sys_") and new.id != old.id
    assert (new.tier, new.owner_name, new.owner_email, new.description, new.expires_at) == (
        "system", "Feed", "ops@x", "feeder", expires,
    )
    retired = store.lookup(old_key)
    assert retired is not None and not retired.is_active and not retired.usable()
    assert store.lookup(new_key) == new and new.usable()
    assert_no_key_stored(backend, table, [old_key, new_key])
    with pytest.raises(KeyStoreError, match="revoked"):
        store.rotate(old.id)
    with pytest.raises(KeyStoreError, match="no key"):
        store.rotate(10_000_000)
    _, forever = store.rotate(new.id, expires_at=None)
    assert forever.expires_at is None


def test_rotate_of_an_expired_key_needs_a_new_expiry(store: KeyStore) -> None:
    _, old = store.create("public", "x", expires_at=utc_naive() - dt.timedelta(seconds=5))
    with pytest.raises(KeyStoreError, match="expired"):
        store.rotate(old.id)
    unchanged = store.get(old.id)
    assert unchanged is not None and unchanged.is_active
    later = utc_naive() + dt.timedelta(days=1)
    key, new = store.rotate(old.id, expires_at=later)
    found = store.lookup(key)
    assert new.expires_at == later and found is not None and found.usable()


def test_a_failed_rotation_changes_nothing(store: KeyStore,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The revoke and the insert are one transaction: a failure between them undoes both."""
    key, old = store.create("partner", "x")

    def fails(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the database went away mid-transaction")

    monkeypatch.setattr(KeyStore, "_insert", fails)
    with pytest.raises(KeyStoreUnavailable):
        store.rotate(old.id)
    monkeypatch.undo()
    found = store.lookup(key)
    assert found is not None and found.usable()
    assert len(store.list(include_inactive=True)) == 1


def test_concurrent_rotations_have_one_winner(backend: Backend, table: str,
                                              store: KeyStore) -> None:
    """Four stores (four connections) rotate the same key at once: one wins."""
    _, record = store.create("developer", "racer")
    results: list[object] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        mine = open_store(backend, table)
        try:
            barrier.wait()
            results.append(mine.rotate(record.id))
        except KeyStoreError as exc:
            results.append(exc)
        finally:
            mine.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len([r for r in results if isinstance(r, tuple)]) == 1, results
    assert len(store.list()) == 1


# -- migrating an older table --------------------------------------------------------------------


def test_migrate_hashes_a_legacy_plain_text_table(backend: Backend, table: str) -> None:
    plain = ["swim_pub_" + uuid.uuid4().hex[:16], "swim_sys_" + uuid.uuid4().hex[:20],
             "old-key-1"]
    backend.make_legacy_table(table, plain)
    store = open_store(backend, table)

    report = store.migrate()
    assert (report.created, report.widened, report.hashed, report.already_hashed) == (
        False, backend.widens, 3, 0,
    )
    assert report.added_columns == ("revoked_at",) and report.usage_created
    for index, key in enumerate(plain):
        record = store.lookup(key)
        assert record is not None and record.owner_name == f"legacy-{index}"
        assert record.usable()
    assert_no_key_stored(backend, table, plain)

    again = store.migrate()
    assert (again.created, again.widened, again.hashed, again.already_hashed) == (
        False, False, 0, 3,
    )
    assert again.added_columns == () and not again.usage_created
    # The migrated table is fully usable: new keys, rotation, revocation times, usage rows.
    new_key, new = store.create("developer", "after-migrate")
    assert store.lookup(new_key) == new
    first = store.lookup(plain[0])
    assert first is not None
    _, rotated = store.rotate(first.id)
    retired = store.get(first.id)  # lookups never select revoked_at; get does
    assert rotated.tier == "public" and retired is not None and not retired.is_active
    assert retired.revoked_at is not None
    store.add_usage([UsageRow(dt.date(2030, 1, 2), new.id, connections=1)])
    assert store.usage(key_id=new.id) == [UsageRow(dt.date(2030, 1, 2), new.id, connections=1)]


def test_a_table_without_revoked_at_works_until_migrate_adds_it(backend: Backend,
                                                                table: str) -> None:
    """The hub's lookups never select revoked_at; revoking there records no time."""
    a, b = "swim_pub_" + "a" * 64, "swim_pub_" + "b" * 64
    backend.make_legacy_table(table, [hash_key(a), hash_key(b)], width=64)
    store = open_store(backend, table)
    [first, second] = [store.lookup(a), store.lookup(b)]
    assert first is not None and second is not None
    assert store.revoke_key(first.id) is not None
    again = store.revoke_key(first.id)
    assert again is not None and not again.is_active and again.revoked_at is None
    assert store.migrate().added_columns == ("revoked_at",)
    store = open_store(backend, table)
    assert store.revoke_key(second.id) is not None
    later = store.get(second.id)
    assert later is not None and later.revoked_at is not None


def test_migrate_on_an_empty_database_creates_both_tables(backend: Backend, table: str) -> None:
    report = open_store(backend, table).migrate()
    assert report.created and report.usage_created and report.hashed == 0


# -- failing closed ------------------------------------------------------------------------------


def test_an_unreachable_database_fails_closed(backend: Backend, table: str,
                                              tmp_path: Path) -> None:
    ks = KeyStore(backend.unreachable_url(tmp_path), table=table)
    key = generate_key("public")
    with pytest.raises(KeyStoreUnavailable, match="key store unavailable") as info:
        ks.lookup(key)
    assert key not in str(info.value) and key[:12] not in str(info.value)
    with pytest.raises(KeyStoreUnavailable):
        ks.add_usage([UsageRow(dt.date(2030, 1, 1), 1, connections=1)])


def test_a_missing_table_fails_closed_then_recovers(backend: Backend, table: str) -> None:
    ks = open_store(backend, table)
    key = generate_key("public")
    with pytest.raises(KeyStoreUnavailable) as info:
        ks.lookup(key)  # no table yet: an error, never "no such key"
    assert key not in str(info.value) and key[:12] not in str(info.value)
    ks.init_db()
    assert ks.lookup(key) is None


# -- usage ---------------------------------------------------------------------------------------


def test_usage_rows_add_up_per_day_and_key(store: KeyStore) -> None:
    day1, day2 = dt.date(2030, 3, 31), dt.date(2030, 4, 1)
    store.add_usage([UsageRow(day1, 7, connections=2, connection_seconds=90,
                              events_delivered=1000, bytes_sent=123_456, refusals_auth=1),
                     UsageRow(day2, 7, connection_seconds=30, refusals_rate=4),
                     UsageRow(day1, 8, refusals_cap=3)])
    store.add_usage([UsageRow(day1, 7, connections=1, events_delivered=5_000_000_000)])
    assert store.usage() == [
        UsageRow(day1, 7, connections=3, connection_seconds=90,
                 events_delivered=5_000_001_000, bytes_sent=123_456, refusals_auth=1),
        UsageRow(day1, 8, refusals_cap=3),
        UsageRow(day2, 7, connection_seconds=30, refusals_rate=4),
    ]
    assert store.usage(key_id=8) == [UsageRow(day1, 8, refusals_cap=3)]
    assert store.usage(since=day2) == [UsageRow(day2, 7, connection_seconds=30,
                                                refusals_rate=4)]
    assert store.usage(key_id=7, since=dt.date(2030, 4, 2)) == []


def test_usage_writers_at_once_lose_nothing(backend: Backend, table: str,
                                            store: KeyStore) -> None:
    """Several hubs adding to the same rows at the same moment: every addition counts."""
    day = dt.date(2030, 5, 5)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def hub(n: int) -> None:
        mine = open_store(backend, table)
        try:
            barrier.wait()
            for i in range(10):
                mine.add_usage([UsageRow(day, 1, connections=1, events_delivered=n + i),
                                UsageRow(day, 2, bytes_sent=1)])
        except BaseException as exc:
            errors.append(exc)
        finally:
            mine.close()

    threads = [threading.Thread(target=hub, args=(n * 100,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    events = sum(n * 100 + i for n in range(4) for i in range(10))
    assert store.usage() == [UsageRow(day, 1, connections=40, events_delivered=events),
                             UsageRow(day, 2, bytes_sent=40)]


async def test_a_hub_session_leaves_exact_usage_rows(backend: Backend, table: str,
                                                     tmp_path: Path) -> None:
    """A real hub on this database, a scripted session with known counts (events, bytes
    counted on the clients' sockets, refusals of each kind), then a graceful stop: the rows
    hold exactly what happened, per key."""
    async with trio.open_nursery() as nursery:
        h = await launch_hub(nursery, tmp_path, db_url=backend.url, key_table=table,
                             **SESSION_CONFIG)
        session = await scripted_session(h)
    rows = await trio.to_thread.run_sync(open_store(backend, table).usage)
    assert {row.day for row in rows} <= {dt.datetime.now(dt.UTC).date(),
                                         dt.datetime.now(dt.UTC).date() - dt.timedelta(1)}
    session.check(h, rows)
