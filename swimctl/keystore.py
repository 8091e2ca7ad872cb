"""API keys at rest: the `swim_api_keys` table over DB-API 2.0 (sqlite3 or pyodbc).

Blocking by nature: the hub calls these methods only from worker threads. Keys are stored as
their SHA-256 hex digest; a plain key exists only in the caller's hands at create/rotate time.
All datetimes are naive UTC, because the ODBC drivers drop time zones.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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

COLUMNS = (
    "id, api_key, tier, owner_name, owner_email, description, "
    "expires_at, created_at, last_used_at, is_active"
)


class KeyStoreError(Exception):
    """A key-store problem worth one clear line to the user."""


class KeyStoreUnavailable(KeyStoreError):
    """The database cannot be reached or answered with an error: callers must fail closed."""


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def generate_key(tier: str) -> str:
    if tier not in TIER_PREFIX:
        raise KeyStoreError(f"unknown tier {tier!r} (choose from {', '.join(TIERS)})")
    return TIER_PREFIX[tier] + secrets.token_hex(32)


def utc_naive(moment: dt.datetime | None = None) -> dt.datetime:
    moment = dt.datetime.now(dt.UTC) if moment is None else moment
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment.replace(microsecond=0)


def _as_datetime(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and value:
        return dt.datetime.fromisoformat(value.replace("T", " ").rstrip("Z"))
    return None


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
        owner_name=row[3] or "",
        owner_email=row[4],
        description=row[5],
        expires_at=_as_datetime(row[6]),
        created_at=_as_datetime(row[7]),
        last_used_at=_as_datetime(row[8]),
        is_active=bool(row[9]),
    )


class KeyStore:
    """The key table behind one database URL: `sqlite:///PATH` or `odbc:<connection string>`.

    One connection per thread (DB-API connections are not thread-safe); a failed call drops the
    thread's connection so the next call reconnects — recovery needs no restart.
    """

    def __init__(self, url: str) -> None:
        self.url = url
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
        self._local = threading.local()

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
                "ODBC support needs pyodbc and the system libodbc (pip install 'swimctl[odbc]')"
            ) from exc
        return pyodbc.connect(self._target, timeout=5, autocommit=False)

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
            try:
                conn.close()
            except Exception:
                pass

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        try:
            conn = self._conn()
            cur = conn.cursor()
            try:
                yield cur
                conn.commit()
            finally:
                cur.close()
        except KeyStoreError:
            raise
        except Exception as exc:
            self._drop()
            raise KeyStoreUnavailable(f"key store unavailable: {type(exc).__name__}") from exc

    def close(self) -> None:
        self._drop()

    # -- schema ------------------------------------------------------------------------------

    def init_db(self) -> None:
        with self._cursor() as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS swim_api_keys ("
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

    # -- operations --------------------------------------------------------------------------

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
        api_key = generate_key(tier)
        created = utc_naive()
        expires = utc_naive(expires_at) if expires_at is not None else None
        self.init_db()
        with self._cursor() as cur:
            cur.execute(
                "INSERT INTO swim_api_keys (api_key, tier, owner_name, owner_email, description, "
                "expires_at, created_at, is_active) VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
                (hash_key(api_key), tier, owner_name, owner_email, description, expires, created),
            )
            cur.execute("SELECT id FROM swim_api_keys WHERE api_key = ?", (hash_key(api_key),))
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

    def lookup(self, api_key: str) -> KeyRecord | None:
        """The record for a presented key, or None when no such key exists."""
        with self._cursor() as cur:
            cur.execute(
                f"SELECT {COLUMNS} FROM swim_api_keys WHERE api_key = ?", (hash_key(api_key),)
            )
            row = cur.fetchone()
        return _record(tuple(row)) if row else None

    def get(self, key_id: int) -> KeyRecord | None:
        with self._cursor() as cur:
            cur.execute(f"SELECT {COLUMNS} FROM swim_api_keys WHERE id = ?", (key_id,))
            row = cur.fetchone()
        return _record(tuple(row)) if row else None

    def revoke(self, key_id: int) -> bool:
        with self._cursor() as cur:
            cur.execute("UPDATE swim_api_keys SET is_active = 0 WHERE id = ?", (key_id,))
            return bool(cur.rowcount)

    def touch(self, key_id: int, when: dt.datetime | None = None) -> None:
        with self._cursor() as cur:
            cur.execute(
                "UPDATE swim_api_keys SET last_used_at = ? WHERE id = ?", (utc_naive(when), key_id)
            )
