"""The bulkhead contract, run against the Redis-backed bulkhead (real Redis, real time)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from bounded import BulkheadFull
from bounded.redis import RedisBackend, RedisBulkhead


async def _queue(
    bulkhead: RedisBulkhead, n: int, order: list[int], hold: float = 0.01
) -> list[asyncio.Task[None]]:
    async def waiter(i: int) -> None:
        async with bulkhead:
            order.append(i)
            await asyncio.sleep(hold)

    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(waiter(i)))
        await until(lambda n=i + 1: bulkhead.stats().queued == n)  # its ticket is in Redis
    return tasks


async def until(condition: Callable[[], object]) -> None:
    """Wait (briefly, on a loaded machine) until `condition()` is true."""
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.002)


async def test_waiters_are_served_in_arrival_order(backend: RedisBackend) -> None:
    bulkhead = backend.bulkhead(1, name="fifo")
    await bulkhead.acquire()
    order: list[int] = []
    tasks = await _queue(bulkhead, 8, order)
    assert bulkhead.stats().queued == 8
    await bulkhead.release()
    async with asyncio.timeout(10):
        await asyncio.gather(*tasks)
    assert order == list(range(8))
    assert bulkhead.stats().in_use == 0


async def test_waiters_whose_answers_cross_are_served_in_the_order_redis_queued_them(
    backend: RedisBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two acquires queue over two connections at once; the first one's answer arrives
    # after the second's. Served in answer order, the second (behind the first in Redis)
    # would be asked about forever and the first never: a deadlock.
    bulkhead = backend.bulkhead(1, name="crossed")
    await bulkhead.acquire()
    run = backend.run
    delayed: list[str] = []

    async def first_answer_late(command: Any, args: Sequence[Any]) -> Any:
        reply = await run(command, args)
        if args[0] == "acquire" and not delayed:
            delayed.append(args[3])
            await asyncio.sleep(0.2)
        return reply

    monkeypatch.setattr(backend, "run", first_answer_late)
    order: list[str] = []

    async def waiter(name: str) -> None:
        async with bulkhead:
            order.append(name)

    first = asyncio.create_task(waiter("first"))
    await until(lambda: delayed)  # queued in Redis, its answer held back
    second = asyncio.create_task(waiter("second"))
    await until(lambda: bulkhead.stats().queued == 1)  # the second's answer came first
    await until(lambda: bulkhead.stats().queued == 2)
    await bulkhead.release()
    async with asyncio.timeout(10):
        await asyncio.gather(first, second)
    assert order == ["first", "second"]


async def test_processes_are_served_in_the_order_they_queued(
    redis_url: str, backend: RedisBackend
) -> None:
    async with RedisBackend(redis_url, prefix=backend.prefix) as other_process:
        here = backend.bulkhead(1, name="fair")
        there = other_process.bulkhead(1, name="fair")
        await here.acquire()
        order: list[str] = []

        async def waiter(bulkhead: RedisBulkhead, tag: str) -> None:
            async with bulkhead:
                order.append(tag)
                await asyncio.sleep(0.01)

        tasks = []
        for i in range(6):
            bulkhead, tag = (here, f"here{i}") if i % 2 else (there, f"there{i}")
            tasks.append(asyncio.create_task(waiter(bulkhead, tag)))
            queued = here.stats().queued + there.stats().queued
            await until(lambda q=queued: here.stats().queued + there.stats().queued > q)
        await here.release()
        async with asyncio.timeout(10):
            await asyncio.gather(*tasks)
        assert order == [f"{'here' if i % 2 else 'there'}{i}" for i in range(6)]


async def test_cancelled_waiter_leaves_its_turn_to_the_next(backend: RedisBackend) -> None:
    bulkhead = backend.bulkhead(1, name="cancel")
    await bulkhead.acquire()
    order: list[int] = []
    tasks = await _queue(bulkhead, 3, order)
    tasks[0].cancel()
    await asyncio.sleep(0.05)
    await bulkhead.release()
    async with asyncio.timeout(10):
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(outcomes[0], asyncio.CancelledError)
    assert order == [1, 2]
    assert bulkhead.stats().queued == 0


async def test_max_queue_and_max_wait_reject(backend: RedisBackend) -> None:
    bulkhead = backend.bulkhead(1, name="caps", max_queue=1, max_wait=0.2)
    await bulkhead.acquire()
    loop = asyncio.get_running_loop()
    waiting = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(0.02)
    with pytest.raises(BulkheadFull) as caught:
        await bulkhead.acquire()
    assert caught.value.resource == "caps"
    assert caught.value.retry_after is None
    start = loop.time()
    with pytest.raises(BulkheadFull):
        await waiting
    assert loop.time() - start <= 0.25
    assert bulkhead.stats().rejected_total == 2
    assert bulkhead.stats().queued == 0


async def test_growing_the_limit_admits_waiters_promptly(backend: RedisBackend) -> None:
    bulkhead = backend.bulkhead(1, name="grow")
    await bulkhead.acquire()
    order: list[int] = []
    tasks = await _queue(bulkhead, 3, order, hold=1.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    bulkhead.limit = 10
    async with asyncio.timeout(10):
        while len(order) < 3:
            await asyncio.sleep(0.01)
    assert loop.time() - start < 0.5
    await bulkhead.release()
    await asyncio.gather(*tasks)


async def test_try_acquire_release_and_stats(backend: RedisBackend) -> None:
    bulkhead = backend.bulkhead(2, name="try")
    assert await bulkhead.try_acquire()
    assert await bulkhead.try_acquire()
    assert not await bulkhead.try_acquire()
    stats = bulkhead.stats()
    assert (stats.in_use, stats.limit, stats.utilization, stats.acquired_total) == (2, 2, 1.0, 2)
    await bulkhead.release()
    await bulkhead.release()
    with pytest.raises(RuntimeError, match="released more often"):
        bulkhead.release()
    assert bulkhead.stats().in_use == 0


async def test_keys_expire_and_share_one_hash_slot(backend: RedisBackend) -> None:
    bulkhead = backend.bulkhead(1, name="keys")
    await bulkhead.acquire()
    waiting = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(0.05)
    keys = await backend.client.keys(f"{backend.prefix}*")
    assert len(keys) == 4  # holders, queue, queue leases, ticket counter
    for key in keys:
        assert b"{keys}" in key
        assert 0 < await backend.client.pttl(key) <= 2 * backend.lease * 1000 + 1000
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    await bulkhead.release()


async def test_an_acquire_cancelled_in_flight_leaves_nothing_held(backend: RedisBackend) -> None:
    bulkhead = backend.bulkhead(1, name="inflight")
    for _ in range(5):
        attempt = asyncio.create_task(bulkhead.acquire())
        await asyncio.sleep(0)  # the call is on its way to Redis
        attempt.cancel()
        await asyncio.gather(attempt, return_exceptions=True)
    holders, queue = backend.key("inflight", "holders"), backend.key("inflight", "queue")
    async with asyncio.timeout(5):
        while await backend.client.zcard(holders) or await backend.client.zcard(queue):
            await asyncio.sleep(0.01)  # the background leaves land
    assert await bulkhead.try_acquire()
    await bulkhead.release()
