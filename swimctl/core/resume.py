"""Resume planning and ordered de-duplication for a client, without I/O.

A client that reconnects re-sends its subscriptions; the last one carries `resume` from its
position (epoch, last seq). What to send, whether a gap is already known (a new epoch, a hub
without resume), and how to deliver the events that arrived during the resync in `seq` order
without duplicates are decided here; the trio client (swimctl.client) does the sending.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import attrs

Item = TypeVar("Item")


@attrs.define
class SubscriptionGroup:
    """One `subscribe` call: a set of patterns sharing filters, replayed on reconnect."""

    channels: list[str]
    filters: dict[str, Any]
    snapshot: bool

    def request(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"action": "subscribe", "channels": list(self.channels)}
        if self.filters:
            msg["filters"] = self.filters
        if self.snapshot:
            msg["snapshot"] = True
        return msg


@attrs.define(eq=False)
class ResyncPlan:
    groups: list[SubscriptionGroup]
    resume: tuple[str, int] | None
    gap_reason: str | None = None  # set when the gap is known before asking (new epoch)
    previous_epoch: str | None = None


NO_RESUME_GAP = ("the hub does not support resume: events during the disconnect may have "
                 "been missed")
NEW_EPOCH_GAP = "the hub restarted (new epoch): events were missed"


def plan_for(groups: list[SubscriptionGroup], epoch: str | None, last_seq: int | None,
             hub_epoch: str, hub_seq: int | None) -> ResyncPlan:
    """Resubscribe `groups`, resuming from (epoch, last_seq) when the hub's epoch is ours."""
    if hub_epoch != epoch:
        floor = hub_seq if hub_seq is not None else 0
        return ResyncPlan(groups, (hub_epoch, floor), gap_reason=NEW_EPOCH_GAP,
                          previous_epoch=epoch)
    return ResyncPlan(groups, (hub_epoch, last_seq or 0))


def in_seq_order(buffered: Sequence[tuple[int | None, Item]]) -> list[Item]:
    """Items held during a resync, (seq or None, item), in delivery order: events by seq
    (stable for equal seqs), anything without a seq right after the event before it."""
    order: list[tuple[int, int, Item]] = []
    running = -1
    for index, (seq, item) in enumerate(buffered):
        if seq is not None:
            running = max(running, seq)
            order.append((seq, index, item))
        else:
            order.append((running, index, item))
    order.sort(key=lambda entry: (entry[0], entry[1]))
    return [item for _, _, item in order]


def is_new(seq: int | None, last_seq: int | None) -> bool:
    """Ordered de-duplication: an event is delivered only past the position."""
    return seq is None or last_seq is None or seq > last_seq
