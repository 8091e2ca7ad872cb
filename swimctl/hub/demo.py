"""`swimctl serve --demo`: a hub that needs no network and no setup.

A throw-away SQLite key store with one developer key, the traffic simulator as the feed
(DEMO_SIM_PILOTS pilots at DEMO_SIM_SPEED times real speed, starting now, so feed age and
event times read as live), and a sample ground stop at KJFK. At these settings
`swimctl tail --airport KJFK` shows a KJFK departure or arrival about every 20 s (a test
holds it under 30 s on average); traffic flows on without a loop, so nothing repeats.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import attrs

from swimctl.core.model import format_ts
from swimctl.hub.engine import Hub
from swimctl.keys.store import KeyStore

DEMO_FEED_INTERVAL = 5.0  # seconds between snapshots: events arrive within seconds
# 4,000 pilots at 3x: 15 s of flight between snapshots, like the live feed, and enough
# traffic that KJFK alone sees a movement every ~20 s.
DEMO_SIM_PILOTS = 4000
DEMO_SIM_SPEED = 3.0


@attrs.define
class DemoSetup:
    workdir: tempfile.TemporaryDirectory[str]
    db_url: str
    api_key: str


def prepare_demo() -> DemoSetup:
    workdir = tempfile.TemporaryDirectory(prefix="swimctl-demo-")
    db_url = f"sqlite:///{Path(workdir.name) / 'keys.db'}"
    api_key, _ = KeyStore(db_url).create("developer", "demo", description="swimctl serve --demo")
    return DemoSetup(workdir=workdir, db_url=db_url, api_key=api_key)


def issue_sample_ground_stop(hub: Hub, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    program_id = hub.tmi.next_id("GS", "KJFK", now.date())
    data = hub.prepare_tmi("tmi.issued", {
        "program_id": program_id, "program_type": "GS", "airport": "KJFK",
        "start_time": format_ts(now), "end_time": format_ts(now + dt.timedelta(hours=2)),
        "reason": "DEMO: thunderstorms over the field (sample ground stop)",
        "status": "ACTIVE", "scope": ["ZNY", "ZDC", "ZBW"],
    })
    hub.publish("tmi.issued", data)
    return program_id


def banner(url: str, api_key: str, pilots: int = DEMO_SIM_PILOTS,
           speed: float = DEMO_SIM_SPEED) -> str:
    return (
        f"\nswimctl demo hub is running: simulated VATSIM traffic ({pilots:,} pilots, "
        f"{speed:g}x speed); Ctrl-C stops it.\n"
        f"  demo API key: {api_key}\n"
        "  watch KJFK in another terminal:\n"
        f"    swimctl tail --url {url} --key {api_key} --airport KJFK\n"
    )
