"""The event families and channel names the hub knows: one table, one place for its rules.

Every event type is `family.name`. Some families have a fixed set of types the hub itself
produces or validates (`flight`, `tmi`, `system`); the others are relayed as a system-tier
publisher sends them. A few types are made by the hub only (`system.*`, `tmi.active`): a
publish of one is refused, and filters never drop one (a `tmi.active` snapshot is sliced
instead). The table is a value: a hub is given one, so an operator can add families.
"""

from __future__ import annotations

import re

import attrs

POSITIONS = "flight.positions"
HEARTBEAT = "system.heartbeat"
TMI_ACTIVE = "tmi.active"

FLIGHT_TYPES: frozenset[str] = frozenset({
    "flight.created", "flight.updated", "flight.departed", "flight.arrived", "flight.deleted",
    POSITIONS,
})
TMI_TYPES: frozenset[str] = frozenset({"tmi.issued", "tmi.modified", "tmi.released", TMI_ACTIVE})
SYSTEM_TYPES: frozenset[str] = frozenset({HEARTBEAT})
MAX_TYPE_LENGTH = 128
# A concrete type is dot-separated names of letters, digits, `_` and `-`: no empty segment
# (`ctp.a..b`), no wildcard, no space or control character (a NUL would pass straight into
# logs, file names and other clients' parsers).
_EVENT_TYPE = re.compile(r"[a-z]+(?:\.[A-Za-z0-9_-]+)+")


def is_hub_only(event_type: str) -> bool:
    """Made by the hub itself: never published by a client, never dropped by a filter."""
    return event_type.startswith("system.") or event_type == TMI_ACTIVE


def pattern_matches(pattern: str, event_type: str) -> bool:
    """`*`, an exact type, or `family.*` (every type of the family, however many dots)."""
    if pattern == "*" or pattern == event_type:
        return True
    return pattern.endswith(".*") and event_type.startswith(pattern[:-1])


@attrs.frozen
class Channels:
    """The families a hub streams. `known` maps a family to its exact types; a family not in
    `known` relays any type under it."""

    families: frozenset[str]
    known: dict[str, frozenset[str]] = attrs.field(factory=dict)

    def with_families(self, extra: tuple[str, ...]) -> Channels:
        """This table plus relayed families an operator adds (`serve --family`)."""
        return attrs.evolve(self, families=self.families | frozenset(extra))

    def is_event_type(self, name: str) -> bool:
        """A concrete event type: `family.name[.name...]` with a known family, no wildcard."""
        return (len(name) <= MAX_TYPE_LENGTH and _EVENT_TYPE.fullmatch(name) is not None
                and name.partition(".")[0] in self.families)

    def is_known(self, event_type: str) -> bool:
        """A type this table accepts: any type of a relayed family, or a listed one."""
        if not self.is_event_type(event_type):
            return False
        known = self.known.get(event_type.partition(".")[0])
        return known is None or event_type in known

    def valid_pattern(self, pattern: str) -> bool:
        """`*`, `family.*`, or an exact type this table accepts."""
        if pattern == "*":
            return True
        family, dot, rest = pattern.partition(".")
        if not dot or family not in self.families:
            return False
        return rest == "*" or self.is_known(pattern)

    def publish_error(self, channel: str) -> str | None:
        """Why a client may not publish on `channel`, or None when it may."""
        if not self.is_event_type(channel):
            return "`channel` must be one concrete event type"
        if is_hub_only(channel):
            return f"{channel} is produced by the hub only"
        if not self.is_known(channel):
            return f"unknown event type {channel!r}"
        return None


DEFAULT_CHANNELS = Channels(
    families=frozenset({"flight", "tmi", "system", "ctp", "splits", "cdm", "aman"}),
    known={"flight": FLIGHT_TYPES, "tmi": TMI_TYPES, "system": SYSTEM_TYPES},
)
