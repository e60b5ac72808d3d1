"""The stress runner itself: scheduling accuracy at 2,000 req/s and memory at 1M requests.

1. Open model, constant 2,000 scheduled requests/s for 10 s against an in-process target
   that returns at once, one process (one core): achieved rate, dropped, and the p99 of
   scheduling lateness (actual start - intended start). Side by side, the same schedule
   driven by a plain loop (``asyncio.sleep`` to each arrival, then ``create_task``) shows
   what the runner's accounting and histograms cost, and the runner on a ``select()``
   event loop shows what the default loop's millisecond timer resolution costs.
2. Memory: RSS after 10,000 requests and after 1,000,000 more, in the same process. The
   million runs as fast as possible in the closed model (``run_closed(iterations=...)``,
   50 users, no think time): no rate, so it takes seconds, not the 8 minutes 2,000/s would.
The HTTP checks (the runner's p99 against a timing relay in another process, requests per
CPU-second against Locust) are in bench/stress_locust.py, which uses `mock_provider` here.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import re
import secrets
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench._harness import Row, Section, Target
from bounded.stress import constant, run_closed, run_open
from bounded.stress.accounting import Latencies

RATE = 2000
SECONDS = 10.0
SMALL, LARGE = 10_000, 1_000_000


async def instant(index: int, rng: random.Random) -> None:
    return None


async def _plain_loop() -> dict[str, float]:
    """The same arrivals with no accounting: lateness percentiles (s) and achieved rate."""
    loop = asyncio.get_running_loop()
    lateness = Latencies()
    tasks: set[asyncio.Task[None]] = set()

    async def started(due: float, index: int) -> None:
        # Measured where the runner measures it: when the request's task starts running.
        lateness.record(loop.time() - due)
        await instant(index, random.Random(index))

    t0 = loop.time()
    n = 0
    for offset in constant(RATE, SECONDS).arrivals():
        due = t0 + offset
        now = loop.time()
        if due > now:
            await asyncio.sleep(due - now)
        task = loop.create_task(started(due, n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
    await asyncio.gather(*tasks)
    return {**lateness.percentiles(), "rate": n / (loop.time() - t0), "dropped": 0, "lost": 0}


async def _runner() -> dict[str, float]:
    r = await run_open(instant, constant(RATE, SECONDS), max_in_flight=1000)
    return {**r.lateness, "rate": r.scheduled / SECONDS, "dropped": r.dropped, "lost": r.lost}


def _select_loop() -> asyncio.AbstractEventLoop:
    # select() takes microsecond timeouts; epoll (the default) rounds them up to whole ms.
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


def _scheduling() -> Section:
    cases: dict[str, tuple[Callable[[], Coroutine[Any, Any, dict[str, float]]], bool]] = {
        "bounded.stress.run_open": (_runner, False),
        "plain loop: sleep to each arrival + create_task (no accounting)": (_plain_loop, False),
        "bounded.stress.run_open on a select() event loop": (_runner, True),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
    for _ in range(2):  # interleaved rounds
        for name, (case, select) in cases.items():
            with asyncio.Runner(loop_factory=_select_loop if select else None) as runner:
                runs[name].append(runner.run(case()))

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    plain = "plain loop: sleep to each arrival + create_task (no accounting)"
    rows = [
        Row(
            name,
            median(name, "p99") * 1000,
            ratio=median(name, "p99") / median(plain, "p99"),
            extra={
                "p50 ms": f"{median(name, 'p50') * 1000:.2f}",
                "rate /s": f"{median(name, 'rate'):,.0f}",
                "dropped": f"{max(r['dropped'] for r in runs[name]):.0f}",
                "lost": f"{max(r['lost'] for r in runs[name]):.0f}",
            },
        )
        for name in cases
    ]
    ours = "bounded.stress.run_open"
    lat, rate = median(ours, "p99"), median(ours, "rate")
    dropped = max(r["dropped"] for r in runs[ours])
    return Section(
        title=f"Open model at {RATE:,} scheduled requests/s for {SECONDS:.0f} s, instant target",
        unit="p99 scheduling lateness, ms",
        reference="plain loop",
        rows=rows,
        columns=["p50 ms", "rate /s", "dropped", "lost"],
        value_format="{:.2f}",
        targets=[
            Target(
                f"sustains {RATE:,} scheduled requests/s on one core with p99 lateness <= 2 ms",
                lat <= 0.002 and dropped == 0 and rate >= RATE * 0.99,
                f"p99 lateness {lat * 1000:.2f} ms, {rate:,.0f}/s scheduled, "
                f"{dropped:.0f} dropped; bare loop {median(plain, 'p99') * 1000:.2f} ms",
            )
        ],
        notes=[
            "median of 2 interleaved rounds each; lateness = actual start - intended start.",
            "one process, one event loop (so one core); the machine is shared with other jobs.",
            "the default loop waits in epoll, whose timeout is whole milliseconds (a 0.5 ms "
            "sleep lasts >= 1 ms): that sets the p50; select() waits to the microsecond.",
        ],
    )


def _rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


async def _memory() -> Section:
    await run_closed(instant, users=50, iterations=SMALL)
    after_small = _rss()
    big = await run_closed(instant, users=50, iterations=LARGE)
    after_large = _rss()
    growth = (after_large - after_small) / 2**20
    rows = [
        Row(f"after {SMALL:,} requests", after_small / 2**20),
        Row(
            f"after {LARGE:,} more",
            after_large / 2**20,
            extra={"rate /s": f"{big.succeeded / big.elapsed:,.0f}"},
            note=f"{big.elapsed:.1f} s, lost {big.lost}",
        ),
    ]
    return Section(
        title="Runner memory: RSS after 10,000 and after 1,000,000 requests",
        unit="RSS MiB",
        reference=None,
        rows=rows,
        columns=["rate /s"],
        value_format="{:,.1f}",
        targets=[
            Target(
                "memory after 1,000,000 requests within 20 MiB of memory after 10,000",
                growth <= 20,
                f"{growth:+.1f} MiB",
            )
        ],
        notes=[
            "closed model, 50 users, no think time, no rate (as fast as possible), same process.",
        ],
    )


BODY = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


@contextlib.contextmanager
def mock_provider(latency: float = 0.02, jitter: float = 0.01) -> Iterator[str]:
    """`bounded mock-llm` in a child process on a free loopback port; yields its base URL.

    The mock picks the port itself (``--port 0``) and announces its URL on its first line.
    """
    with tempfile.TemporaryFile("w+", encoding="utf-8") as out:
        cmd = [sys.executable, "-m", "bounded", "mock-llm", "--port", "0", "--log-level", "warning"]
        proc = subprocess.Popen(
            [*cmd, "--latency", str(latency), "--jitter", str(jitter)],
            stdout=out,
            stderr=subprocess.DEVNULL,
            # Admin endpoints are not used here; a token keeps the mock from printing one.
            env={**os.environ, "BOUNDED_MOCK_ADMIN_TOKEN": secrets.token_urlsafe(16)},
        )
        try:
            deadline = time.monotonic() + 30
            while (found := re.search(r"on (http://\S+)", out.read())) is None:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("mock provider did not start")
                time.sleep(0.05)
                out.seek(0)
            yield found.group(1)
        finally:
            proc.terminate()
            proc.wait(10)


def run() -> list[Section]:
    return [_scheduling(), asyncio.run(_memory())]
