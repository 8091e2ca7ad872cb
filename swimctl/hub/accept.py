"""Running out of file descriptors without falling over.

Every client is a socket, so a busy or attacked hub meets the open-files limit. Two things help:
start with the soft limit raised to the hard one (distributions ship soft 1,024 under a much
higher hard limit), and when `accept` still fails for lack of descriptors (EMFILE, ENFILE) or
kernel memory, leave the connection waiting in the kernel's backlog and try again after a pause
that doubles up to a second, instead of trio's default of logging a traceback ten times a
second. The trouble is logged when it starts, summarised once per `LOG_INTERVAL` while it lasts,
and shown by `/healthz` and `/metrics`.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import time
from typing import Any

import trio

from swimctl.hub.health import Condition

log = logging.getLogger("swimctl.accept")

# What accept(2) says when the process or the system is out of descriptors or buffers:
# the connection is still queued, so waiting is the cure.
CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
LOG_INTERVAL = 10.0
MIN_PAUSE = 0.05
MAX_PAUSE = 1.0
UNLIMITED_TARGET = 1 << 20  # what "unlimited" hard means in practice (Linux's nr_open default)


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as exc:
            log.warning("could not raise the open-files limit from %d to %d: %s",
                        soft, target, exc)
            return soft, soft
        log.debug("open-files limit raised from %d to %d", soft, target)
        return soft, target
    return soft, soft


def open_fd_count() -> int | None:
    """Descriptors this process holds (Linux /proc), or None where that is not known."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # minus the one listdir itself opened
    except OSError:
        return None


class AcceptGuard:
    """Shared by one server's listeners: counts accept failures, logs them sparingly, and
    reports the trouble while it lasts."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.condition = Condition(f"{name} listener", log)
        self.failures = 0  # accept calls refused for lack of capacity, ever
        self._window_failures = 0
        self._window_start = 0.0
        self._episode_start = 0  # `failures` when the current trouble began
        self.stopped = False
        self._listeners: list[GuardedListener] = []

    def wrap(self, listeners: list[trio.SocketListener]) -> list[GuardedListener]:
        wrapped = [GuardedListener(listener, self) for listener in listeners]
        self._listeners += wrapped
        return wrapped

    def stop(self) -> None:
        """Accept no more (a hub draining): the listening sockets close, so a new connection
        is refused at once and a load balancer sends it elsewhere, while connections already
        accepted carry on."""
        self.stopped = True
        for listener in self._listeners:
            listener.inner.socket.close()

    def failed(self, exc: OSError) -> None:
        self.failures += 1
        now = time.monotonic()
        if self.condition.ok:
            self._window_start, self._window_failures = now, 0
            self._episode_start = self.failures - 1
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            held = open_fd_count()  # None when even listing them needs a descriptor
            self.condition.fail(
                f"cannot accept connections: {errno.errorcode.get(exc.errno or 0, '?')} "
                f"({exc.strerror}); {'' if held is None else f'{held} '}descriptors open of "
                f"a limit of {soft}",
                "new connections wait in the backlog; retrying with a pause of up to "
                f"{MAX_PAUSE:g} s")
            return
        self._window_failures += 1
        if now - self._window_start >= LOG_INTERVAL:
            log.warning("%s: still cannot accept (%s): %d attempt(s) failed in the last %.0f s",
                        self.condition.part, exc.strerror, self._window_failures,
                        now - self._window_start)
            self._window_start, self._window_failures = now, 0

    def accepted(self) -> None:
        if not self.condition.ok:
            self.condition.clear(f"{self.failures - self._episode_start} accept attempt(s) "
                                 "failed meanwhile")


class GuardedListener(trio.abc.Listener[trio.SocketStream]):
    """A SocketListener whose `accept` waits out a lack of descriptors instead of raising.

    Wrap the plain TCP listeners (before any TLS layer): `trio.serve_listeners` and
    `trio.SSLListener` take it like the listener it wraps.
    """

    def __init__(self, inner: trio.SocketListener, guard: AcceptGuard) -> None:
        self.inner = inner
        self.guard = guard

    @property
    def socket(self) -> Any:
        return self.inner.socket

    async def accept(self) -> trio.SocketStream:
        pause = MIN_PAUSE
        while True:
            if self.guard.stopped:
                await trio.sleep_forever()
            try:
                stream = await self.inner.accept()
            except trio.ClosedResourceError:
                if self.guard.stopped:  # closed by stop(): wait to be cancelled with the rest
                    await trio.sleep_forever()
                raise
            except OSError as exc:
                if self.guard.stopped:
                    await trio.sleep_forever()
                if exc.errno not in CAPACITY_ERRNOS:
                    raise
                self.guard.failed(exc)
                await trio.sleep(pause)
                pause = min(pause * 2, MAX_PAUSE)
                continue
            self.guard.accepted()
            return stream

    async def aclose(self) -> None:
        await self.inner.aclose()
