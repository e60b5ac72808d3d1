"""The manager opens and closes the declared database pools (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import pytest

from bounded.manager import ConcurrencyManager


async def test_declared_database_opened_watched_and_closed(postgres_dsn: str) -> None:
    manager = ConcurrencyManager.from_dict(
        {
            "databases": {"rag": {"dsn": "${RAG_DSN}", "min_size": 1, "max_size": 3}},
            "bulkheads": {"rag_queries": {"limit": 3, "database": "rag"}},
        },
        env={"RAG_DSN": postgres_dsn},
    )
    before = asyncio.all_tasks()
    async with manager:
        pool = manager.database("rag")
        assert pool is manager.database("rag")
        async with manager.bulkhead("rag_queries"), pool.connection() as conn:
            assert await conn.fetchval("select 41 + 1") == 42
            stats = {(s.kind, s.name): s for s in manager.monitor.snapshot()}
            assert stats[("database", "rag")].in_use == 1
            assert stats[("database", "rag")].limit == 3
            text = manager.metrics.generate().decode()
            assert 'bounded_pool_connections{name="rag",state="in_use"} 1.0' in text
            assert 'bounded_limit{kind="database",name="rag"} 3.0' in text
            assert 'bounded_acquired_total{kind="database",name="rag"} 1.0' in text
            assert 'bounded_wait_seconds_count{kind="database",name="rag"} 1.0' in text
            assert postgres_dsn not in text
            if shutil.which("promtool"):
                lint = subprocess.run(
                    ["promtool", "check", "metrics"],
                    input=text.encode(),
                    capture_output=True,
                    timeout=30,
                    check=False,
                )
                assert lint.returncode == 0, lint.stdout + lint.stderr
    with pytest.raises(RuntimeError, match="not open"):
        async with pool.connection():
            pass
    assert asyncio.all_tasks() == before


def test_bulkheads_beyond_database_capacity_rejected() -> None:
    from bounded.config import ConfigErrors

    with pytest.raises(ConfigErrors) as info:
        ConcurrencyManager.from_dict(
            {
                "databases": {"rag": {"dsn": "postgresql://u@127.0.0.1/x", "max_size": 4}},
                "bulkheads": {"a": {"limit": 3, "database": "rag"}, "b": {"database": "rag"}},
            },
            env={},
        )
    assert info.value.path == "databases.rag.max_size"


async def test_an_unreachable_database_names_its_key_and_pool_not_its_password() -> None:
    import socket

    from bounded.errors import ConfigError

    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    secret = "s3cr3t-pw"
    manager = ConcurrencyManager.from_dict(
        {
            "databases": {
                "rag": {"dsn": f"postgresql://app:{secret}@127.0.0.1:{port}/rag", "min_size": 1}
            }
        },
        env={},
    )
    with pytest.raises(ConfigError) as info:
        await manager.start()
    assert info.value.path == "databases.rag"
    text = str(info.value)
    assert "pool 'rag'" in text
    assert f"127.0.0.1:{port}" in text
    assert secret not in text
    assert not manager.running
