"""Hot reload: live objects change in place; an invalid configuration changes nothing."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from bounded.breaker import CircuitBreaker
from bounded.manager import ConcurrencyManager

BASE: dict[str, Any] = {
    "bulkheads": {"llm": {"limit": 10}},
    "rate_limits": {"openai": {"rate": 60, "per": 60}},
    "breakers": {"llm": {"failure_rate": 0.5, "minimum_calls": 4, "window": 10}},
    "retries": {"llm": {"attempts": 3}},
    "policies": {"call": {"retry": "llm", "bulkhead": "llm", "timeout": 5}},
    "monitoring": {"interval": 1},
}


def with_changes(**changes: Any) -> dict[str, Any]:
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return data


async def fail(cb: CircuitBreaker) -> None:
    async def boom() -> None:
        raise RuntimeError("down")

    with pytest.raises(RuntimeError):
        await cb.call(boom)


async def test_reload_applies_limits_to_live_objects() -> None:
    manager = ConcurrencyManager.from_dict(BASE, env={})
    bulkhead, limiter, breaker = (
        manager.bulkhead("llm"),
        manager.rate_limiter("openai"),
        manager.breaker("llm"),
    )
    policy = manager.policy("call")
    for _ in range(2):
        await fail(breaker)
    calls_before = breaker.stats().calls
    ok = await manager.reload(
        with_changes(
            bulkheads__llm__limit=20,
            bulkheads__llm__max_wait=3,
            rate_limits__openai__rate=120,
            breakers__llm__failure_rate=0.9,
            breakers__llm__open_for=7,
            alert_threshold=0.9,
        )
    )
    assert ok
    assert manager.bulkhead("llm") is bulkhead
    assert (bulkhead.limit, bulkhead.max_wait) == (20, 3)
    assert limiter.rate == 120
    assert (breaker.failure_rate, breaker.open_for) == (0.9, 7)
    assert breaker.stats().calls == calls_before  # the window survived
    assert manager.monitor.alert_threshold == 0.9
    assert manager.policy("call") is policy  # nothing it depends on was replaced
    assert manager.reloads == 1


async def test_rate_limit_per_change_keeps_units() -> None:
    manager = ConcurrencyManager.from_dict(BASE, env={})
    limiter = manager.rate_limiter("openai")
    assert await manager.reload(with_changes(rate_limits__openai="2/s"))
    assert limiter.rate / limiter.per == pytest.approx(2.0)


async def test_retry_change_replaces_policy() -> None:
    manager = ConcurrencyManager.from_dict(BASE, env={})
    policy, retry = manager.policy("call"), manager.retry("llm")
    assert await manager.reload(with_changes(retries__llm__attempts=6))
    assert manager.retry("llm") is not retry
    assert manager.policy("call") is not policy
    assert manager.policy("call").retry is manager.retry("llm")
    assert manager.policy("call").bulkhead is manager.bulkhead("llm")


async def test_invalid_reload_keeps_running_configuration(
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager = ConcurrencyManager.from_dict(BASE, env={})
    bulkhead = manager.bulkhead("llm")
    config = manager.config
    with caplog.at_level(logging.ERROR, logger="bounded.manager"):
        ok = await manager.reload(
            with_changes(bulkheads__llm__limit=0, policies__call__bulkhead="nope")
        )
    assert not ok
    assert manager.config is config
    assert bulkhead.limit == 10
    assert manager.failed_reloads == 1
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "bulkheads.llm.limit: must be >= 1, got 0" in text
    assert "policies.call.bulkhead: no bulkhead named 'nope'" in text


async def test_new_names_created_and_removed_kept(caplog: pytest.LogCaptureFixture) -> None:
    manager = ConcurrencyManager.from_dict(BASE, env={})
    bulkhead = manager.bulkhead("llm")
    data = with_changes(bulkheads={"db": {"limit": 4}})
    data["policies"]["call"]["bulkhead"] = "db"
    with caplog.at_level(logging.INFO, logger="bounded.manager"):
        assert await manager.reload(data)
    assert ("bulkhead", "db") in {(s.kind, s.name) for s in manager.monitor.snapshot()}
    assert manager.bulkhead("llm") is bulkhead  # removed from the file: kept as it was
    assert bulkhead.limit == 10
    assert manager.policy("call").bulkhead is manager.bulkhead("db")
    assert "bulkheads.llm: removed from the configuration" in caplog.text


async def test_undeclared_names_follow_changed_defaults() -> None:
    manager = ConcurrencyManager.from_dict(BASE, env={})
    other = manager.bulkhead("other")
    assert other.limit == 10
    assert await manager.reload(with_changes(defaults={"bulkhead": {"limit": 3}}))
    assert other.limit == 3


@pytest.mark.looptime
async def test_hundred_calls_in_flight_while_reloading(tmp_path: Path) -> None:
    path = tmp_path / "bounded.yaml"
    path.write_text(yaml.safe_dump(BASE))
    manager = ConcurrencyManager.from_file(path, watch=False, env={})
    bulkhead = manager.bulkhead("llm")
    peak = 0

    async def work(i: int) -> int:
        nonlocal peak
        async with bulkhead:
            peak = max(peak, bulkhead.stats().in_use)
            await asyncio.sleep(1)
        return i

    async with manager:
        calls = [asyncio.create_task(work(i)) for i in range(100)]
        await asyncio.sleep(2.5)  # 20 done, 10 holding, 70 queued
        assert bulkhead.stats().queued == 70
        assert peak == 10
        path.write_text(yaml.safe_dump(with_changes(bulkheads__llm__limit=20)))
        assert await manager.reload()
        await asyncio.sleep(0)
        assert bulkhead.stats().in_use == 20  # the resize admitted waiters at once
        path.write_text("bulkheads:\n  llm: {limit: 0}\n")
        assert not await manager.reload()
        results = await asyncio.gather(*calls)
    assert results == list(range(100))
    assert bulkhead.limit == 20
    assert peak == 20


async def test_file_watch_applies_changes_with_calls_in_flight(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The real watcher (watchfiles, real time): a rewrite of the file reaches the bulkhead."""
    path = tmp_path / "bounded.yaml"
    path.write_text(yaml.safe_dump(BASE))
    manager = ConcurrencyManager.from_file(path, env={})
    bulkhead = manager.bulkhead("llm")
    peak = 0
    stop = asyncio.Event()

    async def worker() -> int:
        nonlocal peak
        done = 0
        while not stop.is_set():
            async with bulkhead:
                peak = max(peak, bulkhead.stats().in_use)
                await asyncio.sleep(0.01)
            done += 1
        return done

    async def wait_for(predicate: Any, seconds: float = 10.0) -> None:
        async with asyncio.timeout(seconds):
            while not predicate():
                await asyncio.sleep(0.02)

    before = asyncio.all_tasks()
    async with manager:
        workers = [asyncio.create_task(worker()) for _ in range(100)]
        await asyncio.sleep(0.3)  # let the watcher settle
        assert peak == 10
        path.write_text(yaml.safe_dump(with_changes(bulkheads__llm__limit=20)))
        await wait_for(lambda: bulkhead.limit == 20)
        await wait_for(lambda: peak == 20)
        with caplog.at_level(logging.ERROR, logger="bounded.manager"):
            path.write_text("bulkheads:\n  llm: {limit: 0}\n")
            await wait_for(lambda: manager.failed_reloads == 1)
        stop.set()
        done = await asyncio.gather(*workers)
    assert all(n > 0 for n in done)
    assert bulkhead.limit == 20
    assert peak == 20
    assert "bulkheads.llm.limit: must be >= 1, got 0" in caplog.text
    assert asyncio.all_tasks() - before == {asyncio.current_task()} - before


async def test_time_window_breaker_reload_keeps_window(caplog: pytest.LogCaptureFixture) -> None:
    data = with_changes(breakers__llm={"window_seconds": 30, "minimum_calls": 4})
    manager = ConcurrencyManager.from_dict(data, env={})
    breaker = manager.breaker("llm")
    await fail(breaker)
    with caplog.at_level(logging.WARNING, logger="bounded.manager"):
        assert await manager.reload(
            with_changes(breakers__llm={"window_seconds": 60, "minimum_calls": 8})
        )
    assert (breaker.window_seconds, breaker.minimum_calls) == (60, 8)
    assert breaker.stats().calls == 1
    assert caplog.text == ""


async def test_reload_opens_new_http_clients_while_running() -> None:
    async with ConcurrencyManager.from_dict(BASE, env={}) as manager:
        assert await manager.reload(
            with_changes(http_clients={"api": {"base_url": "http://127.0.0.1:1"}})
        )
        client = manager.http_client("api")
        assert not client.closed
    assert client.closed


async def test_file_watch_follows_a_configmap_style_symlink_swap(tmp_path: Path) -> None:
    """Kubernetes swaps a `..data` symlink; the file's own name never changes."""
    (tmp_path / "..v1").mkdir()
    (tmp_path / "..v1" / "bounded.yaml").write_text(yaml.safe_dump(BASE))
    (tmp_path / "..data").symlink_to("..v1")
    (tmp_path / "bounded.yaml").symlink_to("..data/bounded.yaml")
    manager = ConcurrencyManager.from_file(tmp_path / "bounded.yaml", env={})
    async with manager:
        await asyncio.sleep(0.3)
        (tmp_path / "unrelated.txt").write_text("x")
        await asyncio.sleep(0.6)
        assert manager.reloads == 0  # other files: read, unchanged, not applied
        (tmp_path / "..v2").mkdir()
        (tmp_path / "..v2" / "bounded.yaml").write_text(
            yaml.safe_dump(with_changes(bulkheads__llm__limit=20))
        )
        (tmp_path / "..data_tmp").symlink_to("..v2")
        (tmp_path / "..data_tmp").replace(tmp_path / "..data")
        async with asyncio.timeout(10):
            while manager.bulkhead("llm").limit != 20:
                await asyncio.sleep(0.02)
    assert manager.reloads == 1
