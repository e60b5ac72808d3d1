"""One stress run from a TARGET string to a checked `RunResult`: what `bounded stress` calls."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from bounded.stress.accounting import IntervalStats
from bounded.stress.chaos import ChaosEvent, Injectors, play
from bounded.stress.counters import increase, read_counters
from bounded.stress.resources import ResourceSampler
from bounded.stress.result import RunResult
from bounded.stress.runner import run_closed, run_open
from bounded.stress.schedule import profile as named_profile
from bounded.stress.targets import open_target
from bounded.stress.thresholds import evaluate, parse_threshold

__all__ = ["run_scenario"]


@contextlib.asynccontextmanager
async def _chaos(
    events: Sequence[ChaosEvent], injectors: Injectors, record: list[dict[str, Any]]
) -> AsyncIterator[None]:
    """Play `events` alongside the block; whatever is still in force at its end is lifted."""
    if not events:
        yield
        return
    task = asyncio.create_task(play(events, injectors, record))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run_scenario(
    target: str,
    *,
    profile: str = "light",
    duration: float | None = None,
    rate: float | None = None,
    users: int | None = None,
    think_time: float = 0.0,
    max_in_flight: int | None = None,
    thresholds: Sequence[str] = (),
    seed: int = 0,
    poisson: bool = False,
    request_timeout: float | None = None,
    grace: float = 30.0,
    dsn: str | None = None,
    http_options: dict[str, Any] | None = None,
    chaos: Sequence[ChaosEvent] = (),
    injectors: Injectors | None = None,
    on_interval: Callable[[IntervalStats], None] | None = None,
) -> RunResult:
    """Open `target`, load it with `profile` (or `users` for the closed model), check thresholds.

    Thresholds are parsed, and chaos events checked against their injectors, before any
    load starts, so a mistake fails at once (a ``db_restart`` once the target is open: it
    restarts the embedded server the target owns). Chaos windows become `result.events`.
    """
    parsed = [parse_threshold(t) for t in thresholds]
    injectors = injectors or Injectors(dsn=dsn)
    # A db_restart needs the embedded server the target owns: checked once it is open.
    injectors.check([e for e in chaos if e.kind != "db_restart"])
    events: list[dict[str, Any]] = []
    chosen = named_profile(profile, duration=duration, rate=rate, poisson=poisson, seed=seed)
    async with open_target(target, **(http_options or {})) as opened:
        if injectors.embedded is None and opened.embedded is not None:
            injectors = dataclasses.replace(injectors, embedded=opened.embedded)
        injectors.check(chaos)
        await injectors.preflight(chaos)
        exposition = opened.metrics()
        counted = read_counters(exposition) if exposition is not None else {}
        async with (
            ResourceSampler(dsn=dsn, monitor=opened.monitor) as sampler,
            _chaos(chaos, injectors, events),
        ):
            if users is not None:
                result = await run_closed(
                    opened.call,
                    users=users,
                    duration=chosen.schedule.duration,
                    think_time=think_time,
                    seed=seed,
                    request_timeout=request_timeout,
                    grace=grace,
                    sampler=sampler,
                    on_interval=on_interval,
                )
            else:
                result = await run_open(
                    opened.call,
                    chosen.schedule,
                    max_in_flight=max_in_flight or chosen.max_in_flight,
                    seed=seed,
                    request_timeout=request_timeout,
                    grace=grace,
                    sampler=sampler,
                    on_interval=on_interval,
                )
        if exposition is not None:
            result.metrics = increase(counted, read_counters(exposition))
    result.target = opened.name
    result.events = sorted(events, key=lambda e: float(e["start"]))
    result.alerts = [{**a, "time": round(a["time"] - result.started_at, 6)} for a in sampler.alerts]
    result.profile = None if users is not None else profile
    evaluate(result, parsed)
    return result
