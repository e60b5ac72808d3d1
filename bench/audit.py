"""`bounded audit` speed: lines per second on one core, next to flake8-async and ruff ASYNC.

The tree is real installed code: the asyncio standard library plus the async stack in the
venv (httpx, httpcore, anyio, starlette, uvicorn, asyncpg, redis, pydantic, rich, click,
typer), about 250,000 lines. Everything runs in this one process, so on one core:
`bounded.audit.audit()` reads, parses and checks every file (directory walk and excludes
included). flake8-async (standalone, `--asyncio`, the same checks as `flake8-async`'s
command) needs libcst and runs at a few hundred lines per second here, so it is timed on a
deterministic sample of the same tree (every k-th file, about 6,000 lines) and bounded is
timed on that same sample too: the ratio compares like with like. Set
``BENCH_AUDIT_FULL=1`` to run flake8-async on the whole tree (several minutes). ruff's
ASYNC rules (``ruff check --select ASYNC``, the ruff in the venv, one thread) run on the
whole tree as a child process; its CPU time is the child's user + system time.

Times are CPU seconds of this process (`time.process_time`), medians over rounds.
Run alone with ``python -m bench.audit``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from argparse import ArgumentParser
from collections.abc import Callable
from pathlib import Path

from bench._harness import Row, Section, Target
from bounded.audit import audit, check_source

TARGET_LINES_PER_SECOND = 50_000
SAMPLE_LINES = 6_000
ROUNDS = 3
_PACKAGES = (
    "httpx",
    "httpcore",
    "anyio",
    "starlette",
    "uvicorn",
    "asyncpg",
    "redis",
    "pydantic",
    "rich",
    "click",
    "typer",
)


def tree() -> list[Path]:
    """The directories benchmarked: stdlib asyncio and the installed async stack."""
    roots = [Path(asyncio.__file__).parent]
    for name in _PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            roots.append(Path(next(iter(spec.submodule_search_locations))))
    return roots


def _files(roots: list[Path]) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _lines(files: list[Path]) -> int:
    return sum(p.read_bytes().count(b"\n") for p in files)


def _sample(files: list[Path], lines: int) -> list[Path]:
    """Every k-th file (stable), spread over the whole tree, until about `lines` lines."""
    sizes = {p: p.read_bytes().count(b"\n") for p in files}
    step = max(1, round(sum(sizes.values()) / lines))
    chosen: list[Path] = []
    count = 0
    for offset in range(step):
        for p in files[offset::step]:
            chosen.append(p)
            count += sizes[p]
            if count >= lines:
                return sorted(chosen)
    return sorted(chosen)


def _cpu(fn: Callable[[], int], rounds: int) -> tuple[float, int]:
    """Median CPU seconds of `fn` over `rounds`, and what it returned."""
    times = []
    result = 0
    for _ in range(rounds):
        t0 = time.process_time()
        result = fn()
        times.append(time.process_time() - t0)
    return statistics.median(times), result


def _flake8_async_runner() -> Callable[[list[Path]], int] | None:
    try:
        from flake8_async import Plugin
    except ImportError:
        return None
    parser = ArgumentParser()
    Plugin.add_options(parser)
    Plugin.parse_options(parser.parse_args(["--asyncio"]))

    def run(files: list[Path]) -> int:
        found = 0
        for path in files:
            source = path.read_text(encoding="utf-8")
            try:
                found += len(list(Plugin.from_source(source, filename=str(path)).run()))
            except SyntaxError:
                continue
        return found

    return run


def _ruff_async(roots: list[Path]) -> tuple[float, int] | None:
    """CPU seconds and findings of ``ruff check --select ASYNC`` on `roots` (one thread)."""
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        return None
    cmd = [ruff, "check", "--isolated", "--no-cache", "--select", "ASYNC", "--exit-zero"]
    cmd += ["--output-format", "concise", *map(str, roots)]
    env = {**os.environ, "RAYON_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, sum(1 for line in out.splitlines() if ": ASYNC" in line)


def _bounded_files(files: list[Path]) -> int:
    return sum(len(check_source(p.read_bytes(), str(p))) for p in files)


def run() -> list[Section]:
    """The audit speed benchmark (see the module docstring)."""
    roots = tree()
    files = _files(roots)
    total_lines = _lines(files)
    audit([roots[0]], use_config=False)  # warm up imports and caches

    whole_s, whole_findings = _cpu(lambda: len(audit(roots, use_config=False).findings), ROUNDS)
    sample = _sample(files, SAMPLE_LINES)
    sample_lines = _lines(sample)
    bounded_s, bounded_found = _cpu(lambda: _bounded_files(sample), ROUNDS)

    flake8 = _flake8_async_runner()
    rows: list[Row] = []
    full = os.environ.get("BENCH_AUDIT_FULL") == "1"
    flake8_rate: float | None = None
    flake8_whole: float | None = None
    if flake8 is not None:
        flake8_s, flake8_found = _cpu(lambda: flake8(sample), 1)
        flake8_rate = sample_lines / flake8_s
        if full:
            whole_flake8_s, _ = _cpu(lambda: flake8(files), 1)
            flake8_whole = total_lines / whole_flake8_s
    bounded_rate = sample_lines / bounded_s
    whole_rate = total_lines / whole_s
    rows.append(
        Row(
            "bounded audit, whole tree",
            whole_rate,
            extra={
                "files": f"{len(files):,}",
                "lines": f"{total_lines:,}",
                "CPU s": f"{whole_s:.2f}",
                "findings": str(whole_findings),
            },
        )
    )
    rows.append(
        Row(
            "bounded audit, sample",
            bounded_rate,
            bounded_rate / flake8_rate if flake8_rate else None,
            extra={
                "files": f"{len(sample):,}",
                "lines": f"{sample_lines:,}",
                "CPU s": f"{bounded_s:.3f}",
                "findings": str(bounded_found),
            },
        )
    )
    if flake8 is not None and flake8_rate is not None:
        rows.append(
            Row(
                "flake8-async --asyncio, sample",
                flake8_rate,
                1.0,
                extra={
                    "files": f"{len(sample):,}",
                    "lines": f"{sample_lines:,}",
                    "CPU s": f"{sample_lines / flake8_rate:.2f}",
                    "findings": str(flake8_found),
                },
            )
        )
        if flake8_whole is not None:
            rows.append(
                Row(
                    "flake8-async --asyncio, whole tree",
                    flake8_whole,
                    extra={"files": f"{len(files):,}", "lines": f"{total_lines:,}"},
                )
            )
    else:
        rows.append(Row("flake8-async", None, note="not installed"))
    ruff = _ruff_async(roots)
    if ruff is not None:
        ruff_s, ruff_found = ruff
        rows.append(
            Row(
                "ruff --select ASYNC (one thread), whole tree",
                total_lines / ruff_s,
                extra={
                    "files": f"{len(files):,}",
                    "lines": f"{total_lines:,}",
                    "CPU s": f"{ruff_s:.2f}",
                    "findings": str(ruff_found),
                },
            )
        )
    else:
        rows.append(Row("ruff --select ASYNC", None, note="not installed"))
    speedup = bounded_rate / flake8_rate if flake8_rate else None
    return [
        Section(
            title="bounded audit: lines per second on one core",
            unit="lines/s",
            reference="flake8-async --asyncio, sample" if flake8_rate else None,
            rows=rows,
            columns=["files", "lines", "CPU s", "findings"],
            targets=[
                Target(
                    f"bounded audit >= {TARGET_LINES_PER_SECOND:,} lines/s on one core "
                    "(whole tree)",
                    whole_rate >= TARGET_LINES_PER_SECOND,
                    f"{whole_rate:,.0f} lines/s",
                )
            ],
            notes=[
                "CPU seconds of one process (single core), median of "
                f"{ROUNDS} rounds for bounded, 1 for flake8-async; whole tree: stdlib asyncio "
                f"+ {', '.join(_PACKAGES)} (Python {sys.version.split()[0]}).",
                "Findings differ by design: flake8-async and ruff's ASYNC rules check "
                "trio/anyio/asyncio cancellation and blocking-call rules (ASYNC1xx-9xx); "
                "bounded audit checks the FM-043 patterns (BND001-BND009; BND010-BND015 are "
                "off by default). ruff is compiled Rust: it is the speed a linter can reach, "
                "not a peer of a pure-Python checker."
                + (f" bounded is {speedup:,.0f}x faster on the same files." if speedup else ""),
            ],
        )
    ]


if __name__ == "__main__":
    from rich.console import Console

    from bench._harness import print_section

    console = Console()
    for section in run():
        print_section(console, section)
