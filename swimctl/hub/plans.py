"""Who gets an event of a given type: fan-out plans, cached until the set of routes changes.

A plan splits the subscribers of one event type by how much work their filters need:

- unfiltered (route ALL, or any route for types every filter passes): each gets the event.
  Those whose socket was writable straight away when the plan was made sit in `fast_fds`,
  plain lists of file descriptors, one per wire encoding (wire/encodings.py): the fan-out loop
  writes the shared frame of that encoding to each without
  touching a client or outbox object. Touching them costs a cache miss or two per client
  after each system call (about 1 µs of 5–6 at 1,000 clients), which is most of what the hub
  adds to a bare write loop.
- filtered: airport-only routes listed under each of their airports, the rest in `general`.

The fast list is only valid while every outbox in it stays `direct` (nothing queued, open,
taking events). Any outbox leaving that state bumps the hub's `Demotions` count, and the
plan rebuilds its fast list before the next event, so a frame can never overtake a backlog
or reach a socket that is closing. An outbox that becomes direct again rejoins the fast list
at the next rebuild; until then it is served through its outbox, which writes directly too.

Per-client message counts are not touched per event on the fast path: the plan counts the
events (and the bytes, per encoding) it wrote and adds them to each client when its fast list
is rebuilt or dropped (`fold`); `pending_messages` and `pending_bytes` answer for one client in
between.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from swimctl.core.channels import is_hub_only
from swimctl.core.routing import ALL
from swimctl.hub.outbox import Demotions
from swimctl.wire.encodings import ENCODINGS

if TYPE_CHECKING:
    from swimctl.hub.client import Client
    from swimctl.hub.outbox import Outbox

Target = tuple["Client", "Outbox", Any]  # (client, its outbox, its fast route for one type)


class TargetPlan:
    """The subscribers of one event type, grouped for fan-out (see the module docstring)."""

    __slots__ = (
        "by_airport",
        "demotions",
        "fast_by_fd",
        "fast_bytes",
        "fast_events",
        "fast_fds",
        "fast_stamp",
        "filtered",
        "general",
        "slow",
        "unfiltered",
    )

    def __init__(self, clients: Iterable[Client], etype: str, demotions: Demotions) -> None:
        self.demotions = demotions
        pass_all = is_hub_only(etype)  # every filter accepts these (Filter.accepts)
        self.unfiltered: list[Target] = []
        self.filtered: list[Target] = []  # every target with a route to test
        self.general: list[Target] = []  # filtered, but not by airports alone
        self.by_airport: dict[str, list[Target]] = {}
        for client in clients:
            route = client.subs.fast_route(etype)
            if route is None:
                continue
            target = (client, client.outbox, route)
            if pass_all or route is ALL:
                self.unfiltered.append(target)
                continue
            self.filtered.append(target)
            if type(route) is frozenset:
                for code in route:
                    self.by_airport.setdefault(code, []).append(target)
            else:
                self.general.append(target)
        self.fast_fds: list[list[int]] = [[] for _ in ENCODINGS]
        self.fast_by_fd: dict[int, Target] = {}
        self.slow: list[Target] = []
        self.fast_events = 0
        self.fast_bytes = [0] * len(ENCODINGS)
        self.fast_stamp = -1

    def fast_ready(self) -> bool:
        """True when no outbox has left the direct state since the fast list was made."""
        return self.fast_stamp == self.demotions.count

    def rebuild_fast(self) -> None:
        """Split the unfiltered targets into direct file descriptors and the rest."""
        self.fold()
        fds: list[list[int]] = [[] for _ in ENCODINGS]
        by_fd: dict[int, Target] = {}
        slow: list[Target] = []
        for target in self.unfiltered:
            outbox = target[1]
            if outbox.direct and outbox.fd is not None:
                fds[outbox.encoding].append(outbox.fd)
                by_fd[outbox.fd] = target
            else:
                slow.append(target)
        self.fast_fds, self.fast_by_fd, self.slow = fds, by_fd, slow
        self.fast_stamp = self.demotions.count

    def fold(self) -> None:
        """Add the events (and bytes) written through the fast list to each of its clients'
        counts."""
        count = self.fast_events
        if count:
            sizes = self.fast_bytes
            for client, outbox, _ in self.fast_by_fd.values():
                client.messages_sent += count
                client.direct_bytes += sizes[outbox.encoding]
            self.fast_events = 0
            self.fast_bytes = [0] * len(ENCODINGS)

    def pending_messages(self, client: Client) -> int:
        """Events this plan wrote to `client` that its count does not show yet."""
        fd = client.outbox.fd
        if fd is None or not self.fast_events:
            return 0
        target = self.fast_by_fd.get(fd)
        return self.fast_events if target is not None and target[0] is client else 0

    def pending_bytes(self, client: Client) -> int:
        """Bytes this plan wrote to `client` that its count does not show yet."""
        fd = client.outbox.fd
        if fd is None or not self.fast_events:
            return 0
        target = self.fast_by_fd.get(fd)
        if target is None or target[0] is not client:
            return 0
        return self.fast_bytes[client.outbox.encoding]


class TargetCache:
    """One plan per event type, valid until `reset`: the hub resets it when a client comes
    or goes and whenever a client's subscriptions change (Subscriptions.on_change)."""

    def __init__(self, demotions: Demotions) -> None:
        self.demotions = demotions
        self._plans: dict[str, TargetPlan] = {}

    def reset(self) -> None:
        for old in self._plans.values():
            old.fold()
        self._plans = {}

    def plan(self, etype: str, clients: dict[str, Client]) -> TargetPlan:
        plan = self._plans.get(etype)
        if plan is None:
            plan = self._plans[etype] = TargetPlan(clients.values(), etype, self.demotions)
        return plan

    def messages_sent(self, client: Client) -> int:
        """A client's delivered-message count, including what the plans have not folded."""
        return client.messages_sent + sum(p.pending_messages(client)
                                          for p in self._plans.values())

    def direct_bytes(self, client: Client) -> int:
        """Bytes fan-out's fast path wrote to a client, including what is not folded yet."""
        return client.direct_bytes + sum(p.pending_bytes(client) for p in self._plans.values())
