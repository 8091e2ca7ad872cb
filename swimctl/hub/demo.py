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
from swimctl.core.tmi import prepare_publish
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
    system_key: str = ""  # for the tools that publish: tmi issue, replay --to


def prepare_demo() -> DemoSetup:
    workdir = tempfile.TemporaryDirectory(prefix="swimctl-demo-")
    db_url = f"sqlite:///{Path(workdir.name) / 'keys.db'}"
    store = KeyStore(db_url)
    api_key, _ = store.create("developer", "demo", description="swimctl serve --demo")
    system_key, _ = store.create("system", "demo", description="swimctl serve --demo: publisher")
    return DemoSetup(workdir=workdir, db_url=db_url, api_key=api_key, system_key=system_key)


async def issue_sample_ground_stop(hub: Hub, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    program_id = hub.tmi.next_id("GS", "KJFK", now.date())
    data = prepare_publish(hub.tmi, "tmi.issued", {
        "program_id": program_id, "program_type": "GS", "airport": "KJFK",
        "start_time": format_ts(now), "end_time": format_ts(now + dt.timedelta(hours=2)),
        "reason": "DEMO: thunderstorms over the field (sample ground stop)",
        "status": "ACTIVE", "scope": ["ZNY", "ZDC", "ZBW"],
    })
    await hub.publish("tmi.issued", data)
    return program_id


def banner(url: str, api_key: str, *, system_key: str = "", program: str = "swimctl",
           pilots: int = DEMO_SIM_PILOTS, speed: float = DEMO_SIM_SPEED) -> str:
    """What the demo prints once it listens; `program` is how the user ran swimctl (a venv's
    bin/swimctl when it is not on PATH), so the commands shown work as pasted."""
    text = (
        f"\nswimctl demo hub is running: simulated VATSIM traffic ({pilots:,} pilots, "
        f"{speed:g}x speed); Ctrl-C stops it.\n"
        f"  demo API key: {api_key}\n"
        "  watch KJFK in another terminal:\n"
        f"    {program} tail --url {url} --key {api_key} --airport KJFK\n"
    )
    if system_key:
        text += (
            f"  system key, for tmi issue and replay --to: {system_key}\n"
            "  e.g. a ground delay program at KBOS:\n"
            f"    {program} tmi issue --type GDP --airport KBOS --rate 30 --until +2h "
            f"--url {url} --key {system_key}\n"
        )
    return text
