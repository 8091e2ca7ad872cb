"""Fan-out: an event's frame to every client that accepts it, without awaiting any of them.

Unfiltered clients whose outbox is writable straight away get the shared frame through a
plain non-blocking write per file descriptor (hub/plans.py); filtered clients are found
through their airports or their filters; a positions batch is sliced per distinct filter and
each slice encoded once. Only what the kernel does not take waits in an outbox. A client
whose backlog passes its bound is handed to `on_slow` (close 4008).

A positions batch may come as several parts (core/batches.py), each its own event: each is
sliced alone, and its frames carry the batch id to the outbox, which replaces a queued older
batch only as a whole (hub/outbox.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from swimctl.core.batches import batch_parts
from swimctl.core.channels import POSITIONS
from swimctl.core.filters import carries_filter_fields
from swimctl.core.routing import ALL, PositionIndex, airport_keys, slice_records
from swimctl.hub.client import Client
from swimctl.hub.outbox import EVENT
from swimctl.hub.outbox import POSITIONS as POSITIONS_KIND
from swimctl.hub.plans import TargetCache, TargetPlan
from swimctl.hub.stats import HubStats
from swimctl.stream.base import LogEvent
from swimctl.wire.encodings import ENCODINGS, Frames


class FanOut:
    def __init__(self, clients: dict[str, Client], targets: TargetCache, stats: HubStats,
                 on_slow: Callable[[Client], None], payload_limit: int = 1 << 62) -> None:
        self.clients = clients
        self.targets = targets
        self.stats = stats
        self.on_slow = on_slow
        self.payload_limit = payload_limit  # a slice bigger than this goes out part by part
        # The parts so far of the batch being published (batch id, parts in order): filtered
        # clients get their slice of the whole batch when its last part arrives.
        self._batch: tuple[str, list[LogEvent]] | None = None

    def push(self, client: Client, frame: bytes, kind: int, batch: str | None = None) -> None:
        """One frame to one client, counted as a delivery to it."""
        client.messages_sent += 1
        if not client.outbox.push(frame, kind, batch):
            self.on_slow(client)

    def frame(self, event: Frames, encoding: int, deliveries: int = 1) -> bytes:
        """`event`'s shared frame in `encoding`, for `deliveries` clients (counted, when
        compressed, in the before/after byte totals): the one place frames handed to clients
        are counted."""
        frame = event.frame(encoding)
        if encoding:
            self.stats.count_deflated(event.payload, frame, deliveries)
        return frame

    # -- events (not positions) ----------------------------------------------------------------

    def events(self, events: Sequence[LogEvent]) -> None:
        """Events in stream order. When every type among them has the same unfiltered
        clients (a feed cycle's lifecycle events to clients that take all flight events),
        those clients get the whole burst in one write; otherwise each run of one type
        does. Either way a client is unfiltered for every event written to it together, and
        filtered ones get theirs event by event, so each client's order is the stream's."""
        plans = {event.type: self.targets.plan(event.type, self.clients) for event in events}
        if len(plans) > 1:
            for plan in plans.values():
                if not plan.fast_ready():
                    plan.rebuild_fast()
            first, *others = plans.values()
            if all(p.fast_fds == first.fast_fds and p.slow == first.slow for p in others):
                self._together(first, events, plans)
                return
        start = 0
        while start < len(events):
            etype = events[start].type
            end = start + 1
            while end < len(events) and events[end].type == etype:
                end += 1
            self._together(plans[etype], events[start:end], plans)
            start = end

    def _together(self, unfiltered: TargetPlan, events: Sequence[LogEvent],
                  plans: dict[str, TargetPlan]) -> None:
        """`unfiltered`'s clients get `events` joined in one write each; each event's
        filtered clients get it through their outboxes, in order."""
        delivered = self._write_unfiltered(unfiltered, events)
        for event in events:
            plan = plans[event.type]
            if plan.filtered:
                delivered += self._filtered(plan, event)
        self.stats.deliveries += delivered

    def _filtered(self, plan: TargetPlan, event: LogEvent) -> int:
        etype, data = event.type, event.data
        if not carries_filter_fields(data):
            return 0  # nothing for a filter to test: unfiltered subscriptions only
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
            if not outbox.push(self.frame(event, outbox.encoding), EVENT):
                self.on_slow(client)
        return delivered

    def _write_unfiltered(self, plan: TargetPlan, events: Sequence[LogEvent]) -> int:
        """The shared frames, joined, to every client that takes all events of the type: a
        plain non-blocking write per file descriptor while the kernel buffers have room; a
        client whose write falls short (or that was already backlogged) goes through its
        outbox. Returns the number of deliveries."""
        if not plan.fast_ready():
            plan.rebuild_fast()
        count = len(events)
        write = os.write
        for encoding, fds in enumerate(plan.fast_fds):
            if not fds:
                continue
            frames = [self.frame(event, encoding, len(fds)) for event in events]
            frame = frames[0] if count == 1 else b"".join(frames)
            size = len(frame)
            short: list[tuple[int, int]] | None = None
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
            written = len(fds)
            if short:
                written -= len(short)
                for fd, sent in short:
                    client, outbox, _ = plan.fast_by_fd[fd]
                    client.direct_bytes -= size  # its outbox counts these; the fold adds size
                    if sent >= 0:
                        ok = outbox.wrote_frames(frames, sent)
                    else:
                        ok = all([outbox.push(one, EVENT) for one in frames])
                    if not ok:
                        self.on_slow(client)
            self.stats.direct_bytes += written * size
            plan.fast_bytes[encoding] += size
        plan.fast_events += count
        if plan.slow:  # through their outboxes: the same frames, counted once per encoding
            backlogged = [0] * len(ENCODINGS)
            for _, outbox, _ in plan.slow:
                backlogged[outbox.encoding] += 1
            queued_by_encoding = [[self.frame(event, encoding, n) for event in events]
                                  if n else [] for encoding, n in enumerate(backlogged)]
            for client, outbox, _ in plan.slow:
                client.messages_sent += count
                queued = queued_by_encoding[outbox.encoding]
                if not all([outbox.push(one, EVENT) for one in queued]):
                    self.on_slow(client)
        return (sum(len(fds) for fds in plan.fast_fds) + len(plan.slow)) * count

    # -- positions -----------------------------------------------------------------------------

    def positions(self, event: LogEvent) -> None:
        """Each client gets the positions its filters accept; each distinct slice is encoded
        once and shared by every client with the same filters.

        A batch in parts goes to unfiltered clients part by part. A filtered client gets its
        slice of the whole batch in one frame when the last part arrives (the last part's seq
        and id, no part keys: a small slice is one batch, as a client expects of a frame
        without them), or, when that slice is over the frame bound or parts went missing,
        its slice of each part, all at once."""
        found = batch_parts(event.data)
        parts = [event]
        last = True
        if found is not None:
            batch_id, part, count = found
            held = self._batch
            if part == 1 or held is None or held[0] != batch_id:
                held = self._batch = (batch_id, [])
            held[1].append(event)
            parts, last = held[1], part == count
            if last:
                self._batch = None
            whole = last and [batch_parts(p.data) for p in parts] == [
                (batch_id, n, count) for n in range(1, count + 1)]
        else:
            whole = True
        slices: dict[str, list[LogEvent]] = {}
        index: PositionIndex | None = None  # built on the first filtered client only
        tag = positions_tag(event)
        delivered = 0
        for client in self.clients.values():
            route = client.subs.route(POSITIONS)
            if route is None:
                continue
            if route is ALL:
                sources = parts[-1:]
            elif not last:
                continue
            else:
                key = client.subs.positions_key or ""
                if key in slices:
                    sources = slices[key]
                else:
                    if index is None:
                        index = PositionIndex(
                            [p for part in parts for p in positions_of(part)])
                    sources = slices[key] = self._slices(parts, route, index, whole)
            encoding = client.outbox.encoding
            for source in sources:
                delivered += 1
                client.messages_sent += 1
                if not client.outbox.push(self.frame(source, encoding), POSITIONS_KIND, tag):
                    self.on_slow(client)
        self.stats.deliveries += delivered

    def _slices(self, parts: list[LogEvent], route: tuple[Any, ...], index: PositionIndex,
                whole: bool) -> list[LogEvent]:
        """A filtered client's frames of a batch: its slice of all of it as one event, or
        (too big for a frame, or parts missing) the slice of each part."""
        kept = index.slice(route)
        if not kept:
            return []
        last = parts[-1]
        if whole:
            self.stats.positions_encodings += 1
            data = {k: v for k, v in last.data.items() if k not in BATCH_KEYS}
            data |= {"count": len(kept), "positions": kept}
            payload = last.variant_payload(data)
            if len(payload) <= self.payload_limit:
                return [LogEvent(last.seq, last.type, last.timestamp, last.event_id, data,
                                 payload, last.received)]
        out = []
        for part in parts:
            source = self.positions_slice(part, route, positions_of(part))
            if source is not None:
                out.append(source)
        return out

    def positions_slice(self, event: LogEvent, route: tuple[Any, ...],
                        positions: list[dict[str, Any]],
                        index: PositionIndex | None = None) -> LogEvent | None:
        """The batch with only the positions `route` accepts, as an event of its own (same
        seq and id) whose frames are cached like any other's; None when nothing is left."""
        kept = index.slice(route) if index is not None else slice_records(route, positions)
        if not kept:
            return None
        self.stats.positions_encodings += 1
        data = {**event.data, "count": len(kept), "positions": kept}
        return LogEvent(event.seq, event.type, event.timestamp, event.event_id, data,
                        event.variant_payload(data), event.received)

    # -- one client ----------------------------------------------------------------------------

    def replay(self, client: Client, events: Iterable[LogEvent]) -> int:
        """Held events a resuming client's subscriptions accept, in order."""
        sent = 0
        encoding = client.outbox.encoding
        for event in events:
            route = client.subs.route(event.type)
            if route is None:
                continue
            if event.type == POSITIONS:
                source: LogEvent | None = event
                if route is not ALL:
                    positions = event.data.get("positions")
                    source = self.positions_slice(
                        event, route, positions if isinstance(positions, list) else [])
                if source is None:
                    continue
                self.push(client, self.frame(source, encoding), POSITIONS_KIND,
                          positions_tag(event))
            elif route is ALL or any(f.accepts(event.type, event.data) for f in route):
                self.push(client, self.frame(event, encoding), EVENT)
            else:
                continue
            sent += 1
        return sent


BATCH_KEYS = ("count", "positions", "batch_id", "part", "parts")


def positions_of(event: LogEvent) -> list[dict[str, Any]]:
    positions = event.data.get("positions")
    return positions if isinstance(positions, list) else []


def positions_tag(event: LogEvent) -> str:
    """What a positions frame is part of, for the outbox: its batch, or itself alone."""
    found = batch_parts(event.data)
    return found[0] if found is not None else event.event_id
