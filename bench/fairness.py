"""Weighted fairness: does a heavy request queued first get served first?

A limiter of 200 units/s with room for a burst of 50 starts empty (drained). A cost-50
acquire is queued first, then 300 cost-1 acquires. A FIFO limiter admits the heavy one
as soon as 50 units have accrued: 50 / 200 = 0.25 s. We report when it was admitted and
how many of the later cost-1 requests overtook it. Real event loop; capped at 10 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiolimiter

from bench._harness import Row, Section, Target
from bounded.ratelimit import RateLimiter

RATE = 200
BURST = 50
SMALL = 300
CAP_S = 10.0
IDEAL = BURST / RATE


async def measure(
    drain: Callable[[], Awaitable[object]], acquire: Callable[[float], Awaitable[object]]
) -> tuple[float | None, int]:
    """(seconds until the cost-50 acquire was admitted, cost-1 admissions before it)."""
    loop = asyncio.get_running_loop()
    await drain()
    small_done = 0
    big_at: float | None = None
    overtaken = 0

    async def big() -> None:
        nonlocal big_at, overtaken
        await acquire(BURST)
        big_at = loop.time() - t0
        overtaken = small_done

    async def small() -> None:
        nonlocal small_done
        await acquire(1)
        small_done += 1

    t0 = loop.time()
    big_task = asyncio.create_task(big())
    await asyncio.sleep(0)  # let it queue first
    smalls = [asyncio.create_task(small()) for _ in range(SMALL)]
    await asyncio.wait([big_task], timeout=CAP_S)
    for t in [big_task, *smalls]:
        t.cancel()
    await asyncio.gather(big_task, *smalls, return_exceptions=True)
    return big_at, overtaken


def run() -> list[Section]:
    async def bounded_case() -> tuple[float | None, int]:
        rl = RateLimiter(RATE, 1.0, burst=BURST)
        return await measure(lambda: rl.acquire(BURST), rl.acquire)

    async def aiolimiter_burst() -> tuple[float | None, int]:
        lim = aiolimiter.AsyncLimiter(BURST, BURST / RATE)
        return await measure(lambda: lim.acquire(BURST), lim.acquire)

    async def aiolimiter_200() -> tuple[float | None, int]:
        lim = aiolimiter.AsyncLimiter(RATE, 1.0)
        return await measure(lambda: lim.acquire(RATE), lim.acquire)

    cases: list[tuple[str, Callable[[], Coroutine[Any, Any, tuple[float | None, int]]], str]] = [
        (f"bounded.RateLimiter(200, 1.0, burst={BURST})", bounded_case, ""),
        (
            f"aiolimiter.AsyncLimiter({BURST}, {BURST / RATE})",
            aiolimiter_burst,
            "same rate and capacity",
        ),
        ("aiolimiter.AsyncLimiter(200, 1)", aiolimiter_200, "capacity 200, drained"),
    ]
    rows = []
    targets = []
    for name, case, note in cases:
        at, overtaken = asyncio.run(case())
        rows.append(
            Row(
                name,
                at,
                None if at is None else at / IDEAL,
                extra={"cost-1 admitted before it": f"{overtaken} of {SMALL}"},
                note=note if at is not None else f"{note}; not admitted within {CAP_S:.0f} s",
            )
        )
        if name.startswith("bounded"):
            targets.append(
                Target(
                    "bounded: heavy request admitted first, at ~0.25 s (within 5%)",
                    at is not None and overtaken == 0 and abs(at / IDEAL - 1) <= 0.05,
                    "n/a" if at is None else f"{at:.3f} s, {overtaken} overtook it",
                )
            )
    return [
        Section(
            title=(
                f"Weighted fairness: cost-{BURST} queued first, then {SMALL} cost-1, "
                f"{RATE}/s, bucket empty"
            ),
            unit="admitted after s",
            reference=f"FIFO ideal {IDEAL:.2f} s",
            rows=rows,
            targets=targets,
            columns=["cost-1 admitted before it"],
            value_format="{:.3f}",
        )
    ]
