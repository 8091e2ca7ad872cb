"""The event families and channel names the hub knows: one table, one place for its rules.

Every event type is `family.name`. Some families have a fixed set of types the hub itself
produces or validates (`flight`, `tmi`, `system`); the others are relayed as a system-tier
publisher sends them. A few types are made by the hub only (`system.*`, `tmi.active`): a
publish of one is refused, and filters never drop one (a `tmi.active` snapshot is sliced
instead). The table is a value: a hub is given one, so an operator can add families
(`serve --family`) without a release.

One alias is kept for clients of the PHP hub: `flight.position` (singular), which PERTI's
SDKs subscribe with, is a pattern that matches `flight.positions` batches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from types import MappingProxyType

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
_FAMILY = re.compile(r"[a-z]+")
MAX_FAMILY_LENGTH = 32

# Pattern -> the one event type it stands for. Read-only: the alias is part of the protocol,
# not of an operator's table.
ALIASES = MappingProxyType({"flight.position": POSITIONS})

# The families every hub streams. `flight`, `tmi` and `system` have fixed types; the others
# are relayed: the upstream hub's `ctp`, `splits`, `cdm`, `aman` and `simtraffic` (whose
# system-tier publisher sends `simtraffic.lifecycle.*`).
RELAYED_FAMILIES: tuple[str, ...] = ("ctp", "splits", "cdm", "aman", "simtraffic")


def is_hub_only(event_type: str) -> bool:
    """Made by the hub itself: never published by a client, never dropped by a filter."""
    return event_type.startswith("system.") or event_type == TMI_ACTIVE


def pattern_matches(pattern: str, event_type: str) -> bool:
    """`*`, an exact type, an alias of it, or `prefix.*` (every type under the prefix,
    however many dots: `ctp.*`, `simtraffic.lifecycle.*`)."""
    if pattern == "*" or pattern == event_type:
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return ALIASES.get(pattern) == event_type


def family_error(name: str) -> str | None:
    """Why `name` cannot be a family an operator adds, or None when it can."""
    if not _FAMILY.fullmatch(name) or len(name) > MAX_FAMILY_LENGTH:
        return (f"family {name[:40]!r} must be lower-case letters a-z, at most "
                f"{MAX_FAMILY_LENGTH} of them")
    return None


@attrs.frozen
class Channels:
    """The families a hub streams. `known` maps a family to its exact types; a family not in
    `known` relays any type under it."""

    families: frozenset[str]
    known: dict[str, frozenset[str]] = attrs.field(factory=dict)
    # Any well-formed family is a family: for reading files a hub wrote, since that hub may
    # have had families this process was not told of.
    any_family: bool = False

    def with_families(self, extra: Iterable[str]) -> Channels:
        """This table plus relayed families an operator adds (`serve --family`); ValueError
        names the first name that cannot be a family. Adding a family the table has (say
        `ctp`, or `flight`, whose types stay fixed) changes nothing."""
        extra = tuple(extra)
        for name in extra:
            problem = family_error(name)
            if problem:
                raise ValueError(problem)
        return attrs.evolve(self, families=self.families | frozenset(extra))

    def is_event_type(self, name: str) -> bool:
        """A concrete event type: `family.name[.name...]` with a known family, no wildcard."""
        return (len(name) <= MAX_TYPE_LENGTH and _EVENT_TYPE.fullmatch(name) is not None
                and (self.any_family or name.partition(".")[0] in self.families))

    def is_known(self, event_type: str) -> bool:
        """A type this table accepts: any type of a relayed family, or a listed one."""
        if not self.is_event_type(event_type):
            return False
        known = self.known.get(event_type.partition(".")[0])
        return known is None or event_type in known

    def valid_pattern(self, pattern: str) -> bool:
        """`*`, `family.*`, an alias, an exact type this table accepts, or (in a relayed
        family) `family.name.*`, every type under a prefix."""
        if pattern == "*" or pattern in ALIASES:
            return True
        family, dot, rest = pattern.partition(".")
        if not dot or family not in self.families:
            return False
        if rest == "*":
            return True
        if pattern.endswith(".*") and family not in self.known:
            return self.is_event_type(pattern[:-2])
        return self.is_known(pattern)

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
    families=frozenset({"flight", "tmi", "system", *RELAYED_FAMILIES}),
    known={"flight": FLIGHT_TYPES, "tmi": TMI_TYPES, "system": SYSTEM_TYPES},
)

# What a recording or events file may hold, read by a tool that does not know its hub's table.
READ_ANY_FAMILY = attrs.evolve(DEFAULT_CHANNELS, any_family=True)
