"""Connecting wrong: every command that talks to a hub says so in one line and does not retry
what cannot heal.

A `wss://` URL against a plain `ws://` hub is a configuration mistake: `tail`, `record`,
`tmi list` and `replay --to` each print one line that names it (and the `ws://` URL to try),
exit 1 at once, and print no traceback. A hub that is not running is "Connection refused", the
words docs/client.md quotes.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import trio

from tests.conftest import running_hub

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "events" / "stream.jsonl"


def swimctl(*args: str) -> list[str]:
    return [sys.executable, "-m", "swimctl", *args]


def env_with(key: str) -> dict[str, str]:
    env = dict(os.environ, SWIM_API_KEY=key, PYTHONPATH=str(ROOT))
    env.pop("SWIM_URL", None)
    return env


async def run(cmd: list[str], key: str, timeout: float = 30) -> tuple[int, str, str]:
    with trio.fail_after(timeout):
        done = await trio.run_process(cmd, env=env_with(key), capture_stdout=True,
                                      capture_stderr=True, check=False, cwd=str(ROOT))
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_wss_against_a_plain_hub_is_one_line_and_no_retry(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as h:
        wss = h.url.replace("ws://", "wss://")
        commands = {
            "tail": swimctl("tail", "--json", "--url", wss),
            "record": swimctl("record", str(tmp_path / "out.jsonl"), "--url", wss),
            "tmi list": swimctl("tmi", "list", "--url", wss),
            "replay": swimctl("replay", str(FIXTURE), "--to", wss, "--speed", "0"),
        }
        results = {}
        async with trio.open_nursery() as nursery:
            async def one(name: str, cmd: list[str]) -> None:
                results[name] = await run(cmd, h.key)

            for name, cmd in commands.items():
                nursery.start_soon(one, name, cmd)
    for name, (code, out, err) in results.items():
        lines = err.strip().splitlines()
        assert code == 1, (name, err)
        assert len(lines) == 1, (name, err)
        assert "is the hub plain ws://?" in lines[0] and h.url in lines[0], (name, err)
        assert "Traceback" not in err and "retrying" not in err, (name, err)
        assert h.key not in err + out
    assert not (tmp_path / "out.jsonl").exists(), "a failed record left an empty file"


async def test_a_hub_that_is_not_running_is_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"ws://127.0.0.1:{port}/api/swim/v1/ws"
    code, _, err = await run(swimctl("tmi", "list", "--url", url), "swim_dev_x")
    assert code == 1
    assert err.strip() == (f"swimctl: error: cannot connect to {url}: Connection refused "
                           "(is the hub running?)")
