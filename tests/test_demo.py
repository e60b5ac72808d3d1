"""`bounded demo`: the FM-043 stress pattern, with small numbers on virtual time."""

from __future__ import annotations

import asyncio
import io
import random

import pytest
from rich.console import Console
from typer.testing import CliRunner

from bounded.cli import app
from bounded.demo import (
    Dependency,
    DependencyTimeout,
    Flaky,
    Overloaded,
    render,
    run_bounded,
    run_demo,
    run_gather,
)

CALLS = 500
CAPACITY = 20
# Virtual time. Nothing here runs outside the loop (no threads, no I/O), so the clock may
# jump after a single idle cycle instead of looptime's default 42: many times faster.
LOOPTIME = pytest.mark.looptime(noop_cycles=1)


@LOOPTIME
async def test_bounded_has_no_failures_and_stays_within_capacity() -> None:
    result = await run_bounded(CALLS, CAPACITY, seed=1)
    assert result.failed == 0
    assert result.peak_tasks <= CAPACITY
    assert result.peak_at_dependency <= CAPACITY
    # 1% transient errors were retried, not passed on.
    assert result.retries > 0


@LOOPTIME
async def test_gather_starts_every_call_at_once() -> None:
    result = await run_gather(CALLS, CAPACITY, seed=1)
    assert result.peak_tasks == CALLS
    assert result.peak_at_dependency == CALLS
    assert result.retries == 0


@LOOPTIME
async def test_gather_overload_fails_calls_that_bounded_completes() -> None:
    # 2,000 calls at 5 x ~10 ms take ~4 s: the tail waits beyond the 2 s timeout.
    gathered, bounded = await run_demo(2_000, 5, seed=3)
    assert gathered.failures.get("DependencyTimeout", 0) > 0
    assert bounded.failed == 0
    assert bounded.peak_tasks <= 5


@LOOPTIME
async def test_same_seed_same_outcome() -> None:
    a = await run_gather(300, 10, seed=7)
    b = await run_gather(300, 10, seed=7)
    assert (a.failed, a.failures) == (b.failed, b.failures)
    assert a.wall_time == pytest.approx(b.wall_time)


@LOOPTIME
async def test_dependency_times_out_and_rejects() -> None:
    dep = Dependency(1, service_time=1.0, queue_timeout=0.5, max_queue=1, flake_rate=0.0)
    results = await asyncio.gather(*(dep.call() for _ in range(3)), return_exceptions=True)
    assert results[0] is None
    assert isinstance(results[1], DependencyTimeout)
    assert isinstance(results[2], Overloaded)
    assert dep.peak_load == 2


@LOOPTIME
async def test_dependency_flakes_at_the_configured_rate() -> None:
    dep = Dependency(10, flake_rate=1.0, rng=random.Random(0))
    with pytest.raises(Flaky):
        await dep.call()


def test_dependency_validates_arguments() -> None:
    with pytest.raises(ValueError, match="capacity"):
        Dependency(0)
    with pytest.raises(ValueError, match="flake_rate"):
        Dependency(1, flake_rate=2.0)


@LOOPTIME
async def test_render_prints_both_runs_and_a_verdict() -> None:
    gathered, bounded = await run_demo(200, 10, seed=0)
    out = io.StringIO()
    render(Console(file=out, width=200), gathered, bounded, 10)
    text = out.getvalue()
    assert "asyncio.gather (FM-043)" in text
    assert "peak tasks in flight" in text
    assert "Verdict:" in text


def test_cli_demo_runs() -> None:
    result = CliRunner().invoke(app, ["demo", "--calls", "100", "--capacity", "10", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert "Verdict:" in result.output
