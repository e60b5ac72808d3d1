"""Request rate per CPU-second against Locust, and the reported p99 against a separate process.

1. The mock provider (``bounded mock-llm``, no added latency) runs in a child process.
   Each round drives it for 10 s with the bounded runner (closed model) sending with the
   HTTP target's default client (`bounded.stress.http.LoadClient`), then with
   ``--http-client httpx`` (`bounded.HttpClient`), then with Locust (``FastHttpUser``,
   ``--headless -u N -r N -t 10s --csv``, in its own process), all with the same number of
   users posting the same chat completion back to back. For each we count successful
   requests and the CPU time (user + system, psutil) of the load generator's process over
   the run only (Locust's start-up and imports are not charged: bench/stress_locustfile.py
   reads its CPU time at test start and stop). Requests per CPU-second is the figure that
   does not depend on how busy the shared machine is; requests per second of wall time is
   shown too. A fourth case, the runner with the same users against an in-process target
   that returns at once, shows what the runner itself costs per request.
2. The mock with 20 ms (+ up to 10 ms) latency, open model at 100 requests/s for 10 s, the
   requests passing through a timing relay in another process (bench/stress_relay.py):
   the runner's reported p99 against the relay's p99 of the same requests (first request
   byte in to last response byte out), and against ``time.perf_counter`` around each call
   inside the generator.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from bench._harness import Row, Section, Target
from bench.stress import BODY, mock_provider
from bounded.stress import constant, run_closed, run_open
from bounded.stress.targets import http_target

USERS = 20
SECONDS = 10
ROUNDS = 3
ALONE = 50_000  # requests of the runner-alone case
LOCUSTFILE = Path(__file__).with_name("stress_locustfile.py")
CHAT = "/v1/chat/completions"
P99_RATE, P99_SECONDS = 100, 10.0

LEAN = "bounded.stress.run_closed, lean client (default)"
HTTPX = "bounded.stress.run_closed, --http-client httpx (bounded.HttpClient)"
LOCUST = "Locust FastHttpUser (headless, own process)"
ALONE_NAME = "runner alone: run_closed, instant in-process target"


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


async def _bounded(url: str, client: str) -> Sample:
    async with http_target(
        url + CHAT, method="POST", json_body=BODY, max_connections=USERS, http_client=client
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


def _rate(samples: list[Sample]) -> float:
    return statistics.median(s.per_cpu_second for s in samples)


def _row(name: str, samples: list[Sample], reference: float | None) -> Row:
    per_cpu = _rate(samples)
    return Row(
        name,
        per_cpu,
        ratio=per_cpu / reference if reference else 1.0,
        extra={
            "CPU us/req": f"{1e6 / per_cpu:,.0f}",
            "req/s (wall)": f"{statistics.median(s.per_second for s in samples):,.0f}",
            "CPU s": " / ".join(f"{s.cpu_seconds:.1f}" for s in samples),
            "failed": f"{sum(s.failures for s in samples)}",
        },
    )


def _throughput() -> Section:
    runs: dict[str, list[Sample]] = {LEAN: [], HTTPX: [], LOCUST: [], ALONE_NAME: []}
    with mock_provider(latency=0.0, jitter=0.0) as url:
        for _ in range(ROUNDS):  # interleaved: lean, httpx, Locust, runner alone, ...
            runs[LEAN].append(asyncio.run(_bounded(url, "lean")))
            runs[HTTPX].append(asyncio.run(_bounded(url, "httpx")))
            runs[LOCUST].append(_locust(url))
            runs[ALONE_NAME].append(asyncio.run(_runner_alone()))
    locust, lean = _rate(runs[LOCUST]), _rate(runs[LEAN])
    return Section(
        title=(
            f"Mock provider over HTTP, {USERS} users back to back, {SECONDS} s per run: "
            "requests per CPU-second of the load generator"
        ),
        unit="requests / CPU-second",
        reference="Locust",
        rows=[
            _row(name, samples, None if name == LOCUST else locust)
            for name, samples in runs.items()
        ],
        columns=["CPU us/req", "req/s (wall)", "CPU s", "failed"],
        targets=[
            Target(
                "request rate per core at least Locust's (FastHttpUser, same target)",
                lean >= locust,
                f"{lean:,.0f} vs {locust:,.0f} requests per CPU-second ({lean / locust:.2f}x)",
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


@contextlib.contextmanager
def _relay(upstream: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """bench/stress_relay.py in a child process in front of `upstream`; yields its URL."""
    port = upstream.rsplit(":", 1)[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.stress_relay", port],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        found = re.match(r"port (\d+)", proc.stdout.readline())
        if found is None:
            raise RuntimeError("relay did not start")
        yield f"http://127.0.0.1:{found.group(1)}", proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


async def _p99_case(url: str, client: str, relay: subprocess.Popen[str]) -> dict[str, float]:
    inside: list[float] = []
    async with http_target(url + CHAT, method="POST", json_body=BODY, http_client=client) as t:

        async def timed(index: int, rng: random.Random) -> None:
            start = time.perf_counter()
            await t.call(index, rng)
            inside.append(time.perf_counter() - start)

        await run_open(timed, constant(P99_RATE, 1.0))  # warm-up: connections, imports
        assert relay.stdin is not None
        relay.stdin.write("reset\n")
        relay.stdin.flush()
        await asyncio.sleep(0.2)  # the relay reads it before the first measured request
        inside.clear()
        result = await run_open(timed, constant(P99_RATE, P99_SECONDS))
    return {
        "service": result.service_time["p99"],
        "latency": result.latency["p99"],
        "inside": _p99(inside),
        "count": len(inside),
        "failed": result.failed_total + result.lost,
    }


def _p99_section() -> Section:
    cases: dict[str, dict[str, float]] = {}
    relayed: dict[str, list[float]] = {}
    with mock_provider() as mock:
        for client in ("lean", "httpx"):
            with _relay(mock) as (url, proc):
                cases[client] = asyncio.run(_p99_case(url, client, proc))
                out, _ = proc.communicate(timeout=30)
                relayed[client] = [float(line) for line in out.split()]
    rows = []
    for client, figures in cases.items():
        outside = _p99(relayed[client])
        name = "lean client" if client == "lean" else "--http-client httpx"
        rows += [
            Row(
                f"{name}: runner's reported p99 (service time)",
                figures["service"] * 1000,
                ratio=figures["service"] / outside,
                extra={
                    "requests": f"{figures['count']:,.0f}",
                    "failed": f"{figures['failed']:.0f}",
                },
                note=f"from intended start {figures['latency'] * 1000:.2f} ms",
            ),
            Row(
                f"{name}: perf_counter around each call (in the generator)",
                figures["inside"] * 1000,
                ratio=figures["inside"] / outside,
            ),
            Row(
                f"{name}: timing relay, separate process",
                outside * 1000,
                ratio=1.0,
                extra={"requests": f"{len(relayed[client]):,}"},
            ),
        ]
    ours, theirs = cases["lean"]["service"], _p99(relayed["lean"])
    return Section(
        title=(
            f"Mock provider over HTTP (20 ms + up to 10 ms), {P99_RATE}/s for "
            f"{P99_SECONDS:.0f} s through a timing relay in another process"
        ),
        unit="p99 ms",
        reference="relay",
        rows=rows,
        columns=["requests", "failed"],
        value_format="{:.2f}",
        targets=[
            Target(
                "reported p99 matches an independent measurement within 5% (default client)",
                abs(ours / theirs - 1) <= 0.05,
                f"{ours * 1000:.2f} vs {theirs * 1000:.2f} ms ({ours / theirs - 1:+.1%})",
            )
        ],
        notes=[
            "relay: bench/stress_relay.py, its own process, times each request from its first "
            "byte in to the last response byte out; it does not see the generator's own time "
            "or the extra loopback hop, so the runner's figure may be a little higher.",
            "service time: from the call's actual start (the runner's p99 from the intended "
            "start adds its scheduling lateness, shown in the note).",
        ],
    )


def run() -> list[Section]:
    return [_throughput(), _p99_section()]
