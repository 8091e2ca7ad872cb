"""Shared helpers for the client and tail tests: waiting on a condition, and a TCP proxy that
can go silent (a black-holed network path) without closing anything. The hub itself comes
from tests/conftest.py (launch_hub, running_hub)."""

from __future__ import annotations

from typing import Any

import trio


async def wait_until(predicate: Any, timeout: float = 5.0, step: float = 0.02) -> None:
    """Poll a condition; fail the test with TooSlowError if it never holds."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(step)


def subscribed_clients(hub: Any) -> list[Any]:
    """Hub-side clients that hold at least one subscription."""
    return [c for c in hub.clients.values() if c.subs.patterns]


class FreezableProxy:
    """TCP relay in front of the hub; `freeze()` stops relaying on the open connections (the
    bytes are held, nothing is closed), the way a dead NAT entry or a cut link behaves."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.frozen: set[int] = set()
        self.accepted = 0
        self._live: set[int] = set()

    def freeze(self) -> None:
        self.frozen |= self._live

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, downstream: trio.SocketStream) -> None:
        self.accepted += 1
        ident = self.accepted
        self._live.add(ident)
        try:
            upstream = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        except OSError:
            await downstream.aclose()
            return
        async with upstream, downstream, trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, ident, downstream, upstream, nursery.cancel_scope)
            nursery.start_soon(self._pump, ident, upstream, downstream, nursery.cancel_scope)

    async def _pump(self, ident: int, src: trio.SocketStream, dst: trio.SocketStream,
                    scope: trio.CancelScope) -> None:
        try:
            while True:
                data = await src.receive_some(65536)
                if not data:
                    break
                while ident in self.frozen:
                    await trio.sleep(3600)
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        if ident not in self.frozen:
            scope.cancel()
