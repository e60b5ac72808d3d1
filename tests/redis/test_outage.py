"""Redis itself failing: a private server (never the shared one) stopped, restarted, absent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator

import pytest

import redis
from bounded import BulkheadFull, RateLimited
from bounded.redis import RedisBackend
from tests.redis.conftest import PrivateRedis


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "bounded.redis" and r.levelno == logging.WARNING
    ]


async def test_fail_open_admits_locally_warns_once_and_returns(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bounded.redis")
    async with RedisBackend(
        private_redis.url, timeout=0.2, retry_interval=0.1, expected_processes=4
    ) as backend:
        limiter = backend.rate_limiter(400, 1.0, name="outage")
        await limiter.acquire()
        private_redis.stop()
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(20):
            await limiter.acquire()  # no exception: the local share (100/s) admits
        # 20 units at 100/s, not at the shared 400/s (0.05 s) nor unlimited.
        assert 0.18 <= loop.time() - start < 1.0
        # One probe of Redis per retry_interval, not one failed call per acquire.
        assert 1 <= backend.errors_total <= 4
        assert not backend.available
        warnings = _warnings(caplog)
        assert len(warnings) == 1
        assert "unavailable" in warnings[0]
        private_redis.start()
        await asyncio.sleep(0.15)
        await limiter.acquire()
        assert backend.available
        assert await backend.client.exists(backend.key("outage", "gcra"))
        assert len(_warnings(caplog)) == 2  # "answers again"
        assert backend.outages_total == 1


async def test_fail_closed_rejects_with_retry_after(private_redis: PrivateRedis) -> None:
    async with RedisBackend(
        private_redis.url, on_error="fail_closed", timeout=0.2, retry_interval=0.5
    ) as backend:
        limiter = backend.rate_limiter(10, 1.0, name="closed")
        bulkhead = backend.bulkhead(2, name="closed")
        await limiter.acquire()
        private_redis.stop()
        with pytest.raises(RateLimited) as limited:
            await limiter.acquire()
        assert limited.value.retry_after == 0.5
        with pytest.raises(BulkheadFull) as full:
            await bulkhead.acquire()
        assert full.value.retry_after == 0.5
        assert not await limiter.try_acquire()
        assert limiter.stats().rejected_total == 1
        assert bulkhead.stats().rejected_total == 1


async def test_unreachable_redis_fails_fast_without_an_exception_storm(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bounded.redis")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe closes
    async with RedisBackend(f"redis://127.0.0.1:{port}/0", timeout=0.2) as backend:
        limiter = backend.rate_limiter(1000, 1.0, name="nowhere", burst=100)
        bulkhead = backend.bulkhead(3, name="nowhere")
        await asyncio.gather(*(limiter.acquire() for _ in range(50)))
        async with bulkhead:
            assert bulkhead.stats().acquired_total == 1
        assert backend.errors_total >= 1
        assert len(_warnings(caplog)) == 1


async def test_restart_mid_run_keeps_bulkhead_holders_working(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bounded.redis")
    async with RedisBackend(
        private_redis.url, timeout=0.2, retry_interval=0.1, lease=1.0
    ) as backend:
        bulkhead = backend.bulkhead(2, name="restart")
        done = 0

        async def worker() -> None:
            nonlocal done
            for _ in range(10):
                async with bulkhead:
                    await asyncio.sleep(0.03)
                done += 1

        workers = [asyncio.create_task(worker()) for _ in range(4)]
        await asyncio.sleep(0.1)
        private_redis.stop()
        await asyncio.sleep(0.3)
        private_redis.start()
        async with asyncio.timeout(20):
            await asyncio.gather(*workers)
        assert done == 40
        # The workers may have finished on the local fallback before the next probe:
        # back on Redis within a few probe intervals of its return.
        async with asyncio.timeout(5):
            while not backend.available:
                async with bulkhead:
                    pass
                await asyncio.sleep(0.05)
        assert len([m for m in _warnings(caplog) if "unavailable" in m]) == 1


@contextlib.asynccontextmanager
async def _silent_server() -> AsyncIterator[tuple[int, list[asyncio.StreamWriter]]]:
    """A loopback TCP server that accepts and never answers: yields its port and the
    connections it accepted (closed, with the server, at the end)."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # reads nothing, answers nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], accepted
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_server_that_never_answers_is_cut_off_by_the_call_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bounded.redis")
    async with (
        _silent_server() as (port, accepted),
        RedisBackend(f"redis://127.0.0.1:{port}/0", on_error="fail_closed", timeout=0.2) as backend,
    ):
        limiter = backend.rate_limiter(10, 1.0, name="silent")
        async with asyncio.timeout(5):
            with pytest.raises(RateLimited) as caught:
                await limiter.acquire()
        assert caught.value.retry_after == backend.retry_interval
        assert accepted, "the call reached the server before its deadline cut it off"
        assert backend.errors_total == 1
        assert not backend.available
        assert len(_warnings(caplog)) == 1
        assert "TimeoutError" in _warnings(caplog)[0]


async def test_a_flushed_script_cache_is_reloaded_without_an_outage(
    private_redis: PrivateRedis,
) -> None:
    async with RedisBackend(private_redis.url) as backend:
        limiters = [
            backend.rate_limiter(100, 1.0, name="flushed", algorithm="gcra"),
            backend.rate_limiter(100, 1.0, name="flushed", algorithm="sliding_window"),
        ]
        bulkhead = backend.bulkhead(2, name="flushed")
        breaker = backend.circuit_breaker("flushed")
        for limiter in limiters:
            await limiter.acquire()
        await backend.client.script_flush()  # as after a restart or a failover
        for limiter in limiters:
            await limiter.acquire()
        async with bulkhead:
            pass
        await breaker.refresh()
        assert backend.errors_total == 0
        assert backend.available


async def test_connections_closed_while_idle_are_replaced_without_an_outage(
    private_redis: PrivateRedis,
) -> None:
    # Script calls keep their connections between calls; one the server closed in the
    # meantime (a restart, CLIENT KILL, an idle timeout) must not count as Redis failing.
    async with RedisBackend(private_redis.url) as backend:
        limiter = backend.rate_limiter(1000, 1.0, name="idle")
        await limiter.acquire()
        # Neither close is seen by the loop before the next call (both block it): the
        # call fails on the old connection and is sent again on a new one.
        private_redis.stop()
        private_redis.start()
        await limiter.acquire()  # the script reloaded too
        with redis.Redis(port=private_redis.port) as admin:
            admin.client_kill_filter(_type="normal", skipme=True)
        await limiter.acquire()
        assert backend.errors_total == 0
        assert backend.outages_total == 0
        assert await backend.client.exists(backend.key("idle", "gcra"))


@pytest.mark.looptime
async def test_each_call_is_cut_off_at_its_own_deadline() -> None:
    loop = asyncio.get_running_loop()
    ended: dict[str, float] = {}
    async with (
        _silent_server() as (port, _),
        RedisBackend(f"redis://127.0.0.1:{port}/0", on_error="fail_closed", timeout=0.3) as backend,
    ):
        limiter = backend.rate_limiter(10, 1.0, name="deadlines")

        async def call(name: str) -> None:
            with pytest.raises(RateLimited):
                await limiter.acquire()
            ended[name] = loop.time()

        start = loop.time()
        first = asyncio.create_task(call("first"))
        await asyncio.sleep(0.1)
        second = asyncio.create_task(call("second"))
        async with asyncio.timeout(5):
            await asyncio.gather(first, second)
        assert ended["first"] - start == pytest.approx(0.3)
        assert ended["second"] - start == pytest.approx(0.4)  # its own deadline, not a later tick
        assert backend.errors_total == 2


async def test_cancelling_a_call_in_flight_stays_a_cancellation() -> None:
    async with (
        _silent_server() as (port, _),
        RedisBackend(f"redis://127.0.0.1:{port}/0", on_error="fail_closed", timeout=0.3) as backend,
    ):
        limiter = backend.rate_limiter(10, 1.0, name="cancelled")
        task = asyncio.create_task(limiter.try_acquire())  # nothing to give back
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.3)  # past the deadline: nothing fires on a finished call
        assert backend.errors_total == 0
        assert backend.available
