"""Request rate per CPU-second: the bounded stress runner against Locust, same mock, same machine.

The mock provider (``bounded mock-llm``, no added latency) runs in a child process. Each
round drives it for 10 s, first with the bounded runner (closed model, the CLI's own HTTP
target: `bounded.HttpClient`), then with Locust (``FastHttpUser``, ``--headless -u N -r N -t
10s --csv``, in its own process), both with the same number of users posting the same chat
completion back to back. For each we count successful requests and the CPU time (user +
system, psutil) of the load generator's process over the run only (Locust's start-up and
imports are not charged: bench/stress_locustfile.py reads its CPU time at test start and
stop). Requests per CPU-second is the figure that does not depend on how busy the shared
machine is; requests per second of wall time is shown too. A third case, the runner with
the same users against an in-process target that returns at once, shows what the runner
itself costs per request, apart from the HTTP client.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from bench._harness import Row, Section, Target
from bench.stress import BODY, mock_provider
from bounded.stress import run_closed
from bounded.stress.targets import http_target

USERS = 20
SECONDS = 10
ROUNDS = 2
ALONE = 50_000  # requests of the runner-alone case
LOCUSTFILE = Path(__file__).with_name("stress_locustfile.py")


@dataclass
class Sample:
    requests: int
    failures: int
    cpu_seconds: float
    wall_seconds: float

    @property
    def per_cpu_second(self) -> float:
        return self.requests / self.cpu_seconds

    @property
    def per_second(self) -> float:
        return self.requests / self.wall_seconds


def _cpu_seconds() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


async def _instant(index: int, rng: object) -> None:
    return None


async def _runner_alone() -> Sample:
    cpu = _cpu_seconds()
    result = await run_closed(_instant, users=USERS, iterations=ALONE)
    cpu = _cpu_seconds() - cpu
    return Sample(result.succeeded, result.failed_total + result.lost, cpu, result.elapsed)


async def _bounded(url: str) -> Sample:
    async with http_target(
        url + "/v1/chat/completions", method="POST", json_body=BODY, max_connections=USERS
    ) as target:
        cpu = _cpu_seconds()
        result = await run_closed(target.call, users=USERS, duration=SECONDS)
        cpu = _cpu_seconds() - cpu
    return Sample(result.succeeded, result.failed_total + result.lost, cpu, result.elapsed)


def _locust(url: str) -> Sample:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "cpu.json")
        cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"]
        cmd += ["-u", str(USERS), "-r", str(USERS), "-t", f"{SECONDS}s", "--host", url]
        cmd += ["--csv", str(Path(tmp, "run")), "--only-summary", "--loglevel", "WARNING"]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=SECONDS + 60,
            env={**os.environ, "BENCH_LOCUST_OUT": str(out)},
        )
        if not out.exists():
            raise RuntimeError(f"locust failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        figures = json.loads(out.read_text(encoding="utf-8"))
        with Path(tmp, "run_stats.csv").open(encoding="utf-8") as f:
            total = next(row for row in csv.DictReader(f) if row["Name"] == "Aggregated")
    failures = int(total["Failure Count"])
    return Sample(
        requests=int(total["Request Count"]) - failures,
        failures=failures,
        cpu_seconds=figures["cpu_seconds"],
        wall_seconds=figures["wall_seconds"],
    )


def _row(name: str, samples: list[Sample], reference: float | None) -> Row:
    per_cpu = statistics.median(s.per_cpu_second for s in samples)
    return Row(
        name,
        per_cpu,
        ratio=per_cpu / reference if reference else 1.0,
        extra={
            "req/s (wall)": f"{statistics.median(s.per_second for s in samples):,.0f}",
            "CPU s": " / ".join(f"{s.cpu_seconds:.1f}" for s in samples),
            "failed": f"{sum(s.failures for s in samples)}",
        },
    )


def run() -> list[Section]:
    ours: list[Sample] = []
    locust: list[Sample] = []
    alone: list[Sample] = []
    with mock_provider(latency=0.0, jitter=0.0) as url:
        for _ in range(ROUNDS):  # interleaved: bounded, Locust, runner alone, ...
            ours.append(asyncio.run(_bounded(url)))
            locust.append(_locust(url))
            alone.append(asyncio.run(_runner_alone()))
    locust_rate = statistics.median(s.per_cpu_second for s in locust)
    ours_rate = statistics.median(s.per_cpu_second for s in ours)
    return [
        Section(
            title=(
                f"Mock provider over HTTP, {USERS} users back to back, {SECONDS} s per run: "
                "requests per CPU-second of the load generator"
            ),
            unit="requests / CPU-second",
            reference="Locust",
            rows=[
                _row("bounded.stress.run_closed (bounded.HttpClient)", ours, locust_rate),
                _row("Locust FastHttpUser (headless, own process)", locust, None),
                _row("runner alone: run_closed, instant in-process target", alone, locust_rate),
            ],
            columns=["req/s (wall)", "CPU s", "failed"],
            targets=[
                Target(
                    "request rate per core at least Locust's (FastHttpUser, same target)",
                    ours_rate >= locust_rate,
                    f"{ours_rate:,.0f} vs {locust_rate:,.0f} requests per CPU-second "
                    f"({ours_rate / locust_rate:.2f}x)",
                )
            ],
            notes=[
                f"median of {ROUNDS} interleaved runs each; the mock (no added latency) runs in a "
                "child process on the same 2 shared cores, so wall-clock rates are bounded by it.",
                "CPU time: the generator process's user + system time over the run only.",
                "runner alone: the same users against an in-process target that returns at once "
                "(no HTTP), what the runner itself costs; the rest of a request's CPU is the "
                "HTTP client's.",
            ],
        )
    ]
