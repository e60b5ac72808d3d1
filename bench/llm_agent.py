"""The agent of issue 9, end to end: 200 LLM calls fanned out through a ConcurrencyManager.

(1) `bounded` alone: a policy from YAML (retry, breaker, rate limit, bulkhead, timeout and
    a `providers:` entry) around `ChatClient`, against ``bounded mock-llm --rpm 60
    --window 10`` with the provider limits equal to the mock's. Targets: every call
    succeeds, the breaker never opens, no bulkhead slot is held while waiting for the
    provider's budget (the peak of slots in use stays at what the provider admits at
    once, far below the bulkhead's limit), and /metrics shows the provider's budget.
(2) the same agent written with the official `AsyncOpenAI` and `AsyncAnthropic` clients
    whose `http_client` is `bounded.llm.http_client(policy=...)`, against two mocks whose
    limits are half the configured ones. Targets: no provider 429 after the first window
    (resync from the headers), and every token limit back to its full budget once the
    last reservation has left the window (no leaked reservation).

Both mocks run in this process (uvicorn on 127.0.0.1). Run: ``python -m bench llm_agent``
or ``python -m bench.llm_agent --calls 200 --window 10``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from bench._harness import Row, Section, Target

CALLS = 200
WINDOW = 10.0
RPM = 60  # per window, as `bounded mock-llm --rpm 60 --window 10`

AGENT_YAML = """
providers:
  openai: {{rpm: {rpm}, tpm: {tpm}, period: {window}}}
  anthropic: {{rpm: {rpm}, input_tpm: {tpm}, output_tpm: {tpm}, period: {window}}}
retries:
  llm:
    attempts: 5
    "on": [RetryableHTTPError, TransportError, TimeoutError]
    backoff: {{initial: 0.2, max: 5}}
breakers:
  llm: {{failure_rate: 0.5, minimum_calls: 10, window: 20, open_for: 5}}
rate_limits:
  llm: {{rate: 50, per: 1}}
bulkheads:
  llm: {{limit: 16}}
policies:
  openai_call: {{provider: openai, retry: llm, breaker: llm, rate_limit: llm, bulkhead: llm,
                timeout: 30, deadline: {deadline}}}
  anthropic_call: {{provider: anthropic, retry: llm, breaker: llm, rate_limit: llm,
                   bulkhead: llm, timeout: 30, deadline: {deadline}}}
monitoring: {{interval: 0.5, prometheus: {{port: 0}}}}
"""


def agent_config(rpm: int, window: float, calls: int, tpm: int = 200_000) -> dict[str, Any]:
    """The agent's bounded.yaml, parsed: client limits `rpm` and `tpm` per `window`."""
    deadline = 60 + 2 * calls / rpm * window
    text = AGENT_YAML.format(rpm=rpm, tpm=tpm, window=window, deadline=deadline)
    config: dict[str, Any] = yaml.safe_load(text)
    return config


@dataclass
class Watch:
    """What a sampler saw while the agent ran (every 5 ms)."""

    peak_slots: int = 0
    peak_waiting_for_provider: int = 0
    slots_while_most_waiting: int = 0
    breaker_open_samples: int = 0
    rate_limited_first_window: int = 0

    def sample(self, slots: int, waiting: int, breaker_state: str) -> None:
        """Record one sample."""
        self.peak_slots = max(self.peak_slots, slots)
        if waiting >= self.peak_waiting_for_provider:
            self.peak_waiting_for_provider = waiting
            self.slots_while_most_waiting = slots
        self.breaker_open_samples += breaker_state != "closed"


@dataclass
class Outcome:
    """What one agent run measured."""

    calls: int
    succeeded: int
    seconds: float
    rate_limited: int  # 429s the mocks answered
    rate_limited_after_first: int
    provider_429s_absorbed: int  # 429s retried by the policies' provider part
    breaker_rejected: int
    watch: Watch
    bulkhead_limit: int
    budget_restored: bool | None = None
    metrics: dict[str, bool] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def _sampling(
    watch: Watch, manager: Any, providers: list[str], mocks: list[Any], window: float
) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def sampler() -> None:
        first_window_done = False
        while True:
            waiting = sum(manager.provider(p).stats().queued for p in providers)
            watch.sample(
                manager.bulkhead("llm").stats().in_use, waiting, manager.breaker("llm").state
            )
            if not first_window_done and loop.time() - start >= window:
                first_window_done = True
                watch.rate_limited_first_window = sum(
                    m.state.counters["rate_limited_total"] for m in mocks
                )
            await asyncio.sleep(0.005)

    task = asyncio.create_task(sampler())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _scrape(url: str) -> str:
    import httpx2

    async with httpx2.AsyncClient(timeout=10) as http:
        return (await http.get(url)).text


def _metrics_seen(text: str, provider: str) -> dict[str, bool]:
    return {
        "provider budget": f'bounded_provider_available{{name="{provider}.requests"}}' in text,
        "provider 429s": f'bounded_provider_rate_limited_total{{name="{provider}"}}' in text,
        "provider waits": f'bounded_wait_seconds_count{{kind="provider",name="{provider}"}}'
        in text,
    }


async def _fan_out(
    manager: Any,
    ask: Callable[[int], Awaitable[str]],
    calls: int,
    providers: list[str],
    mocks: list[Any],
    window: float,
) -> Outcome:
    """Run `calls` calls of `ask` at once (bounded.map) and collect what they did."""
    import bounded

    watch = Watch()
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with _sampling(watch, manager, providers, mocks, window):
        replies = await bounded.map(ask, range(calls), limit=calls, return_exceptions=True)
    seconds = loop.time() - started
    assert manager.metrics_url is not None
    text = await _scrape(manager.metrics_url)
    limited = sum(m.state.counters["rate_limited_total"] for m in mocks)
    return Outcome(
        calls=calls,
        succeeded=sum(isinstance(r, str) and bool(r) for r in replies),
        seconds=seconds,
        rate_limited=limited,
        rate_limited_after_first=limited - watch.rate_limited_first_window,
        provider_429s_absorbed=sum(
            manager.provider(p).stats().rate_limited_total for p in providers
        ),
        breaker_rejected=manager.breaker("llm").stats().rejected_total,
        watch=watch,
        bulkhead_limit=manager.bulkhead("llm").limit,
        metrics=_metrics_seen(text, providers[-1]),
    )


async def bounded_agent(
    calls: int = CALLS, window: float = WINDOW, rpm: int = RPM, latency: float = 0.02
) -> Outcome:
    """(1): ChatClient through the YAML policy; provider limits equal to the mock's."""
    import bounded
    from bounded.llm import ChatClient
    from bounded.mockllm import MockConfig, MockLLMServer

    config = MockConfig(rpm=rpm, window=window, latency_base=latency, latency_jitter=latency)
    async with MockLLMServer(config) as srv:
        manager = bounded.ConcurrencyManager.from_dict(agent_config(rpm, window, calls))
        async with manager:
            chat = ChatClient.openai(
                api_key="mock",
                base_url=srv.url + "/v1",
                model="mock",
                policy=manager.policy("openai_call"),
            )

            async def ask(i: int) -> str:
                return (await chat.complete(f"Summarise document {i}", max_tokens=64)).text

            async with chat:
                return await _fan_out(manager, ask, calls, ["openai"], [srv], window)


def _sdk_calls(openai_client: Any, anthropic_client: Any) -> list[Callable[[int], Any]]:
    """One call of each kind the agent makes through the official SDKs."""

    async def chat(i: int) -> str:
        r = await openai_client.chat.completions.create(
            model="gpt-mock", messages=[{"role": "user", "content": f"doc {i}"}], max_tokens=64
        )
        return str(r.choices[0].message.content)

    async def chat_stream(i: int) -> str:
        stream = await openai_client.chat.completions.create(
            model="gpt-mock",
            messages=[{"role": "user", "content": f"doc {i}"}],
            max_tokens=64,
            stream=True,
            stream_options={"include_usage": True},
        )
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        return "".join(parts)

    async def responses(i: int) -> str:
        r = await openai_client.responses.create(
            model="gpt-mock", input=f"doc {i}", max_output_tokens=64
        )
        return str(r.output_text)

    async def messages(i: int) -> str:
        r = await anthropic_client.messages.create(
            model="claude-mock", max_tokens=64, messages=[{"role": "user", "content": f"doc {i}"}]
        )
        return str(r.content[0].text)

    async def messages_stream(i: int) -> str:
        async with anthropic_client.messages.stream(
            model="claude-mock", max_tokens=64, messages=[{"role": "user", "content": f"doc {i}"}]
        ) as stream:
            return str(await stream.get_final_text())

    return [chat, messages, chat_stream, messages_stream, responses]


async def sdk_agent(
    calls: int = CALLS, window: float = WINDOW, rpm: int = RPM, latency: float = 0.02
) -> Outcome:
    """(2): AsyncOpenAI and AsyncAnthropic through `bounded.llm.http_client`; the mocks
    allow half the configured limits."""
    import anthropic
    import openai

    import bounded
    from bounded.llm import http_client
    from bounded.mockllm import MockConfig, MockLLMServer

    tpm = 20_000
    half = MockConfig(
        rpm=rpm // 2, tpm=tpm // 2, window=window, latency_base=latency, latency_jitter=latency
    )
    half_anthropic = half.model_copy(
        update={"tpm": None, "input_tpm": tpm // 2, "output_tpm": tpm // 2}
    )
    async with MockLLMServer(half) as oai_srv, MockLLMServer(half_anthropic) as ant_srv:
        manager = bounded.ConcurrencyManager.from_dict(agent_config(rpm, window, calls, tpm))
        async with manager:
            oai = openai.AsyncOpenAI(
                base_url=oai_srv.url + "/v1",
                api_key="mock",
                max_retries=0,
                http_client=http_client(policy=manager.policy("openai_call")),
            )
            ant = anthropic.AsyncAnthropic(
                base_url=ant_srv.url,
                api_key="mock",
                max_retries=0,
                http_client=http_client(policy=manager.policy("anthropic_call")),
            )
            kinds = _sdk_calls(oai, ant)

            async def ask(i: int) -> str:
                result: str = await kinds[i % len(kinds)](i)
                return result

            providers = ["openai", "anthropic"]
            async with oai, ant:
                outcome = await _fan_out(manager, ask, calls, providers, [oai_srv, ant_srv], window)
            # Every reservation settled or given back: once the window has passed, every
            # token limit is full again.
            await asyncio.sleep(window + 0.2)
            outcome.budget_restored = all(
                left >= manager.provider(p).stats().limits[kind] - 1e-6
                for p in providers
                for kind, left in manager.provider(p).stats().available.items()
                if kind != "requests"
            )
            return outcome


def sections(plain: Outcome, sdk: Outcome, window: float, rpm: int) -> list[Section]:
    """Both runs as one table, with the issue's targets."""
    rows = []
    for label, o in (
        ("(1) ChatClient + YAML policy, limits = mock's", plain),
        ("(2) AsyncOpenAI/AsyncAnthropic + transport, mock = half", sdk),
    ):
        rows.append(
            Row(
                label,
                o.succeeded,
                extra={
                    "calls": str(o.calls),
                    "seconds": f"{o.seconds:.1f}",
                    "429s (after 1st window)": f"{o.rate_limited} ({o.rate_limited_after_first})",
                    "429s absorbed by provider part": str(o.provider_429s_absorbed),
                    "breaker open samples / rejections": f"{o.watch.breaker_open_samples} / "
                    f"{o.breaker_rejected}",
                    "peak slots in use / limit": f"{o.watch.peak_slots} / {o.bulkhead_limit}",
                    "peak waiting for provider (slots then)": f"{o.watch.peak_waiting_for_provider}"
                    f" ({o.watch.slots_while_most_waiting})",
                },
            )
        )
    targets = [
        Target(
            "(1) all calls succeed",
            plain.succeeded == plain.calls,
            f"{plain.succeeded}/{plain.calls}",
        ),
        Target(
            "(1) the breaker never opens (no open state sampled, no rejection)",
            plain.watch.breaker_open_samples == 0 and plain.breaker_rejected == 0,
            f"{plain.watch.breaker_open_samples} samples open, {plain.breaker_rejected} rejected",
        ),
        Target(
            "(1) no bulkhead slot held while waiting for the provider",
            plain.watch.peak_waiting_for_provider > plain.bulkhead_limit
            and plain.watch.slots_while_most_waiting < plain.bulkhead_limit,
            f"{plain.watch.peak_waiting_for_provider} callers waited while "
            f"{plain.watch.slots_while_most_waiting} of {plain.bulkhead_limit} slots were held",
        ),
        Target(
            "(1) /metrics shows the provider's budget and waits",
            all(plain.metrics.values()),
            ", ".join(k for k, v in plain.metrics.items() if v),
        ),
        Target("(2) all calls succeed", sdk.succeeded == sdk.calls, f"{sdk.succeeded}/{sdk.calls}"),
        Target(
            "(2) 0 provider 429s after the first window (mock at half the limits)",
            sdk.rate_limited_after_first == 0,
            f"{sdk.rate_limited_after_first} after, {sdk.rate_limited} in all",
        ),
        Target(
            "(2) every token limit back to its full budget at the end",
            bool(sdk.budget_restored),
            str(sdk.budget_restored),
        ),
    ]
    return [
        Section(
            title=f"Issue 9 agent: {plain.calls} calls fanned out, mock at {rpm} requests per "
            f"{window:g} s window",
            unit="calls succeeded",
            reference=None,
            rows=rows,
            targets=targets,
            columns=list(rows[0].extra),
            notes=[
                "Policy from YAML: retry (5 attempts), breaker (50% of 20 calls), rate limit, "
                "bulkhead of 16, 30 s timeout, and the provider's limits, reserved before the "
                "bulkhead. Mock latency 20-40 ms, in this process.",
                "(2) alternates chat completions, messages, streaming of both, and the "
                "Responses API; SDK retries off (max_retries=0), the policy retries.",
            ],
            value_format="{:.0f}",
        )
    ]


def run(calls: int = CALLS, window: float = WINDOW, rpm: int = RPM) -> list[Section]:
    """Both agents, one after the other (about 2 x calls / rpm windows, plus one window)."""
    plain = asyncio.run(bounded_agent(calls, window, rpm))
    sdk = asyncio.run(sdk_agent(calls, window, rpm))
    return sections(plain, sdk, window, rpm)


def main() -> None:
    from rich.console import Console

    from bench._harness import print_section

    parser = argparse.ArgumentParser(prog="python -m bench.llm_agent", description=__doc__)
    parser.add_argument("--calls", type=int, default=CALLS)
    parser.add_argument("--window", type=float, default=WINDOW)
    parser.add_argument("--rpm", type=int, default=RPM)
    args = parser.parse_args()
    console = Console()
    for section in run(args.calls, args.window, args.rpm):
        print_section(console, section)


if __name__ == "__main__":
    main()
