"""The HTML report: self-contained, every chart has data, events on the time axis."""

from __future__ import annotations

import asyncio
import json
import random
import re

import pytest

from bounded.errors import CircuitOpen
from bounded.stress import RunResult, spike
from bounded.stress.report import render_report
from bounded.stress.runner import run_open


async def sample_result() -> RunResult:
    async def call(index: int, rng: random.Random) -> None:
        await asyncio.sleep(rng.random() / 50)
        if index % 7 == 0:
            raise CircuitOpen("rag", retry_after=1)

    figures = iter(range(10**6))

    async def sampler() -> dict[str, object]:
        n = next(figures)
        return {
            "rss_bytes": 50 * 2**20 + n,
            "tasks": 3,
            "threads": 1,
            "db_connections": 4,
            "monitor": [
                {
                    "kind": "bulkhead",
                    "name": "llm",
                    "in_use": 3,
                    "limit": 8,
                    "queued": 1,
                    "utilization": 0.4,
                    "rejected_total": 0,
                    "state": None,
                },
                {
                    "kind": "breaker",
                    "name": "rag",
                    "in_use": 0,
                    "limit": None,
                    "queued": 0,
                    "utilization": 0.0,
                    "rejected_total": 0,
                    "state": "open" if n == 2 else "closed",
                },
            ],
        }

    result = await run_open(call, spike(20, 6.0), sampler=sampler)
    result.events = [{"name": "db restart", "start": 2.0, "end": 3.5}]
    return result


@pytest.mark.looptime(noop_cycles=1)
async def test_report_is_self_contained_and_every_chart_has_data() -> None:
    page = render_report(await sample_result())
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page
    assert "<script src" not in page
    assert "<link" not in page
    charts = re.findall(r'<svg class="chart" data-points="(\d+)"', page)
    assert len(charts) == 7  # latency, throughput, in flight, errors, process, db, breaker
    assert all(int(n) > 0 for n in charts)
    assert page.count('class="event"') == 7
    assert "db restart" in page
    data = json.loads(re.search(r'id="result">(.*?)</script>', page, re.S).group(1))  # type: ignore[union-attr]
    assert data["accounting"]["lost"] == 0
    assert data["errors"]["breaker_open"] > 0


@pytest.mark.looptime(noop_cycles=1)
async def test_a_fault_that_failed_is_shown_and_fails_the_report() -> None:
    result = await sample_result()
    result.events.append(
        {"name": "provider <rpm=1>", "start": 4.0, "end": 4.0, "error": "HTTPError: 422 <x>"}
    )
    page = render_report(result)
    assert '<span class="bad">FAILED</span>' in page
    assert '<span class="bad">HTTPError: 422 &lt;x&gt;</span>' in page
    assert "provider &lt;rpm=1&gt;" in page
