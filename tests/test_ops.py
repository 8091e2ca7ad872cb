"""Operating the hub: metrics and health over HTTP, TLS, logs, the demo as a real process."""

from __future__ import annotations

import logging
import os
import re
import shlex
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
import trio
import trustme
from trio_websocket import ConnectionTimeout, open_websocket_url

from swimctl.core.model import parse_ts, utc_now
from tests.conftest import StartHub, recv, recv_until, request

SWIMCTL = [sys.executable, "-m", "swimctl"]


async def http_get(url: str) -> httpx.Response:
    def get() -> httpx.Response:
        return httpx.get(url, timeout=5)

    return await trio.to_thread.run_sync(get)


async def test_metrics_and_healthz(start_hub: StartHub) -> None:
    hub = await start_hub(options={"metrics_port": 0})
    base = hub.handle.extras["metrics_url"]
    async with hub.connect("partner") as ws:
        await request(ws, {"action": "subscribe", "channels": ["flight.*"]})
        await hub.hub.publish("flight.departed", {"callsign": "A", "dep": "KJFK", "arr": "KBOS"})
        await recv(ws)
        metrics = await http_get(f"{base}/metrics")
    assert metrics.status_code == 200
    text = metrics.text
    assert 'swim_connections{tier="partner"} 1.0' in text
    assert 'swim_events_total{type="flight.departed"} 1.0' in text
    assert re.search(r"^swim_deliveries_total 1\.0$", text, re.M)
    assert re.search(r"^swim_sent_bytes_total [1-9]", text, re.M)
    assert "swim_fanout_seconds_bucket" in text and "swim_keystore_up 1.0" in text
    health = await http_get(f"{base}/healthz")
    assert health.status_code == 200
    assert (await http_get(f"{base}/nope")).status_code == 404
    hub.hub.shutting_down = True
    assert (await http_get(f"{base}/healthz")).status_code == 503


async def test_tls_wss_with_a_verified_certificate(start_hub: StartHub, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    hub = await start_hub(tls_cert=str(cert_file), tls_key=str(key_file))
    assert hub.url.startswith("wss://127.0.0.1:")
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    key = hub.keys["developer"]
    async with open_websocket_url(hub.url, ssl_context=client_ctx,
                                  extra_headers=[(b"X-SWIM-API-Key", key.encode())]) as ws:
        assert (await recv(ws))["type"] == "connected"
        await request(ws, {"action": "subscribe", "channels": ["ctp.*"]})
        for i in range(200):  # the per-connection (encrypting) path keeps order too
            await hub.hub.publish("ctp.n", {"i": i})
        got = [(await recv(ws))["data"]["i"] for _ in range(200)]
        assert got == list(range(200))
    # a client that does not trust the CA is refused by its own verification
    # (trio-websocket's client reports its own failed verification as a timeout)
    with pytest.raises((ssl.SSLError, OSError, trio.BrokenResourceError, ConnectionTimeout)):
        async with open_websocket_url(hub.url, ssl_context=ssl.create_default_context(),
                                      extra_headers=[(b"X-SWIM-API-Key", key.encode())],
                                      connect_timeout=3):
            pass


async def test_logs_never_hold_a_key(start_hub: StartHub, caplog: pytest.LogCaptureFixture
                                     ) -> None:
    caplog.set_level(logging.DEBUG)
    hub = await start_hub()
    bad = "swim_dev_" + "ab" * 32
    async with hub.connect("developer"):
        pass
    async with hub.connect(key=bad, expect_connected=False) as ws:
        await recv(ws)
    async with hub.connect(url=f"{hub.url}?api_key={bad}", headers=[],
                           expect_connected=False) as ws:
        await recv(ws)
    # the hub's own records (the test's client library logs its URLs at debug level)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("swimctl"))
    assert "connected client_" in text and "refused" in text
    for key in [*hub.keys.values(), bad]:
        body = key.split("_")[-1]
        assert body[:8] not in text and key not in text


def test_json_log_format_and_demo_delivers_a_movement(tmp_path: Path) -> None:
    """The demo as a real process: simulated traffic shows a KJFK departure or arrival within
    a minute (about every 20 s at the demo's settings), stamped as happening now."""
    env = {**os.environ, "HOME": str(tmp_path)}
    proc = subprocess.Popen([*SWIMCTL, "serve", "--demo", "--port", "0", "--log-format",
                             "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        first_log = orjson.loads(proc.stderr.readline())
        assert first_log["level"] == "info" and "listening on ws://" in first_log["msg"]
        lines = [proc.stdout.readline() for _ in range(8)]
        key = re.search(r"demo API key: (\S+)", "".join(lines))
        cmd = re.search(r"(swimctl tail --url (\S+) --key \S+ --airport KJFK)", "".join(lines))
        assert key and cmd, lines
        assert "simulated VATSIM traffic" in "".join(lines)
        url = cmd.group(2)
        # A system key too, and a `tmi issue` command that works exactly as printed.
        assert re.search(r"system key, for tmi issue and replay --to: swim_sys_\w+",
                         "".join(lines)), lines
        [issue] = [line.strip() for line in lines if " tmi issue --type" in line]
        issued = subprocess.run(shlex.split(issue), capture_output=True, text=True, timeout=60,
                                env=env)
        assert issued.returncode == 0, issued.stderr
        assert issued.stdout.startswith("GDP-KBOS-"), issued.stdout
        movements = ("flight.departed", "flight.arrived")

        async def watch() -> dict:
            async with open_websocket_url(url, extra_headers=[
                    (b"X-SWIM-API-Key", key.group(1).encode())]) as ws:
                await recv(ws)
                await ws.send_message(orjson.dumps({
                    "action": "subscribe", "channels": [*movements, "tmi.*"],
                    "filters": {"airports": ["KJFK"]}, "snapshot": True}).decode())
                active = await recv_until(ws, lambda m: m["type"] == "tmi.active")
                assert active["data"]["programs"][0]["airport"] == "KJFK"
                return await recv_until(ws, lambda m: m["type"] in movements, timeout=60)

        started = time.monotonic()
        moved = trio.run(watch)
        assert "KJFK" in (moved["data"]["dep"], moved["data"]["arr"])
        # simulated from now on: stamped with the (estimated) moment of lift-off/touchdown
        happened = parse_ts(moved["timestamp"])
        assert abs((utc_now() - happened).total_seconds()) < 60
        assert moved["timestamp"] in (moved["data"].get("off_utc"), moved["data"].get("in_utc"))
        assert time.monotonic() - started < 60
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
