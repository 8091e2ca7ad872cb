"""The encodings an event's frame can take, one per kind of connection.

An encoding turns an event's payload into its frame. Every client takes `PLAIN` unless it
negotiated permessage-deflate (`DEFLATE`, wire/deflate.py). An event caches its frame per
encoding (stream/base.py LogEvent.frame), so each is built at most once and shared; the
fan-out keeps one list of clients per encoding (hub/plans.py), and each outbox names its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from swimctl.wire.deflate import deflate_frame
from swimctl.wire.frames import header_size, text_frame

PLAIN = 0
DEFLATE = 1
ENCODINGS: tuple[Callable[[bytes], bytes], ...] = (text_frame, deflate_frame)
NAMES = ("plain", "deflate")


def plain_size(payload: bytes) -> int:
    """Bytes of the plain frame of `payload`, without building it."""
    return header_size(len(payload)) + len(payload)


class Frames(Protocol):
    """A payload whose frame is built once per encoding and kept: `stream.base.LogEvent`, or
    `Framed` for what is not a logged event."""

    payload: bytes

    def frame(self, encoding: int = PLAIN) -> bytes: ...


class Framed:
    """A payload that is not a logged event (a heartbeat, a snapshot part, a reply), with its
    frames built per encoding on first need and kept, like a LogEvent's."""

    __slots__ = ("_frames", "payload")

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self._frames: list[bytes | None] = [None] * len(ENCODINGS)

    def frame(self, encoding: int = PLAIN) -> bytes:
        frame = self._frames[encoding]
        if frame is None:
            frame = self._frames[encoding] = ENCODINGS[encoding](self.payload)
        return frame
