"""Traffic-management programs (ground stops, ground delay programs): the hub's active set.

Pure: `TmiBook` takes `tmi.*` events in and says which programs are active and which have
reached their end time; the hub publishes the resulting `tmi.released` (status EXPIRED).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import attrs

from swimctl.core.model import parse_ts

PROGRAM_TYPES = ("GS", "GDP")
STATUSES = ("ACTIVE", "RELEASED", "CANCELLED", "EXPIRED")
_ICAO = re.compile(r"^[A-Z0-9]{3,4}$")


class TmiError(ValueError):
    """A `tmi.*` payload the hub refuses (answered with INVALID_PUBLISH)."""


def validate_program(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """Check a published `tmi.issued|modified|released` payload; returns it normalised."""
    out = dict(data)
    program_id = out.get("program_id")
    if not isinstance(program_id, str) or not program_id or len(program_id) > 64:
        raise TmiError("`program_id` must be a non-empty string")
    if event_type == "tmi.released" and set(out) <= {"program_id", "status", "reason"}:
        return out  # a release may name only the program
    ptype = out.get("program_type")
    if ptype not in PROGRAM_TYPES:
        raise TmiError("`program_type` must be GS or GDP")
    airport = out.get("airport")
    if not isinstance(airport, str) or not _ICAO.match(airport.upper()):
        raise TmiError("`airport` must be an ICAO code")
    out["airport"] = airport.upper()
    for key in ("start_time", "end_time"):
        value = out.get(key)
        if not isinstance(value, str):
            raise TmiError(f"`{key}` must be an ISO-8601 time")
        try:
            parse_ts(value)
        except ValueError:
            raise TmiError(f"`{key}` must be an ISO-8601 time") from None
    if parse_ts(out["end_time"]) <= parse_ts(out["start_time"]):
        raise TmiError("`end_time` must be after `start_time`")
    status = out.setdefault("status", "ACTIVE" if event_type != "tmi.released" else "RELEASED")
    if status not in STATUSES:
        raise TmiError(f"`status` must be one of {', '.join(STATUSES)}")
    if "reason" in out and not isinstance(out["reason"], str):
        raise TmiError("`reason` must be a string")
    out.setdefault("reason", "")
    scope = out.get("scope")
    if scope is not None and (
        not isinstance(scope, list) or not all(isinstance(s, str) for s in scope)
    ):
        raise TmiError("`scope` must be a list of ARTCC ids")
    for key in ("program_rate", "avg_delay_min", "max_delay_min"):
        value = out.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise TmiError(f"`{key}` must be a number")
    return out


def prepare_publish(book: TmiBook, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """The lifecycle rules for a published `tmi.*` event, against the programs now active:
    an issue must be new, a modify or release must name an active program and carries its
    full record (so airport and ARTCC filters still see it), and a release ends as
    RELEASED unless it says CANCELLED or EXPIRED. Returns the payload to store."""
    program_id = data.get("program_id")
    known = book.get(program_id) if isinstance(program_id, str) else None
    if event_type in ("tmi.modified", "tmi.released"):
        if known is None:
            raise TmiError(f"no active program {program_id!r}")
        data = {**known, **data}
        if event_type == "tmi.released":
            status = data.get("status")
            data["status"] = status if status in ("CANCELLED", "EXPIRED") else "RELEASED"
    elif event_type == "tmi.issued" and known is not None:
        raise TmiError(f"program {program_id!r} is already active")
    return validate_program(event_type, data)


def book_change(event_type: str, data: dict[str, Any]
                ) -> tuple[str, str, dict[str, Any] | None] | None:
    """What an event does to the set of active programs, as a shared log stores it:
    ("set", id, program), ("del", id, None), or None. The same rule as TmiBook.apply."""
    program_id = data.get("program_id")
    if not event_type.startswith("tmi.") or not isinstance(program_id, str):
        return None
    if event_type in ("tmi.issued", "tmi.modified"):
        if data.get("status", "ACTIVE") == "ACTIVE":
            return "set", program_id, data
        return "del", program_id, None
    if event_type == "tmi.released":
        return "del", program_id, None
    return None


@attrs.define
class TmiBook:
    """Programs now active, by id, in issue order."""

    _active: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    _known: set[str] = attrs.field(factory=set)  # every id ever seen, so none is reused

    def apply(self, event_type: str, data: dict[str, Any]) -> None:
        change = book_change(event_type, data)
        if change is None:
            return
        _, program_id, program = change
        self._known.add(program_id)
        if program is not None:
            self._active[program_id] = {**self._active.get(program_id, {}), **program}
        else:
            self._active.pop(program_id, None)

    def get(self, program_id: str) -> dict[str, Any] | None:
        return self._active.get(program_id)

    def active(self) -> list[dict[str, Any]]:
        return list(self._active.values())

    def due(self, now: dt.datetime) -> list[dict[str, Any]]:
        """Programs whose end time has come: the hub releases them with status EXPIRED."""
        out = []
        for program in self._active.values():
            try:
                if parse_ts(program["end_time"]) <= now:
                    out.append(program)
            except (KeyError, ValueError, TypeError):
                continue
        return out

    def next_id(self, program_type: str, airport: str, day: dt.date) -> str:
        """Readable, unique ids: `GS-KJFK-20261126-1`, counting up per type, airport and day."""
        stem = f"{program_type}-{airport.upper()}-{day:%Y%m%d}-"
        used = [
            int(pid[len(stem):]) for pid in self._known
            if pid.startswith(stem) and pid[len(stem):].isdigit()
        ]
        return f"{stem}{max(used, default=0) + 1}"
