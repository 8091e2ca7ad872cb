"""The hub's timers on trio's MockClock: coalescing windows, heartbeats and TMI expiry happen
when they should, with no real waiting and no sockets."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import trio

from swimctl.core.model import format_ts
from swimctl.hub.client import Client
from swimctl.hub.coalescer import Coalescer
from swimctl.hub.config import HubConfig
from swimctl.hub.engine import Hub
from swimctl.hub.outbox import Outbox
from swimctl.hub.stats import HubStats
from swimctl.stream.base import LogEvent


def event(seq: int) -> LogEvent:
    return LogEvent(seq, "ctp.n", "2026-11-26T18:30:00.000Z", f"e-{seq}", {}, b"{}", 0.0)


async def test_a_burst_is_held_for_one_window_then_flushed(autojump_clock: Any) -> None:
    fanned: list[list[int]] = []
    coalescer = Coalescer(0.5, lambda events: fanned.append([e.seq for e in events]),
                          HubStats())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(coalescer.run)
        await trio.sleep(0.01)
        coalescer.add(event(1))  # after a quiet spell: at once
        coalescer.add(event(2))
        coalescer.add(event(3))
        assert fanned == [[1]]
        await trio.sleep(0.48)
        assert fanned == [[1]]  # still inside the window
        await trio.sleep(0.03)
        assert fanned == [[1], [2, 3]]  # the window passed: one fan-out for the burst
        await trio.sleep(5)
        coalescer.add(event(4))
        assert fanned == [[1], [2, 3], [4]]
        coalescer.add(event(5))
        nursery.cancel_scope.cancel()
    assert fanned[-1] == [5]  # the coalescer flushes what it holds when it stops


def idle_client(hub: Hub, name: str) -> Client:
    """A client whose outbox has no socket: whatever the hub sends it stays queued."""
    client = Client(client_id=name, tier="developer", key_id=1,
                    outbox=Outbox(None, None, 1 << 20, hub.demotions))  # type: ignore[arg-type]
    assert hub.admit(client)
    return client


def queued(client: Client) -> list[dict[str, Any]]:
    chunks = client.outbox._chunks or ()
    return [orjson.loads(chunk[2:]) for chunk in chunks]


async def test_heartbeats_every_interval(autojump_clock: Any) -> None:
    hub = Hub(HubConfig(heartbeat_interval=30))
    client = idle_client(hub, "a")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.run_heartbeat)
        await trio.sleep(95)
        nursery.cancel_scope.cancel()
    beats = [m for m in queued(client) if m["type"] == "system.heartbeat"]
    assert len(beats) == 3 and beats[0]["data"]["connected_clients"] == 1


async def test_an_ended_program_is_released_on_the_next_expiry_round(
        autojump_clock: Any) -> None:
    hub = Hub(HubConfig())
    released: list[LogEvent] = []
    hub.on_event.append(lambda e: released.append(e) if e.type == "tmi.released" else None)
    now = dt.datetime.now(dt.UTC)
    await hub.publish("tmi.issued", {
        "program_id": "GS-KJFK-1", "program_type": "GS", "airport": "KJFK",
        "start_time": format_ts(now - dt.timedelta(hours=2)),
        "end_time": format_ts(now - dt.timedelta(seconds=1)), "reason": "WX"})
    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.run_tmi_expiry, 60.0)
        await trio.sleep(59)
        assert released == []
        await trio.sleep(2)
        nursery.cancel_scope.cancel()
    assert [e.data["status"] for e in released] == ["EXPIRED"]
    assert hub.tmi.active() == [] and trio.current_time() - started == 61
