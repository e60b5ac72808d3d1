"""The regression gate: does a candidate run slower than its baseline, beyond the noise?

Baseline and candidate run in interleaved rounds on the same machine (A B, B A, A B, ...,
so a drift of the machine's load hits both alike); each round gives one sample per side:
its median latency (robust to the odd request preempted by another process; kept by the
histogram to 3 significant digits, so 0.1% resolution). The verdict:

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
import random
import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bounded._validate import positive, positive_int
from bounded.stress.runner import run_closed

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
    """Run both calls in interleaved rounds (closed model) and `decide` on per-round medians."""
    positive_int("rounds", rounds)
    positive("round_duration", round_duration)
    samples: dict[str, list[float]] = {"baseline": [], "candidate": []}
    sides = {"baseline": baseline, "candidate": candidate}
    for n in range(rounds):
        order = ("baseline", "candidate") if n % 2 == 0 else ("candidate", "baseline")
        for side in order:
            result = await run_closed(sides[side], users=users, duration=round_duration, grace=5)
            if result.succeeded == 0:
                raise RuntimeError(f"compare: the {side} completed no request in round {n + 1}")
            samples[side].append(result.latency["p50"])
            await asyncio.sleep(0)
    return decide(samples["baseline"], samples["candidate"], alpha=alpha, margin=margin)
