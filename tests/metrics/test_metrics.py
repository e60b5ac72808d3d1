"""The Prometheus collector and the asyncio /metrics endpoint."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bounded.breaker import CircuitBreaker
from bounded.bulkhead import Bulkhead
from bounded.metrics import BREAKER_STATES, Metrics, MetricsServer, WaitHistogram
from bounded.monitor import ConcurrencyMonitor
from bounded.ratelimit import RateLimiter


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.generate().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(metrics: Metrics, metric: str, /, **labels: str) -> float:
    return samples(metrics)[(metric, tuple(sorted(labels.items())))]


def make() -> tuple[Metrics, Bulkhead, RateLimiter, CircuitBreaker]:
    monitor = ConcurrencyMonitor()
    metrics = Metrics(monitor)
    bulkhead = Bulkhead(4, name="llm")
    limiter = RateLimiter(60, 60.0, name="openai")
    breaker = CircuitBreaker(name="llm")
    for kind, name, obj in (
        ("bulkhead", "llm", bulkhead),
        ("rate_limiter", "openai", limiter),
        ("breaker", "llm", breaker),
    ):
        monitor.register(kind, name, obj)
    bulkhead.wait_observer = metrics.observer("bulkhead", "llm")
    limiter.wait_observer = metrics.observer("rate_limiter", "openai")
    return metrics, bulkhead, limiter, breaker


def test_gauges_and_counters_of_a_bulkhead() -> None:
    metrics, bulkhead, _, _ = make()
    assert bulkhead.try_acquire()
    assert bulkhead.try_acquire()
    assert value(metrics, "bounded_limit", kind="bulkhead", name="llm") == 4
    assert value(metrics, "bounded_in_use", kind="bulkhead", name="llm") == 2
    assert value(metrics, "bounded_utilization_ratio", kind="bulkhead", name="llm") == 0.5
    assert value(metrics, "bounded_acquired_total", kind="bulkhead", name="llm") == 2
    assert value(metrics, "bounded_rejected_total", kind="bulkhead", name="llm") == 0
    assert value(metrics, "bounded_queued", kind="bulkhead", name="llm") == 0


def test_breaker_state_reports_every_state_closed_included() -> None:
    metrics, _, _, breaker = make()
    states = {
        s: value(metrics, "bounded_breaker_state", name="llm", state=s) for s in BREAKER_STATES
    }
    assert states == {"closed": 1, "open": 0, "half_open": 0, "forced_open": 0, "disabled": 0}
    breaker.force_open()
    assert value(metrics, "bounded_breaker_state", name="llm", state="forced_open") == 1
    assert value(metrics, "bounded_breaker_state", name="llm", state="closed") == 0


async def test_rate_limiter_metrics_in_base_units() -> None:
    metrics, _, limiter, _ = make()
    assert value(metrics, "bounded_rate_limit_per_second", name="openai") == 1.0
    assert limiter.try_acquire()
    assert value(metrics, "bounded_rate_limit_admitted_total", name="openai") == 1


@pytest.mark.looptime
async def test_wait_histogram_counts_every_bulkhead_acquisition() -> None:
    metrics, bulkhead, _, _ = make()

    async def hold(seconds: float) -> None:
        async with bulkhead:
            await asyncio.sleep(seconds)

    # 4 start at once; the fifth gets the slot freed at 1 s, the sixth the one it frees at 2 s.
    await asyncio.gather(hold(1), hold(3), hold(5), hold(5), hold(1), hold(1))
    count = value(metrics, "bounded_wait_seconds_count", kind="bulkhead", name="llm")
    total = value(metrics, "bounded_wait_seconds_sum", kind="bulkhead", name="llm")
    first = value(metrics, "bounded_wait_seconds_bucket", kind="bulkhead", name="llm", le="0.001")
    one = value(metrics, "bounded_wait_seconds_bucket", kind="bulkhead", name="llm", le="1.0")
    two = value(metrics, "bounded_wait_seconds_bucket", kind="bulkhead", name="llm", le="2.5")
    assert count == 6
    assert total == pytest.approx(3.0)  # waits of 1 s and 2 s
    assert first == 4  # the four that did not wait
    assert one == 5
    assert two == 6


def test_histogram_buckets_are_cumulative() -> None:
    histogram = WaitHistogram()
    for seconds in (0.0, 0.003, 0.2, 500.0):
        histogram.observe(seconds)
    buckets = dict(histogram.cumulative(zero_waits=2))
    assert buckets["0.001"] == 3
    assert buckets["0.005"] == 4
    assert buckets["0.25"] == 5
    assert buckets["120.0"] == 5
    assert buckets["+Inf"] == 6


def test_private_registry_per_metrics() -> None:
    first, _, _, _ = make()
    second = Metrics(ConcurrencyMonitor())
    assert "bounded_limit{" in first.generate().decode()
    assert "bounded_limit{" not in second.generate().decode()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
async def test_exposition_passes_promtool_check_metrics() -> None:
    metrics, bulkhead, limiter, _ = make()
    assert bulkhead.try_acquire()
    assert limiter.try_acquire()
    result = subprocess.run(
        ["promtool", "check", "metrics"],
        input=metrics.generate(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.decode().strip() == ""


async def test_server_serves_metrics_and_stops_cleanly() -> None:
    metrics, _, _, _ = make()
    before = asyncio.all_tasks()
    server = MetricsServer(metrics, "127.0.0.1", 0)
    await server.start()
    async with httpx2.AsyncClient() as client:
        response = await client.get(server.url)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert 'bounded_limit{kind="bulkhead",name="llm"} 4.0' in response.text
        missing = await client.get(server.url.replace("/metrics", "/other"))
        assert missing.status_code == 404
    # A client that connects and says nothing is dropped when the server closes.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    await asyncio.sleep(0.01)
    await server.close()
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()
    assert asyncio.all_tasks() == before
    await server.close()  # twice is harmless
