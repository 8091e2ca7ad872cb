"""swimctl: a real-time flight-event hub (SWIM) for VATSIM, built on trio."""

__version__ = "0.1.0"
PROTOCOL_VERSION = "1.0.0"
