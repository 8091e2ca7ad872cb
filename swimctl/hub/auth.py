"""Key checks for the hub: cached, off the event loop, and failing closed.

Lookups run in worker threads behind a small limiter, so neither a slow database nor a flood of
made-up keys can stall the event loop or spawn unbounded threads. Positive results live at most
`key_cache_ttl` seconds, unknown keys `key_negative_ttl`; every live connection's key is
re-read every `key_revalidate_interval` seconds, so a revoked or expired key is cut off in time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import trio

from swimctl.hub.config import HubConfig
from swimctl.keys.records import KeyRecord, KeyStoreUnavailable, hash_key, utc_naive
from swimctl.keys.store import KeyStore

if TYPE_CHECKING:
    from swimctl.hub.engine import Hub

log = logging.getLogger("swimctl.auth")

T = TypeVar("T")

MAX_KEY_LENGTH = 256
DB_TIMEOUT = 5.0


class AuthFailed(Exception):
    """The key is refused; the message is safe to show the client (it never holds the key)."""


@attrs.define
class _Cached:
    record: KeyRecord | None
    until: float


class Authenticator:
    def __init__(self, store: KeyStore, config: HubConfig) -> None:
        self.store = store
        self.config = config
        self.limiter = trio.CapacityLimiter(4)
        self._cache: dict[str, _Cached] = {}
        self._hash_of: dict[int, str] = {}
        self._touched: dict[int, float] = {}
        self.available = True  # last known state of the key store, for /healthz

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        with trio.fail_after(DB_TIMEOUT):
            return await trio.to_thread.run_sync(
                fn, *args, limiter=self.limiter, abandon_on_cancel=True
            )

    async def authenticate(self, api_key: str | None) -> KeyRecord:
        if not api_key:
            raise AuthFailed("missing API key")
        if len(api_key) > MAX_KEY_LENGTH:
            raise AuthFailed("invalid API key")
        digest = hash_key(api_key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached.until > now:
            record = cached.record
        else:
            try:
                record = await self._call(self.store.lookup, api_key)
            except (KeyStoreUnavailable, trio.TooSlowError):
                self.available = False
                log.warning("key store unavailable: refusing new connections until it returns")
                raise AuthFailed("key store unavailable") from None
            self.available = True
            ttl = self.config.key_cache_ttl if record is not None else self.config.key_negative_ttl
            self._cache[digest] = _Cached(record, time.monotonic() + ttl)
            if record is not None:
                self._hash_of[record.id] = digest
            self._prune(now)
        if record is None:
            raise AuthFailed("invalid API key")
        if not record.is_active:
            raise AuthFailed("API key revoked")
        if not record.usable():
            raise AuthFailed("API key expired" if record.tier in ("public", "developer",
                             "partner", "system") else "API key has an unknown tier")
        await self._touch(record.id)
        return record

    def _prune(self, now: float) -> None:
        if len(self._cache) > 50_000:
            for digest in [d for d, c in self._cache.items() if c.until <= now]:
                del self._cache[digest]

    async def revalidate(self, hub: Hub) -> None:
        """Re-read each key with live connections; close those whose key is gone."""
        for key_id in list(hub.by_key):
            try:
                record = await self._call(self.store.get, key_id)
            except (KeyStoreUnavailable, trio.TooSlowError):
                # Open connections stay while the store is down; new ones are refused.
                self.available = False
                return
            self.available = True
            digest = self._hash_of.get(key_id)
            if digest is not None:
                self._cache[digest] = _Cached(record, time.monotonic() + self.config.key_cache_ttl)
            if record is None or not record.usable():
                reason = "API key revoked" if record is None or not record.is_active \
                    else "API key expired"
                closed = hub.revoke_key(key_id, reason)
                log.info("key id %s no longer valid (%s): closed %d connection(s)",
                         key_id, reason, closed)
            else:
                await self._touch(key_id)

    async def _touch(self, key_id: int) -> None:
        """`last_used_at` at most once a minute per key, off the event loop."""
        now = time.monotonic()
        if now - self._touched.get(key_id, -1e9) < self.config.key_touch_interval:
            return
        self._touched[key_id] = now
        try:
            await self._call(self.store.touch, key_id, utc_naive())
        except (KeyStoreUnavailable, trio.TooSlowError):
            self.available = False

    async def run(self, hub: Hub) -> None:
        while True:
            await trio.sleep(self.config.key_revalidate_interval)
            await self.revalidate(hub)

    async def check_available(self) -> bool:
        """A cheap probe for health checks."""
        try:
            await self._call(self.store.get, 0)
        except (KeyStoreUnavailable, trio.TooSlowError):
            self.available = False
        else:
            self.available = True
        return self.available
