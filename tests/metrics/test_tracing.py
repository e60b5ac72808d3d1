"""OpenTelemetry spans per policy call, read back with the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode, get_current_span

import bounded

pytestmark = pytest.mark.looptime


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


async def test_a_span_per_call_with_the_wait_in_each_limiter(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bulkhead = bounded.Bulkhead(1, name="llm")
    limiter = bounded.RateLimiter(1, per=1.0, name="openai")
    policy = bounded.Policy(
        "chat",
        rate_limiter=limiter,
        bulkhead=bulkhead,
        tracer=provider.get_tracer("test"),
    )
    inside: list[bool] = []

    async def work() -> str:
        inside.append(get_current_span().is_recording())  # the call's span is current
        return "ok"

    await limiter.acquire()  # the next unit is due in 1 s
    async with bulkhead:
        task = asyncio.create_task(policy.call(work))
        await asyncio.sleep(3)  # the bulkhead is held 3 s
    assert await task == "ok"
    (span,) = exporter.get_finished_spans()
    assert span.name == "bounded.policy chat"
    attrs = dict(span.attributes or {})
    assert attrs["bounded.policy"] == "chat"
    assert attrs["bounded.outcome"] == "success"
    assert attrs["bounded.attempts"] == 1
    assert attrs["bounded.wait.rate_limiter.seconds"] == pytest.approx(1.0)
    assert attrs["bounded.wait.bulkhead.seconds"] == pytest.approx(2.0)
    assert inside == [True]


async def test_a_failed_call_has_an_error_status_and_its_attempts(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    retry = bounded.Retry(on=OSError, attempts=3, backoff=bounded.Backoff(initial=0.1, max=0.1))
    policy = bounded.Policy("db", retry=retry, timeout=1.0, tracer=provider.get_tracer("t"))

    async def down() -> None:
        raise OSError("down")

    with pytest.raises(OSError, match="down"):
        await policy.call(down)
    (span,) = exporter.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert (attrs["bounded.outcome"], attrs["bounded.attempts"]) == ("error", 3)
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


async def test_tracing_from_the_manager_configuration() -> None:
    manager = bounded.ConcurrencyManager.from_dict(
        {"monitoring": {"tracing": True}, "policies": {"p": {"timeout": 1.0}}}, env={}
    )
    policy = manager.policy("p")
    assert callable(policy.tracer.start_span)
    assert policy.observer is not None
    assert await policy.call(asyncio.sleep, 0, "done") == "done"
    untraced = bounded.ConcurrencyManager.from_dict({"policies": {"p": {}}}, env={})
    assert untraced.policy("p").tracer is None


def test_a_tracer_must_look_like_one() -> None:
    with pytest.raises(ValueError, match="tracer"):
        bounded.Policy("x", tracer=object())


async def test_a_cancelled_call_is_not_an_error(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    policy = bounded.Policy("chat", timeout=10.0, tracer=provider.get_tracer("t"))
    task: asyncio.Task[None] = asyncio.create_task(policy.call(asyncio.sleep, 5))
    await asyncio.sleep(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (span,) = exporter.get_finished_spans()
    assert dict(span.attributes or {})["bounded.outcome"] == "cancelled"
    assert span.status.status_code is not StatusCode.ERROR
