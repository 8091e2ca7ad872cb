"""Shared fixtures: a real hub on 127.0.0.1 with a real SQLite key store, and real clients."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import orjson
import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from swimctl.hub.config import HubConfig
from swimctl.hub.service import ServeOptions, ServiceHandle, run_service
from swimctl.keys import TIERS, KeyStore

IN_CI = bool(os.environ.get("CI"))
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "vatsim"
# Three snapshots of one evening (2023-08-07/08), the traffic the old demo looped.
RECORDED_EVENING = ("2023-08-07T232929Z", "2023-08-07T232944Z", "2023-08-08T000359Z")


def recorded_feed(directory: Path) -> str:
    """A feed directory holding the three recorded snapshots of one evening."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in RECORDED_EVENING:
        shutil.copy(FIXTURES / f"{name}.vatsim-data.json.gz", directory)
    return str(directory)


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    """Raw frames carry a random mask: named by position, every worker of a parallel run
    collects the same test ids."""
    return "raw" if isinstance(val, bytes | bytearray) else None


@pytest.fixture(autouse=True)
def _own_state_dir(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Every `swimctl serve` a test starts keeps its stream in a directory of its own, not the
    user data directory that every hub on this machine would share (and lock)."""
    monkeypatch.setenv("SWIM_STATE_DIR", str(tmp_path_factory.mktemp("state")))


@attrs.define
class Harness:
    handle: ServiceHandle
    keys: dict[str, str]
    key_ids: dict[str, int]
    store: KeyStore
    db_url: str

    @property
    def url(self) -> str:
        return self.handle.url

    @property
    def key(self) -> str:
        """The developer-tier key: what a client test connects with unless it says so."""
        return self.keys["developer"]

    @property
    def key_id(self) -> int:
        return self.key_ids["developer"]

    @property
    def port(self) -> int:
        return int(self.handle.url.rsplit(":", 1)[1].split("/", 1)[0])

    @property
    def hub(self):  # type: ignore[no-untyped-def]
        return self.handle.hub

    @asynccontextmanager
    async def connect(
        self, tier: str = "developer", *, key: str | None = None, url: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None, expect_connected: bool = True,
    ) -> AsyncIterator[WebSocketConnection]:
        api_key = self.keys[tier] if key is None else key
        extra = headers if headers is not None else [(b"X-SWIM-API-Key", api_key.encode())]
        async with open_websocket_url(url or self.url, extra_headers=extra) as ws:
            if expect_connected:
                hello = await recv(ws)
                assert hello["type"] == "connected", hello
            yield ws


async def recv(ws: WebSocketConnection, timeout: float = 5.0) -> dict[str, Any]:
    with trio.fail_after(timeout):
        return orjson.loads(await ws.get_message())


async def recv_until(
    ws: WebSocketConnection, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0
) -> dict[str, Any]:
    with trio.fail_after(timeout):
        while True:
            msg = orjson.loads(await ws.get_message())
            if pred(msg):
                return msg


async def request(ws: WebSocketConnection, body: dict[str, Any], timeout: float = 5.0) -> dict:
    """Send one action and return the next reply (replies' types have no dot; events' do)."""
    await ws.send_message(orjson.dumps(body).decode())
    return await recv_until(ws, lambda m: "." not in m["type"], timeout)


async def no_message(ws: WebSocketConnection, wait: float = 0.3) -> None:
    with trio.move_on_after(wait):
        msg = await ws.get_message()
        raise AssertionError(f"expected silence, got {msg!r}")


StartHub = Callable[..., Awaitable[Harness]]


async def launch_hub(nursery: trio.Nursery, tmp_path: Any, options: dict[str, Any] | None = None,
                     **overrides: Any) -> Harness:
    """A real hub in-process on 127.0.0.1 (port 0 unless given), with one key per tier in
    `tmp_path`/keys.db (keys made there earlier stay valid); keyword arguments override
    HubConfig fields, `options` ServeOptions ones."""
    db_url = overrides.pop("db_url", f"sqlite:///{tmp_path}/keys.db")
    store = KeyStore(db_url, table=overrides.get("key_table", "swim_api_keys"))
    keys: dict[str, str] = {}
    ids: dict[str, int] = {}

    def create_keys() -> None:  # in a thread: the database may sit behind our own loop
        for tier in TIERS:
            key, record = store.create(tier, f"test {tier}")
            keys[tier], ids[tier] = key, record.id

    await trio.to_thread.run_sync(create_keys)
    config = HubConfig(**{"port": 0, "db_url": db_url, **overrides})
    opts = ServeOptions(config=config, load_geography=False, **(options or {}))
    handle = await nursery.start(run_service, opts)
    return Harness(handle=handle, keys=keys, key_ids=ids, store=store, db_url=db_url)


@asynccontextmanager
async def running_hub(tmp_path: Any, **overrides: Any) -> AsyncIterator[Harness]:
    """A real hub for the duration of the block, shut down (close 1001) at its end. Client
    tests want a quick pulse: the heartbeat is 1 s unless given."""
    overrides.setdefault("heartbeat_interval", 1.0)
    async with trio.open_nursery() as nursery:
        harness = await launch_hub(nursery, tmp_path, **overrides)
        try:
            yield harness
        finally:
            await harness.handle.shutdown()


@pytest.fixture
async def start_hub(nursery: trio.Nursery, tmp_path: Any) -> StartHub:
    """Start a hub in-process; keyword arguments override HubConfig fields."""

    async def start(options: dict[str, Any] | None = None, **overrides: Any) -> Harness:
        return await launch_hub(nursery, tmp_path, options, **overrides)

    return start


@pytest.fixture
async def hub(start_hub: StartHub) -> Harness:
    return await start_hub()
