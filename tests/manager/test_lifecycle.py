"""ConcurrencyManager lifecycle: start/close order, no task left behind, metrics endpoint."""

from __future__ import annotations

import asyncio
import logging

import httpx2
import pytest

from bounded.errors import ConfigError
from bounded.manager import ConcurrencyManager
from bounded.monitor import Alert


async def test_async_with_leaves_no_task_behind() -> None:
    before = asyncio.all_tasks()
    manager = ConcurrencyManager.from_dict(
        {
            "bulkheads": {"llm": {"limit": 2}},
            "monitoring": {"interval": 0.01, "prometheus": {"host": "127.0.0.1", "port": 0}},
            "http_clients": {"api": {"base_url": "http://127.0.0.1:1"}},
        },
        env={},
    )
    async with manager:
        assert manager.running
        assert len(asyncio.all_tasks()) > len(before)  # the monitor runs
        async with httpx2.AsyncClient() as client:
            assert manager.metrics_url is not None
            response = await client.get(manager.metrics_url)
        assert 'bounded_limit{kind="bulkhead",name="llm"} 2.0' in response.text
        async with manager.bulkhead("llm"):
            await asyncio.sleep(0.03)
    assert not manager.running
    assert manager.metrics_url is None
    assert manager.http_client("api").closed
    assert asyncio.all_tasks() == before
    await manager.close()  # closing twice is harmless
    assert asyncio.all_tasks() == before


async def test_close_without_start_and_no_restart() -> None:
    manager = ConcurrencyManager.from_dict({}, env={})
    await manager.close()
    await manager.close()
    with pytest.raises(RuntimeError):
        await manager.start()


async def test_failed_start_cleans_up() -> None:
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    before = asyncio.all_tasks()
    manager = ConcurrencyManager.from_dict(
        {"monitoring": {"prometheus": {"host": "127.0.0.1", "port": port}}}, env={}
    )
    try:
        with pytest.raises(ConfigError, match="address already in use") as info:
            await manager.start()
    finally:
        blocker.close()
        await blocker.wait_closed()
    assert info.value.path == "monitoring.prometheus.port"
    assert f"cannot serve metrics on 127.0.0.1:{port}" in str(info.value)
    assert asyncio.all_tasks() == before
    assert not manager.running


@pytest.mark.looptime
async def test_monitor_alerts_through_the_manager(caplog: pytest.LogCaptureFixture) -> None:
    manager = ConcurrencyManager.from_dict(
        {"bulkheads": {"llm": {"limit": 5}}, "monitoring": {"interval": 1}, "alert_threshold": 0.8},
        env={},
    )
    alerts: list[Alert] = []
    manager.monitor.on_alert(alerts.append)

    async def hold() -> None:
        async with manager.bulkhead("llm"):
            await asyncio.sleep(10)

    with caplog.at_level(logging.WARNING, logger="bounded.monitor"):
        async with manager:
            await asyncio.gather(*(hold() for _ in range(4)))
            await asyncio.sleep(2)
    assert [(a.resource, a.state) for a in alerts] == [("llm", "firing"), ("llm", "resolved")]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


@pytest.mark.looptime
async def test_manager_tasks_are_its_own_and_stop_with_it() -> None:
    manager = ConcurrencyManager.from_dict({"monitoring": {"enabled": False}}, env={})
    assert manager.tasks is manager.tasks
    ticks: list[float] = []

    async def heartbeat() -> None:
        while True:
            ticks.append(asyncio.get_running_loop().time())
            await asyncio.sleep(1)

    async with manager:
        task = manager.tasks.spawn(heartbeat(), name="heartbeat")
        await asyncio.sleep(2.5)
    assert task.cancelled()
    assert len(ticks) == 3
    assert manager.tasks.closed
    with pytest.raises(RuntimeError, match="shut down"):
        manager.tasks.spawn(heartbeat())
