"""The example programs in examples/ run against a real hub and print the right things.

The hub runs in-process and follows an events file (`serve --events-file`), into which the
test copies the recorded events of tests/fixtures/events/ once every example is subscribed:
`preload.jsonl` (a ground stop at KJFK, there before anyone connects, so it reaches the TMI
monitor through the snapshot) and `stream.jsonl` (creations, departures, an arrival, a GDP
issued and modified, the ground stop released, a deletion, two position batches). Each example
runs as a subprocess, exactly as a user would run it, bounded by --max-events / --duration.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.conftest import IN_CI, StartHub
from tests.helpers_client import subscribed_clients, wait_until

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "events"


def env_with_key(key: str) -> dict[str, str]:
    """The key travels in the environment, as the examples recommend (never in argv)."""
    env = dict(os.environ, SWIM_API_KEY=key, PYTHONPATH=str(ROOT))
    env.pop("SWIM_URL", None)
    return env


async def run_example(name: str, url: str, key: str, *args: str, timeout: float = 40) -> str:
    cmd = [sys.executable, str(EXAMPLES / name), "--url", url, *args]
    with trio.fail_after(timeout):
        done = await trio.run_process(cmd, env=env_with_key(key), capture_stdout=True,
                                      capture_stderr=True, check=False)
    out = done.stdout.decode()
    assert done.returncode == 0, f"{name} failed:\n{out}\n{done.stderr.decode()}"
    assert key not in out and key not in done.stderr.decode(), f"{name} printed the key"
    return out


def append(path: Path, source: Path) -> None:
    with path.open("ab") as f:
        f.write(source.read_bytes())


async def test_examples_against_recorded_events(start_hub: StartHub, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"")
    h = await start_hub({"events_file": str(events)}, heartbeat_interval=0.3)
    append(events, FIXTURES / "preload.jsonl")
    await wait_until(lambda: h.hub.tmi.get("GS-KJFK-20261126-1") is not None)
    key = h.keys["developer"]
    outputs: dict[str, str] = {}

    async def run(label: str, name: str, *args: str) -> None:
        outputs[label] = await run_example(name, h.url, key, *args, "--duration", "30")

    async with trio.open_nursery() as nursery:
        # --max-events: the number of stream events each should get from stream.jsonl.
        nursery.start_soon(run, "basic", "basic.py", "--max-events", "9")
        nursery.start_soon(run, "airports", "airport_monitor.py", "--max-events", "5")
        nursery.start_soon(run, "prefix", "position_tracker.py", "--callsign-prefix", "DAL,AAL",
                           "--max-events", "3")
        nursery.start_soon(run, "bbox", "position_tracker.py", "--bbox", "45,35,-70,-80",
                           "--max-events", "3")
        nursery.start_soon(run, "tmi", "tmi_monitor.py", "--max-events", "3")
        await wait_until(lambda: len(subscribed_clients(h.hub)) == 5, timeout=20)
        append(events, FIXTURES / "stream.jsonl")

    basic = outputs["basic"]
    for line in ("flight.created   AAL100", "flight.departed  DAL200", "flight.arrived   BAW1",
                 "flight.deleted   AAL100", "flight.departed  UAL5"):
        assert line in basic, basic
    assert "done: 9 events" in basic

    airports = outputs["airports"]
    assert ("final: KBOS dep 1 arr 0  KJFK dep 2 arr 1  KSFO dep 1 arr 0"
            in airports), airports

    prefix = outputs["prefix"]
    assert "tracking 2: AAL100@40.64,-73.78/0ft, DAL200@40.65,-73.79/0ft" in prefix, prefix
    assert "removed AAL100 (disconnected)" in prefix
    assert "final: tracking 1: DAL200@40.90,-73.50/8000ft" in prefix

    bbox = outputs["bbox"]  # 35-45N, 80-70W: around New York; BAW1 comes in, AAL100 goes
    assert "tracking 2: AAL100@40.64,-73.78/0ft, DAL200@40.65,-73.79/0ft" in bbox, bbox
    assert "removed AAL100 (disconnected)" in bbox
    assert "final: tracking 2: BAW1@40.63,-73.77/0ft, DAL200@40.90,-73.50/8000ft" in bbox

    tmi = outputs["tmi"]
    snapshot, _, rest = tmi.partition("tmi.issued")
    assert "active programs: 1\n  GS-KJFK-20261126-1 GS KJFK" in snapshot, tmi
    assert "tmi.released: GS-KJFK-20261126-1 (RELEASED)" in rest
    final = tmi.split("final: ", 1)[1]
    assert final.startswith("active programs: 1\n  GDP-KBOS-20261126-1 GDP KBOS"), tmi
    assert "rate 20/h avg 65 max 95 min" in final


async def test_resume_demo_misses_nothing(start_hub: StartHub, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"")
    h = await start_hub({"events_file": str(events)}, heartbeat_interval=0.5)
    lines = (FIXTURES / "stream.jsonl").read_bytes().splitlines(keepends=True)
    result: dict[str, str] = {}

    async def demo() -> None:
        result["out"] = await run_example(
            "resume_demo.py", h.url, h.keys["developer"], "--drop-after", "10", "--gap", "1.5",
            "--duration", "3")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(demo)
        await wait_until(lambda: len(subscribed_clients(h.hub)) == 2, timeout=20)
        # A steady stream for the whole run, through the drop and the gap: ~20 events/s.
        while "out" not in result:
            with events.open("ab") as f:
                f.writelines(lines)
            await trio.sleep(0.7)
    out = result["out"]
    assert "recovered=True" in out, out
    assert "missed 0 events" in out, out
    witnessed = int(out.split("witness saw ", 1)[1].split()[0])
    assert witnessed > 30, out  # the window really spanned the drop


NODE = shutil.which("node")


def node_has_websocket() -> bool:
    if NODE is None:
        return False
    done = subprocess.run([NODE, "--experimental-websocket", "-e",
                           "process.exit(typeof WebSocket === 'function' ? 0 : 1)"],
                          capture_output=True, check=False)
    return done.returncode == 0


@pytest.mark.skipif(not node_has_websocket() and not IN_CI,
                    reason="needs Node.js with a global WebSocket (node >= 20, "
                           "--experimental-websocket)")
async def test_js_client_receives_events_and_resumes(start_hub: StartHub, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"")
    h = await start_hub({"events_file": str(events)}, heartbeat_interval=0.5)
    key = h.keys["developer"]
    assert NODE is not None
    cmd = [NODE, "--experimental-websocket", str(EXAMPLES / "js" / "swim-client.js"),
           "--url", h.url, "--channels", "flight.*,tmi.*", "--max-events", "14",
           "--drop-after", "5", "--duration", "20"]
    result: dict[str, subprocess.CompletedProcess[bytes]] = {}

    async def node() -> None:
        with trio.fail_after(40):
            result["done"] = await trio.run_process(
                cmd, env=env_with_key(key), capture_stdout=True, capture_stderr=True,
                check=False)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(node)
        await wait_until(lambda: len(subscribed_clients(h.hub)) == 1, timeout=20)
        lines = (FIXTURES / "stream.jsonl").read_bytes().splitlines(keepends=True)
        for line in lines:  # one by one, so the drop falls mid-stream
            with events.open("ab") as f:
                f.write(line)
            await trio.sleep(0.15)
    done = result["done"]
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, out + err
    assert key not in out + err
    assert "flight.departed DAL200" in out, out
    assert "resumed: recovered=true" in out, out
    # Every event of the file exactly once, in order, across the drop.
    seqs = [int(line.split()[0]) for line in out.splitlines() if line[:1].isdigit()]
    assert seqs == sorted(set(seqs)) and len(seqs) == 14, out


async def test_an_example_piped_into_head_ends_quietly(start_hub: StartHub) -> None:
    """`examples/basic.py | head -3`: the reader goes away after three lines; the example
    stops without a BrokenPipeError traceback, as `head`'s writers do."""
    h = await start_hub(heartbeat_interval=0.3)
    cmd = [sys.executable, str(EXAMPLES / "basic.py"), "--url", h.url, "--duration", "30"]
    proc = await trio.lowlevel.open_process(cmd, env=env_with_key(h.keys["developer"]),
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        await wait_until(lambda: len(subscribed_clients(h.hub)) == 1, timeout=20)
        received = b""
        with trio.fail_after(20):
            while received.count(b"\n") < 3:
                await h.hub.publish("flight.departed", {"callsign": "AAL1", "dep": "KJFK",
                                                  "arr": "KBOS"})
                received += await proc.stdout.receive_some(4096)
        await proc.stdout.aclose()  # what `head -3` does once it has its lines
        for n in range(50):  # keep events coming until the example notices
            await h.hub.publish("flight.departed", {"callsign": f"AAL{n}", "dep": "KJFK",
                                              "arr": "KBOS"})
            await trio.sleep(0.05)
            if proc.poll() is not None:
                break
        with trio.fail_after(20):
            code = await proc.wait()
        err = (await proc.stderr.receive_some(65536)).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_every_example_runs_through_the_quiet_runner() -> None:
    for path in EXAMPLES.glob("*.py"):
        if path.name == "common.py":
            continue
        text = path.read_text()
        assert "trio.run(main)" not in text and "run(main)" in text, path.name
