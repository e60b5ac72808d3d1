"""Bounded fan-out over many trivial coroutines at concurrency 100.

Time and memory are measured in separate runs (tracemalloc slows everything down
several times). Memory is the tracemalloc peak above what was allocated before the run.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import tracemalloc
from collections.abc import Awaitable, Callable

import aiometer

from bench._harness import Row, Section, Target, now_ns
from bounded import fanout

N = 100_000
BIG = 1_000_000
LIMIT = 100
ROUNDS = 5
MiB = 1024 * 1024

Fanout = Callable[[int], Awaitable[object]]


async def work(i: int) -> None:
    """A trivial coroutine that suspends once, as any real I/O call would."""
    await asyncio.sleep(0)


async def gather_semaphore(n: int) -> list[None]:
    sem = asyncio.Semaphore(LIMIT)

    async def guarded(i: int) -> None:
        async with sem:
            return await work(i)

    return await asyncio.gather(*(guarded(i) for i in range(n)))


async def aiometer_amap(n: int) -> None:
    async with aiometer.amap(work, range(n), max_at_once=LIMIT) as results:
        async for _ in results:
            pass


async def workers(n: int) -> None:
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            await work(i)

    await asyncio.gather(*(worker() for _ in range(LIMIT)))


async def bounded_map(n: int) -> list[None]:
    return await fanout.map(work, range(n), limit=LIMIT)


async def bounded_stream(n: int) -> None:
    async with fanout.stream(work, range(n), limit=LIMIT) as results:
        async for _ in results:
            pass


async def bounded_stream_ordered(n: int) -> None:
    async with fanout.stream(work, range(n), limit=LIMIT, ordered=True) as results:
        async for _ in results:
            pass


async def timed(fn: Fanout, n: int) -> float:
    gc.collect()
    t0 = now_ns()
    await fn(n)
    return (now_ns() - t0) / n / 1000  # us per item


async def peak(fn: Fanout, n: int) -> float:
    """tracemalloc peak (bytes) of one run above the memory in use before it."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = await fn(n)
        top = tracemalloc.get_traced_memory()[1]
        del result
    finally:
        tracemalloc.stop()
    return float(top - base)


def run() -> list[Section]:
    return asyncio.run(_run())


async def _run() -> list[Section]:
    cases: dict[str, Fanout] = {
        "asyncio.gather of all + asyncio.Semaphore": gather_semaphore,
        "aiometer.amap": aiometer_amap,
        f"{LIMIT} workers pulling from a shared iterator": workers,
        "bounded.map": bounded_map,
        "bounded.stream (consumed)": bounded_stream,
        "bounded.stream, ordered (consumed)": bounded_stream_ordered,
    }
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(ROUNDS):
        for name, fn in cases.items():
            samples[name].append(await timed(fn, N))
    us = {k: statistics.median(v) for k, v in samples.items()}
    mem = {k: await peak(fn, N) for k, fn in cases.items()}

    ref = "asyncio.gather of all + asyncio.Semaphore"
    floor = f"{LIMIT} workers pulling from a shared iterator"
    rows = [
        Row(
            name,
            us[name],
            us[name] / us[ref],
            extra={
                "vs floor": f"{us[name] / us[floor]:.2f}x",
                "tracemalloc peak": f"{mem[name] / MiB:.2f} MiB",
            },
        )
        for name in cases
    ]
    list_note = (
        f"bounded.map returns the result list: {sys.getsizeof([None] * N) / MiB:.2f} MiB "
        f"for {N:,} results (8 bytes a slot, fn returns None here)."
    )
    within_2x = [
        Target(
            f"{name} within 2x of the floor per item",
            us[name] <= 2 * us[floor],
            f"{us[name] / us[floor]:.2f}x",
        )
        for name in (
            "bounded.map",
            "bounded.stream (consumed)",
            "bounded.stream, ordered (consumed)",
        )
    ]
    targets = [
        *within_2x,
        Target("bounded.map <= 3 us/item", us["bounded.map"] <= 3, f"{us['bounded.map']:.2f}"),
        Target(
            "bounded.map <= 5 MiB tracemalloc peak",
            mem["bounded.map"] <= 5 * MiB,
            f"{mem['bounded.map'] / MiB:.2f} MiB",
        ),
    ]
    return [
        Section(
            title=f"Fan-out of {N:,} trivial coroutines at concurrency {LIMIT}",
            unit="us/item",
            reference="gather+Semaphore",
            rows=rows,
            targets=targets,
            columns=["vs floor", "tracemalloc peak"],
            notes=[
                "Each item is `await asyncio.sleep(0)`: one suspension, like an I/O call.",
                f"Floor: {floor} (no result kept, no consumer); 'vs floor' is the ratio to it.",
                "bounded.stream keeps at most 2 x limit items taken and not yet yielded "
                "(limit running, limit finished results waiting for the consumer).",
                list_note,
                f"Time: median of {ROUNDS} interleaved runs; memory: one separate run each "
                "under tracemalloc.",
            ],
            value_format="{:.2f}",
        ),
        await _scaling(),
    ]


async def _scaling() -> Section:
    rows = []
    peaks: dict[tuple[str, int], float] = {}
    fns: tuple[tuple[str, Fanout], ...] = (
        ("bounded.map", bounded_map),
        ("bounded.stream (consumed)", bounded_stream),
    )
    for label, fn in fns:
        for n in (N, BIG):
            p = await peak(fn, n)
            peaks[label, n] = p
            extra = {"items": f"{n:,}"}
            if label == "bounded.map":
                lst = sys.getsizeof([None] * n)
                extra["result list"] = f"{lst / MiB:.2f} MiB"
                extra["peak - list"] = f"{(p - lst) / MiB:.2f} MiB"
            rows.append(Row(label, p / MiB, extra=extra))
    s_small, s_big = peaks["bounded.stream (consumed)", N], peaks["bounded.stream (consumed)", BIG]
    slack = 64 * 1024  # allocator noise
    return Section(
        title=f"Fan-out memory does not grow with the number of items ({N:,} vs {BIG:,})",
        unit="tracemalloc peak MiB",
        reference=None,
        rows=rows,
        columns=["items", "result list", "peak - list"],
        targets=[
            Target(
                f"bounded.stream peak at {BIG:,} <= peak at {N:,}",
                s_big <= s_small + slack,
                f"{s_big / MiB:.2f} vs {s_small / MiB:.2f} MiB",
            ),
        ],
        notes=[
            "The result list of map is O(n) by contract (the caller asked for it), so the "
            "O(limit) claim is checked on stream, consumed as it goes. 'peak - list' for map "
            "is indicative only: a list grown by append over-allocates and, while resizing, "
            "briefly holds old and new storage.",
            f"Up to {slack // 1024} KiB over counts as equal (allocator noise).",
        ],
        value_format="{:.2f}",
    )
