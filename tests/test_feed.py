"""The feed source against a fake hub that records calls, with snapshots from a directory, a
file, and a real HTTP server on 127.0.0.1 that misbehaves in every way the live feed can."""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import logging
import shutil
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trio

from swimctl.core.model import format_ts, parse_ts
from swimctl.hub.sources.feed import run_feed, safe_url
from swimctl.hub.stats import FeedCycle

FIXTURES = Path(__file__).parent / "fixtures" / "vatsim"
SNAP_A = "2023-08-07T232929Z.vatsim-data.json.gz"
SNAP_B = "2023-08-07T232944Z.vatsim-data.json.gz"
# pilots that connect between A and B (the sign that B went through the detector)
NEW_IN_B = {"ACA390", "N3TW", "RYR165K", "AA815"}


class FakeHub:
    """Records the hub API calls the feed makes, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.cycles: list[FeedCycle] = []  # what each cycle reported it brought

    async def publish(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        timestamp: str | None = None,
        event_id: str | None = None,
        fence: tuple[str, str] | None = None,
    ) -> tuple[int, bool]:
        assert isinstance(timestamp, str) and timestamp.endswith("Z")
        self.calls.append(("publish", (event_type, data, timestamp)))
        return len(self.calls), False

    async def publish_positions(self, positions: list[dict[str, Any]], *,
                                timestamp: str | None = None, event_id: str | None = None,
                                extra: dict[str, Any] | None = None,
                                fence: tuple[str, str] | None = None) -> tuple[int, bool]:
        assert isinstance(timestamp, str) and timestamp.endswith("Z")
        self.calls.append(("publish_positions", positions))
        return len(self.calls), False

    def feed_updated(self, update_time: dt.datetime) -> None:
        assert update_time.tzinfo is not None and update_time.utcoffset() == dt.timedelta(0)
        self.calls.append(("feed_updated", update_time))

    def feed_stopped(self) -> None:
        self.calls.append(("feed_stopped", None))

    def feed_cycle(self, cycle: FeedCycle) -> None:
        self.cycles.append(cycle)

    def events(self, etype: str | None = None) -> list[tuple[str, dict[str, Any], str]]:
        out = [c[1] for c in self.calls if c[0] == "publish"]
        return [e for e in out if etype is None or e[0] == etype]

    def updates(self) -> list[dt.datetime]:
        return [c[1] for c in self.calls if c[0] == "feed_updated"]


def raw(name: str) -> bytes:
    return gzip.decompress((FIXTURES / name).read_bytes())


async def wait_for(cond: Callable[[], bool], timeout: float = 15.0) -> None:
    with trio.fail_after(timeout):
        while not cond():
            await trio.sleep(0.01)


def check_cycle_order(hub: FakeHub, cancelled: bool = False) -> None:
    """Each cycle: its lifecycle events (never a positions batch of its own), then one batch
    of every current position, then feed_updated. A feed cancelled while it runs may stop
    inside its last cycle (it yields every PUBLISH_BATCH events)."""
    state = "idle"
    for kind, args in hub.calls:
        if kind == "publish":
            assert state in ("idle", "events") and args[0] != "flight.positions"
            state = "events"
        elif kind == "publish_positions":
            assert state in ("idle", "events")
            state = "positions"
        else:
            assert state == "positions"
            state = "idle"
    assert state == "idle" or cancelled


async def test_directory_replay(tmp_path: Path) -> None:
    # copy in reverse-name order with misleading names: order must come from the timestamps
    shutil.copy(FIXTURES / SNAP_B, tmp_path / "a.json.gz")
    (tmp_path / "b.json").write_bytes(raw(SNAP_A))
    (tmp_path / "notes.txt").write_text("not a snapshot")
    hub = FakeHub()
    await run_feed(hub, str(tmp_path), interval=0)
    check_cycle_order(hub)
    assert [u.second for u in hub.updates()] == [29, 44]
    created = [d["callsign"] for _, d, _ in hub.events("flight.created")]
    assert len(created) == 754 + len(NEW_IN_B) and set(created[754:]) == NEW_IN_B
    positions = [c[1] for c in hub.calls if c[0] == "publish_positions"]
    assert [len(p) for p in positions] == [754, 758]
    assert not hub.events("flight.deleted")
    # Each cycle says what it brought: the second one's events are all published after the
    # first cycle's count.
    assert len(hub.cycles) == 2 and all(c.pilots > 700 for c in hub.cycles)
    assert sum(sum(c.events.values()) for c in hub.cycles) == len(hub.events()) + len(positions)
    assert hub.cycles[-1].events.get("flight.created") == len(NEW_IN_B)


async def test_recorded_snapshots_played_as_live(tmp_path: Path) -> None:
    """The demo's mode: same detection, but times are the wall clock of playing."""
    shutil.copy(FIXTURES / SNAP_A, tmp_path)
    shutil.copy(FIXTURES / SNAP_B, tmp_path)
    hub = FakeHub()
    before = dt.datetime.now(dt.UTC)
    await run_feed(hub, str(tmp_path), interval=0, as_live=True)
    after = dt.datetime.now(dt.UTC)
    assert all(before <= u <= after for u in hub.updates())
    created = hub.events("flight.created")
    assert {d["callsign"] for _, d, _ in created[754:]} == NEW_IN_B
    for _, _, stamp in created:
        assert before - dt.timedelta(seconds=1) <= parse_ts(stamp) <= after


async def test_directory_loop_replays_with_later_times(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / SNAP_A, tmp_path)
    shutil.copy(FIXTURES / SNAP_B, tmp_path)
    hub = FakeHub()
    async with trio.open_nursery() as nursery:
        await nursery.start(run_feed, hub, str(tmp_path), 0, True)
        await wait_for(lambda: len(hub.updates()) >= 5)
        nursery.cancel_scope.cancel()
    check_cycle_order(hub, cancelled=True)
    times = hub.updates()
    assert times == sorted(times) and len(set(times)) == len(times)
    assert times[2] - times[1] == dt.timedelta(seconds=15)  # the gap between passes
    # every pass connects the same pilots again, and the wrap deletes what the last pass had
    connects = [d["callsign"] for _, d, _ in hub.events("flight.created")]
    assert Counter(connects)["ACA390"] >= 2
    assert len(hub.events("flight.deleted")) >= 757
    # events carry when they happened (a connect at its logon time), never before the first
    # snapshot of the pass that holds them, nor after the last snapshot played
    first, last = format_ts(times[0]), format_ts(times[-1])
    assert all(first <= ts <= last for _, _, ts in hub.events())


async def test_single_file(tmp_path: Path) -> None:
    hub = FakeHub()
    await run_feed(hub, str(FIXTURES / "2023-03-12T172418Z.vatsim-data.json.gz"), interval=0)
    assert len(hub.events("flight.created")) == 1706
    assert len(hub.updates()) == 1


async def test_missing_source() -> None:
    with pytest.raises(FileNotFoundError):
        await run_feed(FakeHub(), "/nonexistent/feed/dir", interval=0)


# -- HTTP -----------------------------------------------------------------------------------


class Script:
    """What the test server answers, one entry per request; the last entry repeats."""

    def __init__(self, responses: list[tuple[str, bytes]]) -> None:
        self.responses = responses
        self.served: list[str] = []
        self.lock = threading.Lock()

    def next(self) -> tuple[str, bytes]:
        with self.lock:
            kind, body = self.responses[min(len(self.served), len(self.responses) - 1)]
            self.served.append(kind)
            return kind, body


@pytest.fixture
def http_server() -> Iterator[Callable[[Script], str]]:
    servers: list[ThreadingHTTPServer] = []

    def start(script: Script) -> str:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                kind, body = script.next()
                if kind == "slow":
                    time.sleep(1.5)
                status = 500 if kind == "500" else 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if kind == "truncated":
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    return
                with contextlib.suppress(OSError):  # the client gave up (timeout test)
                    self.wfile.write(body)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v3/vatsim-data.json?token=s3cret"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


async def test_http_faults_are_logged_and_retried(http_server, caplog) -> None:
    a, b = raw(SNAP_A), raw(SNAP_B)
    general = b'{"general":{"update_timestamp":"2023-08-07T23:29:59.0Z"}'
    faults = [
        ("invalid", b"<html>502 Bad Gateway</html>"),
        ("truncated", b),
        ("no-pilots", general + b"}"),
        ("no-general", b'{"pilots": []}'),
        ("empty", b""),
        ("500", b"oops"),
        ("slow", b),
        ("no-pilots", general + b"}"),
    ]
    script = Script([("ok", a), *faults, ("ok", b), ("same", b)])
    url = http_server(script)
    hub = FakeHub()
    caplog.set_level(logging.INFO, logger="swimctl.feed")
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: run_feed(
                hub, url, 0.01, task_status=task_status, fetch_timeout=0.5, retry_base=0.01
            )
        )
        await wait_for(lambda: len(script.served) >= len(faults) + 4)
        nursery.cancel_scope.cancel()

    assert script.served[: len(faults) + 2] == ["ok", *(k for k, _ in faults), "ok"]
    # two successful cycles; the repeat of B (same update_timestamp) was skipped
    assert [u.second for u in hub.updates()] == [29, 44]
    check_cycle_order(hub)
    # failures never count as snapshots: nobody is deleted (JBU1421 missed only B)
    assert not hub.events("flight.deleted")
    assert {d["callsign"] for _, d, _ in hub.events("flight.created")[754:]} == NEW_IN_B
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(faults)
    text = "\n".join(warnings)
    for needle in ("invalid JSON", "RemoteProtocolError", "no `pilots`", "no `general`",
                   "HTTP 500", "timed out"):  # fmt: skip
        assert needle in text
    assert "attempt 8" in text  # consecutive failures back off
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "s3cret" not in logged and "token" not in logged
    assert "age" in logged  # the feed age is reported each cycle


async def test_http_unreachable_host(caplog) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    hub = FakeHub()
    caplog.set_level(logging.WARNING, logger="swimctl.feed")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: run_feed(hub, f"http://127.0.0.1:{port}/", 0.01, fetch_timeout=0.5,
                             retry_base=0.01)
        )
        await wait_for(lambda: len(caplog.records) >= 3)
        nursery.cancel_scope.cancel()
    assert hub.calls == []
    assert all("ConnectError" in r.getMessage() for r in caplog.records)


def test_safe_url() -> None:
    assert safe_url("https://user:pw@example.org:8443/feed.json?key=abc#x") == (
        "https://example.org:8443/feed.json"
    )
