"""A VATSIM traffic simulator: v3 data-feed snapshots of realistic, messy traffic, and the
true flight events behind them.

Pure and deterministic: no clock, no I/O beyond the packaged data tables. `Simulator.step()`
returns the snapshots a feed would deliver for the next refresh; `take_truth()` the lifecycle
events that really happened meanwhile, each at the moment it happened. The hub reads the
snapshots through the same parser and detector as the live feed (hub/sources/feed.py);
`swimctl sim` writes them to files.
"""

from .simulator import TRUTH_TYPES, SimConfig, SimSnapshot, Simulator, vatsim_ts

__all__ = ["TRUTH_TYPES", "SimConfig", "SimSnapshot", "Simulator", "vatsim_ts"]
