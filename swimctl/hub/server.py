"""The trio shell around the hub: the TCP/TLS listener, and each connection from its upgrade
request (parsed by h11, checked by wire/websocket.py) through auth and admission to its
reader (hub/connection.py). Every outbound byte goes through the connection's outbox
(hub/outbox.py), so the hub stays the only writer.
"""

from __future__ import annotations

import logging
import secrets
import ssl
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
import trio

from swimctl.core.limits import ViolationWindow
from swimctl.core.protocol import (
    AUTH_FAILED,
    BROKER_UNAVAILABLE,
    CLOSE_AUTH,
    CLOSE_GOING_AWAY,
    CLOSE_LIMIT,
    CLOSE_TRY_AGAIN,
    CLOSE_VIOLATIONS,
    CONNECTION_LIMIT,
    RATE_LIMITED,
    ProtocolError,
    error_reply,
)
from swimctl.core.refusals import address_key
from swimctl.hub.accept import AcceptGuard
from swimctl.hub.auth import Authenticator, AuthFailed, peer_host
from swimctl.hub.client import Client
from swimctl.hub.config import WS_PATH, HubConfig
from swimctl.hub.connection import RECEIVE_SIZE, Link
from swimctl.hub.dispatch import Dispatcher
from swimctl.hub.engine import Hub
from swimctl.hub.outbox import CONTROL, Outbox
from swimctl.hub.seats import LocalSeats, Seats, SeatsUnavailable
from swimctl.wire.deflate import negotiate
from swimctl.wire.encodings import DEFLATE
from swimctl.wire.frames import text_frame
from swimctl.wire.websocket import (
    FrameReader,
    Refusal,
    Upgrade,
    accept_response,
    check_upgrade,
    refusal_response,
)

log = logging.getLogger("swimctl.server")

# Messages over the protocol's limit (64 KiB) get a MESSAGE_TOO_LARGE reply and the connection
# lives; only past this one is the connection failed (1009), so memory per message stays
# bounded.
HARD_MESSAGE_LIMIT = 1024 * 1024
MAX_REQUEST_HEAD = 16 * 1024
# A TLS connection's handshake comes before its request head: two more round trips, so it
# gets this much longer than `handshake_timeout` to finish both.
TLS_HANDSHAKE_EXTRA = 2.0


def extract_key(headers: list[tuple[bytes, bytes]], target: str) -> str | None:
    """The API key, first match wins: X-SWIM-API-Key, Authorization: Bearer, ?api_key=."""
    found: dict[bytes, str] = {}
    for name, value in headers:
        lname = name.lower()
        if lname in (b"x-swim-api-key", b"authorization") and lname not in found:
            found[lname] = value.decode("latin-1").strip()
    if found.get(b"x-swim-api-key"):
        return found[b"x-swim-api-key"]
    auth = found.get(b"authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    query = urlsplit(target).query
    if query:
        values = parse_qs(query).get("api_key")
        if values and values[0]:
            return values[0]
    return None


def listen_url(listeners: list[Any], tls: bool) -> str:
    first = listeners[0]
    sock = first.socket if hasattr(first, "socket") else first.transport_listener.socket
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return f"{'wss' if tls else 'ws'}://{host}:{port}{WS_PATH}"


async def read_upgrade(stream: trio.abc.Stream) -> tuple[Upgrade | Refusal, bytes] | None:
    """The upgrade request, checked, and any bytes that came after it; None when the peer
    left before sending a whole request."""
    http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
    request: h11.Request | None = None
    while True:
        try:
            event = http.next_event()
        except h11.RemoteProtocolError as exc:
            return Refusal(400, f"malformed HTTP request: {exc}"), b""
        if event is h11.NEED_DATA:
            data = await stream.receive_some(RECEIVE_SIZE)
            http.receive_data(bytes(data))
            if not data and request is None:
                return None
            continue
        if isinstance(event, h11.Request):
            request = event
            continue
        if request is None or isinstance(event, h11.ConnectionClosed):
            return None  # the peer closed before a whole request
        if isinstance(event, h11.Data):
            continue  # a body on a GET: ignored, as RFC 9110 allows
        checked = check_upgrade(request.method, request.target, request.http_version,
                                request.headers.raw_items())
        if http.their_state is h11.MIGHT_SWITCH_PROTOCOL:
            return checked, http.trailing_data[0]
        if isinstance(checked, Upgrade):  # an Upgrade header h11 did not take as one
            return Refusal(400, "malformed upgrade request"), b""
        return checked, b""


class HubServer:
    def __init__(
        self,
        hub: Hub,
        auth: Authenticator,
        config: HubConfig,
        ssl_context: ssl.SSLContext | None = None,
        seats: Seats | None = None,
    ) -> None:
        self.hub = hub
        self.seats: Seats = seats if seats is not None else LocalSeats()
        self.dispatcher = Dispatcher(hub)
        self.auth = auth
        self.config = config
        self.ssl_context = ssl_context
        self.url = ""
        self.accepts = AcceptGuard("client")  # waits out EMFILE in accept (hub/accept.py)
        self._writers: trio.Nursery | None = None
        # Handshakes whose request head has not fully arrived, per source (IPv4 address,
        # IPv6 /64): half-sent requests from one place cannot hold more than the cap.
        self.pending: dict[str, int] = {}

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen; each connection is a task of the listener's nursery, and the outbox
        writers (started only once a connection falls behind) are tasks of this one."""
        listeners: list[Any] = self.accepts.wrap(
            await trio.open_tcp_listeners(self.config.port, host=self.config.host))
        if self.ssl_context is not None:
            listeners = [trio.SSLListener(lst, self.ssl_context) for lst in listeners]
        self.url = listen_url(listeners, self.ssl_context is not None)
        async with trio.open_nursery() as writers:
            self._writers = writers
            task_status.started(self.url)
            await trio.serve_listeners(self.handle, listeners)

    async def handle(self, stream: trio.abc.Stream) -> None:
        """One connection, from its first byte to its socket's close."""
        fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None
        peer = peer_host(stream)
        source = address_key(peer) if peer is not None else None
        cap = self.config.handshakes_per_address
        if source is not None and cap and self.pending.get(source, 0) >= cap:
            self.hub.stats.handshakes_dropped["per-address cap"] += 1
            log.debug("dropped a connection from %s: %d handshakes already pending", source, cap)
            await trio.aclose_forcefully(stream)
            return
        outbox = Outbox(stream, fd, self.config.outbox_limit, self.hub.demotions)
        if self._writers is not None:
            outbox.attach(self._writers)
        try:
            await self._connection(stream, outbox, peer, source)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except ssl.SSLError as exc:
            log.debug("TLS handshake failed: %s", exc)
        except Exception:
            log.exception("connection task failed")
        finally:
            outbox.close()  # its writer, if any, ends before the socket does
            await trio.aclose_forcefully(stream)

    async def _read_upgrade(self, stream: trio.abc.Stream,
                            source: str | None) -> tuple[Upgrade | Refusal, bytes] | None:
        """The request head within the handshake timeout, counted as pending for its source
        meanwhile; None when it did not come whole in time."""
        timeout = self.config.handshake_timeout
        if self.ssl_context is not None:
            timeout += TLS_HANDSHAKE_EXTRA
        if source is not None:
            self.pending[source] = self.pending.get(source, 0) + 1
        try:
            with trio.move_on_after(timeout):
                return await read_upgrade(stream)
            self.hub.stats.handshakes_dropped["timeout"] += 1
            return None
        finally:
            if source is not None:
                left = self.pending[source] - 1
                if left:
                    self.pending[source] = left
                else:
                    del self.pending[source]

    async def _connection(self, stream: trio.abc.Stream, outbox: Outbox,
                          peer: str | None, source: str | None) -> None:
        upgrade = await self._read_upgrade(stream, source)
        if upgrade is None:
            return
        checked, pending = upgrade
        if isinstance(checked, Refusal):
            await self._refuse_http(stream, outbox, checked.status, checked.reason,
                                    checked.headers)
            return
        if urlsplit(checked.target).path != WS_PATH:
            await self._refuse_http(stream, outbox, 404,
                                    "not found: the SWIM endpoint is " + WS_PATH)
            return
        extensions = negotiate(checked.headers) if self.config.compression else None
        if extensions is not None:
            outbox.encoding = DEFLATE  # before the client joins: plans file it under this
        outbox.push(accept_response(checked.key, extensions), CONTROL)
        link = Link(stream, outbox,
                    FrameReader(HARD_MESSAGE_LIMIT, deflate=extensions is not None),
                    self.config.close_timeout)
        client_id = "client_" + secrets.token_hex(8)
        if self.hub.shutting_down:
            link.send_close(CLOSE_GOING_AWAY, "hub shutting down")
            await self._wait_close(link, pending)
            return
        key = extract_key(list(checked.headers), checked.target)
        try:
            record = await self.auth.authenticate(key, peer)
        except AuthFailed as exc:
            self.hub.stats.auth_failures += 1
            log.debug("refused %s: %s", client_id, exc)  # auth.py logs a summary per interval
            await self._refuse(link, pending, AUTH_FAILED, str(exc), CLOSE_AUTH)
            return
        client = Client(client_id=client_id, tier=record.tier, key_id=record.id, outbox=outbox)
        cap = self.config.tier_caps.get(record.tier, 0)
        try:
            seated = await self.seats.take(client, cap)
        except SeatsUnavailable:
            log.info("refused %s: the broker could not count its key's connections", client_id)
            await self._refuse(link, pending, BROKER_UNAVAILABLE,
                               "the hub cannot count this key's connections right now; "
                               "retry shortly", CLOSE_TRY_AGAIN)
            return
        if not seated or not self.hub.admit(client):
            if seated:
                await self.seats.release(client)
            log.info("refused %s: key id %s at its %s cap", client_id, record.id, record.tier)
            await self._refuse(
                link, pending, CONNECTION_LIMIT,
                f"connection limit reached for this key ({cap} for tier {record.tier})",
                CLOSE_LIMIT,
            )
            return
        log.info("connected %s (tier %s, key id %s)", client_id, record.tier, record.id)
        try:
            self.hub.send(client, self.hub.connected_message(client))
            client.on_close = lambda: link.send_close(client.close_code,
                                                      client.close_reason[:120])
            link.on_overflow = lambda: self.hub.slow_consumer(client)
            if client.close_code is not None:
                client.on_close()
            bucket = self.dispatcher.bucket_for(client)
            strikes = ViolationWindow(self.config.violation_limit,
                                      self.config.violation_window)

            def mistake(error: ProtocolError) -> None:
                self.hub.send(client, error_reply(error.code, error.message, error.request_id))
                if strikes.record() and client.close_code is None:
                    log.info("closing %s: repeated protocol violations", client_id)
                    self.hub.stats.violation_closes += 1
                    client.request_close(CLOSE_VIOLATIONS, "repeated protocol violations")

            async def on_message(message: str | bytes) -> None:
                if client.close_code is not None:
                    return
                error = await self.dispatcher.handle(client, message, bucket)
                if error is not None:
                    mistake(error)

            def allow_control() -> bool:
                """A ping or pong frame takes a token of the same bucket as messages."""
                if client.close_code is not None:
                    return False
                if bucket.take():
                    return True
                mistake(ProtocolError(RATE_LIMITED, "over the message rate limit (WebSocket "
                                      "ping and pong frames count); slow down"))
                return False

            await link.serve(on_message, pending, allow_control)
            client.on_close = None
            await link.finish()
        finally:
            outbox.close()  # nothing more goes out: its memory goes with the client
            self.hub.remove(client)
            await self.seats.release(client)
            log.info("disconnected %s (%s)", client_id, link.ended_by)

    async def _refuse_http(self, stream: trio.abc.Stream, outbox: Outbox, status: int,
                           reason: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        outbox.push(refusal_response(status, reason, headers), CONTROL)
        link = Link(stream, outbox, FrameReader(0), self.config.close_timeout)
        await link.finish()

    async def _refuse(self, link: Link, pending: bytes, code: str, message: str,
                      close: int) -> None:
        link.outbox.push(text_frame(error_reply(code, message)), CONTROL)
        link.send_close(close, message[:120])
        await self._wait_close(link, pending)

    async def _wait_close(self, link: Link, pending: bytes) -> None:
        """After our close frame: wait (briefly) for the peer's, then finish."""

        async def ignore(message: str | bytes) -> None:
            return None

        await link.serve(ignore, pending)
        await link.finish()
