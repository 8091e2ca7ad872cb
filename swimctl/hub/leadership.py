"""Who runs a source (the VATSIM feed, the events file) when several hubs share a broker.

Exactly one hub leads each source. It holds a lease in Redis (`SET NX PX`, renewed every third
of its TTL); the others try to take it every `retry` seconds, so a dead leader is replaced
within the TTL plus one try. Each lease carries a fencing token (a counter taken with it):
every write the leader makes to the shared log, and every save of the source's state (the
detector's flights, the events file's offset), names the lease it holds, and Redis refuses it
once that lease is gone. A leader paused past its TTL (GC, SIGSTOP) can therefore never publish
after another took over. A hub alone leads always (`SoleLeader`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import coredis
import trio

log = logging.getLogger("swimctl.leader")

CALL_TIMEOUT = 3.0

# KEYS: lease, fence counter. ARGV: holder, ttl ms. The new token, or 0 when someone holds it.
ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '#' .. token, 'PX', ARGV[2])
return token
"""
# KEYS: lease. ARGV: the lease value, ttl ms. 1 while it is still ours.
RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
# KEYS: lease. ARGV: the lease value.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: lease, state. ARGV: the lease value, the state. 1 when saved under a lease we hold.
SAVE_STATE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""


class Leadership(Protocol):
    source: str

    @property
    def leading(self) -> bool: ...

    @property
    def fence(self) -> str | None:
        """What the leader's writes carry (None: nobody checks)."""

    @property
    def shared(self) -> bool:
        """True when other hubs may lead this source (a broker)."""

    @property
    def lease_key(self) -> str: ...

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None: ...

    def give_up(self, why: str) -> None: ...

    async def while_leading(self, body: Callable[[], Awaitable[None]]) -> None: ...

    async def load_state(self) -> bytes | None: ...

    async def save_state(self, state: bytes) -> bool: ...

    async def release(self) -> None: ...


class SoleLeader:
    """A hub alone: it leads from the start and for ever; its source state stays local."""

    def __init__(self, source: str) -> None:
        self.source = source

    @property
    def leading(self) -> bool:
        return True

    @property
    def fence(self) -> str | None:
        return None

    @property
    def shared(self) -> bool:
        return False

    @property
    def lease_key(self) -> str:
        return ""

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    def give_up(self, why: str) -> None:
        raise RuntimeError(f"a hub alone cannot stop leading its {self.source}: {why}")

    async def while_leading(self, body: Callable[[], Awaitable[None]]) -> None:
        await body()

    async def load_state(self) -> bytes | None:
        await trio.lowlevel.checkpoint()
        return None

    async def save_state(self, state: bytes) -> bool:
        await trio.lowlevel.checkpoint()
        return True

    async def release(self) -> None:
        await trio.lowlevel.checkpoint()


class RedisLease:
    """One source's lease on a broker (see the module docstring)."""

    def __init__(self, client: coredis.Redis[bytes], source: str, holder: str, *,
                 ttl: float = 30.0, retry: float = 15.0, prefix: str = "swim") -> None:
        self.client = client
        self.source = source
        self.holder = holder
        self.ttl = ttl
        self.retry = max(0.1, retry)
        tag = "{" + prefix + "}"
        self._lease = f"{tag}:lead:{source}"
        self._fence_key = f"{tag}:lead:{source}:fence"
        self._state = f"{tag}:state:{source}"
        self._value: str | None = None  # our lease's value while we hold it
        self._renewed = -math.inf  # trio time of the last renewal that succeeded
        self._gained = trio.Event()
        self._lost = trio.Event()
        self._lost.set()
        self._stopping = False  # set by release(): this hub stops and campaigns no more
        self.terms = 0  # leases taken, ever (for logs and tests)
        self.leader_seen: str | None = None  # who held it at our last look
        self._acquire = client.register_script(ACQUIRE)
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)
        self._save = client.register_script(SAVE_STATE)

    @property
    def leading(self) -> bool:
        return self._value is not None

    @property
    def fence(self) -> str | None:
        return self._value

    @property
    def shared(self) -> bool:
        return True

    @property
    def lease_key(self) -> str:
        return self._lease

    # -- campaigning and holding -------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Take the lease when it is free, keep it while we can; for ever."""
        task_status.started()
        while not self._stopping:
            if self._value is None:
                await self._try_acquire()
                if self._value is None:
                    await trio.sleep(self.retry)
                continue
            await trio.sleep(self.ttl / 3)
            if self._value is not None:  # a release or a refused save may have ended it
                await self._try_renew()
        await trio.sleep_forever()  # stopping: never campaign again

    async def _try_acquire(self) -> None:
        try:
            with trio.fail_after(CALL_TIMEOUT):
                token = int(await self._acquire(keys=[self._lease, self._fence_key],
                                                args=[self.holder, int(self.ttl * 1000)]))
                if not token:
                    held = await self.client.get(self._lease)
                    self.leader_seen = held.decode() if held else None
                    return
        except (trio.TooSlowError, coredis.exceptions.RedisError, OSError):
            return  # the event log reports the broker; try again next round
        before = self.leader_seen
        self._value = f"{self.holder}#{token}"
        self._renewed = trio.current_time()
        self.leader_seen = self._value
        self.terms += 1
        log.info("%s: this hub leads now (lease %s, token %d; %s)", self.source, self._lease,
                 token, f"the last leader seen was {before}" if before else
                 "no other leader seen")
        self._lost = trio.Event()
        self._gained.set()

    async def _try_renew(self) -> None:
        value = self._value
        if value is None:
            return
        try:
            with trio.fail_after(CALL_TIMEOUT):
                held = int(await self._renew(keys=[self._lease],
                                             args=[value, int(self.ttl * 1000)]))
        except (trio.TooSlowError, coredis.exceptions.RedisError, OSError):
            # Unknown: still ours until the TTL says otherwise (writes are fenced anyway).
            if trio.current_time() - self._renewed >= self.ttl:
                self.give_up("its lease ran out while the broker did not answer")
            return
        if held:
            self._renewed = trio.current_time()
        else:
            self.give_up("its lease is gone (another hub took over, or it ran out)")

    def give_up(self, why: str) -> None:
        """This hub no longer leads (the lease was lost or refused): end its term."""
        if self._value is None:
            return
        log.warning("%s: this hub no longer leads: %s", self.source, why)
        self._value = None
        self._gained = trio.Event()
        self._lost.set()

    async def release(self) -> None:
        """Hand the lease back at once (a hub stopping): the next leader need not wait out
        the TTL."""
        self._stopping = True
        value = self._value
        if value is None:
            return
        self.give_up("it is stopping and handed the lease over")
        with trio.move_on_after(CALL_TIMEOUT) as scope:
            scope.shield = True
            with contextlib.suppress(coredis.exceptions.RedisError, OSError):
                await self._release(keys=[self._lease], args=[value])  # else: it runs out

    async def while_leading(self, body: Callable[[], Awaitable[None]]) -> None:
        """Run `body` for each term this hub leads; cancel it the moment the lease is lost."""
        while True:
            await self._gained.wait()
            lost = self._lost
            async with trio.open_nursery() as nursery:
                nursery.start_soon(body)
                await lost.wait()
                nursery.cancel_scope.cancel()

    # -- the source's state ------------------------------------------------------------------

    async def load_state(self) -> bytes | None:
        with trio.fail_after(CALL_TIMEOUT):
            return await self.client.get(self._state)

    async def save_state(self, state: bytes) -> bool:
        """Save under the lease we hold; False when we no longer hold it (fenced)."""
        value = self._value
        if value is None:
            return False
        with trio.fail_after(CALL_TIMEOUT * 2):
            saved = int(await self._save(keys=[self._lease, self._state], args=[value, state]))
        if not saved:
            self.give_up("a save of its state was refused: the lease is another hub's")
        return bool(saved)
