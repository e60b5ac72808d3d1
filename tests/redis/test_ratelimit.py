"""The rate-limiter contract, run against the Redis-backed limiters (real Redis, real time).

The in-memory contract suite runs on virtual time; Redis keeps its own clock (`TIME`),
so this parallel suite checks admission times on that clock (`admission_observer`,
exact to the microsecond) and uses periods long enough for a loaded machine.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from bounded import RateLimited
from bounded.llm.limits import ProviderLimits
from bounded.redis import RedisBackend, RedisRateLimiter

ALGORITHMS = ["gcra", "sliding_window"]
CLOCK = 2e-6  # the scripts keep time in whole microseconds


def make(backend: RedisBackend, algorithm: str, **kw: Any) -> RedisRateLimiter:
    kw.setdefault("name", "contract")
    return backend.rate_limiter(kw.pop("rate", 10), kw.pop("per", 1.0), algorithm=algorithm, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_waiters_are_admitted_in_arrival_order_at_the_rate(
    backend: RedisBackend, algorithm: str
) -> None:
    limiter = make(backend, algorithm, rate=10)
    first: list[float] = []
    limiter.admission_observer = first.append
    await limiter.acquire(10 if algorithm == "sliding_window" else 1)  # a full window
    admitted: list[tuple[int, float]] = []

    async def waiter(i: int) -> None:
        await limiter.acquire()
        admitted.append((i, limiter_clock[-1]))

    limiter_clock: list[float] = []
    limiter.admission_observer = limiter_clock.append
    tasks = []
    for i in range(5):
        tasks.append(asyncio.create_task(waiter(i)))
        async with asyncio.timeout(5):
            while limiter.stats().queued <= i:  # its reservation is made
                await asyncio.sleep(0.001)
    await asyncio.gather(*tasks)
    assert [i for i, _ in admitted] == list(range(5))
    start = first[0]
    if algorithm == "gcra":
        # One unit every 0.1 s after the first.
        for n, (_, at) in enumerate(admitted, start=1):
            assert at - start == pytest.approx(0.1 * n, abs=CLOCK)
    else:
        # The window is full for one period, then all five fit at once.
        assert all(at - start == pytest.approx(1.0, abs=CLOCK) for _, at in admitted)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_max_wait_rejects_up_front_with_retry_after(
    backend: RedisBackend, algorithm: str
) -> None:
    limiter = make(backend, algorithm, rate=2, max_wait=0.2)
    await limiter.acquire(2 if algorithm == "sliding_window" else 1)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire()
    assert loop.time() - start < 0.1  # no time wasted waiting to fail
    assert caught.value.resource == "contract"
    # The wait from the moment Redis saw the request: the turn, less the time since.
    turn = 0.5 if algorithm == "gcra" else 1.0
    assert turn - 0.1 < caught.value.retry_after <= turn
    assert limiter.stats().rejected_total == 1
    assert limiter.stats().queued == 0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_max_queue_rejects_beyond_the_local_queue(
    backend: RedisBackend, algorithm: str
) -> None:
    limiter = make(backend, algorithm, rate=1, max_queue=1)
    await limiter.acquire()
    waiting = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.05)
    with pytest.raises(RateLimited):
        await limiter.acquire()
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert limiter.stats().queued == 0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_a_cancelled_reservation_is_given_back(backend: RedisBackend, algorithm: str) -> None:
    limiter = make(backend, algorithm, rate=5)
    seen: list[float] = []
    limiter.admission_observer = seen.append
    await limiter.acquire(5 if algorithm == "sliding_window" else 1)
    limiter.admission_observer = None  # the abandoned call takes the one-integer reply
    abandoned = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.05)  # its reservation is made and it sleeps on it
    abandoned.cancel()
    await asyncio.gather(abandoned, return_exceptions=True)
    await asyncio.sleep(0.05)  # the give-back reaches Redis
    other = make(backend, algorithm, rate=5)  # as if in another process
    other.admission_observer = seen.append
    await other.acquire()
    # It takes the abandoned turn, not the one after it.
    turn = 0.2 if algorithm == "gcra" else 1.0
    assert seen[1] - seen[0] == pytest.approx(turn, abs=CLOCK)


async def test_a_reservation_is_given_back_after_a_rate_change(backend: RedisBackend) -> None:
    # The state names its interval as sent ("200000.040000008" at this rate); the give-back
    # comes at 5/s ("200000.0", a prefix of it), so the script must see a changed rate
    # and still find the reservation it made.
    limiter = make(backend, "gcra", rate=4.999999)
    seen: list[float] = []
    limiter.admission_observer = seen.append
    await limiter.acquire()
    limiter.admission_observer = None
    abandoned = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.05)  # its reservation is made and it sleeps on it
    limiter.rate = 5
    abandoned.cancel()
    await asyncio.gather(abandoned, return_exceptions=True)
    await asyncio.sleep(0.05)  # the give-back reaches Redis
    other = make(backend, "gcra", rate=5)
    other.admission_observer = seen.append
    await other.acquire()
    # The abandoned turn (0.2 s after the first), not the one after it (0.4 s).
    assert seen[1] - seen[0] == pytest.approx(0.2, abs=1e-3)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_an_admission_at_once_reports_what_is_left(
    backend: RedisBackend, algorithm: str
) -> None:
    # Capacity 5, one unit back every 12 minutes: nothing drifts during the test.
    limiter = make(backend, algorithm, rate=5, per=3600.0, burst=5)
    await limiter.acquire()
    assert limiter.stats().available == pytest.approx(4, abs=1e-3)
    await limiter.acquire(4)  # exactly what is left: admitted at once, nothing left
    assert limiter.stats().available == pytest.approx(0, abs=1e-3)
    assert limiter.stats().admitted_total == 5


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_an_admission_after_a_wait_sleeps_it_and_leaves_nothing(
    backend: RedisBackend, algorithm: str
) -> None:
    # gcra: 20/s, burst 1 (a turn every 50 ms); window: 1 per 50 ms.
    limiter = make(
        backend, algorithm, **({"rate": 20} if algorithm == "gcra" else {"rate": 1, "per": 0.05})
    )
    waits: list[float] = []
    limiter.wait_observer = waits.append
    await limiter.acquire()
    loop = asyncio.get_running_loop()
    start = loop.time()
    await limiter.acquire()
    assert len(waits) == 1
    assert 0.03 < waits[0] <= 0.05
    assert loop.time() - start >= waits[0]
    assert limiter.stats().available == 0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_a_refusal_carries_retry_after_and_what_is_left(
    backend: RedisBackend, algorithm: str
) -> None:
    limiter = make(backend, algorithm, rate=5, per=3600.0, burst=5, max_wait=1.0)
    await limiter.acquire(3)
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire(5)  # weighs more than is left: refused, nothing reserved
    # gcra: three units to pay back at 12 min each; window: the first entry's hour.
    turn = 3 * 720.0 if algorithm == "gcra" else 3600.0
    assert caught.value.retry_after == pytest.approx(turn, abs=1.0)
    assert limiter.stats().available == pytest.approx(2, abs=1e-3)
    await limiter.acquire(2)  # the refusal took nothing
    with pytest.raises(ValueError, match="cost"):
        await limiter.acquire(6)  # more than the capacity: never admissible
    assert limiter.stats().rejected_total == 1


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_the_admission_observer_gets_the_redis_time_only_when_set(
    backend: RedisBackend, algorithm: str
) -> None:
    limiter = make(backend, algorithm, rate=100)
    await limiter.acquire()
    seen: list[float] = []
    limiter.admission_observer = seen.append
    await limiter.acquire()
    limiter.admission_observer = None
    await limiter.acquire()
    assert len(seen) == 1
    assert seen[0] == pytest.approx(time.time(), abs=1.0)  # Redis runs on this host


async def test_window_entries_expire_with_their_weight(backend: RedisBackend) -> None:
    limiter = make(backend, "sliding_window", rate=4, per=1.0)
    await limiter.acquire(2)
    await limiter.acquire(0.25)
    await asyncio.sleep(0.5)
    await limiter.acquire(1)
    await asyncio.sleep(0.6)  # the first two have left the window, the third has not
    await limiter.acquire(1)
    assert limiter.stats().available == pytest.approx(2, abs=1e-3)
    await limiter.refund(0.5)  # taken from the oldest entry: 0.5 of it stays
    assert limiter.stats().available == pytest.approx(2.5, abs=1e-3)
    await asyncio.sleep(1.0)  # every entry has left
    await limiter.acquire(1)
    assert limiter.stats().available == pytest.approx(3, abs=1e-3)


async def test_a_window_state_written_before_the_cost_count_still_reads(
    backend: RedisBackend,
) -> None:
    client = backend.client
    seconds, micros = await client.time()
    now = seconds * 1_000_000 + micros
    log, meta = backend.key("old", "log"), backend.key("old", "state")
    await client.zadd(log, {"a:2": now - 1_500_000, "b:1": now - 500_000})
    await client.set(meta, f"3 0 {now - 500_000}", px=10_000)  # three fields, no count
    limiter = make(backend, "sliding_window", rate=4, per=1.0, name="old")
    await limiter.acquire(1)  # "a" (cost 2) has expired, "b" has not
    assert limiter.stats().available == pytest.approx(2, abs=1e-3)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_try_acquire_weighted_costs_and_refund(backend: RedisBackend, algorithm: str) -> None:
    # Capacity 4 either way (burst 4, or 4 per window); nothing comes back for 10 s.
    limiter = make(backend, algorithm, rate=1 if algorithm == "gcra" else 4, per=10.0, burst=4)
    assert await limiter.try_acquire(4)
    assert not await limiter.try_acquire(1)
    await limiter.refund(2)
    assert await limiter.try_acquire(2)
    assert not await limiter.try_acquire(1)
    with pytest.raises(ValueError, match="cost"):
        await limiter.acquire(11)
    assert limiter.stats().admitted_total == 4


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_two_instances_share_one_limit(backend: RedisBackend, algorithm: str) -> None:
    first = make(backend, algorithm, rate=3, per=30.0, burst=3)
    second = make(backend, algorithm, rate=3, per=30.0, burst=3)
    assert await first.try_acquire(2)
    assert await second.try_acquire(1)
    assert not await second.try_acquire(1)
    assert not await first.try_acquire(1)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_throttle_applies_to_every_instance(backend: RedisBackend, algorithm: str) -> None:
    first = make(backend, algorithm, rate=100, burst=100)
    second = make(backend, algorithm, rate=100, burst=100)
    seconds, micros = await backend.client.time()
    before = seconds + micros / 1e6
    await first.throttle(0, 0.5)
    assert not await second.try_acquire(1)
    seen: list[float] = []
    second.admission_observer = seen.append
    await second.acquire()
    # Nothing until 0.5 s after the throttle reached Redis.
    assert before + 0.5 <= seen[0] < before + 0.6


async def test_live_rate_change_keeps_the_backlog_in_units(backend: RedisBackend) -> None:
    limiter = make(backend, "gcra", rate=1)
    await limiter.acquire()
    limiter.rate = 100
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(5):
        await limiter.acquire()
    # At 1/s the next unit would wait about a second; at 100/s five take about 0.05 s.
    assert loop.time() - start < 0.2


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_every_key_expires_and_shares_one_hash_slot(
    backend: RedisBackend, algorithm: str
) -> None:
    limiter = make(backend, algorithm, rate=10, name="keys")
    await limiter.acquire()
    keys = await backend.client.keys(f"{backend.prefix}*")
    assert keys
    for key in keys:
        assert b"{keys}" in key
        assert 0 < await backend.client.pttl(key) <= 3000


async def test_provider_limits_resync_on_the_shared_limiter(backend: RedisBackend) -> None:
    """`bounded.llm` works on any limiter with the RateLimiter interface."""
    this_process = ProviderLimits(rpm=600, period=60.0, name="openai")
    other_process = ProviderLimits(rpm=600, period=60.0, name="openai")
    for limits in (this_process, other_process):
        limits.limiters["requests"] = make(backend, "gcra", rate=600, per=60.0, name="openai")  # type: ignore[assignment]
    shared = other_process.limiters["requests"]
    assert isinstance(shared, RedisRateLimiter)
    await this_process.acquire(input_tokens=10, max_tokens=10)
    # A 429 seen by one process: nothing left for 30 s.
    this_process.update_from_headers(
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "30s"}
    )
    await asyncio.sleep(0.05)
    assert not await shared.try_acquire()
    shared.max_wait = 1.0
    with pytest.raises(RateLimited) as caught:
        await other_process.acquire(input_tokens=10, max_tokens=10)
    assert caught.value.retry_after == pytest.approx(30.0, abs=0.5)


async def test_more_callers_than_connections_wait_for_one(redis_url: str, prefix: str) -> None:
    async with RedisBackend(redis_url, prefix=prefix, max_connections=3) as small_pool:
        limiter = small_pool.rate_limiter(10_000, 1.0, name="crowd", burst=200)
        await asyncio.gather(*(limiter.acquire() for _ in range(200)))
        assert small_pool.errors_total == 0
        assert limiter.stats().admitted_total == 200
        await small_pool.client.delete(small_pool.key("crowd", "gcra"))


async def test_callers_cancelled_while_waiting_for_a_connection_leave_it_free(
    redis_url: str, prefix: str
) -> None:
    async with RedisBackend(redis_url, prefix=prefix, max_connections=1) as one:
        limiter = one.rate_limiter(10_000, 1.0, name="crowd", burst=200)
        tasks = [asyncio.create_task(limiter.acquire()) for _ in range(40)]
        await asyncio.sleep(0)  # one holds the connection, the others wait for it
        for task in tasks[1::2]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # A connection still counted as taken would stall these past the deadline.
        await asyncio.gather(*(limiter.acquire() for _ in range(20)))
        assert one.errors_total == 0
        assert limiter.stats().admitted_total == 40
        await one.client.delete(one.key("crowd", "gcra"))


class _Tagged(float):
    """A float whose repr is not a number (as numpy's float64 in numpy 2)."""

    def __repr__(self) -> str:
        return f"Tagged({float(self)})"


async def test_float_subclasses_reach_the_script_as_numbers(backend: RedisBackend) -> None:
    limiter = backend.rate_limiter(100, 1.0, name="numbers", burst=5)
    await limiter.acquire(_Tagged(1.5))
    await limiter.throttle(_Tagged(1), _Tagged(0.5))
    await limiter.refund(_Tagged(0.5))
    assert limiter.stats().admitted_total == 1.0
    assert backend.errors_total == 0
