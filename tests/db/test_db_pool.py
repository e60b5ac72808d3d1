"""DatabasePool against a real PostgreSQL (DATABASE_URL or the embedded server)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

import bounded
from bounded.db import DatabasePool, PoolStats
from bounded.errors import ConfigError, PoolExhausted

SECRET = "Hunter2-xyzzy"


def _app() -> str:
    return f"bounded-test-{uuid.uuid4().hex[:10]}"


def _with_password(dsn: str, password: str = SECRET) -> str:
    """The DSN with a password added (the test servers use trust auth and ignore it)."""
    scheme, _, tail = dsn.partition("://")
    userinfo, at, rest = tail.rpartition("@")
    if not at:
        return f"{scheme}://postgres:{password}@{tail}"
    user = userinfo.partition(":")[0] or "postgres"
    return f"{scheme}://{user}:{password}@{rest}"


async def _count(admin: asyncpg.Connection, app: str) -> int:
    n: int = await admin.fetchval(
        "select count(*) from pg_stat_activity where application_name = $1", app
    )
    return n


@pytest.fixture
async def admin(postgres_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    con = await asyncpg.connect(postgres_dsn)
    try:
        yield con
    finally:
        await con.close()


# -- construction ----------------------------------------------------------------------


def test_defaults_and_lazy_export(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@127.0.0.1/db")
    pool = bounded.DatabasePool()
    assert isinstance(pool, DatabasePool)
    assert (pool.min_size, pool.max_size) == (5, 20)
    assert pool.acquire_timeout == 10.0
    assert pool.statement_timeout == 10.0
    assert pool.application_name == "bounded:default"
    assert pool.ssl is False
    assert bounded.PoolStats is PoolStats
    assert pool.stats() == PoolStats("default", 0, 0, 0, 20, 0, 0.0)


def test_missing_dsn_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ConfigError, match="DATABASE_URL") as info:
        DatabasePool(name="rag")
    assert info.value.path == "databases.rag.dsn"


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"max_size": 0}, "max_size"),
        ({"min_size": -1}, "min_size"),
        ({"min_size": 21}, "min_size"),
        ({"acquire_timeout": 0}, "acquire_timeout"),
        ({"statement_timeout": -1.0}, "statement_timeout"),
        ({"ssl": "maybe"}, "ssl"),
    ],
)
def test_bad_arguments_name_themselves(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        DatabasePool("postgresql://u@127.0.0.1/db", **kwargs)


async def test_not_open_pool_refuses_work() -> None:
    pool = DatabasePool("postgresql://u@127.0.0.1/db")
    with pytest.raises(RuntimeError, match="not open"):
        await pool.fetchval("select 1")


# -- behaviour against the server ----------------------------------------------------------


async def test_shortcuts_connection_and_settings(
    postgres_dsn: str, admin: asyncpg.Connection
) -> None:
    app = _app()
    async with DatabasePool(
        postgres_dsn, name="basic", min_size=2, max_size=4, application_name=app
    ) as pool:
        assert pool.is_open
        assert await pool.fetchval("select 41 + $1::int", 1) == 42
        assert await pool.fetchval("select 1, 2", column=1) == 2
        row = await pool.fetchrow("select 1 as a, 'x' as b")
        assert row is not None
        assert (row["a"], row["b"]) == (1, "x")
        rows = await pool.fetch("select generate_series(1, 3) as n")
        assert [r["n"] for r in rows] == [1, 2, 3]
        assert await pool.fetchrow("select 1 where false") is None
        table = f"t_{uuid.uuid4().hex[:8]}"
        assert await pool.execute(f"create temp table {table} (x int)") == "CREATE TABLE"
        async with pool.connection() as con:
            assert pool.stats().in_use == 1
            assert await con.fetchval("show statement_timeout") == "10s"
            assert await con.fetchval("show application_name") == app
        stats = pool.stats()
        assert stats.in_use == 0
        assert stats.waiting == 0
        assert 2 <= stats.size <= 4
        assert stats.idle == stats.size
        assert await _count(admin, app) == stats.size
    assert not pool.is_open
    assert pool.stats().size == 0
    assert await _count(admin, app) == 0


async def test_statement_timeout_is_enforced_by_the_server(postgres_dsn: str) -> None:
    async with DatabasePool(
        postgres_dsn, name="slow", min_size=1, max_size=1, statement_timeout=0.1
    ) as pool:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(asyncpg.exceptions.QueryCanceledError):
            await pool.execute("select pg_sleep(30)")
        assert loop.time() - started < 10
        assert await pool.fetchval("select 1") == 1  # the connection is still usable


async def test_max_size_is_never_exceeded_under_1000_concurrent_operations(
    postgres_dsn: str, admin: asyncpg.Connection
) -> None:
    app = _app()
    samples: list[int] = []
    stats_seen: list[PoolStats] = []
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            samples.append(await _count(admin, app))
            stats_seen.append(pool.stats())

    async with DatabasePool(
        postgres_dsn, name="load", min_size=5, max_size=20, application_name=app
    ) as pool:
        sampler = asyncio.create_task(sample())
        results = await asyncio.gather(
            *(pool.fetchval("select $1::int from pg_sleep(0.01)", i) for i in range(1000))
        )
        done.set()
        await sampler
        assert results == list(range(1000))
    assert len(samples) >= 10, samples
    assert max(samples) <= 20, max(samples)
    assert max(samples) >= 10  # the pool really ran wide, so the sampling saw the load
    assert max(s.in_use for s in stats_seen) <= 20
    assert max(s.waiting for s in stats_seen) > 0
    assert all(0.0 <= s.utilization <= 1.0 for s in stats_seen)


async def test_operations_succeed_after_every_connection_is_terminated(
    postgres_dsn: str, admin: asyncpg.Connection
) -> None:
    app = _app()
    async with DatabasePool(
        postgres_dsn, name="killed", min_size=5, max_size=10, application_name=app
    ) as pool:
        await asyncio.gather(*(pool.fetchval("select pg_sleep(0.01)") for _ in range(20)))
        for _ in range(3):
            killed = await admin.fetchval(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity "
                "where application_name = $1",
                app,
            )
            assert killed >= 5
            # no pause: the very next operations, concurrently, reads and writes
            values = await asyncio.gather(*(pool.fetchval("select $1::int", i) for i in range(30)))
            assert values == list(range(30))
            assert await pool.execute("select 1") == "SELECT 1"
        async with pool.connection() as con:
            assert await con.fetchval("select 1") == 1
        assert pool.stats().in_use == 0


async def test_pool_exhausted_within_acquire_timeout(postgres_dsn: str) -> None:
    async with DatabasePool(
        postgres_dsn, name="tiny", min_size=2, max_size=2, acquire_timeout=0.3
    ) as pool:
        loop = asyncio.get_running_loop()
        waits: list[float] = []
        pool.wait_observer = waits.append
        assert await pool.fetchval("select 1") == 1
        assert waits == []  # an acquire that did not wait is not observed
        held = [pool.connection(), pool.connection()]
        for cm in held:
            await cm.__aenter__()
        assert pool.stats().utilization == 1.0
        started = loop.time()
        with pytest.raises(PoolExhausted) as info:
            await pool.fetchval("select 1")
        elapsed = loop.time() - started
        assert 0.25 <= elapsed < 2.0
        assert info.value.resource == "tiny"
        assert info.value.retry_after is not None
        assert 0 < info.value.retry_after <= 0.3
        assert "tiny" in str(info.value)
        assert isinstance(info.value, bounded.Rejected)
        assert pool.stats().waiting == 0
        assert pool.stats().rejected_total == 1
        assert pool.stats().acquired_total == 3

        # a waiter gets the connection released before its deadline, and the wait is observed
        async def release_soon() -> None:
            await asyncio.sleep(0.05)
            await held[0].__aexit__(None, None, None)

        releaser = asyncio.create_task(release_soon())
        assert await pool.fetchval("select 7") == 7
        await releaser
        assert len(waits) == 1
        assert 0.0 < waits[0] < 0.3
        await held[1].__aexit__(None, None, None)
        assert pool.stats().in_use == 0


async def test_cancelled_waiter_leaks_nothing(postgres_dsn: str) -> None:
    async with DatabasePool(
        postgres_dsn, name="cancel", min_size=1, max_size=1, acquire_timeout=5.0
    ) as pool:
        async with pool.connection():
            waiter = asyncio.create_task(pool.fetchval("select 1"))
            await asyncio.sleep(0.05)
            assert pool.stats().waiting == 1
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert pool.stats().waiting == 0
        assert pool.stats().in_use == 0
        assert await pool.fetchval("select 3") == 3


async def test_body_errors_propagate_and_release_the_connection(postgres_dsn: str) -> None:
    async with DatabasePool(postgres_dsn, name="err", min_size=1, max_size=1) as pool:
        with pytest.raises(asyncpg.exceptions.UndefinedTableError):
            async with pool.connection() as con:
                await con.fetch("select * from no_such_table_here")
        with pytest.raises(ZeroDivisionError):
            async with pool.connection():
                raise ZeroDivisionError
        assert pool.stats().in_use == 0
        assert await pool.fetchval("select 1") == 1


# -- redaction ---------------------------------------------------------------------------


async def test_password_never_appears_in_repr_stats_logs_or_errors(
    postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    if "://" not in postgres_dsn:
        pytest.skip("needs a URL DSN")
    caplog.set_level(logging.DEBUG)
    dsn = _with_password(postgres_dsn)
    pool = DatabasePool(dsn, name="secret", min_size=1, max_size=1, acquire_timeout=0.2)
    texts = [repr(pool), str(pool), pool.redacted_dsn]
    async with pool:
        texts += [repr(pool), repr(pool.stats()), str(pool.stats())]
        async with pool.connection():
            with pytest.raises(PoolExhausted) as exhausted:
                await pool.fetchval("select 1")
        texts += [str(exhausted.value), repr(exhausted.value)]
        with pytest.raises(asyncpg.exceptions.PostgresSyntaxError) as syntax:
            await pool.execute("selec 1")
        texts.append(str(syntax.value))
    texts.append(caplog.text)
    assert "***" in pool.redacted_dsn
    for text in texts:
        assert SECRET not in text


async def test_server_errors_quoting_the_password_are_scrubbed(
    postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    if "://" not in postgres_dsn:
        pytest.skip("needs a URL DSN")
    caplog.set_level(logging.DEBUG)
    # The database is named like the password, so the server's "does not exist" error
    # quotes the secret: the pool must mask it.
    dsn = _with_password(postgres_dsn)
    head, sep, tail = dsn.partition("?")
    dsn = head.rsplit("/", 1)[0] + "/" + SECRET + sep + tail
    pool = DatabasePool(dsn, name="nodb", min_size=1, max_size=1)
    with pytest.raises(asyncpg.exceptions.InvalidCatalogNameError) as info:
        await pool.open()
    assert "***" in str(info.value)
    assert SECRET not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    assert SECRET not in caplog.text
    assert not pool.is_open


async def test_connect_errors_do_not_leak_the_password(
    caplog: pytest.LogCaptureFixture, unused_tcp_port: int
) -> None:
    caplog.set_level(logging.DEBUG)
    pool = DatabasePool(
        f"postgresql://u:{SECRET}@127.0.0.1:{unused_tcp_port}/db", name="down", min_size=1
    )
    with pytest.raises(OSError, match="onnect") as info:
        await pool.open()
    assert SECRET not in str(info.value)
    assert SECRET not in repr(pool)
    assert SECRET not in caplog.text


@pytest.fixture
def unused_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_asyncpg_log_records_are_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    pool = DatabasePool(f"postgresql://u:{SECRET}@127.0.0.1/db", name="logs")
    try:
        raise OSError(f"cannot reach database {SECRET}")
    except OSError:
        logging.getLogger("asyncpg.pool").warning("reconnect to %s failed", SECRET, exc_info=True)
    assert "reconnect to *** failed" in caplog.text
    assert "cannot reach database ***" in caplog.text
    assert SECRET not in caplog.text
    del pool


def test_secrets_in_an_exception_chain_are_caught() -> None:
    pool = DatabasePool(f"postgresql://u:{SECRET}@127.0.0.1/db", name="chain")
    try:
        try:
            raise ValueError(f"inner {SECRET}")
        except ValueError as inner:
            raise OSError("outer") from inner
    except OSError as exc:
        outer = exc
    clean = pool._scrubbed(outer, "ctx")
    assert clean is not outer
    assert isinstance(clean, OSError)
    assert SECRET not in str(clean)
    plain = OSError("nothing secret")
    assert pool._scrubbed(plain, "ctx") is plain


async def test_a_failing_wait_observer_costs_no_connection(
    postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with DatabasePool(
        postgres_dsn, name="observed", min_size=1, max_size=1, acquire_timeout=5.0
    ) as pool:

        def broken(seconds: float) -> None:
            raise RuntimeError("metrics backend down")

        pool.wait_observer = broken
        holder = pool.connection()
        await holder.__aenter__()

        async def release_soon() -> None:
            await asyncio.sleep(0.05)
            await holder.__aexit__(None, None, None)

        releaser = asyncio.create_task(release_soon())
        with caplog.at_level(logging.ERROR, logger="bounded.db"):
            assert await pool.fetchval("select 1") == 1  # waited, observer raised
        await releaser
        assert "wait_observer of pool 'observed' failed" in caplog.text
        assert pool.stats().in_use == 0
        assert await pool.fetchval("select 2") == 2  # the connection came back
