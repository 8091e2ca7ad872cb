"""Hostile handshakes and a key store that changes under the hub (issue 19, items 7, 9, 10):
real hubs on 127.0.0.1, real SQLite files."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed

from swimctl.core.refusals import FailureThrottle, RefusalSummary, address_key
from swimctl.keys import KeyStore
from tests.conftest import Harness, StartHub, recv, request


async def refused(h: Harness, key: str) -> dict:
    """Handshake with `key`; the AUTH_FAILED error the hub answers with (then 4001)."""
    async with h.connect(key=key, expect_connected=False) as ws:
        error = await recv(ws)
        assert error["type"] == "error" and error["code"] == "AUTH_FAILED", error
        with pytest.raises(ConnectionClosed) as info:
            await recv(ws)
        assert info.value.reason.code == 4001
    return error


async def http_text(url: str) -> tuple[int, str]:
    def get() -> httpx.Response:
        return httpx.get(url, timeout=5)

    response = await trio.to_thread.run_sync(get)
    return response.status_code, response.text


def unknown_key() -> str:
    return "swim_dev_" + secrets.token_hex(32)


# -- item 7: the unauthenticated flood ---------------------------------------------------------


@pytest.mark.parametrize("key", ["swim_dev_not_a_key", "swim_dev_" + "A" * 64,
                                 "swim_xyz_" + "a" * 64, "Bearer-ish junk", "k" * 200,
                                 "swim_dev_" + "a" * 63 + "\u00e9"])
async def test_a_key_without_the_key_format_is_refused_before_any_lookup(
    start_hub: StartHub, key: str
) -> None:
    h = await start_hub()
    await refused(h, key)
    assert h.handle.auth.lookups == 0
    assert h.handle.auth.refusals.totals == {"malformed key": 1}


async def test_legacy_keys_pass_the_format_check_when_enabled(start_hub: StartHub,
                                                              tmp_path: Path) -> None:
    """`--legacy-keys`: migrated plain-text keys of an older deployment keep working."""
    h = await start_hub(legacy_keys=True)
    await refused(h, "swim_par_legacy")  # well formed for a legacy key: looked up, unknown
    assert h.handle.auth.lookups == 1
    await refused(h, "has a space")  # still no spaces or control characters
    assert h.handle.auth.lookups == 1


async def test_failed_authentications_are_throttled_per_address_and_summarised(
    start_hub: StartHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="swimctl")
    h = await start_hub(auth_fail_burst=5, auth_fail_rate=0.01)
    auth = h.handle.auth
    async with h.connect("partner"):  # a valid client, its key now cached
        pass
    lookups = auth.lookups
    messages = [(await refused(h, unknown_key()))["message"] for _ in range(12)]
    # Five lookups spent the address's budget; the other seven cost nothing.
    assert auth.lookups - lookups == 5
    assert messages[:5] == ["invalid API key"] * 5
    assert all(m.startswith("too many failed authentications") for m in messages[5:])
    # A key that has authenticated before is still looked up and let in from the throttled
    # address, even once its cache entry has lapsed; a key new to the hub waits.
    auth._cache.clear()  # as if the positive cache had expired
    async with h.connect("partner") as ws:
        assert (await request(ws, {"action": "ping"}))["type"] == "pong"
    first_use = await refused(h, h.keys["system"])
    assert first_use["message"].startswith("too many failed authentications")
    # One summary line instead of a line per refusal.
    per_refusal = [r for r in caplog.records
                   if r.levelno >= logging.INFO and "refused" in r.getMessage()]
    assert per_refusal == []
    auth.log_refusals(force=True)
    summary = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(summary) == 1
    assert summary[0].startswith("refused 13 connection(s) in the last")
    assert "5 unknown key" in summary[0] and "8 throttled" in summary[0]
    assert "127.0.0.1 ×13" in summary[0]


def test_throttle_refills_and_stays_bounded() -> None:
    now = [0.0]
    throttle = FailureThrottle(rate=1.0, burst=3, max_sources=100, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.allows("a")
        throttle.failed("a")
    assert not throttle.allows("a") and throttle.allows("b")
    assert throttle.retry_after("a") == pytest.approx(1.0)
    now[0] = 1.0
    assert throttle.allows("a")
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle._buckets) <= 101


def test_ipv6_sources_are_counted_per_64() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("192.0.2.7") == "192.0.2.7"


def test_summary_counts_sources_within_a_bound() -> None:
    summary = RefusalSummary()
    for i in range(5000):
        summary.note("malformed key", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    line = summary.flush(10)
    assert line is not None and line.startswith("refused 5000 connection(s) in the last 10 s")
    assert len(line) < 400 and summary.flush(10) is None


# -- item 9: revocation stops new connections within the revalidation interval ----------------


async def test_a_revoked_key_cannot_open_new_connections_after_revalidation(
    start_hub: StartHub,
) -> None:
    """Before the fix the 60 s positive cache admitted new connections for up to a minute
    after revocation, though open ones were cut within the revalidation interval."""
    h = await start_hub(key_revalidate_interval=0.3)
    async with h.connect("developer"):
        pass  # the key is now in the positive cache
    await trio.to_thread.run_sync(h.store.revoke, h.key_ids["developer"])
    await trio.sleep(0.7)  # past one revalidation interval (0.3 s), far below 60 s
    error = await refused(h, h.keys["developer"])
    assert error["message"] == "API key revoked"


# -- item 10: a key database deleted or replaced under a running hub --------------------------


async def test_a_deleted_then_recreated_key_database_is_noticed_and_reopened(
    start_hub: StartHub, tmp_path: Path
) -> None:
    db_path = tmp_path / "keys.db"
    h = await start_hub(options={"metrics_port": 0}, db_url=f"sqlite:///{db_path}")
    base = h.handle.extras["metrics_url"]
    async with h.connect("developer"):
        pass
    assert (await http_text(f"{base}/healthz")) == (200, "ok\n")
    h.store.close()
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{db_path}{suffix}")
        if path.exists():
            path.unlink()
    status, body = await http_text(f"{base}/healthz")
    assert status == 503 and "key store unreachable" in body and "missing" in body
    # No connection is let in meanwhile: not a cached key, and nothing from an empty file.
    await refused(h, unknown_key())
    assert not db_path.exists()  # the hub did not quietly create an empty database
    # The operator restores a key database: keys made in it work without a restart.
    new_store = KeyStore(f"sqlite:///{db_path}")
    new_key, _ = new_store.create("developer", "after")
    new_store.close()
    assert (await http_text(f"{base}/healthz")) == (200, "ok\n")
    async with h.connect(key=new_key) as ws:
        assert (await request(ws, {"action": "ping"}))["type"] == "pong"
    metrics = (await http_text(f"{base}/metrics"))[1]
    assert "swim_keystore_reopens_total 1.0" in metrics


async def test_a_key_database_replaced_by_rename_is_reopened(start_hub: StartHub,
                                                            tmp_path: Path) -> None:
    db_path = tmp_path / "keys.db"
    h = await start_hub(db_url=f"sqlite:///{db_path}")
    async with h.connect("public"):
        pass
    staged = tmp_path / "staged.db"
    store = KeyStore(f"sqlite:///{staged}")
    new_key, _ = store.create("partner", "restored")  # this thread's connection, closed next
    store.close()
    os.replace(staged, db_path)  # e.g. a restore from backup, moved into place
    async with h.connect(key=new_key) as ws:
        assert (await request(ws, {"action": "ping"}))["type"] == "pong"
    error = await refused(h, unknown_key())
    assert error["message"] == "invalid API key"
    assert h.handle.auth.store.reopens == 1
