"""The shared event log: one Redis Stream that several hubs append to and each reads from.

The same contract as the in-process log (stream/base.py), so the fan-out and the protocol never
know which one runs. What differs is where the truth lives:

- **One atomic append.** A Lua script checks the epoch, checks the `event_id` (a key with a
  TTL), takes the next `seq` (INCR), writes the envelope with that seq into the stream under
  the entry id `<seq>-0`, and keeps the active TMI programs (a hash). `seq` is dense and
  global, and the publisher's ack carries it.
- **Delivery from a reader.** Each hub reads the stream (XREAD BLOCK, in batches) from its
  own head and hands what it reads to the hub in order. A local copy of the history (bounded
  like the in-process one) answers `since`, so resume stays synchronous and gap-free: `since`
  returns exactly what this hub has delivered.
- **One epoch.** It lives in Redis and changes only when the log is really gone (Redis
  restarted without persistence, or its numbering went back). A hub that sees the epoch
  change, or its numbering go back, adopts the new epoch and asks its clients to reconnect,
  so each resumes and learns honestly (`recovered: false`) that history is gone.

Every key carries the `{swim}` hash tag, so one script's keys share a cluster slot.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import coredis
import orjson
import trio
from coredis.connection import TCPLocation

from swimctl.core.model import format_ts
from swimctl.core.tmi import book_change
from swimctl.stream.base import (
    Appended,
    Delivery,
    Draft,
    LogEvent,
    LogFenced,
    LogUnavailable,
    Restore,
    new_epoch,
)
from swimctl.stream.history import DEFAULT_HISTORY_BYTES, History
from swimctl.stream.resp import RespConnection, RespError, RespPool

log = logging.getLogger("swimctl.broker")

READ_BATCH = 512  # entries per XREAD
READ_BLOCK_MS = 1000  # an idle reader wakes this often to check the epoch and the broker
CALL_TIMEOUT = 3.0  # a publish gets BROKER_UNAVAILABLE within this
RETRY_MAX = 5.0  # seconds between reconnect attempts, at most

# KEYS: log, seq, epoch, dedupe key (or the log again when there is no event_id), tmi hash,
#       the fencing lease (or the log again when the append is not fenced)
# ARGV: event_id given (1/0), event_id JSON, type JSON, timestamp JSON, data JSON,
#       approximate max length, dedupe TTL seconds, tmi action (set/del/""), program id,
#       program JSON, the epoch the caller appends to, the lease value ("" when not fenced)
APPEND = """
local epoch = redis.call('GET', KEYS[3])
if not epoch then return {-1, 0, ''} end
if epoch ~= ARGV[11] then return {-2, 0, epoch} end
if ARGV[12] ~= '' and redis.call('GET', KEYS[6]) ~= ARGV[12] then return {-3, 0, epoch} end
if ARGV[1] == '1' then
  local seen = redis.call('GET', KEYS[4])
  if seen then return {tonumber(seen), 1, epoch} end
end
local seq = redis.call('INCR', KEYS[2])
local eid = ARGV[2]
if ARGV[1] ~= '1' then eid = '"e-' .. seq .. '"' end
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local payload = '{"type":' .. ARGV[3] .. ',"timestamp":' .. ARGV[4] .. ',"seq":' .. seq
  .. ',"event_id":' .. eid .. ',"data":' .. ARGV[5] .. '}'
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[6], seq .. '-0', 'p', payload, 't', ms)
if ARGV[1] == '1' then redis.call('SET', KEYS[4], seq, 'EX', ARGV[7]) end
if ARGV[8] == 'set' then redis.call('HSET', KEYS[5], ARGV[9], ARGV[10])
elseif ARGV[8] == 'del' then redis.call('HDEL', KEYS[5], ARGV[9]) end
return {seq, 0, epoch}
"""

# KEYS: epoch, log, seq, tmi. ARGV: a new epoch. The epoch there, or this one when there was
# none: then whatever stream and counter remain belong to no epoch and go.
INIT = """
local epoch = redis.call('GET', KEYS[1])
if epoch then return epoch end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""

# KEYS: epoch, log, seq, tmi. ARGV: the epoch that went wrong, a new one. Replace it unless
# another hub already did.
ROTATE = """
local epoch = redis.call('GET', KEYS[1])
if epoch and epoch ~= ARGV[1] then return epoch end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('SET', KEYS[1], ARGV[2])
return ARGV[2]
"""

def _entry_seq(identifier: str | bytes) -> int:
    text = identifier.decode() if isinstance(identifier, bytes) else identifier
    return int(text.split("-", 1)[0])


def open_redis(url: str) -> tuple[coredis.Redis[bytes], list[Any]]:
    """A client for the broker URL:

    - `redis://[:PASSWORD@]HOST:PORT/DB`, `rediss://…` (TLS), `unix:///path.sock`;
    - `redis+sentinel://[:PASSWORD@]SENTINEL:PORT[,SENTINEL:PORT…]/SERVICE[/DB]`: the
      primary Sentinel names for SERVICE, followed through failovers;
    - `redis+cluster://HOST:PORT`: a Redis Cluster (every key of the hub shares one slot).

    Returns the client and what must be entered before it (the Sentinel manager).
    """
    scheme, _, rest = url.partition("://")
    if scheme == "redis+cluster":
        cluster: Any = coredis.RedisCluster.from_url("redis://" + rest)
        return cluster, []
    if scheme != "redis+sentinel":
        return coredis.Redis.from_url(url), []
    auth, at, hosts_path = rest.rpartition("@")
    password = auth.partition(":")[2] if at else None
    hosts, _, path = hosts_path.partition("/")
    service, _, db = path.partition("/")
    if not hosts or not service:
        raise ValueError("redis+sentinel:// needs SENTINEL:PORT[,…]/SERVICE[/DB]")
    sentinels = []
    for host in hosts.split(","):
        name, _, port = host.rpartition(":")
        sentinels.append(TCPLocation(name or host, int(port) if port else 26379))
    sentinel: Any = coredis.Sentinel(sentinels, sentinel_kwargs={"password": password})
    client = sentinel.primary_for(service, db=int(db) if db else 0, password=password)
    return client, [sentinel]


class RedisLog:
    """An EventLog over one Redis Stream (see the module docstring)."""

    def __init__(self, url: str, *, prefix: str = "swim", history_size: int = 100_000,
                 history_age: float = 3600.0, history_bytes: int = DEFAULT_HISTORY_BYTES,
                 dedupe_ttl: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 on_reset: Callable[[str], None] | None = None) -> None:
        self.url = url
        tag = "{" + prefix + "}"
        self.keys = {name: f"{tag}:{name}" for name in ("log", "seq", "epoch", "tmi")}
        self._dedupe_prefix = f"{tag}:id:"
        self.history_size = history_size
        self.history_age = history_age
        self.dedupe_ttl = int(dedupe_ttl if dedupe_ttl is not None else max(history_age, 60))
        self.clock = clock
        self.on_reset = on_reset  # the hub closes its clients so they resume (new epoch)
        self.client, self._outer = open_redis(url)
        self._epoch = ""
        self._head = 0
        self.history = History(size=history_size, age=history_age, max_bytes=history_bytes,
                               clock=clock)
        self._deliver: Delivery | None = None
        self._restore: Restore | None = None
        self.up = False
        self.read_lag = 0.0  # seconds from append to delivery here, last batch; 0 when idle
        self.rtt = 0.0  # seconds of the last idle round trip (GET epoch + GET seq)
        self.resets = 0
        self._append = self.client.register_script(APPEND)
        self._append_sha = hashlib.sha1(APPEND.encode()).hexdigest()
        # Every event's append and read go through a lean connection each (stream/resp.py)
        # where the URL allows; coredis does the rest, and all of it for Sentinel, Cluster, TLS.
        self._fast_append = RespPool(url) if RespConnection.handles(url) else None
        self._fast_read = RespConnection(url) if RespConnection.handles(url) else None
        self._init = self.client.register_script(INIT)
        self._rotate = self.client.register_script(ROTATE)

    @contextlib.asynccontextmanager
    async def connections(self) -> AsyncIterator[None]:
        """The client's connections (and a Sentinel manager's), open for the block: the
        service opens them around everything that uses the log."""
        async with contextlib.AsyncExitStack() as stack:
            for outer in self._outer:
                await stack.enter_async_context(outer)
            await stack.enter_async_context(self.client)
            for fast in (self._fast_append, self._fast_read):
                if fast is not None:
                    stack.push_async_callback(fast.aclose)
            yield

    # -- the EventLog interface ------------------------------------------------------------

    @property
    def epoch(self) -> str:
        return self._epoch

    @property
    def head(self) -> int:
        return self._head

    @property
    def held(self) -> int:
        return len(self.history)

    def set_delivery(self, deliver: Delivery, restore: Restore | None = None) -> None:
        self._deliver = deliver
        self._restore = restore

    async def append(self, draft: Draft) -> Appended:
        dumps = orjson.dumps
        change = book_change(draft.type, draft.data)
        action, program_id, program = ("", "", b"")
        if change is not None:
            action, program_id = change[0], change[1]
            program = dumps(change[2]) if change[2] is not None else b""
        event_id = draft.event_id
        timestamp = draft.timestamp if draft.timestamp is not None else format_ts()
        keys = [self.keys["log"], self.keys["seq"], self.keys["epoch"],
                self._dedupe_prefix + event_id if event_id is not None else self.keys["log"],
                self.keys["tmi"],
                draft.fence[0] if draft.fence is not None else self.keys["log"]]
        args: list[str | bytes] = [
                "1" if event_id is not None else "0",
                dumps(event_id) if event_id is not None else b"",
                dumps(draft.type), dumps(timestamp), dumps(draft.data),
                str(max(self.history_size, 1)), str(self.dedupe_ttl), action, program_id,
                program, self._epoch, draft.fence[1] if draft.fence is not None else ""]
        try:
            with trio.fail_after(CALL_TIMEOUT):
                if self._fast_append is not None:
                    answer: list[Any] = await self._append_fast(self._fast_append, keys, args)
                else:
                    answer = await self._append(keys=keys, args=args)
        except (trio.TooSlowError, coredis.exceptions.RedisError, RespError, OSError) as exc:
            raise LogUnavailable(f"the event log (Redis) did not answer: {exc!r}") from None
        seq, duplicate = int(answer[0]), int(answer[1])
        if seq == -3:
            raise LogFenced(f"{draft.type}: the writer's lease is no longer held")
        if seq < 0:  # the log is gone (-1) or has a newer epoch (-2): adopt it, then retry
            await self._reset("the log was reset" if seq == -1 else "the epoch changed")
            return await self.append(draft)
        return Appended(int(seq), duplicate=bool(duplicate))

    async def _append_fast(self, fast: RespPool, keys: list[str],
                           args: list[str | bytes]) -> Any:
        """The append script by its SHA1, sent whole once when Redis does not know it."""
        try:
            return await fast.call("EVALSHA", self._append_sha, len(keys), *keys, *args)
        except RespError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await fast.call("EVAL", APPEND, len(keys), *keys, *args)

    def since(self, epoch: str, seq: int) -> list[LogEvent] | None:
        if epoch != self._epoch:
            return None
        return self.history.since(seq, self._head)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Load the epoch, the TMI book and the history, then read for ever. The client's
        connections are opened around everything that uses them (`async with log.client`,
        by the service), so they outlive the connection tasks that release seats."""
        while True:
            try:
                with trio.fail_after(CALL_TIMEOUT * 2):
                    await self._load()
                break
            except (trio.TooSlowError, coredis.exceptions.RedisError, OSError) as exc:
                self._went_down(exc)
                await trio.sleep(1.0)
        task_status.started()
        await self._read_forever()

    # -- loading and reading -------------------------------------------------------------------

    def _epoch_keys(self) -> list[str]:
        return [self.keys["epoch"], self.keys["log"], self.keys["seq"], self.keys["tmi"]]

    async def _load(self) -> None:
        epoch: Any = await self._init(keys=self._epoch_keys(), args=[new_epoch()])
        self._epoch = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
        programs = [orjson.loads(v) for v in
                    (await self.client.hgetall(self.keys["tmi"])).values()]
        events: list[LogEvent] = []
        start = "-"
        while True:
            page = await self.client.xrange(self.keys["log"], start, "+", count=1000)
            for entry in page:
                events.append(self._event(entry))
            if len(page) < 1000:
                break
            start = f"({events[-1].seq}-0"
        self.history.clear()
        for event in events:
            self.history.hold(event)
        self._head = events[-1].seq if events else 0
        if not events:  # an empty stream: the counter says where numbering stands
            counter = await self.client.get(self.keys["seq"])
            self._head = int(counter) if counter else 0
        self.history.trim()
        if self._restore is not None:
            self._restore(list(self.history.events), programs)
        self._came_up()
        log.info("event log on %s: epoch %s, head seq %d, %d event(s) held",
                 self._shown_url(), self._epoch, self._head, len(self.history))

    def _event(self, entry: Any) -> LogEvent:
        return self._event_of(entry.identifier, entry.field_values)

    def _event_of(self, identifier: str | bytes, fields: dict[bytes, bytes]) -> LogEvent:
        payload = fields[b"p"]
        envelope = orjson.loads(payload)
        appended_ms = int(fields.get(b"t", b"0"))
        age = max(0.0, time.time() - appended_ms / 1000) if appended_ms else 0.0
        return LogEvent(_entry_seq(identifier), envelope["type"], envelope["timestamp"],
                        envelope["event_id"], envelope["data"], payload, self.clock() - age)

    async def _read_forever(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._read_once()
                delay = 0.2
            except (trio.TooSlowError, coredis.exceptions.RedisError, RespError,
                    OSError) as exc:
                self._went_down(exc)
                await trio.sleep(delay)
                delay = min(RETRY_MAX, delay * 2)

    async def _read_once(self) -> None:
        with trio.fail_after(READ_BLOCK_MS / 1000 + CALL_TIMEOUT):
            events = await self._read_events()
        self._came_up()
        if not events:
            self.read_lag = 0.0
            await self._check_epoch()
            return
        if events[0].seq != self._head + 1:
            # What we had not read yet is gone (trimmed, or the log restarted): nobody may
            # be told there is no gap.
            await self._reset(f"the log skipped from seq {self._head} to {events[0].seq}")
            return
        now = self.clock()
        self.read_lag = max(0.0, now - events[-1].received)
        self._head = events[-1].seq
        for event in events:
            self.history.hold(event)
        self.history.trim()
        if self._deliver is not None:
            self._deliver(events)

    async def _read_events(self) -> list[LogEvent]:
        """The next entries after our head (XREAD BLOCK), as events; [] after a quiet
        READ_BLOCK_MS."""
        key = self.keys["log"]
        fast = self._fast_read
        if fast is None:
            found = await self.client.xread({key: f"{self._head}-0"}, count=READ_BATCH,
                                            block=READ_BLOCK_MS)
            return [self._event(entry)
                    for entry in (found.get(key.encode(), ()) if found else ())]
        reply = await fast.call("XREAD", "COUNT", READ_BATCH, "BLOCK", READ_BLOCK_MS,
                                "STREAMS", key, f"{self._head}-0")
        events: list[LogEvent] = []
        for _stream, entries in reply or ():
            for identifier, flat in entries:
                events.append(self._event_of(identifier, dict(zip(flat[::2], flat[1::2],
                                                                  strict=True))))
        return events

    async def _check_epoch(self) -> None:
        started = time.perf_counter()
        with trio.fail_after(CALL_TIMEOUT):
            async with self.client.pipeline(transaction=False) as pipe:
                epoch_request = pipe.get(self.keys["epoch"])
                seq_request = pipe.get(self.keys["seq"])
        epoch, counter = await epoch_request, await seq_request
        self.rtt = time.perf_counter() - started
        if epoch is None or epoch.decode() != self._epoch:
            await self._reset("the log's epoch changed" if epoch else "the log is gone")
        elif counter is not None and int(counter) < self._head:
            # Redis came back from an older snapshot: seqs would be reused for new events.
            await self._rotate(keys=self._epoch_keys(), args=[self._epoch, new_epoch()])
            await self._reset(f"the log went back from seq {self._head} to {int(counter)}")

    async def _reset(self, why: str) -> None:
        """History is gone: start over from the log's current epoch, and tell the hub."""
        old = self._epoch
        self.resets += 1
        self.history.clear()
        self._head = 0
        with trio.fail_after(CALL_TIMEOUT * 2):
            await self._load()
        log.warning("event log: %s; epoch %s -> %s, clients must resume", why, old,
                    self._epoch)
        if self.on_reset is not None:
            self.on_reset(self._epoch)

    async def trim_shared(self) -> None:
        """Drop entries older than the age bound from the shared stream too (any hub may;
        doing it twice is harmless)."""
        if self.history_age <= 0:
            return
        self.history.trim()
        if self.history.events:
            await self.client.xtrim(self.keys["log"], coredis.PureToken.MINID,
                                    self.history.events[0].seq)

    # -- health --------------------------------------------------------------------------------

    def _went_down(self, exc: BaseException) -> None:
        if self.up or not hasattr(self, "_down_logged"):
            log.warning("event log unreachable at %s (%s): publishes are refused with "
                        "BROKER_UNAVAILABLE until it returns", self._shown_url(),
                        type(exc).__name__)
            self._down_logged = True
        self.up = False

    def _came_up(self) -> None:
        if not self.up:
            if getattr(self, "_down_logged", False):
                log.info("event log at %s is back", self._shown_url())
            self.up = True

    def _shown_url(self) -> str:
        """The URL without a password."""
        head, at, tail = self.url.rpartition("@")
        if not at:
            return self.url
        scheme, sep, _ = head.partition("://")
        return f"{scheme}{sep}***@{tail}"

    async def exchange_hub_entries(self, hub_id: str, entry: dict[str, Any],
                                   stale_after: float = 10.0) -> list[dict[str, Any]]:
        """Post this hub's standing (clients, lag, leadership) under `{swim}:hubs` and read
        every hub's: how `swimctl top` shows all the hubs on a broker. Entries older than
        `stale_after` seconds belong to hubs that stopped, and go."""
        key = "{" + self.keys["log"].split("}", 1)[0][1:] + "}:hubs"
        now = time.time()
        with trio.fail_after(CALL_TIMEOUT):
            await self.client.hset(key, {hub_id: orjson.dumps({**entry, "at": now})})
            found = await self.client.hgetall(key)
        entries, stale = [], []
        for name, raw in found.items():
            value = orjson.loads(raw)
            if now - float(value.get("at", 0)) > stale_after:
                stale.append(name)
            else:
                entries.append(value)
        if stale:
            with trio.move_on_after(CALL_TIMEOUT):
                await self.client.hdel(key, stale)
        return sorted(entries, key=lambda e: str(e.get("hub_id")))

    async def head_in_redis(self) -> int:
        value = await self.client.get(self.keys["seq"])
        return int(value) if value else 0
