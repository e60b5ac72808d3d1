"""Monitoring under load, on virtual time: during a spike against a bulkhead watched by a
`ConcurrencyMonitor`, the 80% alert fires within one monitor interval of the crossing and
resolves once after it (no flapping), and the Prometheus counters equal the runner's."""

from __future__ import annotations

import asyncio
import random
import re

import pytest

from bounded import Bulkhead
from bounded.metrics import Metrics
from bounded.monitor import ConcurrencyMonitor
from bounded.stress import spike
from bounded.stress.report import render_report
from bounded.stress.resources import ResourceSampler
from bounded.stress.runner import run_open

INTERVAL = 0.5


def counter(text: str, name: str) -> float:
    m = re.search(rf'^{name}{{kind="bulkhead",name="llm"}} (\S+)$', text, re.M)
    assert m is not None, name
    return float(m.group(1))


@pytest.mark.looptime(noop_cycles=1)
async def test_alerts_and_metrics_agree_with_the_run() -> None:
    loop = asyncio.get_running_loop()
    bulkhead = Bulkhead(limit=10, name="llm", max_queue=5)
    monitor = ConcurrencyMonitor(interval=INTERVAL, alert_threshold=0.8)
    monitor.register("bulkhead", "llm", bulkhead)
    metrics = Metrics(monitor)
    truth: list[tuple[float, float]] = []  # utilization every 10 ms: the ground truth

    async def call(index: int, rng: random.Random) -> None:
        async with bulkhead:
            await asyncio.sleep(0.5)

    async def watch() -> None:
        while True:
            truth.append((loop.time(), bulkhead.stats().utilization))
            await asyncio.sleep(0.01)

    # 4/s holds 2 of 10 slots (20%); the 10x spike wants 20: full, 5 queued, the rest refused.
    async with ResourceSampler(monitor=lambda: monitor) as sampler, monitor:
        watcher = asyncio.create_task(watch())
        result = await run_open(call, spike(4, 9.0), sampler=sampler, interval=INTERVAL)
        watcher.cancel()

    firing = [a for a in sampler.alerts if a["state"] == "firing"]
    resolved = [a for a in sampler.alerts if a["state"] == "resolved"]
    assert len(firing) == len(resolved) == 1  # no flapping
    crossed = next(t for t, u in truth if u >= 0.8)
    assert crossed <= firing[0]["time"] <= crossed + INTERVAL
    fell = next(t for t, u in truth if t > firing[0]["time"] and u < 0.8 - 0.05)
    assert fell <= resolved[0]["time"] <= fell + INTERVAL

    text = metrics.generate().decode()
    assert result.failed["rejected"] > 0
    assert counter(text, "bounded_rejected_total") == result.failed["rejected"]
    assert counter(text, "bounded_acquired_total") == result.succeeded
    assert result.lost == 0

    result.alerts = [{**a, "time": a["time"] - result.started_at} for a in sampler.alerts]
    page = render_report(result)
    assert page.count('class="alert-firing"') == page.count('class="alert-resolved"') == 5
