"""The FM-043 navigator under a load spike, as `bounded demo` runs it: unguarded vs guarded.

One full run of the demo (steady load, then 10x the mock provider's sustainable rate, each
build in its own process against PostgreSQL with pgvector and the mock in a child
process), recorded with the guarded build's targets so that `make bench` keeps the
figures the README quotes. `bounded demo` prints the same table.
"""

from __future__ import annotations

import asyncio

from bench._harness import Row, Section, Target
from bounded.demo import FULL, BuildResult, guarded_targets, run_demo

COLUMNS = [
    "succeeded",
    "failed (by class)",
    "lost",
    "p50 / p99 ms",
    "steady p99 ms",
    "peak PG connections",
    "peak threads",
    "peak tasks",
    "RSS MiB start -> end",
    "RSS MiB peak: steady -> spike",
    "provider 429s (after 1st window)",
    "attempts per workflow",
]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f}"


def _row(r: BuildResult) -> Row:
    failed = ", ".join(f"{kind} {n:,}" for kind, n in sorted(r.failed.items()) if n) or "0"
    return Row(
        r.build,
        r.goodput,
        extra={
            "succeeded": f"{r.succeeded:,} of {r.scheduled:,}",
            "failed (by class)": failed,
            "lost": f"{r.lost:,}",
            "p50 / p99 ms": f"{_ms(r.p50)} / {_ms(r.p99)}",
            "steady p99 ms": _ms(r.steady_p99),
            "peak PG connections": f"{r.peak_connections:,}",
            "peak threads": f"{r.peak_threads}",
            "peak tasks": f"{r.peak_tasks:,}",
            "RSS MiB start -> end": f"{r.rss_start / 2**20:,.0f} -> {r.rss_end / 2**20:,.0f}",
            "RSS MiB peak: steady -> spike": (
                f"{r.rss_steady / 2**20:,.0f} -> {r.rss_peak / 2**20:,.0f}"
            ),
            "provider 429s (after 1st window)": (
                f"{r.provider_429s:,} ({r.provider_429s_after_first_window:,})"
            ),
            "attempts per workflow": f"{r.attempts_per_workflow:.1f}",
        },
        note="the loop stayed blocked; ended by the watchdog" if r.ended_by_watchdog else "",
    )


def run() -> list[Section]:
    """One full demo run: both builds side by side, with the guarded build's targets."""
    result = asyncio.run(run_demo(FULL))
    p = result.profile
    return [
        Section(
            title=(
                f"`bounded demo`: {p.steady_seconds:g} s at {p.steady_load:g}x, then "
                f"{p.spike_seconds:g} s at {p.spike_load:g}x the provider's sustainable "
                f"{result.sustainable:.2f} workflows/s; database: {result.database}"
            ),
            unit="goodput in the spike, workflows/s",
            reference=None,
            rows=[_row(r) for r in result.builds.values()],
            targets=[
                Target(f"guarded: {name}", met, seen) for name, met, seen in guarded_targets(result)
            ],
            columns=COLUMNS,
            value_format="{:,.2f}",
            notes=[
                "Latency from each workflow's intended start (coordinated omission "
                "corrected); 'lost': due but never started, unfinished at the end of the "
                "drain, or failed with an error of no known class.",
                f"Provider: {result.provider}; pool max {result.pool_max}.",
            ],
        )
    ]
