"""Policy: the fixed order of its parts, deadline, timeouts and omitted parts (virtual time)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

import looptime
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bounded
from bounded import (
    Backoff,
    Bulkhead,
    CircuitBreaker,
    CircuitOpen,
    Policy,
    RateLimiter,
    Retry,
)
from bounded import policy as policy_module

pytestmark = pytest.mark.looptime

TOL = 1e-6


class Boom(Exception):
    """A retryable failure for these tests."""


def now() -> float:
    return asyncio.get_running_loop().time()


class Recorder:
    """An async context manager that logs (name, event, loop time); stands in for a limiter."""

    def __init__(self, name: str, log: list[tuple[str, str, float]]) -> None:
        self.name = name
        self.log = log

    async def __aenter__(self) -> None:
        self.log.append((self.name, "enter", now()))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.log.append((self.name, "exit", now()))


def no_jitter(initial: float) -> Backoff:
    return Backoff(initial=initial, max=initial * 100, jitter="none")


# ------------------------------------------------------------------ order
async def test_order_with_recording_parts() -> None:
    log: list[tuple[str, str, float]] = []
    cb = CircuitBreaker(minimum_calls=100)
    attempts = 0

    async def fn(x: int) -> int:
        nonlocal attempts
        attempts += 1
        log.append(("fn", "run", now()))
        await asyncio.sleep(0.5)
        if attempts < 3:
            raise Boom
        return x * 2

    policy = Policy(
        retry=Retry(on=Boom, attempts=5, backoff=no_jitter(1.0)),
        breaker=cb,
        rate_limiter=Recorder("rl", log),
        bulkhead=Recorder("bh", log),
        timeout=10.0,
    )
    assert await policy.call(fn, 21) == 42
    events = [(n, e) for n, e, _ in log]
    one_attempt = [("rl", "enter"), ("bh", "enter"), ("fn", "run"), ("bh", "exit"), ("rl", "exit")]
    assert events == one_attempt * 3  # every attempt pays the limiter and the bulkhead
    times = [t for _, _, t in log]
    # attempts at 0, 1.5 (0.5 work + 1 s backoff), 4.0 (0.5 + 2 s): nothing held while waiting
    assert times == pytest.approx([0, 0, 0, 0.5, 0.5, 1.5, 1.5, 1.5, 2, 2, 4, 4, 4, 4.5, 4.5])
    s = cb.stats()
    assert (s.calls, s.failed_calls) == (3, 2)  # the breaker saw each attempt


async def test_backoff_holds_no_bulkhead_slot() -> None:
    bh = Bulkhead(1)
    failed_once = False

    async def flaky() -> str:
        nonlocal failed_once
        if not failed_once:
            failed_once = True
            raise Boom
        return "a"

    async def quick() -> float:
        await asyncio.sleep(1)
        return now()

    policy = Policy(retry=Retry(on=Boom, backoff=no_jitter(10.0)), bulkhead=bh)
    a = asyncio.create_task(policy.call(flaky))
    await asyncio.sleep(1)  # a is in its 10 s backoff
    assert bh.stats().in_use == 0
    assert await policy.call(quick) == pytest.approx(2.0)  # not blocked behind a's backoff
    assert await a == "a"
    assert now() == pytest.approx(10.0)


async def test_every_attempt_pays_a_rate_limit_unit() -> None:
    rl = RateLimiter(rate=1, per=1.0)
    calls: list[float] = []

    async def fn() -> None:
        calls.append(now())
        raise Boom

    policy = Policy(retry=Retry(on=Boom, attempts=4, backoff=no_jitter(0.001)), rate_limiter=rl)
    with pytest.raises(Boom):
        await policy.call(fn)
    # backoff is 1-8 ms; the limiter spaces attempts a second apart
    assert calls == pytest.approx([0.0, 1.0, 2.0, 3.0], abs=1e-3)
    assert rl.stats().admitted_total == 4


async def test_timeout_covers_only_the_work() -> None:
    bh = Bulkhead(1)
    policy = Policy(bulkhead=bh, timeout=1.0)

    async def work() -> str:
        await asyncio.sleep(0.9)
        return "done"

    async with bh:  # someone holds the only slot for 5 s
        task = asyncio.create_task(policy.call(work))
        await asyncio.sleep(5)
    assert await task == "done"  # waited 5 s for the slot, but only 0.9 s of work
    assert now() == pytest.approx(5.9)


async def test_timeout_raises_builtin_timeout_error_and_is_retryable() -> None:
    starts: list[float] = []

    async def slow() -> None:
        starts.append(now())
        await asyncio.sleep(5)

    policy = Policy(retry=Retry(on=TimeoutError, attempts=3, backoff=no_jitter(1.0)), timeout=2.0)
    with pytest.raises(TimeoutError) as info:
        await policy.call(slow)
    assert starts == pytest.approx([0.0, 3.0, 7.0])
    assert "gave up after 3" in "\n".join(info.value.__notes__)


async def test_breaker_rejection_is_retried_after_its_retry_after() -> None:
    cb = CircuitBreaker(minimum_calls=1, open_for=30.0, half_open_calls=1)

    async def fail() -> None:
        raise Boom

    with pytest.raises(Boom):
        await cb.call(fail)
    await asyncio.sleep(10)
    policy = Policy(retry=Retry(on=CircuitOpen, attempts=2), breaker=cb)

    async def ok() -> str:
        return "ok"

    assert await policy.call(ok) == "ok"
    assert now() == pytest.approx(30.0, abs=TOL)  # waited exactly the 20 s left
    assert cb.state == "closed"


# ------------------------------------------------------------------ deadline
async def test_deadline_bounds_the_whole_call() -> None:
    async def hang() -> None:
        await asyncio.sleep(100)

    policy = Policy(deadline=5.0, timeout=60.0)
    with pytest.raises(TimeoutError):
        await policy.call(hang)
    assert now() == pytest.approx(5.0)


async def test_deadline_covers_waiting_for_the_bulkhead() -> None:
    bh = Bulkhead(1)
    policy = Policy(deadline=2.0, bulkhead=bh)

    async def ok() -> str:
        return "ok"

    async with bh:
        waiter = asyncio.create_task(policy.call(ok))
        done, _ = await asyncio.wait([waiter], timeout=10)  # fails, not hangs, if unbounded
        assert done
        with pytest.raises(TimeoutError):
            await waiter
        assert now() == pytest.approx(2.0)
        assert bh.stats().queued == 0  # the cancelled waiter left the queue


async def test_deadline_stops_retry_before_a_backoff_that_would_overrun() -> None:
    calls: list[float] = []

    async def fail() -> None:
        calls.append(now())
        raise Boom

    policy = Policy(deadline=5.0, retry=Retry(on=Boom, attempts=10, backoff=no_jitter(1.0)))
    with pytest.raises(Boom) as info:
        await policy.call(fail)
    assert calls == pytest.approx([0.0, 1.0, 3.0])  # a 4 s sleep would end at 7 > 5
    assert now() == pytest.approx(3.0)
    assert "deadline" in "\n".join(info.value.__notes__)


async def test_deadline_also_ends_an_attempt_in_progress() -> None:
    async def slow_fail() -> None:
        await asyncio.sleep(2)
        raise Boom

    policy = Policy(deadline=3.0, retry=Retry(on=Boom, attempts=10, backoff=no_jitter(0.5)))
    with pytest.raises(TimeoutError):
        await policy.call(slow_fail)  # attempt 2 starts at 2.5 and is cut at 3
    assert now() == pytest.approx(3.0)


async def test_outer_cancellation_stays_a_cancellation() -> None:
    policy = Policy(deadline=50.0, timeout=10.0)

    async def hang() -> None:
        await asyncio.sleep(100)

    task = asyncio.create_task(policy.call(hang))
    await asyncio.sleep(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(100)  # the armed deadlines fire on nothing


async def test_cancellation_swallowed_by_fn_is_uncancelled() -> None:
    async def stubborn() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "kept going"
        return "finished"

    policy = Policy(timeout=1.0)
    assert await policy.call(stubborn) == "kept going"
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_timeout_inside_an_outer_asyncio_timeout() -> None:
    policy = Policy(timeout=10.0)

    async def hang() -> None:
        await asyncio.sleep(100)

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(2):
            await policy.call(hang)
    assert now() == pytest.approx(2.0)


# ------------------------------------------------------------------ omitted parts
async def test_omitted_parts() -> None:
    async def echo(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
        return args, kwargs

    assert await Policy().call(echo, 1, b=2) == ((1,), {"b": 2})
    cb = CircuitBreaker()
    for policy in (
        Policy(timeout=1.0),
        Policy(deadline=1.0),
        Policy(breaker=cb),
        Policy(rate_limiter=RateLimiter(10)),
        Policy(bulkhead=Bulkhead(2)),
        Policy(retry=Retry(on=Boom)),
        Policy(deadline=1.0, retry=Retry(on=Boom)),
    ):
        assert await policy.call(echo, 1, b=2) == ((1,), {"b": 2}), policy
    assert cb.stats().calls == 1


async def test_decorator_and_names() -> None:
    policy = Policy("llm_call", timeout=1.0)
    assert policy.name == "llm_call"
    assert Policy().name.startswith("policy-")
    assert bounded.Policy is Policy
    assert "llm_call" in repr(policy)

    @policy
    async def fetch(x: int) -> int:
        """Doc."""
        return x + 1

    assert fetch.__name__ == "fetch"
    assert await fetch(1) == 2
    with pytest.raises(TypeError):
        policy(lambda: None)  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"deadline": 0}, "deadline"),
        ({"timeout": -1}, "timeout"),
        ({"retry": 3}, "retry"),
        ({"breaker": "x"}, "breaker"),
        ({"rate_limiter": object()}, "rate_limiter"),
        ({"bulkhead": 5}, "bulkhead"),
    ],
)
def test_validation(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Policy(**kwargs)


# ------------------------------------------------------------------ the shared timer
async def test_timer_memory_stays_bounded() -> None:
    policy = Policy(timeout=60.0)

    async def quick() -> None:
        await asyncio.sleep(0.001)

    for _ in range(2000):
        await policy.call(quick)
    timer = policy_module._timer(asyncio.get_running_loop())
    assert len(timer._heap) <= 130
    assert timer._live == 0


def run_virtual(coro: Coroutine[Any, Any, None]) -> None:
    loop = looptime.new_event_loop(start=0)
    try:
        loop.run_until_complete(coro)
    finally:
        loop.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    calls=st.lists(
        st.tuples(st.integers(0, 5), st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=30
    )
)
def test_each_call_times_out_iff_its_work_outlasts_its_timeout(
    calls: list[tuple[int, int, int]],
) -> None:
    async def scenario() -> None:
        async def one(start: int, work: int, limit: int) -> None:
            await asyncio.sleep(start)
            policy = Policy(timeout=limit + 0.5)
            began = now()
            try:
                await policy.call(asyncio.sleep, work)
            except TimeoutError:
                assert work > limit
                assert now() - began == pytest.approx(limit + 0.5, abs=TOL)
            else:
                assert work <= limit
                assert now() - began == pytest.approx(work, abs=TOL)

        await asyncio.gather(*(one(*c) for c in calls))
        timer = policy_module._timer(asyncio.get_running_loop())
        assert timer._live == 0

    run_virtual(scenario())
