"""Uncontended acquire + release (`async with x:` in a loop), ns per operation."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

import aiolimiter
import anyio
from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import FixedWindowRateLimiter, SlidingWindowCounterRateLimiter
from pyrate_limiter import Duration
from pyrate_limiter.limiter_factory import create_token_bucket_limiter

from bench._harness import (
    Row,
    Section,
    Target,
    Timed,
    interleaved,
    now_ns,
    ratio_rows,
    timed_calls,
)
from bounded.bulkhead import Bulkhead
from bounded.ratelimit import RateLimiter

HUGE_RATE = 1e12  # a rate limiter that never has to wait
# A window limiter may keep one entry per admission in its window: use a rate that is
# still never reached (we do well under 10M acquires per second) but not absurd.
WINDOW_RATE = 10_000_000


class NoOp:
    """The floor: an async context manager that does nothing."""

    __slots__ = ()

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self,
        et: type[BaseException] | None,
        e: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


def loop_of(cm: Any) -> Timed:
    async def timed(n: int) -> int:
        t0 = now_ns()
        for _ in range(n):
            async with cm:
                pass
        return now_ns() - t0

    return timed


def run() -> list[Section]:
    return [asyncio.run(_bulkheads()), asyncio.run(_rate_limiters())]


async def _bulkheads() -> Section:
    cases: dict[str, Timed] = {
        "no-op async context manager (floor)": loop_of(NoOp()),
        "asyncio.Semaphore": loop_of(asyncio.Semaphore(10)),
        "anyio.CapacityLimiter": loop_of(anyio.CapacityLimiter(10)),
        "bounded.Bulkhead": loop_of(Bulkhead(10)),
    }
    values = await interleaved(cases)
    rows = ratio_rows(
        values,
        "asyncio.Semaphore",
        {"anyio.CapacityLimiter": "yields to the loop on every acquire"},
    )
    r = values["bounded.Bulkhead"] / values["asyncio.Semaphore"]
    return Section(
        title="Uncontended bulkhead: `async with x:` (acquire + release)",
        unit="ns/op",
        reference="asyncio.Semaphore",
        rows=rows,
        targets=[Target("bounded.Bulkhead <= 1.2x asyncio.Semaphore", r <= 1.2, f"{r:.2f}x")],
    )


def _acquire_only_peers() -> dict[str, Timed]:
    storage = MemoryStorage()
    item = RateLimitItemPerSecond(WINDOW_RATE)
    fixed = FixedWindowRateLimiter(storage)
    counter = SlidingWindowCounterRateLimiter(storage)
    pyrate = create_token_bucket_limiter(WINDOW_RATE, Duration.SECOND, burst=WINDOW_RATE)

    return {
        "limits FixedWindowRateLimiter.hit (memory)": timed_calls(lambda: fixed.hit(item, "a")),
        "limits SlidingWindowCounterRateLimiter.hit (memory)": timed_calls(
            lambda: counter.hit(item, "b")
        ),
        "pyrate-limiter try_acquire_async (token bucket)": timed_calls(
            lambda: pyrate.try_acquire_async("c")
        ),
    }


async def _rate_limiters() -> Section:
    cases: dict[str, Timed] = {
        "no-op async context manager (floor)": loop_of(NoOp()),
        "aiolimiter.AsyncLimiter": loop_of(aiolimiter.AsyncLimiter(HUGE_RATE, 1.0)),
        "bounded.RateLimiter (gcra)": loop_of(RateLimiter(HUGE_RATE, 1.0)),
        "bounded.RateLimiter (sliding_window)": loop_of(
            RateLimiter(WINDOW_RATE, 1.0, algorithm="sliding_window")
        ),
    }
    cases |= _acquire_only_peers()
    values = await interleaved(cases)
    rows: list[Row] = ratio_rows(values, "aiolimiter.AsyncLimiter")
    targets = []
    a = values["aiolimiter.AsyncLimiter"]
    for k in ("bounded.RateLimiter (gcra)", "bounded.RateLimiter (sliding_window)"):
        r = values[k] / a
        targets.append(Target(f"{k} <= 1.0x aiolimiter", r <= 1.0, f"{r:.2f}x"))
    return Section(
        title="Uncontended rate limiter (rate high enough never to wait): `async with x:`",
        unit="ns/op",
        reference="aiolimiter.AsyncLimiter",
        rows=rows,
        targets=targets,
        notes=[
            f"Rates: {HUGE_RATE:.0e}/s (gcra, aiolimiter), {WINDOW_RATE:,}/s (windows, "
            "pyrate-limiter).",
            "limits and pyrate-limiter have no context manager: one acquire call per op "
            "(limits never waits, so nothing to release either).",
        ],
    )
