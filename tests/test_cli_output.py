"""What the commands print into a pipe, and what they say about an airport the hub will never
see: real subprocesses against a real hub."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import trio

from swimctl.cli.airports import load_codes, suggestions, unknown_airport
from swimctl.cli.common import plain_table
from tests.conftest import running_hub
from tests.helpers_client import subscribed_clients, wait_until

ROOT = Path(__file__).resolve().parent.parent
LONG_REASON = "thunderstorms over the field and a runway closure that lasts well into the night"


def swimctl(*args: str) -> list[str]:
    return [sys.executable, "-m", "swimctl", *args]


def env_with(key: str) -> dict[str, str]:
    env = dict(os.environ, SWIM_API_KEY=key, PYTHONPATH=str(ROOT), COLUMNS="80")
    env.pop("SWIM_URL", None)
    return env


async def run(cmd: list[str], key: str, timeout: float = 30) -> subprocess.CompletedProcess:
    with trio.fail_after(timeout):
        return await trio.run_process(cmd, env=env_with(key), capture_stdout=True,
                                      capture_stderr=True, check=False, cwd=str(ROOT))


def test_plain_table_keeps_every_value_whole() -> None:
    text = plain_table(["id", "reason"], [["GS-KJFK-20261126-1", LONG_REASON], ["x", ""]])
    assert text.splitlines() == [
        "id                  reason",
        f"GS-KJFK-20261126-1  {LONG_REASON}",
        "x",
    ]


def test_airport_suggestions_come_from_the_table() -> None:
    codes = load_codes()
    assert "KJFK" in codes and "EGLL" in codes
    assert suggestions("JFK", codes)[0] == "KJFK"
    assert suggestions("KJKF", codes) == ["KJFK"]
    assert unknown_airport("KJFK", codes) is None
    assert unknown_airport("ZZZZ", codes) == "--airport ZZZZ: not in the airport table"


async def test_tmi_list_into_a_pipe_prints_whole_values(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as h:
        system = h.keys["system"]
        issued = await run(swimctl("tmi", "issue", "--type", "GS", "--airport", "KJFK",
                                   "--until", "+2h", "--reason", LONG_REASON, "--url", h.url),
                           system)
        assert issued.returncode == 0, issued.stderr
        program_id = issued.stdout.decode().strip()
        listed = await run(swimctl("tmi", "list", "--url", h.url), h.key)
    out = listed.stdout.decode()
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in out.splitlines() if line.startswith("GS-")]
    assert row.split()[0] == program_id  # not cut to "GS-KJFK…" at 80 columns
    assert row.endswith(LONG_REASON) and "…" not in out and "│" not in out


async def test_unknown_airports_are_named_with_a_suggestion(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as h:
        system = h.keys["system"]
        refused = await run(swimctl("tmi", "issue", "--type", "GS", "--airport", "ZZZZ",
                                    "--until", "+1h", "--url", h.url), system)
        assert refused.returncode == 1
        assert refused.stderr.decode().strip() == (
            "swimctl: error: --airport ZZZZ: not in the airport table (give --unlisted-airport "
            "to issue it all the same)")
        assert h.hub.tmi.active() == []
        anyway = await run(swimctl("tmi", "issue", "--type", "GS", "--airport", "ZZZZ",
                                   "--until", "+1h", "--unlisted-airport", "--url", h.url),
                           system)
        assert anyway.returncode == 0 and anyway.stdout.startswith(b"GS-ZZZZ-"), anyway.stderr

        # tail --airport JFK: says so at once, then follows (the filter is the user's call).
        proc = await trio.lowlevel.open_process(
            swimctl("tail", "--json", "--airport", "JFK", "--url", h.url), env=env_with(h.key),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(ROOT))
        try:
            await wait_until(lambda: subscribed_clients(h.hub), timeout=15)
            first = b""
            with trio.fail_after(10):
                while b"\n" not in first:
                    first += await proc.stderr.receive_some(4096)
        finally:
            proc.kill()
            await proc.wait()
    assert first.decode().splitlines()[0] == (
        "swimctl: warning: --airport JFK: not in the airport table; did you mean KJFK or RJFK? "
        "(the hub matches exact ICAO codes: this filter matches nothing)")


def test_tmi_list_without_a_key_says_any_tier_will_do() -> None:
    env = env_with("")
    env.pop("SWIM_API_KEY")
    out = subprocess.run(swimctl("tmi", "list", "--url", "ws://127.0.0.1:1/api/swim/v1/ws"),
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 1
    assert out.stderr == ("swimctl: error: --key (or SWIM_API_KEY) is required: an API key of "
                          "any tier\n")
