"""The target's Prometheus counters over a run: what a `ConcurrencyManager` counted.

A run reads the counters (every ``*_total`` series of the target's `bounded.metrics.Metrics`,
parsed from the same text ``/metrics`` serves) before and after, and reports the series
that grew, so the result can be set side by side with the runner's own accounting.
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Exposition", "increase", "read_counters"]


class Exposition(Protocol):
    """Anything with `generate()` returning the Prometheus text format (`Metrics`)."""

    def generate(self) -> bytes: ...


def read_counters(metrics: Exposition) -> dict[str, float]:
    """Every counter series, keyed as written in the exposition: ``name{label="v",...}``."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics.generate().decode()):
        if family.type != "counter":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def increase(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The series that grew from `before` to `after`, by how much, in name order."""
    grown = {k: v - before.get(k, 0.0) for k, v in after.items()}
    return {k: grown[k] for k in sorted(grown) if grown[k] > 0}
