"""The encodings an event's frame can take, one per kind of connection.

An encoding turns an event's payload into its frame. Every client takes `PLAIN` unless it
negotiated permessage-deflate (`DEFLATE`, wire/deflate.py). An event caches its frame per
encoding (stream/base.py LogEvent.frame), so each is built at most once and shared; the
fan-out keeps one list of clients per encoding (hub/plans.py), and each outbox names its own.
"""

from __future__ import annotations

from collections.abc import Callable

from swimctl.wire.deflate import deflate_frame
from swimctl.wire.frames import text_frame

PLAIN = 0
DEFLATE = 1
ENCODINGS: tuple[Callable[[bytes], bytes], ...] = (text_frame, deflate_frame)
NAMES = ("plain", "deflate")


def plain_size(payload: bytes) -> int:
    """Bytes of the plain frame of `payload`, without building it."""
    n = len(payload)
    return n + (2 if n < 126 else 4 if n < 65536 else 10)
