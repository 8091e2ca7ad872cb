"""`swimctl serve` as a real process: first log line, signals, bad flags, events file."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

SWIMCTL = [sys.executable, "-m", "swimctl"]
URL_LINE = re.compile(r"listening on (ws://\S+)")


def make_key(db: str, tier: str = "developer") -> str:
    out = subprocess.run([*SWIMCTL, "keys", "create", "--tier", tier, "--owner", "t", "--json",
                          "--db", db], capture_output=True, text=True, check=True)
    return orjson.loads(out.stdout)["api_key"]


@contextmanager
def serve(db: str, *args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {**os.environ, "SWIM_DB": db}
    proc = subprocess.Popen([*SWIMCTL, "serve", "--port", "0", *args], env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 15
        url = None
        first = proc.stderr.readline()
        match = URL_LINE.search(first)
        while match is None and time.monotonic() < deadline and first:
            first = proc.stderr.readline()
            match = URL_LINE.search(first)
        assert match, f"no listening line, got {first!r}"
        url = match.group(1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


async def test_sigterm_closes_every_client_with_1001_and_exits_0(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/keys.db"
    key = make_key(db)
    with serve(db) as (proc, url):
        assert url.startswith("ws://127.0.0.1:") and url.endswith("/api/swim/v1/ws")
        codes: list[int] = []

        async def client(ready: trio.Event) -> None:
            async with open_websocket_url(url, extra_headers=[(b"X-SWIM-API-Key",
                                                               key.encode())]) as ws:
                await ws.get_message()
                ready.set()
                try:
                    while True:
                        await ws.get_message()
                except ConnectionClosed as exc:
                    codes.append(exc.reason.code)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                readies = [trio.Event() for _ in range(3)]
                for ready in readies:
                    nursery.start_soon(client, ready)
                for ready in readies:
                    await ready.wait()
                started = time.monotonic()
                proc.send_signal(signal.SIGTERM)
        code = await trio.to_thread.run_sync(proc.wait, 5)
        elapsed = time.monotonic() - started
    assert codes == [1001, 1001, 1001]
    assert code == 0 and elapsed < 4.0  # three clients: one wave; slack for a busy machine


def test_sigint_with_no_clients_exits_0(tmp_path: Path) -> None:
    with serve(f"sqlite:///{tmp_path}/keys.db") as (proc, _):
        proc.send_signal(signal.SIGINT)
        assert proc.wait(5) == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--log-level", "loud"], "--log-level"),
        (["--tier-limit", "gold=3"], "--tier-limit"),
        (["--tls-cert", "x.pem"], "--tls-key"),
        (["--port", "notaport"], "--port"),
    ],
)
def test_bad_flags_get_a_clear_error_not_a_traceback(args: list[str], needle: str) -> None:
    out = subprocess.run([*SWIMCTL, "serve", *args], capture_output=True, text=True, timeout=20)
    assert out.returncode != 0
    assert needle in out.stderr and "Traceback" not in out.stderr


def test_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        out = subprocess.run([*SWIMCTL, "serve", "--port", str(port), "--db",
                              f"sqlite:///{tmp_path}/k.db"], capture_output=True, text=True,
                             timeout=20)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"cannot serve on 127.0.0.1:{port}" in out.stderr


def test_running_out_of_descriptors_pauses_accept_without_tracebacks(tmp_path: Path) -> None:
    """Issue 19, item 12: the soft open-files limit is raised to the hard one at start; past
    it, accept waits instead of logging a traceback per attempt (490 of them in 6 s before),
    and the hub serves again as soon as descriptors are free."""
    import resource

    db = f"sqlite:///{tmp_path}/keys.db"
    key = make_key(db)
    log_path = tmp_path / "hub.log"

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, 96))

    with log_path.open("w") as log_file:
        # No per-address cap on pending handshakes: every hog comes from 127.0.0.1, and the
        # cap would close them before the descriptors run out.
        proc = subprocess.Popen([*SWIMCTL, "serve", "--port", "0",
                                 "--handshakes-per-address", "0"],
                                env={**os.environ, "SWIM_DB": db}, stderr=log_file,
                                stdout=subprocess.DEVNULL, preexec_fn=low_limit)
    hogs: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 15
        while not (match := URL_LINE.search(log_path.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        url = match.group(1)
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        assert re.search(r"Max open files\s+96\s+96", limits), limits
        port = int(url.split(":")[2].split("/")[0])
        for _ in range(120):  # idle TCP connections: each accepted one holds a descriptor
            hogs.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        deadline = time.monotonic() + 10
        while "cannot accept connections" not in log_path.read_text():
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        time.sleep(1.5)  # some dozens of failed accepts
        for hog in hogs:
            hog.close()
        hogs.clear()

        async def valid_client() -> str:
            with trio.fail_after(10):
                async with open_websocket_url(
                    url, extra_headers=[(b"X-SWIM-API-Key", key.encode())]
                ) as ws:
                    return orjson.loads(await ws.get_message())["type"]

        assert trio.run(valid_client) == "connected"
        assert proc.poll() is None
    finally:
        for hog in hogs:
            hog.close()
        proc.kill()
        proc.wait(5)
    text = log_path.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert text.count("cannot accept connections") == 1
    assert "working again" in text


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        # Out of range: once 99999 listened on 34463 and 70000 on 4464 (the port mod 65536),
        # and -1 got a getaddrinfo message.
        (["--port", "99999"], "less than or equal to 65535"),
        (["--port", "70000"], "less than or equal to 65535"),
        (["--port", "-1"], "greater than or equal to 0"),
        (["--metrics-port", "65536"], "less than or equal to 65535"),
    ],
)
def test_port_out_of_range_is_refused(args: list[str], needle: str) -> None:
    out = subprocess.run([*SWIMCTL, "serve", *args], capture_output=True, text=True, timeout=20)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and needle in out.stderr, out.stderr
    assert "listening" not in out.stderr


def test_sources_and_files_are_checked_before_listening(tmp_path: Path) -> None:
    """Each mistake is one line naming the option and the file, said before the hub listens
    (a feed typo once came after "listening on", as "TLS: feed source not found")."""
    db = ["--db", f"sqlite:///{tmp_path}/k.db", "--port", "0"]
    (tmp_path / "notes.txt").write_text("not a certificate\n")
    cases = [
        (["--feed", "vatsm"], "--feed 'vatsm': not 'vatsim', 'sim', an http(s) URL, or an "
         "existing snapshot file or directory (did you mean vatsim?)"),
        (["--tls-cert", "nope.pem", "--tls-key", "nope.key"], "--tls-cert nope.pem: no such file"),
        (["--tls-cert", str(tmp_path / "notes.txt"), "--tls-key", "nope.key"],
         f"--tls-cert {tmp_path / 'notes.txt'}: no PEM certificate in it"),
        (["--events-file", str(tmp_path / "missing" / "e.jsonl")],
         f"--events-file {tmp_path / 'missing' / 'e.jsonl'}: no such directory"),
        (["--record", str(tmp_path / "notes.txt")],
         f"--record {tmp_path / 'notes.txt'}: exists and is not a directory"),
        (["--db", "keys.db"], "--db: database URL must be sqlite:///PATH or odbc:"),
        (["--demo", "--db", f"sqlite:///{tmp_path}/other.db"],
         "--db cannot be used with --demo"),
    ]
    for args, expected in cases:
        out = subprocess.run([*SWIMCTL, "serve", *db, *args], capture_output=True, text=True,
                             timeout=20, cwd=tmp_path)
        assert out.returncode == 1, (args, out.stderr)
        assert out.stderr.count("\n") == 1, (args, out.stderr)
        assert out.stderr.startswith(f"swimctl: error: {expected}"), (args, out.stderr)
        assert "listening" not in out.stderr and "TLS:" not in out.stderr


def test_a_key_that_does_not_match_the_certificate_is_named(tmp_path: Path) -> None:
    import trustme

    ca = trustme.CA()
    cert, other = ca.issue_cert("127.0.0.1"), ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    other.private_key_pem.write_to_path(str(tmp_path / "other.key"))
    out = subprocess.run([*SWIMCTL, "serve", "--port", "0", "--db",
                          f"sqlite:///{tmp_path}/k.db", "--tls-cert", "cert.pem", "--tls-key",
                          "other.key"], capture_output=True, text=True, timeout=20,
                         cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr == ("swimctl: error: --tls-key other.key does not belong to the "
                          "certificate in --tls-cert cert.pem\n")
