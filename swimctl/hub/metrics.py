"""Prometheus metrics and a health check on their own port (`serve --metrics-port`).

The exporter reads the hub's own counters at scrape time, so the event path pays nothing for
metrics. It is served by a tiny HTTP/1.1 responder inside the hub's trio loop: a scrape sees
one consistent moment of the hub, and `/healthz` can probe the key store without threads
racing the loop.
"""

from __future__ import annotations

import logging
import resource
from collections.abc import Iterator
from typing import Any

import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from swimctl.hub.accept import AcceptGuard, open_fd_count
from swimctl.hub.auth import Authenticator
from swimctl.hub.engine import Hub
from swimctl.hub.health import Watched

log = logging.getLogger("swimctl.metrics")

MAX_REQUEST = 8192
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HubCollector(Collector):
    def __init__(self, hub: Hub, auth: Authenticator | None = None,
                 watched: Watched | None = None) -> None:
        self.hub = hub
        self.auth = auth
        self.watched = watched or Watched()

    def collect(self) -> Iterator[Any]:
        hub, stats = self.hub, self.hub.stats
        by_tier = GaugeMetricFamily("swim_connections", "Open client connections by key tier",
                                    labels=["tier"])
        tiers: dict[str, int] = {"public": 0, "developer": 0, "partner": 0, "system": 0}
        queued = 0
        live_bytes = 0
        for client in hub.clients.values():
            tiers[client.tier] = tiers.get(client.tier, 0) + 1
            queued += client.outbox.queued_bytes
            live_bytes += client.outbox.bytes_sent
        for tier, count in tiers.items():
            by_tier.add_metric([tier], count)
        yield by_tier
        events = CounterMetricFamily("swim_events", "Events published into the stream by type",
                                     labels=["type"])
        for etype, count in sorted(stats.events.items()):
            events.add_metric([etype], count)
        yield events
        yield CounterMetricFamily("swim_deliveries", "Event frames handed to clients",
                                  value=stats.deliveries)
        yield CounterMetricFamily("swim_sent_bytes", "Bytes written to client sockets",
                                  value=stats.bytes_sent_closed + stats.direct_bytes
                                  + live_bytes)
        hist = stats.fanout
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(hist.bounds, hist.counts, strict=False):
            running += count
            buckets.append((repr(bound), running))
        buckets.append(("+Inf", hist.count))
        yield HistogramMetricFamily("swim_fanout_seconds",
                                    "Time of one fan-out step (one event, or a coalesced "
                                    "burst) to every accepting client",
                                    buckets=buckets, sum_value=hist.total)
        yield GaugeMetricFamily("swim_outbox_bytes", "Unsent bytes queued across all clients",
                                value=queued)
        yield CounterMetricFamily("swim_slow_consumers", "Clients closed with 4008",
                                  value=stats.slow_consumers)
        yield CounterMetricFamily("swim_auth_failures", "Connections refused with AUTH_FAILED",
                                  value=stats.auth_failures)
        resumes = CounterMetricFamily("swim_resumes", "Resume requests by outcome",
                                      labels=["recovered"])
        resumes.add_metric(["true"], stats.resumes_recovered)
        resumes.add_metric(["false"], stats.resumes_lost)
        yield resumes
        yield GaugeMetricFamily("swim_last_seq", "Last seq in the stream",
                                value=hub.log.head)
        yield GaugeMetricFamily("swim_history_events", "Events held for resume",
                                value=hub.log.held)
        info = GaugeMetricFamily("swim_hub_info", "This hub (host:port/id); 1 while it runs",
                                 labels=["hub"])
        info.add_metric([hub.name], 1)
        yield info
        broker = self.watched.broker
        if broker is not None:
            yield GaugeMetricFamily("swim_broker_up",
                                    "1 while the shared event log (Redis) answers",
                                    value=1 if broker.up else 0)
            yield GaugeMetricFamily("swim_broker_read_lag_seconds",
                                    "From append to delivery here, for the last batch read "
                                    "(0 when the reader is idle)", value=broker.read_lag)
            yield GaugeMetricFamily("swim_broker_rtt_seconds",
                                    "Round trip of the reader's last idle check",
                                    value=broker.rtt)
            yield CounterMetricFamily("swim_broker_resets",
                                      "Times the shared log lost its history (new epoch)",
                                      value=broker.resets)
        yield from self._limits(hub)
        age = hub.feed_age()
        if age is not None:
            yield GaugeMetricFamily("swim_feed_age_seconds",
                                    "Seconds since the VATSIM feed's last update", value=age)
        if self.auth is not None:
            yield GaugeMetricFamily("swim_keystore_up",
                                    "1 when the key store answered its last call",
                                    value=1 if self.auth.available else 0)
            yield from self._auth(self.auth)
        yield from self._watched(self.watched)

    def _limits(self, hub: Hub) -> Iterator[Any]:
        """What the abuse bounds did (docs/operating.md, Limits and abuse)."""
        held_bytes = getattr(hub.log, "held_bytes", None)
        if held_bytes is not None:
            yield GaugeMetricFamily("swim_history_bytes", "Payload bytes held for resume",
                                    value=held_bytes)
        disk_bytes = getattr(hub.log, "disk_bytes", None)
        if disk_bytes is not None:
            yield GaugeMetricFamily("swim_state_journal_bytes",
                                    "Bytes of the --state-dir journal on disk", value=disk_bytes)
        yield CounterMetricFamily("swim_violation_closes",
                                  "Clients closed with 4003 (repeated protocol violations, "
                                  "rate limit included)", value=hub.stats.violation_closes)
        dropped = CounterMetricFamily("swim_handshakes_dropped",
                                      "Connections closed before their upgrade request was "
                                      "read, by reason", labels=["reason"])
        for reason in ("per-address cap", "timeout"):
            dropped.add_metric([reason], hub.stats.handshakes_dropped[reason])
        yield dropped

    def _auth(self, auth: Authenticator) -> Iterator[Any]:
        yield CounterMetricFamily("swim_keystore_reopens",
                                  "Times the SQLite key database was found replaced and reopened",
                                  value=auth.store.reopens)
        yield CounterMetricFamily("swim_auth_lookups",
                                  "Key-store lookups made for handshakes (cache misses)",
                                  value=auth.lookups)
        refusals = CounterMetricFamily("swim_auth_refusals", "Handshakes refused, by reason",
                                       labels=["reason"])
        for reason, count in sorted(auth.refusals.totals.items()):
            refusals.add_metric([reason], count)
        yield refusals
        yield GaugeMetricFamily("swim_auth_throttled_sources",
                                "Addresses (IPv6: /64s) refused for too many failed "
                                "authentications right now",
                                value=auth.throttle.throttled_sources())

    def _watched(self, watched: Watched) -> Iterator[Any]:
        up = GaugeMetricFamily("swim_component_up",
                               "0 while a part of the hub is in trouble (see /healthz)",
                               labels=["component"])
        for condition in watched.conditions():
            up.add_metric([condition.part], 1 if condition.ok else 0)
        yield up
        failures = CounterMetricFamily("swim_component_failures",
                                       "Failed attempts of a part of the hub (writes, saves, "
                                       "accepts)", labels=["component"])
        for condition in watched.conditions():
            failures.add_metric([condition.part], condition.failures)
        yield failures
        recorder = watched.recorder
        if recorder is not None:
            yield CounterMetricFamily("swim_recorder_written_events",
                                      "Events written by --record", value=recorder.written)
            yield CounterMetricFamily("swim_recorder_dropped_events",
                                      "Events --record dropped (buffer full or disk failing)",
                                      value=recorder.dropped)
            yield GaugeMetricFamily("swim_recorder_buffered_bytes",
                                    "Bytes waiting for the disk in --record's buffer",
                                    value=recorder.buffered_bytes)
        follower = watched.follower
        if follower is not None:
            yield GaugeMetricFamily("swim_events_file_offset_bytes",
                                    "Position in --events-file after the last published line",
                                    value=follower.state.offset)
            yield CounterMetricFamily("swim_events_file_bad_lines",
                                      "Lines of --events-file skipped as bad",
                                      value=follower.stats.bad_lines)
        accept_failures = sum(guard.failures for guard in watched.accepts)
        yield CounterMetricFamily("swim_accept_capacity_errors",
                                  "accept() calls that failed for lack of descriptors or memory",
                                  value=accept_failures)
        fds = open_fd_count()
        if fds is not None:
            yield GaugeMetricFamily("swim_open_fds", "File descriptors the hub holds",
                                    value=fds)
        yield GaugeMetricFamily("swim_open_fds_limit", "Soft RLIMIT_NOFILE of the hub",
                                value=resource.getrlimit(resource.RLIMIT_NOFILE)[0])


class MetricsServer:
    def __init__(self, hub: Hub, auth: Authenticator | None, host: str, port: int,
                 watched: Watched | None = None) -> None:
        self.hub = hub
        self.auth = auth
        self.host = host
        self.port = port
        self.watched = watched or Watched()
        self.accepts = AcceptGuard("metrics")
        self.watched.accepts.append(self.accepts)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(HubCollector(hub, auth, self.watched))
        self.url = ""

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = self.accepts.wrap(await trio.open_tcp_listeners(self.port, host=self.host))
        host, port = listeners[0].socket.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        log.info("metrics on %s/metrics, health on %s/healthz", self.url, self.url)
        task_status.started(self.url)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            with trio.move_on_after(10):
                request = b""
                while b"\r\n\r\n" not in request and len(request) < MAX_REQUEST:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        return
                    request += chunk
                status, body, ctype = await self._respond(request)
                head = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
                await stream.send_all(head + body)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _respond(self, request: bytes) -> tuple[str, bytes, str]:
        line = request.split(b"\r\n", 1)[0].decode("latin-1", "replace").split()
        if len(line) != 3 or line[0] not in ("GET", "HEAD"):
            return "405 Method Not Allowed", b"GET only\n", "text/plain"
        path = line[1].split("?", 1)[0]
        if path == "/metrics":
            return "200 OK", generate_latest(self.registry), CONTENT_TYPE
        if path == "/healthz":
            return await self._health()
        return "404 Not Found", b"try /metrics or /healthz\n", "text/plain"

    async def _health(self) -> tuple[str, bytes, str]:
        """503 when the hub cannot take clients (shutting down, or no key store: new
        connections would all be refused). A part in trouble that clients do not depend on (the
        recorder's disk, the events-file offset, accept pausing for descriptors) answers 200
        `degraded` with a line each, so a load balancer keeps the hub while an operator sees
        what to fix."""
        if self.hub.shutting_down:
            return "503 Service Unavailable", b"unavailable: shutting down\n", "text/plain"
        broker = self.watched.broker
        if broker is not None and not broker.up:
            # Clients already here stay served, but new ones could not publish or be counted.
            return ("503 Service Unavailable",
                    b"unavailable: event log (Redis) unreachable\n", "text/plain")
        if self.auth is not None and not await self.auth.check_available():
            why = self.auth.unavailable_reason or "no answer"
            return ("503 Service Unavailable",
                    f"unavailable: key store unreachable ({why})\n".encode(), "text/plain")
        problems = [line for c in self.watched.conditions() if (line := c.describe())]
        if not problems:
            return "200 OK", b"ok\n", "text/plain"
        return "200 OK", ("degraded\n" + "\n".join(problems) + "\n").encode(), "text/plain"
