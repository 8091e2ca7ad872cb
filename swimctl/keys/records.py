"""What a key is, without any database: tiers, the key format, hashing, and one row as a record.

Pure. Keys are stored as their SHA-256 hex digest; a plain key exists only in the caller's
hands at create/rotate time. All datetimes are naive UTC, because the ODBC drivers drop time
zones.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from typing import Any

import attrs

TIERS: tuple[str, ...] = ("public", "developer", "partner", "system")
TIER_PREFIX: dict[str, str] = {
    "public": "swim_pub_",
    "developer": "swim_dev_",
    "partner": "swim_par_",
    "system": "swim_sys_",
}
DEFAULT_TIER_CAPS: dict[str, int] = {"public": 5, "developer": 50, "partner": 500, "system": 10000}

# Column widths of the schema we create; checked before writing so users get a clear error
# instead of a driver-specific truncation failure.
MAX_OWNER = 255
MAX_EMAIL = 255
MAX_DESCRIPTION = 1024

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


# The shape of every key `generate_key` makes; anything else is refused before a lookup.
_KEY = re.compile(r"swim_(?:pub|dev|par|sys)_[0-9a-f]{64}")
# Keys of an older deployment, kept working by `keys migrate`: any printable ASCII, no spaces.
_LEGACY_KEY = re.compile(r"[\x21-\x7e]{1,256}")


def looks_like_key(text: str, *, legacy: bool = False) -> bool:
    """Whether `text` could be a key at all: the cheap check before any hashing or lookup.
    With `legacy`, keys of an older deployment (any printable ASCII up to 256) pass too."""
    return (_LEGACY_KEY if legacy else _KEY).fullmatch(text) is not None


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


def as_datetime(value: Any) -> dt.datetime | None:
    """A datetime column as the driver returned it (datetime, date or text) to naive UTC."""
    if value is None or isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    if isinstance(value, str) and value.strip():
        parsed = dt.datetime.fromisoformat(value.strip().replace("T", " ").rstrip("Z"))
        return utc_naive(parsed) if parsed.tzinfo else parsed
    return None


def as_day(value: Any) -> dt.date:
    """A DATE column as the driver returned it (date, datetime or `YYYY-MM-DD` text)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value).strip()[:10])


def as_bool(value: Any) -> bool:
    """psqlODBC returns BOOLEAN as '1'/'0' text, FreeTDS may return b'\\x01': normalise."""
    if isinstance(value, str):
        return value.strip().lower() in {"1", "t", "true", "y", "yes"}
    if isinstance(value, bytes | bytearray):
        return any(value)
    return bool(value)


def as_text(value: Any) -> str | None:
    """CHAR(n) columns come back space-padded on some backends."""
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
    revoked_at: dt.datetime | None = None  # None also where the table does not record it

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
            "revoked_at": iso(self.revoked_at),
            "status": self.status(),
        }


def record_from_row(row: tuple[Any, ...]) -> KeyRecord:
    """A row selected as `dialects.KEY_COLUMNS` (then `revoked_at`, when selected) to a
    record."""
    return KeyRecord(
        id=int(row[0]),
        tier=str(row[2]).strip(),
        owner_name=as_text(row[3]) or "",
        owner_email=as_text(row[4]),
        description=as_text(row[5]),
        expires_at=as_datetime(row[6]),
        created_at=as_datetime(row[7]),
        last_used_at=as_datetime(row[8]),
        is_active=as_bool(row[9]),
        revoked_at=as_datetime(row[10]) if len(row) > 10 else None,
    )


@attrs.define(frozen=True)
class MigrationReport:
    """What `KeyStore.migrate` did; every count is zero on a second run."""

    created: bool
    widened: bool
    hashed: int
    already_hashed: int
    skipped: int
    added_columns: tuple[str, ...] = ()
    usage_created: bool = False  # the usage table (swim_api_usage) was made by this run
