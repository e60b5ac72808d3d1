"""Window arithmetic over admission logs, to check rate guarantees."""

from __future__ import annotations

# looptime keeps time in whole microseconds: allow for that rounding.
TIME_TOLERANCE = 1e-6


def most_in_window(times: list[float], costs: list[float], length: float) -> float:
    """The most units admitted in any half-open window [s, s + length)."""
    log = sorted(zip(times, costs, strict=True))
    best = 0.0
    total = 0.0
    start = 0
    for end in range(len(log)):
        total += log[end][1]
        while log[end][0] - log[start][0] >= length - TIME_TOLERANCE:
            total -= log[start][1]
            start += 1
        best = max(best, total)
    return best


def worst_gcra_excess(
    times: list[float], costs: list[float], burst: float, rate_per_second: float
) -> float:
    """max over admissions i <= j of units(i..j) - (burst + rate * (t_j - t_i)).

    A half-open window holding admissions i..j is longer than t_j - t_i, so the GCRA
    guarantee holds iff this is <= 0 (up to the clock's rounding).
    """
    log = sorted(zip(times, costs, strict=True))
    worst = float("-inf")
    prefix = 0.0
    lowest = float("inf")  # min over i <= j of (units before i) - rate * t_i
    for t, cost in log:
        lowest = min(lowest, prefix - rate_per_second * t)
        prefix += cost
        worst = max(worst, prefix - rate_per_second * t - lowest - burst)
    return worst - rate_per_second * TIME_TOLERANCE
