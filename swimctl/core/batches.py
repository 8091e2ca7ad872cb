"""Record batches (`flight.positions`, `tmi.active`) cut to fit a frame, and put back together.

A client written for the PHP hub reads a frame into a fixed buffer (PERTI's C# SDK: 64 KiB,
fragments ignored) or refuses big messages (websockets: 1 MiB), while a positions batch of
5,000 flights is over 1 MB. So a batch larger than the frame bound goes out as several
events of the same type, each valid alone (`count` and its own `positions`), carrying
`batch_id`, `part` (1-based) and `parts`. A client that treats every frame as one batch
keeps working; one that wants the whole state joins the parts of one `batch_id`.

Everything here is pure: sizes are measured on the JSON the hub will send (orjson is
compact and deterministic, so a list's size is the sum of its items' sizes plus commas).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from swimctl.core.model import dumps

BATCH_KEYS = ("batch_id", "part", "parts")
# Frame header bytes in front of a payload: 2, +2 for 126..65535 bytes, +8 beyond.
_SHORT_HEADER = 4
_LONG_HEADER = 10
# The widest values an envelope's numbers can take, for measuring before the log numbers it.
_WIDE_SEQ = 10**19
_WIDE_EVENT_SUFFIX = "#" + "9" * 6
# Incomplete batches held while their other parts arrive (one publisher at a time, parts in
# order; a few allow for a publisher that died between parts).
_PENDING = 4

# Numeric fields PERTI's typed SDKs decode as integers (C# `int`/`long`, Java, Python
# `int(...)`): a float there breaks a strict decoder, a null breaks all of them.
INTEGER_FIELDS = ("altitude_ft", "groundspeed_kts", "heading_deg", "vertical_rate_fpm")
_ALT, _GS, _HDG, _VS = INTEGER_FIELDS


class FrameTooLarge(ValueError):
    """An event (or one record of a batch) that cannot go out in a frame of the hub's bound:
    a publish of it is answered MESSAGE_TOO_LARGE."""


def payload_limit(max_frame: int) -> int:
    """The largest payload a frame of at most `max_frame` bytes (header included) carries."""
    limit = max_frame - _SHORT_HEADER
    return limit if limit < 65536 else max_frame - _LONG_HEADER


def split_sizes(sizes: Sequence[int], overhead: int, budget: int) -> list[tuple[int, int]]:
    """Greedy ranges [start, end) of records whose list, with `overhead` bytes around it,
    stays within `budget`. `sizes` are each record's encoded length."""
    room = budget - overhead - 2  # the list's brackets
    if any(size > room for size in sizes):
        raise FrameTooLarge(f"a record of {max(sizes)} bytes cannot fit a frame of {budget}")
    ranges: list[tuple[int, int]] = []
    start, used = 0, -1  # n items take n-1 commas
    for i, size in enumerate(sizes):
        if used + 1 + size > room and i > start:
            ranges.append((start, i))
            start, used = i, -1
        used += 1 + size
    ranges.append((start, len(sizes)))
    return ranges


def split_batch(records: list[dict[str, Any]], measure: Callable[[dict[str, Any]], int],
                budget: int, key: str = "positions") -> list[list[dict[str, Any]]]:
    """`records` cut into parts whose encoded payload stays within `budget`. `measure(data)`
    is the encoded size of the envelope around a part's `data` (with the widest values its
    numbers can take); a batch that fits is one part."""
    widest = {key: [], "count": len(records), "part": len(records) or 1,
              "parts": len(records) or 1}
    sizes = [len(dumps(r)) for r in records]
    whole = measure(widest) + sum(sizes) + max(len(sizes) - 1, 0)
    if whole <= budget:
        return [records]
    return [records[a:b] for a, b in split_sizes(sizes, measure(widest), budget)]


def envelope_measure(event_type: str, timestamp: str, event_id: str | None,
                     batch_id: str | None, extra: dict[str, Any] | None = None,
                     stream: bool = True) -> Callable[[dict[str, Any]], int]:
    """Measures the envelope `stream.base.LogEvent` will build (with `seq` and `event_id`
    when `stream`, as a snapshot frame without them otherwise) around `data`, plus `extra`
    and the batch id when one is given."""
    eid = (event_id or "e-" + str(_WIDE_SEQ)) + _WIDE_EVENT_SUFFIX

    def measure(data: dict[str, Any]) -> int:
        body: dict[str, Any] = {"type": event_type, "timestamp": timestamp}
        if stream:
            body |= {"seq": _WIDE_SEQ, "event_id": eid}
        body["data"] = {**(extra or {}), **data}
        if batch_id is not None:
            body["data"]["batch_id"] = batch_id
        return len(dumps(body))

    return measure


def part_data(records: list[dict[str, Any]], batch_id: str | None, part: int, parts: int,
              key: str = "positions", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One part's `data`, in wire order: count, records, then whatever else, then the batch
    keys (not for a batch that is one frame: its bytes stay what they always were)."""
    data: dict[str, Any] = {"count": len(records), key: records}
    if extra:
        data.update(extra)
    if batch_id is not None:
        data.update(batch_id=batch_id, part=part, parts=parts)
    return data


def batch_parts(data: dict[str, Any]) -> tuple[str, int, int] | None:
    """(batch_id, part, parts) of a part's data, or None when it carries no valid set."""
    batch_id, part, parts = data.get("batch_id"), data.get("part"), data.get("parts")
    if (isinstance(batch_id, str) and type(part) is int and type(parts) is int
            and 1 <= part <= parts):
        return batch_id, part, parts
    return None


# -- what the typed SDKs can decode ------------------------------------------------------------


def _finite(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def typed_record(record: Any, *, needs_position: bool) -> dict[str, Any] | None:
    """`record` with its integer fields made integers (a float rounded; a null or a string
    dropped, since an absent key decodes as 0 where a null throws). With `needs_position`
    a record without finite `latitude` and `longitude` is None: a position is its
    coordinates. The same dict comes back when nothing needed changing.

    Every position of every feed cycle passes here, so the usual record (float coordinates,
    int fields) is recognised with exact type tests before anything slower runs."""
    if not isinstance(record, dict):
        return None
    if needs_position:
        lat, lon = record.get("latitude"), record.get("longitude")
        if not (((type(lat) is float and lat - lat == 0.0) or type(lat) is int)
                and ((type(lon) is float and lon - lon == 0.0) or type(lon) is int)) \
                and not (_finite(lat) and _finite(lon)):
            return None
    get = record.get
    if (type(get(_ALT, 0)) is int and type(get(_GS, 0)) is int and type(get(_HDG, 0)) is int
            and type(get(_VS, 0)) is int):
        return record
    fixed = dict(record)
    for name in INTEGER_FIELDS:
        if name not in record:
            continue
        value = record[name]
        if type(value) is int:
            continue
        if _finite(value):
            fixed[name] = round(value)
        else:
            del fixed[name]
    return fixed


def typed_positions(positions: Any) -> list[dict[str, Any]]:
    """A publisher's positions as the SDKs can decode them; records without coordinates go."""
    if not isinstance(positions, list):
        return []
    out = []
    for record in positions:
        typed = typed_record(record, needs_position=True)
        if typed is not None:
            out.append(typed)
    return out


# -- putting parts back together ---------------------------------------------------------------


class BatchAssembler:
    """The latest complete batch, from parts delivered in order.

    Every hub feeds it the `flight.positions` events it delivers, so hubs sharing one log
    build the same state from the same events. Parts of one batch are joined in part order;
    an event without batch keys is a complete batch of its own. An incomplete batch never
    replaces the latest complete one.
    """

    def __init__(self, key: str = "positions") -> None:
        self.key = key
        self.batch_id: str | None = None
        self.records: list[dict[str, Any]] = []
        self._pending: OrderedDict[str, dict[int, list[dict[str, Any]]]] = OrderedDict()

    def add(self, data: dict[str, Any], fallback_id: str = "") -> bool:
        """Take one delivered part; True when it completed a batch (now the latest)."""
        records = data.get(self.key)
        if not isinstance(records, list):
            records = []
        found = batch_parts(data)
        if found is None:
            self.batch_id, self.records = fallback_id, records
            return True
        batch_id, part, parts = found
        held = self._pending.setdefault(batch_id, {})
        held[part] = records
        if len(held) < parts or any(n not in held for n in range(1, parts + 1)):
            while len(self._pending) > _PENDING:
                self._pending.popitem(last=False)
            return False
        del self._pending[batch_id]
        self.batch_id = batch_id
        self.records = [r for n in range(1, parts + 1) for r in held[n]]
        return True
