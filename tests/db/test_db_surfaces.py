"""Pool stats reach the monitor and Prometheus, and no surface shows the DSN's password."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bounded.db import DatabasePool
from bounded.errors import PoolExhausted

SECRET = "Hunter2-metrics"


def _with_password(dsn: str) -> str:
    scheme, _, tail = dsn.partition("://")
    userinfo, at, rest = tail.rpartition("@")
    if not at:
        return f"{scheme}://postgres:{SECRET}@{tail}"
    return f"{scheme}://{userinfo.partition(':')[0] or 'postgres'}:{SECRET}@{rest}"


def _wait_count(exposition: str) -> float:
    for line in exposition.splitlines():
        if line.startswith('bounded_wait_seconds_count{kind="database",name="rag"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_monitor_and_metrics_see_the_pool_without_its_password(
    postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    if "://" not in postgres_dsn:
        pytest.skip("needs a URL DSN")
    from bounded.metrics import Metrics
    from bounded.monitor import ConcurrencyMonitor

    caplog.set_level(logging.DEBUG)
    monitor = ConcurrencyMonitor()
    metrics = Metrics(monitor)
    pool = DatabasePool(
        _with_password(postgres_dsn), name="rag", min_size=2, max_size=2, acquire_timeout=0.2
    )
    monitor.register("database", "rag", pool)
    pool.wait_observer = metrics.observer("database", "rag")
    async with pool:
        async with pool.connection(), pool.connection():
            with pytest.raises(PoolExhausted):
                await pool.fetchval("select 1")
            snapshot = {(s.kind, s.name): s for s in monitor.snapshot()}
            stats = snapshot[("database", "rag")]
            assert stats.in_use == 2
            assert stats.limit == 2
            assert stats.utilization == 1.0
            assert stats.rejected_total == 1
            exposition = metrics.generate().decode()
            waiter = asyncio.create_task(pool.fetchval("select 1"))
            await asyncio.sleep(0.02)
        assert await waiter == 1
        after = metrics.generate().decode()
    assert 'bounded_pool_connections{name="rag",state="in_use"} 2.0' in exposition
    assert 'bounded_in_use{kind="database",name="rag"} 2.0' in exposition
    # a waiter that got a connection is one more observation in the wait histogram
    assert _wait_count(after) == _wait_count(exposition) + 1
    for text in (exposition, after, caplog.text, repr(monitor.snapshot())):
        assert SECRET not in text


def test_config_show_masks_the_dsn_password(tmp_path: Path) -> None:
    from bounded.cli import app

    config = tmp_path / "bounded.yaml"
    config.write_text(
        "databases:\n"
        "  rag:\n"
        f"    dsn: postgresql://app:{SECRET}@db.example.com:5432/rag\n"
        "    max_size: 10\n",
        encoding="utf-8",
    )
    for fmt in ("yaml", "json"):
        result = CliRunner().invoke(app, ["config", "show", str(config), "--format", fmt])
        assert result.exit_code == 0, result.output
        assert "db.example.com" in result.output
        assert SECRET not in result.output
