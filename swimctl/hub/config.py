"""Hub settings in one attrs class, filled by `swimctl serve` (flags and SWIM_* variables)."""

from __future__ import annotations

import attrs

from swimctl.keys.records import DEFAULT_TIER_CAPS

WS_PATH = "/api/swim/v1/ws"
DEFAULT_PORT = 8090


@attrs.define
class HubConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    db_url: str = ""
    key_table: str = "swim_api_keys"
    heartbeat_interval: float = 30.0
    history_size: int = 100_000
    history_age: float = 3600.0
    # Payload bytes held for resume (0: no byte bound); the oldest events go first.
    history_bytes: int = 64 * 1024 * 1024
    # Where the embedded log keeps its journal across restarts (stream/durable.py); None:
    # history in memory only, a restart starts a new epoch.
    state_dir: str | None = None
    tier_caps: dict[str, int] = attrs.field(factory=lambda: dict(DEFAULT_TIER_CAPS))
    # Per-connection bound on unsent bytes; past it the client is closed with 4008.
    outbox_limit: int = 4 * 1024 * 1024
    max_message_bytes: int = 64 * 1024
    # No frame the hub sends is larger (header included): PERTI's C# SDK reads into a 64 KiB
    # buffer. A bigger positions batch goes out in parts (core/batches.py).
    max_frame_bytes: int = 64 * 1024
    # Relayed event families added to the built-in table (serve --family).
    families: tuple[str, ...] = ()
    rate_per_second: float = 10.0
    rate_burst: int = 20
    # System-tier keys belong to the operator's own publishers (replay, TMI tools, bridges):
    # they may publish at feed speed; everyone else gets the protocol's 10/s.
    system_rate_per_second: float = 2000.0
    system_rate_burst: int = 4000
    # Protocol violations tolerated inside `violation_window` seconds before close 4003.
    violation_limit: int = 20
    violation_window: float = 60.0
    # Events published within this many seconds of the last fan-out are written together
    # (one system call per client per run); 0 writes every event on its own.
    coalesce_window: float = 0.001
    # Seconds for the request line and headers to arrive whole (TLS: 2 s more, its own
    # handshake comes first); a half-sent request holds a socket and a task no longer.
    handshake_timeout: float = 3.0
    # Handshakes with an incomplete request head allowed at once per source address (IPv4,
    # IPv6 /64); more connections from it are closed unread. 0 turns the cap off.
    handshakes_per_address: int = 64
    close_timeout: float = 2.0
    # Answer a client's permessage-deflate offer (wire/deflate.py): each event is compressed
    # once and the same frame goes to every client that negotiated it.
    compression: bool = True
    dedupe_size: int = 100_000
    # Key-cache policy (seconds): positives at most 10 s (and never past the revalidation
    # interval, so revocation stops new connections as fast as open ones), unknown keys briefly.
    key_cache_ttl: float = 10.0
    key_negative_ttl: float = 5.0
    key_revalidate_interval: float = 10.0
    key_touch_interval: float = 60.0
    # Per-key usage history goes to the key database at most this often (seconds), and once
    # more at shutdown (hub/usage.py).
    usage_interval: float = 60.0
    tls_cert: str | None = None
    tls_key: str | None = None
    # A shared event log (redis://HOST:PORT/DB): several hubs behave as one. None: the
    # in-process log, this hub alone.
    broker: str | None = None
    # Seconds a source's lease (feed, events file) outlives its leader's last renewal: a dead
    # leader is replaced within this plus one feed interval.
    feed_lease_ttl: float = 30.0
    # Failed authentications allowed per source address (IPv4, or IPv6 /64): a bucket of
    # `auth_fail_burst`, refilled at `auth_fail_rate` per second; 0 turns the throttle off.
    auth_fail_burst: int = 20
    auth_fail_rate: float = 1.0
    # Accept keys of an older deployment (migrated plain text) that lack the swim_xxx_ format.
    legacy_keys: bool = False
