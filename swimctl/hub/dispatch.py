"""One request dispatcher: a client's message in, the hub's answer out.

Every rule about what a client may ask lives here or in the pure core it calls: the inbound
rate limit and size bound, parsing (core/protocol.py), the publish tier, the TMI lifecycle
(core/tmi.py). The server only reads messages and counts the mistakes this returns toward
close 4003.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from swimctl.core.batches import FrameTooLarge
from swimctl.core.limits import TokenBucket
from swimctl.core.protocol import (
    BROKER_UNAVAILABLE,
    FORBIDDEN,
    INTERNAL_ERROR,
    INVALID_FILTER,
    INVALID_PUBLISH,
    INVALID_SUBSCRIBE,
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
from swimctl.core.routing import SubscriptionLimit
from swimctl.core.tmi import TmiError, prepare_publish
from swimctl.hub.client import Client
from swimctl.hub.engine import Hub
from swimctl.stream.base import LogUnavailable

log = logging.getLogger("swimctl.server")

PUBLISH_TIER = "system"


def too_large(message: str | bytes, limit: int) -> bool:
    """Over `limit` bytes of UTF-8, without encoding a short text to find out."""
    size = len(message)
    if size > limit:
        return True
    return (isinstance(message, str) and size * 4 > limit
            and len(message.encode("utf-8", "surrogatepass")) > limit)


class Dispatcher:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.config = hub.config
        # The whole hub's figures for `status` with `hub: true` (hub/report.py; set by the
        # service): what `swimctl top` shows.
        self.report: Callable[[], dict[str, Any]] | None = None

    def bucket_for(self, client: Client) -> TokenBucket:
        """The inbound rate limit of a client's tier."""
        if client.tier == PUBLISH_TIER:
            return TokenBucket(self.config.system_rate_per_second,
                               self.config.system_rate_burst)
        return TokenBucket(self.config.rate_per_second, self.config.rate_burst)

    async def handle(self, client: Client, message: str | bytes,
                     bucket: TokenBucket) -> ProtocolError | None:
        """Answer one client message. Returns the client's mistake, which the caller answers
        and counts toward 4003; None when all went well or the fault was ours
        (INTERNAL_ERROR is answered here and never counts against the client)."""
        if not bucket.take():
            client.rate_limited += 1
            self.hub.stats.rate_limited += 1
            return ProtocolError(RATE_LIMITED, "over the message rate limit; slow down",
                                 request_id_of(message))
        limit = self.config.max_message_bytes
        if too_large(message, limit):
            return ProtocolError(MESSAGE_TOO_LARGE, f"messages are limited to {limit} bytes")
        hub = self.hub
        request_id: Any = MISSING
        try:
            req = parse_request(message, hub.airport_artcc, hub.channels)
            request_id = req.request_id
            if isinstance(req, Subscribe):
                try:
                    hub.subscribe(client, req)
                except SubscriptionLimit as exc:  # raised before anything was applied or sent
                    code = INVALID_SUBSCRIBE if exc.what == "patterns" else INVALID_FILTER
                    raise ProtocolError(code, str(exc), req.request_id) from None
            elif isinstance(req, Unsubscribe):
                removed = hub.unsubscribe(client, req.channels)
                hub.send(client, encode_reply({"type": "unsubscribed", "channels": removed},
                                              req.request_id))
            elif isinstance(req, Ping):
                hub.send(client, pong_reply(req.request_id))
            elif isinstance(req, Status):
                data = hub.status(client)
                if req.hub:
                    data["hub"] = self._hub_report(client, req.request_id)
                hub.send(client, encode_reply({"type": "status", "data": data},
                                              req.request_id))
            elif isinstance(req, Publish):
                await self._publish(client, req)
        except ProtocolError as exc:
            return exc
        except Exception:
            log.exception("internal error answering %s", client.client_id)
            hub.send(client, error_reply(INTERNAL_ERROR, "the hub could not handle this request",
                                         request_id))
        return None

    def _hub_report(self, client: Client, request_id: Any) -> dict[str, Any]:
        if client.tier != PUBLISH_TIER:
            raise ProtocolError(FORBIDDEN, "the hub's figures need a system-tier key",
                                request_id)
        return self.report() if self.report is not None else {}

    async def _publish(self, client: Client, req: Publish) -> None:
        if client.tier != PUBLISH_TIER:
            raise ProtocolError(FORBIDDEN, "publish needs a system-tier key", req.request_id)
        data = req.data
        if req.channel.startswith("tmi."):
            try:
                data = prepare_publish(self.hub.tmi, req.channel, data)
            except TmiError as exc:
                raise ProtocolError(INVALID_PUBLISH, str(exc), req.request_id) from None
        try:
            appended = await self.hub.publish(req.channel, data, timestamp=req.timestamp,
                                              event_id=req.event_id)
        except LogUnavailable:
            # Our trouble, not the client's: no strike, and it may retry (same event_id).
            self.hub.send(client, error_reply(
                BROKER_UNAVAILABLE, "the event log is unavailable; retry shortly",
                req.request_id))
            return
        except FrameTooLarge as exc:
            raise ProtocolError(MESSAGE_TOO_LARGE, str(exc), req.request_id) from None
        ack = {
            "type": "publish_ack",
            "event_id": req.event_id if req.event_id is not None else f"e-{appended.seq}",
            "seq": appended.seq,
            "accepted": 0 if appended.duplicate else 1,
            "duplicates": 1 if appended.duplicate else 0,
        }
        self.hub.send(client, encode_reply(ack, req.request_id))
