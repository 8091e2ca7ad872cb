"""Connection caps counted across every hub: a key's seats.

A tier's cap is per API key (developer 50, …). One hub counts its own clients (Hub.admit);
hubs sharing a broker also count each other's, through one sorted set per key in Redis whose
members are leases: `<hub>:<client>`, scored by the time the lease runs out. A hub renews its
clients' leases every `RENEW` seconds, so a hub that dies without cleaning up frees its
clients' seats within `LEASE` seconds. Taking a seat is one Lua script: drop run-out leases,
count, add.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Protocol

import coredis
import trio

from swimctl.hub.client import Client

log = logging.getLogger("swimctl.broker")

LEASE = 30.0  # seconds a seat outlives its hub's last renewal
RENEW = 10.0
CALL_TIMEOUT = 3.0

# KEYS: the key's seat set. ARGV: member, cap, lease ms. 1 when seated, 0 at the cap.
TAKE = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
return 1
"""

# KEYS: seat sets. ARGV: lease ms, then one member per key. Renews leases still held.
RENEW_SCRIPT = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', ms + tonumber(ARGV[1]), ARGV[i + 1])
  redis.call('PEXPIRE', key, 2 * tonumber(ARGV[1]))
end
return #KEYS
"""


class SeatsUnavailable(Exception):
    """The broker did not answer: the seat could not be counted, so it is not given."""


class Seats(Protocol):
    async def take(self, client: Client, cap: int) -> bool: ...

    async def release(self, client: Client) -> None: ...

    async def run(self, clients: dict[str, Client], *,
                  task_status: Any = trio.TASK_STATUS_IGNORED) -> None: ...


class LocalSeats:
    """One hub alone: its own registry (Hub.admit) is the whole count."""

    async def take(self, client: Client, cap: int) -> bool:
        await trio.lowlevel.checkpoint()
        return True

    async def release(self, client: Client) -> None:
        await trio.lowlevel.checkpoint()

    async def run(self, clients: dict[str, Client], *,
                  task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()


class RedisSeats:
    def __init__(self, client: coredis.Redis[bytes], hub_id: str, *, prefix: str = "swim",
                 lease: float = LEASE, renew: float = RENEW) -> None:
        self.client = client
        self.hub_id = hub_id
        self._prefix = "{" + prefix + "}:seats:"
        self.lease_ms = int(lease * 1000)
        self.renew = renew
        self._take = client.register_script(TAKE)
        self._renew = client.register_script(RENEW_SCRIPT)

    def _key(self, client: Client) -> str:
        return f"{self._prefix}{client.key_id}"

    def _member(self, client: Client) -> str:
        return f"{self.hub_id}:{client.client_id}"

    async def take(self, client: Client, cap: int) -> bool:
        try:
            with trio.fail_after(CALL_TIMEOUT):
                seated: Any = await self._take(keys=[self._key(client)],
                                          args=[self._member(client), cap, self.lease_ms])
        except (trio.TooSlowError, coredis.exceptions.RedisError, OSError) as exc:
            raise SeatsUnavailable(str(exc)) from None
        return bool(seated)

    async def release(self, client: Client) -> None:
        with trio.move_on_after(CALL_TIMEOUT) as scope:
            scope.shield = True
            # On failure the lease runs out on its own.
            with contextlib.suppress(coredis.exceptions.RedisError, OSError):
                await self.client.zrem(self._key(client), [self._member(client)])

    async def run(self, clients: dict[str, Client], *,
                  task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Renew the leases of this hub's clients for as long as the hub runs."""
        task_status.started()
        while True:
            await trio.sleep(self.renew)
            live = list(clients.values())
            for start in range(0, len(live), 500):
                batch = live[start:start + 500]
                try:
                    with trio.fail_after(CALL_TIMEOUT):
                        await self._renew(keys=[self._key(c) for c in batch],
                                          args=[self.lease_ms, *(self._member(c) for c in batch)])
                except (trio.TooSlowError, coredis.exceptions.RedisError, OSError):
                    break  # the broker is away: the event log reports it; try next round
