"""API keys: what a key is (`records`), how each database spells its SQL (`dialects`), and the
table itself over sqlite3 or pyodbc (`store`)."""

from swimctl.keys.records import (
    DEFAULT_TIER_CAPS,
    TIERS,
    KeyRecord,
    KeyStoreError,
    KeyStoreUnavailable,
    hash_key,
)
from swimctl.keys.store import DEFAULT_TABLE, KEEP, KeyStore, default_db_url

__all__ = [
    "DEFAULT_TABLE",
    "DEFAULT_TIER_CAPS",
    "KEEP",
    "TIERS",
    "KeyRecord",
    "KeyStore",
    "KeyStoreError",
    "KeyStoreUnavailable",
    "default_db_url",
    "hash_key",
]
