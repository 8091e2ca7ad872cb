"""Prometheus metrics and a health check on their own port (`serve --metrics-port`).

The exporter reads the hub's own counters at scrape time, so the event path pays nothing for
metrics. It is served by a tiny HTTP/1.1 responder inside the hub's trio loop: a scrape sees
one consistent moment of the hub, and `/healthz` can probe the key store without threads
racing the loop.
"""

from __future__ import annotations

import logging
import resource
import time
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

from swimctl.core.usage import COUNTS, REFUSALS, UsageLedger
from swimctl.hub.accept import AcceptGuard, open_fd_count
from swimctl.hub.auth import Authenticator
from swimctl.hub.engine import Hub
from swimctl.hub.health import Watched
from swimctl.hub.usage import UsageMeter
from swimctl.keys.records import TIERS
from swimctl.wire.encodings import DEFLATE

log = logging.getLogger("swimctl.metrics")

MAX_REQUEST = 8192
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Per-key series (`swim_key_*`) exist only for the keys an operator hands to a few known
# consumers, and at most KEY_SERIES_LIMIT of them (the lowest ids); the rest of those tiers'
# keys are summed under key_id="other". Every other tier is counted per tier only.
KEY_SERIES_TIERS = ("partner", "system")
KEY_SERIES_LIMIT = 50


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
        compressing = 0
        for client in hub.clients.values():
            tiers[client.tier] = tiers.get(client.tier, 0) + 1
            queued += client.outbox.queued_bytes
            live_bytes += client.outbox.bytes_sent
            compressing += client.outbox.encoding == DEFLATE
        for tier, count in tiers.items():
            by_tier.add_metric([tier], count)
        yield by_tier
        yield GaugeMetricFamily("swim_compressed_connections",
                                "Open connections that negotiated permessage-deflate",
                                value=compressing)
        yield GaugeMetricFamily("swim_compressed_connections_ratio",
                                "Share of open connections that negotiated permessage-deflate",
                                value=compressing / len(hub.clients) if hub.clients else 0.0)
        yield CounterMetricFamily("swim_compression_plain_bytes",
                                  "Frames to compressing clients: their bytes had they gone "
                                  "plain", value=stats.deflate_plain_bytes)
        yield CounterMetricFamily("swim_compression_wire_bytes",
                                  "Frames to compressing clients: their bytes as sent (small "
                                  "ones go plain)", value=stats.deflate_wire_bytes)
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
        broker = self.watched.broker  # up, read lag and leadership: _broker, from hub.stats
        if broker is not None:
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
        yield GaugeMetricFamily("swim_uptime_seconds", "Seconds since the hub started",
                                value=time.monotonic() - hub.started)
        yield CounterMetricFamily("swim_rate_limited", "Client messages answered RATE_LIMITED",
                                  value=stats.rate_limited)
        yield CounterMetricFamily("swim_cap_refusals",
                                  "Handshakes refused with CONNECTION_LIMIT (key at its cap)",
                                  value=stats.cap_refusals)
        closes = CounterMetricFamily("swim_closes", "Connections the hub closed, by close code "
                                     "(4001 key revoked, 4003 violations, 4008 slow consumer, "
                                     "1001 shutdown)", labels=["code"])
        for code, count in sorted(stats.closes.items()):
            closes.add_metric([str(code)], count)
        yield closes
        yield from self._feed(hub)
        if self.watched.usage is not None:
            yield from self._usage(self.watched.usage)
        yield from self._broker(hub)

    def _feed(self, hub: Hub) -> Iterator[Any]:
        stats = hub.stats
        yield CounterMetricFamily("swim_feed_cycles", "VATSIM feed cycles published",
                                  value=stats.feed_cycles)
        pilots = GaugeMetricFamily("swim_feed_last_cycle_pilots",
                                   "Pilots in the feed's last snapshot")
        events = GaugeMetricFamily("swim_feed_last_cycle_events",
                                   "Events the feed's last cycle published, by type",
                                   labels=["type"])
        cycle = stats.last_cycle
        if cycle is not None:
            pilots.add_metric([], cycle.pilots)
            for etype, count in sorted(cycle.events.items()):
                events.add_metric([etype], count)
        yield pilots
        yield events

    def _usage(self, usage: UsageMeter) -> Iterator[Any]:
        """Per tier (always) and per key (bounded: KEY_SERIES_TIERS, KEY_SERIES_LIMIT)."""
        usage.collect()
        ledger = usage.ledger
        live_by_tier = dict.fromkeys(TIERS, 0)
        for client in self.hub.clients.values():
            live_by_tier[client.tier] = live_by_tier.get(client.tier, 0) + 1
        names = {
            "connections": ("swim_tier_connections_opened",
                            "Connections admitted, by key tier"),
            "connection_seconds": ("swim_tier_connection_seconds",
                                   "Seconds connections were open, by key tier"),
            "events_delivered": ("swim_tier_events_delivered",
                                 "Stream events handed to connections, by key tier (not "
                                 "heartbeats, replies or snapshots)"),
            "bytes_sent": ("swim_tier_sent_bytes",
                           "Bytes written to connections, by key tier"),
        }
        totals = {tier: UsageLedger.totals(ledger.by_tier.get(tier)) for tier in live_by_tier}
        for name, (metric, text) in names.items():
            family = CounterMetricFamily(metric, text, labels=["tier"])
            for tier, counts in totals.items():
                family.add_metric([tier], counts[name])
            yield family
        refusals = CounterMetricFamily("swim_tier_refusals",
                                       "Refusals counted against a key, by key tier and kind "
                                       "(auth: revoked or expired key; cap; rate)",
                                       labels=["tier", "reason"])
        for tier, counts in totals.items():
            for kind in REFUSALS:
                refusals.add_metric([tier, kind], counts[f"refusals_{kind}"])
        yield refusals
        yield from self._keys(ledger)
        yield GaugeMetricFamily("swim_usage_pending_rows",
                                "Per-key usage rows counted but not yet in the key database",
                                value=ledger.pending_rows)
        yield CounterMetricFamily("swim_usage_written_rows",
                                  "Per-key usage rows added to the key database",
                                  value=usage.written_rows)

    def _keys(self, ledger: UsageLedger) -> Iterator[Any]:
        live = ledger.live()
        chosen = sorted(k for k, tier in ledger.tier_of.items() if tier in KEY_SERIES_TIERS)
        named, other = chosen[:KEY_SERIES_LIMIT], chosen[KEY_SERIES_LIMIT:]
        open_now = GaugeMetricFamily("swim_key_connections",
                                     "Open connections of a partner- or system-tier key "
                                     f"(at most {KEY_SERIES_LIMIT} keys, the rest as "
                                     'key_id="other")', labels=["key_id", "tier"])
        events = CounterMetricFamily("swim_key_events_delivered",
                                     "Stream events handed to a partner- or system-tier key's "
                                     "connections", labels=["key_id", "tier"])
        sent = CounterMetricFamily("swim_key_sent_bytes",
                                   "Bytes written to a partner- or system-tier key's "
                                   "connections", labels=["key_id", "tier"])
        delivered_at, bytes_at = COUNTS.index("events_delivered"), COUNTS.index("bytes_sent")
        for key_id in named:
            counts = ledger.by_key[key_id]
            labels = [str(key_id), ledger.tier_of[key_id]]
            open_now.add_metric(labels, live.get(key_id, 0))
            events.add_metric(labels, int(counts[delivered_at]))
            sent.add_metric(labels, int(counts[bytes_at]))
        for tier in KEY_SERIES_TIERS:
            rest = [k for k in other if ledger.tier_of[k] == tier]
            if rest:
                labels = ["other", tier]
                open_now.add_metric(labels, sum(live.get(k, 0) for k in rest))
                events.add_metric(labels, sum(int(ledger.by_key[k][delivered_at])
                                              for k in rest))
                sent.add_metric(labels, sum(int(ledger.by_key[k][bytes_at]) for k in rest))
        yield open_now
        yield events
        yield sent

    def _broker(self, hub: Hub) -> Iterator[Any]:
        """Only on a hub with a broker (`serve --broker`): its standing there."""
        broker = hub.stats.broker
        if broker is None:
            return
        shared = self.watched.broker  # read live when this hub has one: the state lags 1 s
        up = shared.up if shared is not None else broker.up
        lag = shared.read_lag if shared is not None else broker.read_lag_seconds
        yield GaugeMetricFamily("swim_broker_up", "1 while the broker answers this hub",
                                value=1 if up else 0)
        if lag is not None:
            yield GaugeMetricFamily("swim_broker_read_lag_seconds",
                                    "Seconds between an event entering the broker and this "
                                    "hub reading it", value=lag)
        if broker.leader is not None:
            yield GaugeMetricFamily("swim_feed_leader",
                                    "1 on the hub that runs the feed for every hub on the "
                                    "broker", value=1 if broker.leader else 0)

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
        # On a broker: which sources this hub runs for every hub (one line each).
        leads = "".join(f"leads: {lease.source}\n" for lease in self.watched.leases
                        if lease.leading)
        if not problems:
            return "200 OK", f"ok\n{leads}".encode(), "text/plain"
        return "200 OK", ("degraded\n" + "\n".join(problems) + "\n" + leads).encode(), \
            "text/plain"
