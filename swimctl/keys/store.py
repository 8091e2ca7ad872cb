"""API keys at rest: the key table over DB-API 2.0 (sqlite3 or pyodbc).

Blocking by nature: the hub calls these methods only from worker threads. What a key and a
record are lives in `records`; the SQL that differs per database in `dialects`. The dialect of
an ODBC connection is read from the driver (SQL_DBMS_NAME), falling back to the connection
string's DRIVER.
"""

from __future__ import annotations

import builtins
import datetime as dt
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Final

import platformdirs

from swimctl.core.usage import COUNTS, UsageRow
from swimctl.keys.dialects import (
    IDENTIFIER,
    KEY_COLUMNS,
    OPTIONAL_COLUMNS,
    USAGE_COLUMNS,
    USAGE_TABLE,
    ColumnInfo,
    Dialect,
    NativeSQLiteDialect,
    detect_dialect,
)
from swimctl.keys.records import (
    MAX_DESCRIPTION,
    MAX_EMAIL,
    MAX_OWNER,
    TIER_PREFIX,
    TIERS,
    KeyRecord,
    KeyStoreError,
    KeyStoreUnavailable,
    MigrationReport,
    as_day,
    as_text,
    generate_key,
    hash_key,
    is_hashed,
    record_from_row,
    redact,
    utc_naive,
)

DEFAULT_TABLE = "swim_api_keys"
DEFAULT_USAGE_TABLE = "swim_api_usage"


def usage_table_for(table: str) -> str:
    """The usage table beside a key table: `swim_api_usage` beside the default one, else the
    key table's name with `_usage` (tests and side-by-side deployments)."""
    return DEFAULT_USAGE_TABLE if table == DEFAULT_TABLE else f"{table}_usage"

log = logging.getLogger("swimctl.keys")


def default_db_url() -> str:
    env = os.environ.get("SWIM_DB")
    if env:
        return env
    path = Path(platformdirs.user_data_dir("swimctl")) / "keys.db"
    return f"sqlite:///{path}"


def describe_error(exc: BaseException) -> str:
    """One redacted line about a driver error: enough for an operator, never a secret."""
    args: tuple[object, ...] = tuple(getattr(exc, "args", ()))
    # pyodbc errors are (sqlstate, message); the message is the useful part.
    raw = str(args[1]) if len(args) > 1 and isinstance(args[1], str) else str(exc)
    first = next((line.strip() for line in raw.splitlines() if line.strip()), "")
    first = redact(first)
    if len(first) > 240:
        first = first[:237] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class _Keep:
    """Sentinel type: `rotate` keeps the old expiry unless told otherwise."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep()


# -- the store -----------------------------------------------------------------------------------


class KeyStore:
    """The key table behind one database URL: `sqlite:///PATH` or `odbc:<connection string>`.

    One connection per thread (DB-API connections are not thread-safe); a failed call drops the
    thread's connection so the next call reconnects — recovery needs no restart. Every public
    method is one transaction. `table` exists for tests and side-by-side deployments; the
    usage table beside it is named by `usage_table_for`.
    With `create=False` (the commands that only read or change existing keys) a SQLite file
    that does not exist is an error, not a new empty database in a new directory tree.
    """

    def __init__(self, url: str, *, table: str = DEFAULT_TABLE, create: bool = True) -> None:
        self.url = url
        self.create_missing = create
        if not IDENTIFIER.fullmatch(table):
            raise KeyStoreError(f"invalid table name {table!r}")
        self.table = table
        self.usage_table = usage_table_for(table)
        if not IDENTIFIER.fullmatch(self.usage_table):
            raise KeyStoreError(f"table name {table!r} is too long for its usage table")
        if url.startswith("sqlite:///"):
            self.kind = "sqlite"
            self._target = url[len("sqlite:///") :]
        elif url.startswith("sqlite://"):
            self.kind = "sqlite"
            self._target = url[len("sqlite://") :]
        elif url.startswith("odbc:"):
            self.kind = "odbc"
            self._target = url[len("odbc:") :]
        else:
            raise KeyStoreError("database URL must be sqlite:///PATH or odbc:<connection string>")
        if not self._target.strip():
            raise KeyStoreError(f"database URL {self.kind}: has no path or connection string")
        self._local = threading.local()
        self._dialect: Dialect | None = NativeSQLiteDialect() if self.kind == "sqlite" else None
        self._ready = False
        # The SQLite file as last opened (device, inode): a file deleted or replaced under a
        # long-running process is noticed on the next call instead of served from forever.
        # Every thread's connection is then closed at once, so none holds on to the old file.
        self._file_id: tuple[int, int] | None = None
        self._missing = False
        self._generation = 0
        self._open: set[Any] = set()
        self._file_lock = threading.Lock()
        self.reopens = 0  # times the file was found replaced and opened anew (for /metrics)
        self._has_revoked_at: bool | None = None  # found out on first use
        self._usage_ready = False

    # -- connections -------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self.kind == "sqlite":
            path = Path(self._target)
            if str(path) == ":memory:":
                target, uri = str(path), False
            elif self.create_missing:
                path.parent.mkdir(parents=True, exist_ok=True)
                target, uri = str(path), False
            else:
                if not path.is_file():
                    raise KeyStoreError(f"no key database at {path}")
                # mode=rw: open what is there, never create it (not even in a race)
                target, uri = f"{path.resolve().as_uri()}?mode=rw", True
            conn = sqlite3.connect(target, timeout=5.0, check_same_thread=False, uri=uri)
            # A rollback journal, not WAL: WAL keeps `-wal` and `-shm` files beside the
            # database, shared by name, so a database deleted or replaced under a running hub
            # would meet the old one's WAL (SQLite then refuses it, or replays stale pages into
            # it). Key tables are tiny and read through a cache; a writer's brief lock costs
            # nothing here. An existing WAL database is converted when nobody else has it open.
            with suppress(sqlite3.OperationalError):
                conn.execute("PRAGMA journal_mode=DELETE")
            return conn
        try:
            import pyodbc
        except ImportError as exc:  # pragma: no cover - depends on the machine
            raise KeyStoreUnavailable(
                "key store unavailable: ODBC needs pyodbc and the system libodbc "
                "(pip install 'swimctl[odbc]')"
            ) from exc
        conn = pyodbc.connect(self._target, timeout=5, autocommit=False)
        if self._dialect is None:
            try:
                dbms = conn.getinfo(pyodbc.SQL_DBMS_NAME)
            except pyodbc.Error:
                dbms = None
            try:
                self._dialect = detect_dialect(dbms, self._target)
            except KeyStoreError:
                conn.close()
                raise
        return conn

    def _conn(self) -> Any:
        self._check_file()
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "generation", -1) != self._generation:
            conn = None  # closed by _check_file when the file changed
        if conn is None:
            conn = self._connect()
            self._local.conn, self._local.generation = conn, self._generation
            if self.kind == "sqlite":
                with self._file_lock:
                    self._open.add(conn)
                self._check_file()  # the first connect created the file: remember which
        return conn

    def _check_file(self) -> None:
        """Compare the SQLite file with the one last opened. A file that was there and is
        gone is an outage (KeyStoreUnavailable; never silently re-created empty); a different
        file at the path is opened anew."""
        if self.kind != "sqlite" or self._target == ":memory:":
            return
        try:
            st = os.stat(self._target)
        except FileNotFoundError:
            with self._file_lock:
                if self._file_id is None:
                    return  # never opened: the first connect creates it
                if not self._missing:
                    self._missing = True
                    log.warning("the key database %s is missing: refusing keys until a "
                                "database is back at that path", self._target)
                    self._close_all()
            raise KeyStoreUnavailable(
                f"key store unavailable: the key database {self._target} is missing "
                "(deleted or moved while the hub runs)") from None
        file_id = (st.st_dev, st.st_ino)
        with self._file_lock:
            if self._file_id is not None and file_id != self._file_id:
                self.reopens += 1
                log.warning("the key database %s was replaced: opening the new file",
                            self._target)
                self._close_all()
            self._file_id = file_id
            self._missing = False

    def _close_all(self) -> None:
        """Close every thread's connection (called with the lock held); threads reconnect."""
        for conn in self._open:
            with suppress(Exception):
                conn.close()
        self._open.clear()
        self._generation += 1

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._file_lock:
                self._open.discard(conn)
            with suppress(Exception):
                conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """A cursor inside one transaction: commit on success, roll back on any error.

        A user error (KeyStoreError) keeps the connection; anything else drops it and becomes
        KeyStoreUnavailable, so callers fail closed and the next call reconnects.
        """
        try:
            conn = self._conn()
        except KeyStoreError:
            raise
        except Exception as exc:
            self._drop()
            raise KeyStoreUnavailable(f"key store unavailable: {describe_error(exc)}") from exc
        cur = None
        try:
            cur = conn.cursor()
            yield cur
            conn.commit()
        except KeyStoreError:
            try:
                conn.rollback()
            except Exception:
                self._drop()
            raise
        except Exception as exc:
            self._drop()
            raise KeyStoreUnavailable(f"key store unavailable: {describe_error(exc)}") from exc
        finally:
            if cur is not None:
                with suppress(Exception):
                    cur.close()

    # Kept for callers of the original name.
    _cursor = _transaction

    def close(self) -> None:
        self._drop()

    @property
    def dialect(self) -> Dialect:
        """The backend's dialect (connects once to find out for ODBC)."""
        if self._dialect is None:
            with self._transaction():
                pass
        assert self._dialect is not None
        return self._dialect

    def _p(self, *values: Any) -> tuple[Any, ...]:
        d = self.dialect
        return tuple(d.param(v) for v in values)

    # -- schema ------------------------------------------------------------------------------

    def _table_exists(self, cur: Any, table: str | None = None) -> bool:
        d = self.dialect
        cur.execute(d.table_exists_sql(), (d.table_name(table or self.table),))
        return cur.fetchone() is not None

    def init_db(self) -> bool:
        """Create the key table (and the usage table beside it) where missing; True when this
        call created the key table."""
        created = self._create(self.table, lambda: self.dialect.create_table(self.table))
        self._ready = True
        self.init_usage()
        return created

    def init_usage(self) -> bool:
        """Create the usage table if it is missing; True when this call created it."""
        created = self._create(self.usage_table,
                               lambda: self.dialect.create_table(self.usage_table, USAGE_TABLE))
        self._usage_ready = True
        return created

    def _create(self, table: str, ddl: Any) -> bool:
        try:
            with self._transaction() as cur:
                if self._table_exists(cur, table):
                    return False
                cur.execute(ddl())
        except KeyStoreUnavailable:
            # Lost a creation race with another process? Then the table is there now.
            with self._transaction() as cur:
                if not self._table_exists(cur, table):
                    raise
            return False
        return True

    def _ensure_table(self) -> None:
        if not self._ready:
            self.init_db()

    def _api_key_column(self, cur: Any) -> ColumnInfo | None:
        d = self.dialect
        sql = d.column_sql()
        if sql is None:
            return None
        cur.execute(sql, (d.table_name(self.table), "api_key"))
        row = cur.fetchone()
        if row is None:
            return None
        length = None if row[1] is None else int(row[1])
        return ColumnInfo(str(row[0]), length, as_text(row[2]) == "YES")

    def migrate(self) -> MigrationReport:
        """Bring an existing table to the current scheme, in place and idempotently.

        Widens a too-narrow api_key column, then replaces every plain-text key with its hash.
        A 64-character lower-case hex value is taken as already hashed; empty values are
        skipped. Presented keys keep working because lookups hash what the client sends.
        """
        usage_existed = self._usage_exists()
        created = self.init_db()
        widened = False
        with self._transaction() as cur:
            column = self._api_key_column(cur)
        # -1 is SQL Server's (MAX); None means an unbounded type.
        if column is not None and column.max_length is not None and 0 < column.max_length < 64:
            sql = self.dialect.widen_sql(self.table, column)
            if sql is None:
                raise KeyStoreError(
                    f"api_key is {column.data_type}({column.max_length}); widen it to "
                    "VARCHAR(64) by hand, then run migrate again"
                )
            with self._transaction() as cur:
                cur.execute(sql)
            widened = True
        hashed = already = skipped = 0
        with self._transaction() as cur:
            cur.execute(f"SELECT id, api_key FROM {self.table}")
            rows = [(int(row[0]), row[1]) for row in cur.fetchall()]
            for key_id, value in rows:
                text = as_text(value) if value is not None else None
                if not text:
                    skipped += 1
                elif is_hashed(text):
                    already += 1
                else:
                    cur.execute(
                        f"UPDATE {self.table} SET api_key = ? WHERE id = ?",
                        (hash_key(text), key_id),
                    )
                    hashed += 1
        added = []
        with self._transaction() as cur:
            for name in OPTIONAL_COLUMNS:
                if not self._column_exists(cur, name):
                    cur.execute(self.dialect.add_column_sql(self.table, name))
                    added.append(name)
        self._has_revoked_at = None
        return MigrationReport(created, widened, hashed, already, skipped, tuple(added),
                               usage_created=not usage_existed)

    def _usage_exists(self) -> bool:
        try:
            with self._transaction() as cur:
                return self._table_exists(cur, self.usage_table)
        except KeyStoreUnavailable:
            return False  # init_db, next, says what is wrong

    def _column_exists(self, cur: Any, name: str) -> bool:
        d = self.dialect
        cur.execute(d.column_exists_sql(), (d.table_name(self.table), name))
        return cur.fetchone() is not None

    def _revoked_at(self, cur: Any) -> bool:
        """Whether this table records when a key was revoked (older tables lack the column
        until `keys migrate`)."""
        if self._has_revoked_at is None:
            self._has_revoked_at = self._column_exists(cur, "revoked_at")
        return self._has_revoked_at

    def _columns(self, cur: Any) -> str:
        return KEY_COLUMNS + (", revoked_at" if self._revoked_at(cur) else "")

    # -- operations --------------------------------------------------------------------------

    def _insert(
        self,
        cur: Any,
        tier: str,
        owner_name: str,
        owner_email: str | None,
        description: str | None,
        expires: dt.datetime | None,
    ) -> tuple[str, KeyRecord]:
        api_key = generate_key(tier)
        digest = hash_key(api_key)
        created = utc_naive()
        cur.execute(
            f"INSERT INTO {self.table} (api_key, tier, owner_name, owner_email, description, "
            "expires_at, created_at, is_active) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            self._p(digest, tier, owner_name, owner_email, description, expires, created, 1),
        )
        cur.execute(
            f"SELECT id FROM {self.table} WHERE api_key = {self.dialect.key_param}", (digest,)
        )
        key_id = int(cur.fetchone()[0])
        record = KeyRecord(
            id=key_id,
            tier=tier,
            owner_name=owner_name,
            owner_email=owner_email,
            description=description,
            expires_at=expires,
            created_at=created,
            last_used_at=None,
            is_active=True,
        )
        return api_key, record

    @staticmethod
    def _check_fields(
        tier: str, owner_name: str, owner_email: str | None, description: str | None
    ) -> None:
        if tier not in TIER_PREFIX:
            raise KeyStoreError(f"unknown tier {tier!r} (choose from {', '.join(TIERS)})")
        if not owner_name.strip():
            raise KeyStoreError("owner name must not be empty")
        for label, value, limit in (
            ("owner name", owner_name, MAX_OWNER),
            ("owner email", owner_email, MAX_EMAIL),
            ("description", description, MAX_DESCRIPTION),
        ):
            if value is not None and len(value) > limit:
                raise KeyStoreError(f"{label} is longer than {limit} characters")

    def create(
        self,
        tier: str,
        owner_name: str,
        *,
        owner_email: str | None = None,
        description: str | None = None,
        expires_at: dt.datetime | None = None,
    ) -> tuple[str, KeyRecord]:
        """Make a new key; returns the plain key (shown once) and its record."""
        self._check_fields(tier, owner_name, owner_email, description)
        expires = utc_naive(expires_at) if expires_at is not None else None
        self._ensure_table()
        with self._transaction() as cur:
            return self._insert(cur, tier, owner_name, owner_email, description, expires)

    def lookup(self, api_key: str) -> KeyRecord | None:
        """The record for a presented key, or None when no such key exists."""
        with self._transaction() as cur:
            cur.execute(
                f"SELECT {KEY_COLUMNS} FROM {self.table} WHERE api_key = {self.dialect.key_param}",
                (hash_key(api_key),),
            )
            row = cur.fetchone()
        return record_from_row(tuple(row)) if row else None

    def get(self, key_id: int) -> KeyRecord | None:
        with self._transaction() as cur:
            return self._get(cur, key_id)

    def _get(self, cur: Any, key_id: int) -> KeyRecord | None:
        cur.execute(f"SELECT {self._columns(cur)} FROM {self.table} WHERE id = ?",
                    (int(key_id),))
        row = cur.fetchone()
        return record_from_row(tuple(row)) if row else None

    def revoke(self, key_id: int) -> bool:
        """Deactivate a key; True when it exists (revoking twice is harmless)."""
        return self.revoke_key(key_id) is not None

    def revoke_key(self, key_id: int) -> KeyRecord | None:
        """Deactivate a key and return its record as it was before (None: no such key), so a
        caller can tell "revoked now" from "already revoked, at revoked_at"."""
        with self._transaction() as cur:
            before = self._get(cur, key_id)
            if before is None or not before.is_active:
                return before
            self._deactivate(cur, key_id)
            return before

    def _deactivate(self, cur: Any, key_id: int) -> int:
        """is_active = 0 (and revoked_at = now, where recorded) on an active key; the number
        of rows changed (0: someone else got there first)."""
        if self._revoked_at(cur):
            cur.execute(
                f"UPDATE {self.table} SET is_active = ?, revoked_at = ? "
                "WHERE id = ? AND is_active = ?",
                (0, self.dialect.param(utc_naive().replace(microsecond=0)), int(key_id), 1),
            )
        else:
            cur.execute(
                f"UPDATE {self.table} SET is_active = ? WHERE id = ? AND is_active = ?",
                (0, int(key_id), 1),
            )
        return int(cur.rowcount or 0)

    def touch(self, key_id: int, when: dt.datetime | None = None) -> None:
        with self._transaction() as cur:
            cur.execute(
                f"UPDATE {self.table} SET last_used_at = ? WHERE id = ?",
                self._p(utc_naive(when), int(key_id)),
            )

    def rotate(
        self, key_id: int, *, expires_at: dt.datetime | _Keep | None = KEEP
    ) -> tuple[str, KeyRecord]:
        """Replace a key: a new one for the same owner and tier, the old one revoked, atomically.

        The old key stops working at the same commit that makes the new one; the expiry is kept
        unless `expires_at` is given (None: never expires).
        """
        with self._transaction() as cur:
            old = self._get(cur, key_id)
            if old is None:
                raise KeyStoreError(f"no key with id {key_id}")
            if not old.is_active:
                raise KeyStoreError(f"key {key_id} is revoked; create a new key instead")
            if old.tier not in TIER_PREFIX:
                raise KeyStoreError(f"key {key_id} has unknown tier {old.tier!r}")
            if isinstance(expires_at, _Keep):
                expires = old.expires_at
                if expires is not None and expires <= utc_naive():
                    raise KeyStoreError(
                        f"key {key_id} expired at {expires.isoformat()}Z; give a new expiry"
                    )
            else:
                expires = utc_naive(expires_at) if expires_at is not None else None
            # Revoke first, guarded on is_active: of two concurrent rotations only one wins.
            if self._deactivate(cur, key_id) == 0:
                raise KeyStoreError(f"key {key_id} was changed by someone else; try again")
            return self._insert(
                cur, old.tier, old.owner_name, old.owner_email, old.description, expires
            )

    # -- usage -------------------------------------------------------------------------------

    def add_usage(self, rows: builtins.list[UsageRow]) -> None:
        """Add each row's counts to its (day, key) row, in one transaction: the hub writes
        what it counted since its last write, and any number of hubs may do so at once."""
        if not rows:
            return
        if not self._usage_ready:
            self.init_usage()
        sql = self.dialect.upsert_usage(self.usage_table)
        now = utc_naive()
        with self._transaction() as cur:
            for row in rows:
                cur.execute(sql, self._p(row.day, row.key_id, *row.counts(), now))

    def usage(self, *, key_id: int | None = None,
              since: dt.date | None = None) -> builtins.list[UsageRow]:
        """Stored usage rows, by day then key; only `key_id`'s, only from `since` on."""
        where: builtins.list[str] = []
        params: builtins.list[Any] = []
        if since is not None:
            where.append("day >= ?")
            params.append(since)
        if key_id is not None:
            where.append("key_id = ?")
            params.append(int(key_id))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._transaction() as cur:
            cur.execute(f"SELECT {USAGE_COLUMNS} FROM {self.usage_table}{clause} "
                        "ORDER BY day, key_id", self._p(*params))
            found = cur.fetchall()
        return [UsageRow(as_day(row[0]), int(row[1]),
                         **{name: int(row[2 + i] or 0) for i, name in enumerate(COUNTS)})
                for row in found]

    def list(self, include_inactive: bool = False) -> builtins.list[KeyRecord]:
        """All keys by id; without include_inactive only usable ones (not revoked or expired)."""
        with self._transaction() as cur:
            cur.execute(f"SELECT {self._columns(cur)} FROM {self.table} ORDER BY id")
            rows = cur.fetchall()
        records = [record_from_row(tuple(row)) for row in rows]
        if include_inactive:
            return records
        now = utc_naive()
        return [record for record in records if record.usable(now)]
