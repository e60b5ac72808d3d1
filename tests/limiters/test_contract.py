"""One contract, run against every limiter: Bulkhead and both RateLimiter algorithms.

Each limiter is driven through a small adapter with capacity 1: `occupy` takes the only
slot, `free` gives one slot back (a release for a bulkhead, a refund for a rate
limiter), `grow` raises the capacity live.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from bounded import Bulkhead, BulkheadFull, RateLimited, RateLimiter, Rejected

pytestmark = pytest.mark.looptime(end=600)


@dataclass
class Adapter:
    name: str
    make: Callable[..., Any]
    rejection: type[Rejected]
    holds: bool  # True: a slot is held until released (bulkhead)

    async def occupy(self, limiter: Any) -> None:
        await limiter.acquire()

    def free(self, limiter: Any) -> None:
        if self.holds:
            limiter.release()
        else:
            limiter.refund(1)

    def done(self, limiter: Any) -> None:
        """What a waiter does when it finishes its work."""
        if self.holds:
            limiter.release()

    def grow(self, limiter: Any, capacity: int) -> None:
        if self.holds:
            limiter.limit = capacity
        else:
            limiter.rate = capacity

    def queued(self, limiter: Any) -> int:
        return int(limiter.stats().queued)


ADAPTERS = [
    Adapter(
        "bulkhead",
        lambda **kw: Bulkhead(1, name="contract", **kw),
        BulkheadFull,
        holds=True,
    ),
    Adapter(
        "gcra",
        lambda **kw: RateLimiter(1, 1.0, name="contract", algorithm="gcra", **kw),
        RateLimited,
        holds=False,
    ),
    Adapter(
        "sliding_window",
        lambda **kw: RateLimiter(1, 1.0, name="contract", algorithm="sliding_window", **kw),
        RateLimited,
        holds=False,
    ),
]


@pytest.fixture(params=ADAPTERS, ids=lambda a: a.name)
def adapter(request: pytest.FixtureRequest) -> Adapter:
    return request.param  # type: ignore[no-any-return]


async def settle(*aws: Any) -> list[Any]:
    """Await waiters with a deadline: a stranded waiter fails the test, not hangs it."""
    return await asyncio.wait_for(asyncio.gather(*aws, return_exceptions=True), 60)


async def _spawn_in_order(n: int, body: Callable[[int], Any]) -> list[asyncio.Task[Any]]:
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(body(i)))
        await asyncio.sleep(0)  # each one reaches the queue before the next starts
    return tasks


async def test_waiters_are_served_in_arrival_order(adapter: Adapter) -> None:
    limiter = adapter.make()
    await adapter.occupy(limiter)
    order: list[int] = []

    async def waiter(i: int) -> None:
        await limiter.acquire()
        order.append(i)
        await asyncio.sleep(0.01)
        adapter.done(limiter)

    tasks = await _spawn_in_order(20, waiter)
    assert adapter.queued(limiter) == 20
    adapter.free(limiter)
    assert await settle(*tasks) == [None] * 20
    assert order == list(range(20))


async def test_waiter_cancelled_while_queued_leaves_its_turn_to_the_next(
    adapter: Adapter,
) -> None:
    limiter = adapter.make()
    await adapter.occupy(limiter)
    admitted: list[str] = []

    async def waiter(tag: str) -> None:
        await limiter.acquire()
        admitted.append(tag)
        adapter.done(limiter)

    first = asyncio.create_task(waiter("first"))
    await asyncio.sleep(0)
    second = asyncio.create_task(waiter("second"))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    adapter.free(limiter)
    outcomes = await settle(first, second)
    assert isinstance(outcomes[0], asyncio.CancelledError)
    assert admitted == ["second"]
    assert adapter.queued(limiter) == 0


async def test_waiter_cancelled_after_its_grant_hands_the_slot_on(adapter: Adapter) -> None:
    limiter = adapter.make()
    await adapter.occupy(limiter)
    loop = asyncio.get_running_loop()
    admitted: list[tuple[str, float]] = []

    async def waiter(tag: str) -> None:
        await limiter.acquire()
        admitted.append((tag, loop.time()))
        adapter.done(limiter)

    first = asyncio.create_task(waiter("first"))
    await asyncio.sleep(0)
    second = asyncio.create_task(waiter("second"))
    await asyncio.sleep(0)
    start = loop.time()
    adapter.free(limiter)  # grants `first` synchronously...
    first.cancel()  # ...which is cancelled before it ever runs
    outcomes = await settle(first, second)
    assert isinstance(outcomes[0], asyncio.CancelledError)
    # The slot went to `second` at once: nothing was lost, nothing waited for time.
    assert admitted == [("second", start)]
    assert adapter.queued(limiter) == 0


async def test_max_queue_rejects_at_once_beyond_the_queue(adapter: Adapter) -> None:
    limiter = adapter.make(max_queue=2)
    await adapter.occupy(limiter)
    loop = asyncio.get_running_loop()
    waiting = [asyncio.create_task(limiter.acquire()) for _ in range(2)]
    await asyncio.sleep(0)
    start = loop.time()
    with pytest.raises(adapter.rejection) as caught:
        await limiter.acquire()
    assert loop.time() == start
    assert caught.value.resource == "contract"
    assert limiter.stats().rejected_total == 1
    for task in waiting:
        task.cancel()
    await settle(*waiting)
    assert adapter.queued(limiter) == 0


async def test_max_wait_rejects_no_later_than_max_wait(adapter: Adapter) -> None:
    limiter = adapter.make(max_wait=0.5)
    await adapter.occupy(limiter)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(adapter.rejection) as caught:
        await limiter.acquire()
    assert loop.time() - start <= 0.5
    assert caught.value.resource == "contract"
    assert adapter.queued(limiter) == 0
    assert limiter.stats().rejected_total == 1


async def test_max_wait_admits_a_waiter_served_in_time(adapter: Adapter) -> None:
    limiter = adapter.make(max_wait=2.0)
    await adapter.occupy(limiter)
    loop = asyncio.get_running_loop()
    if adapter.holds:
        loop.call_later(1.0, limiter.release)
    start = loop.time()
    await settle(limiter.acquire())
    assert loop.time() - start == pytest.approx(1.0, abs=1e-5)


async def test_growing_capacity_admits_queued_waiters_promptly(adapter: Adapter) -> None:
    limiter = adapter.make()
    await adapter.occupy(limiter)
    loop = asyncio.get_running_loop()
    admitted_at: list[float] = []

    async def waiter(i: int) -> None:
        await limiter.acquire()
        admitted_at.append(loop.time())

    tasks = await _spawn_in_order(3, waiter)
    start = loop.time()
    adapter.grow(limiter, 100)
    assert await settle(*tasks) == [None] * 3
    # At capacity 1 the last would wait >= 3 s; at 100 it is in within 0.05 s.
    assert max(admitted_at) - start < 0.05


async def test_stats_return_to_zero_after_mixed_traffic(adapter: Adapter) -> None:
    limiter = adapter.make(max_queue=5)

    async def worker(i: int) -> None:
        try:
            await limiter.acquire()
        except Rejected:
            return
        await asyncio.sleep(0.1)
        adapter.done(limiter)

    tasks = [asyncio.create_task(worker(i)) for i in range(20)]
    await asyncio.sleep(0)
    tasks[3].cancel()
    tasks[7].cancel()
    await settle(*tasks)
    stats = limiter.stats()
    assert stats.queued == 0
    assert stats.rejected_total > 0
    if adapter.holds:
        assert stats.in_use == 0
        assert stats.utilization == 0.0


async def test_rejection_carries_resource_and_retry_after(adapter: Adapter) -> None:
    limiter = adapter.make(max_queue=0)
    await adapter.occupy(limiter)
    with pytest.raises(Rejected) as caught:
        await limiter.acquire()
    error = caught.value
    assert error.resource == "contract"
    assert "contract" in str(error)
    if adapter.holds:
        assert error.retry_after is None
    else:
        assert error.retry_after == pytest.approx(1.0, abs=1e-5)
