"""The fault proxy against real loopback servers: an echo server and PostgreSQL.

These run on the real clock (real sockets); they check that a fault is applied (a
delay at least as long as injected, a reset, a refusal), never how fast anything is.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from bounded.stress.faultproxy import FaultProxy, Faults


async def roundtrip(port: int, payload: bytes = b"ping") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return await reader.readexactly(len(payload))
    finally:
        writer.close()


async def test_transparent_by_default(echo_port: int) -> None:
    async with FaultProxy(echo_port) as proxy:
        assert await roundtrip(proxy.port, b"x" * 200_000) == b"x" * 200_000
        assert proxy.connections_total == 1


async def test_latency_delays_each_direction(echo_port: int) -> None:
    async with FaultProxy(echo_port) as proxy:
        await proxy.set_faults(latency=0.1, jitter=0.02)
        start = time.monotonic()
        assert await roundtrip(proxy.port) == b"ping"
        assert time.monotonic() - start >= 2 * (0.1 - 0.02)


async def test_bandwidth_caps_throughput(echo_port: int) -> None:
    async with FaultProxy(echo_port) as proxy, proxy.fault(bandwidth=400_000):
        start = time.monotonic()
        await roundtrip(proxy.port, b"y" * 40_000)
        assert time.monotonic() - start >= 40_000 / 400_000


async def test_reset_breaks_open_and_new_connections(echo_port: int) -> None:
    async with FaultProxy(echo_port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"a")
        assert await reader.readexactly(1) == b"a"
        await proxy.set_faults(reset=True)
        writer.write(b"b")
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await reader.readexactly(1)
        writer.close()
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await roundtrip(proxy.port)
        await proxy.clear()
        assert await roundtrip(proxy.port) == b"ping"


async def test_blackhole_swallows_data(echo_port: int) -> None:
    async with FaultProxy(echo_port) as proxy:
        async with proxy.fault(blackhole=True):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await roundtrip(proxy.port)
        assert await roundtrip(proxy.port) == b"ping"


async def test_refuse_closes_the_port_and_lifting_it_reopens_the_same_port(
    echo_port: int,
) -> None:
    async with FaultProxy(echo_port) as proxy:
        port = proxy.port
        async with proxy.fault(refuse=True):
            with pytest.raises(ConnectionRefusedError):
                await roundtrip(port)
        assert proxy.port == port
        assert await roundtrip(port) == b"ping"


async def test_slow_close_delays_the_end_of_stream(echo_port: int) -> None:
    async with FaultProxy(echo_port) as proxy, proxy.fault(slow_close=0.2):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"bye")
        writer.write_eof()
        start = time.monotonic()
        assert await reader.read() == b"bye"  # until the server's close comes through
        assert time.monotonic() - start >= 0.2
        writer.close()


def test_loopback_only_and_bad_faults() -> None:
    with pytest.raises(ValueError, match="upstream_host"):
        FaultProxy(5432, "192.0.2.1")
    with pytest.raises(ValueError, match="host"):
        FaultProxy(5432, host="0.0.0.0")
    with pytest.raises(ValueError, match="latency"):
        Faults(latency=-1)


async def test_postgres_through_the_proxy(postgres_dsn: str) -> None:
    host_port = postgres_dsn.split("@", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    if host not in ("127.0.0.1", "localhost", "::1"):
        pytest.skip("PostgreSQL is not on loopback")
    async with FaultProxy(int(port or 5432), host) as proxy:
        dsn = postgres_dsn.replace(host_port, f"127.0.0.1:{proxy.port}")
        conn = await asyncpg.connect(dsn)
        assert await conn.fetchval("select 1") == 1
        await proxy.set_faults(reset=True)
        with pytest.raises((ConnectionError, asyncpg.PostgresConnectionError)):
            await conn.fetchval("select 2")
        await conn.close(timeout=1)
        with pytest.raises((ConnectionError, OSError, asyncpg.PostgresConnectionError)):
            await asyncpg.connect(dsn, timeout=2)
        await proxy.clear()
        conn = await asyncpg.connect(dsn)
        assert await conn.fetchval("select 3") == 3
        await conn.close()
