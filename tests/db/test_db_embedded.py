"""The embedded PostgreSQL, and a pool surviving a restart of its server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bounded.db import DatabasePool
from bounded.db.embedded import (
    EmbeddedPostgres,
    EmbeddedPostgresUnavailable,
    start_embedded_postgres,
)


@pytest.fixture
async def private_server() -> AsyncIterator[EmbeddedPostgres]:
    """A server of this test's own, which it may stop and start (never the shared one)."""
    server = EmbeddedPostgres()
    try:
        await asyncio.to_thread(server.start)
    except EmbeddedPostgresUnavailable as exc:
        await asyncio.to_thread(server.close)
        pytest.skip(f"cannot run a private PostgreSQL here: {exc}")
    try:
        yield server
    finally:
        await asyncio.to_thread(server.close)


async def test_pool_recovers_after_the_server_restarts(private_server: EmbeddedPostgres) -> None:
    async with DatabasePool(
        private_server.dsn, name="restart", min_size=3, max_size=5, acquire_timeout=5.0
    ) as pool:
        assert pool.ssl is False  # unix socket
        assert await pool.fetchval("select 1") == 1
        pid_before = await pool.fetchval("select pg_backend_pid()")

        # 1. restart with the pool idle: the very next operations succeed
        await asyncio.to_thread(private_server.stop)
        assert not private_server.is_running()
        await asyncio.to_thread(private_server.start)
        values = await asyncio.gather(*(pool.fetchval("select $1::int", i) for i in range(20)))
        assert values == list(range(20))
        assert await pool.fetchval("select pg_backend_pid()") != pid_before

        # 2. operations while the server is down fail fast and cleanly...
        await asyncio.to_thread(private_server.stop)
        loop = asyncio.get_running_loop()
        for _ in range(3):
            started = loop.time()
            with pytest.raises((OSError, asyncpg.PostgresError, asyncpg.InterfaceError)):
                await pool.fetchval("select 1")
            assert loop.time() - started < 5.0
        assert pool.stats().in_use == 0
        # ...and after the server is back the same pool works, with no restart of ours
        await asyncio.to_thread(private_server.start)
        assert await pool.fetchval("select 2") == 2
        async with pool.connection() as con:
            assert await con.fetchval("select 3") == 3
        assert pool.stats().in_use == 0


def test_embedded_server_lifecycle() -> None:
    with EmbeddedPostgres() as server:
        dsn = server.dsn
        assert server.is_running()
        assert "host=" in dsn  # unix socket only: no network listener
        assert "EmbeddedPostgres" in repr(server)

        async def query() -> int:
            con = await asyncpg.connect(dsn)
            try:
                value: int = await con.fetchval("select 40 + 2")
            finally:
                await con.close()
            return value

        assert asyncio.run(query()) == 42
        data_dir = server.data_dir
    assert not server.is_running()
    assert not data_dir.exists()  # a temporary directory is deleted on close


def test_dsn_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not been started"):
        _ = EmbeddedPostgres().dsn


def test_start_embedded_postgres_returns_a_working_dsn() -> None:
    dsn = start_embedded_postgres()
    assert isinstance(dsn, str)

    async def query() -> int:
        async with DatabasePool(dsn, name="embedded", min_size=1, max_size=2) as pool:
            value: int = await pool.fetchval("select 7")
        return value

    assert asyncio.run(query()) == 7


def test_a_killed_owner_leaves_no_server_behind() -> None:
    """The watchdog stops the server and deletes its directory when its process dies."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from bounded.db.embedded import EmbeddedPostgres\n"
            "pg = EmbeddedPostgres()\n"
            "pg.start()\n"
            "print(pg.data_dir, flush=True)\n"
            "time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        data_dir = Path(child.stdout.readline().strip())
        assert (data_dir / "postmaster.pid").exists()
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (data_dir.parent.exists() or _alive(pid)):
        time.sleep(0.2)
    assert not _alive(pid)
    assert not data_dir.parent.exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
