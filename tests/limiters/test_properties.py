"""Invariants under random schedules (Hypothesis), each example on a virtual-time loop.

- Bulkhead: a grant never takes in_use above the limit of the moment, in_use always
  equals the number of real holders (no leaked or lost permit), and once holders let go
  every surviving waiter is served (nobody stranded); with cancellations, grants and
  releases racing within one loop iteration, a free slot never sits beside a live
  waiter and nobody is overtaken.
- RateLimiter: whatever the arrival times, costs and cancellations, the admissions that
  callers saw never break the algorithm's window guarantee, and the queue drains.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import looptime
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bounded import Bulkhead, RateLimited, RateLimiter
from bounded.ratelimit.gcra import Gcra
from bounded.ratelimit.limiter import LATENESS_ALLOWANCE
from bounded.ratelimit.sliding_window import RESOLUTION, SlidingWindow
from tests.limiters.windows import most_in_window, worst_gcra_excess

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_virtual(coro: Coroutine[Any, Any, None]) -> None:
    loop = looptime.new_event_loop(start=0)
    try:
        # A stranded waiter fails the example instead of hanging it.
        loop.run_until_complete(asyncio.wait_for(coro, timeout=10_000))
    finally:
        loop.close()


bulkhead_ops = st.lists(
    st.one_of(
        st.tuples(st.just("spawn"), st.integers(0, 0)),
        st.tuples(st.just("cancel"), st.integers(0, 50)),
        st.tuples(st.just("release"), st.integers(0, 50)),
        # release (which grants the oldest waiter at once), then cancel that waiter
        # before it runs: the grant-then-cancel race
        st.tuples(st.just("release_cancel"), st.integers(0, 50)),
        st.tuples(st.just("resize"), st.integers(1, 6)),
        st.tuples(st.just("sleep"), st.integers(1, 3)),
    ),
    max_size=60,
)


@SETTINGS
@given(
    limit=st.integers(1, 5),
    max_queue=st.one_of(st.none(), st.integers(0, 8)),
    max_wait=st.one_of(st.none(), st.sampled_from([0.0, 0.5, 2.0])),
    ops=bulkhead_ops,
)
def test_bulkhead_never_exceeds_never_leaks_never_strands(
    limit: int, max_queue: int | None, max_wait: float | None, ops: list[tuple[str, int]]
) -> None:
    async def scenario() -> None:
        bh = Bulkhead(limit, max_queue=max_queue, max_wait=max_wait)
        holders: list[asyncio.Event] = []  # set one to make its holder let go
        tasks: list[asyncio.Task[None]] = []
        holding: set[asyncio.Task[None] | None] = set()
        violations: list[str] = []
        limits = [limit]  # every limit in force: a shrink does not take back a granted slot

        async def worker() -> None:
            since = len(limits) - 1
            await bh.acquire()
            holding.add(asyncio.current_task())  # type: ignore[arg-type]
            ceiling = max(limits[since:])
            if bh.in_use > ceiling:
                violations.append(f"granted at in_use={bh.in_use} > every limit since ({ceiling})")
            released = asyncio.Event()
            holders.append(released)
            try:
                await released.wait()
            finally:
                if released in holders:  # cancelled while holding: release on the way out
                    holders.remove(released)
                    bh.release()

        def release(index: int) -> None:
            released = holders.pop(index % len(holders))
            bh.release()  # synchronously grants the oldest waiter, if any
            released.set()

        for op, arg in ops:
            if op == "spawn":
                tasks.append(asyncio.create_task(worker()))
            elif op == "cancel" and tasks:
                tasks[arg % len(tasks)].cancel()
            elif op == "release" and holders:
                release(arg)
            elif op == "release_cancel" and holders:
                release(arg)
                waiting = [t for t in tasks if not t.done() and t not in holding]
                if waiting:
                    waiting[0].cancel()
            elif op == "resize":
                bh.limit = arg
                limits.append(arg)
            elif op == "sleep":
                await asyncio.sleep(arg * 0.4)
            for _ in range(3):
                await asyncio.sleep(0)
            assert bh.in_use == len(holders), "a permit leaked or was lost"
            assert not violations, violations

        # Let everything go: every surviving waiter must get its turn.
        while any(not t.done() for t in tasks):
            while holders:
                release(0)
            await asyncio.sleep(0.1)
        await asyncio.gather(*tasks, return_exceptions=True)
        assert not violations, violations
        stats = bh.stats()
        assert (stats.in_use, stats.queued) == (0, 0)

    run_virtual(scenario())


# Operations applied back to back, with no loop iteration in between unless "settle":
# this is where a waiter is cancelled or granted and a slot freed before it resumes.
# A queued waiter is cancelled, a newcomer arrives and a slot frees before it resumes.
STRANDING_RACE = [("spawn", 0), ("cancel", 0), ("release", 0), ("settle", 0)]
race_ops = st.lists(
    st.one_of(
        st.just(("spawn", 0)),
        st.tuples(st.just("cancel"), st.integers(0, 50)),
        st.tuples(st.just("release"), st.integers(0, 50)),
        st.tuples(st.just("resize"), st.integers(1, 4)),
        st.just(("settle", 0)),
    ),
    max_size=80,
)


@SETTINGS
@given(limit=st.integers(1, 3), ops=race_ops)
@example(limit=1, ops=[("spawn", 0), ("spawn", 0), ("settle", 0), *STRANDING_RACE])
# Granted under a raised limit, then the limit shrinks before the waiter resumes: legal.
@example(limit=1, ops=[("spawn", 0), ("spawn", 0), ("settle", 0), ("resize", 2), ("resize", 1)])
def test_bulkhead_never_strands_a_waiter_and_never_lets_one_be_overtaken(
    limit: int, ops: list[tuple[str, int]]
) -> None:
    async def scenario() -> None:
        bh = Bulkhead(limit)
        arrived: list[int] = []  # worker ids, in the order they reached acquire()
        holding: list[int] = []  # worker ids holding a slot, in grant order
        let_go: dict[int, asyncio.Event] = {}
        cancelled: set[int] = set()
        tasks: list[asyncio.Task[None]] = []
        violations: list[str] = []
        suspects: list[tuple[int, set[int]]] = []
        # Every limit in force, in order: a waiter may be granted under any limit set
        # since it arrived, and a shrink does not take back a slot already granted.
        limits = [limit]

        def waiting() -> list[int]:
            return [
                i for i in arrived if i not in let_go and i not in cancelled and not tasks[i].done()
            ]

        async def worker(me: int) -> None:
            arrived.append(me)
            since = len(limits) - 1
            await bh.acquire()
            ceiling = max(limits[since:])
            if bh.in_use > ceiling:
                violations.append(f"granted at in_use={bh.in_use} > every limit since ({ceiling})")
            # Earlier arrivals not seen holding yet: granted before us but not resumed, or
            # overtaken. `settle` tells which.
            earlier = {i for i in waiting() if arrived.index(i) < arrived.index(me)}
            if earlier:
                suspects.append((me, earlier))
            holding.append(me)
            let_go[me] = asyncio.Event()
            try:
                await let_go[me].wait()
            finally:
                if me in holding:  # cancelled while holding: release on the way out
                    release(me)

        def release(me: int) -> None:
            # Synchronous, like a holder leaving `async with`: the slot is handed on now.
            holding.remove(me)
            bh.release()
            let_go[me].set()

        async def settle() -> None:
            for _ in range(4):
                await asyncio.sleep(0)
            for me, earlier in suspects:
                overtaken = earlier & set(waiting())
                assert not overtaken, f"worker {me} was granted before {overtaken}"
            suspects.clear()
            assert not violations, violations
            assert bh.in_use == len(holding), "a permit leaked or was lost"
            if bh.in_use < bh.limit:
                assert not waiting(), f"free slot while {waiting()} wait"

        for op, arg in ops:
            if op == "spawn":
                tasks.append(asyncio.create_task(worker(len(tasks))))
            elif op == "cancel" and waiting():
                index = waiting()[arg % len(waiting())]
                cancelled.add(index)
                tasks[index].cancel()
            elif op == "release" and holding:
                release(holding[arg % len(holding)])
            elif op == "resize":
                bh.limit = arg
                limits.append(arg)
            elif op == "settle":
                await settle()
        await settle()
        while any(not t.done() for t in tasks):
            while holding:
                release(holding[0])
            await settle()
        stats = bh.stats()
        assert (stats.in_use, stats.queued) == (0, 0)

    run_virtual(scenario())


arrivals = st.lists(
    st.tuples(
        st.floats(0, 3, allow_nan=False),  # arrival time
        st.integers(1, 5),  # cost
        st.one_of(st.none(), st.floats(0, 3, allow_nan=False)),  # cancel after
    ),
    min_size=1,
    max_size=40,
)


@SETTINGS
@given(
    algorithm=st.sampled_from(["gcra", "sliding_window"]),
    rate=st.sampled_from([5.0, 10.0, 50.0]),
    per=st.sampled_from([0.5, 1.0]),
    burst=st.integers(5, 10),
    requests=arrivals,
)
def test_rate_guarantee_holds_under_random_arrivals_costs_and_cancellation(
    algorithm: str,
    rate: float,
    per: float,
    burst: int,
    requests: list[tuple[float, int, float | None]],
) -> None:
    async def scenario() -> None:
        limiter = RateLimiter(
            rate,
            per,
            burst=burst,
            algorithm=algorithm,  # type: ignore[arg-type]
        )
        loop = asyncio.get_running_loop()
        start = loop.time()
        times: list[float] = []
        costs: list[float] = []

        async def request(at: float, cost: int) -> None:
            await asyncio.sleep(at)
            await limiter.acquire(cost)
            times.append(loop.time() - start)
            costs.append(cost)

        tasks = []
        for at, cost, cancel_after in requests:
            if cost > limiter.burst:
                continue
            task = asyncio.create_task(request(at, cost))
            tasks.append(task)
            if cancel_after is not None:
                loop.call_later(at + cancel_after, task.cancel)
        await asyncio.gather(*tasks, return_exceptions=True)

        if algorithm == "gcra":
            assert worst_gcra_excess(times, costs, burst, rate / per) <= 1e-6
        else:
            assert most_in_window(times, costs, per) <= rate
        assert limiter.stats().queued == 0

    run_virtual(scenario())


@SETTINGS
@given(
    rate=st.sampled_from([3.0, 10.0, 40.0]),
    per=st.sampled_from([0.5, 1.0]),
    # On a grid of half a bucket (per / 2000): admissions share buckets, and straddle
    # their edges, in every way. Clustered a few buckets after multiples of per / 2, so
    # that a full window frees while later admissions of the same bucket still count.
    requests=st.lists(
        st.tuples(
            st.one_of(
                st.integers(0, 6000),
                st.builds(lambda half, k: half * 1000 + k, st.integers(0, 4), st.integers(0, 2)),
            ),
            st.integers(1, 3),
            st.booleans(),
        ),
        min_size=1,
        max_size=60,
    ),
)
# Two admissions in one bucket fill the window; what waits for them must wait for the later.
@example(rate=3.0, per=1.0, requests=[(0, 1, False), (1, 2, False), (1000, 3, False)])
def test_coalesced_sliding_window_never_admits_more_than_rate_in_any_window(
    rate: float, per: float, requests: list[tuple[int, int, bool]]
) -> None:
    async def scenario() -> None:
        limiter = RateLimiter(rate, per, algorithm="sliding_window")
        loop = asyncio.get_running_loop()
        start = loop.time()
        times: list[float] = []
        costs: list[float] = []

        async def request(step: int, cost: int) -> None:
            await asyncio.sleep(step * per / 2000)
            await limiter.acquire(cost)
            times.append(loop.time() - start)
            costs.append(cost)

        tasks = []
        for step, cost, cancel in requests:
            task = asyncio.create_task(request(step, cost))
            tasks.append(task)
            if cancel:
                loop.call_later(step * per / 2000 + per / 3, task.cancel)
        await asyncio.gather(*tasks, return_exceptions=True)
        assert most_in_window(times, costs, per) <= rate
        assert limiter.stats().queued == 0
        # Bounded by construction: one bucket per per / RESOLUTION at most.
        assert len(limiter._algorithm._log) <= RESOLUTION + 1  # type: ignore[attr-defined]

    run_virtual(scenario())


@SETTINGS
@given(
    algorithm=st.sampled_from(["gcra", "sliding_window"]),
    rate=st.sampled_from([5.0, 20.0]),
    burst=st.integers(3, 6),
    requests=st.lists(
        st.tuples(
            st.floats(0, 2, allow_nan=False),  # arrival time
            st.integers(1, 3),  # cost
            st.one_of(st.none(), st.floats(0, 2, allow_nan=False)),  # cancel after
        ),
        min_size=1,
        max_size=30,
    ),
)
def test_projected_admission_is_when_the_request_is_admitted(
    algorithm: str,
    rate: float,
    burst: int,
    requests: list[tuple[float, int, float | None]],
) -> None:
    """The wait `max_wait` is checked against is the real one: never early (a request
    accepted by `max_wait` is admitted in time) and, unless a request ahead left the
    queue, not late (for the sliding window: by at most two of its buckets)."""
    per = 1.0
    tolerance = 1e-5 if algorithm == "gcra" else 2 * per / RESOLUTION + 1e-5

    async def scenario() -> None:
        limiter = RateLimiter(rate, per, burst=burst, algorithm=algorithm)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        cancelled_any = False
        errors: list[str] = []

        async def request(at: float, cost: int) -> None:
            nonlocal cancelled_any
            await asyncio.sleep(at)
            limiter.max_wait = 0.0  # a probe: refused with the projected wait, changes nothing
            try:
                await limiter.acquire(cost)
            except RateLimited as refused:
                projected = refused.retry_after or 0.0
            else:
                return  # admitted at once
            limiter.max_wait = None
            started = loop.time()
            await limiter.acquire(cost)
            waited = loop.time() - started
            if waited > projected + tolerance:
                errors.append(f"admitted after {waited}, projected {projected}")
            if not cancelled_any and waited < projected - tolerance:
                errors.append(f"admitted after {waited}, projected {projected} (late)")

        def cancel(task: asyncio.Task[None]) -> None:
            nonlocal cancelled_any
            if not task.done():
                cancelled_any = True
                task.cancel()

        tasks = []
        for at, cost, cancel_after in requests:
            if cost > limiter.burst:
                continue
            task = asyncio.create_task(request(at, cost))
            tasks.append(task)
            if cancel_after is not None:
                loop.call_later(at + cancel_after, cancel, task)
        await asyncio.gather(*tasks, return_exceptions=True)
        assert not errors, errors

    run_virtual(scenario())


@SETTINGS
@given(
    rate=st.sampled_from([100.0, 1_000.0, 20_000.0]),
    burst=st.integers(1, 4),
    # How late each timer fires, in multiples of the allowance.
    lateness=st.lists(st.floats(0, 4, allow_nan=False), min_size=1, max_size=200),
)
def test_late_timers_admit_every_due_request_within_the_widened_gcra_bound(
    rate: float, burst: int, lateness: list[float]
) -> None:
    """What `RateLimiter` does when its timer fires late: every queued request due by
    then is admitted in one batch, counted from when it was due but no further back
    than the allowance (or half an interval, if longer). Pace is lost only beyond it, and
    no window of length t holds more than burst + rate * (t + allowance)."""
    gcra = Gcra(rate, 1.0, burst)
    interval = 1.0 / rate
    allowance = max(LATENESS_ALLOWANCE, interval / 2)
    assert gcra.try_admit(1, 0.0)  # the first request never waits
    times = [0.0]
    now = 0.0
    lost = 0.0
    for late in lateness:
        now = gcra.admissible_at(1, now) + late * LATENESS_ALLOWANCE
        lost += max(0.0, late * LATENESS_ALLOWANCE - allowance)
        while gcra.admit_queued(1, now, now - LATENESS_ALLOWANCE):
            times.append(now)
    widened = burst + rate * allowance
    assert worst_gcra_excess(times, [1.0] * len(times), widened, rate) <= 1e-6
    # Pace: the schedule (when the bucket is next full) slipped only by the lateness
    # beyond the allowance.
    schedule = gcra.admissible_at(burst, 0.0)
    assert len(times) * interval - 1e-9 <= schedule <= len(times) * interval + lost + 1e-9


window_ops = st.lists(
    st.tuples(
        st.sampled_from(["admit", "admit", "admit", "force", "refund", "throttle"]),
        st.floats(0, 0.004, allow_nan=False),  # time step, in units of per
        st.floats(0.01, 3, allow_nan=False),  # cost, remaining or refund
        st.floats(0, 1.5, allow_nan=False),  # reset_after, in units of per
    ),
    max_size=400,
)


@SETTINGS
@given(per=st.sampled_from([0.5, 60.0]), rate=st.sampled_from([3.0, 1_000.0]), ops=window_ops)
def test_sliding_window_buckets_stay_ordered_counted_and_bounded(
    per: float, rate: float, ops: list[tuple[str, float, float, float]]
) -> None:
    window = SlidingWindow(rate, per)
    now = 0.0
    for op, step, amount, reset in ops:
        now += step * per
        if op == "admit":
            window.try_admit(min(amount, rate), now)
        elif op == "force":
            window.force(amount, now)
        elif op == "refund":
            window.refund(amount, now)
        else:
            window.throttle(amount, reset * per, now)
        buckets = list(window._log)
        expiries = [bucket[1] for bucket in buckets]
        assert expiries == sorted(expiries), "buckets out of expiry order"
        assert all(bucket[2] > 0 for bucket in buckets)
        assert window._used == pytest.approx(sum(bucket[2] for bucket in buckets), abs=1e-6)
        assert len(buckets) <= 2 * RESOLUTION + 2
        assert 0 <= window.available(now) <= rate
