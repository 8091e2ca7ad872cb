"""The public trio client for a SWIM hub (PROTOCOL.md v1).

Other programs (`swimctl tail`, `swimctl record`, user scripts) import this instead of talking
to the socket: it owns reconnection, resume and de-duplication so that a dropped connection
loses nothing the hub still holds, and it never hides a gap it could not fill.

    async with connect(url, api_key) as client:
        await client.subscribe(["flight.departed"], airports=["KJFK"])
        async for item in client:
            if isinstance(item, Event): ...
            elif isinstance(item, Resumed) and not item.recovered: ...  # data was missed

Items are `Event` (every hub event, heartbeats included), `StateChange`, `Resumed` and
`HubError`. Fatal conditions (`AuthError`, `TLSError`, `HandshakeRejected`, `Disconnected` when
`reconnect=False`) end the iteration by raising.
"""

from swimctl.client._errors import (
    AuthError,
    Disconnected,
    HandshakeRejected,
    RequestError,
    SwimError,
    TLSError,
)
from swimctl.client._items import (
    Event,
    HubError,
    Item,
    Resumed,
    State,
    StateChange,
    build_filters,
    event_from_text,
)
from swimctl.client._session import SwimClient, connect
from swimctl.client._transport import make_ssl_context, open_websocket

__all__ = [
    "AuthError",
    "Disconnected",
    "Event",
    "HandshakeRejected",
    "HubError",
    "Item",
    "RequestError",
    "Resumed",
    "State",
    "StateChange",
    "SwimClient",
    "SwimError",
    "TLSError",
    "build_filters",
    "connect",
    "event_from_text",
    "make_ssl_context",
    "open_websocket",
]
