"""A VATSIM-like feed for the multi-hub tests: an HTTP server on 127.0.0.1 whose one URL
serves the traffic simulator's current snapshot, a new one every `period` seconds of wall
time, the way data.vatsim.net serves the live network. It counts the requests it answers, so
a test can tell how many hubs poll it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import trio

from swimctl.core.geo import load_geo
from swimctl.core.sim import SimConfig, Simulator


class SimFeed:
    def __init__(self, *, pilots: int = 200, period: float = 1.0, speed: float = 20.0,
                 seed: int = 5) -> None:
        config = SimConfig(pilots=pilots, seed=seed, step_s=period, speed=speed,
                           start=dt.datetime.now(dt.UTC).replace(microsecond=0),
                           feed_faults=False)
        self.period = period
        self.sim = Simulator(config, load_geo(), truth=False)
        self.body = self.sim.step()[-1].body
        self.requests = 0
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v3/vatsim-data.json"

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._advance)
            task_status.started(self.url)
            await trio.serve_listeners(self._answer, listeners)

    async def _advance(self) -> None:
        while True:
            await trio.sleep(self.period)
            snaps = await trio.to_thread.run_sync(self.sim.step)
            if snaps:
                self.body = snaps[-1].body

    async def _answer(self, stream: trio.SocketStream) -> None:
        try:
            request = b""
            with trio.move_on_after(5):
                while b"\r\n\r\n" not in request:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        return
                    request += chunk
            self.requests += 1
            body = self.body
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)
