"""Locust's side of `python -m bench stress_locust` (run by Locust in its own process).

FastHttpUser users post the same chat completion as the bounded runner, back to back (no
wait). The process's CPU time (psutil) is read when the test starts and when it stops, so
Locust's import and start-up cost is not charged to it; the figures are written as JSON to
the file named by ``BENCH_LOCUST_OUT``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
from locust import FastHttpUser, constant, events, task

BODY = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}

_start: dict[str, float] = {}


def _cpu_seconds() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


class MockProviderUser(FastHttpUser):
    """One virtual user posting chat completions as fast as the mock answers."""

    wait_time = constant(0)

    @task
    def chat(self) -> None:
        self.client.post("/v1/chat/completions", json=BODY)


def _on_start(environment: Any, **kwargs: Any) -> None:
    _start["cpu"] = _cpu_seconds()
    _start["wall"] = time.monotonic()
    _start["requests"] = environment.stats.total.num_requests


def _on_stop(environment: Any, **kwargs: Any) -> None:
    total = environment.stats.total
    figures = {
        "cpu_seconds": _cpu_seconds() - _start["cpu"],
        "wall_seconds": time.monotonic() - _start["wall"],
        "requests": total.num_requests - _start["requests"],
        "failures": total.num_failures,
    }
    Path(os.environ["BENCH_LOCUST_OUT"]).write_text(json.dumps(figures), encoding="utf-8")


events.test_start.add_listener(_on_start)  # type: ignore[no-untyped-call]
events.test_stop.add_listener(_on_stop)  # type: ignore[no-untyped-call]
