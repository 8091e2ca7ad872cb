"""A key-store outage on a real database: new connections are refused (fail closed), open ones
stay, and the hub recovers by itself when the database returns.

PostgreSQL (psqlODBC) is reached through a TCP proxy on 127.0.0.1 that the test stops and
starts, which is what an outage looks like from the hub: refused and reset connections.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed

from tests.conftest import StartHub, recv, request

pytestmark = pytest.mark.services

PG = os.environ.get(
    "SWIM_TEST_PG_ODBC",
    "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=5432;DATABASE=test;UID=postgres;",
)


class Proxy:
    """Forwards 127.0.0.1:port to PostgreSQL. `stop` cuts every connection and drops new ones
    at once; `start` forwards again. The listener stays bound throughout, so the database
    comes back on the same address (no race for the port with other processes)."""

    def __init__(self) -> None:
        self.port = 0
        self.up = True
        self._links: set[trio.CancelScope] = set()

    async def _pipe(self, src: trio.abc.Stream, dst: trio.abc.Stream) -> None:
        try:
            while data := await src.receive_some(65536):
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            if not self.up:
                return
            with trio.CancelScope() as link:
                self._links.add(link)
                try:
                    upstream = await trio.open_tcp_stream("127.0.0.1", 5432)
                except OSError:
                    return
                try:
                    async with upstream, trio.open_nursery() as nursery:
                        nursery.start_soon(self._pipe, client, upstream)
                        nursery.start_soon(self._pipe, upstream, client)
                finally:
                    self._links.discard(link)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    def stop(self) -> None:
        self.up = False
        for link in self._links:
            link.cancel()

    def start(self) -> None:
        self.up = True


def _needs_postgres() -> None:
    try:
        import pyodbc

        pyodbc.connect(PG, timeout=3).close()
    except Exception as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and PostgreSQL over ODBC is unavailable: {exc}")
        pytest.skip(f"PostgreSQL over ODBC unavailable: {exc}")


async def test_outage_refuses_new_keeps_open_and_recovers(
    start_hub: StartHub, nursery: trio.Nursery
) -> None:
    _needs_postgres()
    proxy = Proxy()
    await nursery.start(proxy.run)
    table = f"swim_outage_{uuid.uuid4().hex[:8]}"
    db_url = f"odbc:{PG.replace('PORT=5432', f'PORT={proxy.port}')}"
    from swimctl.keys.store import KeyStore

    setup = KeyStore(db_url, table=table)
    await trio.to_thread.run_sync(setup.init_db)
    try:
        hub = await start_hub(db_url=db_url, key_table=table, key_cache_ttl=0.2,
                              key_negative_ttl=0.2, key_revalidate_interval=0.3)
        async with hub.connect("developer") as open_before:
            proxy.stop()
            await trio.sleep(0.5)  # past the cache: the next lookups must reach the database
            async with hub.connect("developer", expect_connected=False) as refused:
                error = await recv(refused, timeout=15)
                assert error["code"] == "AUTH_FAILED"
                assert error["message"] == "key store unavailable"
                with pytest.raises(ConnectionClosed) as info:
                    await recv(refused)
                assert info.value.reason.code == 4001
            await trio.sleep(1.0)  # several revalidation rounds fail meanwhile
            assert (await request(open_before, {"action": "ping"}))["type"] == "pong"
            proxy.start()  # the database returns, on the same address
            with trio.fail_after(10):
                while True:
                    async with hub.connect("developer", expect_connected=False) as ws:
                        first = await recv(ws)
                        if first["type"] == "connected":
                            break
                    await trio.sleep(0.2)
            assert (await request(open_before, {"action": "ping"}))["type"] == "pong"
    finally:
        def drop() -> None:
            import pyodbc

            with pyodbc.connect(PG, autocommit=True) as conn:
                conn.execute(f"DROP TABLE IF EXISTS {table}")

        await trio.to_thread.run_sync(drop)
