"""ChatClient end to end against the mock provider on 127.0.0.1 (real HTTP, real time)."""

from __future__ import annotations

import asyncio

import httpx2
import pytest

from bounded import Backoff, Retry
from bounded.http import HTTPStatusError, RetryableHTTPError
from bounded.llm import ChatClient, ProviderLimits, QuotaExceeded, estimate_tokens
from bounded.mockllm import MockConfig, MockLLMServer
from bounded.mockllm.models import make_reply

SECRET = "sk-ant-SECRET-abcdef0123456789"


def fast_retry(attempts: int = 3) -> Retry:
    return Retry(
        on=(RetryableHTTPError, httpx2.TransportError),
        attempts=attempts,
        backoff=Backoff(initial=0.01, max=0.02),
        max_retry_after=2.0,
    )


async def test_openai_complete() -> None:
    async with (
        MockLLMServer(MockConfig(latency_base=0, seed=3)) as srv,
        ChatClient.openai(api_key="k", base_url=srv.url + "/v1", model="gpt-mock") as chat,
    ):
        result = await chat.complete("What is a bulkhead?", max_tokens=200, system="Be terse.")
    text, n, _ = make_reply(3, "gpt-mock", "Be terse.\nWhat is a bulkhead?", 200)
    assert result.text == text
    assert result.usage.output_tokens == n
    assert result.usage.input_tokens == estimate_tokens("Be terse.\nWhat is a bulkhead?")
    assert result.model == "gpt-mock"
    assert result.finish_reason == "stop"


async def test_anthropic_complete_with_messages() -> None:
    messages = [
        {"role": "system", "content": "You are a mock."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": [{"type": "text", "text": "again"}]},
    ]
    async with (
        MockLLMServer(MockConfig(latency_base=0)) as srv,
        ChatClient.anthropic(api_key="k", base_url=srv.url, model="claude-mock") as chat,
    ):
        result = await chat.complete(messages, max_tokens=4)
    assert result.usage.input_tokens == estimate_tokens("You are a mock. hi hello again")
    assert result.usage.output_tokens == 4
    assert len(result.text.split()) == 4
    assert result.finish_reason == "max_tokens"


async def test_tokens_are_settled_with_real_usage() -> None:
    limits = ProviderLimits(rpm=100, tpm=10_000)
    async with (
        MockLLMServer(MockConfig(latency_base=0, output_tokens=7)) as srv,
        ChatClient.openai(api_key="k", base_url=srv.url + "/v1", limits=limits) as chat,
    ):
        result = await chat.complete("one two three", max_tokens=1000)
    assert result.usage.total_tokens == 4 + 7  # "three" counts 2
    # reserved 4 + 1000, settled to 11: the rest is available again
    assert limits.limiters["tokens"].stats().available == 10_000 - 11


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_quota_errors_are_not_retried(provider: str) -> None:
    async with MockLLMServer(MockConfig(latency_base=0, quota_exceeded=True)) as srv:
        chat = (
            ChatClient.openai(api_key="k", base_url=srv.url + "/v1", policy=fast_retry(5))
            if provider == "openai"
            else ChatClient.anthropic(api_key="k", base_url=srv.url, policy=fast_retry(5))
        )
        async with chat:
            with pytest.raises(QuotaExceeded) as info:
                await chat.complete("hello")
        assert srv.state.stats()["requests_total"] == 1
    assert isinstance(info.value, HTTPStatusError)
    assert info.value.retry_after is None


async def test_retryable_errors_are_retried_then_raised() -> None:
    config = MockConfig(latency_base=0, error_rate=1.0, error_statuses=[529])
    async with (
        MockLLMServer(config) as srv,
        ChatClient.anthropic(api_key="k", base_url=srv.url, policy=fast_retry(3)) as chat,
    ):
        with pytest.raises(RetryableHTTPError) as info:
            await chat.complete("hello")
        assert info.value.status_code == 529
        assert srv.state.stats()["requests_total"] == 3
        srv.update(error_rate=0.0, reset_rate=0.3, seed=1)
        chat.policy = fast_retry(20)
        results = [await chat.complete(f"call {i}") for i in range(6)]  # resets are retried
        assert all(r.text for r in results)
        assert srv.state.stats()["resets_injected_total"] >= 1


async def test_api_key_never_in_errors() -> None:
    async with (
        MockLLMServer(MockConfig(latency_base=0, api_key="the-right-key")) as srv,
        ChatClient.anthropic(api_key=SECRET, base_url=srv.url, policy=fast_retry()) as chat,
    ):
        with pytest.raises(HTTPStatusError) as info:
            await chat.complete("hello")
        assert srv.state.stats()["requests_total"] == 1  # 401 is not retried
    err = info.value
    assert err.status_code == 401
    for text in (
        str(err),
        repr(err),
        err.body,
        str(dict(err.headers)),
        repr(chat),
        repr(chat.http),
    ):
        assert SECRET not in text


async def run_callers(chat: ChatClient, seconds: float, workers: int = 4) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    async def worker(i: int) -> None:
        n = 0
        while loop.time() < deadline:
            n += 1
            await chat.complete(f"worker {i} call {n}", max_tokens=8)

    await asyncio.gather(*(worker(i) for i in range(workers)))


async def test_same_limits_no_429() -> None:
    limits = ProviderLimits(rpm=20, period=1.0)
    async with (
        MockLLMServer(MockConfig(latency_base=0.005, rpm=20, window=1.0)) as srv,
        ChatClient.openai(api_key="k", base_url=srv.url + "/v1", limits=limits) as chat,
    ):
        await run_callers(chat, 1.5)
        stats = srv.state.stats()
    assert stats["statuses"].get("429", 0) == 0
    assert stats["statuses"]["200"] >= 25  # 1 + 20/s over 1.5 s, minus scheduling slack


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_header_resync_stops_429s_after_first_window(provider: str) -> None:
    # The server allows half of what the client is configured for.
    limits = ProviderLimits(rpm=40, period=1.0)
    async with MockLLMServer(MockConfig(latency_base=0.005, rpm=20, window=1.0)) as srv:
        chat = (
            ChatClient.openai(api_key="k", base_url=srv.url + "/v1", limits=limits)
            if provider == "openai"
            else ChatClient.anthropic(api_key="k", base_url=srv.url, limits=limits)
        )
        async with chat:
            first = asyncio.create_task(run_callers(chat, 3.0))
            await asyncio.sleep(1.0)
            after_first = srv.state.stats()
            await first
        stats = srv.state.stats()
    sent = stats["requests_total"] - after_first["requests_total"]
    limited = stats["statuses"].get("429", 0) - after_first["statuses"].get("429", 0)
    assert sent >= 20
    # Without resync about a third of these would be 429s; the benchmark holds the < 1%
    # bar over longer runs, this leaves room for a loaded test machine.
    assert limited <= max(1, 0.05 * sent)


async def test_through_a_policy_with_breaker_and_bulkhead() -> None:
    from bounded import Bulkhead, CircuitBreaker, CircuitOpen, Policy

    breaker = CircuitBreaker(failure_rate=0.5, minimum_calls=2, window=2, open_for=60)
    policy = Policy(retry=fast_retry(2), breaker=breaker, bulkhead=Bulkhead(2), timeout=5.0)
    async with (
        MockLLMServer(MockConfig(latency_base=0)) as srv,
        ChatClient.openai(api_key="k", base_url=srv.url + "/v1", policy=policy) as chat,
    ):
        assert (await chat.complete("hello")).text
        srv.update(error_rate=1.0, error_statuses=[503])
        with pytest.raises((RetryableHTTPError, CircuitOpen)):
            await chat.complete("hello")
        assert breaker.state == "open"
        sent = srv.state.stats()["requests_total"]
        with pytest.raises(CircuitOpen):
            await chat.complete("hello")
        assert srv.state.stats()["requests_total"] == sent  # the open breaker sent nothing
