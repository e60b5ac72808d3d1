"""Pass/fail criteria in k6's spirit: ``p99<2s``, ``errors<1%``, ``db_connections<=20``.

A threshold is ``METRIC OP VALUE[UNIT]`` with OP one of ``< <= > >= ==``. Units: ``us``,
``ms``, ``s`` for times (a bare number is seconds), ``%`` for rates (a bare number is a
fraction), ``KiB``/``MiB``/``GiB`` for memory. Metrics:

======================  ==============================================================
``p50`` ... ``p99.9``,  latency of successful requests from their intended start
``max``, ``mean``
``service_p99`` ...     latency from the actual start (what a closed-model tool reports)
``lateness_p99``,       how late the generator started requests
``lateness_max``
``errors``              failed / (succeeded + failed)
``errors.CLASS``        one error class's share, e.g. ``errors.upstream_429<1%``
``dropped``             dropped / scheduled
``lost``                scheduled requests not accounted for (always checked: must be 0)
``throughput``          successful requests per second
``db_connections``,     peak of the sampled value
``threads``, ``tasks``,
``fds``, ``rss``
``rss_growth``          (last RSS - first RSS) / first RSS
``recovery``            slowest recovery after a chaos window (see `RunResult.recovery_time`)
``amplification``       worst upstream requests / first attempts in a provider chaos window
======================  ==============================================================
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bounded.stress.accounting import ERROR_CLASSES, PERCENTILES
from bounded.stress.result import RunResult, ThresholdResult

__all__ = ["METRICS", "Threshold", "evaluate", "parse_threshold"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "<": operator.lt,
    ">": operator.gt,
}
_UNITS = {
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "%": 0.01,
    "KiB": 1024.0,
    "MiB": 1024.0**2,
    "GiB": 1024.0**3,
    "": 1.0,
}
_PATTERN = re.compile(
    r"^\s*(?P<metric>[a-z_][a-z0-9_.]*)\s*(?P<op><=|>=|==|<|>)\s*"
    r"(?P<value>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>us|ms|s|%|KiB|MiB|GiB)?\s*$"
)

Measure = Callable[[RunResult], float | None]


def _peak(key: str) -> Measure:
    def measure(r: RunResult) -> float | None:
        series = r.resource_series(key)
        return max(series) if series else None

    return measure


def _rss_growth(r: RunResult) -> float | None:
    series = r.resource_series("rss_bytes")
    if len(series) < 2 or series[0] <= 0:
        return None
    return (series[-1] - series[0]) / series[0]


def _recovery(r: RunResult) -> float | None:
    # The slowest recovery over every event; a run with an unrecovered fault has none.
    times = [r.recovery_time(e) for e in r.events]
    if not times or any(t is None for t in times):
        return None
    return max(t for t in times if t is not None)


def _amplification(r: RunResult) -> float | None:
    # The worst retry amplification over the windows that measured upstream requests.
    values = [r.amplification(e) for e in r.events if "upstream_requests" in e]
    if not values or any(v is None for v in values):
        return None
    return max(v for v in values if v is not None)


def _error_share(kind: str) -> Measure:
    def measure(r: RunResult) -> float | None:
        done = r.succeeded + r.failed_total
        return r.failed.get(kind, 0) / done if done else 0.0

    return measure


def _percentile(field: str, key: str) -> Measure:
    return lambda r: getattr(r, field)[key]


METRICS: dict[str, Measure] = {
    **{f"p{p:g}": _percentile("latency", f"p{p:g}") for p in PERCENTILES},
    "max": _percentile("latency", "max"),
    "mean": _percentile("latency", "mean"),
    **{f"service_p{p:g}": _percentile("service_time", f"p{p:g}") for p in PERCENTILES},
    **{f"lateness_p{p:g}": _percentile("lateness", f"p{p:g}") for p in PERCENTILES},
    "lateness_max": _percentile("lateness", "max"),
    "errors": lambda r: r.error_rate,
    **{f"errors.{k}": _error_share(k) for k in ERROR_CLASSES},
    "dropped": lambda r: r.dropped / r.scheduled if r.scheduled else 0.0,
    "lost": lambda r: float(r.lost),
    "throughput": lambda r: r.throughput,
    "db_connections": _peak("db_connections"),
    "threads": _peak("threads"),
    "tasks": _peak("tasks"),
    "fds": _peak("fds"),
    "rss": _peak("rss_bytes"),
    "rss_growth": _rss_growth,
    "recovery": _recovery,
    "amplification": _amplification,
}


@dataclass(frozen=True)
class Threshold:
    """A parsed threshold: `metric` compared with `value` (in base units) by `op`."""

    expression: str
    metric: str
    op: str
    value: float

    def check(self, result: RunResult) -> ThresholdResult:
        """Measure `result` and compare; a metric the run did not measure fails."""
        actual = METRICS[self.metric](result)
        passed = actual is not None and _OPS[self.op](actual, self.value)
        return ThresholdResult(self.expression, actual, passed)


def parse_threshold(expression: str) -> Threshold:
    """Parse ``METRIC OP VALUE[UNIT]``; a ValueError names what is wrong."""
    m = _PATTERN.match(expression)
    if m is None:
        raise ValueError(
            f"threshold: cannot parse {expression!r}; expected METRIC OP VALUE[UNIT], "
            "e.g. 'p99<2s' or 'errors<1%'"
        )
    metric, unit = m["metric"], m["unit"] or ""
    if metric not in METRICS:
        raise ValueError(
            f"threshold: unknown metric {metric!r} in {expression!r}; known: {', '.join(METRICS)}"
        )
    return Threshold(expression.strip(), metric, m["op"], float(m["value"]) * _UNITS[unit])


def evaluate(result: RunResult, thresholds: Sequence[str | Threshold]) -> list[ThresholdResult]:
    """Check every threshold against `result`, store the outcomes on it and return them."""
    parsed = [t if isinstance(t, Threshold) else parse_threshold(t) for t in thresholds]
    result.thresholds = [t.check(result) for t in parsed]
    return result.thresholds
