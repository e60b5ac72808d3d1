"""Bulkhead behaviour beyond the shared limiter contract."""

from __future__ import annotations

import asyncio

import pytest

from bounded import Bulkhead, BulkheadFull

pytestmark = pytest.mark.looptime(end=600)


async def test_shrinking_never_interrupts_holders_and_gates_newcomers() -> None:
    bh = Bulkhead(3)
    release = asyncio.Event()
    finished: list[int] = []

    async def holder(i: int) -> None:
        async with bh:
            await release.wait()
            finished.append(i)

    holders = [asyncio.create_task(holder(i)) for i in range(3)]
    await asyncio.sleep(0)
    bh.limit = 1
    assert bh.in_use == 3  # nobody was interrupted
    newcomer = asyncio.create_task(bh.acquire())
    await asyncio.sleep(0.1)
    assert not newcomer.done()  # waits until in_use drops below the new limit
    release.set()
    await asyncio.wait_for(asyncio.gather(*holders, newcomer), 60)
    assert sorted(finished) == [0, 1, 2]
    assert bh.in_use == 1
    bh.release()


async def test_try_acquire_never_jumps_the_queue() -> None:
    bh = Bulkhead(1)
    assert bh.try_acquire()
    assert not bh.try_acquire()
    waiter = asyncio.create_task(bh.acquire())
    await asyncio.sleep(0)
    bh.release()  # handed to the waiter, not left for try_acquire
    assert not bh.try_acquire()
    await asyncio.wait_for(waiter, 60)
    bh.release()
    assert bh.try_acquire()


def test_release_without_acquire_is_an_error_naming_the_bulkhead() -> None:
    bh = Bulkhead(2, name="db")
    with pytest.raises(RuntimeError, match="db"):
        bh.release()


async def test_wait_observer_sees_only_waits() -> None:
    bh = Bulkhead(1)
    waits: list[float] = []
    bh.wait_observer = waits.append
    await bh.acquire()
    asyncio.get_running_loop().call_later(0.25, bh.release)
    await asyncio.wait_for(bh.acquire(), 60)
    assert waits == [pytest.approx(0.25, abs=1e-5)]


async def test_expired_waiters_do_not_pile_up_behind_a_stuck_holder() -> None:
    bh = Bulkhead(1, max_wait=0.01)
    await bh.acquire()  # never released
    for _ in range(1000):
        with pytest.raises(BulkheadFull):
            await bh.acquire()
    assert bh.stats().rejected_total == 1000
    assert len(bh._waiters) <= 16  # bounded by construction, not by traffic


async def test_timed_out_waiter_keeps_the_fifo_order_of_the_rest() -> None:
    bh = Bulkhead(1)
    await bh.acquire()
    order: list[str] = []

    async def waiter(tag: str, max_wait: float | None) -> None:
        bh.max_wait = max_wait
        try:
            await bh.acquire()
        except BulkheadFull:
            order.append(f"{tag}:rejected")
            return
        order.append(tag)
        bh.release()

    tasks = [
        asyncio.create_task(waiter("a", None)),
        asyncio.create_task(waiter("b", 0.5)),
        asyncio.create_task(waiter("c", None)),
    ]
    await asyncio.sleep(1.0)
    bh.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    assert order == ["b:rejected", "a", "c"]


def test_stats_report_the_configuration() -> None:
    bh = Bulkhead(4, name="llm")
    assert bh.try_acquire()
    stats = bh.stats()
    assert (stats.name, stats.limit, stats.in_use, stats.queued) == ("llm", 4, 1, 0)
    assert stats.utilization == 0.25
    assert stats.acquired_total == 1


def test_generated_names_are_unique() -> None:
    assert Bulkhead().name != Bulkhead().name


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1.5}, "limit"),
        ({"limit": True}, "limit"),
        ({"max_queue": -1}, "max_queue"),
        ({"max_wait": -0.1}, "max_wait"),
        ({"max_wait": float("inf")}, "max_wait"),
    ],
)
def test_constructor_names_the_bad_argument(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Bulkhead(**kwargs)  # type: ignore[arg-type]


def test_live_resize_validates_too() -> None:
    bh = Bulkhead(2)
    with pytest.raises(ValueError, match="limit"):
        bh.limit = 0
    assert bh.limit == 2


async def test_a_slot_freed_while_a_cancelled_waiter_has_not_resumed_is_not_stranded() -> None:
    # Issue 8, item 1: the cancelled waiter still counted as queued, so the newcomer
    # queued behind nobody and was never woken.
    bh = Bulkhead(1)
    assert bh.try_acquire()
    cancelled = asyncio.create_task(bh.acquire())
    await asyncio.sleep(0)
    cancelled.cancel()
    bh.release()
    async with asyncio.timeout(1):
        await bh.acquire()
    assert bh.in_use == 1
    await asyncio.gather(cancelled, return_exceptions=True)
    assert (bh.in_use, bh.stats().queued) == (1, 0)


async def test_a_slot_freed_after_a_grant_that_has_not_resumed_is_not_stranded() -> None:
    bh = Bulkhead(2)
    assert bh.try_acquire()
    assert bh.try_acquire()
    queued = asyncio.create_task(bh.acquire())
    await asyncio.sleep(0)
    bh.release()  # granted to `queued`, which has not run yet
    bh.release()  # a free slot, nobody live waiting for it
    async with asyncio.timeout(1):
        await bh.acquire()
    await asyncio.wait_for(queued, 1)
    assert (bh.in_use, bh.stats().queued) == (2, 0)


async def test_a_free_slot_never_lets_a_newcomer_overtake_a_live_waiter() -> None:
    bh = Bulkhead(1)
    assert bh.try_acquire()
    order: list[str] = []

    async def waiter(tag: str) -> None:
        await bh.acquire()
        order.append(tag)
        bh.release()

    first = asyncio.create_task(waiter("first"))
    await asyncio.sleep(0)
    bh.release()  # handed to `first` at once
    assert not bh.try_acquire()
    late = asyncio.create_task(waiter("late"))
    await asyncio.wait_for(asyncio.gather(first, late), 1)
    assert order == ["first", "late"]
