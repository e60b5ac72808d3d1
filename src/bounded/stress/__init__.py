"""Load, accounting and regression checks for asyncio services (`bounded stress`).

The CLI is a thin layer over this API:

    from bounded.stress import profile, run_open

    async def call(index, rng):
        ...

    result = await run_open(call, profile("spike", duration=30).schedule)
    assert result.lost == 0

Needs the ``stress`` extra (hdrhistogram, httptools, psutil, scipy).
"""

from __future__ import annotations

from bounded.stress.accounting import ERROR_CLASSES, IntervalStats, classify_error
from bounded.stress.result import RunResult, ThresholdResult
from bounded.stress.runner import run_closed, run_open
from bounded.stress.schedule import (
    PROFILES,
    Profile,
    Schedule,
    Segment,
    constant,
    profile,
    ramp,
    spike,
    step,
)
from bounded.stress.targets import Target, http_target, open_target, register_target

__all__ = [
    "ERROR_CLASSES",
    "PROFILES",
    "IntervalStats",
    "Profile",
    "RunResult",
    "Schedule",
    "Segment",
    "Target",
    "ThresholdResult",
    "classify_error",
    "constant",
    "http_target",
    "open_target",
    "profile",
    "ramp",
    "register_target",
    "run_closed",
    "run_open",
    "spike",
    "step",
]
