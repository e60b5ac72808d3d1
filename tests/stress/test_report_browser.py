"""The HTML report in a real headless browser (Debian's chromium): no console error, and
every chart is in the rendered page with data."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from bounded.stress.report import write_report
from tests.stress.test_report import sample_result

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (apt-get install chromium)"
)


def load(page: Path) -> tuple[str, list[str]]:
    """The DOM after load, and the console messages the page logged."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--enable-logging=stderr",
                "--v=0",
                "--dump-dom",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=True,
        )
    return proc.stdout, [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


def test_console_errors_are_seen(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>console.error('boom')</script></body></html>")
    _, console = load(page)
    assert any("boom" in line for line in console)


@pytest.mark.looptime(noop_cycles=1)
async def test_report_loads_without_console_errors_and_every_chart_has_data(
    tmp_path: Path,
) -> None:
    page = tmp_path / "report.html"
    write_report(await sample_result(), page)
    dom, console = load(page)
    assert console == []
    points = [int(n) for n in re.findall(r'<svg class="chart" data-points="(\d+)"', dom)]
    assert len(points) == 7
    assert all(n > 0 for n in points)
