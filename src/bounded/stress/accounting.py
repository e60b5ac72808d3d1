"""Where every scheduled request ends: success, a classified error, or dropped.

`Tally` keeps counters and HDR histograms only (no per-request record), so its memory
does not grow with the number of requests. Latencies are recorded in microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx2
from hdrh.histogram import HdrHistogram

from bounded.errors import CircuitOpen, Rejected
from bounded.http import HTTPError

__all__ = [
    "ERROR_CLASSES",
    "IntervalStats",
    "Latencies",
    "Tally",
    "classify_error",
    "new_histogram",
]

#: Every class a failed request can fall into, in report order.
ERROR_CLASSES: tuple[str, ...] = (
    "rejected",  # a bounded Rejected (bulkhead full, rate limited, pool exhausted)
    "timeout",  # TimeoutError, an HTTP timeout, or still running when the run's grace ran out
    "upstream_429",
    "upstream_5xx",  # 5xx and 529 from the target or its upstream
    "breaker_open",
    "other",
)

_HIGHEST_US = 3_600_000_000  # one hour
PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    """A latency histogram in microseconds, 1 us to 1 h, 3 significant digits."""
    return HdrHistogram(1, _HIGHEST_US, 3)


class Latencies:
    """An HDR histogram of durations plus their exact sum (HdrHistogram's own mean walks
    every bucket in Python, ~100 ms: too slow to call once per interval)."""

    __slots__ = ("hist", "total")

    def __init__(self) -> None:
        self.hist = new_histogram()
        self.total = 0.0

    def record(self, seconds: float) -> None:
        """Add one duration."""
        self.hist.record_value(min(_HIGHEST_US, max(1, round(seconds * 1e6))))
        self.total += seconds

    def add(self, other: Latencies) -> None:
        """Merge `other` into this one."""
        self.hist.add(other.hist)
        self.total += other.total

    def percentiles(self) -> dict[str, float]:
        """p50 ... p99.9, max and mean in seconds (zeros when empty)."""
        count = self.hist.get_total_count()
        values = self.hist.get_percentile_to_value_dict(list(PERCENTILES)) if count else {}
        out = {f"p{p:g}": values.get(p, 0) / 1e6 for p in PERCENTILES}
        out["max"] = self.hist.get_max_value() / 1e6 if count else 0.0
        out["mean"] = self.total / count if count else 0.0
        return out


def classify_error(exc: BaseException) -> str:
    """The `ERROR_CLASSES` entry for an exception raised by a target."""
    if isinstance(exc, CircuitOpen):
        return "breaker_open"
    if isinstance(exc, Rejected):
        return "rejected"
    if isinstance(exc, TimeoutError | httpx2.TimeoutException):
        return "timeout"
    status = getattr(exc, "status_code", None)
    if isinstance(exc, HTTPError | httpx2.HTTPStatusError) or isinstance(status, int):
        if isinstance(exc, httpx2.HTTPStatusError):
            status = exc.response.status_code
        if status == 429:
            return "upstream_429"
        if isinstance(status, int) and (500 <= status <= 599 or status == 529):
            return "upstream_5xx"
    return "other"


@dataclass
class IntervalStats:
    """What happened in one sampling interval (completions counted where they ended)."""

    start: float  # seconds since the run started
    end: float
    scheduled: int
    succeeded: int
    failed: dict[str, int]
    dropped: int
    in_flight: int
    latency: dict[str, float]  # percentiles of the requests completed in the interval
    lateness_max: float  # worst scheduling lateness in the interval, seconds
    resources: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A plain-JSON dict (see docs/stress.md, "timeline")."""
        return {
            "start": round(self.start, 6),
            "end": round(self.end, 6),
            "scheduled": self.scheduled,
            "succeeded": self.succeeded,
            "failed": dict(self.failed),
            "dropped": self.dropped,
            "in_flight": self.in_flight,
            "latency": {k: round(v, 6) for k, v in self.latency.items()},
            "lateness_max": round(self.lateness_max, 6),
            "resources": self.resources,
        }


class Tally:
    """Counters and histograms for one run; `checkpoint()` closes an interval."""

    def __init__(self) -> None:
        self.scheduled = 0
        self.succeeded = 0
        self.dropped = 0
        self.in_flight = 0
        self.failed: dict[str, int] = dict.fromkeys(ERROR_CLASSES, 0)
        self.rejected_without_retry_after = 0
        self.latency = Latencies()  # from the intended start (CO corrected)
        self.service = Latencies()  # from the actual start
        self.lateness = Latencies()  # actual start - intended start
        self._interval = Latencies()
        self._mark = (0, 0, 0, dict(self.failed))
        self._lateness_max = 0.0
        self._unsettled: list[tuple[IntervalStats, Latencies]] = []

    def schedule(self) -> None:
        """A request became due."""
        self.scheduled += 1

    def drop(self) -> None:
        """A due request was not started (the generator was at its in-flight limit)."""
        self.dropped += 1

    def dispatch(self) -> None:
        """A due request was handed to a task (in flight from now on)."""
        self.in_flight += 1

    def start(self, lateness: float) -> None:
        """A dispatched request began running `lateness` seconds after its intended start."""
        lateness = max(0.0, lateness)
        self.lateness.record(lateness)
        self._lateness_max = max(self._lateness_max, lateness)

    def succeed(self, latency: float, service: float) -> None:
        """A started request returned normally."""
        self.in_flight -= 1
        self.succeeded += 1
        self._interval.record(latency)
        self.service.record(service)

    def fail(self, exc: BaseException) -> str:
        """A started request raised `exc`; returns the class it was counted under."""
        retry_after = getattr(exc, "retry_after", None) is not None
        return self.fail_as(classify_error(exc), retry_after=retry_after)

    def fail_as(self, kind: str, *, retry_after: bool) -> str:
        """A started request failed with an error already classified as `kind` (one of
        `ERROR_CLASSES`); `retry_after`: whether the error said when to come back."""
        if kind not in self.failed:
            raise ValueError(f"kind must be one of {', '.join(ERROR_CLASSES)}, not {kind!r}")
        self.in_flight -= 1
        self.failed[kind] += 1
        if kind == "rejected" and not retry_after:
            self.rejected_without_retry_after += 1
        return kind

    def checkpoint(self, start: float, end: float) -> IntervalStats:
        """Close the interval [start, end) and count its deltas; cheap (no histogram walk).

        Its latency percentiles are filled in by `settle`, which the caller runs later.
        """
        scheduled, succeeded, dropped, failed = self._mark
        stats = IntervalStats(
            start=start,
            end=end,
            scheduled=self.scheduled - scheduled,
            succeeded=self.succeeded - succeeded,
            failed={k: v - failed[k] for k, v in self.failed.items() if v - failed[k]},
            dropped=self.dropped - dropped,
            in_flight=self.in_flight,
            latency={},
            lateness_max=self._lateness_max,
        )
        self._unsettled.append((stats, self._interval))
        self._interval = Latencies()
        self._lateness_max = 0.0
        self._mark = (self.scheduled, self.succeeded, self.dropped, dict(self.failed))
        return stats

    def settle(self) -> None:
        """Compute the percentiles of closed intervals and merge them into the totals."""
        while self._unsettled:
            stats, latencies = self._unsettled.pop(0)
            stats.latency = latencies.percentiles()
            self.latency.add(latencies)
