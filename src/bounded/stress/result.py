"""The outcome of one stress run and its JSON form (schema in docs/stress.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bounded.stress.accounting import ERROR_CLASSES, IntervalStats, Tally

__all__ = ["SCHEMA_VERSION", "RunResult", "ThresholdResult"]

#: Bumped when a field changes meaning or goes away (adding fields keeps the version).
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ThresholdResult:
    """One threshold, the value the run measured for it, and whether it held."""

    expression: str
    actual: float | None  # None: the run has no such measurement (counts as failed)
    passed: bool

    def to_json(self) -> dict[str, Any]:
        """A plain-JSON dict."""
        return {"expression": self.expression, "actual": self.actual, "passed": self.passed}


@dataclass
class RunResult:
    """Counts, latency percentiles (seconds), the per-interval timeline and thresholds.

    `latency` is measured from each request's intended start (open model) and covers
    successful requests; `service_time` from its actual start; `lateness` is how late the
    generator started requests. `lost` must be 0: every scheduled request is succeeded,
    failed or dropped.
    """

    model: str
    config: dict[str, Any]
    elapsed: float
    scheduled: int
    succeeded: int
    failed: dict[str, int]
    dropped: int
    rejected_without_retry_after: int
    latency: dict[str, float]
    service_time: dict[str, float]
    lateness: dict[str, float]
    histogram: str  # the overall latency histogram, HdrHistogram's compressed base64 form
    timeline: list[IntervalStats]
    target: str = ""
    profile: str | None = None
    thresholds: list[ThresholdResult] = field(default_factory=list)
    # Time windows, e.g. chaos faults: {"name", "kind", "start", "end"} in run seconds.
    events: list[dict[str, Any]] = field(default_factory=list)
    # The target monitor's alerts: {"time" (run seconds), "resource", "kind", "state",
    # "utilization"}.
    alerts: list[dict[str, Any]] = field(default_factory=list)
    # How much each of the target's Prometheus counters grew over the run, keyed
    # ``name{label="v",...}`` (a target exposing a ConcurrencyManager's metrics).
    metrics: dict[str, float] = field(default_factory=dict)
    started_at: float = 0.0  # the event loop's clock at the run's time 0

    @classmethod
    def from_tally(
        cls,
        tally: Tally,
        timeline: list[IntervalStats],
        *,
        model: str,
        elapsed: float,
        config: dict[str, Any],
        started_at: float = 0.0,
    ) -> RunResult:
        """The result of a run whose requests were counted in `tally` (settled)."""
        return cls(
            model=model,
            config=config,
            elapsed=elapsed,
            scheduled=tally.scheduled,
            succeeded=tally.succeeded,
            failed=dict(tally.failed),
            dropped=tally.dropped,
            rejected_without_retry_after=tally.rejected_without_retry_after,
            latency=tally.latency.percentiles(),
            service_time=tally.service.percentiles(),
            lateness=tally.lateness.percentiles(),
            histogram=tally.latency.hist.encode().decode("ascii"),
            timeline=timeline,
            started_at=started_at,
        )

    @property
    def failed_total(self) -> int:
        """Requests that ended in a classified error."""
        return sum(self.failed.values())

    @property
    def lost(self) -> int:
        """Scheduled requests that ended as none of succeeded, failed or dropped."""
        return self.scheduled - self.succeeded - self.failed_total - self.dropped

    @property
    def error_rate(self) -> float:
        """Failed / (succeeded + failed); 0 when nothing completed."""
        done = self.succeeded + self.failed_total
        return self.failed_total / done if done else 0.0

    @property
    def throughput(self) -> float:
        """Successful requests per second over the run."""
        return self.succeeded / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def passed(self) -> bool:
        """No lost request, every threshold held and every chaos fault applied and lifted."""
        return (
            self.lost == 0
            and all(t.passed for t in self.thresholds)
            and not any("error" in e for e in self.events)
        )

    def resource_series(self, key: str) -> list[float]:
        """The sampled values of resource `key` (e.g. "rss_bytes"), one per interval that has it."""
        out = []
        for interval in self.timeline:
            value = interval.resources.get(key)
            if isinstance(value, int | float):
                out.append(float(value))
        return out

    def resources_summary(self) -> dict[str, dict[str, float]]:
        """First, last and peak of every numeric resource sampled during the run."""
        keys: list[str] = []
        for interval in self.timeline:
            keys += [k for k, v in interval.resources.items() if isinstance(v, int | float)]
        summary = {}
        for key in dict.fromkeys(keys):
            series = self.resource_series(key)
            summary[key] = {"first": series[0], "last": series[-1], "peak": max(series)}
        return summary

    def recovery_time(self, event: dict[str, Any], tolerance: float = 0.01) -> float | None:
        """Seconds from the end of `event`'s window until an interval's success ratio is back
        at its pre-fault level (within `tolerance`); None if it never gets back.

        Success ratio of an interval: succeeded / (succeeded + failed + dropped). The
        pre-fault level is the ratio over the intervals that ended before the window began
        (1.0 when there are none).
        """
        start, end = float(event["start"]), float(event["end"])
        before = [i for i in self.timeline if i.end <= start]
        done = sum(i.succeeded + sum(i.failed.values()) + i.dropped for i in before)
        level = sum(i.succeeded for i in before) / done if done else 1.0
        for i in self.timeline:
            if i.start < end:
                continue
            total = i.succeeded + sum(i.failed.values()) + i.dropped
            if total and i.succeeded / total >= level - tolerance:
                return max(0.0, i.end - end)
        return None

    def amplification(self, event: dict[str, Any]) -> float | None:
        """Upstream requests per first attempt during `event`'s window (retry amplification).

        Needs ``upstream_requests`` on the event (the provider chaos kind measures it).
        First attempts are the requests the runner started in the window, estimated from
        the intervals it overlaps in proportion to the overlap. None when not measurable.
        """
        upstream = event.get("upstream_requests")
        if not isinstance(upstream, int | float):
            return None
        start, end = float(event["start"]), float(event["end"])
        attempts = 0.0
        for i in self.timeline:
            overlap = min(end, i.end) - max(start, i.start)
            if overlap > 0 and i.end > i.start:
                attempts += (i.scheduled - i.dropped) * overlap / (i.end - i.start)
        return upstream / attempts if attempts > 0 else None

    def _event_json(self, event: dict[str, Any]) -> dict[str, Any]:
        out = {**event, "recovery_time": self.recovery_time(event)}
        if "upstream_requests" in event:
            out["amplification"] = self.amplification(event)
        return out

    def to_json(self) -> dict[str, Any]:
        """The documented JSON result (docs/stress.md)."""
        return {
            "schema": SCHEMA_VERSION,
            "target": self.target,
            "profile": self.profile,
            "model": self.model,
            "config": self.config,
            "passed": self.passed,
            "elapsed": round(self.elapsed, 6),
            "accounting": {
                "scheduled": self.scheduled,
                "succeeded": self.succeeded,
                "failed": self.failed_total,
                "dropped": self.dropped,
                "lost": self.lost,
                "identity_holds": self.lost == 0,
            },
            "errors": {k: self.failed.get(k, 0) for k in ERROR_CLASSES},
            "rejected_without_retry_after": self.rejected_without_retry_after,
            "error_rate": self.error_rate,
            "throughput": self.throughput,
            "latency": self.latency,
            "service_time": self.service_time,
            "lateness": self.lateness,
            "resources": self.resources_summary(),
            "thresholds": [t.to_json() for t in self.thresholds],
            "events": [self._event_json(e) for e in self.events],
            "alerts": self.alerts,
            "metrics": self.metrics,
            "timeline": [i.to_json() for i in self.timeline],
            "histogram": self.histogram,
        }
