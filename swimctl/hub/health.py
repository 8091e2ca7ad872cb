"""Standing troubles of the hub's parts (a full disk, an unwritable offset, a replaced key
database), kept where `/healthz`, `/metrics` and the log all read them.

A part that keeps failing must not write a line per attempt (a full disk under a busy stream
would fill what is left of it with log lines), so a condition logs once when it starts, once
when it ends, and otherwise only counts.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from swimctl.hub.accept import AcceptGuard
    from swimctl.hub.leadership import Leadership
    from swimctl.hub.recorder import Recorder
    from swimctl.hub.sources.events_file import EventsFileFollower
    from swimctl.hub.usage import UsageMeter
    from swimctl.stream.redis import RedisLog


@attrs.define
class Condition:
    """One part's trouble: `problem` is None while the part works."""

    part: str
    log: logging.Logger
    problem: str | None = None
    since: float = 0.0  # time.monotonic() when the current trouble began
    episodes: int = 0  # how many times it has gone wrong (a counter for /metrics)
    failures: int = 0  # failed attempts, across episodes

    @property
    def ok(self) -> bool:
        return self.problem is None

    def fail(self, problem: str, consequence: str = "") -> None:
        """Record a failed attempt; logs only the first one of an episode."""
        self.failures += 1
        if self.problem is None:
            self.episodes += 1
            self.since = time.monotonic()
            self.log.error("%s: %s%s", self.part, problem, f"; {consequence}" if consequence
                           else "")
        self.problem = problem

    def clear(self, detail: str = "") -> None:
        """The part works again: one line saying for how long it did not."""
        if self.problem is None:
            return
        lasted = time.monotonic() - self.since
        self.log.warning("%s: working again after %.0f s%s", self.part, lasted,
                         f" ({detail})" if detail else "")
        self.problem = None

    def describe(self) -> str | None:
        """One line for /healthz, or None while the part works."""
        if self.problem is None:
            return None
        return f"{self.part}: {self.problem} (for {time.monotonic() - self.since:.0f} s)"


@attrs.define
class Watched:
    """The parts `/healthz` and `/metrics` report on besides the hub and its keys. The service
    fills it in as it starts them; the metrics server only reads it."""

    recorder: Recorder | None = None
    follower: EventsFileFollower | None = None
    accepts: list[AcceptGuard] = attrs.field(factory=list)
    broker: RedisLog | None = None
    others: list[Condition] = attrs.field(factory=list)  # e.g. the state directory
    usage: UsageMeter | None = None
    leases: list[Leadership] = attrs.field(factory=list)  # sources led on a broker

    def conditions(self) -> list[Condition]:
        found = [guard.condition for guard in self.accepts] + self.others
        if self.usage is not None:
            found.append(self.usage.condition)
        if self.recorder is not None:
            found.append(self.recorder.condition)
        if self.follower is not None:
            found.append(self.follower.condition)
        return found
