"""The open and closed models on virtual time: arrival times, CO correction, accounting."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import looptime
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bounded.errors import BulkheadFull, CircuitOpen
from bounded.http import RetryableHTTPError
from bounded.stress import ERROR_CLASSES, RunResult, constant, run_closed, run_open, step
from bounded.stress.accounting import Tally

LOOPTIME = pytest.mark.looptime(noop_cycles=1)
TOL = 2e-6  # looptime keeps whole microseconds; HDR keeps 3 significant digits


def assert_accounted(result: RunResult) -> None:
    assert result.lost == 0
    assert result.scheduled == result.succeeded + result.failed_total + result.dropped
    assert result.to_json()["accounting"]["identity_holds"]


@LOOPTIME
async def test_open_model_starts_requests_at_their_exact_intended_times() -> None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    starts: list[tuple[int, float]] = []

    async def call(index: int, rng: random.Random) -> None:
        starts.append((index, loop.time() - t0))
        await asyncio.sleep(0.005)

    result = await run_open(call, step([100, 200], 1.0))
    expected = [i / 100 for i in range(100)] + [1 + i / 200 for i in range(200)]
    assert [i for i, _ in starts] == list(range(300))
    assert [t for _, t in starts] == pytest.approx(expected, abs=TOL)
    assert result.scheduled == result.succeeded == 300
    assert result.lateness["max"] == pytest.approx(0, abs=TOL)
    assert result.latency["p50"] == pytest.approx(0.005, rel=1e-3)
    assert [i.scheduled for i in result.timeline] == [100, 200]
    assert result.elapsed == pytest.approx(2.0, abs=TOL)  # the last one, due at 1.995, ends at 2.0
    assert result.throughput == pytest.approx(150)
    assert_accounted(result)


@LOOPTIME
async def test_latency_is_measured_from_the_intended_start_through_a_stall() -> None:
    # A single-connection server: 1 ms per request, except request 50 (due at 0.5 s) stalls
    # it for 1 s. The 100 requests due during the stall queue behind it.
    lock = asyncio.Lock()

    async def call(index: int, rng: random.Random) -> None:
        async with lock:
            await asyncio.sleep(1.0 if index == 50 else 0.001)

    result = await run_open(call, constant(100, 2.0), max_in_flight=1000)
    # Intended start of request i is i/100; completions after the stall drain 1 ms apart.
    expected = []
    for i in range(200):
        due = i / 100
        if i < 50 or i > 150:
            expected.append(0.001)
        else:
            expected.append(1.5 + (i - 50) * 0.001 - due)
    expected.sort()
    for p in (50, 90, 99):
        want = expected[max(0, -(-p * len(expected) // 100) - 1)]
        assert result.latency[f"p{p}"] == pytest.approx(want, rel=1e-3, abs=TOL)
    assert result.latency["max"] == pytest.approx(1.001, rel=1e-3)
    # Service time (from the actual start) hides the queueing: only the stall itself is slow.
    assert result.service_time["p90"] == pytest.approx(max(expected[179], 0), rel=1e-3)
    assert result.succeeded == 200
    assert_accounted(result)


@LOOPTIME
async def test_generator_stall_shows_as_lateness_and_latency() -> None:
    # The loop is blocked for 0.25 s: requests due meanwhile start late, and their latency
    # counts the delay although the target answers at once.
    loop = asyncio.get_running_loop()
    blocker = asyncio.Event()

    async def call(index: int, rng: random.Random) -> None:
        if index == 10:
            blocker.set()

    async def hog() -> None:
        await blocker.wait()
        # A CPU-bound section: the clock jumps 0.25 s while nothing else runs.
        loop.setup_looptime(start=loop.time() + 0.25, noop_cycles=1)  # type: ignore[attr-defined]

    task = asyncio.create_task(hog())
    result = await run_open(call, constant(100, 1.0))
    await task
    # The stall begins at 0.10 s; request 11 was due at 0.11 and starts at 0.35.
    assert result.lateness["max"] == pytest.approx(0.24, rel=1e-3)
    assert result.latency["max"] == pytest.approx(0.24, rel=1e-3)
    assert result.lateness["p50"] <= 1e-6  # the histogram floor
    assert result.service_time["max"] < 0.001
    assert_accounted(result)


@LOOPTIME
async def test_requests_beyond_max_in_flight_are_dropped_and_counted() -> None:
    async def call(index: int, rng: random.Random) -> None:
        await asyncio.sleep(1.0)

    # 10/s for 1 s, each takes 1 s, at most 3 in flight: 3 start, 7 are dropped.
    result = await run_open(call, constant(10, 1.0), max_in_flight=3)
    assert (result.scheduled, result.succeeded, result.dropped) == (10, 3, 7)
    assert_accounted(result)


@LOOPTIME
async def test_errors_are_classified() -> None:
    errors: list[BaseException] = [
        BulkheadFull("db", retry_after=0.5),
        BulkheadFull("db"),
        CircuitOpen("rag", retry_after=3),
        TimeoutError(),
        RetryableHTTPError(429, 1.0),
        RetryableHTTPError(503),
        RetryableHTTPError(529),
        KeyError("x"),
    ]

    async def call(index: int, rng: random.Random) -> None:
        if index < len(errors):
            raise errors[index]

    result = await run_open(call, constant(10, 1.0))
    assert result.failed == {
        "rejected": 2,
        "timeout": 1,
        "upstream_429": 1,
        "upstream_5xx": 2,
        "breaker_open": 1,
        "other": 1,
    }
    assert result.rejected_without_retry_after == 1
    assert result.succeeded == 2
    assert_accounted(result)


@LOOPTIME
async def test_per_call_timeout_and_grace() -> None:
    async def call(index: int, rng: random.Random) -> None:
        await asyncio.sleep(100 if index % 2 else 0.01)

    with_timeout = await run_open(call, constant(10, 1.0), request_timeout=2.0, grace=30)
    assert with_timeout.failed["timeout"] == 5
    assert with_timeout.succeeded == 5
    assert with_timeout.elapsed == pytest.approx(0.9 + 2.0, abs=TOL)
    cut_by_grace = await run_open(call, constant(10, 1.0), grace=1.0)
    assert cut_by_grace.failed["timeout"] == 5
    assert cut_by_grace.succeeded == 5
    assert cut_by_grace.elapsed == pytest.approx(2.0, abs=TOL)
    assert_accounted(with_timeout)
    assert_accounted(cut_by_grace)


@LOOPTIME
async def test_closed_model_users_and_think_time() -> None:
    loop = asyncio.get_running_loop()
    seen: Counter[int] = Counter()

    async def call(index: int, rng: random.Random) -> None:
        seen[round(loop.time() * 1000)] += 1
        await asyncio.sleep(0.1)

    result = await run_closed(call, users=3, duration=1.0, think_time=0.1)
    # Each user: call at 0, 0.2, 0.4, 0.6, 0.8 -> 5 calls, 15 in all, 3 at a time.
    assert result.scheduled == result.succeeded == 15
    assert set(seen.values()) == {3}
    assert result.latency["p99"] == pytest.approx(0.1, rel=1e-3)
    assert_accounted(result)


@LOOPTIME
async def test_cancelling_a_run_cancels_its_requests_and_leaves_no_task() -> None:
    started = asyncio.Event()

    async def call(index: int, rng: random.Random) -> None:
        started.set()
        await asyncio.sleep(100)

    run = asyncio.create_task(run_open(call, constant(10, 5.0)))
    await started.wait()
    await asyncio.sleep(1)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert asyncio.all_tasks() == {asyncio.current_task()}


@LOOPTIME
async def test_each_request_gets_its_own_seeded_rng() -> None:
    draws: dict[int, float] = {}

    async def call(index: int, rng: random.Random) -> None:
        await asyncio.sleep(rng.random() / 10)
        draws[index] = rng.random()

    await run_open(call, constant(20, 1.0), seed=7)
    first = dict(draws)
    draws.clear()
    await run_open(call, constant(20, 1.0), seed=7)
    assert draws == first
    await run_open(call, constant(20, 1.0), seed=8)
    assert draws != first


# What a request does: succeed after a delay, raise a classified error, be cancelled from
# inside, or hang (ended by the per-call timeout or by the grace period).
BEHAVIOURS = st.lists(
    st.tuples(
        st.sampled_from(["ok", "reject", "timeout", "http500", "cancel", "hang", "other"]),
        st.integers(0, 300),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BEHAVIOURS, st.integers(1, 8), st.sampled_from([None, 0.2]))
def test_every_request_ends_exactly_once(
    plan: list[tuple[str, int]], max_in_flight: int, timeout: float | None
) -> None:
    async def call(index: int, rng: random.Random) -> None:
        kind, ms = plan[index % len(plan)]
        await asyncio.sleep(ms / 1000)
        if kind == "reject":
            raise BulkheadFull("x", retry_after=0.1)
        if kind == "timeout":
            raise TimeoutError
        if kind == "http500":
            raise RetryableHTTPError(500)
        if kind == "cancel":
            inner: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            inner.cancel()
            await inner
        if kind == "hang":
            await asyncio.sleep(3600)
        if kind == "other":
            raise ValueError(kind)

    async def main() -> RunResult:
        return await run_open(
            call, constant(40, 1.0), max_in_flight=max_in_flight, request_timeout=timeout, grace=0.5
        )

    loop = looptime.new_event_loop(start=0, noop_cycles=1)
    try:
        result = loop.run_until_complete(main())
        assert not asyncio.all_tasks(loop)
    finally:
        loop.close()
    assert_accounted(result)
    assert result.scheduled == 40
    assert set(result.failed) == set(ERROR_CLASSES)
    if max_in_flight >= 40:
        assert result.dropped == 0


@LOOPTIME
async def test_closed_model_by_iterations_with_a_target_that_never_yields() -> None:
    calls: list[int] = []

    async def call(index: int, rng: random.Random) -> None:
        calls.append(index)

    result = await run_closed(call, users=4, iterations=1000)
    assert result.scheduled == result.succeeded == 1000
    assert sorted(calls) == list(range(1000))
    with pytest.raises(ValueError, match="duration or iterations"):
        await run_closed(call, users=1)


def test_a_failure_classified_elsewhere_is_counted_under_its_class() -> None:
    tally = Tally()
    for _ in range(3):
        tally.schedule()
        tally.dispatch()
    tally.fail_as("rejected", retry_after=True)
    tally.fail_as("rejected", retry_after=False)
    with pytest.raises(ValueError, match="kind"):
        tally.fail_as("too many clients", retry_after=False)
    assert (tally.failed["rejected"], tally.rejected_without_retry_after) == (2, 1)
    assert tally.in_flight == 1
