"""ProviderLimits: reservation, settlement and header resync, on virtual time."""

from __future__ import annotations

import asyncio

import pytest

from bounded import RateLimited
from bounded.http import RetryableHTTPError
from bounded.llm import ANTHROPIC_DEFAULT, OPENAI_DEFAULT, ProviderLimits


def available(limits: ProviderLimits, kind: str) -> float:
    return limits.limiters[kind].stats().available


def test_presets() -> None:
    assert OPENAI_DEFAULT.rpm == 60
    assert ANTHROPIC_DEFAULT.rpm == 50
    assert ANTHROPIC_DEFAULT.input_tpm is not None
    assert ANTHROPIC_DEFAULT.output_tpm is not None
    openai = ProviderLimits.from_preset(OPENAI_DEFAULT)
    assert set(openai.limiters) == {"requests", "tokens"}
    assert openai.limiters["requests"].rate == 60
    assert openai.limiters["requests"].per == 60
    anthropic = ProviderLimits.anthropic()
    assert set(anthropic.limiters) == {"requests", "input_tokens", "output_tokens"}
    assert anthropic.limiters["requests"].rate == 50
    assert "rpm" not in repr(anthropic) or "50" in repr(anthropic)


def test_validation() -> None:
    with pytest.raises(ValueError, match="rpm"):
        ProviderLimits(rpm=0)
    with pytest.raises(ValueError, match="tpm"):
        ProviderLimits(tpm=-5)
    with pytest.raises(ValueError, match="period"):
        ProviderLimits(rpm=1, period=0)


@pytest.mark.looptime
async def test_settle_refunds_unused_tokens() -> None:
    limits = ProviderLimits(rpm=100, tpm=1000)
    async with limits.reserve(100, 400) as r:
        assert available(limits, "tokens") == 500
        r.settle(input_tokens=100, output_tokens=50)
    assert available(limits, "tokens") == 850


@pytest.mark.looptime
async def test_settle_consumes_an_underestimate() -> None:
    limits = ProviderLimits(tpm=1000)
    async with limits.reserve(10, 100) as r:
        r.settle(input_tokens=300, output_tokens=600)
    assert available(limits, "tokens") == 100
    loop = asyncio.get_running_loop()
    start = loop.time()
    await limits.acquire(0, 200)  # must wait for the debt to leave the window
    assert loop.time() - start == pytest.approx(60.0)


@pytest.mark.looptime
async def test_anthropic_input_and_output_settled_separately() -> None:
    limits = ProviderLimits(input_tpm=1000, output_tpm=500)
    async with limits.reserve(200, 300) as r:
        assert available(limits, "input_tokens") == 800
        assert available(limits, "output_tokens") == 200
        r.settle(input_tokens=250, output_tokens=20)
    assert available(limits, "input_tokens") == 750
    assert available(limits, "output_tokens") == 480


@pytest.mark.looptime
async def test_http_error_gives_tokens_back_other_errors_keep_them() -> None:
    limits = ProviderLimits(tpm=1000)
    with pytest.raises(RetryableHTTPError):
        async with limits.reserve(100, 100):
            raise RetryableHTTPError(429)
    assert available(limits, "tokens") == 1000
    with pytest.raises(TimeoutError):
        async with limits.reserve(100, 100):
            raise TimeoutError
    assert available(limits, "tokens") == 800


@pytest.mark.looptime
async def test_requests_are_spaced_and_tokens_wait() -> None:
    limits = ProviderLimits(rpm=60, tpm=1000)
    loop = asyncio.get_running_loop()
    times = []
    for _ in range(3):
        await limits.acquire(0, 10)
        times.append(loop.time())
    assert times == [0.0, 1.0, 2.0]
    await limits.acquire(500, 470)  # 30 + 970 = 1000: fits exactly
    with pytest.raises(ValueError, match="cost"):
        await limits.acquire(1000, 1)  # can never fit


@pytest.mark.looptime
async def test_failed_acquire_returns_what_it_took() -> None:
    limits = ProviderLimits(rpm=60, tpm=100, max_wait=1.0)
    await limits.acquire(50, 50)
    with pytest.raises(RateLimited):
        await limits.acquire(10, 10)  # tokens would take 60 s
    # the request unit taken for the failed call was given back: next one at t=1
    loop = asyncio.get_running_loop()
    limits.limiters["tokens"].refund(100)
    await limits.acquire(1, 1)
    assert loop.time() == pytest.approx(1.0)


@pytest.mark.looptime
async def test_cancelled_acquire_returns_what_it_took() -> None:
    limits = ProviderLimits(rpm=60, tpm=100)
    await limits.acquire(50, 50)
    task = asyncio.create_task(limits.acquire(10, 10))
    await asyncio.sleep(5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert limits.limiters["requests"].stats().queued == 0
    assert limits.limiters["tokens"].stats().queued == 0


@pytest.mark.looptime
async def test_resync_from_openai_headers_slows_requests() -> None:
    limits = ProviderLimits(rpm=600)  # believes it may send every 0.1 s
    loop = asyncio.get_running_loop()
    await limits.acquire(0, 1)
    await asyncio.sleep(0.01)  # the response arrives a little later
    limits.update_from_headers(
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "7s"}
    )
    await limits.acquire(0, 1)
    assert loop.time() == pytest.approx(7.01)


@pytest.mark.looptime
async def test_resync_lowers_tokens_never_raises() -> None:
    limits = ProviderLimits(tpm=10_000)
    limits.update_from_headers(
        {"x-ratelimit-remaining-tokens": "2000", "x-ratelimit-reset-tokens": "30s"}
    )
    assert available(limits, "tokens") == 2000
    limits.update_from_headers(
        {"x-ratelimit-remaining-tokens": "9000", "x-ratelimit-reset-tokens": "1s"}
    )
    assert available(limits, "tokens") == 2000


@pytest.mark.looptime
async def test_resync_from_anthropic_headers() -> None:
    import datetime as dt

    limits = ProviderLimits(rpm=50, input_tpm=1000, output_tpm=1000)
    reset = (dt.datetime.now(tz=dt.UTC) + dt.timedelta(seconds=40)).isoformat()
    limits.update_from_headers(
        {
            "anthropic-ratelimit-input-tokens-remaining": "100",
            "anthropic-ratelimit-input-tokens-reset": reset,
            "anthropic-ratelimit-output-tokens-remaining": "garbage",
            "anthropic-ratelimit-output-tokens-reset": reset,
        }
    )
    assert available(limits, "input_tokens") == 100
    assert available(limits, "output_tokens") == 1000


@pytest.mark.looptime
async def test_malformed_headers_never_raise() -> None:
    limits = ProviderLimits(rpm=60, tpm=100)
    limits.update_from_headers(
        {"x-ratelimit-remaining-requests": "NaN", "x-ratelimit-reset-requests": "forever"}
    )
    limits.update_from_headers(
        {"x-ratelimit-remaining-tokens": "1e400", "x-ratelimit-reset-tokens": "1s"}
    )
    assert available(limits, "tokens") == 100


@pytest.mark.looptime
async def test_policy_reserves_provider_budget_before_the_bulkhead() -> None:
    from bounded import Bulkhead, Policy
    from bounded.llm import call_cost, current_reservation

    limits = ProviderLimits(rpm=1, tpm=1000, period=10.0, name="openai")
    bulkhead = Bulkhead(1, name="llm")
    policy = Policy("llm", provider=limits, bulkhead=bulkhead)
    release = asyncio.Event()
    seen: list[tuple[int, int]] = []

    async def work() -> None:
        held = current_reservation()
        assert held is not None
        seen.append((held.input_tokens, held.max_tokens))
        await release.wait()
        held.settle(10, 5)

    async def call() -> None:
        with call_cost(30, 100):
            await policy.call(work)

    first = asyncio.create_task(call())
    await asyncio.sleep(1)
    second = asyncio.create_task(call())
    await asyncio.sleep(1)
    # The second caller waits for the provider's request budget, not for the slot.
    assert bulkhead.stats().in_use == 1
    assert bulkhead.stats().queued == 0
    assert limits.stats().queued == 1
    release.set()
    await first
    assert bulkhead.stats().in_use == 0  # free while the second still waits for budget
    assert not second.done()
    await second
    assert seen == [(30, 100), (30, 100)]
    # the first call's 15 tokens left the 10 s window while the second waited
    assert available(limits, "tokens") == pytest.approx(1000 - 15, abs=1)


@pytest.mark.looptime
async def test_policy_provider_part_retries_429_and_gives_tokens_back() -> None:
    from bounded import Policy
    from bounded.llm import call_cost, current_reservation

    limits = ProviderLimits(rpm=100, tpm=1000, period=60.0, name="openai", rate_limit_retries=2)
    policy = Policy("llm", provider=limits)
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        assert current_reservation() is not None
        if attempts < 3:
            raise RetryableHTTPError(429, 2.0)
        return "ok"

    loop = asyncio.get_running_loop()
    started = loop.time()
    with call_cost(50, 200):
        assert await policy.call(flaky) == "ok"
    assert attempts == 3
    assert loop.time() - started >= 4.0  # each 429's retry-after held the budget back
    assert limits.stats().rate_limited_total == 2
    # two refused attempts gave their tokens back; the third kept its reservation
    assert available(limits, "tokens") == pytest.approx(1000 - 250, abs=1)

    attempts = -10  # always 429: the provider part gives up after rate_limit_retries
    with pytest.raises(RetryableHTTPError), call_cost(50, 200):
        await policy.call(flaky)
    assert attempts == -7
