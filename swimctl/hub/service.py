"""Wires the hub's parts together under one nursery: listener, heartbeat, key revalidation,
TMI expiry and event sources. `swimctl serve` runs this; tests run it in-process."""

from __future__ import annotations

import logging
import signal
import ssl
from collections.abc import Callable
from functools import partial
from typing import Any

import attrs
import trio

from swimctl.hub.auth import Authenticator
from swimctl.hub.config import HubConfig
from swimctl.hub.engine import Hub
from swimctl.hub.server import HubServer
from swimctl.keys import KeyStore, KeyStoreError

log = logging.getLogger("swimctl.service")

SHUTDOWN_GRACE = 1.2  # seconds clients get to receive close 1001 (the process exits within 2 s)


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
    on_ready: Callable[[ServiceHandle], None] | None = None


@attrs.define
class ServiceHandle:
    """What a started service hands back: where it listens and its live parts."""

    url: str
    hub: Hub
    server: HubServer
    auth: Authenticator
    cancel_scope: trio.CancelScope
    extras: dict[str, Any] = attrs.field(factory=dict)

    async def shutdown(self, grace: float = SHUTDOWN_GRACE) -> None:
        await graceful_shutdown(self.hub, self.cancel_scope, grace)


async def graceful_shutdown(hub: Hub, scope: trio.CancelScope, grace: float) -> None:
    """Every client gets close 1001, then everything stops."""
    hub.shutdown()
    with trio.move_on_after(grace):
        while hub.clients:
            await trio.sleep(0.02)
    scope.cancel()


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
    store = KeyStore(config.db_url, table=config.key_table)
    if store.kind == "sqlite":
        try:
            await trio.to_thread.run_sync(store.init_db)
        except KeyStoreError as exc:
            log.warning("%s: new connections are refused until it is reachable", exc)
    auth = Authenticator(store, config)
    airport_artcc = await _load_airport_artcc() if opts.load_geography else None
    hub = Hub(config, airport_artcc=airport_artcc)
    tls = ssl_context(config.tls_cert, config.tls_key) if config.tls_cert and config.tls_key \
        else None
    server = HubServer(hub, auth, config, tls)
    async with trio.open_nursery() as nursery:
        if opts.handle_signals:  # before anything else, so no signal finds us without it
            nursery.start_soon(_watch_signals, hub, nursery.cancel_scope)
        url = await nursery.start(server.serve)
        log.info("listening on %s", url)
        handle = ServiceHandle(url=url, hub=hub, server=server, auth=auth,
                               cancel_scope=nursery.cancel_scope)
        nursery.start_soon(hub.run_heartbeat)
        nursery.start_soon(hub.run_tmi_expiry)
        nursery.start_soon(hub.run_coalescer)
        nursery.start_soon(auth.run, hub)
        if opts.events_file:
            from swimctl.hub.sources.events_file import EventsFileFollower

            follower = EventsFileFollower(hub, opts.events_file)
            handle.extras["events_file"] = follower
            await nursery.start(follower.run)
        if opts.feed:
            from swimctl.hub.sources.feed import run_feed

            await nursery.start(partial(run_feed, hub, opts.feed, opts.feed_interval,
                                        opts.feed_loop, as_live=opts.feed_as_live,
                                        sim=opts.sim))
        if opts.metrics_port is not None:
            from swimctl.hub.metrics import MetricsServer

            metrics = MetricsServer(hub, auth, config.host, opts.metrics_port)
            handle.extras["metrics_url"] = await nursery.start(metrics.serve)
        if opts.record_dir:
            from swimctl.hub.recorder import run_recorder

            await nursery.start(run_recorder, hub, opts.record_dir)
        task_status.started(handle)
        if opts.on_ready is not None:
            opts.on_ready(handle)


async def _watch_signals(hub: Hub, scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("%s: closing every connection (1001) and stopping",
                     signal.Signals(signum).name)
            await graceful_shutdown(hub, scope, SHUTDOWN_GRACE)
            return
