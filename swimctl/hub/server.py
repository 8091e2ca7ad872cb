"""The trio shell around the hub: TCP/TLS listener, handshake, auth, and each connection's
reader. trio-websocket parses the handshake and inbound frames; every outbound byte goes
through the connection's outbox (swimctl.hub.outbox), so the hub stays the only writer.
"""

from __future__ import annotations

import logging
import secrets
import ssl
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_server_stream

from swimctl.core.limits import TokenBucket, ViolationWindow
from swimctl.core.protocol import (
    AUTH_FAILED,
    CLOSE_AUTH,
    CLOSE_GOING_AWAY,
    CLOSE_LIMIT,
    CLOSE_VIOLATIONS,
    CONNECTION_LIMIT,
    FORBIDDEN,
    INTERNAL_ERROR,
    MESSAGE_TOO_LARGE,
    MISSING,
    RATE_LIMITED,
    Ping,
    ProtocolError,
    Publish,
    Status,
    Subscribe,
    Unsubscribe,
    encode_reply,
    error_reply,
    parse_request,
    pong_reply,
    request_id_of,
)
from swimctl.hub.accept import AcceptGuard
from swimctl.hub.auth import Authenticator, AuthFailed, peer_host
from swimctl.hub.client import Client
from swimctl.hub.config import WS_PATH, HubConfig
from swimctl.hub.engine import Hub
from swimctl.hub.outbox import Outbox, OutboxStream
from swimctl.wire.frames import text_frame

log = logging.getLogger("swimctl.server")

# trio-websocket refuses (1009) only far past our own limit, so an oversized message gets a
# MESSAGE_TOO_LARGE reply and the connection lives, while memory per message stays bounded.
HARD_MESSAGE_LIMIT = 1024 * 1024


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


def listen_url(listeners: list[trio.SocketListener | Any], tls: bool) -> str:
    sock = listeners[0].socket if hasattr(listeners[0], "socket") else \
        listeners[0].transport_listener.socket
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return f"{'wss' if tls else 'ws'}://{host}:{port}{WS_PATH}"


class HubServer:
    def __init__(
        self,
        hub: Hub,
        auth: Authenticator,
        config: HubConfig,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.hub = hub
        self.auth = auth
        self.config = config
        self.ssl_context = ssl_context
        self.url = ""
        self.accepts = AcceptGuard("client")  # waits out EMFILE in accept (hub/accept.py)

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners: list[Any] = self.accepts.wrap(
            await trio.open_tcp_listeners(self.config.port, host=self.config.host))
        if self.ssl_context is not None:
            listeners = [trio.SSLListener(lst, self.ssl_context) for lst in listeners]
        self.url = listen_url(listeners, self.ssl_context is not None)
        task_status.started(self.url)
        await trio.serve_listeners(self.handle, listeners)

    async def handle(self, stream: trio.abc.Stream) -> None:
        """One connection, owned by one nursery: trio-websocket's reader, us, and (once a
        backlog or a close needs them) the writer and the closer."""
        fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None
        outbox = Outbox(stream, fd, self.config.outbox_limit)
        wrapped = OutboxStream(stream, outbox, self.config.close_timeout)
        try:
            async with trio.open_nursery() as nursery:
                outbox.attach(nursery)
                try:
                    await self._connection(nursery, wrapped, outbox, peer_host(stream))
                finally:
                    nursery.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionClosed):
            pass
        except ssl.SSLError as exc:
            log.debug("TLS handshake failed: %s", exc)
        except Exception:
            log.exception("connection task failed")
        finally:
            await trio.aclose_forcefully(stream)

    async def _connection(
        self, nursery: trio.Nursery, wrapped: OutboxStream, outbox: Outbox, peer: str | None
    ) -> None:
        with trio.move_on_after(self.config.handshake_timeout) as scope:
            request = await wrap_server_stream(
                nursery, wrapped, message_queue_size=4, max_message_size=HARD_MESSAGE_LIMIT
            )
        if scope.cancelled_caught:
            return
        target = request.path
        if urlsplit(target).path != WS_PATH:
            await request.reject(404, body=b"not found: the SWIM endpoint is " + WS_PATH.encode())
            return
        key = extract_key(request.headers, target)
        ws = await request.accept()
        client_id = "client_" + secrets.token_hex(8)
        if self.hub.shutting_down:
            await ws.aclose(CLOSE_GOING_AWAY, "hub shutting down")
            return
        try:
            record = await self.auth.authenticate(key, peer)
        except AuthFailed as exc:
            self.hub.stats.auth_failures += 1
            log.debug("refused %s: %s", client_id, exc)  # auth.py logs a summary per interval
            await self._refuse(ws, outbox, AUTH_FAILED, str(exc), CLOSE_AUTH)
            return
        client = Client(client_id=client_id, tier=record.tier, key_id=record.id, outbox=outbox)
        if not self.hub.admit(client):
            log.info("refused %s: key id %s at its %s cap", client_id, record.id, record.tier)
            cap = self.config.tier_caps.get(record.tier, 0)
            await self._refuse(
                ws, outbox, CONNECTION_LIMIT,
                f"connection limit reached for this key ({cap} for tier {record.tier})",
                CLOSE_LIMIT,
            )
            return
        log.info("connected %s (tier %s, key id %s)", client_id, record.tier, record.id)
        try:
            self.hub.send(client, self.hub.connected_message(client))
            async with trio.open_nursery() as inner:
                closing: list[trio.Event] = []

                def start_close() -> None:  # the hub asked (Client.request_close)
                    closing.append(trio.Event())
                    inner.start_soon(self._closer, client, ws, closing[0])

                client.on_close = start_close
                if client.close_code is not None:
                    start_close()
                await self._read_loop(client, ws)
                client.on_close = None  # the connection is ending either way
                if closing:
                    # We started the close: let its handshake finish before tearing down.
                    with trio.move_on_after(self.config.close_timeout + 0.5):
                        await closing[0].wait()
                inner.cancel_scope.cancel()
        finally:
            self.hub.remove(client)
            log.info("disconnected %s (%s)", client_id,
                     client.close_code if client.close_code is not None else "peer closed")

    async def _refuse(
        self, ws: WebSocketConnection, outbox: Outbox, code: str, message: str, close: int
    ) -> None:
        outbox.push(text_frame(error_reply(code, message)))
        with trio.move_on_after(self.config.close_timeout):
            await ws.aclose(close, message[:120])

    async def _closer(self, client: Client, ws: WebSocketConnection, done: trio.Event) -> None:
        try:
            with trio.move_on_after(self.config.close_timeout):
                await ws.aclose(client.close_code or 1000, client.close_reason[:120])
        finally:
            done.set()

    async def _read_loop(self, client: Client, ws: WebSocketConnection) -> None:
        if client.tier == "system":
            bucket = TokenBucket(self.config.system_rate_per_second,
                                 self.config.system_rate_burst)
        else:
            bucket = TokenBucket(self.config.rate_per_second, self.config.rate_burst)
        strikes = ViolationWindow(self.config.violation_limit, self.config.violation_window)
        while True:
            try:
                message = await ws.get_message()
            except ConnectionClosed:
                return
            if client.close_code is not None:
                continue
            error = self._handle(client, message, bucket)
            if error is not None:
                self.hub.send(client, error_reply(error.code, error.message, error.request_id))
                if strikes.record():
                    log.info("closing %s: repeated protocol violations", client.client_id)
                    client.request_close(CLOSE_VIOLATIONS, "repeated protocol violations")

    def _handle(
        self, client: Client, message: str | bytes, bucket: TokenBucket
    ) -> ProtocolError | None:
        """Answer one client message. Returns the client's mistake, which the caller answers
        and counts toward 4003; None when all went well or the fault was ours
        (INTERNAL_ERROR is answered here and never counts against the client)."""
        if not bucket.take():
            return ProtocolError(RATE_LIMITED, "over the message rate limit; slow down",
                                 request_id_of(message))
        limit = self.config.max_message_bytes
        size = len(message)
        if size > limit or (isinstance(message, str) and size * 4 > limit
                            and len(message.encode("utf-8", "surrogatepass")) > limit):
            return ProtocolError(MESSAGE_TOO_LARGE, f"messages are limited to {limit} bytes")
        request_id: Any = MISSING
        try:
            req = parse_request(message, self.hub.airport_artcc)
            request_id = req.request_id
            hub = self.hub
            if isinstance(req, Subscribe):
                hub.subscribe(client, req)
            elif isinstance(req, Unsubscribe):
                hub.flush()  # held events go out under the routes they were published under
                removed = client.subs.remove(req.channels)
                hub.send(client, encode_reply({"type": "unsubscribed", "channels": removed},
                                              req.request_id))
            elif isinstance(req, Ping):
                hub.send(client, pong_reply(req.request_id))
            elif isinstance(req, Status):
                hub.send(client, encode_reply({"type": "status", "data": hub.status(client)},
                                              req.request_id))
            elif isinstance(req, Publish):
                if client.tier != "system":
                    return ProtocolError(FORBIDDEN, "publish needs a system-tier key",
                                         req.request_id)
                hub.handle_publish(client, req)
        except ProtocolError as exc:
            return exc
        except Exception:
            log.exception("internal error answering %s", client.client_id)
            self.hub.send(client, error_reply(INTERNAL_ERROR,
                                              "the hub could not handle this request",
                                              request_id))
        return None
