"""RateLimiter guarantees, measured on virtual time (exact, instant)."""

from __future__ import annotations

import asyncio
import threading

import looptime
import pytest

from bounded import RateLimited, RateLimiter
from tests.limiters.windows import most_in_window, worst_gcra_excess

pytestmark = pytest.mark.looptime(end=600)


async def _admission_times(limiter: RateLimiter, costs: list[float]) -> list[float]:
    loop = asyncio.get_running_loop()
    times: list[float] = [0.0] * len(costs)

    async def one(i: int, cost: float) -> None:
        await limiter.acquire(cost)
        times[i] = loop.time()

    await asyncio.wait_for(asyncio.gather(*(one(i, c) for i, c in enumerate(costs))), 600)
    return times


@pytest.mark.parametrize("burst", [1, 5, 50])
async def test_gcra_never_exceeds_burst_plus_rate_in_any_window(burst: int) -> None:
    limiter = RateLimiter(200, 1.0, burst=burst)
    times = await _admission_times(limiter, [1.0] * 1000)
    assert worst_gcra_excess(times, [1.0] * 1000, burst, 200 / 1.0) <= 1e-6
    assert most_in_window(times, [1.0] * 1000, 1.0) <= burst + 200


async def test_sliding_window_never_exceeds_rate_in_any_window() -> None:
    limiter = RateLimiter(200, 1.0, algorithm="sliding_window")
    times = await _admission_times(limiter, [1.0] * 1000)
    assert most_in_window(times, [1.0] * 1000, 1.0) == 200


@pytest.mark.parametrize("algorithm", ["gcra", "sliding_window"])
async def test_saturated_throughput_is_within_one_percent_of_ideal(algorithm: str) -> None:
    limiter = RateLimiter(200, 1.0, algorithm=algorithm)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    start = loop.time()
    times = await _admission_times(limiter, [1.0] * 1000)
    elapsed = max(times) - start
    # gcra: one every 5 ms from t=0; sliding window: 200 per 1 s window from t=0.
    ideal = 999 / 200 if algorithm == "gcra" else 4.0
    assert elapsed == pytest.approx(ideal, rel=0.01)


async def test_gcra_with_burst_1_spaces_admissions_evenly() -> None:
    limiter = RateLimiter(60, 60.0)
    times = await _admission_times(limiter, [1.0] * 5)
    assert times == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0], abs=1e-5)


async def test_heavy_request_queued_first_is_admitted_first() -> None:
    limiter = RateLimiter(200, 1.0, burst=50)
    await limiter.acquire(50)  # the bucket is empty
    loop = asyncio.get_running_loop()
    start = loop.time()
    order: list[tuple[str, float]] = []

    async def request(tag: str, cost: float) -> None:
        await limiter.acquire(cost)
        order.append((tag, loop.time() - start))

    tasks = [asyncio.create_task(request("heavy", 50))]
    await asyncio.sleep(0)
    tasks += [asyncio.create_task(request(f"light{i}", 1)) for i in range(300)]
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    assert order[0][0] == "heavy"
    assert order[0][1] == pytest.approx(0.25, abs=1e-5)


@pytest.mark.parametrize(
    ("algorithm", "capacity_name"), [("gcra", "burst"), ("sliding_window", "rate")]
)
async def test_cost_above_capacity_is_a_value_error(algorithm: str, capacity_name: str) -> None:
    limiter = RateLimiter(10, 1.0, burst=5, algorithm=algorithm)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=capacity_name):
        await limiter.acquire(11)
    with pytest.raises(ValueError, match="cost"):
        await limiter.acquire(0)


@pytest.mark.parametrize("algorithm", ["gcra", "sliding_window"])
async def test_max_wait_rejects_up_front_with_the_exact_wait(algorithm: str) -> None:
    limiter = RateLimiter(10, 1.0, algorithm=algorithm, max_wait=0.35)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    if algorithm == "gcra":
        for _ in range(4):  # one now, then 0.1 s apart: the 5th would wait 0.4 s
            asyncio.get_running_loop().create_task(limiter.acquire())
        await asyncio.sleep(0)
        expected = 0.4
    else:
        for _ in range(10):
            await limiter.acquire()
        expected = 1.0
    start = loop.time()
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire()
    assert loop.time() == start  # no time was wasted waiting to fail
    assert caught.value.retry_after == pytest.approx(expected, abs=1e-5)
    assert limiter.stats().rejected_total == 1


async def test_refund_gives_units_back_but_never_beyond_capacity() -> None:
    limiter = RateLimiter(10, 1.0, burst=5)
    await limiter.acquire(5)
    assert limiter.stats().available == pytest.approx(0.0)
    limiter.refund(3)
    assert limiter.stats().available == pytest.approx(3.0)
    limiter.refund(100)
    assert limiter.stats().available == pytest.approx(5.0)


async def test_consume_goes_into_debt_and_delays_later_requests() -> None:
    limiter = RateLimiter(10, 1.0, burst=10, algorithm="gcra")
    loop = asyncio.get_running_loop()
    limiter.consume(30)  # 20 units beyond the bucket: 2 s of debt before 10 more fit
    start = loop.time()
    await limiter.acquire(10)
    assert loop.time() - start == pytest.approx(3.0, abs=1e-5)


@pytest.mark.parametrize("algorithm", ["gcra", "sliding_window"])
async def test_throttle_to_zero_blocks_until_the_reset(algorithm: str) -> None:
    limiter = RateLimiter(100, 1.0, burst=10, algorithm=algorithm)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    limiter.throttle(remaining=0, reset_after=0.75)
    start = loop.time()
    await limiter.acquire()
    assert loop.time() - start == pytest.approx(0.75, abs=1e-5)


@pytest.mark.parametrize("algorithm", ["gcra", "sliding_window"])
async def test_throttle_never_raises_what_is_available(algorithm: str) -> None:
    limiter = RateLimiter(100, 1.0, burst=10, algorithm=algorithm)  # type: ignore[arg-type]
    before = limiter.stats().available
    limiter.throttle(remaining=10_000, reset_after=1.0)
    assert limiter.stats().available == before


async def test_lowering_the_rate_slows_admissions_live() -> None:
    limiter = RateLimiter(100, 1.0)
    loop = asyncio.get_running_loop()
    await limiter.acquire()
    limiter.rate = 1
    start = loop.time()
    await limiter.acquire()
    await limiter.acquire()
    # The backlog of 10 ms (one unit at 100/s) is now one unit at 1/s.
    assert loop.time() - start == pytest.approx(2.0, abs=1e-5)


async def test_stats_describe_the_limiter() -> None:
    limiter = RateLimiter(60, 60.0, name="openai", algorithm="sliding_window")
    for _ in range(48):
        await limiter.acquire()
    stats = limiter.stats()
    assert (stats.name, stats.rate, stats.per) == ("openai", 60, 60.0)
    assert stats.admitted_total == 48
    assert stats.available == 12
    assert stats.utilization == pytest.approx(0.8)


async def test_wait_observer_sees_only_waits() -> None:
    limiter = RateLimiter(10, 1.0)
    waits: list[float] = []
    limiter.wait_observer = waits.append
    await limiter.acquire()
    await limiter.acquire()
    assert waits == [pytest.approx(0.1, abs=1e-5)]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rate": 0}, "rate"),
        ({"rate": -1}, "rate"),
        ({"rate": float("nan")}, "rate"),
        ({"rate": 1, "per": 0}, "per"),
        ({"rate": 1, "burst": 0.5}, "burst"),
        ({"rate": 1, "max_wait": -1}, "max_wait"),
        ({"rate": 1, "max_queue": -1}, "max_queue"),
        ({"rate": 1, "algorithm": "leaky"}, "algorithm"),
    ],
)
def test_constructor_names_the_bad_argument(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        RateLimiter(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", ["gcra", "sliding_window"])
async def test_throttle_to_zero_right_after_an_admission_still_waits_for_the_reset(
    algorithm: str,
) -> None:
    # The bucket is exactly empty when the server's "0 left, reset in 0.75 s" arrives:
    # the limiter must wait for the server's reset, not only for its own refill.
    limiter = RateLimiter(10, 1.0, algorithm=algorithm)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    for _ in range(1 if algorithm == "gcra" else 10):
        await limiter.acquire()
    if algorithm == "sliding_window":
        await asyncio.sleep(0.5)  # its own window frees at t=1.0, before the server's reset
    assert limiter.stats().available == 0
    limiter.throttle(remaining=0, reset_after=0.75)
    start = loop.time()
    await asyncio.wait_for(limiter.acquire(), 60)
    assert loop.time() - start == pytest.approx(0.75, abs=1e-5)


async def test_throttle_keeps_the_window_full_until_the_reset() -> None:
    # Entries admitted at t=0 would expire at t=1.0, but the server resets at t=1.5.
    limiter = RateLimiter(10, 1.0, algorithm="sliding_window")
    loop = asyncio.get_running_loop()
    for _ in range(10):
        await limiter.acquire()
    await asyncio.sleep(0.5)
    limiter.throttle(remaining=2, reset_after=1.0)
    start = loop.time()
    times = []
    for _ in range(3):
        await asyncio.wait_for(limiter.acquire(), 60)
        times.append(loop.time() - start)
    # two more fit before the reset, the third waits for it
    assert times[:2] == pytest.approx([0.5, 0.5], abs=1e-5)
    assert times[2] >= 1.0 - 1e-5


async def test_a_waiter_whose_cost_stops_fitting_the_window_gets_a_value_error() -> None:
    # Issue 8, item 2: the timer re-fired at the same instant forever.
    limiter = RateLimiter(5, 1.0, algorithm="sliding_window")
    loop = asyncio.get_running_loop()
    await limiter.acquire(5)
    too_big = asyncio.create_task(limiter.acquire(5))
    await asyncio.sleep(0)
    behind = asyncio.create_task(limiter.acquire(2))
    await asyncio.sleep(0.1)
    limiter.rate = 3
    with pytest.raises(ValueError, match="cost"):
        await asyncio.wait_for(too_big, 60)
    await asyncio.wait_for(behind, 60)
    assert loop.time() == pytest.approx(1.0, abs=1e-5)  # when the first 5 units expired
    assert limiter.stats().queued == 0


async def test_a_waiter_whose_cost_stops_fitting_the_burst_gets_a_value_error() -> None:
    limiter = RateLimiter(10, 1.0, burst=5)
    loop = asyncio.get_running_loop()
    await limiter.acquire(5)
    too_big = asyncio.create_task(limiter.acquire(5))
    await asyncio.sleep(0)
    behind = asyncio.create_task(limiter.acquire(1))
    await asyncio.sleep(0)
    limiter.burst = 2
    with pytest.raises(ValueError, match="burst"):
        await asyncio.wait_for(too_big, 60)
    await asyncio.wait_for(behind, 60)
    # 5 units at 10/s drain at 0.5 s; with a burst of 2 one unit fits 0.1 s earlier.
    assert loop.time() == pytest.approx(0.4, abs=1e-5)


@pytest.mark.parametrize(
    ("rate", "per"),
    [(1.0e-300, 1.0e300), (5e-324, 1e308), (1e308, 1e-308)],
)
@pytest.mark.parametrize("algorithm", ["gcra", "sliding_window"])
def test_a_rate_whose_spacing_cannot_be_computed_is_refused(
    rate: float, per: float, algorithm: str
) -> None:
    # Issue 8, item 3: these passed validation, then the first acquire spun forever.
    with pytest.raises(ValueError, match=r"rate=.*per="):
        RateLimiter(rate, per, algorithm=algorithm)  # type: ignore[arg-type]


def test_live_setters_refuse_what_cannot_be_computed_and_change_nothing() -> None:
    limiter = RateLimiter(10, 1e10, burst=2)
    with pytest.raises(ValueError, match="rate="):
        limiter.rate = 1e-320
    assert limiter.rate == 10
    with pytest.raises(ValueError, match="rate="):
        limiter.burst = 1e308
    assert limiter.burst == 2


async def test_a_rate_decrease_after_a_throttle_does_not_stretch_the_pause() -> None:
    # Issue 8, item 7: the pause was rescaled as if it were units (next admission at 12 s).
    limiter = RateLimiter(16, 1.0, burst=4)
    loop = asyncio.get_running_loop()
    limiter.throttle(0, 1.5)
    limiter.rate = 2
    start = loop.time()
    await asyncio.wait_for(limiter.acquire(), 60)
    assert loop.time() - start == pytest.approx(1.5, abs=1e-5)  # the server's reset
    await asyncio.wait_for(limiter.acquire(), 60)
    assert loop.time() - start == pytest.approx(2.0, abs=1e-5)  # then one interval at 2/s


async def test_a_rate_decrease_keeps_a_debt_in_units() -> None:
    limiter = RateLimiter(10, 1.0)
    loop = asyncio.get_running_loop()
    limiter.consume(10)  # 1 s of debt at 10/s
    limiter.throttle(0, 0.5)  # shorter than the debt: changes nothing
    limiter.rate = 5
    start = loop.time()
    await asyncio.wait_for(limiter.acquire(), 60)
    assert loop.time() - start == pytest.approx(2.0, abs=1e-5)  # 10 units at 5/s


def test_live_changes_outside_a_running_loop_apply_completely() -> None:
    # Issue 8, item 9: `rate` changed, then "no running event loop", and the algorithm
    # kept the old pace. Outside a loop the change now applies, on asyncio's clock.
    limiter = RateLimiter(100, 1.0, burst=10)
    limiter.rate = 1
    limiter.consume(10)
    assert limiter.stats().available == pytest.approx(0.0, abs=1e-3)
    limiter.refund(4)
    assert limiter.stats().available == pytest.approx(4.0, abs=1e-3)
    limiter.throttle(0, 3600)
    assert limiter.stats().available == 0

    async def in_a_loop() -> bool:
        return limiter.try_acquire()

    assert asyncio.run(in_a_loop()) is False  # the same clock: the throttle holds


def test_a_new_rate_set_before_any_loop_runs_is_the_pace_in_the_loop() -> None:
    limiter = RateLimiter(100, 1.0)
    limiter.rate = 1
    loop = looptime.new_event_loop(start=0)

    async def two() -> float:
        await limiter.acquire()
        await limiter.acquire()
        return asyncio.get_running_loop().time()

    try:
        assert loop.run_until_complete(asyncio.wait_for(two(), 60)) == pytest.approx(1.0)
    finally:
        loop.close()


def test_a_change_from_another_thread_while_requests_wait_is_refused_whole() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    limiter = RateLimiter(1, 60.0)
    try:
        asyncio.run_coroutine_threadsafe(limiter.acquire(), loop).result(10)
        waiting = asyncio.run_coroutine_threadsafe(limiter.acquire(), loop)
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(10)
        assert limiter.stats().queued == 1
        for change in (
            lambda: setattr(limiter, "rate", 20),
            lambda: limiter.refund(1),
            lambda: limiter.consume(1),
            lambda: limiter.throttle(0, 1),
        ):
            with pytest.raises(RuntimeError, match="call_soon_threadsafe"):
                change()
        assert limiter.rate == 1
        assert limiter.stats().admitted_total == 1
        waiting.cancel()
        for _ in range(3):  # let the cancelled task finish before the loop stops
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(10)
        assert limiter.stats().queued == 0
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def test_a_request_admitted_but_not_yet_resumed_does_not_hold_back_newcomers() -> None:
    # The queued count used to include it until it ran: try_acquire() refused and
    # newcomers queued behind nobody.
    limiter = RateLimiter(1, 60.0, burst=5)
    await limiter.acquire(5)
    waiter = asyncio.create_task(limiter.acquire(2))
    await asyncio.sleep(0)
    limiter.refund(5)  # admits `waiter` at once; it has not resumed yet
    assert limiter.stats().queued == 0
    assert limiter.try_acquire(3)
    await asyncio.wait_for(waiter, 60)


async def test_cancelled_waiters_do_not_pile_up_behind_a_long_wait() -> None:
    limiter = RateLimiter(1, 1.0)
    await limiter.acquire()
    limiter.throttle(0, 3600)  # the head will wait an hour
    head = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    for _ in range(1000):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await limiter.acquire()
    assert limiter.stats().queued == 1
    assert len(limiter._waiters) <= 2 + 16  # bounded by the live queue, not by traffic
    head.cancel()
    await asyncio.gather(head, return_exceptions=True)
