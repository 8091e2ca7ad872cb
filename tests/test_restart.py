"""Issue 19, item 5: `kill -9` of a real `swimctl serve` and a restart lose and repeat nothing.

An `--events-file` is fed at a steady rate while a `swimctl.client` follows the hub with
resume; the hub is killed with SIGKILL halfway, restarted after a pause on the same port and
`--state-dir`, and the client must end with every event exactly once, in `seq` order, having
resumed with `recovered: true` into the same epoch.

The suite runs it scaled down (600 events at 200/s, restart after 1 s). The issue's own
numbers (5,000 events at 100/s, kill at about 2,500, restart after 3 s: about a minute) run
with SWIM_RESTART_FULL=1.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import trio

from swimctl import client as swim
from tests.test_serve_process import make_key

FULL = bool(os.environ.get("SWIM_RESTART_FULL"))
COUNT, RATE, DOWN = (5000, 100.0, 3.0) if FULL else (600, 200.0, 1.0)
SWIMCTL = [sys.executable, "-m", "swimctl"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_listening(log_path: Path, times: int, proc: trio.Process) -> None:
    with trio.fail_after(20):
        while log_path.read_text().count("listening on") < times:
            assert proc.poll() is None, log_path.read_text()
            await trio.sleep(0.05)


async def test_kill_9_and_restart_lose_and_repeat_nothing(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/keys.db"
    key = make_key(db)
    events_file = tmp_path / "events.jsonl"
    events_file.touch()
    port = free_port()
    args = ["--port", str(port), "--events-file", str(events_file), "--state-dir",
            str(tmp_path / "state"), "--heartbeat", "1"]
    env = {**os.environ, "SWIM_DB": db}
    log_path = tmp_path / "hub.log"
    url = f"ws://127.0.0.1:{port}/api/swim/v1/ws"

    async def open_hub(times: int) -> trio.Process:
        with log_path.open("a") as log_file:
            proc = await trio.lowlevel.open_process([*SWIMCTL, "serve", *args], env=env,
                                                    stderr=log_file,
                                                    stdout=subprocess.DEVNULL)
        await wait_listening(log_path, times, proc)
        return proc

    async def feed() -> None:
        """COUNT lines at RATE per second, each with its event_id, whatever the hub does."""
        start = trio.current_time()
        with events_file.open("ab") as out:
            for i in range(COUNT):
                await trio.sleep_until(start + i / RATE)
                line = {"type": "ctp.slot", "timestamp": "2026-11-26T18:00:00Z",
                        "event_id": f"slot-{i}", "data": {"i": i}}
                out.write(orjson.dumps(line) + b"\n")
                out.flush()

    hub = await open_hub(1)
    events: list[swim.Event] = []
    resumed: list[swim.Resumed] = []
    epochs: set[str] = set()
    try:
        with trio.fail_after(COUNT / RATE + DOWN + 40):
            async with trio.open_nursery() as nursery, \
                    swim.connect(url, key, backoff_initial=0.2, backoff_max=0.5) as client:
                await client.subscribe(["ctp.*"])
                nursery.start_soon(feed)
                killed = False
                async for item in client:
                    if isinstance(item, swim.Resumed):
                        resumed.append(item)
                    if not isinstance(item, swim.Event) or item.is_heartbeat:
                        continue
                    events.append(item)
                    epochs.add(client.epoch or "")
                    if not killed and len(events) >= COUNT // 2:
                        killed = True
                        hub.send_signal(signal.SIGKILL)
                        await hub.wait()
                        await trio.sleep(DOWN)
                        hub = await open_hub(2)
                    if len(events) >= COUNT and killed:
                        break
                nursery.cancel_scope.cancel()
    finally:
        if hub.poll() is None:
            hub.send_signal(signal.SIGTERM)
            with trio.move_on_after(5):
                await hub.wait()
            if hub.poll() is None:
                hub.kill()
    text = log_path.read_text()
    numbers = [e.data["i"] for e in events]
    lost = sorted(set(range(COUNT)) - set(numbers))
    repeated = len(numbers) - len(set(numbers))
    print(f"{COUNT} events at {RATE:.0f}/s, kill -9 at {COUNT // 2}, down {DOWN} s: "
          f"{len(set(numbers))} received, {len(lost)} lost, {repeated} repeated")
    assert not lost and not repeated, (lost[:10], repeated)
    assert [e.seq for e in events] == list(range(1, COUNT + 1))
    assert numbers == list(range(COUNT))
    assert resumed and all(r.recovered for r in resumed), resumed
    assert len(epochs) == 1
    assert re.search(r"epoch \w+ continues at seq \d+", text), text[-2000:]
