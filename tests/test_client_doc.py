"""docs/client.md quotes what tail prints; every quote is checked against real output.

The page once quoted `Connection refused` while tail printed "all attempts to connect ...
failed". Here each quoted message (an inline code span that starts like one of tail's lines)
is turned into a pattern (`...` matches anything, a number matches any number) and must match
a line that real runs produce: tail as a subprocess against a closed port, a real hub with a
bad key, `wss://` to a plain hub, an unknown airport; the live view's header for a real
disconnect; and a real gap from a hub restarted under a connected client.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import trio
from rich.console import Console

from swimctl import client as swim
from swimctl.cli.tail import _resumed_line, state_detail
from swimctl.cli.tui import TailState, render
from tests.conftest import launch_hub, running_hub

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "client.md"
MESSAGE_STARTS = ("swimctl: ", "DISCONNECTED", "warning: GAP")


def quoted_messages() -> list[str]:
    prose = re.sub(r"```.*?```", "", DOC.read_text(), flags=re.S)  # code blocks aside
    spans = (" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose))
    return [span for span in spans if span.startswith(MESSAGE_STARTS)]


def pattern(quote: str) -> re.Pattern[str]:
    parts = [re.sub(r"\d+", r"\\d+", re.escape(part)) for part in re.split(r"\.\.\.|…", quote)]
    return re.compile(".*".join(parts))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env_with(key: str) -> dict[str, str]:
    env = dict(os.environ, SWIM_API_KEY=key, PYTHONPATH=str(ROOT))
    env.pop("SWIM_URL", None)
    return env


async def first_stderr_lines(args: list[str], key: str, count: int) -> list[str]:
    """The first `count` lines tail writes to stderr (it may go on retrying: then stopped)."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "swimctl", "tail", *args], env=env_with(key),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=str(ROOT))
    buf = b""
    try:
        with trio.move_on_after(20):
            while buf.count(b"\n") < count:
                chunk = await proc.stderr.receive_some(4096)
                if not chunk:
                    break
                buf += chunk
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    return buf.decode().splitlines()[:count]


async def live_view_header_after_a_refusal(url: str) -> str:
    """The live view's text once the real client reports its first failed connect."""
    async with swim.connect(url, "swim_dev_x", backoff_initial=0.2) as client:
        with trio.fail_after(20):
            async for item in client:
                if isinstance(item, swim.StateChange) and item.state is swim.State.DISCONNECTED:
                    state = TailState(url=url, state=item.state.value,
                                      state_detail=state_detail(item))
                    break
    console = Console(record=True, width=200, color_system=None)
    console.print(render(state, now=0.0, height=20))
    return console.export_text()


async def gap_line_after_a_restart(tmp_path: Path) -> str:
    """A hub restarted on the same port under a subscribed client: a new epoch, a real gap."""
    async with trio.open_nursery() as nursery:
        first = await launch_hub(nursery, tmp_path, heartbeat_interval=1.0)
        async with swim.connect(first.url, first.key, backoff_initial=0.1,
                                backoff_max=0.5) as client:
            await client.subscribe(["flight.*"])
            await first.handle.shutdown(0.1)
            second = await launch_hub(nursery, tmp_path, port=first.port,
                                      heartbeat_interval=1.0)
            line = None
            with trio.fail_after(20):
                async for item in client:
                    if isinstance(item, swim.Resumed) and not item.recovered:
                        line = _resumed_line(item)
                        break
        await second.handle.shutdown(0.1)
    assert line is not None
    return line


async def test_every_quoted_message_matches_real_output(tmp_path: Path) -> None:
    quotes = quoted_messages()
    assert len(quotes) >= 5, quotes
    url = f"ws://127.0.0.1:{closed_port()}/api/swim/v1/ws"
    real: list[str] = []
    real += await first_stderr_lines(["--json", "--airport", "JFK", "--url", url],
                                     "swim_dev_x", 2)
    real += (await live_view_header_after_a_refusal(url)).splitlines()
    async with running_hub(tmp_path / "a") as h:
        real += await first_stderr_lines(["--json", "--url", h.url], "swim_dev_" + "0" * 64, 1)
        real += await first_stderr_lines(
            ["--json", "--url", h.url.replace("ws://", "wss://")], h.key, 1)
    real.append(await gap_line_after_a_restart(tmp_path / "b"))
    unmatched = [q for q in quotes if not any(pattern(q).search(line) for line in real)]
    assert not unmatched, ("docs/client.md quotes messages tail does not print:\n"
                           + "\n".join(unmatched) + "\n\nreal output:\n" + "\n".join(real))
