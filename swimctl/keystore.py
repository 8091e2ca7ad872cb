"""API keys at rest: the `swim_api_keys` table over DB-API 2.0 (sqlite3 or pyodbc).

Blocking by nature: the hub calls these methods only from worker threads. Keys are stored as
their SHA-256 hex digest; a plain key exists only in the caller's hands at create/rotate time.
All datetimes are naive UTC, because the ODBC drivers drop time zones.

Four SQL dialects share one set of `?`-parameter statements; only DDL, catalogue queries and
a few type details differ. The dialect of an ODBC connection is read from the driver
(SQL_DBMS_NAME), falling back to the connection string's DRIVER.
"""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Final

import attrs
import platformdirs

TIERS: tuple[str, ...] = ("public", "developer", "partner", "system")
TIER_PREFIX: dict[str, str] = {
    "public": "swim_pub_",
    "developer": "swim_dev_",
    "partner": "swim_par_",
    "system": "swim_sys_",
}
DEFAULT_TIER_CAPS: dict[str, int] = {"public": 5, "developer": 50, "partner": 500, "system": 10000}
DEFAULT_TABLE = "swim_api_keys"

COLUMNS = (
    "id, api_key, tier, owner_name, owner_email, description, "
    "expires_at, created_at, last_used_at, is_active"
)

# Column widths of the schema we create; checked before writing so users get a clear error
# instead of a driver-specific truncation failure.
MAX_OWNER = 255
MAX_EMAIL = 255
MAX_DESCRIPTION = 1024

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_HASH = re.compile(r"[0-9a-f]{64}")
# Anything shaped like one of our keys, however short: redacted from every error message.
_KEY_LIKE = re.compile(r"swim_(?:pub|dev|par|sys)_[0-9A-Za-z]*")
_SECRET_ATTR = re.compile(r"(?i)\b(pwd|password)\s*=\s*(\{[^}]*\}|[^;]*)")


class KeyStoreError(Exception):
    """A key-store problem worth one clear line to the user."""


class KeyStoreUnavailable(KeyStoreError):
    """The database cannot be reached or answered with an error: callers must fail closed."""


def hash_key(api_key: str) -> str:
    """SHA-256 hex: the only form of a key the database ever sees."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def generate_key(tier: str) -> str:
    """A tier prefix (so a leaked key is recognisable) plus 256 bits from `secrets`."""
    if tier not in TIER_PREFIX:
        raise KeyStoreError(f"unknown tier {tier!r} (choose from {', '.join(TIERS)})")
    return TIER_PREFIX[tier] + secrets.token_hex(32)


def is_hashed(value: str) -> bool:
    """True for a value that is already a stored hash (64 lower-case hex characters)."""
    return bool(_HASH.fullmatch(value))


def redact(text: str) -> str:
    """Strip anything key-like or password-like from a message meant for logs or users."""
    text = _KEY_LIKE.sub("swim_***", text)
    return _SECRET_ATTR.sub(lambda m: f"{m.group(1)}=***", text)


def utc_naive(moment: dt.datetime | None = None) -> dt.datetime:
    """Naive UTC to whole seconds: the one datetime shape every backend stores faithfully."""
    moment = dt.datetime.now(dt.UTC) if moment is None else moment
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment.replace(microsecond=0)


def _as_datetime(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    if isinstance(value, str) and value.strip():
        parsed = dt.datetime.fromisoformat(value.strip().replace("T", " ").rstrip("Z"))
        return utc_naive(parsed) if parsed.tzinfo else parsed
    return None


def _as_bool(value: Any) -> bool:
    """psqlODBC returns BOOLEAN as '1'/'0' text, FreeTDS may return b'\\x01': normalise."""
    if isinstance(value, str):
        return value.strip().lower() in {"1", "t", "true", "y", "yes"}
    if isinstance(value, bytes | bytearray):
        return any(value)
    return bool(value)


def _text(value: Any) -> str | None:
    # CHAR(n) columns come back space-padded on some backends.
    return None if value is None else str(value).rstrip()


@attrs.define(frozen=True)
class KeyRecord:
    """One row of `swim_api_keys`, without the secret."""

    id: int
    tier: str
    owner_name: str
    owner_email: str | None
    description: str | None
    expires_at: dt.datetime | None
    created_at: dt.datetime | None
    last_used_at: dt.datetime | None
    is_active: bool

    def usable(self, now: dt.datetime | None = None) -> bool:
        """Active, of a known tier, and not expired (naive UTC comparison)."""
        now = utc_naive(now)
        if not self.is_active or self.tier not in TIER_PREFIX:
            return False
        return self.expires_at is None or self.expires_at > now

    def status(self, now: dt.datetime | None = None) -> str:
        """One word for operators: active, revoked, expired or bad-tier."""
        if not self.is_active:
            return "revoked"
        if self.tier not in TIER_PREFIX:
            return "bad-tier"
        if self.expires_at is not None and self.expires_at <= utc_naive(now):
            return "expired"
        return "active"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; datetimes as ISO-8601 UTC with `Z`."""

        def iso(moment: dt.datetime | None) -> str | None:
            return None if moment is None else moment.isoformat() + "Z"

        return {
            "id": self.id,
            "tier": self.tier,
            "owner_name": self.owner_name,
            "owner_email": self.owner_email,
            "description": self.description,
            "expires_at": iso(self.expires_at),
            "created_at": iso(self.created_at),
            "last_used_at": iso(self.last_used_at),
            "is_active": self.is_active,
            "status": self.status(),
        }


@attrs.define(frozen=True)
class MigrationReport:
    """What `KeyStore.migrate` did; every count is zero on a second run."""

    created: bool
    widened: bool
    hashed: int
    already_hashed: int
    skipped: int


def default_db_url() -> str:
    env = os.environ.get("SWIM_DB")
    if env:
        return env
    path = Path(platformdirs.user_data_dir("swimctl")) / "keys.db"
    return f"sqlite:///{path}"


def _record(row: tuple[Any, ...]) -> KeyRecord:
    return KeyRecord(
        id=int(row[0]),
        tier=str(row[2]).strip(),
        owner_name=_text(row[3]) or "",
        owner_email=_text(row[4]),
        description=_text(row[5]),
        expires_at=_as_datetime(row[6]),
        created_at=_as_datetime(row[7]),
        last_used_at=_as_datetime(row[8]),
        is_active=_as_bool(row[9]),
    )


# -- dialects ------------------------------------------------------------------------------------


@attrs.define(frozen=True)
class ColumnInfo:
    data_type: str
    max_length: int | None
    nullable: bool


class Dialect:
    """SQL that differs between backends. Table names are validated identifiers, never input."""

    name: str = "generic"
    # How a hashed-key parameter is written in WHERE clauses (SQL Server casts, see there).
    key_param: str = "?"

    def create_table(self, table: str) -> str:
        raise NotImplementedError

    def table_exists_sql(self) -> str:
        raise NotImplementedError

    def column_sql(self) -> str | None:
        """Query (table, column) -> (data_type, max_length, is_nullable); None: no widening."""
        return None

    def widen_sql(self, table: str, column: ColumnInfo) -> str | None:
        return None

    def table_name(self, table: str) -> str:
        """The name as the catalogue stores it."""
        return table

    def param(self, value: Any) -> Any:
        return value


class SQLiteDialect(Dialect):
    """SQLite ignores VARCHAR widths, so an old narrow column never needs widening."""

    name = "sqlite"

    def create_table(self, table: str) -> str:
        return (
            f"CREATE TABLE IF NOT EXISTS {table} ("
            "id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "api_key VARCHAR(64) NOT NULL UNIQUE, "
            "tier VARCHAR(16) NOT NULL, "
            "owner_name VARCHAR(255) NOT NULL, "
            "owner_email VARCHAR(255), "
            "description VARCHAR(1024), "
            "expires_at TIMESTAMP, "
            "created_at TIMESTAMP NOT NULL, "
            "last_used_at TIMESTAMP, "
            "is_active INTEGER NOT NULL DEFAULT 1)"
        )

    def table_exists_sql(self) -> str:
        return "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"


class NativeSQLiteDialect(SQLiteDialect):
    """The stdlib driver: datetimes go in as ISO text (its default adapters are deprecated)."""

    def param(self, value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return value.isoformat(sep=" ")
        return value


class PostgreSQLDialect(Dialect):
    name = "postgresql"

    def create_table(self, table: str) -> str:
        return (
            f"CREATE TABLE IF NOT EXISTS {table} ("
            "id INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
            "api_key VARCHAR(64) NOT NULL UNIQUE, "
            "tier VARCHAR(16) NOT NULL, "
            "owner_name VARCHAR(255) NOT NULL, "
            "owner_email VARCHAR(255), "
            "description VARCHAR(1024), "
            "expires_at TIMESTAMP, "
            "created_at TIMESTAMP NOT NULL, "
            "last_used_at TIMESTAMP, "
            "is_active BOOLEAN NOT NULL DEFAULT TRUE)"
        )

    def table_name(self, table: str) -> str:
        return table.lower()  # unquoted identifiers fold to lower case

    def table_exists_sql(self) -> str:
        return (
            "SELECT 1 FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name = ?"
        )

    def column_sql(self) -> str:
        return (
            "SELECT data_type, character_maximum_length, is_nullable "
            "FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = ? AND column_name = ?"
        )

    def widen_sql(self, table: str, column: ColumnInfo) -> str:
        return f"ALTER TABLE {table} ALTER COLUMN api_key TYPE VARCHAR(64)"


class MariaDBDialect(Dialect):
    """MariaDB and MySQL. DATETIME (not TIMESTAMP) so the server never shifts time zones."""

    name = "mariadb"

    def create_table(self, table: str) -> str:
        return (
            f"CREATE TABLE IF NOT EXISTS {table} ("
            "id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
            "api_key VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, "
            "tier VARCHAR(16) NOT NULL, "
            "owner_name VARCHAR(255) NOT NULL, "
            "owner_email VARCHAR(255) NULL, "
            "description VARCHAR(1024) NULL, "
            "expires_at DATETIME NULL, "
            "created_at DATETIME NOT NULL, "
            "last_used_at DATETIME NULL, "
            "is_active TINYINT(1) NOT NULL DEFAULT 1, "
            f"UNIQUE KEY uq_{table}_api_key (api_key)"
            ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )

    def table_exists_sql(self) -> str:
        return (
            "SELECT 1 FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_name = ?"
        )

    def column_sql(self) -> str:
        return (
            "SELECT data_type, character_maximum_length, is_nullable "
            "FROM information_schema.columns WHERE table_schema = DATABASE() "
            "AND table_name = ? AND column_name = ?"
        )

    def widen_sql(self, table: str, column: ColumnInfo) -> str:
        # MODIFY restates the whole column: keep its nullability; indexes are kept.
        null = "NULL" if column.nullable else "NOT NULL"
        return (
            f"ALTER TABLE {table} MODIFY api_key VARCHAR(64) "
            f"CHARACTER SET ascii COLLATE ascii_bin {null}"
        )


class SQLServerDialect(Dialect):
    """SQL Server / Azure SQL via ODBC Driver 18 or FreeTDS (use TDS_Version=7.4 for DATETIME2).

    pyodbc sends str as NVARCHAR; comparing that with a VARCHAR column converts the column and
    scans the index, so key parameters are cast to VARCHAR(64) for an index seek.
    """

    name = "mssql"
    key_param = "CAST(? AS VARCHAR(64))"

    def create_table(self, table: str) -> str:
        return (
            f"IF OBJECT_ID(N'{table}', N'U') IS NULL "
            f"CREATE TABLE {table} ("
            "id INT IDENTITY(1,1) NOT NULL PRIMARY KEY, "
            f"api_key VARCHAR(64) NOT NULL CONSTRAINT uq_{table}_api_key UNIQUE, "
            "tier VARCHAR(16) NOT NULL, "
            "owner_name NVARCHAR(255) NOT NULL, "
            "owner_email NVARCHAR(255) NULL, "
            "description NVARCHAR(1024) NULL, "
            "expires_at DATETIME2(0) NULL, "
            "created_at DATETIME2(0) NOT NULL, "
            "last_used_at DATETIME2(0) NULL, "
            f"is_active BIT NOT NULL CONSTRAINT df_{table}_is_active DEFAULT 1)"
        )

    def table_exists_sql(self) -> str:
        return (
            "SELECT 1 FROM INFORMATION_SCHEMA.TABLES "
            "WHERE TABLE_SCHEMA = SCHEMA_NAME() AND TABLE_NAME = ?"
        )

    def column_sql(self) -> str:
        return (
            "SELECT DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, IS_NULLABLE "
            "FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = SCHEMA_NAME() "
            "AND TABLE_NAME = ? AND COLUMN_NAME = ?"
        )

    def widen_sql(self, table: str, column: ColumnInfo) -> str | None:
        # Growing a (n)(var)char is allowed even under a UNIQUE index, provided the type and
        # nullability stay as they are; any other type we leave to the DBA.
        kind = column.data_type.lower()
        if kind not in {"varchar", "nvarchar", "char", "nchar"}:
            return None
        null = "NULL" if column.nullable else "NOT NULL"
        return f"ALTER TABLE {table} ALTER COLUMN api_key {kind.upper()}(64) {null}"


DIALECTS: dict[str, type[Dialect]] = {
    "sqlite": SQLiteDialect,
    "postgresql": PostgreSQLDialect,
    "mariadb": MariaDBDialect,
    "mssql": SQLServerDialect,
}


def detect_dialect(dbms_name: str | None, connection_string: str = "") -> Dialect:
    """Pick the dialect from SQL_DBMS_NAME, else from the DRIVER= of the connection string."""
    for text in (dbms_name or "", _driver_of(connection_string)):
        low = text.lower()
        if "sql server" in low or "freetds" in low or "tds" in low.split():
            return SQLServerDialect()
        if "postgres" in low or "psql" in low:
            return PostgreSQLDialect()
        if "mariadb" in low or "mysql" in low:
            return MariaDBDialect()
        if "sqlite" in low:
            return SQLiteDialect()
    raise KeyStoreError(
        f"unsupported database {dbms_name or '(unknown)'!r}: "
        "use SQLite, PostgreSQL, MariaDB/MySQL or SQL Server"
    )


def _driver_of(connection_string: str) -> str:
    match = re.search(r"(?i)(?:^|;)\s*driver\s*=\s*(\{[^}]*\}|[^;]*)", connection_string)
    return match.group(1).strip("{} ") if match else ""


def _describe(exc: BaseException) -> str:
    """One redacted line about a driver error: enough for an operator, never a secret."""
    args = getattr(exc, "args", ())
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
    method is one transaction. `table` exists for tests and side-by-side deployments.
    """

    def __init__(self, url: str, *, table: str = DEFAULT_TABLE) -> None:
        self.url = url
        if not _IDENT.fullmatch(table):
            raise KeyStoreError(f"invalid table name {table!r}")
        self.table = table
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

    # -- connections -------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self.kind == "sqlite":
            path = Path(self._target)
            if str(path) != ":memory:":
                path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), timeout=5.0, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
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
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
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
            raise KeyStoreUnavailable(f"key store unavailable: {_describe(exc)}") from exc
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
            raise KeyStoreUnavailable(f"key store unavailable: {_describe(exc)}") from exc
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

    def _table_exists(self, cur: Any) -> bool:
        d = self.dialect
        cur.execute(d.table_exists_sql(), (d.table_name(self.table),))
        return cur.fetchone() is not None

    def init_db(self) -> bool:
        """Create the key table if it is missing; True when this call created it."""
        try:
            with self._transaction() as cur:
                if self._table_exists(cur):
                    self._ready = True
                    return False
                cur.execute(self.dialect.create_table(self.table))
        except KeyStoreUnavailable:
            # Lost a creation race with another process? Then the table is there now.
            with self._transaction() as cur:
                if not self._table_exists(cur):
                    raise
            self._ready = True
            return False
        self._ready = True
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
        return ColumnInfo(str(row[0]), length, _text(row[2]) == "YES")

    def migrate(self) -> MigrationReport:
        """Bring an existing table to the current scheme, in place and idempotently.

        Widens a too-narrow api_key column, then replaces every plain-text key with its hash.
        A 64-character lower-case hex value is taken as already hashed; empty values are
        skipped. Presented keys keep working because lookups hash what the client sends.
        """
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
                text = _text(value) if value is not None else None
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
        return MigrationReport(created, widened, hashed, already, skipped)

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
                f"SELECT {COLUMNS} FROM {self.table} WHERE api_key = {self.dialect.key_param}",
                (hash_key(api_key),),
            )
            row = cur.fetchone()
        return _record(tuple(row)) if row else None

    def get(self, key_id: int) -> KeyRecord | None:
        with self._transaction() as cur:
            cur.execute(f"SELECT {COLUMNS} FROM {self.table} WHERE id = ?", (int(key_id),))
            row = cur.fetchone()
        return _record(tuple(row)) if row else None

    def revoke(self, key_id: int) -> bool:
        """Deactivate a key; True when it exists (revoking twice is harmless)."""
        with self._transaction() as cur:
            cur.execute(
                f"UPDATE {self.table} SET is_active = ? WHERE id = ?", (0, int(key_id))
            )
            if cur.rowcount and cur.rowcount > 0:
                return True
            # MariaDB counts changed rows, not matched ones: ask directly.
            cur.execute(f"SELECT 1 FROM {self.table} WHERE id = ?", (int(key_id),))
            return cur.fetchone() is not None

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
            cur.execute(f"SELECT {COLUMNS} FROM {self.table} WHERE id = ?", (int(key_id),))
            row = cur.fetchone()
            if row is None:
                raise KeyStoreError(f"no key with id {key_id}")
            old = _record(tuple(row))
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
            cur.execute(
                f"UPDATE {self.table} SET is_active = ? WHERE id = ? AND is_active = ?",
                (0, int(key_id), 1),
            )
            if cur.rowcount == 0:
                raise KeyStoreError(f"key {key_id} was changed by someone else; try again")
            return self._insert(
                cur, old.tier, old.owner_name, old.owner_email, old.description, expires
            )

    def list(self, include_inactive: bool = False) -> builtins.list[KeyRecord]:
        """All keys by id; without include_inactive only usable ones (not revoked or expired)."""
        with self._transaction() as cur:
            cur.execute(f"SELECT {COLUMNS} FROM {self.table} ORDER BY id")
            rows = cur.fetchall()
        records = [_record(tuple(row)) for row in rows]
        if include_inactive:
            return records
        now = utc_naive()
        return [record for record in records if record.usable(now)]
