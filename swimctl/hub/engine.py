"""The engine: one event stream, the registry of live clients, and fan-out.

Data flows one way: source → stream (seq) → fan-out → per-client outbox → socket. Everything
here but the periodic tasks is synchronous: `publish` numbers an event, stores it and hands
its frame to every accepting client (at once, or with the burst it belongs to) without
awaiting any of them, so no client can delay another; held events are flushed before
anything a client could see out of order, so a resume never falls between history and live
delivery.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import trio

from swimctl import PROTOCOL_VERSION
from swimctl.core.channels import HEARTBEAT, POSITIONS, TMI_ACTIVE
from swimctl.core.filters import AirportArtcc
from swimctl.core.model import Envelope, dumps, format_ts, format_ts_seconds
from swimctl.core.protocol import (
    CLOSE_AUTH,
    CLOSE_GOING_AWAY,
    CLOSE_SLOW,
    INVALID_PUBLISH,
    MISSING,
    SLOW_CONSUMER,
    ProtocolError,
    Publish,
    Subscribe,
    encode_reply,
    error_reply,
)
from swimctl.core.routing import (
    ALL,
    PositionIndex,
    airport_keys,
    slice_records,
)
from swimctl.core.tmi import TmiBook, TmiError, prepare_publish
from swimctl.hub.client import Client
from swimctl.hub.config import HubConfig
from swimctl.hub.outbox import CONTROL, EVENT, Demotions
from swimctl.hub.outbox import POSITIONS as POSITIONS_KIND
from swimctl.hub.plans import TargetCache, TargetPlan
from swimctl.hub.stats import HubStats
from swimctl.stream.memory import EventStream, StreamEvent
from swimctl.wire.frames import text_frame

log = logging.getLogger("swimctl.hub")

# Coalescing caps a run of held events: one write per client stays small beside the outbox
# bound and the kernel buffers, and a burst never waits for a full window.
COALESCE_MAX_EVENTS = 128
COALESCE_MAX_BYTES = 64 * 1024



def _whole(value: float) -> int | float:
    """30.0 goes on the wire as 30, as PROTOCOL.md shows it (typed SDKs parse an int)."""
    return int(value) if float(value).is_integer() else value


class Hub:
    def __init__(
        self,
        config: HubConfig | None = None,
        *,
        airport_artcc: AirportArtcc | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or HubConfig()
        self.stream = EventStream(
            history_size=self.config.history_size,
            history_age=self.config.history_age,
            dedupe_size=self.config.dedupe_size,
            clock=clock,
        )
        self.airport_artcc = airport_artcc
        self.clients: dict[str, Client] = {}
        self.by_key: dict[int, set[Client]] = {}
        self.positions: list[dict[str, Any]] = []
        self.tmi = TmiBook()
        self.stats = HubStats()
        self.started = time.monotonic()
        self.feed_time: dt.datetime | None = None
        self.on_event: list[Callable[[StreamEvent], None]] = []  # recorders, metrics
        self.shutting_down = False
        self.demotions = Demotions()  # shared by this hub's outboxes and plans
        self._targets = TargetCache(self.demotions)  # fan-out plans per event type
        self._coalescing = False  # True while run_coalescer runs
        self._pending: list[StreamEvent] = []  # published, held for the next fan-out
        self._pending_bytes = 0
        self._pending_types: set[str] = set()
        self._pending_ready = trio.Event()
        self._last_fan_out = float("-inf")  # trio time at the end of the last fan-out

    # -- clients -----------------------------------------------------------------------------

    def admit(self, client: Client) -> bool:
        """Register a client unless its key is at its tier's connection cap."""
        self.flush()
        cap = self.config.tier_caps.get(client.tier, 0)
        peers = self.by_key.setdefault(client.key_id, set())
        if len(peers) >= cap:
            if not peers:
                del self.by_key[client.key_id]
            return False
        peers.add(client)
        self.clients[client.client_id] = client
        client.subs.on_change = self._targets.reset
        self._targets.reset()  # who is subscribed to what has changed
        return True

    def remove(self, client: Client) -> None:
        self.flush()
        if self.clients.pop(client.client_id, None) is None:
            return
        client.subs.on_change = None
        self.stats.bytes_sent_closed += client.outbox.bytes_sent
        self._targets.reset()
        peers = self.by_key.get(client.key_id)
        if peers is not None:
            peers.discard(client)
            if not peers:
                del self.by_key[client.key_id]

    def revoke_key(self, key_id: int, reason: str) -> int:
        """Close every connection of a key that was revoked or expired (4001)."""
        clients = list(self.by_key.get(key_id, ()))
        for client in clients:
            self.send(client, error_reply("AUTH_FAILED", reason))
            client.request_close(CLOSE_AUTH, reason)
        return len(clients)

    def shutdown(self) -> None:
        self.flush()
        self.shutting_down = True
        for client in list(self.clients.values()):
            client.request_close(CLOSE_GOING_AWAY, "hub shutting down")

    # -- delivery ----------------------------------------------------------------------------

    def send(self, client: Client, payload: bytes) -> None:
        """A reply or error to one client, through its outbox (never dropped)."""
        self.flush_for(client)
        client.outbox.push(text_frame(payload), CONTROL)

    def _deliver(self, client: Client, frame: bytes, kind: int) -> None:
        self.flush_for(client)
        client.messages_sent += 1
        if not client.outbox.push(frame, kind):
            self._slow_consumer(client)

    def _slow_consumer(self, client: Client) -> None:
        if client.close_code is not None:
            return
        self.stats.slow_consumers += 1
        log.warning(
            "closing slow consumer %s (tier %s): backlog passed %d bytes",
            client.client_id, client.tier, self.config.outbox_limit,
        )
        client.outbox.discard_backlog()
        client.outbox.push(
            text_frame(error_reply(SLOW_CONSUMER, "unsent backlog passed the per-client bound; "
                                   "reconnect and resume")),
            CONTROL,
        )
        client.request_close(CLOSE_SLOW, "slow consumer")

    # -- the stream --------------------------------------------------------------------------

    def publish(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        timestamp: str | None = None,
        event_id: str | None = None,
    ) -> tuple[int, bool]:
        """Number, store and fan out one event (now, or with the burst it belongs to: see
        coalescing below). Returns (seq, duplicate)."""
        event, seq = self.stream.append(event_type, data, timestamp=timestamp, event_id=event_id)
        if event is None:
            return seq, True
        if event_type.startswith("tmi."):
            self.tmi.apply(event_type, data)
        self.stats.events[event_type] += 1
        if event_type == POSITIONS:
            self.flush()  # what was published before goes out before
            self._timed(self._fan_out_positions, event)
        elif self._coalescing and (self._pending or self._in_burst()):
            self._pending.append(event)
            self._pending_bytes += len(event.frame)
            self._pending_types.add(event_type)
            if (len(self._pending) >= COALESCE_MAX_EVENTS
                    or self._pending_bytes >= COALESCE_MAX_BYTES):
                self.flush()
            elif len(self._pending) == 1:
                self._pending_ready.set()
        else:
            self._timed(self._fan_out_run, [event])
        for hook in self.on_event:
            hook(event)
        return seq, False

    # -- coalescing ---------------------------------------------------------------------------
    # Events published back to back (a burst) are written to each client in one system call
    # per run of events, not one per event. The first event after a quiet spell goes out at
    # once; events following it within `coalesce_window` wait at most that long, or until a
    # run holds COALESCE_MAX_EVENTS events or COALESCE_MAX_BYTES. Anything else that writes to
    # a client it may reach, or changes who gets what, flushes first: order never changes.

    def _in_burst(self) -> bool:
        return trio.current_time() - self._last_fan_out < self.config.coalesce_window

    def flush(self) -> None:
        """Fan out the events held by coalescing, in order, now."""
        if not self._pending:
            return
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        self._pending_types = set()
        try:
            self._timed(self._fan_out_events, pending)
        except Exception:  # a bug must not take the coalescer, and with it the hub, down
            log.exception("fan-out of %d held events failed", len(pending))

    def flush_for(self, client: Client) -> None:
        """Flush first if a held event may reach `client`: a reply or snapshot must not
        overtake it. A publisher's acks (it subscribes to nothing) leave a burst held."""
        if self._pending and any(client.subs.route(etype) is not None
                                 for etype in self._pending_types):
            self.flush()

    async def run_coalescer(self) -> None:
        """Flush held events once the window since the last fan-out has passed."""
        if self.config.coalesce_window <= 0:
            return
        self._coalescing = True
        try:
            while True:
                await self._pending_ready.wait()
                self._pending_ready = trio.Event()
                await trio.sleep_until(self._last_fan_out + self.config.coalesce_window)
                self.flush()
        finally:
            self._coalescing = False
            self.flush()

    def _timed(self, fan_out: Callable[[Any], None], what: Any) -> None:
        started = time.perf_counter()
        fan_out(what)
        ended = time.perf_counter()
        elapsed = ended - started
        self.stats.fanout.observe(elapsed)
        self.stats.fanout_seconds.append(elapsed)
        if len(self.stats.fanout_seconds) > 10_000:
            del self.stats.fanout_seconds[:5_000]
        if self._coalescing:
            self._last_fan_out = trio.current_time()

    def _fan_out_events(self, events: list[StreamEvent]) -> None:
        """Held events, in stream order. When every type among them has the same unfiltered
        clients (a feed cycle's lifecycle events to clients that take all flight events),
        those clients get the whole burst in one write; otherwise each run of one type
        does. Either way a client is unfiltered for every event written to it together, and
        filtered ones get theirs event by event, so each client's order is the stream's."""
        plans = {event.type: self._targets.plan(event.type, self.clients) for event in events}
        if len(plans) > 1:
            for plan in plans.values():
                if not plan.fast_ready():
                    plan.rebuild_fast()
            first, *others = plans.values()
            if all(p.fast_fds == first.fast_fds and p.slow == first.slow for p in others):
                self._fan_out_together(first, events, plans)
                return
        start = 0
        while start < len(events):
            etype = events[start].type
            end = start + 1
            while end < len(events) and events[end].type == etype:
                end += 1
            self._fan_out_together(plans[etype], events[start:end], plans)
            start = end

    def _fan_out_run(self, events: list[StreamEvent]) -> None:
        """Events of one type, in order, to every client that accepts them."""
        plan = self._targets.plan(events[0].type, self.clients)
        self._fan_out_together(plan, events, {events[0].type: plan})

    def _fan_out_together(self, unfiltered: TargetPlan, events: list[StreamEvent],
                          plans: dict[str, TargetPlan]) -> None:
        """`unfiltered`'s clients get `events` joined in one write each; each event's
        filtered clients get it through their outboxes, in order."""
        delivered = self._write_unfiltered(unfiltered, [event.frame for event in events])
        for event in events:
            plan = plans[event.type]
            if plan.filtered:
                delivered += self._fan_out_filtered(plan, event)
        self.stats.deliveries += delivered

    def _fan_out_filtered(self, plan: TargetPlan, event: StreamEvent) -> int:
        frame, etype, data = event.frame, event.type, event.data
        # A route made only of airport filters is one set (fast_route), tested against the
        # event's airports once; plans list such clients under each of their airports.
        keys = airport_keys(data)
        if keys is None or not plan.by_airport:
            targets = plan.filtered
        elif len(keys) == 1:
            [code] = keys
            targets = plan.general + plan.by_airport.get(code, [])
        else:  # a client whose airports hold both dep and arr is listed under each: once
            hits = {id(t[0]): t for code in keys for t in plan.by_airport.get(code, ())}
            targets = plan.general + list(hits.values())
        delivered = 0
        for client, outbox, route in targets:
            if type(route) is frozenset:
                if keys is not None and route.isdisjoint(keys):
                    continue
            elif not any(f.accepts(etype, data) for f in route):
                continue
            delivered += 1
            client.messages_sent += 1
            if not outbox.push(frame, EVENT):
                self._slow_consumer(client)
        return delivered

    def _write_unfiltered(self, plan: TargetPlan, frames: list[bytes]) -> int:
        """The shared frames, joined, to every client that takes all events of the type: a
        plain non-blocking write per file descriptor while the kernel buffers have room; a
        client whose write falls short (or that was already backlogged) goes through its
        outbox. Returns the number of deliveries."""
        if not plan.fast_ready():
            plan.rebuild_fast()
        frame = frames[0] if len(frames) == 1 else b"".join(frames)
        size = len(frame)
        write = os.write
        short: list[tuple[int, int]] | None = None
        fds = plan.fast_fds
        for fd in fds:
            try:
                sent = write(fd, frame)
            except BlockingIOError:
                sent = 0
            except OSError:
                sent = -1  # push retries, meets the error and marks the outbox broken
            if sent != size:
                if short is None:
                    short = []
                short.append((fd, sent))
        plan.fast_events += len(frames)
        written = len(fds)
        if short:
            written -= len(short)
            for fd, sent in short:
                client, outbox, _ = plan.fast_by_fd[fd]
                if sent >= 0:
                    ok = outbox.wrote_frames(frames, sent)
                else:
                    ok = all([outbox.push(one, EVENT) for one in frames])
                if not ok:
                    self._slow_consumer(client)
        self.stats.direct_bytes += written * size
        for client, outbox, _ in plan.slow:
            client.messages_sent += len(frames)
            if not all([outbox.push(one, EVENT) for one in frames]):
                self._slow_consumer(client)
        return (len(fds) + len(plan.slow)) * len(frames)

    def _fan_out_positions(self, event: StreamEvent) -> None:
        """Each client gets the positions its filters accept; each distinct slice is encoded
        once and shared by every client with the same filters."""
        positions = event.data.get("positions")
        if not isinstance(positions, list):
            positions = []
        frames: dict[str, bytes | None] = {}
        index: PositionIndex | None = None  # built on the first filtered client only
        delivered = 0
        for client in self.clients.values():
            route = client.subs.route(POSITIONS)
            if route is None:
                continue
            if route is ALL:
                frame: bytes | None = event.frame
            else:
                key = client.subs.positions_key or ""
                if key in frames:
                    frame = frames[key]
                else:
                    if index is None:
                        index = PositionIndex(positions)
                    frame = frames[key] = self._positions_frame(event, route, positions, index)
            if frame is None:
                continue
            delivered += 1
            client.messages_sent += 1
            if not client.outbox.push(frame, POSITIONS_KIND):
                self._slow_consumer(client)
        self.stats.deliveries += delivered

    def _positions_frame(
        self, event: StreamEvent, route: tuple[Any, ...], positions: list[dict[str, Any]],
        index: PositionIndex | None = None,
    ) -> bytes | None:
        kept = index.slice(route) if index is not None else slice_records(route, positions)
        if not kept:
            return None
        self.stats.positions_encodings += 1
        return event.variant({**event.data, "count": len(kept), "positions": kept})

    def _replay(self, client: Client, events: Iterable[StreamEvent]) -> int:
        sent = 0
        for event in events:
            route = client.subs.route(event.type)
            if route is None:
                continue
            if event.type == POSITIONS:
                if route is ALL:
                    frame: bytes | None = event.frame
                else:
                    positions = event.data.get("positions")
                    frame = self._positions_frame(
                        event, route, positions if isinstance(positions, list) else []
                    )
                if frame is None:
                    continue
                self._deliver(client, frame, POSITIONS_KIND)
            elif route is ALL or any(f.accepts(event.type, event.data) for f in route):
                self._deliver(client, event.frame, EVENT)
            else:
                continue
            sent += 1
        return sent

    # -- state for snapshots -----------------------------------------------------------------

    def replace_positions(self, positions: list[dict[str, Any]]) -> None:
        """Current position of every flight, served as the snapshot batch."""
        self.positions = positions

    def feed_updated(self, update_time: dt.datetime) -> None:
        self.feed_time = update_time

    def feed_age(self) -> float | None:
        if self.feed_time is None:
            return None
        return round((dt.datetime.now(dt.UTC) - self.feed_time).total_seconds(), 1)

    # -- client actions ----------------------------------------------------------------------

    def subscribe(self, client: Client, req: Subscribe) -> None:
        self.flush()  # held events go out under the routes they were published under
        client.subs.set(req.channels, req.filters)
        reply: dict[str, Any] = {
            "type": "subscribed",
            "channels": list(req.channels),
            "filters": req.filters.echo,
        }
        held = None
        if req.resume is not None:
            held = self.stream.since(*req.resume)
            reply["recovered"] = held is not None
            if held is None:
                self.stats.resumes_lost += 1
            else:
                self.stats.resumes_recovered += 1
        self.send(client, encode_reply(reply, req.request_id))
        if held:
            self._replay(client, held)
        if req.snapshot:
            self._send_snapshot(client)

    def _send_snapshot(self, client: Client) -> None:
        now = format_ts()
        route = client.subs.route(POSITIONS)
        if route is not None and self.positions:
            kept = slice_records(route, self.positions)
            if kept:
                data = {"count": len(kept), "positions": kept, "snapshot": True}
                self._deliver(client, text_frame(Envelope(POSITIONS, now, data).encode()),
                              POSITIONS_KIND)
        route = client.subs.route(TMI_ACTIVE)
        if route is not None:
            programs = slice_records(route, self.tmi.active())
            data = {"programs": programs, "count": len(programs)}
            self._deliver(client, text_frame(Envelope(TMI_ACTIVE, now, data).encode()), EVENT)

    def handle_publish(self, client: Client, req: Publish) -> None:
        data = req.data
        if req.channel.startswith("tmi."):
            data = self.prepare_tmi(req.channel, data, req.request_id)
        seq, duplicate = self.publish(
            req.channel, data, timestamp=req.timestamp, event_id=req.event_id
        )
        ack = {
            "type": "publish_ack",
            "event_id": req.event_id if req.event_id is not None else f"e-{seq}",
            "seq": seq,
            "accepted": 0 if duplicate else 1,
            "duplicates": 1 if duplicate else 0,
        }
        self.send(client, encode_reply(ack, req.request_id))

    def prepare_tmi(self, event_type: str, data: dict[str, Any], rid: Any = MISSING) -> dict:
        """A published TMI payload checked against the active programs (core/tmi.py)."""
        try:
            return prepare_publish(self.tmi, event_type, data)
        except TmiError as exc:
            raise ProtocolError(INVALID_PUBLISH, str(exc), rid) from None

    def status(self, client: Client) -> dict[str, Any]:
        self.flush_for(client)
        data: dict[str, Any] = {
            "client_id": client.client_id,
            "connected_at": client.connected_at,
            "subscriptions": list(client.subs.patterns),
            "messages_sent": self._targets.messages_sent(client),
            "filters": client.subs.echo(),
            "tier": client.tier,
            "epoch": self.stream.epoch,
            "seq": self.stream.last_seq,
            "outbox_bytes": client.outbox.queued_bytes,
            "connected_clients": len(self.clients),
            "uptime_seconds": int(time.monotonic() - self.started),
        }
        age = self.feed_age()
        if age is not None:
            data["feed_age_seconds"] = age
        return data

    def connected_message(self, client: Client) -> bytes:
        return dumps(
            {
                "type": "connected",
                "data": {
                    "client_id": client.client_id,
                    "server_time": format_ts_seconds(),
                    "version": PROTOCOL_VERSION,
                    "tier": client.tier,
                    "epoch": self.stream.epoch,
                    "seq": self.stream.last_seq,
                    "heartbeat_interval": _whole(self.config.heartbeat_interval),
                },
            }
        )

    # -- periodic tasks ----------------------------------------------------------------------

    def heartbeat(self) -> None:
        """One frame for everyone: heartbeats are never filtered."""
        data: dict[str, Any] = {
            "connected_clients": len(self.clients),
            "uptime_seconds": int(time.monotonic() - self.started),
            "seq": self.stream.last_seq,
        }
        age = self.feed_age()
        if age is not None:
            data["feed_age_seconds"] = age
        frame = text_frame(Envelope(HEARTBEAT, format_ts(), data).encode())
        for client in list(self.clients.values()):
            self._deliver(client, frame, EVENT)

    async def run_heartbeat(self) -> None:
        while True:
            await trio.sleep(self.config.heartbeat_interval)
            self.heartbeat()

    def expire_programs(self, now: dt.datetime | None = None) -> int:
        now = now or dt.datetime.now(dt.UTC)
        due = self.tmi.due(now)
        for program in due:
            self.publish("tmi.released", {**program, "status": "EXPIRED"})
            log.info("program %s reached its end time: released (EXPIRED)",
                     program.get("program_id"))
        return len(due)

    async def run_tmi_expiry(self, interval: float = 1.0) -> None:
        while True:
            await trio.sleep(interval)
            self.expire_programs()
