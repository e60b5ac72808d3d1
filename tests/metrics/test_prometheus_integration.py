"""A real Prometheus server on loopback scrapes a running manager's /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
import yaml

from bounded.data import data_text
from bounded.manager import ConcurrencyManager

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus server not installed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def prometheus(tmp_path: Path, target: str) -> AsyncIterator[str]:
    assert PROMETHEUS is not None
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: bounded\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    process = await asyncio.create_subprocess_exec(
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


def shipped_expressions() -> list[str]:
    dashboard = json.loads(data_text("grafana-dashboard.json"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load(data_text("alert-rules.yml"))
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return [e.replace("$__rate_interval", "1m").replace("$instance", ".*") for e in exprs]


async def query(client: httpx2.AsyncClient, base: str, expr: str) -> float | None:
    try:
        response = await client.get(f"{base}/api/v1/query", params={"query": expr})
    except httpx2.TransportError:
        return None  # not listening yet
    if response.status_code != 200:
        return None
    result = response.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


async def wait_value(client: httpx2.AsyncClient, base: str, expr: str, want: float) -> float:
    seen: float | None = None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(20):
            while seen != want:
                seen = await query(client, base, expr)
                if seen != want:
                    await asyncio.sleep(0.25)
    return -1.0 if seen is None else seen


async def test_prometheus_scrapes_the_manager(tmp_path: Path) -> None:
    manager = ConcurrencyManager.from_dict(
        {
            "bulkheads": {"llm": {"limit": 7}},
            "breakers": {"llm": {}},
            "monitoring": {"prometheus": {"host": "127.0.0.1", "port": 0}},
        },
        env={},
    )
    async with manager, httpx2.AsyncClient(timeout=5) as client:
        assert manager.metrics_url is not None
        target = manager.metrics_url.removeprefix("http://").removesuffix("/metrics")
        async with prometheus(tmp_path, target) as base:
            bulkhead = manager.bulkhead("llm")
            assert bulkhead.try_acquire()
            expr = 'bounded_limit{kind="bulkhead",name="llm"}'
            assert await wait_value(client, base, expr, bulkhead.limit) == 7
            in_use = 'bounded_in_use{kind="bulkhead",name="llm"}'
            assert await wait_value(client, base, in_use, bulkhead.stats().in_use) == 1
            closed = 'bounded_breaker_state{name="llm",state="closed"}'
            assert await wait_value(client, base, closed, 1) == 1
            # A live change is what Prometheus sees next.
            assert await manager.reload(
                {
                    "bulkheads": {"llm": {"limit": 13}},
                    "breakers": {"llm": {}},
                    "monitoring": {"prometheus": {"host": "127.0.0.1", "port": 0}},
                }
            )
            assert await wait_value(client, base, expr, manager.bulkhead("llm").limit) == 13
            up = f'up{{job="bounded",instance="{target}"}}'
            assert await wait_value(client, base, up, 1) == 1
            bulkhead.release()
            # Every dashboard query and alert expression is valid PromQL for this server.
            for expr in shipped_expressions():
                response = await client.get(f"{base}/api/v1/query", params={"query": expr})
                assert response.status_code == 200, (expr, response.text)
                assert response.json()["status"] == "success"
            dashboard_util = 'bounded_utilization_ratio{instance=~".*", kind!="breaker"}'
            assert await wait_value(client, base, dashboard_util, 0.0) == 0.0
