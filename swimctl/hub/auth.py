"""Key checks for the hub: cached, off the event loop, and failing closed.

Lookups run in worker threads behind a small limiter, so neither a slow database nor a flood of
made-up keys can stall the event loop or spawn unbounded threads. Positive results live at most
`key_cache_ttl` seconds and never longer than `key_revalidate_interval` (so a revoked key stops
opening connections as quickly as its open connections are cut), unknown keys
`key_negative_ttl`; every live connection's key is re-read every `key_revalidate_interval`.

Against a flood: a key without the key format is refused before any lookup; an address whose
failed authentications run past its budget is refused before any lookup too, unless the key is
one that has authenticated before (so valid clients behind the same address are not locked
out; a key new to the hub waits for the budget to refill); and refusals reach the log as one
summary line per interval, not a line each.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import trio

from swimctl.core.refusals import FailureThrottle, RefusalSummary, address_key
from swimctl.hub.config import HubConfig
from swimctl.keys.records import (
    KeyRecord,
    KeyStoreUnavailable,
    hash_key,
    looks_like_key,
    utc_naive,
)
from swimctl.keys.store import KeyStore

if TYPE_CHECKING:
    from swimctl.hub.engine import Hub

log = logging.getLogger("swimctl.auth")

T = TypeVar("T")

MAX_KEY_LENGTH = 256
DB_TIMEOUT = 5.0


SUMMARY_INTERVAL = 10.0  # seconds between refusal summaries in the log
KNOWN_GOOD_LIMIT = 100_000  # key digests remembered as once valid (about 10 MB at most)


class AuthFailed(Exception):
    """The key is refused; the message is safe to show the client (it never holds the key).
    `reason` names the kind of refusal for metrics and the log summary; `counts` says whether
    it is the client's failure (and so spends its address's budget)."""

    def __init__(self, message: str, reason: str = "unknown key", counts: bool = True,
                 record: KeyRecord | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.counts = counts
        self.record = record  # the key's record when it exists (revoked, expired): usage


def peer_host(stream: Any) -> str | None:
    """The remote address of a (possibly TLS-wrapped) trio stream, or None."""
    while stream is not None and not isinstance(stream, trio.SocketStream):
        stream = getattr(stream, "transport_stream", None)
    if stream is None:
        return None
    try:
        return str(stream.socket.getpeername()[0])
    except (OSError, IndexError, TypeError):
        return None


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
        self.unavailable_reason = ""
        self.throttle = FailureThrottle(rate=config.auth_fail_rate, burst=config.auth_fail_burst)
        self.refusals = RefusalSummary()
        self.lookups = 0  # key-store lookups made for handshakes (for /metrics)
        # Owners of the keys seen (for `swimctl top`), and who hears of a refused key that
        # exists (usage history counts it against that key).
        self.owners: dict[int, str] = {}
        self.on_key_refused: Callable[[KeyRecord], None] | None = None
        # Digests of keys that authenticated since the hub started (bounded, oldest dropped):
        # a throttled address may still have these looked up, so valid clients sharing an
        # address with an attacker (NAT, a proxy, the same host) are not locked out.
        self._known_good: dict[str, None] = {}
        self._summary_at = time.monotonic()

    @property
    def positive_ttl(self) -> float:
        """No longer than revalidation: a revoked key then stops opening new connections
        within the same interval that closes its open ones."""
        return min(self.config.key_cache_ttl, self.config.key_revalidate_interval)

    def _store_down(self, exc: BaseException) -> None:
        if self.available:
            log.warning("key store unavailable: refusing new connections until it returns")
        self.available = False
        self.unavailable_reason = str(exc) if isinstance(exc, KeyStoreUnavailable) \
            else f"no answer within {DB_TIMEOUT:g} s"

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        with trio.fail_after(DB_TIMEOUT):
            return await trio.to_thread.run_sync(
                fn, *args, limiter=self.limiter, abandon_on_cancel=True
            )

    async def authenticate(self, api_key: str | None, peer: str | None = None) -> KeyRecord:
        """The record of a usable key, or AuthFailed. `peer` is the client's address: failures
        are counted (and throttled) per address, and summarised in the log."""
        source = address_key(peer) if peer else None
        try:
            return await self._authenticate(api_key, source)
        except AuthFailed as exc:
            self.refusals.note(exc.reason, source)
            if exc.counts and source is not None:
                self.throttle.failed(source)
            if exc.record is not None and self.on_key_refused is not None:
                self.on_key_refused(exc.record)
            raise

    async def _authenticate(self, api_key: str | None, source: str | None) -> KeyRecord:
        if not api_key:
            raise AuthFailed("missing API key", "missing key")
        if len(api_key) > MAX_KEY_LENGTH or not looks_like_key(
            api_key, legacy=self.config.legacy_keys
        ):
            raise AuthFailed("invalid API key", "malformed key")
        digest = hash_key(api_key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached.until > now:
            record = cached.record
        else:
            if source is not None and digest not in self._known_good \
                    and not self.throttle.allows(source):
                wait = math.ceil(self.throttle.retry_after(source))
                raise AuthFailed(f"too many failed authentications from this address; retry in "
                                 f"{wait} s", "throttled", counts=False)
            self.lookups += 1
            try:
                record = await self._call(self.store.lookup, api_key)
            except (KeyStoreUnavailable, trio.TooSlowError) as exc:
                self._store_down(exc)
                raise AuthFailed("key store unavailable", "key store unavailable",
                                 counts=False) from None
            self.available = True
            ttl = self.positive_ttl if record is not None else self.config.key_negative_ttl
            self._cache[digest] = _Cached(record, time.monotonic() + ttl)
            if record is not None:
                self._hash_of[record.id] = digest
            self._prune(now)
        if record is None:
            raise AuthFailed("invalid API key", "unknown key")
        self.owners[record.id] = record.owner_name
        if not record.is_active:
            raise AuthFailed("API key revoked", "revoked key", record=record)
        if not record.usable():
            if record.tier in ("public", "developer", "partner", "system"):
                raise AuthFailed("API key expired", "expired key", record=record)
            raise AuthFailed("API key has an unknown tier", "unknown tier", record=record)
        self._known_good.pop(digest, None)
        self._known_good[digest] = None
        if len(self._known_good) > KNOWN_GOOD_LIMIT:
            del self._known_good[next(iter(self._known_good))]
        await self._touch(record.id)
        return record

    def log_refusals(self, force: bool = False) -> None:
        """One line for the refusals since the last one, at most every SUMMARY_INTERVAL."""
        now = time.monotonic()
        if not force and now - self._summary_at < SUMMARY_INTERVAL:
            return
        line = self.refusals.flush(now - self._summary_at)
        self._summary_at = now
        if line is not None:
            log.info("%s", line)

    def _prune(self, now: float) -> None:
        if len(self._cache) > 50_000:
            for digest in [d for d, c in self._cache.items() if c.until <= now]:
                del self._cache[digest]

    async def revalidate(self, hub: Hub) -> None:
        """Re-read each key with live connections; close those whose key is gone."""
        for key_id in list(hub.by_key):
            try:
                record = await self._call(self.store.get, key_id)
            except (KeyStoreUnavailable, trio.TooSlowError) as exc:
                # Open connections stay while the store is down; new ones are refused.
                self._store_down(exc)
                return
            self.available = True
            digest = self._hash_of.get(key_id)
            if digest is not None:
                self._cache[digest] = _Cached(record, time.monotonic() + self.positive_ttl)
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
        except (KeyStoreUnavailable, trio.TooSlowError) as exc:
            # Bookkeeping only: a write can fail (a full disk) while key checks, which only
            # read, still work. A store that is really down shows at the next lookup.
            log.debug("could not record last use of key id %s: %s", key_id, exc)

    async def run(self, hub: Hub) -> None:
        """Revalidation and the refusal summary, each on its own cadence, until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._revalidate_loop, hub)
            nursery.start_soon(self._summary_loop)

    async def _revalidate_loop(self, hub: Hub) -> None:
        while True:
            await trio.sleep(self.config.key_revalidate_interval)
            await self.revalidate(hub)
            # Also when no key is connected: notices a key database replaced or deleted.
            await self.check_available()

    async def _summary_loop(self) -> None:
        try:
            while True:
                await trio.sleep(SUMMARY_INTERVAL)
                self.log_refusals()
        finally:
            self.log_refusals(force=True)  # what the last interval refused, at shutdown

    async def check_available(self) -> bool:
        """A cheap probe for health checks."""
        try:
            await self._call(self.store.get, 0)
        except (KeyStoreUnavailable, trio.TooSlowError) as exc:
            self._store_down(exc)
        else:
            self.available = True
        return self.available
