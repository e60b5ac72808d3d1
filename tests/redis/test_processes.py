"""Several processes sharing one Redis-backed limit (the 10 s version: bench/redis.py)."""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from bounded.redis import RedisBackend
from tests.limiters.windows import most_in_window
from tests.redis import workers

pytestmark = pytest.mark.slow

PROCESSES = 4
RATE = 200.0
SECONDS = 3.0


@pytest.mark.parametrize("algorithm", ["gcra", "sliding_window"])
def test_four_processes_share_one_rate(redis_url: str, prefix: str, algorithm: str) -> None:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(PROCESSES, mp_context=context) as pool:
        futures = [
            pool.submit(workers.rate_worker, redis_url, prefix, algorithm, RATE, PROCESSES, SECONDS)
            for _ in range(PROCESSES)
        ]
        times = sorted(t for f in futures for t in f.result())
    assert min(len(f.result()) for f in futures) > 0  # every process got its share
    # Admission times on the Redis clock, which every process shares.
    guarantee = RATE + 1 if algorithm == "gcra" else RATE
    assert most_in_window(times, [1.0] * len(times), 1.0) <= guarantee
    # Throughput away from the first burst and the end: a sliding window admits a
    # whole period's units at each whole second, gcra one every 1/RATE s.
    start = times[0]
    middle = [t for t in times if start + 0.5 <= t < start + SECONDS - 0.5]
    assert len(middle) == pytest.approx(RATE * (SECONDS - 1.0), rel=0.02)


def test_four_processes_never_exceed_the_shared_bulkhead(redis_url: str, prefix: str) -> None:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(PROCESSES, mp_context=context) as pool:
        futures = [
            pool.submit(workers.bulkhead_worker, redis_url, prefix, 10, PROCESSES, 2.0)
            for _ in range(PROCESSES)
        ]
        most = max(f.result() for f in futures)
    assert 5 < most <= 10  # busy, and never above the limit


async def test_a_killed_holders_slot_returns_within_its_lease(redis_url: str, prefix: str) -> None:
    lease = 1.0
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from tests.redis.workers import hold_forever; "
            f"hold_forever({redis_url!r}, {prefix!r}, {lease})",
        ],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2],  # the repository root, where `tests` is a package
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.to_thread(holder.stdout.readline)
        assert line.strip() == b"holding"
        async with RedisBackend(redis_url, prefix=prefix, lease=lease) as backend:
            bulkhead = backend.bulkhead(1, name="crash")
            assert not await bulkhead.try_acquire()
            holder.send_signal(signal.SIGKILL)
            loop = asyncio.get_running_loop()
            killed = loop.time()
            async with asyncio.timeout(lease + 2.0):
                await bulkhead.acquire()
            assert loop.time() - killed <= lease + 0.5
            await bulkhead.release()
    finally:
        holder.kill()
        holder.wait()
