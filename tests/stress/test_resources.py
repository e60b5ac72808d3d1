"""Resource sampling against a real PostgreSQL: connections counted from pg_stat_activity."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import pytest

from bounded.stress import constant, run_open
from bounded.stress.resources import ResourceSampler
from bounded.stress.thresholds import evaluate


async def test_db_connections_are_sampled_and_checked(own_database: str) -> None:
    conns: list[asyncpg.Connection] = []

    async def call(index: int, rng: random.Random) -> None:
        if index < 3:  # the first three requests each open a connection and keep it
            conns.append(await asyncpg.connect(own_database))

    try:
        async with ResourceSampler(dsn=own_database) as sampler:
            result = await run_open(call, constant(10, 1.5), interval=0.5, sampler=sampler)
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    series = result.resource_series("db_connections")
    assert max(series) == 3  # the sampler's own connection is not counted
    assert {"rss_bytes", "threads", "tasks", "fds", "cpu_percent"} <= set(
        result.timeline[0].resources
    )
    assert [t.passed for t in evaluate(result, ["db_connections<=3", "db_connections<3"])] == [
        True,
        False,
    ]


async def test_unreachable_database_is_a_clear_error_without_the_dsn() -> None:
    dsn = "postgresql://user:s3cret@127.0.0.1:1/nothing"
    with pytest.raises(ConnectionError) as info:
        async with ResourceSampler(dsn=dsn):
            pass
    assert "s3cret" not in str(info.value)
    assert "PostgreSQL" in str(info.value)
