"""Overhead of `bounded.llm.http_client` under the official OpenAI SDK, against the mock.

The same `AsyncOpenAI` calls, one at a time, with the SDK's own HTTP client and with
`bounded.llm.http_client(policy=...)` (a Policy with retry, breaker, bulkhead, timeout and
provider limits high enough never to wait), side by side in interleaved rounds. The mock
runs as `bounded mock-llm` in a child process at its default latency (20 ms). Target:
the transport adds at most 5% to a request's latency. Run: ``python -m bench
llm_transport`` or ``python -m bench.llm_transport --rounds 9``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from bench._harness import Row, Section, Target, interleaved, timed_calls
from bench.llm import mock_server

ROUNDS = 9
CALLS_PER_SAMPLE = 25
LATENCY = 0.02  # the mock's default


def _policy() -> Any:
    """Retry, breaker, bulkhead, timeout and provider limits high enough never to wait."""
    from bounded import Backoff, Bulkhead, CircuitBreaker, Policy, Retry
    from bounded.http import RetryableHTTPError
    from bounded.llm import ProviderLimits

    return Policy(
        "llm",
        retry=Retry(on=RetryableHTTPError, attempts=3, backoff=Backoff(initial=0.1)),
        breaker=CircuitBreaker(name="llm"),
        bulkhead=Bulkhead(64, name="llm"),
        timeout=30.0,
        provider=ProviderLimits(rpm=10**12, tpm=10**15, name="openai"),
    )


def _calls(client: Any) -> dict[str, Callable[[], Awaitable[object]]]:
    messages = [{"role": "user", "content": "How much does a transport cost?"}]

    async def chat() -> object:
        return await client.chat.completions.create(
            model="gpt-mock", messages=messages, max_tokens=64
        )

    async def chat_stream() -> object:
        stream = await client.chat.completions.create(
            model="gpt-mock",
            messages=messages,
            max_tokens=64,
            stream=True,
            stream_options={"include_usage": True},
        )
        return [chunk async for chunk in stream]

    return {"chat completion": chat, "streamed chat completion": chat_stream}


async def measure(rounds: int = ROUNDS, n: int = CALLS_PER_SAMPLE) -> dict[str, float]:
    """Median milliseconds per call of each (kind, client) case."""
    import openai

    from bounded.llm import http_client
    from bounded.mockllm import MockConfig

    policy = _policy()
    async with mock_server(MockConfig(latency_base=LATENCY), in_process=False) as (url, _):
        bare = openai.AsyncOpenAI(base_url=url + "/v1", api_key="mock", max_retries=0)
        limited = openai.AsyncOpenAI(
            base_url=url + "/v1",
            api_key="mock",
            max_retries=0,
            http_client=http_client(policy=policy),
        )
        async with bare, limited:
            cases = {}
            for client_name, client in (("SDK alone", bare), ("SDK + bounded", limited)):
                for kind, call in _calls(client).items():
                    cases[f"{kind}: {client_name}"] = timed_calls(call)
            fixed = dict.fromkeys(cases, n)
            ns = await interleaved(cases, rounds=rounds, fixed_n=fixed)
    return {name: value / 1e6 for name, value in ns.items()}


def _canned_reply(request: Any) -> Any:
    """A chat completion (or a stream of one) for any request, without a network."""
    import json

    import httpx2

    body = json.loads(request.content)
    usage = {"prompt_tokens": 7, "completion_tokens": 30, "total_tokens": 37}
    if not body.get("stream"):
        message = {"role": "assistant", "content": "word " * 30}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        data = {"id": "c", "object": "chat.completion", "created": 0, "model": "m"}
        return httpx2.Response(200, json={**data, "choices": [choice], "usage": usage})
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    events = [
        {**chunk, "choices": [{"index": 0, "delta": {"content": "word "}}]} for _ in range(30)
    ]
    events.append({**chunk, "choices": [], "usage": usage})
    text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return httpx2.Response(200, text=text, headers={"content-type": "text/event-stream"})


async def measure_cpu(rounds: int = ROUNDS) -> dict[str, float]:
    """Median microseconds per call with canned responses (no network): the CPU cost."""
    import httpx2
    import openai

    from bounded.llm import LimitedTransport

    policy = _policy()
    canned = httpx2.MockTransport(_canned_reply)
    bare = openai.AsyncOpenAI(
        base_url="http://mock/v1",
        api_key="mock",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=canned),
    )
    limited = openai.AsyncOpenAI(
        base_url="http://mock/v1",
        api_key="mock",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=LimitedTransport(policy=policy, inner=canned)),
    )
    async with bare, limited:
        cases = {}
        for client_name, client in (("SDK alone", bare), ("SDK + bounded", limited)):
            for kind, call in _calls(client).items():
                cases[f"{kind}: {client_name}"] = timed_calls(call)
        ns = await interleaved(cases, rounds=rounds)
    return {name: value / 1e3 for name, value in ns.items()}


def sections(ms: dict[str, float], cpu_us: dict[str, float] | None = None) -> list[Section]:
    """One table: latency per call, and the transport's share of it."""
    rows: list[Row] = []
    targets: list[Target] = []
    for kind in ("chat completion", "streamed chat completion"):
        bare, limited = ms[f"{kind}: SDK alone"], ms[f"{kind}: SDK + bounded"]
        rows.append(Row(f"{kind}: SDK alone", bare, 1.0))
        rows.append(Row(f"{kind}: SDK + bounded", limited, limited / bare))
        overhead = limited / bare - 1
        targets.append(
            Target(
                f"{kind}: the transport adds <= 5% to the request's latency",
                overhead <= 0.05,
                f"{overhead:+.1%} ({(limited - bare) * 1000:+.0f} us)",
            )
        )
    out = [
        Section(
            title="AsyncOpenAI with and without bounded.llm.http_client, one call at a time, "
            f"mock latency {LATENCY * 1000:g} ms",
            unit="ms per call",
            reference="SDK alone",
            rows=rows,
            targets=targets,
            notes=[
                "bounded: a Policy with retry, breaker, bulkhead (64), 30 s timeout and "
                "provider limits high enough never to wait; every call reserves from the "
                "request body, resyncs from the headers and settles from the usage "
                "(the streamed call from its last event).",
                "The mock runs as `bounded mock-llm` in a child process; medians of "
                f"interleaved rounds of {CALLS_PER_SAMPLE} calls.",
            ],
            value_format="{:.2f}",
        )
    ]
    if cpu_us is not None:
        cpu_rows = []
        for kind in ("chat completion", "streamed chat completion"):
            bare, limited = cpu_us[f"{kind}: SDK alone"], cpu_us[f"{kind}: SDK + bounded"]
            cpu_rows.append(Row(f"{kind}: SDK alone", bare, 1.0))
            cpu_rows.append(
                Row(
                    f"{kind}: SDK + bounded",
                    limited,
                    limited / bare,
                    note=f"{limited - bare:+.0f} us = {(limited - bare) / (LATENCY * 1e4):+.1f}% "
                    f"of {LATENCY * 1000:g} ms",
                )
            )
        out.append(
            Section(
                title="The same calls on canned responses (httpx2.MockTransport, no network): "
                "the transport's CPU cost",
                unit="us per call",
                reference="SDK alone",
                rows=cpu_rows,
                value_format="{:.0f}",
            )
        )
    return out


def run(rounds: int = ROUNDS) -> list[Section]:
    """Measure and tabulate (about rounds x 4 x 25 calls of ~25 ms, then the CPU cost)."""
    ms = asyncio.run(measure(rounds))
    return sections(ms, asyncio.run(measure_cpu(rounds)))


def main() -> None:
    from rich.console import Console

    from bench._harness import print_section

    parser = argparse.ArgumentParser(prog="python -m bench.llm_transport", description=__doc__)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    console = Console()
    for section in run(args.rounds):
        print_section(console, section)


if __name__ == "__main__":
    main()
