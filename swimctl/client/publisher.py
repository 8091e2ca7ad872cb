"""A small request/reply session with a hub, for the tools that publish (`replay --to`,
`tmi ...`): one request in flight at a time, so every reply (even an error the hub sends
without an `id`, like RATE_LIMITED) belongs to the request we are waiting on.

Publishing is retried across reconnects with the same `event_id`, which the hub de-duplicates,
so a publish whose ack was lost is never applied twice.
"""

from __future__ import annotations

import errno
import itertools
import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection

from swimctl.client import SwimError, open_websocket
from swimctl.client._transport import _os_error_text
from swimctl.core.limits import TokenBucket

REPLY_TIMEOUT = 15.0
CONNECT_TIMEOUT = 10.0
FATAL_CODES = ("AUTH_FAILED", "FORBIDDEN", "CONNECTION_LIMIT")


class HubError(Exception):
    """The hub answered with an error, or could not be reached; `str()` is one clear line."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.code = code
        self.message = message


def client_ssl_context(url: str, ca_file: str | None) -> ssl.SSLContext | None:
    if not url.startswith("wss://"):
        return None
    return ssl.create_default_context(cafile=ca_file)


class HubSession:
    """One authenticated connection; `request` sends an action and returns its reply."""

    def __init__(self, ws: WebSocketConnection, hello: dict[str, Any]) -> None:
        self.ws = ws
        self.hello = hello
        self.events: list[dict[str, Any]] = []  # events that arrived while awaiting replies
        self._ids = itertools.count(1)
        self.keep_events = False

    async def request(self, body: dict[str, Any]) -> dict[str, Any]:
        rid = next(self._ids)
        await self.ws.send_message(orjson.dumps({**body, "id": rid}).decode())
        with trio.fail_after(REPLY_TIMEOUT):
            while True:
                msg: dict[str, Any] = orjson.loads(await self.ws.get_message())
                mtype = msg.get("type", "")
                if "." in mtype:  # an event, not a reply
                    if self.keep_events:
                        self.events.append(msg)
                    continue
                if msg.get("id", rid) != rid:
                    continue  # a late reply to an earlier, timed-out request
                return msg

    async def next_event(self) -> dict[str, Any]:
        if self.events:
            return self.events.pop(0)
        with trio.fail_after(REPLY_TIMEOUT):
            while True:
                event: dict[str, Any] = orjson.loads(await self.ws.get_message())
                if "." in event.get("type", ""):
                    return event


@asynccontextmanager
async def connect(url: str, key: str, ca_file: str | None = None) -> AsyncIterator[HubSession]:
    """Open, authenticate and hand over a session; refusals become HubError."""
    try:
        context = client_ssl_context(url, ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise HubError("", f"cannot load --ca-file: {exc}") from None
    try:
        async with open_websocket(url, key, context, CONNECT_TIMEOUT) as ws:
            try:
                with trio.fail_after(CONNECT_TIMEOUT):
                    hello = orjson.loads(await ws.get_message())
            except ConnectionClosed as exc:
                raise HubError("", f"the hub closed the connection ({exc.reason})") from None
            except trio.TooSlowError:
                raise HubError("", "the hub did not greet us in time") from None
            if hello.get("type") == "error":
                raise HubError(str(hello.get("code", "ERROR")), str(hello.get("message", "")))
            if hello.get("type") != "connected":
                raise HubError("", f"unexpected first message from the hub: {hello.get('type')}")
            yield HubSession(ws, hello)
    except HandshakeError as exc:
        raise HubError("", f"cannot connect to {url}: {_handshake_text(exc)}") from None
    except SwimError as exc:  # TLS verification, a URL that is not ws:// or wss://
        raise HubError("", f"cannot connect to {url}: {exc}") from None
    except (OSError, trio.TooSlowError) as exc:
        if isinstance(exc, ssl.SSLError):
            raise HubError("", f"TLS failed with {url}: {exc.reason or exc}") from None
        if isinstance(exc, OSError):
            text = _os_error_text(exc)
            if exc.errno == errno.ECONNREFUSED or text == os.strerror(errno.ECONNREFUSED):
                text += " (is the hub running?)"
        else:
            text = str(exc) or type(exc).__name__
        raise HubError("", f"cannot connect to {url}: {text}") from None


def _handshake_text(exc: HandshakeError) -> str:
    status = getattr(exc, "status_code", None)
    if status:
        return f"HTTP {status} (is this the SWIM endpoint /api/swim/v1/ws?)"
    return str(exc) or type(exc).__name__


def publish_body(channel: str, data: dict[str, Any], event_id: str,
                 timestamp: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"action": "publish", "channel": channel, "data": data,
                            "event_id": event_id}
    if timestamp is not None:
        body["timestamp"] = timestamp
    return body


async def publish_once(session: HubSession, body: dict[str, Any],
                       rate_limit_backoff: float = 1.0) -> dict[str, Any]:
    """Publish and return the ack; RATE_LIMITED waits and resends (same event_id, so safe).
    Any other error reply raises HubError."""
    backoff = rate_limit_backoff
    while True:
        reply = await session.request(body)
        if reply.get("type") == "publish_ack":
            return reply
        code = str(reply.get("code", "ERROR"))
        if code == "RATE_LIMITED":
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 8.0)
            continue
        raise HubError(code, str(reply.get("message", "")))


class Pacer:
    """Client-side pacing so a fast replay stays under the hub's inbound limit: the hub's own
    token bucket, waited on instead of refused. A rate of 0 means no pacing."""

    def __init__(self, rate: float, burst: float) -> None:
        self.bucket = TokenBucket(rate, burst) if rate > 0 else None

    async def take(self) -> None:
        bucket = self.bucket
        if bucket is None:
            return
        while not bucket.take():  # noqa: ASYNC110 - sleeps exactly until the next token
            await trio.sleep((1.0 - bucket.tokens) / bucket.rate)
