"""Thresholds: parsing, units, and checks against a result."""

from __future__ import annotations

import pytest

from bounded.stress import IntervalStats, RunResult
from bounded.stress.thresholds import METRICS, evaluate, parse_threshold


def result(**overrides: object) -> RunResult:
    latency = {
        "p50": 0.1,
        "p90": 0.5,
        "p95": 0.8,
        "p99": 1.5,
        "p99.9": 2.5,
        "max": 3.0,
        "mean": 0.2,
    }
    timeline = [
        IntervalStats(0, 1, 10, 10, {}, 0, 0, {}, 0.0, {"rss_bytes": 100, "db_connections": 5}),
        IntervalStats(1, 2, 10, 8, {}, 0, 0, {}, 0.0, {"rss_bytes": 108, "db_connections": 21}),
    ]
    fields: dict[str, object] = {
        "model": "open",
        "config": {},
        "elapsed": 2.0,
        "scheduled": 100,
        "succeeded": 90,
        "failed": {"timeout": 2, "upstream_429": 3},
        "dropped": 5,
        "rejected_without_retry_after": 0,
        "latency": latency,
        "service_time": latency,
        "lateness": {**latency, "p99": 0.001},
        "histogram": "",
        "timeline": timeline,
    }
    fields.update(overrides)
    return RunResult(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("expression", "actual", "passed"),
    [
        ("p99<2s", 1.5, True),
        ("p99<1500ms", 1.5, False),
        ("p99<=1500ms", 1.5, True),
        ("p99.9 < 2.4s", 2.5, False),
        ("errors<1%", 5 / 95, False),
        ("errors<10%", 5 / 95, True),
        ("errors.upstream_429<=0.05", 3 / 95, True),
        ("dropped<=5%", 0.05, True),
        ("lost==0", 0, True),
        ("throughput>=45", 45, True),
        ("lateness_p99<2ms", 0.001, True),
        ("db_connections<=20", 21, False),
        ("rss_growth<10%", 0.08, True),
        ("rss<1KiB", 108, True),
    ],
)
def test_threshold_checks(expression: str, actual: float, passed: bool) -> None:
    (outcome,) = evaluate(r := result(), [expression])
    assert outcome.actual == pytest.approx(actual)
    assert outcome.passed is passed
    assert r.passed is passed


def test_unmeasured_metric_fails() -> None:
    r = result(timeline=[])
    (outcome,) = evaluate(r, ["db_connections<=20"])
    assert outcome.actual is None
    assert not outcome.passed
    assert r.to_json()["thresholds"] == [
        {"expression": "db_connections<=20", "actual": None, "passed": False}
    ]


def test_a_lost_request_fails_the_run_without_any_threshold() -> None:
    assert result().passed
    assert not result(succeeded=89).passed


@pytest.mark.parametrize("bad", ["p99", "p99<", "p99 < fast", "p98<1s", "latency<1s", "p99=1s"])
def test_bad_thresholds_raise_value_error(bad: str) -> None:
    with pytest.raises(ValueError, match="threshold"):
        parse_threshold(bad)


def test_every_metric_measures_a_result() -> None:
    r = result()
    for name, measure in METRICS.items():
        value = measure(r)
        assert value is None or value >= 0, name


def interval(start: float, ok: int, failed: int) -> IntervalStats:
    errors = {"timeout": failed} if failed else {}
    return IntervalStats(start, start + 1, ok + failed, ok, errors, 0, 0, {}, 0.0)


def test_recovery_time_after_a_fault_window() -> None:
    timeline = [interval(0, 10, 0), interval(1, 5, 5), interval(2, 6, 4), interval(3, 10, 0)]
    r = result(timeline=timeline, events=[{"name": "reset", "start": 1.0, "end": 2.0}])
    # Pre-fault level 100%; [2, 3) is at 60%, [3, 4) back at 100%: recovered 2 s after the end.
    assert r.recovery_time(r.events[0]) == 2.0
    assert r.to_json()["events"][0]["recovery_time"] == 2.0
    assert [t.passed for t in evaluate(r, ["recovery<=2s", "recovery<2s"])] == [True, False]


def test_a_fault_never_recovered_from_fails_the_recovery_threshold() -> None:
    timeline = [interval(0, 10, 0), interval(1, 5, 5), interval(2, 6, 4)]
    r = result(timeline=timeline, events=[{"name": "reset", "start": 1.0, "end": 2.0}])
    assert r.recovery_time(r.events[0]) is None
    (outcome,) = evaluate(r, ["recovery<60s"])
    assert outcome.actual is None
    assert not outcome.passed


def test_amplification_from_upstream_requests_over_the_window() -> None:
    timeline = [interval(0, 10, 0), interval(1, 4, 6), interval(2, 10, 0)]
    # The window covers half of [1, 2) and half of [2, 3): 5 + 5 first attempts.
    event = {"name": "p", "start": 1.5, "end": 2.5, "upstream_requests": 25}
    r = result(timeline=timeline, events=[event])
    assert r.amplification(event) == pytest.approx(2.5)
    assert r.to_json()["events"][0]["amplification"] == pytest.approx(2.5)
    assert [t.passed for t in evaluate(r, ["amplification<=1.1", "amplification<3"])] == [
        False,
        True,
    ]
    assert result(events=[{"name": "n", "start": 0, "end": 1}]).to_json()["events"][0].keys() == {
        "name",
        "start",
        "end",
        "recovery_time",
    }
