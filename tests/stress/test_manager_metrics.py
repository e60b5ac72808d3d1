"""A `ConcurrencyManager` policy (retry, rate limit, bulkhead) under a spike, on virtual time:
every Prometheus counter the run touches equals what the runner and the target counted,
and a run through `run_scenario` reports those counters in its JSON result and report."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator
from importlib import resources

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bounded import ConcurrencyManager
from bounded.stress import Target, register_target, spike
from bounded.stress.report import render_report
from bounded.stress.runner import run_open
from bounded.stress.scenario import run_scenario

CONFIG = {
    # 6 slots held 0.2 s each: 30 attempts/s at most; the rate limit admits 40/s.
    "bulkheads": {"llm": {"limit": 6, "max_queue": 2}},
    "rate_limits": {"llm": {"rate": 40, "burst": 10, "max_wait": 0.05}},
    "retries": {
        "llm": {
            "attempts": 3,
            "on": ["ConnectionError"],
            "backoff": {"initial": 0.01, "max": 0.05, "jitter": "none"},
        }
    },
    "policies": {"llm": {"retry": "llm", "rate_limit": "llm", "bulkhead": "llm", "timeout": 5}},
}


def scrape(manager: ConcurrencyManager) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = manager.metrics.generate().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.looptime
@pytest.mark.parametrize("seed", [0, 1])
async def test_prometheus_counters_equal_the_runners_counts(seed: int) -> None:
    invoked = raised = 0

    async def work(rng: random.Random) -> None:
        nonlocal invoked, raised
        invoked += 1
        await asyncio.sleep(0.2)
        if rng.random() < 0.25:
            raised += 1
            raise ConnectionError("flaky upstream")

    async with ConcurrencyManager.from_dict(CONFIG, env={}) as manager:

        async def call(index: int, rng: random.Random) -> None:
            await manager.policy("llm").call(work, rng)

        result = await run_open(call, spike(10, 6.0), seed=seed)
        metrics = scrape(manager)

    def value(metric: str, **labels: str) -> float:
        return metrics.get((metric, frozenset(labels.items())), 0.0)

    rejected_bulkhead = value("bounded_rejected_total", kind="bulkhead", name="llm")
    rejected_rate = value("bounded_rejected_total", kind="rate_limiter", name="llm")
    retries = raised - result.failed["other"]  # every ConnectionError but a call's last
    calls = result.scheduled - result.dropped
    assert result.lost == 0
    # The spike must exercise every path compared below.
    assert min(rejected_bulkhead, rejected_rate, retries, result.failed["other"]) > 0

    assert value("bounded_policy_calls_total", name="llm", outcome="success") == result.succeeded
    assert (
        value("bounded_policy_calls_total", name="llm", outcome="rejected")
        == (result.failed["rejected"])
    )
    assert (
        value("bounded_policy_calls_total", name="llm", outcome="error") == (result.failed["other"])
    )
    outcomes = [v for (m, _), v in metrics.items() if m == "bounded_policy_calls_total"]
    assert sum(outcomes) == calls
    assert rejected_bulkhead + rejected_rate == result.failed["rejected"]
    assert value("bounded_retries_total", name="llm") == retries
    assert (
        value("bounded_retry_give_ups_total", name="llm", reason="attempts")
        == (result.failed["other"])
    )
    assert value("bounded_policy_attempts_total", name="llm") == calls + retries
    assert value("bounded_acquired_total", kind="bulkhead", name="llm") == invoked
    assert value("bounded_rate_limit_admitted_total", name="llm") == calls + retries - rejected_rate


@contextlib.asynccontextmanager
async def _managed() -> AsyncIterator[Target]:
    async with ConcurrencyManager.from_dict(CONFIG, env={}) as manager:

        async def work(rng: random.Random) -> None:
            await asyncio.sleep(0.2)

        async def call(index: int, rng: random.Random) -> None:
            await manager.policy("llm").call(work, rng)

        yield Target(
            "managed", call, monitor=lambda: manager.monitor, metrics=lambda: manager.metrics
        )


@pytest.mark.looptime
async def test_the_result_and_report_show_the_counters_the_run_moved() -> None:
    register_target("stress-managed", _managed)
    result = await run_scenario("stress-managed", profile="spike", duration=6, rate=10)
    data = result.to_json()
    schema = resources.files("bounded.stress").joinpath("result.schema.json").read_text()
    jsonschema.validate(data, json.loads(schema))
    counters = data["metrics"]
    assert counters['bounded_policy_calls_total{name="llm",outcome="success"}'] == (
        result.succeeded
    )
    assert (
        counters['bounded_policy_calls_total{name="llm",outcome="rejected"}']
        == (result.failed["rejected"])
    )
    assert counters['bounded_acquired_total{kind="bulkhead",name="llm"}'] == result.succeeded
    assert all(value > 0 for value in counters.values())  # only what the run moved
    page = render_report(result)
    assert "<h2>Prometheus counters</h2>" in page
    assert "bounded_policy_calls_total{name=&quot;llm&quot;,outcome=&quot;success&quot;}" in page
