"""Wires the hub's parts together under one nursery: listener, heartbeat, key revalidation,
TMI expiry and event sources. `swimctl serve` runs this; tests run it in-process."""

from __future__ import annotations

import contextlib
import logging
import secrets
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import attrs
import trio

from swimctl.hub.accept import raise_open_files_limit
from swimctl.hub.auth import Authenticator
from swimctl.hub.config import HubConfig
from swimctl.hub.engine import Hub
from swimctl.hub.health import Condition, Watched
from swimctl.hub.leadership import Leadership, SoleLeader
from swimctl.hub.report import HubReport
from swimctl.hub.seats import LocalSeats, Seats
from swimctl.hub.server import HubServer
from swimctl.hub.usage import UsageMeter
from swimctl.keys import KeyStore, KeyStoreError
from swimctl.stream.durable import DurableLog

if TYPE_CHECKING:
    from swimctl.stream.redis import RedisLog

log = logging.getLogger("swimctl.service")

SHUTDOWN_GRACE = 1.2  # seconds clients get to receive close 1001 (the process exits within 2 s)
# With a broker, a stopping hub closes its clients over this many seconds, in waves, so they
# do not all reconnect to one surviving hub at the same instant (a rolling restart).
DRAIN_SECONDS = 5.0


@attrs.define
class ServeOptions:
    config: HubConfig
    events_file: str | None = None
    feed: str | None = None
    feed_interval: float = 15.0
    feed_loop: bool = False
    feed_as_live: bool = False  # recorded snapshots shown as happening now
    sim: Any = None  # SimConfig of `--feed sim` (swimctl.core.sim)
    record_dir: str | None = None
    metrics_port: int | None = None
    handle_signals: bool = False
    load_geography: bool = True
    on_ready: Callable[[ServiceHandle], Awaitable[None]] | None = None


@attrs.define
class ServiceHandle:
    """What a started service hands back: where it listens and its live parts."""

    url: str
    hub: Hub
    server: HubServer
    auth: Authenticator
    cancel_scope: trio.CancelScope
    extras: dict[str, Any] = attrs.field(factory=dict)

    stopper: Stopper | None = None

    async def shutdown(self, grace: float = SHUTDOWN_GRACE) -> None:
        if self.stopper is not None:
            await self.stopper.stop(self.cancel_scope, grace)
        else:
            await graceful_shutdown(self.hub, self.cancel_scope, grace)


async def graceful_shutdown(hub: Hub, scope: trio.CancelScope, grace: float) -> None:
    """Every client gets close 1001, then everything stops."""
    hub.shutdown()
    with trio.move_on_after(grace):
        await hub.clients_gone()
    scope.cancel()


@attrs.define
class Stopper:
    """How this hub stops, filled in as its parts start. Alone: every client gets 1001 at
    once. On a broker (drain > 0): accept no more, hand the sources' leases over at once, and
    close the clients in waves over `drain` seconds, so they spread over the other hubs."""

    hub: Hub
    server: HubServer
    leases: list[Leadership] = attrs.field(factory=list)
    drain: float = 0.0
    _draining: trio.CancelScope = attrs.field(factory=trio.CancelScope)

    async def stop(self, scope: trio.CancelScope, grace: float = SHUTDOWN_GRACE) -> None:
        if self.drain <= 0:
            await graceful_shutdown(self.hub, scope, grace)
            return
        self.server.accepts.stop()
        for lease in self.leases:
            await lease.release()
        with self._draining:
            await self.hub.shutdown_in_waves(self.drain)
        self.hub.shutdown()  # whoever a cut-short drain left
        with trio.move_on_after(grace):
            await self.hub.clients_gone()
        scope.cancel()

    def hurry(self) -> None:
        """A second signal: close whoever is left now rather than over the drain."""
        self._draining.cancel()


def ssl_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


async def _load_airport_artcc() -> Callable[[str], str | None] | None:
    try:
        from swimctl.core.geo import load_geo
    except ImportError:
        return None
    try:
        geo = await trio.to_thread.run_sync(load_geo)
    except Exception as exc:  # the hub serves without geography rather than not at all
        log.warning("geography data could not be loaded (%s): ARTCC filters on TMIs use "
                    "their scope only", exc)
        return None
    return geo.airport_artcc


async def run_service(opts: ServeOptions, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    config = opts.config
    raise_open_files_limit()  # every client is a descriptor: take all the process may have
    store = KeyStore(config.db_url, table=config.key_table)
    if store.kind == "sqlite":
        try:
            await trio.to_thread.run_sync(store.init_db)
        except KeyStoreError as exc:
            log.warning("%s: new connections are refused until it is reachable", exc)
    auth = Authenticator(store, config)
    airport_artcc = await _load_airport_artcc() if opts.load_geography else None
    hub_id = secrets.token_hex(4)
    event_log, seats = _broker_parts(config, hub_id)
    state = Condition("state directory", logging.getLogger("swimctl.state"))
    durable = None
    if event_log is None and config.state_dir:  # the broker's log outlives hubs already
        durable = await _durable_log(config, state)
    hub = Hub(config, log=event_log or durable, airport_artcc=airport_artcc)
    if event_log is not None:
        event_log.on_reset = hub.log_reset
    tls = ssl_context(config.tls_cert, config.tls_key) if config.tls_cert and config.tls_key \
        else None
    server = HubServer(hub, auth, config, tls, seats)
    usage = UsageMeter(hub, store, interval=config.usage_interval)  # per-key usage history
    hub.watchers.append(usage)
    auth.on_key_refused = usage.key_refused
    # What /healthz and /metrics report on.
    watched = Watched(accepts=[server.accepts], broker=event_log, usage=usage)
    if durable is not None:
        watched.others.append(state)
    try:
        async with contextlib.AsyncExitStack() as broker_scope:
            if event_log is not None:  # its connections outlive every task that uses them
                await broker_scope.enter_async_context(event_log.connections())
            await _serve(opts, hub, hub_id, server, auth, event_log, watched, usage,
                         task_status)
    finally:
        if durable is not None:
            durable.close()  # at once if run() did not: the lock goes with the service


async def _durable_log(config: HubConfig, trouble: Condition) -> DurableLog:
    """The embedded log with its journal in `--state-dir`, read back in a worker thread."""
    assert config.state_dir is not None
    return await trio.to_thread.run_sync(partial(
        DurableLog, config.state_dir, history_size=config.history_size,
        history_age=config.history_age, history_bytes=config.history_bytes,
        dedupe_size=config.dedupe_size, trouble=trouble))


async def _serve(opts: ServeOptions, hub: Hub, hub_id: str, server: HubServer,
                 auth: Authenticator, event_log: RedisLog | None, watched: Watched,
                 usage: UsageMeter, task_status: Any) -> None:
    """Every task of the service, under one nursery."""
    config = opts.config
    stopper = Stopper(hub, server, drain=DRAIN_SECONDS if event_log is not None else 0.0)
    watched.leases = stopper.leases  # the same list: /healthz says which this hub leads
    async with trio.open_nursery() as nursery:
        if opts.handle_signals:  # before anything else, so no signal finds us without it
            nursery.start_soon(_watch_signals, stopper, nursery.cancel_scope)
        await nursery.start(hub.log.run)
        url = await nursery.start(server.serve)
        hub.name = hub_name(url, hub_id)
        log.info("listening on %s", url)
        await nursery.start(server.seats.run, hub.clients)
        if event_log is not None:
            nursery.start_soon(_trim_shared_log, event_log)
            nursery.start_soon(_share_broker_state, hub, event_log, stopper.leases)
        handle = ServiceHandle(url=url, hub=hub, server=server, auth=auth,
                               cancel_scope=nursery.cancel_scope,
                               extras={"watched": watched, "usage": usage}, stopper=stopper)
        server.dispatcher.report = HubReport(hub, hub.name, auth=auth, usage=usage,
                                             watched=watched)  # `status` with `hub: true`
        await nursery.start(usage.run)  # its last write waits for the clients to go
        nursery.start_soon(hub.run_heartbeat)
        nursery.start_soon(hub.run_tmi_expiry)
        nursery.start_soon(hub.run_coalescer)
        nursery.start_soon(auth.run, hub)
        if opts.events_file:
            from swimctl.hub.sources.events_file import EventsFileFollower

            events_lead = await _lead(nursery, stopper, event_log, "events", hub.name,
                                      config.feed_lease_ttl, retry=1.0)
            follower = EventsFileFollower(hub, opts.events_file, lead=events_lead)
            handle.extras["events_file"] = watched.follower = follower
            await nursery.start(follower.run)
        if opts.feed:
            from swimctl.hub.sources.feed import run_feed

            feed_lead = await _lead(nursery, stopper, event_log, "feed", hub.name,
                                    config.feed_lease_ttl, retry=opts.feed_interval)
            await nursery.start(partial(run_feed, hub, opts.feed, opts.feed_interval,
                                        opts.feed_loop, as_live=opts.feed_as_live,
                                        sim=opts.sim, lead=feed_lead))
        if opts.metrics_port is not None:
            from swimctl.hub.metrics import MetricsServer

            metrics = MetricsServer(hub, auth, config.host, opts.metrics_port, watched)
            handle.extras["metrics_url"] = await nursery.start(metrics.serve)
        if opts.record_dir:
            from swimctl.hub.recorder import Recorder

            recorder = Recorder(opts.record_dir)
            handle.extras["recorder"] = watched.recorder = recorder
            await nursery.start(recorder.attach, hub)
        task_status.started(handle)
        if opts.on_ready is not None:
            await opts.on_ready(handle)


async def _lead(nursery: trio.Nursery, stopper: Stopper, event_log: RedisLog | None,
                source: str, holder: str, ttl: float, retry: float) -> Leadership:
    """Who runs `source`: this hub alone, or whichever hub on the broker holds its lease."""
    if event_log is None:
        return SoleLeader(source)
    from swimctl.hub.leadership import RedisLease

    lease = RedisLease(event_log.client, source, holder, ttl=ttl,
                       retry=min(max(retry, 0.5), ttl / 2))
    stopper.leases.append(lease)
    await nursery.start(lease.run)
    return lease


def _broker_parts(config: HubConfig, hub_id: str) -> tuple[RedisLog | None, Seats]:
    """With `--broker`, the shared log and the shared seat count; else neither."""
    if not config.broker:
        return None, LocalSeats()
    from swimctl.hub.seats import RedisSeats
    from swimctl.stream.redis import RedisLog

    event_log = RedisLog(config.broker, history_size=config.history_size,
                         history_age=config.history_age, history_bytes=config.history_bytes)
    return event_log, RedisSeats(event_log.client, hub_id)


def hub_name(url: str, suffix: str) -> str:
    """How status replies and metrics name this hub: host, port and a per-start id."""
    host_port = url.split("://", 1)[-1].split("/", 1)[0]
    host = host_port.rsplit(":", 1)[0]
    if host in ("127.0.0.1", "0.0.0.0", "[::]", "[::1]", "localhost"):
        host_port = socket.gethostname() + ":" + host_port.rsplit(":", 1)[1]
    return f"{host_port}/{suffix}"


async def _share_broker_state(hub: Hub, event_log: RedisLog,
                              leases: list[Leadership]) -> None:
    """Every second: this hub's standing on the broker (for /metrics and `top`), posted for
    the other hubs, and theirs read back."""
    from swimctl.hub.report import hub_entry
    from swimctl.hub.stats import BrokerState

    state = hub.stats.broker = BrokerState()
    while True:
        state.up = event_log.up
        state.read_lag_seconds = event_log.read_lag
        state.leader = any(lease.leading for lease in leases) if leases else None
        with contextlib.suppress(Exception):  # the reader reports the broker's trouble
            state.peers = await event_log.exchange_hub_entries(hub.name,
                                                               hub_entry(hub.name, hub))
        await trio.sleep(1.0)


async def _trim_shared_log(event_log: RedisLog) -> None:
    """Drop entries past the age bound from the shared stream once a minute."""
    while True:
        await trio.sleep(60)
        with trio.move_on_after(10):
            try:
                await event_log.trim_shared()
            except Exception as exc:  # the reader reports the broker; trimming waits
                log.debug("trimming the shared log failed: %s", exc)


async def _watch_signals(stopper: Stopper, scope: trio.CancelScope) -> None:
    """The first SIGINT/SIGTERM stops the hub gracefully; a second one while it drains closes
    the rest at once (the hub still exits cleanly: a supervisor's repeated TERM is no crash)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as stopping:
            async for signum in signals:
                name = signal.Signals(signum).name
                if stopping.child_tasks:
                    log.info("%s again: closing the remaining connections now", name)
                    stopper.hurry()
                    continue
                if stopper.drain > 0:
                    log.info("%s: draining: no new connections, sources handed over, clients "
                             "closed (1001) over %.0f s, then stopping", name, stopper.drain)
                else:
                    log.info("%s: closing every connection (1001) and stopping", name)
                stopping.start_soon(stopper.stop, scope, SHUTDOWN_GRACE)
