"""The shipped Prometheus alert rules, checked and unit-tested with promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from bounded.data import data_text
from bounded.metrics import BREAKER_STATES, Metrics
from bounded.monitor import ConcurrencyMonitor

promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(promtool is None, reason="promtool not installed")


def _copy_rules(tmp_path: Path) -> Path:
    for name in ("alert-rules.yml", "alert-rules.test.yml"):
        (tmp_path / name).write_text(data_text(name))
    return tmp_path


def _promtool_rules(tmp_path: Path, verb: str, file: str) -> str:
    """Run `promtool <verb> rules <file>` on the shipped rules; fail with its output."""
    result = subprocess.run(
        [str(promtool), verb, "rules", file],
        cwd=_copy_rules(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@needs_promtool
def test_promtool_check_rules(tmp_path: Path) -> None:
    assert "4 rules found" in _promtool_rules(tmp_path, "check", "alert-rules.yml")


@needs_promtool
def test_promtool_test_rules(tmp_path: Path) -> None:
    _promtool_rules(tmp_path, "test", "alert-rules.test.yml")


def _known_metric_names() -> set[str]:
    """Every sample name the collector can expose (with histogram/counter suffixes)."""
    from bounded.breaker import CircuitBreaker
    from bounded.bulkhead import Bulkhead
    from bounded.ratelimit import RateLimiter

    monitor = ConcurrencyMonitor()
    metrics = Metrics(monitor)
    bulkhead = Bulkhead(2, name="b")
    bulkhead.wait_observer = metrics.observer("bulkhead", "b")
    monitor.register("bulkhead", "b", bulkhead)
    monitor.register("rate_limiter", "r", RateLimiter(1, name="r"))
    monitor.register("breaker", "c", CircuitBreaker(name="c"))
    names = set()
    for line in metrics.generate().decode().splitlines():
        if line.startswith("# TYPE "):
            family, kind = line.split()[2:4]
            if kind == "histogram":
                names |= {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
            elif kind == "counter":
                names.add(family if family.endswith("_total") else f"{family}_total")
            else:
                names.add(family)
    return names


_METRIC = re.compile(r"\b(bounded_[a-z_]+)")


def test_rules_and_dashboard_use_only_exposed_metrics() -> None:
    known = _known_metric_names()
    # The pool and HTTP families are exposed when such resources exist.
    known |= {
        "bounded_pool_connections",
        "bounded_http_requests_total",
        "bounded_http_errors_total",
    }
    rules = yaml.safe_load(data_text("alert-rules.yml"))
    alerts = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    assert set(alerts) == {
        "BoundedHighUtilization",
        "BoundedBreakerOpen",
        "BoundedSustainedRateLimiting",
        "BoundedPoolExhausted",
    }
    dashboard = json.loads(data_text("grafana-dashboard.json"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 8
    for expr in [*alerts.values(), *exprs]:
        used = set(_METRIC.findall(expr))
        assert used, expr
        assert used <= known, f"{expr}: unknown {used - known}"
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("utilization", "queue", "rejections", "breaker", "wait time"):
        assert topic in titles
    timeline = [p for p in dashboard["panels"] if p["type"] == "state-timeline"]
    assert timeline
    assert all(state in BREAKER_STATES for state in ("closed", "open", "half_open"))
