"""Scaling of the limiters: deep queues, high rates, `max_wait`, memory.

- Queue depth: n waiters (1,000 / 10,000 / 100,000) queue at once on a limiter that
  serves 20,000 per second (rate limiters) or hands one slot on (bulkhead, semaphore);
  CPU time per operation (create the waiting task, queue, admit, resume).
- Configured rate: achieved rate as a fraction of the configured one, 100/s to 50,000/s,
  on the real loop. The queue is built first, so task creation does not count.
- `max_wait`: 16,000 waiters at 16,000/s with and without `max_wait` (never reached),
  CPU time of the run.
- Memory: what one limiter holds after 1,000,000 admissions spread over its window
  (tracemalloc, virtual time).

The chart (bench/scaling.svg) plots the first two tables.
"""

from __future__ import annotations

import asyncio
import gc
import math
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiolimiter
import looptime

from bench._harness import Row, Section, Target
from bounded.bulkhead import Bulkhead
from bounded.ratelimit import RateLimiter
from bounded.ratelimit.limiter import LATENESS_ALLOWANCE

DEPTHS = (1_000, 10_000, 100_000)
DEPTH_RATE = 50_000  # per second, for the rate limiters in the depth table
RATES = (100, 1_000, 5_000, 20_000, 50_000)
MAX_WAIT_WAITERS = 16_000
WINDOW_ADMISSIONS = 200_000
CHART = Path(__file__).with_name("scaling.svg")

Limiter = AbstractAsyncContextManager[Any]
_T = TypeVar("_T")


@contextmanager
def _cpu_timer(out: list[float]) -> Iterator[None]:
    """Append the process CPU seconds spent inside the block (collector off)."""
    gc.collect()
    gc.disable()
    start = time.process_time()
    try:
        yield
    finally:
        out.append(time.process_time() - start)
        gc.enable()


# --- queue depth ----------------------------------------------------------------------


async def _queue_through(limiter: Limiter, n: int, open_gate: Callable[[], None]) -> float:
    """CPU seconds per operation for n waiters queued behind a closed gate, then served."""
    spent: list[float] = []

    async def one() -> None:
        async with limiter:
            pass

    with _cpu_timer(spent):
        tasks = [asyncio.create_task(one()) for _ in range(n)]
        await asyncio.sleep(0)  # every task is queued
        open_gate()
        await asyncio.gather(*tasks)
    return spent[0] / n


async def _depth_slot(make: Callable[[], Any], n: int) -> float:
    limiter = make()
    await limiter.acquire()  # the only slot is held: everyone queues
    return await _queue_through(limiter, n, limiter.release)


async def _depth_bounded(algorithm: str, n: int) -> float:
    limiter = RateLimiter(DEPTH_RATE, 1.0, algorithm=algorithm)  # type: ignore[arg-type]
    debt = limiter.burst
    limiter.consume(debt)  # empty: everyone queues until the refund
    return await _queue_through(limiter, n, lambda: limiter.refund(debt))


async def _depth_aiolimiter(n: int) -> float:
    limiter = aiolimiter.AsyncLimiter(1, 1 / DEPTH_RATE)  # burst 1, like gcra's default
    await limiter.acquire()
    return await _queue_through(limiter, n, lambda: None)


DEPTH_CASES: dict[str, Callable[[int], Awaitable[float]]] = {
    "asyncio.Semaphore": lambda n: _depth_slot(lambda: asyncio.Semaphore(1), n),
    "bounded.Bulkhead": lambda n: _depth_slot(lambda: Bulkhead(1), n),
    "aiolimiter.AsyncLimiter": _depth_aiolimiter,
    "bounded.RateLimiter gcra": lambda n: _depth_bounded("gcra", n),
    "bounded.RateLimiter sliding_window": lambda n: _depth_bounded("sliding_window", n),
}


# Median of this many runs: small runs are the noisy ones.
DEPTH_REPEATS = {1_000: 5, 10_000: 3, 100_000: 1}
# aiolimiter serves a deep queue at about 2,000 per second whatever its rate (45 s for
# 100,000 waiters in one run): beyond this depth it is not run, to keep the run short.
AIOLIMITER_MAX_DEPTH = 10_000


def _depth_section() -> tuple[Section, dict[str, list[float | None]]]:
    series: dict[str, list[float | None]] = {name: [] for name in DEPTH_CASES}
    for n in DEPTHS:
        for name, case in DEPTH_CASES.items():
            if name.startswith("aiolimiter") and n > AIOLIMITER_MAX_DEPTH:
                series[name].append(None)
                continue
            runs = [asyncio.run(_coroutine(case(n))) for _ in range(DEPTH_REPEATS[n])]
            series[name].append(statistics.median(runs))
    rows = []
    targets = []
    for name, costs in series.items():
        first, last = costs[0], costs[-1]
        growth = None if first is None or last is None else last / first
        extra = {
            f"{n:,} waiters": "n/a" if c is None else f"{c * 1e6:.1f}"
            for n, c in zip(DEPTHS, costs, strict=True)
        }
        extra["100k / 1k"] = "n/a" if growth is None else f"{growth:.2f}x"
        note = "" if growth is not None else f"not run beyond {AIOLIMITER_MAX_DEPTH:,}: ~2,000/s"
        rows.append(Row(name, None if first is None else first * 1e6, extra=extra, note=note))
        if name.startswith("bounded") and growth is not None:
            targets.append(
                Target(
                    f"{name}: cost per op at 100,000 waiters <= 1.5x at 1,000",
                    growth <= 1.5,
                    f"{growth:.2f}x",
                )
            )
    section = Section(
        title="Cost per operation against queue depth (CPU µs per queued acquire)",
        unit="µs/op at 1,000",
        reference=None,
        rows=rows,
        targets=targets,
        columns=[*(f"{n:,} waiters" for n in DEPTHS), "100k / 1k"],
        notes=[
            "Each operation: create a task that queues on the limiter, admit it, resume it. "
            "Bulkhead and Semaphore: one slot handed down the queue. Rate limiters at "
            f"{DEPTH_RATE:,}/s (gcra burst 1, sliding window of 1 s, aiolimiter capacity 1); "
            "bounded's queue is built behind a debt that a refund clears, aiolimiter's "
            "behind its full bucket.",
            "CPU time of the process (time.process_time), collector off during the run; "
            "the median of 5 runs at 1,000 waiters, 3 at 10,000, 1 at 100,000.",
        ],
        value_format="{:.1f}",
    )
    return section, series


async def _coroutine(awaitable: Awaitable[_T]) -> _T:
    return await awaitable


# --- configured rate ------------------------------------------------------------------


async def _stalls(out: list[float]) -> None:
    """Sum, into out[0], how much later than the lateness allowance 1 ms timers fire."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + 0.001
        await asyncio.sleep(0.001)
        out[0] += max(0.0, loop.time() - due - LATENESS_ALLOWANCE)


async def _achieved_bounded(algorithm: str, rate: int) -> tuple[float, float]:
    """Achieved / configured rate from the moment a full queue is let go, and the
    seconds the loop stalled beyond the lateness allowance meanwhile."""
    limiter = RateLimiter(rate, 1.0, algorithm=algorithm)  # type: ignore[arg-type]
    capacity = limiter.burst  # admitted at once by design: 1 for gcra, rate for the window
    n = int(rate + capacity)  # one second of admissions beyond what comes at once
    limiter.consume(capacity)
    loop = asyncio.get_running_loop()
    admitted: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        admitted.append(loop.time())

    tasks = [asyncio.create_task(one()) for _ in range(n)]
    await asyncio.sleep(0)
    stalled = [0.0]
    probe = asyncio.create_task(_stalls(stalled))
    start = loop.time()
    limiter.refund(capacity)
    await asyncio.gather(*tasks)
    probe.cancel()
    return (n - capacity) / rate / (admitted[-1] - start), stalled[0]


async def _achieved_aiolimiter(rate: int) -> tuple[float, None]:
    # The bucket starts full (rate units at once); what follows drains at the rate. No
    # gate: task creation is counted, but the bucket makes up for it (it allows bursts).
    limiter = aiolimiter.AsyncLimiter(rate, 1.0)
    n = 2 * rate
    loop = asyncio.get_running_loop()
    admitted: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        admitted.append(loop.time())

    await asyncio.gather(*(one() for _ in range(n)))
    return (n - rate) / rate / (admitted[-1] - admitted[0]), None


GCRA = "bounded.RateLimiter gcra burst 1"
GCRA_REPEATS = 3  # the targets' row: the median of 3 runs
RATE_CASES: dict[str, Callable[[int], Awaitable[tuple[float, float | None]]]] = {
    GCRA: lambda r: _achieved_bounded("gcra", r),
    "bounded.RateLimiter sliding_window": lambda r: _achieved_bounded("sliding_window", r),
    "aiolimiter.AsyncLimiter(rate, 1)": _achieved_aiolimiter,
}


async def _idle_stalls() -> float:
    """Stalls of the probe alone for one second: what the machine does to any loop."""
    stalled = [0.0]
    probe = asyncio.create_task(_stalls(stalled))
    await asyncio.sleep(1.0)
    probe.cancel()
    return stalled[0]


def _rate_section() -> tuple[Section, dict[str, list[float]]]:
    idle = asyncio.run(_idle_stalls())
    series: dict[str, list[float]] = {name: [] for name in RATE_CASES}
    stalls: list[float] = []
    for rate in RATES:
        for name, case in RATE_CASES.items():
            runs = []
            for _ in range(GCRA_REPEATS if name == GCRA else 1):
                gc.disable()
                try:
                    runs.append(asyncio.run(_coroutine(case(rate))))
                finally:
                    gc.enable()
            achieved, stalled = sorted(runs, key=lambda run: run[0])[len(runs) // 2]
            series[name].append(achieved)
            if stalled is not None and name == GCRA:
                stalls.append(stalled)
    rows = [
        Row(
            name,
            values[-1],
            extra={f"{r:,}/s": f"{v:.1%}" for r, v in zip(RATES, values, strict=True)},
        )
        for name, values in series.items()
    ]
    rows.append(
        Row(
            "loop stalls beyond 2 ms, summed, ms (during the gcra run)",
            None,
            extra={f"{r:,}/s": f"{v * 1000:.0f}" for r, v in zip(RATES, stalls, strict=True)},
        )
    )
    gcra = dict(zip(RATES, series[GCRA], strict=True))
    return (
        Section(
            title="Achieved rate as a fraction of the configured rate (real loop)",
            unit="at 50,000/s",
            reference=None,
            rows=rows,
            targets=[
                Target("gcra burst 1 >= 99% of 5,000/s", gcra[5_000] >= 0.99, f"{gcra[5_000]:.1%}"),
                Target(
                    "gcra burst 1 >= 95% of 20,000/s", gcra[20_000] >= 0.95, f"{gcra[20_000]:.1%}"
                ),
            ],
            columns=[f"{r:,}/s" for r in RATES],
            notes=[
                "bounded: the queue (one second of admissions beyond what the limiter admits "
                "at once) is built behind a debt, then let go; achieved = ideal / actual time "
                "from that moment to the last admitted task resuming.",
                "gcra: the median of 3 runs (and that run's stalls); the others: one run.",
                "aiolimiter: 2 x rate tasks at once; its bucket starts full, so achieved = "
                "(n - rate) / rate / (last - first admission).",
                "gcra keeps pace through timer lateness up to its allowance (2 ms from "
                "250/s up); lateness beyond it (last row: a probe's 1 ms timers, summed) is "
                f"lost by design (the probe alone, on an idle loop: {idle * 1000:.0f} ms in "
                "1 s of this run), "
                "since catching up would burst above its bound (docs/limits.md). The sliding "
                "window loses the time the loop takes to resume a whole window of tasks.",
            ],
            value_format="{:.1%}",
        ),
        series,
    )


# --- max_wait -------------------------------------------------------------------------


async def _saturate(limiter: RateLimiter, n: int) -> None:
    await asyncio.gather(*(limiter.acquire() for _ in range(n)))


def _max_wait_section() -> Section:
    rows = []
    targets = []
    for algorithm in ("gcra", "sliding_window"):
        spent: dict[str, list[float]] = {"without": [], "with": []}
        for label, max_wait in (("without", None), ("with", 1e9)):
            limiter = RateLimiter(
                MAX_WAIT_WAITERS,
                1.0,
                algorithm=algorithm,
                max_wait=max_wait,
            )
            with _cpu_timer(spent[label]):
                asyncio.run(_saturate(limiter, MAX_WAIT_WAITERS))
        ratio = spent["with"][0] / spent["without"][0]
        rows.append(
            Row(
                f"bounded.RateLimiter {algorithm}",
                spent["with"][0],
                ratio,
                extra={"without max_wait s": f"{spent['without'][0]:.3f}"},
            )
        )
        targets.append(
            Target(
                f"{algorithm}: max_wait costs <= 1.5x no max_wait", ratio <= 1.5, f"{ratio:.2f}x"
            )
        )
    return Section(
        title=f"max_wait at {MAX_WAIT_WAITERS:,} waiters ({MAX_WAIT_WAITERS:,}/s, CPU s per run)",
        unit="with max_wait s",
        reference="without max_wait",
        rows=rows,
        targets=targets,
        columns=["without max_wait s"],
        notes=["asyncio.gather of 16,000 acquire() on a fresh limiter; max_wait=1e9 (never hit)."],
        value_format="{:.3f}",
    )


# --- memory ---------------------------------------------------------------------------


async def _spread_admissions(limiter: RateLimiter | None, n: int, per: float) -> None:
    """n admissions spread evenly over one window, 1,000 steps of virtual time (None:
    the steps alone, for what the loop itself leaves allocated)."""
    steps = 1000
    for _ in range(steps):
        if limiter is not None:
            for _ in range(n // steps):
                limiter.try_acquire()
        await asyncio.sleep(per / steps)


def _held_by(build: Callable[[], Any], drive: Callable[[Any], Awaitable[None]] | None) -> int:
    """Bytes still allocated for a limiter built and driven under tracemalloc."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        limiter = build()
        if drive is not None:
            loop = looptime.new_event_loop(start=0)
            try:
                loop.run_until_complete(drive(limiter))
            finally:
                loop.close()
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del limiter
    return held


def _memory_section() -> Section:
    per = 60.0
    rate = 10_000_000  # units per minute, as a tokens-per-minute limit

    def spread(limiter: Any) -> Awaitable[None]:
        return _spread_admissions(limiter, WINDOW_ADMISSIONS, per)

    cases: list[tuple[str, Callable[[], Any], Callable[[Any], Awaitable[None]] | None]] = [
        ("asyncio.Semaphore", lambda: asyncio.Semaphore(10), None),
        ("aiolimiter.AsyncLimiter", lambda: aiolimiter.AsyncLimiter(rate, per), None),
        ("bounded.Bulkhead", lambda: Bulkhead(10), None),
        ("bounded.RateLimiter gcra", lambda: RateLimiter(rate, per), spread),
        (
            "bounded.RateLimiter sliding_window",
            lambda: RateLimiter(rate, per, algorithm="sliding_window"),
            spread,
        ),
    ]
    rows = []
    window = 0
    _held_by(lambda: None, spread)  # warm-up: one-time allocations (caches, imports)
    loop_alone = _held_by(lambda: None, spread)
    for name, build, drive in cases:
        held = _held_by(build, drive) - (loop_alone if drive else 0)
        if name.endswith("sliding_window"):
            window = held
        note = f"after {WINDOW_ADMISSIONS:,} admissions in one window" if drive else "idle"
        rows.append(Row(name, held / 1024, note=note))
    return Section(
        title=f"Memory per limiter ({rate:,} units per {per:g} s)",
        unit="KiB",
        reference=None,
        rows=rows,
        targets=[
            Target(
                "sliding window < 1 MiB whatever the admissions in its window",
                window < 1 << 20,
                f"{window / 1024:.0f} KiB",
            )
        ],
        notes=[
            "tracemalloc: bytes still allocated once the limiter is built (and driven: "
            "1,000 steps of virtual time over one window, try_acquire() in each; less what "
            f"the same steps leave allocated without a limiter, {loop_alone / 1024:.1f} KiB).",
        ],
        value_format="{:,.1f}",
    )


# --- chart ----------------------------------------------------------------------------

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")


def _panel(
    title: str,
    xs: tuple[int, ...],
    series: dict[str, list[float | None]],
    y_label: str,
    left: float,
) -> list[str]:
    """One log-x line chart as SVG elements, 420 x 260, its top-left corner at `left`."""
    width, height, pad = 420.0, 260.0, 46.0
    top = 30.0
    values = [v for vs in series.values() for v in vs if v is not None]
    y_max = max(values) * 1.1
    x_lo, x_hi = math.log10(xs[0]), math.log10(xs[-1])

    def px(x: float) -> float:
        return left + pad + (math.log10(x) - x_lo) / (x_hi - x_lo) * (width - 2 * pad)

    def py(y: float) -> float:
        return top + height - pad - y / y_max * (height - 2 * pad)

    out = [
        f'<text x="{left + width / 2}" y="{top - 10}" text-anchor="middle" '
        f'font-weight="bold">{title}</text>',
        f'<line x1="{left + pad}" y1="{py(0)}" x2="{left + width - pad}" y2="{py(0)}" '
        'stroke="#333"/>',
        f'<line x1="{left + pad}" y1="{py(0)}" x2="{left + pad}" y2="{top + pad / 2}" '
        'stroke="#333"/>',
        f'<text x="{left + 12}" y="{top + height / 2}" text-anchor="middle" '
        f'transform="rotate(-90 {left + 12} {top + height / 2})">{y_label}</text>',
    ]
    for x in xs:
        out.append(f'<text x="{px(x)}" y="{py(0) + 16}" text-anchor="middle">{x:,}</text>')
    for fraction in (0.25, 0.5, 0.75, 1.0):
        y = y_max / 1.1 * fraction
        out.append(f'<text x="{left + pad - 4}" y="{py(y) + 4}" text-anchor="end">{y:.3g}</text>')
    for i, (name, vs) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        known = [(x, v) for x, v in zip(xs, vs, strict=True) if v is not None]
        points = " ".join(f"{px(x):.1f},{py(v):.1f}" for x, v in known)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        out += [
            f'<circle cx="{px(x):.1f}" cy="{py(v):.1f}" r="3" fill="{colour}"/>' for x, v in known
        ]
        out.append(
            f'<text x="{left + pad + 8}" y="{top + height + 4 + 14 * i}" fill="{colour}">'
            f"{name}</text>"
        )
    return out


def write_chart(depth: dict[str, list[float | None]], rates: dict[str, list[float]]) -> None:
    """Draw both tables as one SVG (no plotting dependency)."""
    micro = {name: [None if v is None else v * 1e6 for v in vs] for name, vs in depth.items()}
    percent: dict[str, list[float | None]] = {
        name: [v * 100 for v in vs] for name, vs in rates.items()
    }
    body = _panel("CPU µs per queued operation vs waiters", DEPTHS, micro, "µs / op", 0)
    body += _panel("achieved % of configured rate vs rate (/s)", RATES, percent, "% of rate", 440)
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="880" height="380" '
        'font-family="sans-serif" font-size="11">'
        '<rect width="100%" height="100%" fill="white"/>' + "".join(body) + "</svg>\n"
    )
    CHART.write_text(svg, encoding="utf-8")


def run() -> list[Section]:
    depth, depth_series = _depth_section()
    rates, rate_series = _rate_section()
    write_chart(depth_series, rate_series)
    depth.notes.append(f"Chart of both tables: ![scaling]({CHART.name})")
    return [depth, rates, _max_wait_section(), _memory_section()]
