"""The regression gate: does a candidate run slower than its baseline, beyond the noise?

Baseline and candidate run interleaved call by call (A B, B A, A B, ...) in rounds on the
same machine, so a change of the machine's load, even one lasting a fraction of a second,
hits both alike. Each round gives one sample per side: the median latency of that side's
calls in the round (robust to the odd call preempted by another process). The verdict:

- ``regression``: a one-sided Mann-Whitney U test says the candidate is slower
  (p < `alpha`, default 0.01) AND the median ratio candidate/baseline > 1 + `margin`
  (default 1.05). Both must agree: a significant 1% change is not a regression, and a
  10% change inside the noise is not proven.
- ``inconclusive``: the noise is larger than the effect the gate is asked to see: the
  median ratio is above 1 + `margin` but not significant, or the rounds scatter (their
  interquartile range relative to the median) by more than both the margin and the
  observed change.
- ``ok``: otherwise.

Needs scipy (the ``stress`` extra).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bounded._validate import positive, positive_int

__all__ = ["Comparison", "compare_calls", "decide"]

Verdict = Literal["regression", "inconclusive", "ok"]
Call = Callable[[int, random.Random], Awaitable[Any]]


@dataclass(frozen=True)
class Comparison:
    """Samples of both sides, the statistics and the verdict."""

    baseline: tuple[float, ...]
    candidate: tuple[float, ...]
    ratio: float  # median(candidate) / median(baseline)
    p_value: float  # one-sided: candidate greater than baseline
    noise: float  # relative interquartile range of the noisier side
    verdict: Verdict

    def to_json(self) -> dict[str, Any]:
        """A plain-JSON dict."""
        return {
            "verdict": self.verdict,
            "ratio": self.ratio,
            "p_value": self.p_value,
            "noise": self.noise,
            "baseline": list(self.baseline),
            "candidate": list(self.candidate),
        }


def _relative_iqr(xs: Sequence[float]) -> float:
    if len(xs) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    median = statistics.median(xs)
    return (q3 - q1) / median if median > 0 else 0.0


def decide(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    alpha: float = 0.01,
    margin: float = 0.05,
) -> Comparison:
    """The verdict for two samples of a lower-is-better measure (see the module docstring)."""
    from scipy.stats import mannwhitneyu

    if len(baseline) < 2 or len(candidate) < 2:
        raise ValueError("baseline and candidate need at least 2 samples each")
    positive("alpha", alpha)
    positive("margin", margin)
    base_median = statistics.median(baseline)
    if base_median <= 0:
        raise ValueError("baseline: median must be > 0")
    ratio = statistics.median(candidate) / base_median
    # The exact distribution for the usual handful of rounds (scipy's "auto" only uses it
    # below 8 per side); the normal approximation for ties or many samples.
    tied = len(set(baseline) | set(candidate)) < len(baseline) + len(candidate)
    method = "asymptotic" if tied or max(len(baseline), len(candidate)) > 50 else "exact"
    result = mannwhitneyu(candidate, baseline, alternative="greater", method=method)
    p_value = float(result.pvalue)
    noise = max(_relative_iqr(baseline), _relative_iqr(candidate))
    verdict: Verdict
    if p_value < alpha and ratio > 1 + margin:
        verdict = "regression"
    elif ratio > 1 + margin or (noise > margin and noise > abs(ratio - 1)):
        verdict = "inconclusive"
    else:
        verdict = "ok"
    return Comparison(tuple(baseline), tuple(candidate), ratio, p_value, noise, verdict)


async def _round(
    baseline: Call, candidate: Call, duration: float, users: int, first_index: int
) -> tuple[float, float]:
    """One round: `users` workers alternate the two calls; the median latency of each."""
    loop = asyncio.get_running_loop()
    end = loop.time() + duration
    latencies: tuple[list[float], list[float]] = ([], [])
    counter = itertools.count(first_index)

    async def worker() -> None:
        pairs = 0
        while loop.time() < end:
            order = (
                ((0, baseline), (1, candidate))
                if pairs % 2 == 0
                else ((1, candidate), (0, baseline))
            )
            index = next(counter)
            for side, call in order:
                started = loop.time()
                await call(index, random.Random(index))
                latencies[side].append(loop.time() - started)
                await asyncio.sleep(0)
            pairs += 1

    async with asyncio.TaskGroup() as tg:
        for _ in range(users):
            tg.create_task(worker())
    return statistics.median(latencies[0]), statistics.median(latencies[1])


async def compare_calls(
    baseline: Call,
    candidate: Call,
    *,
    rounds: int = 10,
    round_duration: float = 0.5,
    users: int = 1,
    alpha: float = 0.01,
    margin: float = 0.05,
) -> Comparison:
    """Run both calls interleaved for `rounds` rounds and `decide` on per-round medians.

    An exception raised by either call ends the comparison (a failing side cannot be
    timed).
    """
    positive_int("rounds", rounds)
    positive("round_duration", round_duration)
    positive_int("users", users)
    samples: tuple[list[float], list[float]] = ([], [])
    for n in range(rounds):
        a, b = await _round(baseline, candidate, round_duration, users, n * 1_000_000)
        samples[0].append(a)
        samples[1].append(b)
    return decide(samples[0], samples[1], alpha=alpha, margin=margin)
