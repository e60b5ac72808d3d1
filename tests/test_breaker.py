"""CircuitBreaker: thresholds, windows, half-open probes and live changes, on virtual time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import looptime
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bounded
from bounded import BreakerStats, CircuitBreaker, CircuitOpen
from bounded.http import RetryableHTTPError

pytestmark = pytest.mark.looptime

TOL = 1e-6


class Boom(Exception):
    """A failure for these tests."""


@pytest.fixture(params=["call", "with"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def through(cb: CircuitBreaker, mode: str, fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run `fn` through the breaker by `cb.call` or by `async with cb`."""
    if mode == "call":
        return await cb.call(fn)
    async with cb:
        return await fn()


async def ok() -> str:
    return "ok"


async def fail() -> None:
    raise Boom("down")


def sleeper(seconds: float, error: BaseException | None = None) -> Callable[[], Awaitable[str]]:
    async def fn() -> str:
        await asyncio.sleep(seconds)
        if error is not None:
            raise error
        return "ok"

    return fn


async def outcome(cb: CircuitBreaker, mode: str, fn: Callable[[], Awaitable[Any]]) -> str:
    """ "ok", "boom" or "open" for one call through the breaker."""
    try:
        await through(cb, mode, fn)
    except Boom:
        return "boom"
    except CircuitOpen:
        return "open"
    return "ok"


async def trip(cb: CircuitBreaker, mode: str = "call") -> None:
    while cb.state == "closed":
        await outcome(cb, mode, fail)
    assert cb.state == "open"


# ------------------------------------------------------------------ closed -> open
async def test_opens_exactly_at_the_failure_rate(mode: str) -> None:
    cb = CircuitBreaker(failure_rate=0.5, minimum_calls=4, window=10)
    for fn in (ok, fail, ok):
        await outcome(cb, mode, fn)
    assert cb.state == "closed"  # 3 calls < minimum_calls
    assert await outcome(cb, mode, fail) == "boom"  # 2/4 = 0.5 -> opens
    assert cb.state == "open"
    assert await outcome(cb, mode, ok) == "open"


async def test_stays_closed_just_below_the_rate(mode: str) -> None:
    cb = CircuitBreaker(failure_rate=0.3, minimum_calls=10, window=10)
    for i in range(10):
        await outcome(cb, mode, fail if i in (2, 3) else ok)
    assert cb.state == "closed"  # 0.2 < 0.3
    await outcome(cb, mode, fail)  # evicts an ok: 3/10
    assert cb.state == "open"  # 0.3 >= 0.3, exact


async def test_never_opens_before_minimum_calls(mode: str) -> None:
    cb = CircuitBreaker(failure_rate=0.1, minimum_calls=10, window=50)
    for _ in range(9):
        await outcome(cb, mode, fail)
    assert cb.state == "closed"
    assert cb.stats().failed_calls == 9
    await outcome(cb, mode, ok)  # 10th call: 9/10 failed
    assert cb.state == "open"


async def test_minimum_calls_larger_than_window_uses_the_window() -> None:
    cb = CircuitBreaker(minimum_calls=100, window=4)
    for _ in range(4):
        await outcome(cb, "call", fail)
    assert cb.state == "open"


async def test_count_window_slides() -> None:
    cb = CircuitBreaker(failure_rate=0.75, minimum_calls=4, window=4)
    for fn in (fail, fail, ok, ok, ok, ok, fail, fail):
        await outcome(cb, "call", fn)
    s = cb.stats()
    assert (s.calls, s.failed_calls) == (4, 2)
    assert s.failure_rate == 0.5
    assert cb.state == "closed"
    await outcome(cb, "call", fail)
    assert cb.state == "open"  # ok, fail, fail, fail


async def test_time_window_counts_only_recent_seconds(mode: str) -> None:
    cb = CircuitBreaker(failure_rate=0.5, minimum_calls=3, window_seconds=10)
    await outcome(cb, mode, fail)
    await asyncio.sleep(1)
    await outcome(cb, mode, fail)
    await asyncio.sleep(11)  # both failures are older than 10 s now
    assert cb.stats().calls == 0
    await outcome(cb, mode, ok)
    await outcome(cb, mode, fail)
    assert cb.state == "closed"  # 2 calls < minimum 3
    await asyncio.sleep(9)  # still inside the window
    await outcome(cb, mode, fail)  # 2/3 failed
    assert cb.state == "open"


async def test_time_window_boundary() -> None:
    cb = CircuitBreaker(failure_rate=1.0, minimum_calls=2, window_seconds=5)
    await outcome(cb, "call", fail)  # t = 0
    await asyncio.sleep(5)  # t = 5: the t=0 second has left a 5 s window
    await outcome(cb, "call", fail)
    assert cb.state == "closed"
    assert cb.stats().calls == 1
    await asyncio.sleep(4.5)
    await outcome(cb, "call", fail)
    assert cb.state == "open"


async def test_slow_calls_open_the_circuit(mode: str) -> None:
    cb = CircuitBreaker(
        minimum_calls=4, window=10, slow_call_duration=1.0, slow_call_rate=0.5, failure_rate=1.0
    )
    await outcome(cb, mode, sleeper(0.999))
    await outcome(cb, mode, sleeper(1.0))
    await outcome(cb, mode, sleeper(0.2))
    s = cb.stats()
    assert (s.calls, s.slow_calls, s.failed_calls) == (3, 1, 0)
    assert cb.state == "closed"
    assert await outcome(cb, mode, sleeper(3.0)) == "ok"  # slow but successful: 2/4 slow
    assert cb.state == "open"
    assert cb.stats().slow_call_rate == 0.5


async def test_slow_failures_count_as_both() -> None:
    cb = CircuitBreaker(minimum_calls=2, window=10, slow_call_duration=1.0, failure_rate=1.0)
    await outcome(cb, "with", sleeper(2.0, Boom()))
    await outcome(cb, "with", sleeper(0.1))
    s = cb.stats()
    assert (s.calls, s.failed_calls, s.slow_calls) == (2, 1, 1)


# ------------------------------------------------------------------ open
async def test_open_rejects_with_decreasing_retry_after(mode: str) -> None:
    cb = CircuitBreaker("rag-db", minimum_calls=1, open_for=30.0)
    await trip(cb, mode)
    with pytest.raises(CircuitOpen) as info:
        await through(cb, mode, ok)
    assert info.value.resource == "rag-db"
    assert info.value.retry_after == pytest.approx(30.0, abs=TOL)
    await asyncio.sleep(10)
    with pytest.raises(CircuitOpen) as info:
        await through(cb, mode, ok)
    assert info.value.retry_after == pytest.approx(20.0, abs=TOL)
    assert cb.stats().retry_after == pytest.approx(20.0, abs=TOL)
    assert cb.stats().rejected_total == 2
    await asyncio.sleep(20)
    assert cb.state == "half_open"
    assert await outcome(cb, mode, ok) == "ok"


# ------------------------------------------------------------------ half-open
async def test_half_open_admits_exactly_n_concurrent_probes_then_closes(mode: str) -> None:
    cb = CircuitBreaker(minimum_calls=1, open_for=5.0, half_open_calls=3)
    await trip(cb)
    await asyncio.sleep(5)
    gate = asyncio.Event()
    running = 0

    async def probe() -> str:
        nonlocal running
        running += 1
        await gate.wait()
        return "ok"

    tasks = [asyncio.create_task(outcome(cb, mode, probe)) for _ in range(5)]
    await asyncio.sleep(0.1)
    assert running == 3
    assert cb.state == "half_open"
    assert await outcome(cb, mode, ok) == "open"  # slots all taken
    gate.set()
    results = await asyncio.gather(*tasks)
    assert sorted(results) == ["ok", "ok", "ok", "open", "open"]
    assert cb.state == "closed"
    assert cb.stats().calls == 0  # window reset on closing


async def test_sequential_probes_all_must_succeed() -> None:
    cb = CircuitBreaker(minimum_calls=1, open_for=5.0, half_open_calls=2)
    await trip(cb)
    await asyncio.sleep(5)
    await outcome(cb, "call", ok)
    assert cb.state == "half_open"
    await outcome(cb, "call", ok)
    assert cb.state == "closed"


async def test_any_failed_probe_reopens(mode: str) -> None:
    cb = CircuitBreaker(minimum_calls=1, open_for=5.0, half_open_calls=3)
    await trip(cb)
    await asyncio.sleep(5)
    assert await outcome(cb, mode, ok) == "ok"
    assert await outcome(cb, mode, fail) == "boom"
    assert cb.state == "open"
    with pytest.raises(CircuitOpen) as info:
        await through(cb, mode, ok)
    assert info.value.retry_after == pytest.approx(5.0, abs=TOL)  # open_for counted anew


async def test_slow_probes_reopen_when_slow_rate_reached() -> None:
    cb = CircuitBreaker(
        minimum_calls=1, open_for=5.0, half_open_calls=2, slow_call_duration=1.0, slow_call_rate=0.5
    )
    await trip(cb)
    await asyncio.sleep(5)
    await outcome(cb, "call", sleeper(2.0))
    await outcome(cb, "call", ok)
    assert cb.state == "open"


async def test_calls_admitted_before_opening_do_not_count_as_probes() -> None:
    cb = CircuitBreaker(minimum_calls=2, window=2, open_for=5.0, half_open_calls=1)
    straggler = asyncio.create_task(outcome(cb, "with", sleeper(7.0, Boom())))
    await asyncio.sleep(0)
    await trip(cb)
    await asyncio.sleep(5)
    gate = asyncio.Event()

    async def probe() -> str:
        await gate.wait()
        return "ok"

    prober = asyncio.create_task(outcome(cb, "call", probe))
    await asyncio.sleep(2.5)  # the straggler fails now, during half-open
    assert await straggler == "boom"
    assert cb.state == "half_open"  # not re-opened by a call that was no probe
    gate.set()
    assert await prober == "ok"
    assert cb.state == "closed"


# ------------------------------------------------------------------ cancellation
async def test_cancellation_is_never_a_failure(mode: str) -> None:
    cb = CircuitBreaker(minimum_calls=1, failure_rate=0.1)
    task = asyncio.create_task(through(cb, mode, sleeper(10)))
    await asyncio.sleep(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cb.state == "closed"
    assert cb.stats().calls == 0


async def test_cancelled_probe_frees_its_slot_without_deciding(mode: str) -> None:
    cb = CircuitBreaker(minimum_calls=1, open_for=5.0, half_open_calls=1)
    await trip(cb)
    await asyncio.sleep(5)
    task = asyncio.create_task(through(cb, mode, sleeper(10)))
    await asyncio.sleep(1)
    assert await outcome(cb, mode, ok) == "open"  # the only slot is busy
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cb.state == "half_open"
    assert await outcome(cb, mode, ok) == "ok"  # slot was freed
    assert cb.state == "closed"


# ------------------------------------------------------------------ classification
async def test_ignored_exceptions_are_not_recorded_but_propagate(mode: str) -> None:
    cb = CircuitBreaker(minimum_calls=1, ignore=KeyError)

    async def key_error() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError):
        await through(cb, mode, key_error)
    assert cb.stats().calls == 0
    assert cb.state == "closed"


async def test_exceptions_outside_failure_on_count_as_success(mode: str) -> None:
    cb = CircuitBreaker(minimum_calls=2, failure_on=(OSError,))

    async def value_error() -> None:
        raise ValueError("v")

    for _ in range(3):
        with pytest.raises(ValueError, match="v"):
            await through(cb, mode, value_error)
    s = cb.stats()
    assert (s.calls, s.failed_calls, cb.state) == (3, 0, "closed")

    async def os_error() -> None:
        raise OSError("o")

    for _ in range(3):
        with pytest.raises(OSError, match="o"):
            await through(cb, mode, os_error)
    assert cb.state == "open"


class TooManyRequests(Exception):
    """Stands for an SDK's rate-limit error (e.g. openai.RateLimitError): status 429."""

    status_code = 429


async def raising(exc: BaseException) -> None:
    raise exc


@pytest.mark.parametrize(
    "refusal",
    [
        bounded.RateLimited("api", 1.0),
        bounded.BulkheadFull("pool", None),
        bounded.CircuitOpen("inner", 3.0),
        bounded.PoolExhausted("db", None),
        TooManyRequests("slow down"),
        RetryableHTTPError(429, 2.0),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_refusals_of_load_are_not_failures_by_default(
    mode: str, refusal: BaseException
) -> None:
    cb = CircuitBreaker(minimum_calls=1, window=5)
    for _ in range(10):
        with pytest.raises(type(refusal)):
            await through(cb, mode, lambda: raising(refusal))
    assert (cb.state, cb.stats().calls) == ("closed", 0)


async def test_a_refusal_counts_when_failure_on_names_it(mode: str) -> None:
    cb = CircuitBreaker(minimum_calls=2, failure_on=(OSError, bounded.RateLimited))
    for _ in range(2):
        with pytest.raises(bounded.RateLimited):
            await through(cb, mode, lambda: raising(bounded.RateLimited("api", 1.0)))
    assert cb.state == "open"
    bh = CircuitBreaker(minimum_calls=2, failure_on=TooManyRequests)
    for _ in range(2):
        with pytest.raises(TooManyRequests):
            await through(bh, mode, lambda: raising(TooManyRequests()))
    assert bh.state == "open"


async def test_other_http_errors_still_count() -> None:
    cb = CircuitBreaker(minimum_calls=2)
    for _ in range(2):
        with pytest.raises(RetryableHTTPError):
            await cb.call(lambda: raising(RetryableHTTPError(503)))
    assert cb.state == "open"


async def test_failure_on_and_ignore_can_change_live() -> None:
    cb = CircuitBreaker(minimum_calls=1)
    cb.ignore = KeyError
    cb.failure_on = (OSError,)
    assert (cb.ignore, cb.failure_on) == ((KeyError,), (OSError,))
    with pytest.raises(KeyError):
        await cb.call(lambda: raising(KeyError("k")))
    assert cb.state == "closed"
    with pytest.raises(OSError, match="o"):
        await cb.call(lambda: raising(OSError("o")))
    assert cb.state == "open"
    with pytest.raises(ValueError, match="ignore"):
        cb.ignore = "KeyError"  # type: ignore[assignment]


async def test_ignored_probe_frees_its_slot() -> None:
    cb = CircuitBreaker(minimum_calls=1, open_for=1.0, half_open_calls=1, ignore=(KeyError,))
    await trip(cb)
    await asyncio.sleep(1)

    async def key_error() -> None:
        raise KeyError

    with pytest.raises(KeyError):
        await cb.call(key_error)
    assert cb.state == "half_open"
    await cb.call(ok)
    assert cb.state == "closed"


# ------------------------------------------------------------------ manual control
async def test_force_open_disable_reset(mode: str) -> None:
    cb = CircuitBreaker(minimum_calls=1)
    cb.force_open()
    assert cb.state == "forced_open"
    with pytest.raises(CircuitOpen) as info:
        await through(cb, mode, ok)
    assert info.value.retry_after is None
    await asyncio.sleep(1000)
    assert cb.state == "forced_open"

    cb.disable()
    assert cb.state == "disabled"
    for _ in range(5):
        assert await outcome(cb, mode, fail) == "boom"
    assert cb.stats().calls == 0
    assert cb.state == "disabled"

    cb.reset()
    assert cb.state == "closed"
    await outcome(cb, mode, fail)
    assert cb.state == "open"
    cb.reset()
    assert cb.state == "closed"
    assert cb.stats().calls == 0


async def test_on_transition_sequence_and_failing_callback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cb = CircuitBreaker("db", minimum_calls=1, open_for=2.0, half_open_calls=1)
    seen: list[tuple[str, str]] = []
    assert cb.on_transition(lambda b, old, new: seen.append((old, new))) is not None

    @cb.on_transition
    def broken(b: CircuitBreaker, old: str, new: str) -> None:
        raise RuntimeError("callback bug")

    with caplog.at_level(logging.ERROR, logger="bounded.breaker"):
        await trip(cb)
        await asyncio.sleep(2)
        await outcome(cb, "call", fail)  # probe fails
        await asyncio.sleep(2)
        await outcome(cb, "call", ok)  # probe succeeds
        cb.force_open()
        cb.disable()
        cb.reset()
    assert seen == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
        ("closed", "forced_open"),
        ("forced_open", "disabled"),
        ("disabled", "closed"),
    ]
    failures = [r for r in caplog.records if "on_transition callback" in r.getMessage()]
    assert len(failures) == len(seen)


# ------------------------------------------------------------------ live changes
async def test_live_threshold_changes_keep_the_window() -> None:
    cb = CircuitBreaker(minimum_calls=10, window=10, failure_rate=0.5)
    for fn in (fail, fail, fail, ok):
        await outcome(cb, "call", fn)
    assert cb.state == "closed"
    cb.minimum_calls = 5
    cb.failure_rate = 0.6
    assert cb.stats().calls == 4
    await outcome(cb, "call", ok)  # 3/5 = 0.6
    assert cb.state == "open"


async def test_resizing_the_window_keeps_the_most_recent_outcomes() -> None:
    cb = CircuitBreaker(minimum_calls=100, window=10)
    for fn in (fail, ok, ok, ok, fail, fail):
        await outcome(cb, "call", fn)
    cb.window = 3
    s = cb.stats()
    assert (s.calls, s.failed_calls) == (3, 2)
    cb.window = 8
    assert cb.window == 8
    for fn in (ok, ok, ok, ok, ok, fail):
        await outcome(cb, "call", fn)
    s = cb.stats()
    assert (s.calls, s.failed_calls) == (8, 3)  # fail ok fail fail ok... oldest first


async def test_resizing_a_time_window() -> None:
    cb = CircuitBreaker(minimum_calls=100, window_seconds=10)
    await outcome(cb, "call", fail)  # t=0
    await asyncio.sleep(4)
    await outcome(cb, "call", fail)  # t=4
    await asyncio.sleep(2)
    await outcome(cb, "call", ok)  # t=6
    cb.window_seconds = 5  # keeps seconds 2..6
    s = cb.stats()
    assert (s.calls, s.failed_calls) == (2, 1)
    assert cb.window_seconds == 5
    with pytest.raises(ValueError, match="window"):
        cb.window = 3
    with pytest.raises(ValueError, match="window_seconds"):
        CircuitBreaker(window=5).window_seconds = 3


async def test_open_for_change_applies_to_an_open_circuit() -> None:
    cb = CircuitBreaker(minimum_calls=1, open_for=60)
    await trip(cb)
    cb.open_for = 5
    await asyncio.sleep(5)
    assert cb.state == "half_open"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("failure_rate", 0),
        ("failure_rate", 1.5),
        ("slow_call_rate", -1),
        ("slow_call_duration", 0),
        ("minimum_calls", 0),
        ("open_for", 0),
        ("half_open_calls", 0),
        ("window", 0),
    ],
)
def test_validation_names_the_argument(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        CircuitBreaker(**{name: value})
    cb = CircuitBreaker()
    with pytest.raises(ValueError, match=name):
        setattr(cb, name, value)


@pytest.mark.parametrize(("name", "value"), [("failure_on", 3), ("ignore", (KeyError, "x"))])
def test_exception_type_validation(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        CircuitBreaker(**{name: value})


async def test_stats_and_exports() -> None:
    cb = CircuitBreaker()
    assert cb.name.startswith("breaker-")
    assert bounded.CircuitBreaker is CircuitBreaker
    assert bounded.BreakerStats is BreakerStats
    await outcome(cb, "call", fail)
    await outcome(cb, "call", ok)
    assert cb.stats() == BreakerStats(
        name=cb.name,
        state="closed",
        calls=2,
        failed_calls=1,
        slow_calls=0,
        failure_rate=0.5,
        slow_call_rate=0.0,
        rejected_total=0,
        retry_after=None,
    )


async def test_decorator() -> None:
    cb = CircuitBreaker(minimum_calls=1)

    @cb
    async def get(x: int) -> int:
        """Doc."""
        if x < 0:
            raise Boom
        return x

    assert get.__doc__ == "Doc."
    assert await get(3) == 3
    with pytest.raises(Boom):
        await get(-1)
    with pytest.raises(CircuitOpen):
        await get(3)
    with pytest.raises(TypeError):
        cb(lambda: None)  # type: ignore[arg-type,return-value]


# ------------------------------------------------------------------ properties
def run_virtual(coro: Coroutine[Any, Any, None]) -> None:
    loop = looptime.new_event_loop(start=0)
    try:
        loop.run_until_complete(coro)
    finally:
        loop.close()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    half_open_calls=st.integers(1, 4),
    use_with=st.booleans(),
    calls=st.lists(
        st.tuples(
            st.integers(0, 3),  # start delay
            st.integers(0, 4),  # duration
            st.sampled_from(["ok", "fail", "cancel", "ignored"]),
        ),
        max_size=25,
    ),
)
def test_never_more_than_half_open_calls_concurrent_probes(
    half_open_calls: int, use_with: bool, calls: list[tuple[int, int, str]]
) -> None:
    async def scenario() -> None:
        cb = CircuitBreaker(
            minimum_calls=1, open_for=1.0, half_open_calls=half_open_calls, ignore=KeyError
        )
        await trip(cb)
        await asyncio.sleep(1)
        # running probes per half-open period (a period's probes may outlive it)
        running: dict[int, int] = {}
        worst = 0

        async def one(delay: int, duration: int, kind: str) -> None:
            nonlocal worst
            await asyncio.sleep(delay)

            async def work() -> None:
                nonlocal worst
                period = cb._probe_epoch if cb._state == "half_open" else None
                if period is not None:
                    running[period] = running.get(period, 0) + 1
                    worst = max(worst, running[period])
                try:
                    await asyncio.sleep(duration)
                    if kind == "fail":
                        raise Boom
                    if kind == "ignored":
                        raise KeyError
                finally:
                    if period is not None:
                        running[period] -= 1

            task = asyncio.create_task(through(cb, "with" if use_with else "call", work))
            if kind == "cancel":
                await asyncio.sleep(duration / 2)
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        await asyncio.gather(*(one(*c) for c in calls))
        assert worst <= half_open_calls
        assert not any(running.values())
        assert not cb._probe_tasks  # nothing leaked
        assert not cb._starts
        assert cb._probes_running >= 0
        if cb._state == "half_open":
            assert cb._probes_running == 0

    run_virtual(scenario())
