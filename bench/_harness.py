"""Shared machinery for the benchmarks: interleaved timing, results, rendering.

Peers run side by side in one process, in interleaved rounds (A, B, C, A, B, C, ...),
and we report medians. Absolute numbers move 30-40% between runs on shared 2-core
machines; the ratios between peers measured this way are what we claim.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

# An async callable that performs `n` operations and returns the elapsed nanoseconds.
Timed = Callable[[int], Awaitable[int]]


@dataclass
class Row:
    """One line of a benchmark table."""

    name: str
    value: float | None  # in the section's unit; None when the case could not run
    ratio: float | None = None  # value / reference value
    extra: dict[str, str] = field(default_factory=dict)  # further columns, preformatted
    note: str = ""


@dataclass
class Target:
    """An acceptance target from the issue and whether this run met it."""

    description: str
    met: bool
    detail: str = ""


@dataclass
class Section:
    """One benchmark table."""

    title: str
    unit: str
    reference: str | None
    rows: list[Row]
    targets: list[Target] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # names of Row.extra columns
    notes: list[str] = field(default_factory=list)
    value_format: str = "{:,.0f}"


def machine() -> str:
    """A one-line description of the machine and interpreter."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{cpu}, {cores} cores, Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.system()} {platform.release()}"
    )


async def calibrate(fn: Timed, target_ns: int = 40_000_000, start: int = 100) -> int:
    """The number of operations for which one sample of `fn` takes about `target_ns`."""
    n = start
    while True:
        elapsed = await fn(n)
        if elapsed >= target_ns // 4 or n >= 10_000_000:
            return max(1, int(n * target_ns / max(elapsed, 1)))
        n *= 4


async def interleaved(
    cases: dict[str, Timed],
    *,
    rounds: int = 7,
    target_ns: int = 40_000_000,
    fixed_n: dict[str, int] | None = None,
) -> dict[str, float]:
    """Median nanoseconds per operation of each case, sampled in interleaved rounds.

    Each case gets its own operation count (calibrated so one sample takes about
    `target_ns`) so that slow peers do not dominate the run time.
    """
    ns: dict[str, int] = {}
    for name, fn in cases.items():
        ns[name] = (fixed_n or {}).get(name) or await calibrate(fn, target_ns)
        await fn(min(ns[name], 1000))  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in cases}
    gc.collect()
    gc.disable()  # collections land in whichever case happens to allocate; keep them out
    try:
        for _ in range(rounds):
            for name, fn in cases.items():
                samples[name].append(await fn(ns[name]) / ns[name])
            gc.collect()
    finally:
        gc.enable()
    return {name: statistics.median(s) for name, s in samples.items()}


def ratio_rows(
    values: Mapping[str, float | None], reference: str, notes: dict[str, str] | None = None
) -> list[Row]:
    """Rows with the ratio of each value to the reference's."""
    ref = values.get(reference)
    rows = []
    for name, v in values.items():
        r = v / ref if v is not None and ref else None
        rows.append(Row(name, v, r, note=(notes or {}).get(name, "")))
    return rows


def run_async(main: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine function on a fresh default event loop."""
    return asyncio.run(main())  # type: ignore[arg-type]


def now_ns() -> int:
    return time.perf_counter_ns()


def timed_calls(call: Callable[[], Awaitable[object]]) -> Timed:
    """A `Timed` that awaits `call()` n times and returns the nanoseconds it took."""

    async def timed(n: int) -> int:
        t0 = now_ns()
        for _ in range(n):
            await call()
        return now_ns() - t0

    return timed


# --- rendering -------------------------------------------------------------------------


def _fmt(section: Section, v: float | None) -> str:
    return "n/a" if v is None else section.value_format.format(v)


def _fmt_ratio(r: float | None) -> str:
    return "" if r is None else f"{r:.2f}x"


def _verdict(t: Target) -> str:
    return "met" if t.met else "MISSED"


def to_rich(section: Section) -> Table:
    """A rich table for the terminal."""
    table = Table(title=section.title, title_justify="left", show_lines=False)
    table.add_column("case")
    table.add_column(section.unit, justify="right")
    if section.reference:
        table.add_column(f"vs {section.reference}", justify="right")
    for c in section.columns:
        table.add_column(c, justify="right")
    table.add_column("note", style="dim")
    for row in section.rows:
        cells = [row.name, _fmt(section, row.value)]
        if section.reference:
            cells.append(_fmt_ratio(row.ratio))
        cells += [row.extra.get(c, "") for c in section.columns]
        cells.append(row.note)
        table.add_row(*cells)
    return table


def print_section(console: Console, section: Section) -> None:
    console.print(to_rich(section))
    for t in section.targets:
        style = "green" if t.met else "bold red"
        detail = f" ({t.detail})" if t.detail else ""
        console.print(f"  target: {t.description}: [{style}]{_verdict(t)}[/]{detail}")
    for n in section.notes:
        console.print(f"  [dim]{n}[/]")
    console.print()


def to_markdown(section: Section) -> str:
    """The section as a GitHub markdown table, with its targets and notes below."""
    head = ["case", section.unit]
    if section.reference:
        head.append(f"vs {section.reference}")
    head += [*section.columns, "note"]
    lines = [f"### {section.title}", "", "| " + " | ".join(head) + " |"]
    aligns = ["---"] + ["---:"] * (len(head) - 2) + ["---"]
    lines.append("|" + "|".join(aligns) + "|")
    for row in section.rows:
        cells = [row.name, _fmt(section, row.value)]
        if section.reference:
            cells.append(_fmt_ratio(row.ratio))
        cells += [row.extra.get(c, "") for c in section.columns]
        cells.append(row.note)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if section.targets:
        lines.append("")
        for t in section.targets:
            detail = f" ({t.detail})" if t.detail else ""
            lines.append(f"- Target: {t.description}: **{_verdict(t)}**{detail}")
    if section.notes:
        lines.append("")
        lines += [f"- {n}" for n in section.notes]
    return "\n".join(lines) + "\n"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; 0.0 for an empty sequence."""
    if not values:
        return 0.0
    s = sorted(values)
    k = min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))
    return s[k]
