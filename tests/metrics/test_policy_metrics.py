"""Counters of policy calls, attempts, retries, give-ups, expiries and breaker changes."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

import bounded
from bounded.manager import ConcurrencyManager
from bounded.metrics import Metrics
from bounded.policy import _current_call

pytestmark = pytest.mark.looptime


def value(metrics: Metrics, metric: str, /, **labels: str) -> float:
    wanted = tuple(sorted(labels.items()))
    for family in text_string_to_metric_families(metrics.generate().decode()):
        for sample in family.samples:
            if sample.name == metric and tuple(sorted(sample.labels.items())) == wanted:
                return float(sample.value)
    return 0.0


def manager() -> ConcurrencyManager:
    return ConcurrencyManager.from_dict(
        {
            "retries": {
                "llm": {
                    "attempts": 3,
                    "on": ["builtins.OSError", "TimeoutError"],
                    "backoff": {"initial": 1.0, "max": 1.0, "jitter": "none"},
                }
            },
            "breakers": {"llm": {"minimum_calls": 2, "window": 2, "open_for": 10}},
            "bulkheads": {"llm": {"limit": 4}},
            "policies": {
                "chat": {"retry": "llm", "timeout": 5.0, "bulkhead": "llm"},
                "slow": {"deadline": 3.0},
                "guarded": {"breaker": "llm"},
            },
        },
        env={},
    )


async def test_outcomes_attempts_retries_give_ups_and_timeouts() -> None:
    m = manager()
    chat = m.policy("chat")
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("reset")
        if calls == 2:
            await asyncio.sleep(60)  # cut by the 5 s timeout, then retried
        return "ok"

    assert await chat.call(flaky) == "ok"

    async def down() -> None:
        raise OSError("down")

    with pytest.raises(OSError, match="down"):
        await chat.call(down)
    metrics = m.metrics
    assert value(metrics, "bounded_policy_calls_total", name="chat", outcome="success") == 1
    assert value(metrics, "bounded_policy_calls_total", name="chat", outcome="error") == 1
    assert value(metrics, "bounded_policy_attempts_total", name="chat") == 6
    assert value(metrics, "bounded_timeouts_total", name="chat") == 1
    assert value(metrics, "bounded_retries_total", name="llm") == 4
    assert value(metrics, "bounded_retry_give_ups_total", name="llm", reason="attempts") == 1
    # latency in seconds of loop time: 1 s backoff + 5 s timeout + 1 s backoff
    assert value(
        metrics, "bounded_policy_call_duration_seconds_sum", name="chat", outcome="success"
    ) == pytest.approx(7.0)


async def test_deadline_and_breaker_transitions_and_rejections() -> None:
    m = manager()

    async def forever() -> None:
        await asyncio.sleep(100)

    with pytest.raises(TimeoutError):
        await m.policy("slow").call(forever)
    assert value(m.metrics, "bounded_deadlines_exceeded_total", name="slow") == 1
    assert value(m.metrics, "bounded_policy_calls_total", name="slow", outcome="deadline") == 1

    async def down() -> None:
        raise OSError("down")

    guarded = m.policy("guarded")
    for _ in range(2):
        with pytest.raises(OSError, match="down"):
            await guarded.call(down)
    with pytest.raises(bounded.CircuitOpen):
        await guarded.call(down)
    assert value(m.metrics, "bounded_breaker_transitions_total", name="llm", state="open") == 1
    assert value(m.metrics, "bounded_policy_calls_total", name="guarded", outcome="rejected") == 1


async def test_a_policy_built_by_hand_records_nothing() -> None:
    seen: list[object] = []

    async def fn() -> None:
        seen.append(_current_call.get())

    policy = bounded.Policy(
        "bare", retry=bounded.Retry(on=OSError), bulkhead=bounded.Bulkhead(2), timeout=1.0
    )
    await policy.call(fn)
    assert seen == [None]


async def test_a_failing_observer_never_changes_the_result(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        def call_done(self, outcome: str, seconds: float, record: object) -> None:
            raise RuntimeError("observer bug")

    async def fn() -> str:
        return "ok"

    policy = bounded.Policy("p", observer=Broken())
    with caplog.at_level("ERROR", logger="bounded.policy"):
        assert await policy.call(fn) == "ok"
    assert "recording a call of policy 'p' failed" in caplog.text
