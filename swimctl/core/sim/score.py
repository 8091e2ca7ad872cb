"""Detected events against the true ones: precision, recall and timing, per event type.

A detected event matches a true one of the same flight (`flight_uid`) and type when their
times differ by at most one feed interval: the gap between the two snapshots the detector
processed around the true moment (15 s on the live feed, longer across a lost snapshot, since
no detector can place an event more finely than the snapshots it saw). Events too close to
either end of a run are left out: at the first snapshot every flight is new, and near the last
one a disconnect cannot have been confirmed yet.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from swimctl.core.model import format_ts, parse_ts

SCORED_TYPES = ("flight.created", "flight.departed", "flight.arrived", "flight.deleted")


@attrs.define
class TypeScore:
    """One event type's figures."""

    true: int = 0  # true events in the window
    detected: int = 0  # detected events in the window
    found: int = 0  # true events matched
    correct: int = 0  # detected events matched
    errors: list[float] = attrs.field(factory=list)  # |detected - true| of each match, s
    misses: list[tuple[str, dict[str, Any]]] = attrs.field(factory=list)  # (stamp, data)
    spurious: list[tuple[str, dict[str, Any]]] = attrs.field(factory=list)

    @property
    def precision(self) -> float:
        return self.correct / self.detected if self.detected else 1.0

    @property
    def recall(self) -> float:
        return self.found / self.true if self.true else 1.0

    def error_quantile(self, q: float) -> float:
        if not self.errors:
            return 0.0
        ordered = sorted(self.errors)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def within(self, seconds: float) -> float:
        """Share of matches whose time error is at most `seconds`."""
        if not self.errors:
            return 1.0
        return sum(1 for e in self.errors if e <= seconds) / len(self.errors)


def _epoch(stamp: str) -> float:
    return parse_ts(stamp).timestamp()


def score(
    truth: Iterable[tuple[str, dict[str, Any], str]],
    detected: Iterable[tuple[str, dict[str, Any], str]],
    snapshot_times: Sequence[dt.datetime],
    *,
    settle_s: float = 60.0,
    warmup_s: float = 120.0,
    keep_examples: int = 20,
) -> dict[str, TypeScore]:
    """Score `detected` against `truth` over the snapshots the detector processed.

    `snapshot_times`: the times of the snapshots that produced events (not the stale ones), in
    order. Events in the first `warmup_s` (while the detector still knows flights only from
    their first sight: one on its take-off roll then is taken for airborne), or later than
    `settle_s` before the last snapshot, are left out of both counts (they may still match
    each other).
    """
    # event times travel as milliseconds: compare like with like
    times = [_epoch(format_ts(t)) for t in snapshot_times]
    if len(times) < 3:
        raise ValueError("need at least three processed snapshots to score")
    lo, hi = times[0] + warmup_s, times[-1] - settle_s

    def gap(i: int) -> float:
        if i <= 0 or i >= len(times):
            return times[1] - times[0]
        return times[i] - times[i - 1]

    def interval(t: float) -> float:
        # an event in the same millisecond as a snapshot may lie on either side of it
        return max(gap(bisect.bisect_left(times, t)), gap(bisect.bisect_right(times, t)))

    by_key: dict[tuple[str, int], tuple[list[tuple[float, str, dict[str, Any]]],
                                        list[tuple[float, str, dict[str, Any]]]]] = \
        defaultdict(lambda: ([], []))
    for etype, data, stamp in truth:
        if etype in SCORED_TYPES:
            by_key[(etype, data["flight_uid"])][0].append((_epoch(stamp), stamp, data))
    for etype, data, stamp in detected:
        if etype in SCORED_TYPES:
            by_key[(etype, data["flight_uid"])][1].append((_epoch(stamp), stamp, data))

    scores = {etype: TypeScore() for etype in SCORED_TYPES}
    for (etype, _uid), (true_events, found_events) in by_key.items():
        s = scores[etype]
        true_events.sort(key=lambda e: e[0])
        found_events.sort(key=lambda e: e[0])
        used = [False] * len(found_events)
        matched_true = [False] * len(true_events)
        for i, (t, _, _) in enumerate(true_events):
            tol = interval(t) + 0.002  # both ends rounded to the millisecond
            best, best_err = -1, tol
            for j, (d, _, _) in enumerate(found_events):
                if not used[j] and abs(d - t) <= best_err:
                    best, best_err = j, abs(d - t)
            if best >= 0:
                used[best] = True
                matched_true[i] = True
                if lo < t <= hi or lo < found_events[best][0] <= hi:
                    s.errors.append(best_err)
        for i, (t, stamp, data) in enumerate(true_events):
            if lo < t <= hi:
                s.true += 1
                if matched_true[i]:
                    s.found += 1
                elif len(s.misses) < keep_examples:
                    s.misses.append((stamp, data))
        for j, (d, stamp, data) in enumerate(found_events):
            if lo < d <= hi:
                s.detected += 1
                if used[j]:
                    s.correct += 1
                elif len(s.spurious) < keep_examples:
                    s.spurious.append((stamp, data))
    return scores


def report(scores: dict[str, TypeScore], step_s: float = 15.0) -> str:
    """A small table: per type, counts, precision, recall and time errors."""
    lines = [f"{'type':16} {'true':>6} {'found':>6} {'precision':>9} {'recall':>8} "
             f"{'err p50':>7} {'p99':>6} {'max':>6} {f'<={step_s:g}s':>7}"]
    for etype, s in scores.items():
        lines.append(
            f"{etype:16} {s.true:6d} {s.detected:6d} {s.precision * 100:8.2f}% "
            f"{s.recall * 100:7.2f}% {s.error_quantile(0.5):6.1f}s "
            f"{s.error_quantile(0.99):5.1f}s {max(s.errors, default=0.0):5.1f}s "
            f"{s.within(step_s) * 100:6.2f}%"
        )
    return "\n".join(lines)


@attrs.define
class Evaluation:
    """A simulated run through the detector: the scores and what the run was made of."""

    scores: dict[str, TypeScore]
    snapshots: int  # delivered to the detector
    stale: int  # of those, not newer than the one before (repeated or late)
    truth: list[tuple[str, dict[str, Any], str]]
    detected: list[tuple[str, dict[str, Any], str]]


def evaluate(config: Any, cycles: int, geo: Any = None, deleted_after: int = 2) -> Evaluation:
    """Run `cycles` simulated refreshes through `parse_snapshot` and a fresh `Detector` (the
    feed's own path) and score the detected lifecycle events against the truth."""
    from swimctl.core.detect import Detector, parse_snapshot

    from .simulator import Simulator

    sim = Simulator(config, geo)
    detector = Detector(sim.geo, deleted_after=deleted_after)
    detected: list[tuple[str, dict[str, Any], str]] = []
    times: list[dt.datetime] = []
    delivered = stale = 0
    for _ in range(cycles):
        for snap in sim.step():
            delivered += 1
            cycle = detector.process(parse_snapshot(snap.body))
            if cycle.stale:
                stale += 1
                continue
            times.append(cycle.update_time)
            detected.extend(e for e in cycle.events if e[0] in SCORED_TYPES)
    truth = sim.take_truth()
    settle = (deleted_after + 2) * config.step_s
    return Evaluation(score(truth, detected, times, settle_s=settle), delivered, stale, truth,
                      detected)
