"""Retry, Backoff and RetryBudget: behaviour on virtual time (looptime)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from typing import Any

import looptime
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bounded
from bounded import Backoff, RateLimited, Retry, RetryBudget

TOL = 1e-6  # looptime keeps whole microseconds


class Transient(OSError):
    """A retryable error for these tests."""


class Flaky:
    """An async callable failing with the given exceptions in turn, then returning "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls: list[float] = []

    async def __call__(self, *args: Any, **kwargs: Any) -> str:
        self.calls.append(asyncio.get_running_loop().time())
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def no_jitter(initial: float = 1.0, **kw: Any) -> Backoff:
    return Backoff(initial=initial, jitter="none", **kw)


# ------------------------------------------------------------------ Backoff
@pytest.mark.parametrize("jitter", ["full", "equal", "none"])
def test_backoff_delays_stay_within_jitter_bounds(jitter: Any) -> None:
    b = Backoff(initial=0.5, max=10.0, multiplier=2.0, jitter=jitter)
    rng = random.Random(1)
    for attempt in range(1, 12):
        ceiling = min(10.0, 0.5 * 2 ** (attempt - 1))
        samples = [b.delay(attempt, 0.0, rng) for _ in range(400)]
        low = {"full": 0.0, "equal": ceiling / 2, "none": ceiling}[jitter]
        assert min(samples) >= low
        assert max(samples) <= ceiling
        if jitter == "none":
            assert set(samples) == {ceiling}
        else:  # actually jittered: spread over most of the range
            assert max(samples) - min(samples) > 0.8 * (ceiling - low)


def test_backoff_is_capped_at_max_even_for_huge_attempts() -> None:
    b = Backoff(initial=1.0, max=7.0, jitter="none")
    assert b.delay(3, 0.0, random.Random(0)) == 4.0
    assert b.delay(4, 0.0, random.Random(0)) == 7.0
    assert b.delay(10_000, 0.0, random.Random(0)) == 7.0  # no OverflowError


def test_decorrelated_jitter_grows_and_respects_bounds() -> None:
    b = Backoff(initial=0.1, max=20.0, jitter="decorrelated")
    rng = random.Random(7)
    means = []
    for _ in range(200):
        previous = 0.0
        seq = []
        for attempt in range(1, 9):
            d = b.delay(attempt, previous, rng)
            assert 0.1 <= d <= 20.0
            assert d <= max(previous, 0.1) * 3
            seq.append(d)
            previous = d
        means.append(seq)
    avg = [sum(s[i] for s in means) / len(means) for i in range(8)]
    assert avg[0] < avg[2] < avg[5]  # grows on average


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"initial": 0}, "initial"),
        ({"max": -1}, "max"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"initial": 5.0, "max": 1.0}, "max"),
        ({"jitter": "random"}, "jitter"),
    ],
)
def test_backoff_rejects_bad_arguments(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Backoff(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"attempts": 0}, "attempts"),
        ({"deadline": 0}, "deadline"),
        ({"max_retry_after": -1}, "max_retry_after"),
        ({"backoff": 3}, "backoff"),
        ({"budget": 3}, "budget"),
    ],
)
def test_retry_rejects_bad_arguments(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Retry(on=OSError, **kwargs)


@pytest.mark.parametrize("on", [(), 3, (OSError, 3), "OSError"])
def test_retry_rejects_bad_on(on: Any) -> None:
    with pytest.raises(ValueError, match="on"):
        Retry(on=on)


def test_on_is_required() -> None:
    with pytest.raises(TypeError):
        Retry()  # type: ignore[call-arg]


def test_lazy_export() -> None:
    assert bounded.Retry is Retry
    assert bounded.Backoff is Backoff
    assert bounded.RetryBudget is RetryBudget


# ------------------------------------------------------------------ Retry
@pytest.mark.looptime
async def test_retries_matching_exceptions_then_returns() -> None:
    fn = Flaky(OSError("a"), OSError("b"))
    retry = Retry(on=OSError, attempts=3, backoff=no_jitter(1.0))
    assert await retry.call(fn, 1, x=2) == "ok"
    assert fn.calls == pytest.approx([0.0, 1.0, 3.0], abs=TOL)  # 1 s then 2 s backoff


@pytest.mark.looptime
async def test_non_matching_exception_is_raised_at_once() -> None:
    fn = Flaky(ValueError("no"))
    retry = Retry(on=OSError, attempts=5)
    with pytest.raises(ValueError, match="no") as info:
        await retry.call(fn)
    assert len(fn.calls) == 1
    assert not getattr(info.value, "__notes__", None)


@pytest.mark.looptime
async def test_non_matching_after_a_retry_is_raised_at_once() -> None:
    fn = Flaky(Transient(), KeyError("k"), Transient())
    retry = Retry(on=OSError, attempts=5, backoff=no_jitter(0.1))
    with pytest.raises(KeyError):
        await retry.call(fn)
    assert len(fn.calls) == 2


@pytest.mark.looptime
async def test_predicate_on() -> None:
    errors = [OSError(5, "x"), OSError(7, "y"), OSError(5, "z")]
    fn = Flaky(*errors)
    retry = Retry(on=lambda e: isinstance(e, OSError) and e.errno == 5, backoff=no_jitter(0.1))
    with pytest.raises(OSError, match="y") as info:
        await retry.call(fn)
    assert info.value is errors[1]
    assert len(fn.calls) == 2


@pytest.mark.looptime
async def test_gives_up_reraising_the_last_exception_with_a_note() -> None:
    errors = [ConnectionError(str(i)) for i in range(3)]
    fn = Flaky(*errors)
    retry = Retry(on=(OSError,), attempts=3, backoff=no_jitter(0.5))
    with pytest.raises(ConnectionError) as info:
        await retry.call(fn)
    assert info.value is errors[-1]  # the exception itself, not a wrapper
    note = "\n".join(info.value.__notes__)
    assert "gave up after 3 attempt(s)" in note
    assert "attempt 1: ConnectionError, retried after 0.500s" in note
    assert "attempt 2: ConnectionError, retried after 1.000s" in note
    assert "attempt 3: ConnectionError, not retried" in note
    assert len(fn.calls) == 3


@pytest.mark.looptime
async def test_retry_after_is_honoured_exactly() -> None:
    fn = Flaky(RateLimited("api", 7.25), RateLimited("api", 0.125))
    retry = Retry(on=RateLimited, backoff=Backoff(initial=100.0, max=100.0))
    assert await retry.call(fn) == "ok"
    assert fn.calls[1] - fn.calls[0] == pytest.approx(7.25, abs=TOL)
    assert fn.calls[2] - fn.calls[1] == pytest.approx(0.125, abs=TOL)


@pytest.mark.looptime
async def test_retry_after_ignored_when_not_respected() -> None:
    fn = Flaky(RateLimited("api", 50.0))
    retry = Retry(on=RateLimited, backoff=no_jitter(2.0), respect_retry_after=False)
    await retry.call(fn)
    assert fn.calls[1] - fn.calls[0] == pytest.approx(2.0, abs=TOL)


@pytest.mark.looptime
async def test_retry_after_none_falls_back_to_backoff() -> None:
    fn = Flaky(RateLimited("api", None))
    retry = Retry(on=RateLimited, backoff=no_jitter(3.0))
    await retry.call(fn)
    assert fn.calls[1] - fn.calls[0] == pytest.approx(3.0, abs=TOL)


@pytest.mark.looptime
async def test_retry_after_above_max_stops() -> None:
    err = RateLimited("api", 300.0)
    fn = Flaky(err)
    retry = Retry(on=RateLimited, max_retry_after=120.0)
    with pytest.raises(RateLimited) as info:
        await retry.call(fn)
    assert info.value is err
    assert "max_retry_after" in "\n".join(info.value.__notes__)
    assert len(fn.calls) == 1
    assert asyncio.get_running_loop().time() == 0


@pytest.mark.looptime
async def test_deadline_never_starts_a_sleep_ending_past_it() -> None:
    fn = Flaky(*[Transient() for _ in range(10)])
    # delays 1, 2, 4, 8: after t=3 the next (4 s) would end at 7 > 5
    retry = Retry(on=OSError, attempts=10, backoff=no_jitter(1.0), deadline=5.0)
    with pytest.raises(Transient) as info:
        await retry.call(fn)
    assert fn.calls == pytest.approx([0.0, 1.0, 3.0], abs=TOL)
    assert asyncio.get_running_loop().time() == pytest.approx(3.0, abs=TOL)
    assert "deadline" in "\n".join(info.value.__notes__)


@pytest.mark.looptime
async def test_deadline_counts_the_time_spent_in_attempts() -> None:
    async def slow_fail() -> None:
        await asyncio.sleep(2.0)
        raise Transient

    retry = Retry(on=OSError, attempts=10, backoff=no_jitter(1.0), deadline=6.0)
    with pytest.raises(Transient):
        await retry.call(slow_fail)
    # attempt 0-2, sleep 1, attempt 3-5; next sleep (2 s) would end at 7 > 6
    assert asyncio.get_running_loop().time() == pytest.approx(5.0, abs=TOL)


@pytest.mark.looptime
async def test_budget_caps_retries_to_ratio_of_first_attempts() -> None:
    budget = RetryBudget(ratio=0.1, min_per_second=0)
    retry = Retry(on=OSError, attempts=3, backoff=no_jitter(0.01), budget=budget)
    calls = 0

    async def always_fails() -> None:
        nonlocal calls
        calls += 1
        raise Transient

    for _ in range(100):
        with pytest.raises(Transient):
            await retry.call(always_fails)
    retries = calls - 100
    assert 9 <= retries <= 11  # ~10% of 100 first attempts


@pytest.mark.looptime
async def test_budget_note_and_min_per_second_reserve() -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=1, window=2.0)
    assert budget.balance() == 2.0
    retry = Retry(on=OSError, attempts=10, backoff=no_jitter(0.001, max=0.001), budget=budget)
    fn = Flaky(*[Transient() for _ in range(10)])
    with pytest.raises(Transient) as info:
        await retry.call(fn)
    assert len(fn.calls) == 3  # two retries from the reserve of 1/s over 2 s
    assert "retry budget exhausted" in "\n".join(info.value.__notes__)


@pytest.mark.looptime
async def test_budget_window_slides() -> None:
    budget = RetryBudget(ratio=1.0, min_per_second=0, window=10.0)
    budget.deposit()
    assert budget.try_withdraw()
    assert not budget.try_withdraw()
    await asyncio.sleep(5)
    budget.deposit()
    assert budget.try_withdraw()
    assert not budget.try_withdraw()
    await asyncio.sleep(5.5)  # the first deposit and withdrawal left the window
    assert budget.balance() == 0.0
    budget.deposit()
    assert budget.try_withdraw()
    await asyncio.sleep(30)
    assert budget.balance() == 0.0


def test_budget_validation() -> None:
    with pytest.raises(ValueError, match="ratio"):
        RetryBudget(ratio=-0.1)
    with pytest.raises(ValueError, match="min_per_second"):
        RetryBudget(min_per_second=-1)
    with pytest.raises(ValueError, match="window"):
        RetryBudget(window=0)


@pytest.mark.looptime
async def test_shared_retry_keeps_independent_attempt_counts() -> None:
    retry = Retry(on=OSError, attempts=3, backoff=no_jitter(1.0))
    fns = [Flaky(*[Transient() for _ in range(n)]) for n in (0, 1, 2, 5, 5)]
    results = await asyncio.gather(*(retry.call(f) for f in fns), return_exceptions=True)
    assert results[:3] == ["ok", "ok", "ok"]
    assert isinstance(results[3], OSError)
    assert isinstance(results[4], OSError)
    assert [len(f.calls) for f in fns] == [1, 2, 3, 3, 3]


@pytest.mark.looptime
async def test_cancellation_during_fn_propagates_and_is_not_retried() -> None:
    started = asyncio.Event()
    calls = 0

    async def hangs() -> None:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.sleep(100)

    retry = Retry(on=lambda e: True, attempts=5)
    task = asyncio.create_task(retry.call(hangs))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 1


@pytest.mark.looptime
async def test_cancelled_error_raised_by_fn_is_not_retried() -> None:
    fn = Flaky(asyncio.CancelledError())
    retry = Retry(on=lambda e: True, attempts=5)
    with pytest.raises(asyncio.CancelledError):
        await retry.call(fn)
    assert len(fn.calls) == 1


@pytest.mark.looptime
async def test_cancellation_during_backoff_sleep_propagates_at_once() -> None:
    fn = Flaky(*[Transient() for _ in range(5)])
    retry = Retry(on=lambda e: True, attempts=5, backoff=no_jitter(10.0))
    task = asyncio.create_task(retry.call(fn))
    await asyncio.sleep(3)  # inside the first 10 s backoff
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(fn.calls) == 1
    assert asyncio.get_running_loop().time() == pytest.approx(3.0, abs=TOL)


@pytest.mark.looptime
async def test_decorator_preserves_metadata_and_retries() -> None:
    retry = Retry(on=OSError, backoff=no_jitter(0.5))
    fn = Flaky(Transient())

    @retry
    async def fetch(x: int) -> str:
        """Docs."""
        return await fn(x)

    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Docs."
    assert await fetch(1) == "ok"
    assert len(fn.calls) == 2


def test_decorator_rejects_sync_functions() -> None:
    with pytest.raises(TypeError):
        Retry(on=OSError)(lambda: None)  # type: ignore[arg-type,return-value]


@pytest.mark.looptime
async def test_seeded_rng_makes_delays_reproducible() -> None:
    async def run(seed: int) -> list[float]:
        fn = Flaky(*[Transient() for _ in range(4)])
        start = asyncio.get_running_loop().time()
        await Retry(on=OSError, rng=random.Random(seed)).call(fn)
        return [t - start for t in fn.calls]

    assert await run(3) == pytest.approx(await run(3), abs=TOL)
    assert await run(3) != await run(4)


# ------------------------------------------------------------------ properties
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_virtual(coro: Coroutine[Any, Any, None]) -> None:
    loop = looptime.new_event_loop(start=0)
    try:
        loop.run_until_complete(coro)
    finally:
        loop.close()


@SETTINGS
@given(
    attempts=st.integers(1, 8),
    failures=st.integers(0, 12),
    jitter=st.sampled_from(["full", "equal", "decorrelated", "none"]),
    retry_after=st.one_of(st.none(), st.floats(0, 5)),
    deadline=st.one_of(st.none(), st.floats(0.5, 30)),
)
def test_never_more_than_attempts_and_never_past_deadline(
    attempts: int, failures: int, jitter: Any, retry_after: float | None, deadline: float | None
) -> None:
    async def scenario() -> None:
        errors = [RateLimited("x", retry_after) for _ in range(failures)]
        fn = Flaky(*errors)
        retry = Retry(
            on=RateLimited,
            attempts=attempts,
            backoff=Backoff(initial=0.1, max=3.0, jitter=jitter),
            deadline=deadline,
            rng=random.Random(0),
        )
        outcome: object
        try:
            outcome = await retry.call(fn)
        except RateLimited as exc:
            outcome = exc
        if outcome == "ok":
            assert len(fn.calls) == failures + 1
        else:
            assert outcome is errors[len(fn.calls) - 1]
        assert len(fn.calls) <= attempts
        if deadline is not None:
            assert fn.calls[-1] <= deadline + TOL

    run_virtual(scenario())


# -- observability: the note of a reused exception, logs and hooks ----------------------

_SHARED = ConnectionError("cached failure")


async def _raise_shared() -> None:
    raise _SHARED.with_traceback(None)


@pytest.mark.looptime
async def test_a_reused_exception_instance_keeps_one_attempts_note() -> None:
    # A module-level exception raised by every call: each give-up replaces its note.
    _SHARED.__notes__ = ["the caller's own note"]
    retry = Retry(on=ConnectionError, attempts=2, backoff=no_jitter(0.01))
    for _ in range(200):
        with pytest.raises(ConnectionError):
            await retry.call(_raise_shared)
    notes = _SHARED.__notes__
    assert notes[0] == "the caller's own note"
    assert len(notes) == 2
    assert notes[1].startswith("bounded.Retry gave up after 2 attempt(s)")


@pytest.mark.looptime
async def test_each_retry_logs_one_info_line_with_reason_and_delay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    retry = Retry(on=OSError, attempts=3, backoff=no_jitter(0.5), name="llm")
    with caplog.at_level("INFO", logger="bounded.retry"), pytest.raises(Transient):
        await retry.call(Flaky(Transient("a"), Transient("b"), Transient("c")))
    infos = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
    assert infos == [
        "llm: attempt 1 failed with Transient, retrying in 0.500s",
        "llm: attempt 2 failed with Transient, retrying in 1.000s",
        "llm: giving up after 3 attempt(s): no attempts left (3) (last error Transient)",
    ]
    assert not [r for r in caplog.records if r.levelname == "DEBUG"]


@pytest.mark.looptime
async def test_debug_logging_adds_the_per_call_detail(caplog: pytest.LogCaptureFixture) -> None:
    retry = Retry(on=OSError, attempts=2, backoff=no_jitter(0.5), name="db")
    with caplog.at_level("DEBUG", logger="bounded.retry"), pytest.raises(Transient):
        await retry.call(Flaky(Transient("first"), Transient("second")))
    debug = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "DEBUG")
    assert "Transient('first')" in debug
    assert "attempt 2: Transient, not retried" in debug


@pytest.mark.looptime
async def test_hooks_receive_attempt_exception_and_delay() -> None:
    retried: list[bounded.RetryEvent] = []
    gave_up: list[bounded.RetryEvent] = []

    async def on_give_up(event: bounded.RetryEvent) -> None:
        await asyncio.sleep(0)  # an async hook is awaited
        gave_up.append(event)

    errors = [Transient("a"), Transient("b"), Transient("c")]
    retry = Retry(
        on=OSError,
        attempts=3,
        backoff=no_jitter(0.5),
        name="api",
        on_retry=retried.append,
        on_give_up=on_give_up,
    )
    with pytest.raises(Transient):
        await retry.call(Flaky(*errors))
    assert [(e.attempt, e.exception, e.delay) for e in retried] == [
        (1, errors[0], 0.5),
        (2, errors[1], 1.0),
    ]
    assert len(gave_up) == 1
    assert gave_up[0].attempt == 3
    assert gave_up[0].exception is errors[2]
    assert gave_up[0].reason == "no attempts left (3)"
    assert gave_up[0].retry == "api"


@pytest.mark.looptime
async def test_a_failing_hook_is_logged_and_retrying_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(event: bounded.RetryEvent) -> None:
        raise RuntimeError("hook bug")

    retry = Retry(on=OSError, attempts=2, backoff=no_jitter(0.5), on_retry=broken)
    with caplog.at_level("ERROR", logger="bounded.retry"):
        assert await retry.call(Flaky(Transient("a"))) == "ok"
    assert any("hook" in r.getMessage() for r in caplog.records)


def test_a_hook_must_be_callable() -> None:
    with pytest.raises(ValueError, match="on_retry"):
        Retry(on=OSError, on_retry=42)  # type: ignore[arg-type]
