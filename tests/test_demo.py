"""`bounded demo`: the FM-043 navigator, unguarded then guarded, end to end.

The run uses PostgreSQL with pgvector (``DATABASE_URL`` when its server has it, else the
embedded server) and the mock provider in a child process, as a user's run does.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from bounded.demo import QUICK, BuildResult, DemoResult, render, run_result, schedule
from tests.stress.test_report_browser import CHROMIUM, load


def check_report(page: Path, build: dict[str, object]) -> None:
    """`page` is a self-contained stress report whose accounting is `build`'s."""
    html = page.read_text()
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']?https?:", html)
    assert "<link" not in html
    data = json.loads(re.search(r'id="result">(.*?)</script>', html, re.S).group(1))  # type: ignore[union-attr]
    assert data["accounting"]["scheduled"] == build["scheduled"]
    assert data["accounting"]["succeeded"] == build["succeeded"] > 0
    assert data["accounting"]["lost"] == build["lost"]
    assert data["events"][0]["name"].startswith("spike")
    assert 0 < data["thresholds"][0]["actual"] <= build["peak_connections"]
    if CHROMIUM is not None:
        html, console = load(page)
        assert console == []
    charts = [int(n) for n in re.findall(r'<svg class="chart" data-points="(\d+)"', html)]
    assert len(charts) >= 6  # latency, throughput, in flight, errors, process, connections
    assert all(n > 0 for n in charts)


def test_quick_demo_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    reports = tmp_path / "reports"
    proc = subprocess.run(
        [sys.executable, "-c", "from bounded.cli import main; main()", "demo", "--quick",
         "--json", str(out), "--report", str(reports)],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "unguarded" in proc.stdout
    assert "guarded" in proc.stdout
    assert "peak PostgreSQL connections" in proc.stdout
    result = json.loads(out.read_text())
    guarded, unguarded = result["builds"]["guarded"], result["builds"]["unguarded"]
    assert guarded["lost"] == 0
    assert guarded["started"] == guarded["scheduled"] > 0
    assert guarded["succeeded"] + sum(guarded["failed"].values()) == guarded["started"]
    assert 0 < guarded["peak_connections"] <= result["pool_max"] == 20
    assert guarded["succeeded"] > 0
    # every shed request was told when to come back
    assert guarded["shed_with_retry_after"] == guarded["shed"]
    assert unguarded["scheduled"] == guarded["scheduled"]
    assert unguarded["peak_threads"] > guarded["peak_threads"]
    # memory sampled in both phases, the steady one as the baseline of the RSS target
    for build in (guarded, unguarded):
        assert build["rss_steady"] > 0
        assert build["rss_peak"] > 0
    assert "RSS within 10% of its steady value" in proc.stdout
    # each build's stress report, its path printed
    for build in ("unguarded", "guarded"):
        page = reports / f"{build}.html"
        assert f"HTML report: {page}" in proc.stdout
        check_report(page, result["builds"][build])


def _result() -> DemoResult:
    provider = {"rpm": 300, "tpm": 300_000, "window": 10.0, "capacity": 16}
    result = DemoResult(QUICK, provider, sustainable=4.0, pool_max=20, database="embedded")
    result.builds["unguarded"] = BuildResult(
        "unguarded",
        scheduled=10,
        started=8,
        succeeded=1,
        failed={"too many clients": 2},
        unfinished=5,
        ended_by_watchdog=True,
        peak_connections=90,
    )
    result.builds["guarded"] = BuildResult(
        "guarded",
        scheduled=10,
        started=10,
        succeeded=4,
        failed={"shed with retry_after": 6},
        shed=6,
        shed_with_retry_after=6,
        shed_p99=0.001,
        spike_succeeded=4,
        spike_seconds=1.0,
        p99=0.5,
        steady_p99=0.4,
        peak_connections=5,
    )
    return result


def test_lost_counts_never_started_unfinished_and_unclassified() -> None:
    r = BuildResult("x", scheduled=10, started=8, unfinished=3, unclassified={"KeyError": 1})
    assert (r.not_started, r.lost) == (2, 6)
    assert r.as_dict()["lost"] == 6


def test_render_prints_the_table_and_the_targets() -> None:
    out = io.StringIO()
    render(Console(file=out, width=200), _result())
    text = out.getvalue()
    assert "failed: too many clients" in text
    assert "unguarded: its event loop was still blocked" in text
    assert "guarded: met 0 lost" in text
    assert "guarded: met PostgreSQL connections <= pool max 20 (peak 5)" in text
    assert "guarded: met goodput >= 95% of the sustainable rate (100%)" in text


def test_run_result_replays_the_builds_workflows_into_the_stress_accounting() -> None:
    due = len(schedule(QUICK, 4.0))
    build = BuildResult("unguarded", scheduled=due, started=5, elapsed=9.5)
    build.unfinished, build.unclassified = 1, {"KeyError": 1}
    trace = {
        "t0": 0.0,
        "ends": [
            (0, 0.1, 0.6, None, False),
            (1, 0.6, 2.2, "too many clients", False),
            (3, 1.5, 1.6, "shed with retry_after", True),
        ],
        "samples": [
            (0.5, {"threads": 3, "rss_bytes": 10}),
            (0.7, {"threads": 9, "db_connections": 2}),
            (2.5, {"threads": 4}),
        ],
        "alerts": [],
    }
    run = run_result(build, trace, QUICK, 4.0)
    assert (run.scheduled, run.succeeded, run.failed_total) == (due, 1, 2)
    assert run.failed["other"] == run.failed["rejected"] == 1
    assert run.rejected_without_retry_after == 0
    # never started (due - 5), unfinished (1) and unclassified (1) stay unaccounted
    assert run.lost == build.lost == due - 5 + 2
    assert [(i.start, i.end) for i in run.timeline][:2] == [(0.0, 1.0), (1.0, 2.0)]
    assert run.timeline[-1].end == 9.5
    assert run.timeline[0].resources == {"threads": 9, "rss_bytes": 10, "db_connections": 2}
    assert run.timeline[0].succeeded == 1
    assert run.timeline[1].failed == {"rejected": 1}
    assert run.timeline[2].failed == {"other": 1}
    assert run.latency["max"] == pytest.approx(0.6, rel=1e-3)  # from its intended start, 0
    assert run.events[0]["start"] == QUICK.steady_seconds
    assert [(t.expression, t.actual, t.passed) for t in run.thresholds] == [
        ("db_connections<=20", 2, True)
    ]
