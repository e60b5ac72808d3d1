"""The issue 9 agent, short: few calls and a 1 s window (bench/llm_agent.py runs it long)."""

from __future__ import annotations

from bench.llm_agent import bounded_agent, sdk_agent


async def test_agent_through_the_yaml_policy() -> None:
    o = await bounded_agent(calls=24, window=1.0, rpm=8)
    assert o.succeeded == o.calls
    assert o.watch.breaker_open_samples == 0
    assert o.breaker_rejected == 0
    # callers queued for the provider's budget while (almost) no slot was held
    assert o.watch.peak_waiting_for_provider > o.bulkhead_limit
    assert o.watch.slots_while_most_waiting < o.bulkhead_limit // 2
    assert all(o.metrics.values()), o.metrics


async def test_agent_with_the_official_sdks_and_half_the_limits() -> None:
    o = await sdk_agent(calls=30, window=1.0, rpm=12)
    assert o.succeeded == o.calls
    assert o.rate_limited_after_first == 0
    assert o.budget_restored is True
