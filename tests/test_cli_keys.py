"""`swimctl keys ...` end to end: every command, every bad input, and no key left in the database.

Most cases go through typer's CliRunner on the real root app; a few run `python -m swimctl` in a
subprocess to prove a real process exits with one line and no traceback.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from swimctl.cli.app import app
from swimctl.cli.common import parse_duration
from swimctl.core.usage import UsageRow
from swimctl.keys.records import TIERS, hash_key, utc_naive
from swimctl.keys.store import DEFAULT_TABLE, KeyStore

REPO = Path(__file__).resolve().parent.parent
KEY_RE = re.compile(r"swim_(pub|dev|par|sys)_[0-9a-f]{64}")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "keys.db"


@pytest.fixture
def db_url(db_path: Path) -> str:
    return f"sqlite:///{db_path}"


@pytest.fixture
def run(db_url: str, monkeypatch: pytest.MonkeyPatch):
    """Invoke `swimctl keys ARGS` with SWIM_DB pointing at this test's database."""
    monkeypatch.setenv("SWIM_DB", db_url)
    monkeypatch.setenv("COLUMNS", "200")  # rich tables wide enough to read in assertions
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, ["keys", *args], catch_exceptions=True)

    return invoke


def ok(result) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert "Traceback" not in result.output
    return result.stdout


def one_line_error(result, needle: str) -> str:
    """Non-zero exit, exactly one line on stderr, nothing resembling a traceback."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("swimctl: error: ")
    assert needle in lines[0], lines[0]
    assert not KEY_RE.search(result.output)
    return lines[0]


def db_cells(db_path: Path) -> list[str]:
    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute(f"SELECT * FROM {DEFAULT_TABLE}").fetchall()
    finally:
        conn.close()
    return [str(cell) for row in rows for cell in row]


def assert_not_in_database(db_path: Path, keys: list[str]) -> None:
    cells = db_cells(db_path)
    raw = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    for key in keys:
        secret = key.split("_", 2)[2]
        assert all(key not in c and secret not in c for c in cells)
        assert key.encode() not in raw and secret.encode() not in raw


# -- durations -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", dt.timedelta(days=90)),
        ("12h", dt.timedelta(hours=12)),
        ("30m", dt.timedelta(minutes=30)),
        ("2w", dt.timedelta(weeks=2)),
        ("45s", dt.timedelta(seconds=45)),
        ("1d12h", dt.timedelta(days=1, hours=12)),
        (" 7D ", dt.timedelta(days=7)),
        # A bare number is seconds, as `sleep` and `timeout` read it.
        ("90", dt.timedelta(seconds=90)),
        ("5", dt.timedelta(seconds=5)),
        ("2.5", dt.timedelta(seconds=2.5)),
    ],
)
def test_parse_duration(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["9x", "", "d", "-5d", "0d", "0", "1.5h", "99999999w", "5 x"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


# -- commands ------------------------------------------------------------------------------------


def test_init_db_twice(run) -> None:
    assert "created" in ok(run("init-db"))
    assert "already exists" in ok(run("init-db"))


def test_create_text_prints_key_once(run, db_path: Path, db_url: str) -> None:
    result = run(
        "create", "--tier", "developer", "--owner", "Alice", "--email", "a@x.org",
        "--description", "testing", "--expires-in", "90d",
    )
    out = ok(result)
    key = out.strip()
    assert KEY_RE.fullmatch(key) and key.startswith("swim_dev_")
    assert key not in result.stderr and "shown once" in result.stderr
    record = KeyStore(db_url).lookup(key)
    assert record is not None and record.owner_name == "Alice" and record.usable()
    assert record.owner_email == "a@x.org" and record.description == "testing"
    expected = utc_naive() + dt.timedelta(days=90)
    assert abs(record.expires_at - expected) < dt.timedelta(seconds=10)
    assert_not_in_database(db_path, [key])


@pytest.mark.parametrize("tier", TIERS)
def test_create_json(run, db_url: str, tier: str) -> None:
    data = json.loads(ok(run("create", "--tier", tier, "--owner", "Bob", "--json")))
    assert data["tier"] == tier and isinstance(data["id"], int)
    assert KEY_RE.fullmatch(data["api_key"])
    assert data["expires_at"] is None and data["status"] == "active"
    assert KeyStore(db_url).lookup(data["api_key"]).id == data["id"]


def test_create_expires_at(run, db_url: str) -> None:
    data = json.loads(
        ok(run("create", "--tier", "public", "--owner", "c", "--expires-at",
               "2099-01-02T03:04:05+02:00", "--json"))
    )
    assert data["expires_at"] == "2099-01-02T01:04:05Z"
    assert KeyStore(db_url).get(data["id"]).expires_at == dt.datetime(2099, 1, 2, 1, 4, 5)


def test_list_show_revoke_rotate(run, db_path: Path, db_url: str) -> None:
    first = json.loads(ok(run("create", "--tier", "partner", "--owner", "Carol", "--json")))
    second = json.loads(ok(run("create", "--tier", "public", "--owner", "Dave", "--json")))

    table = ok(run("list"))
    assert "Carol" in table and "Dave" in table and "partner" in table
    listed = json.loads(ok(run("list", "--json")))
    assert [r["id"] for r in listed] == [first["id"], second["id"]]
    assert all("api_key" not in r for r in listed)

    shown = ok(run("show", str(first["id"])))
    assert "Carol" in shown and "active" in shown
    assert json.loads(ok(run("show", str(first["id"]), "--json")))["owner_name"] == "Carol"

    assert "revoked key" in ok(run("revoke", str(second["id"])))
    assert [r["id"] for r in json.loads(ok(run("list", "--json")))] == [first["id"]]
    everything = json.loads(ok(run("list", "--all", "--json")))
    assert {r["id"]: r["status"] for r in everything} == {
        first["id"]: "active", second["id"]: "revoked",
    }
    assert "revoked" in ok(run("list", "--all"))

    result = run("rotate", str(first["id"]))
    new_key = ok(result).strip()
    assert KEY_RE.fullmatch(new_key) and new_key.startswith("swim_par_")
    assert new_key != first["api_key"]
    store = KeyStore(db_url)
    assert store.lookup(new_key).usable() and store.lookup(new_key).owner_name == "Carol"
    assert not store.lookup(first["api_key"]).usable()

    rotated = json.loads(ok(run("rotate", str(store.lookup(new_key).id), "--json",
                                "--expires-in", "2w")))
    assert KEY_RE.fullmatch(rotated["api_key"]) and rotated["expires_at"] is not None
    forever = json.loads(ok(run("rotate", str(rotated["id"]), "--json", "--no-expiry")))
    assert forever["expires_at"] is None

    assert_not_in_database(
        db_path, [first["api_key"], second["api_key"], new_key, rotated["api_key"],
                  forever["api_key"]],
    )


def test_list_empty(run) -> None:
    ok(run("init-db"))
    assert "no usable keys" in ok(run("list"))
    assert json.loads(ok(run("list", "--all", "--json"))) == []


def test_expired_key_shows_as_expired(run, db_url: str) -> None:
    key, record = KeyStore(db_url).create(
        "developer", "Old", expires_at=utc_naive() - dt.timedelta(hours=1)
    )
    assert not KeyStore(db_url).lookup(key).usable()
    assert json.loads(ok(run("list", "--json"))) == []
    assert json.loads(ok(run("show", str(record.id), "--json")))["status"] == "expired"
    assert "expired" in ok(run("list", "--all"))
    # Rotating it keeps the (past) expiry unless told otherwise: refused with a clear line.
    one_line_error(run("rotate", str(record.id)), "expired")
    fresh = json.loads(ok(run("rotate", str(record.id), "--expires-in", "30d", "--json")))
    assert KeyStore(db_url).lookup(fresh["api_key"]).usable()


def legacy_table(db_path: Path, keys: list[str]) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute(
        f"CREATE TABLE {DEFAULT_TABLE} (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "api_key VARCHAR(40) NOT NULL UNIQUE, tier VARCHAR(16) NOT NULL, "
        "owner_name VARCHAR(100) NOT NULL, owner_email VARCHAR(100), description TEXT, "
        "expires_at DATETIME, created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP, "
        "last_used_at DATETIME, is_active BIT NOT NULL DEFAULT 1)"
    )
    conn.executemany(
        f"INSERT INTO {DEFAULT_TABLE} (api_key, tier, owner_name) VALUES (?, ?, ?)",
        [(key, TIERS[i % 4], f"legacy-{i}") for i, key in enumerate(keys)],
    )
    conn.commit()
    conn.close()


def test_migrate_keeps_every_key_working_and_is_idempotent(
    run, db_path: Path, db_url: str
) -> None:
    plain = ["swim_pub_0123456789abcdef", "swim_dev_fedcba9876543210", "swim_par_legacy", "k4"]
    legacy_table(db_path, plain)
    assert all(KeyStore(db_url).lookup(k) is None for k in plain)  # plain text: not found yet

    out = ok(run("migrate"))
    assert "hashed 4 plain-text keys; 0 already hashed" in out
    assert "added column revoked_at" in out  # the old table did not record revocation times
    assert "created table swim_api_usage (per-key usage history)" in out
    store = KeyStore(db_url)
    for index, key in enumerate(plain):
        record = store.lookup(key)
        assert record is not None and record.owner_name == f"legacy-{index}" and record.usable()
    cells = db_cells(db_path)
    assert all(key not in cell for key in plain for cell in cells)
    assert sorted(c for c in cells if len(c) == 64) == sorted(hash_key(k) for k in plain)

    again = json.loads(ok(run("migrate", "--json")))
    assert again == {
        "created": False, "widened": False, "hashed": 0, "already_hashed": 4, "skipped": 0,
        "added_columns": [], "usage_created": False,
    }
    assert all(KeyStore(db_url).lookup(k) is not None for k in plain)
    # And the CLI keeps working on the migrated table.
    assert "legacy-0" in ok(run("list"))


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["create", "--tier", "gold", "--owner", "x"], "unknown tier"),
        (["create", "--tier", "public", "--owner", "x", "--expires-in", "9x"], "invalid duration"),
        (["create", "--tier", "public", "--owner", "x", "--expires-in", "0d"], "longer than zero"),
        (["create", "--tier", "public", "--owner", "x", "--expires-in", ""], "invalid duration"),
        (["create", "--tier", "public", "--owner", "x", "--expires-at", "tomorrow"], "ISO-8601"),
        (["create", "--tier", "public", "--owner", "x", "--expires-at", "2001-01-01"],
         "not in the future"),
        (["create", "--tier", "public", "--owner", "x", "--expires-in", "1d",
          "--expires-at", "2099-01-01"], "not both"),
        (["create", "--tier", "public", "--owner", "  "], "owner name"),
        (["show", "999"], "no key with id 999"),
        (["show", "abc"], "invalid key id"),
        (["show", "0"], "invalid key id"),
        (["revoke", "999"], "no key with id 999"),
        (["revoke", "x1"], "invalid key id"),
        (["rotate", "999"], "no key with id 999"),
        (["rotate", "1", "--expires-in", "5y"], "invalid duration"),
        (["rotate", "1", "--no-expiry", "--expires-in", "5d"], "cannot be combined"),
    ],
)
def test_bad_input_is_one_line(run, args: list[str], needle: str) -> None:
    ok(run("init-db"))
    one_line_error(run(*args), needle)


def test_rotate_revoked_key_is_refused(run) -> None:
    data = json.loads(ok(run("create", "--tier", "public", "--owner", "x", "--json")))
    ok(run("revoke", str(data["id"])))
    one_line_error(run("rotate", str(data["id"])), "revoked")


@pytest.mark.parametrize(
    ("db", "needle"),
    [
        ("mysql://root@localhost/test", "database URL must be"),
        ("odbc:", "no path or connection string"),
        ("sqlite:///", "no path or connection string"),
        ("odbc:DRIVER={No Such Driver 42};SERVER=127.0.0.1", "key store unavailable"),
    ],
)
@pytest.mark.parametrize(
    "command",
    [
        ["init-db"],
        ["migrate"],
        ["list"],
        ["list", "--all", "--json"],
        ["show", "1"],
        ["revoke", "1"],
        ["rotate", "1"],
        ["create", "--tier", "public", "--owner", "x"],
    ],
)
def test_bad_database_is_one_line(run, db: str, needle: str, command: list[str]) -> None:
    one_line_error(run(*command, "--db", db), needle)


def test_unreachable_sqlite_path(run, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    one_line_error(run("create", "--tier", "public", "--owner", "x", "--db",
                       f"sqlite:///{blocker}/keys.db"), "key store unavailable")


def test_missing_table_is_an_error_not_an_empty_list(run, db_path: Path) -> None:
    sqlite3.connect(db_path).close()  # a database without the key table
    one_line_error(run("list"), "no key table yet")


@pytest.mark.parametrize("command", [["list"], ["list", "--all"], ["show", "1"], ["revoke", "1"],
                                     ["rotate", "1"]])
def test_commands_on_existing_keys_create_nothing(run, tmp_path: Path,
                                                  command: list[str]) -> None:
    """A mistyped --db once left a directory tree and an empty database behind, then said
    "no key table yet"; now it says there is no database there, and makes none."""
    typo = tmp_path / "typo" / "dir" / "keys.db"
    err = one_line_error(run(*command, "--db", f"sqlite:///{typo}"), "no key database at")
    assert str(typo) in err and "--db" in err
    assert not (tmp_path / "typo").exists()


def test_revoking_twice_says_it_was_already_revoked_and_when(run) -> None:
    created = json.loads(ok(run("create", "--tier", "public", "--owner", "Erin", "--json")))
    ident = str(created["id"])
    assert ok(run("revoke", ident)).strip() == f"revoked key {ident}"
    record = json.loads(ok(run("show", ident, "--json")))
    assert record["status"] == "revoked" and record["revoked_at"].endswith("Z")
    when = record["revoked_at"].replace("T", " ")
    assert ok(run("revoke", ident)).strip() == (
        f"key {ident} was already revoked, at {when}; nothing changed")
    assert f"revoked:     {when}" in ok(run("show", ident))


def test_unreachable_postgres_is_one_line(run) -> None:
    pyodbc = pytest.importorskip("pyodbc")
    if "PostgreSQL Unicode" not in pyodbc.drivers():
        if os.environ.get("CI"):
            pytest.fail("CI is set and the psqlODBC driver 'PostgreSQL Unicode' is missing")
        pytest.skip("psqlODBC driver 'PostgreSQL Unicode' not registered")
    db = "odbc:DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=1;DATABASE=test;UID=postgres;"
    line = one_line_error(run("list", "--db", db), "key store unavailable")
    assert "Connection refused" in line or "could not connect" in line.lower() or "08001" in line


# -- a real process ------------------------------------------------------------------------------


def swimctl(*args: str, db_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SWIM_DB": db_url, "PYTHONPATH": str(REPO)}
    env.pop("CI", None)
    return subprocess.run(
        [sys.executable, "-m", "swimctl", "keys", *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=60, check=False,
    )


def test_real_process_roundtrip_and_errors(db_url: str, db_path: Path) -> None:
    created = swimctl("create", "--tier", "system", "--owner", "proc", "--json", db_url=db_url)
    assert created.returncode == 0, created.stderr
    data = json.loads(created.stdout)
    assert KEY_RE.fullmatch(data["api_key"])
    assert data["api_key"] not in created.stderr
    listed = swimctl("list", db_url=db_url)
    assert listed.returncode == 0 and "proc" in listed.stdout
    assert data["api_key"] not in listed.stdout
    assert_not_in_database(db_path, [data["api_key"]])

    for args, url in [
        (("create", "--tier", "nope", "--owner", "x"), db_url),
        (("create", "--tier", "public", "--owner", "x", "--expires-in", "9x"), db_url),
        (("show", "12345"), db_url),
        (("list",), "bogus://"),
        (("list",), "odbc:DRIVER={No Such Driver 42}"),
    ]:
        proc = swimctl(*args, db_url=url)
        assert proc.returncode != 0, args
        assert "Traceback" not in proc.stderr + proc.stdout, args
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("swimctl: error: "), (args, lines)


# -- usage ---------------------------------------------------------------------------------------


def test_usage_json_text_and_pipe(run, db_url: str) -> None:
    """Rows as the hubs wrote them: --json is exact, the text adds up per day and per key."""
    _, alice = KeyStore(db_url).create("partner", "Alice Ops")
    _, bob = KeyStore(db_url).create("public", "Bob")
    today = utc_naive().date()
    old = today - dt.timedelta(days=40)
    KeyStore(db_url).add_usage([
        UsageRow(today, alice.id, connections=3, connection_seconds=7384, events_delivered=1200,
                 bytes_sent=2_500_000, refusals_rate=2),
        UsageRow(today - dt.timedelta(days=2), alice.id, connections=1, connection_seconds=60,
                 events_delivered=300, bytes_sent=10_000),
        UsageRow(today, bob.id, connections=1, events_delivered=5, refusals_cap=4),
        UsageRow(old, bob.id, connections=9),  # older than --days 30
    ])
    rows = json.loads(ok(run("usage", "--json")))
    assert rows == [
        {"day": (today - dt.timedelta(days=2)).isoformat(), "key_id": alice.id,
         "connections": 1, "connection_seconds": 60, "events_delivered": 300,
         "bytes_sent": 10_000, "refusals_auth": 0, "refusals_cap": 0, "refusals_rate": 0,
         "owner": "Alice Ops", "tier": "partner"},
        {"day": today.isoformat(), "key_id": alice.id, "connections": 3,
         "connection_seconds": 7384, "events_delivered": 1200, "bytes_sent": 2_500_000,
         "refusals_auth": 0, "refusals_cap": 0, "refusals_rate": 2, "owner": "Alice Ops",
         "tier": "partner"},
        {"day": today.isoformat(), "key_id": bob.id, "connections": 1,
         "connection_seconds": 0, "events_delivered": 5, "bytes_sent": 0, "refusals_auth": 0,
         "refusals_cap": 4, "refusals_rate": 0, "owner": "Bob", "tier": "public"},
    ]
    longer = json.loads(ok(run("usage", "--json", "--days", "60")))
    assert longer[0]["day"] == old.isoformat() and len(longer) == 4
    assert json.loads(ok(run("usage", "--json", "--key", str(bob.id), "--days", "1"))) == \
        [rows[2]]
    # Into a pipe: whole values; every day since the first with use, the quiet one as zeros.
    text = ok(run("usage"))
    lines = text.splitlines()
    assert lines[0].split() == ["Day", "Connections", "Seconds", "Events", "Bytes", "Refused",
                                "a/c/r"]
    assert lines[1].split() == [(today - dt.timedelta(days=2)).isoformat(), "1", "60", "300",
                                "10000", "0/0/0"]
    assert lines[2].split() == [(today - dt.timedelta(days=1)).isoformat(), "0", "0", "0", "0",
                                "0/0/0"]
    assert lines[3].split() == [today.isoformat(), "4", "7384", "1205", "2500000", "0/4/2"]
    per_key = text.split("\n\n")[1].splitlines()
    assert per_key[1].split() == [str(alice.id), "Alice", "Ops", "partner", "4", "7444", "1500",
                                  "2510000", "0/0/2"]
    assert ok(run("usage", "--key", str(bob.id), "--days", "1")).splitlines()[1].split()[3] \
        == "5"


def test_usage_without_a_table_an_unknown_key_and_no_rows(run, db_path: Path,
                                                          db_url: str) -> None:
    _, record = KeyStore(db_url).create("developer", "x")
    conn = sqlite3.connect(db_path)
    conn.execute("DROP TABLE swim_api_usage")  # a key table made before usage existed
    conn.commit()
    conn.close()
    one_line_error(run("usage"), "no usage table (swim_api_usage) yet: run `swimctl keys "
                                 "migrate`")
    assert "created table swim_api_usage" in ok(run("migrate"))
    assert ok(run("usage")).strip() == (
        f"no usage recorded for all keys since "
        f"{(utc_naive().date() - dt.timedelta(days=29)).isoformat()} (UTC)")
    assert ok(run("usage", "--key", str(record.id))).startswith(
        f"no usage recorded for key {record.id} since")
    one_line_error(run("usage", "--key", "77"), "no key with id 77")
    one_line_error(run("usage", "--key", "x"), "invalid key id")
    assert run("usage", "--days", "0").exit_code != 0


def test_usage_on_a_terminal_draws_bars(db_url: str) -> None:
    """On a terminal (a pty here): sizes and durations for people, and a bar per day."""
    import pty

    _, key = KeyStore(db_url).create("partner", "Alice Ops")
    today = utc_naive().date()
    KeyStore(db_url).add_usage([
        UsageRow(today, key.id, connections=2, connection_seconds=7384,
                 events_delivered=1_234_567, bytes_sent=2_500_000),
        UsageRow(today - dt.timedelta(days=1), key.id, events_delivered=617_283)])
    leader, follower = pty.openpty()
    env = {**os.environ, "SWIM_DB": db_url, "COLUMNS": "80", "LINES": "24",
           "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "swimctl", "keys", "usage"], stdout=follower,
                          stderr=subprocess.PIPE, env=env, timeout=60, check=False)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.returncode == 0, proc.stderr
    screen = re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode()).replace("\r", "")
    lines = screen.splitlines()
    assert all(len(line) <= 80 for line in lines), screen
    [today_line] = [line for line in lines if line.strip().startswith(today.isoformat())]
    [yesterday] = [line for line in lines if line.strip().startswith(
        (today - dt.timedelta(days=1)).isoformat())]
    assert "2h03m" in today_line and "1.2M" in today_line and "2.5 MB" in today_line
    bars = [line.rstrip().split()[-1] for line in (today_line, yesterday)]
    assert set(bars[0]) == {"█"} and len(bars[1]) in (len(bars[0]) // 2, len(bars[0]) // 2 + 1)
    assert "Alice Ops" in screen and "refused: auth / cap / rate" in screen
