"""The engine: the registry of live clients, the hub's state, and the two halves of the stream.

Events go into the log (`publish`, awaiting its answer) and come back through `deliver`, the
log's delivery callback, which applies them to the hub's state (TMI programs, the latest
complete positions batch) and fans them out (hub/fanout.py), at once or with the burst they
belong to (hub/coalescer.py). State is built only from delivered events, so hubs that share
one log build the same state. No frame the hub sends is larger than `max_frame_bytes`: a
positions batch over it is published as parts, each its own event (core/batches.py). Delivery,
replies and resume are synchronous: nothing here awaits a client, so no client can delay
another, and held events are flushed before anything a client could see out of order, so a
resume never falls between history and live delivery.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import trio

from swimctl import PROTOCOL_VERSION
from swimctl.core.batches import (
    BATCH_KEYS,
    BatchAssembler,
    FrameTooLarge,
    batch_parts,
    envelope_measure,
    part_data,
    payload_limit,
    split_batch,
    typed_positions,
    typed_record,
)
from swimctl.core.channels import DEFAULT_CHANNELS, HEARTBEAT, POSITIONS, TMI_ACTIVE, Channels
from swimctl.core.filters import AirportArtcc
from swimctl.core.model import Envelope, dumps, format_ts, format_ts_seconds
from swimctl.core.protocol import (
    CLOSE_AUTH,
    CLOSE_GOING_AWAY,
    CLOSE_SERVICE_RESTART,
    CLOSE_SLOW,
    SLOW_CONSUMER,
    Subscribe,
    encode_reply,
    error_reply,
)
from swimctl.core.routing import ALL, slice_records
from swimctl.core.tmi import TmiBook
from swimctl.hub.client import Client
from swimctl.hub.coalescer import Coalescer
from swimctl.hub.config import HubConfig
from swimctl.hub.fanout import FanOut
from swimctl.hub.outbox import CONTROL, EVENT, Demotions
from swimctl.hub.outbox import POSITIONS as POSITIONS_KIND
from swimctl.hub.plans import TargetCache
from swimctl.hub.stats import FeedCycle, HubStats
from swimctl.stream.base import Appended, Draft, EventLog, LogEvent
from swimctl.stream.memory import MemoryLog
from swimctl.wire.encodings import Framed
from swimctl.wire.frames import text_frame

log = logging.getLogger("swimctl.hub")


class ClientWatcher(Protocol):
    """Told of every client admitted, refused at its cap, and gone (usage accounting)."""

    def joined(self, client: Client) -> None: ...

    def left(self, client: Client) -> None: ...

    def refused(self, key_id: int, tier: str, kind: str) -> None: ...


def _whole(value: float) -> int | float:
    """30.0 goes on the wire as 30, as PROTOCOL.md shows it (typed SDKs parse an int)."""
    return int(value) if float(value).is_integer() else value


class Hub:
    def __init__(
        self,
        config: HubConfig | None = None,
        *,
        log: EventLog | None = None,
        channels: Channels | None = None,
        airport_artcc: AirportArtcc | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or HubConfig()
        self.log: EventLog = log if log is not None else MemoryLog(
            history_size=self.config.history_size,
            history_age=self.config.history_age,
            history_bytes=self.config.history_bytes,
            dedupe_size=self.config.dedupe_size,
            clock=clock,
        )
        self.channels = channels if channels is not None else \
            DEFAULT_CHANNELS.with_families(self.config.families)
        self.airport_artcc = airport_artcc
        self.clients: dict[str, Client] = {}
        self.by_key: dict[int, set[Client]] = {}
        self.payload_limit = payload_limit(self.config.max_frame_bytes)
        # The latest complete positions batch, joined from the parts delivered (snapshots).
        self.positions_state = BatchAssembler()
        # The whole positions snapshot of one batch: (batch id, its parts, each framed once per
        # encoding).
        self._snapshot_cache: tuple[str, list[Framed]] | None = None
        self.tmi = TmiBook()
        self.stats = HubStats()
        self.started = time.monotonic()
        self.feed_time: dt.datetime | None = None
        self.on_event: list[Callable[[LogEvent], None]] = []  # recorders, metrics
        self.watchers: list[ClientWatcher] = []  # usage history (hub/usage.py)
        self.shutting_down = False
        self.name = ""  # host:port/id once listening: which hub a client is on (status)
        self._emptied = trio.Event()  # set whenever the last client goes
        self.demotions = Demotions()  # shared by this hub's outboxes and plans
        self._targets = TargetCache(self.demotions)  # fan-out plans per event type
        self.fan_out = FanOut(self.clients, self._targets, self.stats, self.slow_consumer,
                              self.payload_limit)
        self.coalescer = Coalescer(self.config.coalesce_window, self.fan_out.events,
                                   self.stats)
        self.log.set_delivery(self.deliver, self.restore)

    # -- clients -----------------------------------------------------------------------------

    def admit(self, client: Client) -> bool:
        """Register a client unless its key is at its tier's connection cap."""
        self.flush()
        cap = self.config.tier_caps.get(client.tier, 0)
        peers = self.by_key.setdefault(client.key_id, set())
        if len(peers) >= cap:
            if not peers:
                del self.by_key[client.key_id]
            self.stats.cap_refusals += 1
            for watcher in self.watchers:
                watcher.refused(client.key_id, client.tier, "cap")
            return False
        peers.add(client)
        self.clients[client.client_id] = client
        client.subs.on_change = self._targets.reset
        self._targets.reset()  # who is subscribed to what has changed
        for watcher in self.watchers:
            watcher.joined(client)
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
        if client.close_code is not None:
            self.stats.closes[client.close_code] += 1
        for watcher in self.watchers:  # after the reset: every plan has folded its counts
            watcher.left(client)
        if not self.clients:
            self._emptied.set()

    def usage_of(self, client: Client) -> tuple[int, int]:
        """Stream events handed to a client (not heartbeats, replies or snapshots) and bytes
        written to its socket, including what the fan-out plans have not folded in yet."""
        events = self._targets.messages_sent(client) - client.non_stream_frames
        return events, client.outbox.bytes_sent + self._targets.direct_bytes(client)

    async def clients_gone(self) -> None:
        """Return once no client is connected (after `shutdown`, once all have closed)."""
        while self.clients:
            if self._emptied.is_set():
                self._emptied = trio.Event()
            await self._emptied.wait()

    def revoke_key(self, key_id: int, reason: str) -> int:
        """Close every connection of a key that was revoked or expired (4001)."""
        clients = list(self.by_key.get(key_id, ()))
        for client in clients:
            self.send(client, error_reply("AUTH_FAILED", reason))
            client.request_close(CLOSE_AUTH, reason)
        return len(clients)

    async def shutdown_in_waves(self, over: float, waves: int = 10) -> None:
        """Close every client with 1001, a tenth at a time across `over` seconds (a draining
        hub on a broker: its clients spread over the hubs that stay)."""
        self.flush()
        self.shutting_down = True
        clients = list(self.clients.values())
        size = max(1, -(-len(clients) // waves))
        for start in range(0, len(clients), size):
            for client in clients[start:start + size]:
                client.request_close(CLOSE_GOING_AWAY, "hub shutting down")
            if start + size < len(clients):
                await trio.sleep(over / waves)

    def shutdown(self) -> None:
        self.flush()
        self.shutting_down = True
        for client in list(self.clients.values()):
            client.request_close(CLOSE_GOING_AWAY, "hub shutting down")

    # -- writing to one client ---------------------------------------------------------------

    def send(self, client: Client, payload: bytes) -> None:
        """A reply or error to one client, through its outbox. Replies count toward the
        outbox bound like events: a client that asks and never reads is a slow consumer."""
        self.coalescer.flush_for(client)
        if not client.outbox.push(self.encode_for(client, payload), CONTROL):
            self.slow_consumer(client)

    def encode_for(self, client: Client, payload: bytes) -> bytes:
        """`payload` framed in the client's encoding, for this client alone."""
        return self.fan_out.frame(Framed(payload), client.outbox.encoding)

    def _deliver(self, client: Client, frame: bytes, kind: int, batch: str | None = None) -> None:
        """A heartbeat or snapshot: counted in messages_sent, but not a stream event."""
        self.coalescer.flush_for(client)
        client.non_stream_frames += 1
        self.fan_out.push(client, frame, kind, batch)

    def slow_consumer(self, client: Client) -> None:
        """Close 4008: the backlog is dropped, the client told why."""
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

    # -- the stream ----------------------------------------------------------------------------

    async def publish(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        timestamp: str | None = None,
        event_id: str | None = None,
        fence: tuple[str, str] | None = None,
    ) -> Appended:
        """Append one event to the log; it reaches clients through `deliver` (before this
        returns with the in-process log). Returns its seq, or the original seq of a
        duplicate `event_id`. A positions batch goes through `publish_positions` (it may
        become several events); integer fields of `flight.*` data are made integers; an
        event too large for one frame raises FrameTooLarge. `fence`: a source's lease, for
        a leader's writes (hub/leadership.py)."""
        if event_type == POSITIONS:
            return await self.publish_positions(
                data.get("positions"), timestamp=timestamp, event_id=event_id,
                extra={k: v for k, v in data.items()
                       if k not in ("count", "positions", "snapshot")}, fence=fence)
        if event_type.startswith("flight."):
            data = typed_record(data, needs_position=False) or data
        self._check_size(event_type, data, timestamp, event_id)
        return await self.log.append(Draft(event_type, data, timestamp, event_id, fence))

    def _check_size(self, event_type: str, data: dict[str, Any], timestamp: str | None,
                    event_id: str | None) -> None:
        size = envelope_measure(event_type, timestamp or format_ts(), event_id, None)(data)
        if size > self.payload_limit:
            raise FrameTooLarge(f"the event would be {size} bytes on the wire, over the hub's "
                                f"frame bound of {self.config.max_frame_bytes}")

    async def publish_positions(
        self,
        positions: Any,
        *,
        timestamp: str | None = None,
        event_id: str | None = None,
        extra: dict[str, Any] | None = None,
        fence: tuple[str, str] | None = None,
    ) -> Appended:
        """Publish a positions batch: one event when it fits a frame, else parts, each its
        own event in the log (its own seq) carrying `batch_id`, `part` and `parts`, all with
        one timestamp. Part 1 takes `event_id` (so a retried publish is a duplicate as a
        whole) and parts after it `event_id#N`; the batch id is `event_id`, or a new one.
        Positions without coordinates are dropped, integer fields made integers. A part that
        already carries batch keys (relayed from a recording) keeps them when it fits; one
        that does not fit becomes a batch of its own. Returns part 1's answer."""
        records = typed_positions(positions)
        extra = dict(extra or {})
        stamp = timestamp if timestamp is not None else format_ts()
        found = batch_parts(extra)
        for key in BATCH_KEYS:
            extra.pop(key, None)
        batch_id = found[0] if found is not None else (
            event_id if event_id is not None else f"b-{secrets.token_hex(6)}")
        measure = envelope_measure(POSITIONS, stamp, event_id, batch_id, extra)
        chunks = split_batch(records, measure, self.payload_limit)
        part, parts = 1, len(chunks)
        label: str | None = batch_id
        if found is not None and parts == 1:
            _, part, parts = found
        elif parts == 1:
            label = None  # one frame: the batch as it always was
        elif found is not None:
            label = f"b-{secrets.token_hex(6)}"
        first: Appended | None = None
        for n, chunk in enumerate(chunks):
            eid = event_id if n == 0 or event_id is None else f"{event_id}#{part + n}"
            data = part_data(chunk, label, part + n, parts, extra=extra)
            appended = await self.log.append(Draft(POSITIONS, data, stamp, eid, fence))
            if first is None:
                first = appended
                if appended.duplicate:
                    break
        assert first is not None
        return first

    def deliver(self, events: Sequence[LogEvent]) -> None:
        """The log's delivery callback: events in seq order, each once."""
        for event in events:
            event_type = event.type
            if event_type.startswith("tmi."):
                self.tmi.apply(event_type, event.data)
            self.stats.events[event_type] += 1
            if event_type == POSITIONS:
                self.positions_state.add(event.data, event.event_id)
                self.flush()  # what was published before goes out before
                self.coalescer.timed(self.fan_out.positions, event)
            else:
                self.coalescer.add(event)
            for hook in self.on_event:
                hook(event)

    def flush(self) -> None:
        """Fan out the events held by coalescing, in order, now."""
        self.coalescer.flush()

    async def run_coalescer(self) -> None:
        await self.coalescer.run()

    # -- state for snapshots -----------------------------------------------------------------

    def restore(self, events: Sequence[LogEvent], programs: Sequence[dict[str, Any]]) -> None:
        """State from a log that outlived this hub: the active programs and the latest
        complete positions batch, joined from its parts as live delivery joins them, so a
        hub that starts late serves the same snapshot as the others."""
        self.tmi = TmiBook()
        for program in programs:
            self.tmi.apply("tmi.issued", program)
        for event in events:
            if event.type == POSITIONS:
                self.positions_state.add(event.data, event.event_id)

    def log_reset(self, epoch: str) -> None:
        """The shared log lost its history (new epoch): every client must resubscribe, and
        learn from its resume that events were missed."""
        self.flush()
        for client in list(self.clients.values()):
            client.request_close(CLOSE_SERVICE_RESTART,
                                 f"event log restarted (epoch {epoch}); resume")

    def feed_updated(self, update_time: dt.datetime) -> None:
        self.feed_time = update_time

    def feed_stopped(self) -> None:
        """This hub no longer runs the feed (another hub leads it): it has no feed age."""
        self.feed_time = None

    def feed_cycle(self, cycle: FeedCycle) -> None:
        """What the feed's last cycle brought (for `swimctl top` and /metrics)."""
        self.stats.last_cycle = cycle
        self.stats.feed_cycles += 1

    def feed_age(self) -> float | None:
        if self.feed_time is None:
            return None
        return round((dt.datetime.now(dt.UTC) - self.feed_time).total_seconds(), 1)

    # -- client actions ----------------------------------------------------------------------

    def subscribe(self, client: Client, req: Subscribe) -> None:
        """Apply a subscribe, then (with no await in between, so nothing is delivered
        between them) replay what a resume asks for and send the snapshot."""
        self.flush()  # held events go out under the routes they were published under
        client.subs.set(req.channels, req.filters)
        reply: dict[str, Any] = {
            "type": "subscribed",
            "channels": list(req.channels),
            "filters": req.filters.echo,
        }
        held = None
        if req.resume is not None:
            held = self.log.since(*req.resume)
            reply["recovered"] = held is not None
            if held is None:
                self.stats.resumes_lost += 1
            else:
                self.stats.resumes_recovered += 1
        self.send(client, encode_reply(reply, req.request_id))
        if held:
            self.fan_out.replay(client, held)
        if req.snapshot:
            self._send_snapshot(client)

    def unsubscribe(self, client: Client, channels: tuple[str, ...] | None) -> list[str]:
        self.flush()  # held events go out under the routes they were published under
        return client.subs.remove(channels)

    def _send_snapshot(self, client: Client) -> None:
        """The latest complete positions batch the client's filters accept (in frames of the
        hub's bound, like a live batch) and the active programs, as state: no seq."""
        now = format_ts()
        route = client.subs.route(POSITIONS)
        state = self.positions_state
        if route is not None and state.records:
            batch_id = state.batch_id or ""
            tag = f"snapshot:{batch_id}"
            for frame in self._positions_snapshot(route, batch_id, now,
                                                  client.outbox.encoding):
                self._deliver(client, frame, POSITIONS_KIND, tag)
        route = client.subs.route(TMI_ACTIVE)
        if route is not None:
            programs = slice_records(route, self.tmi.active())
            measure = envelope_measure(TMI_ACTIVE, now, None, None, stream=False)
            chunks = split_batch(programs, measure, self.payload_limit, key="programs")
            for n, chunk in enumerate(chunks, 1):
                data: dict[str, Any] = {"programs": chunk, "count": len(chunk)}
                if len(chunks) > 1:
                    data |= {"part": n, "parts": len(chunks)}
                self._deliver(client,
                              self.encode_for(client, Envelope(TMI_ACTIVE, now, data).encode()),
                              EVENT)

    def _positions_snapshot(self, route: tuple[Any, ...], batch_id: str, now: str,
                            encoding: int) -> list[bytes]:
        """Snapshot frames for one route in one encoding; those of the whole batch are built
        (and compressed) once per batch and encoding: a hub restart brings every client back
        asking for them at once."""
        cached = self._snapshot_cache
        if route is ALL and cached is not None and cached[0] == batch_id:
            parts = cached[1]
        else:
            kept = slice_records(route, self.positions_state.records)
            if not kept:
                return []
            extra = {"snapshot": True}
            measure = envelope_measure(POSITIONS, now, None, batch_id, extra, stream=False)
            chunks = split_batch(kept, measure, self.payload_limit)
            label = batch_id if len(chunks) > 1 else None
            parts = [Framed(Envelope(POSITIONS, now, part_data(
                chunk, label, n, len(chunks), extra=extra)).encode())
                for n, chunk in enumerate(chunks, 1)]
            if route is ALL:
                self._snapshot_cache = (batch_id, parts)
        return [self.fan_out.frame(part, encoding) for part in parts]

    def status(self, client: Client) -> dict[str, Any]:
        self.coalescer.flush_for(client)
        filters, whole = client.subs.echo_bounded()
        data: dict[str, Any] = {
            "client_id": client.client_id,
            "connected_at": client.connected_at,
            "subscriptions": list(client.subs.patterns),
            "messages_sent": self._targets.messages_sent(client),
            "filters": filters,
            "tier": client.tier,
            "epoch": self.log.epoch,
            "seq": self.log.head,
            "outbox_bytes": client.outbox.queued_bytes,
            "connected_clients": len(self.clients),
            "uptime_seconds": int(time.monotonic() - self.started),
            "hub_id": self.name,
        }
        if not whole:
            data["filters_truncated"] = True  # bounded reply (core/routing.py)
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
                    "epoch": self.log.epoch,
                    "seq": self.log.head,
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
            "seq": self.log.head,
        }
        age = self.feed_age()
        if age is not None:
            data["feed_age_seconds"] = age
        beat = Framed(Envelope(HEARTBEAT, format_ts(), data).encode())
        for client in list(self.clients.values()):
            self._deliver(client, self.fan_out.frame(beat, client.outbox.encoding), EVENT)

    async def run_heartbeat(self) -> None:
        while True:
            await trio.sleep(self.config.heartbeat_interval)
            self.heartbeat()

    async def expire_programs(self, now: dt.datetime | None = None) -> int:
        now = now or dt.datetime.now(dt.UTC)
        due = self.tmi.due(now)
        for program in due:
            # The same id from every hub that sees the program end: stored once.
            await self.publish("tmi.released", {**program, "status": "EXPIRED"},
                               event_id=f"expired:{program.get('program_id')}")
            log.info("program %s reached its end time: released (EXPIRED)",
                     program.get("program_id"))
        return len(due)

    async def run_tmi_expiry(self, interval: float = 1.0) -> None:
        while True:
            await trio.sleep(interval)
            await self.expire_programs()
