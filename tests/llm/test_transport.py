"""The official openai and anthropic SDKs through `bounded.llm.http_client`, against the mock."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import anthropic
import openai
import pytest

from bounded import Backoff, Bulkhead, Policy, Retry
from bounded.http import RetryableHTTPError
from bounded.llm import ProviderLimits, estimate_tokens, http_client, request_cost
from bounded.mockllm import MockConfig, MockLLMServer
from bounded.mockllm.app import embedding

TPM = 100_000
PROMPT = "What does a bulkhead bound?"


def spent(limits: ProviderLimits, kind: str = "tokens") -> float:
    stats = limits.stats()
    return stats.limits[kind] - stats.available[kind]


def sdk(srv: MockLLMServer, policy: Policy, max_retries: int = 0) -> openai.AsyncOpenAI:
    """An AsyncOpenAI client on the mock whose requests go through `policy`."""
    return openai.AsyncOpenAI(
        base_url=srv.url + "/v1",
        api_key="sk-mock",
        http_client=http_client(policy=policy),
        max_retries=max_retries,
    )


@pytest.fixture
async def srv() -> AsyncIterator[MockLLMServer]:
    async with MockLLMServer(MockConfig(latency_base=0, seed=1)) as server:
        yield server


@pytest.fixture
def limits() -> ProviderLimits:
    return ProviderLimits(rpm=100_000, tpm=TPM, name="openai")


@pytest.fixture
async def oai(srv: MockLLMServer, limits: ProviderLimits) -> AsyncIterator[openai.AsyncOpenAI]:
    policy = Policy("llm", provider=limits)
    async with sdk(srv, policy) as client:
        yield client


@pytest.fixture
async def claude(
    srv: MockLLMServer, limits: ProviderLimits
) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=srv.url,
        api_key="sk-ant-mock",
        http_client=http_client(provider=limits),
        max_retries=0,
    ) as client:
        yield client


async def test_chat_completion_settles_with_reported_usage(
    oai: openai.AsyncOpenAI, limits: ProviderLimits
) -> None:
    reply = await oai.chat.completions.create(
        model="gpt-mock", messages=[{"role": "user", "content": PROMPT}], max_tokens=500
    )
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == estimate_tokens(PROMPT)
    assert reply.choices[0].message.content
    assert spent(limits) == pytest.approx(reply.usage.total_tokens, abs=1)
    assert limits.stats().resyncs_total == 0  # the mock sent no limits: nothing to resync


@pytest.mark.parametrize("include_usage", [True, False])
async def test_chat_completion_stream_settles_from_the_usage_chunk(
    oai: openai.AsyncOpenAI, limits: ProviderLimits, include_usage: bool
) -> None:
    stream = await oai.chat.completions.create(
        model="gpt-mock",
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=500,
        stream=True,
        stream_options={"include_usage": include_usage},
    )
    pieces = []
    total = None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            total = chunk.usage.total_tokens
    assert "".join(pieces)
    if include_usage:
        assert total is not None
        assert spent(limits) == pytest.approx(total, abs=1)
    else:  # no usage in the stream: the whole reservation stays spent
        assert total is None
        assert spent(limits) == pytest.approx(estimate_tokens(PROMPT) + 500, abs=1)


async def test_responses_api_plain_and_streaming(
    oai: openai.AsyncOpenAI, limits: ProviderLimits
) -> None:
    reply = await oai.responses.create(
        model="gpt-mock", input=PROMPT, instructions="Be terse.", max_output_tokens=300
    )
    assert reply.output_text
    assert reply.usage is not None
    assert reply.usage.input_tokens == estimate_tokens(f"Be terse.\n{PROMPT}")
    first = reply.usage.total_tokens
    assert spent(limits) == pytest.approx(first, abs=1)

    stream = await oai.responses.create(
        model="gpt-mock", input=PROMPT, max_output_tokens=300, stream=True
    )
    deltas = []
    async for event in stream:
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        elif event.type == "response.completed":
            assert event.response.usage is not None
            second = event.response.usage.total_tokens
    assert "".join(deltas)
    assert spent(limits) == pytest.approx(first + second, abs=2)


async def test_embeddings_are_deterministic_and_cost_input_tokens(
    oai: openai.AsyncOpenAI, srv: MockLLMServer, limits: ProviderLimits
) -> None:
    result = await oai.embeddings.create(model="emb", input=["alpha beta", "gamma"], dimensions=16)
    assert [len(d.embedding) for d in result.data] == [16, 16]
    assert result.data[0].embedding == pytest.approx(embedding("alpha beta", 16))
    assert result.usage.prompt_tokens == estimate_tokens("alpha beta") + estimate_tokens("gamma")
    assert spent(limits) == pytest.approx(result.usage.prompt_tokens, abs=1)
    default = await oai.embeddings.create(model="emb", input="alpha beta")
    assert len(default.data[0].embedding) == srv.config.embedding_dimensions
    assert default.data[0].embedding[:16] != result.data[0].embedding


async def test_models_pass_through_without_a_reservation(
    oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic, limits: ProviderLimits
) -> None:
    assert "gpt-4o-mini" in [m.id async for m in oai.models.list()]
    assert "claude-sonnet-4-5" in [m.id async for m in claude.models.list()]
    assert spent(limits) == pytest.approx(0, abs=1)


async def test_anthropic_messages_plain_and_streaming(
    claude: anthropic.AsyncAnthropic, limits: ProviderLimits
) -> None:
    message = await claude.messages.create(
        model="claude-mock",
        max_tokens=400,
        system="Be terse.",
        messages=[{"role": "user", "content": PROMPT}],
    )
    assert message.content[0].type == "text"
    first = message.usage.input_tokens + message.usage.output_tokens
    assert spent(limits) == pytest.approx(first, abs=1)
    async with claude.messages.stream(
        model="claude-mock", max_tokens=400, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        final = await stream.get_final_message()
    second = final.usage.input_tokens + final.usage.output_tokens
    assert final.usage.output_tokens > 1
    assert spent(limits) == pytest.approx(first + second, abs=2)


async def test_refused_request_gives_tokens_back_and_raises_the_sdk_error(
    srv: MockLLMServer, oai: openai.AsyncOpenAI, limits: ProviderLimits
) -> None:
    srv.update(quota_exceeded=True)
    with pytest.raises(openai.RateLimitError) as caught:
        await oai.chat.completions.create(
            model="gpt-mock", messages=[{"role": "user", "content": PROMPT}], max_tokens=500
        )
    assert caught.value.code == "insufficient_quota"
    assert srv.state.counters["requests_total"] == 1  # quota errors are not retried
    assert spent(limits) == pytest.approx(0, abs=1)


async def test_policy_is_the_one_retry_loop(srv: MockLLMServer) -> None:
    srv.update(error_rate=1.0, error_statuses=[503])
    retry = Retry(on=RetryableHTTPError, attempts=3, backoff=Backoff(initial=0.001, max=0.002))
    async with sdk(srv, Policy("llm", retry=retry)) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(
                model="gpt-mock", messages=[{"role": "user", "content": "hi"}], max_tokens=5
            )
    assert caught.value.status_code == 503
    assert srv.state.counters["requests_total"] == 3


async def test_provider_429s_are_resynced_and_retried_by_the_provider_part() -> None:
    # The mock allows 3 requests per second; the client believes in 6 and ignores the
    # headers: it meets 429s, which the provider part absorbs (wait retry-after, again).
    config = MockConfig(latency_base=0.01, rpm=3, window=1.0)
    limits = ProviderLimits(rpm=6, period=1.0, name="openai", resync=False, rate_limit_retries=5)
    bulkhead = Bulkhead(4, name="llm")
    policy = Policy("llm", provider=limits, bulkhead=bulkhead)

    async with MockLLMServer(config) as srv:
        async with sdk(srv, policy) as client:

            async def call(i: int) -> str | None:
                reply = await client.chat.completions.create(
                    model="gpt-mock", messages=[{"role": "user", "content": f"q{i}"}], max_tokens=5
                )
                return reply.choices[0].message.content

            replies = await asyncio.gather(*(call(i) for i in range(8)))
        stats = srv.state.stats()
    assert all(replies)
    assert stats["statuses"].get("200") == 8
    assert limits.stats().rate_limited_total == stats["rate_limited_total"] >= 1
    assert limits.stats().resyncs_total == 0
    assert bulkhead.stats().in_use == 0


def test_request_cost_per_api() -> None:
    chat = {"messages": [{"role": "user", "content": "a b c"}], "max_completion_tokens": 9}
    assert request_cost("POST", "/v1/chat/completions", chat) == (3, 9)
    assert request_cost("POST", "/v1/responses", {"input": "a b", "instructions": "c"}) == (
        3,
        4096,
    )
    msgs = {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]}
    assert request_cost("POST", "/v1/messages", {**msgs, "max_tokens": 7}) == (1, 7)
    assert request_cost("POST", "/v1/embeddings", {"input": ["ab", "cd"]}) == (2, 0)
    assert request_cost("GET", "/v1/models", None) is None
    assert request_cost("POST", "/v1/files", {"purpose": "x"}) is None


async def test_without_a_policy_a_429_reaches_the_sdk_with_the_tokens_back(
    srv: MockLLMServer,
) -> None:
    # resync off: with it, the second call would wait for the budget the headers report
    limits = ProviderLimits(rpm=100, tpm=TPM, name="anthropic", resync=False)
    srv.update(rpm=1, window=60)
    async with anthropic.AsyncAnthropic(
        base_url=srv.url,
        api_key="sk-ant-mock",
        http_client=http_client(provider=limits),
        max_retries=0,
    ) as claude:
        first = await claude.messages.create(
            model="claude-mock", max_tokens=300, messages=[{"role": "user", "content": PROMPT}]
        )
        with pytest.raises(anthropic.RateLimitError):
            await claude.messages.create(
                model="claude-mock", max_tokens=300, messages=[{"role": "user", "content": PROMPT}]
            )
    assert limits.stats().rate_limited_total == 1
    used = first.usage.input_tokens + first.usage.output_tokens
    assert spent(limits) == pytest.approx(used, abs=1)


async def test_policy_timeout_is_the_sdks_timeout_error(srv: MockLLMServer) -> None:
    srv.update(slow_rate=1.0, slow_seconds=5.0)
    async with sdk(srv, Policy("llm", timeout=0.05)) as client:
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(
                model="gpt-mock", messages=[{"role": "user", "content": "hi"}], max_tokens=5
            )


async def test_sdk_retries_on_top_of_the_policy_are_reported_once(
    srv: MockLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    srv.update(error_rate=1.0, error_statuses=[500])
    async with sdk(srv, Policy("llm"), max_retries=1) as client:
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                await client.with_options(timeout=5).chat.completions.create(
                    model="gpt-mock", messages=[{"role": "user", "content": "hi"}], max_tokens=5
                )
    warnings = [r for r in caplog.records if "max_retries=0" in r.getMessage()]
    assert len(warnings) == 1


async def test_sdk_stream_helpers_work_through_the_transport(
    oai: openai.AsyncOpenAI, limits: ProviderLimits
) -> None:
    async with oai.responses.stream(model="gpt-mock", input=PROMPT, max_output_tokens=300) as s:
        final = await s.get_final_response()
    assert final.status == "completed"
    assert final.output_text
    assert final.usage is not None
    assert spent(limits) == pytest.approx(final.usage.total_tokens, abs=1)


async def test_unreachable_provider_gives_the_tokens_back(limits: ProviderLimits) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    async with openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{port}/v1",
        api_key="sk-mock",
        http_client=http_client(policy=Policy("llm", provider=limits)),
        max_retries=0,
    ) as client:
        with pytest.raises(openai.APIConnectionError):
            await client.chat.completions.create(
                model="gpt-mock", messages=[{"role": "user", "content": PROMPT}], max_tokens=500
            )
    assert spent(limits) == pytest.approx(0, abs=1)
