"""The reconnecting client: one connection at a time, resubscribed with resume after every
reconnect, events delivered once and in seq order (see swimctl.core.resume)."""

from __future__ import annotations

import contextlib
import itertools
import random
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs
import orjson
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
)

from swimctl.client._errors import (
    AuthError,
    Disconnected,
    HandshakeRejected,
    RequestError,
    SwimError,
    TLSError,
    _ConnectionLost,
    _Silent,
)
from swimctl.client._items import (
    Event,
    HubError,
    Item,
    Resumed,
    State,
    StateChange,
    _event_from_obj,
    build_filters,
)
from swimctl.client._transport import (
    _describe,
    _rejected,
    _unwrap,
    make_ssl_context,
    open_websocket,
)
from swimctl.core.channels import HEARTBEAT
from swimctl.core.protocol import CLOSE_AUTH, CLOSE_GOING_AWAY, CLOSE_LIMIT
from swimctl.core.resume import (
    NO_RESUME_GAP,
    ResyncPlan,
    SubscriptionGroup,
    in_seq_order,
    is_new,
    plan_for,
)

DEFAULT_HEARTBEAT = 30.0


# The reply type each action gets, for hubs that do not echo `id` (the older PHP hub).
REPLY_TYPES: dict[str, str] = {
    "subscribe": "subscribed", "unsubscribe": "unsubscribed", "ping": "pong",
    "status": "status", "publish": "publish_ack",
}
# Error codes that answer a request (as opposed to announcing something about the connection).
REQUEST_ERRORS = frozenset({
    "INVALID_JSON", "UNKNOWN_ACTION", "INVALID_SUBSCRIBE", "INVALID_CHANNEL", "INVALID_FILTER",
    "FORBIDDEN", "INVALID_PUBLISH", "MESSAGE_TOO_LARGE", "RATE_LIMITED",
})


@attrs.define(eq=False)
class _Pending:
    expects: str = ""
    done: trio.Event = attrs.field(factory=trio.Event)
    reply: dict[str, Any] | None = None


@attrs.define(eq=False)
class _Conn:
    """One live socket and what the reader must know about it."""

    ws: WebSocketConnection
    heartbeat_interval: float = DEFAULT_HEARTBEAT
    pending: dict[str, _Pending] = attrs.field(factory=dict)
    buffering: bool = False
    buffer: list[Item] = attrs.field(factory=list)
    barrier_id: str | None = None
    recovered: bool | None = None
    auth_message: str | None = None
    lost: bool = False
    plan: ResyncPlan | None = None

    async def request(self, msg: dict[str, Any], rid: str) -> dict[str, Any]:
        if self.lost:
            raise _ConnectionLost
        slot = self.pending[rid] = _Pending(REPLY_TYPES.get(str(msg.get("action")), ""))
        msg = {**msg, "id": rid}
        try:
            await self.ws.send_message(orjson.dumps(msg).decode())
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            self.pending.pop(rid, None)
            self.lost = True  # before the session notices: no caller may spin on it meanwhile
            raise _ConnectionLost from None
        await slot.done.wait()
        if slot.reply is None:
            raise _ConnectionLost
        return slot.reply

    def match(self, rid: Any, mtype: Any, code: Any) -> _Pending | None:
        """The request a reply answers: by echoed `id`, else the oldest request waiting for
        that reply type (or, for a request error without `id`, the oldest request)."""
        if rid is not None:
            return self.pending.pop(str(rid), None)
        for key, slot in self.pending.items():
            if slot.expects == mtype or (mtype == "error" and code in REQUEST_ERRORS):
                del self.pending[key]
                return slot
        return None

    def fail_pending(self) -> None:
        self.lost = True
        for slot in self.pending.values():
            slot.done.set()
        self.pending.clear()


class SwimClient:
    """A connection to one hub that survives disconnects. Create it with `connect()`."""

    def __init__(
        self,
        url: str | Sequence[str],
        api_key: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        reconnect: bool = True,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        limit_backoff: float = 60.0,
        connect_timeout: float = 10.0,
        silence_factor: float = 2.0,
        ping_interval: float | None = None,
        queue_size: int = 1000,
        resume_from: tuple[str, int] | None = None,
    ) -> None:
        # Several URLs name hubs that share one event log (`serve --broker`): after a
        # disconnect the client tries the next one and resumes there.
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise ValueError("connect() needs at least one hub URL")
        self._url_index = 0
        self._failed_in_round = 0
        self.connected_since_round = False
        self._api_key = api_key
        self._ssl_context = ssl_context
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.limit_backoff = limit_backoff
        self.connect_timeout = connect_timeout
        self.silence_factor = silence_factor
        self.ping_interval = ping_interval
        self.state = State.CONNECTING
        self.epoch: str | None = resume_from[0] if resume_from else None
        # Resume position: every accepted event up to here has been delivered (or declared
        # lost through a Resumed(recovered=False) notice).
        self.last_seq: int | None = resume_from[1] if resume_from else None
        self._initial_resume = resume_from is not None
        self.client_id: str | None = None
        self.tier: str | None = None
        self.hub_version: str | None = None
        self.heartbeat_interval: float | None = None
        self.last_heartbeat: float | None = None  # wall-clock time.time() of the last one
        self.last_heartbeat_monotonic: float | None = None
        self.feed_age_seconds: float | None = None
        self.hub_seq: int | None = None  # last seq the hub reported (connected / heartbeat)
        self.connected_clients: int | None = None
        self.attempt = 0
        self.connections = 0  # successful handshakes so far
        self.last_error: str | None = None
        self._groups: list[SubscriptionGroup] = []
        self._conn: _Conn | None = None
        self._live = trio.Event()
        self._fatal: BaseException | None = None
        self._ids = itertools.count(1)
        self._send, self._receive = trio.open_memory_channel[Item](queue_size)
        self._closed = trio.Event()
        self._subscribe_lock = trio.Lock()
        self._session_scope: trio.CancelScope | None = None
        self._hub_epoch: str | None = None
        self.hub_seq_at_connect: int | None = None

    @property
    def url(self) -> str:
        """The hub URL this client is on, or will try next."""
        return self.urls[self._url_index]

    def __repr__(self) -> str:  # never shows the key
        return f"<SwimClient {self.url} {self.state.value} seq={self.last_seq}>"

    # -- public API ----------------------------------------------------------------------------

    @property
    def subscriptions(self) -> list[dict[str, Any]]:
        """The subscribe requests that are re-sent after every reconnect."""
        return [g.request() for g in self._groups]

    def heartbeat_age(self) -> float | None:
        """Seconds since the last heartbeat, or None before the first."""
        if self.last_heartbeat_monotonic is None:
            return None
        return time.monotonic() - self.last_heartbeat_monotonic

    async def subscribe(
        self,
        channels: Sequence[str] | str,
        *,
        airports: Sequence[str] | None = None,
        artccs: Sequence[str] | None = None,
        callsign_prefix: Sequence[str] | str | None = None,
        bbox: tuple[float, float, float, float] | dict[str, float] | None = None,
        snapshot: bool = False,
    ) -> dict[str, Any]:
        """Add a subscription and wait for the hub to confirm it (the `subscribed` reply).

        Waits through reconnects; raises RequestError when the hub rejects it (bad channel or
        filter) and AuthError & co. when the client stopped for good. The subscription is
        re-sent, with resume, after every reconnect. `snapshot=True` is asked for again on
        each reconnect so state can be re-seeded."""
        chans = [channels] if isinstance(channels, str) else list(channels)
        filters = build_filters(airports, artccs, callsign_prefix, bbox)
        group = SubscriptionGroup(chans, filters, snapshot)
        async with self._subscribe_lock:
            while True:
                conn = await self._wait_live()
                try:
                    if self._initial_resume and not self._groups:
                        reply = await self._resync(conn, self._plan_initial(group))
                    else:
                        reply = await conn.request(group.request(), self._rid())
                except _ConnectionLost:
                    await trio.lowlevel.checkpoint()
                    continue
                if reply.get("type") == "error":
                    raise RequestError(str(reply.get("code")), str(reply.get("message")))
                self._groups.append(group)
                return reply

    async def unsubscribe(self, channels: Sequence[str] | None = None) -> dict[str, Any]:
        """Drop patterns (all when None); they are no longer re-sent on reconnect."""
        chans = list(channels or [])
        if not chans:
            self._groups.clear()
        else:
            for group in self._groups:
                group.channels = [c for c in group.channels if c not in chans]
            self._groups = [g for g in self._groups if g.channels]
        while True:
            conn = await self._wait_live()
            try:
                msg = {"action": "unsubscribe", "channels": chans}
                return await conn.request(msg, self._rid())
            except _ConnectionLost:
                await trio.lowlevel.checkpoint()  # a retry loop must let the session run
                continue

    async def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Send any action (`status`, `publish`, ...) and return the hub's reply; error replies
        raise RequestError. Retries on the next connection if this one is lost."""
        while True:
            conn = await self._wait_live()
            try:
                reply = await conn.request(msg, self._rid())
            except _ConnectionLost:
                await trio.lowlevel.checkpoint()  # a retry loop must let the session run
                continue
            if reply.get("type") == "error":
                raise RequestError(str(reply.get("code")), str(reply.get("message")))
            return reply

    async def status(self) -> dict[str, Any]:
        data = (await self.request({"action": "status"})).get("data")
        return data if isinstance(data, dict) else {}

    async def publish(
        self, channel: str, data: dict[str, Any], *, event_id: str | None = None
    ) -> dict[str, Any]:
        """Publish an event (system-tier keys only); give `event_id` so a retry after a lost
        reply is de-duplicated by the hub."""
        msg: dict[str, Any] = {"action": "publish", "channel": channel, "data": data}
        if event_id is not None:
            msg["event_id"] = event_id
        return await self.request(msg)

    async def receive(self) -> Item:
        """The next item; raises the fatal error (AuthError, ...) once the client stopped,
        or trio.EndOfChannel after a normal close."""
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            if self._fatal is not None:
                raise self._fatal from None
            raise trio.EndOfChannel from None

    def __aiter__(self) -> SwimClient:
        return self

    async def __anext__(self) -> Item:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """Stop for good; iteration ends after the items already queued."""
        self._closed.set()
        if self._session_scope is not None:
            self._session_scope.cancel()

    # -- internals -----------------------------------------------------------------------------

    def _rid(self) -> str:
        return f"c{next(self._ids)}"

    async def _wait_live(self) -> _Conn:
        while True:
            if self._fatal is not None:
                raise self._fatal
            if self.state is State.CLOSED:
                raise SwimError("the client is closed")
            if self._conn is not None and self._live.is_set() and not self._conn.lost:
                return self._conn
            await self._live.wait()
            if self._conn is None or self._conn.lost:
                await trio.sleep(0.01)  # the event of a connection already gone

    async def _emit(self, item: Item) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._send.send(item)

    async def _set_state(self, state: State, **info: Any) -> None:
        previous = self.state
        self.state = state
        await self._emit(StateChange(state=state, previous=previous, attempt=self.attempt,
                                     **info))

    def _next_url(self, close_code: int | None) -> float:
        """Move to the next hub URL and say how long to wait first: hardly at all while
        other hubs are left to try in this round, the backoff once every one has failed."""
        if self.connected_since_round:
            self._failed_in_round = 0
            self.connected_since_round = False
        self._failed_in_round += 1
        self._url_index = (self._url_index + 1) % len(self.urls)
        if self._failed_in_round < len(self.urls) and close_code != CLOSE_LIMIT:
            return random.uniform(0.05, 0.25)  # another hub: spread, but do not wait
        self._failed_in_round = 0
        return self._backoff(close_code)

    def _backoff(self, close_code: int | None) -> float:
        base = min(self.backoff_max, self.backoff_initial * 2.0 ** max(0, self.attempt - 1))
        if close_code == CLOSE_LIMIT:
            base = max(base, self.limit_backoff)
        jitter: float = random.uniform(0.5, 1.0)  # reconnecting clients spread out
        return base * jitter

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The connection loop; `connect()` runs it in the background."""
        task_status.started()
        try:
            await self._loop()
        finally:
            self._live.set()  # waiters run after this block and see CLOSED / the error
            if self.state is not State.CLOSED:
                previous, self.state = self.state, State.CLOSED
                with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
                    self._send.send_nowait(StateChange(State.CLOSED, previous,
                                                       reason="closed by the client"))
            self._send.close()

    async def _loop(self) -> None:
        while not self._closed.is_set():
            self.attempt += 1
            if self.state is not State.CONNECTING:
                await self._set_state(State.CONNECTING)
            close_code: int | None = None
            reason = "closed by the client"
            try:
                with trio.CancelScope() as self._session_scope:
                    close_code, reason = await self._session()
                if self._closed.is_set():
                    return
            except (AuthError, TLSError, HandshakeRejected) as exc:
                self._fatal = exc
                await self._set_state(State.CLOSED, reason=str(exc),
                                      close_code=CLOSE_AUTH if isinstance(exc, AuthError)
                                      else None)
                return
            except _Silent:
                close_code, reason = None, "no message or heartbeat from the hub in time"
            except (OSError, HandshakeError, ConnectionClosed, trio.BrokenResourceError,
                    trio.ClosedResourceError, ValueError) as exc:  # ValueError: bad JSON
                close_code, reason = _describe(exc)
            self.last_error = reason
            if not self.reconnect:
                self._fatal = Disconnected(reason, close_code)
                await self._set_state(State.CLOSED, reason=reason, close_code=close_code)
                return
            delay = self._next_url(close_code)
            await self._set_state(State.DISCONNECTED, reason=reason, close_code=close_code,
                                  retry_in=round(delay, 2))
            with trio.move_on_after(delay):
                await self._closed.wait()

    def _open(self) -> contextlib.AbstractAsyncContextManager[WebSocketConnection]:
        return open_websocket(self.url, self._api_key, self._ssl_context, self.connect_timeout)

    async def _session(self) -> tuple[int | None, str]:
        """One connection from handshake to close; returns (close code, reason)."""
        try:
            async with self._open() as ws:
                conn = _Conn(ws)
                try:
                    return await self._connected(conn)
                finally:
                    conn.fail_pending()
                    if self._live.is_set():  # waiters on an unset event keep waiting on it
                        self._live = trio.Event()
                    self._conn = None
        except ConnectionRejected as exc:
            raise _rejected(exc) from None
        except BaseExceptionGroup as group:  # a nursery's wrapping of a single failure
            leaf = _unwrap(group)
            if isinstance(leaf, ConnectionRejected):
                raise _rejected(leaf) from None
            raise leaf from None

    async def _connected(self, conn: _Conn) -> tuple[int | None, str]:
        ws = conn.ws
        try:
            with trio.fail_after(self.connect_timeout):
                first = orjson.loads(await ws.get_message())
        except trio.TooSlowError:
            raise _Silent from None
        except ConnectionClosed as exc:
            return self._closed_by_hub(conn, exc)
        if not isinstance(first, dict) or first.get("type") != "connected":
            if isinstance(first, dict) and first.get("type") == "error":
                conn.auth_message = str(first.get("message", ""))
                code = first.get("code")
                if code == "AUTH_FAILED":
                    raise AuthError(f"authentication failed: {conn.auth_message}")
            try:
                with trio.fail_after(2.0):
                    await ws.get_message()
            except ConnectionClosed as exc:
                return self._closed_by_hub(conn, exc)
            except trio.TooSlowError:
                pass
            return None, f"unexpected first message from the hub: {str(first)[:200]}"
        info = first.get("data") or {}
        self.connections += 1
        self.connected_since_round = True
        self.client_id = info.get("client_id")
        self.tier = info.get("tier")
        self.hub_version = info.get("version")
        interval = info.get("heartbeat_interval")
        if isinstance(interval, int | float) and interval > 0:
            conn.heartbeat_interval = float(interval)
            self.heartbeat_interval = float(interval)
        hub_epoch = info.get("epoch")
        hub_seq = info.get("seq")
        hub_seq = hub_seq if isinstance(hub_seq, int) else None
        self.hub_seq = hub_seq
        self.hub_seq_at_connect = hub_seq
        self._hub_epoch = hub_epoch if isinstance(hub_epoch, str) else None
        plan = self._plan_reconnect(hub_epoch, hub_seq)
        self._conn = conn
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pinger, conn)
                nursery.start_soon(self._start_live, conn, plan)
                result = await self._reader(conn)
                nursery.cancel_scope.cancel()
                return result
        except BaseExceptionGroup as group:
            raise _unwrap(group) from None

    def _plan_reconnect(self, hub_epoch: Any, hub_seq: int | None) -> ResyncPlan | None:
        """Decide how to resubscribe: resume from our position when the epoch still holds."""
        if not isinstance(hub_epoch, str):  # an older hub: no seq, no resume
            if not self._groups:
                return None
            return ResyncPlan(list(self._groups), None, gap_reason=NO_RESUME_GAP)
        if self.epoch is None:
            self.epoch, self.last_seq = hub_epoch, hub_seq if hub_seq is not None else 0
            return None
        if not self._groups:
            if self._initial_resume:
                return None  # the first subscribe() carries the resume
            self.epoch, self.last_seq = hub_epoch, hub_seq if hub_seq is not None else 0
            return None
        return plan_for(list(self._groups), self.epoch, self.last_seq, hub_epoch, hub_seq)

    def _plan_initial(self, group: SubscriptionGroup) -> ResyncPlan:
        self._initial_resume = False
        if self._hub_epoch is None:
            return ResyncPlan([group], None)
        return plan_for([group], self.epoch, self.last_seq, self._hub_epoch,
                        self.hub_seq_at_connect)

    async def _start_live(self, conn: _Conn, plan: ResyncPlan | None) -> None:
        if plan is not None:
            try:
                await self._resync(conn, plan)
            except _ConnectionLost:
                return
        self.attempt = 0
        await self._set_state(State.CONNECTED)
        self._live.set()

    async def _resync(self, conn: _Conn, plan: ResyncPlan) -> dict[str, Any]:
        """Resubscribe every group; the last carries `resume`. Events are held back until a
        ping barrier so they can be delivered in seq order without duplicates even when
        several groups overlap. Returns the last subscribe reply."""
        conn.buffering = True
        conn.recovered = None
        conn.plan = plan
        reply: dict[str, Any] = {}
        last = len(plan.groups) - 1
        for index, group in enumerate(plan.groups):
            msg = group.request()
            if index == last and plan.resume is not None:
                msg["resume"] = {"epoch": plan.resume[0], "seq": plan.resume[1]}
            reply = await conn.request(msg, self._rid())
            if reply.get("type") == "error":
                await self._emit(HubError(str(reply.get("code")), str(reply.get("message"))))
        if plan.resume is not None:
            conn.barrier_id = self._rid()
            await conn.request({"action": "ping"}, conn.barrier_id)
            # The reader flushed the buffer when it saw the barrier; now record the outcome.
        else:
            conn.buffering = False
            if plan.gap_reason:
                await self._emit(Resumed(recovered=False, epoch=self.epoch or "",
                                         from_seq=self.last_seq or 0, reason=plan.gap_reason))
            buffered, conn.buffer = conn.buffer, []
            for item in buffered:
                await self._emit(item)
        return reply

    async def _flush(self, conn: _Conn) -> None:
        """Deliver what arrived during a resync: the resume outcome, then events by seq."""
        conn.buffering = False
        buffered, conn.buffer = conn.buffer, []
        plan = conn.plan
        if plan is not None and plan.resume is not None:
            epoch, floor = plan.resume
            recovered = bool(conn.recovered) and plan.gap_reason is None
            reason = plan.gap_reason or ("" if recovered else
                                         "the hub no longer holds the events after seq "
                                         f"{floor}: events were missed")
            from_seq = floor if plan.gap_reason is None else (self.last_seq or 0)
            if not recovered and plan.gap_reason is None:
                floor = self.hub_seq_at_connect or floor
            self.epoch = epoch
            self.last_seq = floor
            await self._emit(Resumed(recovered=recovered, epoch=epoch, from_seq=from_seq,
                                     reason=reason, previous_epoch=plan.previous_epoch))
        held = [(item.seq if isinstance(item, Event) else None, item) for item in buffered]
        for item in in_seq_order(held):
            await self._deliver(item)

    async def _deliver(self, item: Item) -> None:
        """Emit an item, dropping an event whose seq was already delivered."""
        if isinstance(item, Event) and item.seq is not None:
            if not is_new(item.seq, self.last_seq):
                return
            self.last_seq = item.seq
        await self._emit(item)

    async def _pinger(self, conn: _Conn) -> None:
        interval = self.ping_interval or conn.heartbeat_interval
        while True:
            await trio.sleep(interval)
            try:
                await conn.ws.send_message(
                    orjson.dumps({"action": "ping", "id": f"p{next(self._ids)}"}).decode()
                )
            except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                return

    async def _reader(self, conn: _Conn) -> tuple[int | None, str]:
        ws = conn.ws
        while True:
            timeout = self.silence_factor * conn.heartbeat_interval
            with trio.move_on_after(timeout) as scope:
                try:
                    text = await ws.get_message()
                except ConnectionClosed as exc:
                    return self._closed_by_hub(conn, exc)
            if scope.cancelled_caught:
                raise _Silent
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            await self._handle(conn, text)

    async def _handle(self, conn: _Conn, text: str) -> None:
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            await self._emit(HubError("INVALID_JSON", "the hub sent a frame that is not JSON"))
            return
        if not isinstance(obj, dict):
            return
        mtype = obj.get("type")
        if isinstance(mtype, str) and "." in mtype:
            event = _event_from_obj(obj, text)
            if event is None:
                return
            if event.type == HEARTBEAT:
                self._note_heartbeat(event)
            if conn.buffering:
                conn.buffer.append(event)
            else:
                await self._deliver(event)
            return
        rid = obj.get("id")
        if mtype == "subscribed" and "recovered" in obj:
            conn.recovered = bool(obj["recovered"])
        barrier = rid is not None and str(rid) == conn.barrier_id
        if barrier:
            conn.barrier_id = None
        slot = conn.match(rid, mtype, obj.get("code"))
        if slot is not None:
            # Answer the waiter first: flushing a long replay can block on a full queue until
            # the caller reads, and the caller reads only once its subscribe() returns.
            slot.reply = obj
            slot.done.set()
        if barrier:
            await self._flush(conn)
        if slot is not None:
            return
        if mtype == "error":
            code = str(obj.get("code", ""))
            message = str(obj.get("message", ""))
            if code == "AUTH_FAILED":
                conn.auth_message = message
                return
            item = HubError(code, message)
            if conn.buffering:
                conn.buffer.append(item)
            else:
                await self._emit(item)

    def _note_heartbeat(self, event: Event) -> None:
        self.last_heartbeat = event.received_at
        self.last_heartbeat_monotonic = time.monotonic()
        data = event.data
        age = data.get("feed_age_seconds")
        self.feed_age_seconds = float(age) if isinstance(age, int | float) else None
        seq = data.get("seq")
        if isinstance(seq, int):
            self.hub_seq = seq
        clients = data.get("connected_clients")
        if isinstance(clients, int):
            self.connected_clients = clients

    def _closed_by_hub(self, conn: _Conn, exc: ConnectionClosed) -> tuple[int | None, str]:
        code = int(exc.reason.code) if exc.reason is not None else None
        text = (exc.reason.reason or "") if exc.reason is not None else ""
        if code == CLOSE_AUTH:
            detail = conn.auth_message or text or "key refused"
            raise AuthError(f"authentication failed: {detail}")
        labels = {
            1000: "closed by the hub",
            CLOSE_GOING_AWAY: "the hub is shutting down",
            CLOSE_LIMIT: "connection limit reached for this key",
            4003: "closed for repeated protocol violations",
            4008: "closed as a slow consumer",
        }
        label = labels.get(code or 0, "connection closed")
        return code, f"{label} ({code}{': ' + text if text else ''})"


@contextlib.asynccontextmanager
async def connect(
    url: str | Sequence[str],
    api_key: str,
    *,
    ca_file: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    reconnect: bool = True,
    backoff_initial: float = 0.5,
    backoff_max: float = 30.0,
    limit_backoff: float = 60.0,
    connect_timeout: float = 10.0,
    silence_factor: float = 2.0,
    ping_interval: float | None = None,
    queue_size: int = 1000,
    resume_from: tuple[str, int] | None = None,
) -> AsyncIterator[SwimClient]:
    """Open a client that keeps itself connected until the block exits.

    Returns at once (it does not wait for the first connection): watch `StateChange` items or
    `client.state`. Certificates are verified; `ca_file` adds a trusted CA."""
    if ssl_context is None and ca_file:
        ssl_context = make_ssl_context(ca_file)
    client = SwimClient(
        url, api_key, ssl_context=ssl_context, reconnect=reconnect,
        backoff_initial=backoff_initial, backoff_max=backoff_max, limit_backoff=limit_backoff,
        connect_timeout=connect_timeout, silence_factor=silence_factor,
        ping_interval=ping_interval, queue_size=queue_size, resume_from=resume_from,
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            try:
                yield client
            finally:
                client._closed.set()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Callers get the AuthError (or their own exception) itself, not a nursery's group.
        leaf = _unwrap(group)
        if leaf is group:
            raise
        raise leaf from None
