"""Prometheus metrics and a health check on their own port (`serve --metrics-port`).

The exporter reads the hub's own counters at scrape time, so the event path pays nothing for
metrics. It is served by a tiny HTTP/1.1 responder inside the hub's trio loop: a scrape sees
one consistent moment of the hub, and `/healthz` can probe the key store without threads
racing the loop.
"""

from __future__ import annotations

import logging
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

from swimctl.hub.auth import Authenticator
from swimctl.hub.engine import Hub

log = logging.getLogger("swimctl.metrics")

MAX_REQUEST = 8192
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HubCollector(Collector):
    def __init__(self, hub: Hub, auth: Authenticator | None = None) -> None:
        self.hub = hub
        self.auth = auth

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
        age = hub.feed_age()
        if age is not None:
            yield GaugeMetricFamily("swim_feed_age_seconds",
                                    "Seconds since the VATSIM feed's last update", value=age)
        if self.auth is not None:
            yield GaugeMetricFamily("swim_keystore_up",
                                    "1 when the key store answered its last call",
                                    value=1 if self.auth.available else 0)


class MetricsServer:
    def __init__(self, hub: Hub, auth: Authenticator | None, host: str, port: int) -> None:
        self.hub = hub
        self.auth = auth
        self.host = host
        self.port = port
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(HubCollector(hub, auth))
        self.url = ""

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
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
            serving = not self.hub.shutting_down
            store_ok = await self.auth.check_available() if self.auth is not None else True
            if serving and store_ok:
                return "200 OK", b"ok\n", "text/plain"
            why = "shutting down" if not serving else "key store unreachable"
            return "503 Service Unavailable", f"unavailable: {why}\n".encode(), "text/plain"
        return "404 Not Found", b"try /metrics or /healthz\n", "text/plain"
