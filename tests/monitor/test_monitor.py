"""ConcurrencyMonitor: snapshots, alerts with hysteresis, callbacks, the periodic loop."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import pytest

from bounded.breaker import CircuitBreaker
from bounded.bulkhead import Bulkhead
from bounded.monitor import Alert, ConcurrencyMonitor, ResourceStats, describe, resource_stats
from bounded.ratelimit import RateLimiter


@dataclass
class _Stats:
    name: str
    in_use: int
    limit: int
    utilization: float
    queued: int = 0
    rejected_total: int = 0


class Gauge:
    """A resource whose use the test sets directly."""

    def __init__(self, name: str, limit: int = 100) -> None:
        self.name = name
        self.limit = limit
        self.in_use = 0

    def stats(self) -> _Stats:
        return _Stats(self.name, self.in_use, self.limit, self.in_use / self.limit)


def test_snapshot_of_a_bulkhead() -> None:
    monitor = ConcurrencyMonitor()
    bulkhead = Bulkhead(4, name="llm")
    assert bulkhead.try_acquire()
    assert bulkhead.try_acquire()
    monitor.register("bulkhead", "llm", bulkhead)
    (stats,) = monitor.snapshot()
    assert stats == ResourceStats("bulkhead", "llm", 2, 4, 0.5, 0, 0, None)


def test_register_requires_stats() -> None:
    with pytest.raises(TypeError):
        ConcurrencyMonitor().register("bulkhead", "x", object())


@pytest.mark.parametrize(("name", "value"), [("interval", 0), ("alert_threshold", 1.5)])
def test_arguments_validated(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=name):
        ConcurrencyMonitor(**{name: value})


def test_fires_once_and_resolves_below_threshold_minus_hysteresis(
    caplog: pytest.LogCaptureFixture,
) -> None:
    monitor = ConcurrencyMonitor(alert_threshold=0.8)
    gauge = Gauge("llm")
    monitor.register("bulkhead", "llm", gauge)
    seen: list[Alert] = []
    monitor.on_alert(seen.append)
    with caplog.at_level(logging.INFO, logger="bounded.monitor"):
        for in_use in (50, 79, 80, 90, 77, 76, 81, 75, 74, 85):
            gauge.in_use = in_use
            monitor.check()
    assert [(a.state, a.utilization) for a in seen] == [
        ("firing", 0.8),
        ("resolved", 0.74),
        ("firing", 0.85),
    ]
    assert seen[0] == Alert("llm", "bulkhead", 0.8, 0.8, "firing")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert warnings[0].getMessage() == (
        "bulkhead llm: 80 of 100 slots in use, 0 queued (alert at 80%)"
    )
    assert seen[0].message == "bulkhead llm: 80 of 100 slots in use, 0 queued"
    assert monitor.firing == [("bulkhead", "llm")]


@pytest.mark.looptime
async def test_oscillating_around_threshold_fires_once_on_virtual_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A resource oscillating between 78% and 82% every 0.5 s for a minute alerts once."""
    monitor = ConcurrencyMonitor(interval=1.0, alert_threshold=0.8)
    gauge = Gauge("llm")
    monitor.register("bulkhead", "llm", gauge)
    seen: list[Alert] = []
    monitor.on_alert(seen.append)

    async def oscillate() -> None:
        for i in range(120):
            gauge.in_use = 82 if i % 2 else 78
            await asyncio.sleep(0.5)
        gauge.in_use = 10

    loop = asyncio.get_running_loop()
    start = loop.time()
    with caplog.at_level(logging.WARNING, logger="bounded.monitor"):
        async with monitor:
            await oscillate()
            await asyncio.sleep(1.5)
    assert loop.time() - start == pytest.approx(61.5)
    assert [a.state for a in seen] == ["firing", "resolved"]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


@pytest.mark.looptime
async def test_real_bulkhead_alert_from_the_loop() -> None:
    monitor = ConcurrencyMonitor(interval=0.25, alert_threshold=0.8)
    bulkhead = Bulkhead(5, name="db")
    monitor.register("bulkhead", "db", bulkhead)
    fired = asyncio.Event()
    alerts: list[Alert] = []

    def on_alert(alert: Alert) -> None:
        alerts.append(alert)
        fired.set()

    monitor.on_alert(on_alert)

    async def hold() -> None:
        async with bulkhead:
            await asyncio.sleep(2)

    async with monitor:
        holders = [asyncio.create_task(hold()) for _ in range(4)]
        await asyncio.wait_for(fired.wait(), 1)
        await asyncio.gather(*holders)
        await asyncio.sleep(0.5)
    assert [(a.resource, a.state) for a in alerts] == [("db", "firing"), ("db", "resolved")]
    assert alerts[0].utilization == 0.8
    assert alerts[1].utilization < 0.75


async def test_callback_errors_are_logged_and_async_callbacks_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    monitor = ConcurrencyMonitor()
    gauge = Gauge("x")
    monitor.register("bulkhead", "x", gauge)
    got: list[str] = []

    def broken(alert: Alert) -> None:
        raise RuntimeError("boom")

    async def slow(alert: Alert) -> None:
        await asyncio.sleep(0)
        got.append(alert.state)

    monitor.on_alert(broken)
    monitor.on_alert(slow)
    gauge.in_use = 100
    with caplog.at_level(logging.ERROR, logger="bounded.monitor"):
        assert len(monitor.check()) == 1
    await asyncio.sleep(0.01)
    assert got == ["firing"]
    assert any("alert callback" in r.getMessage() for r in caplog.records)


async def test_loop_survives_a_failing_stats() -> None:
    class Broken:
        def stats(self) -> None:
            raise RuntimeError("nope")

    monitor = ConcurrencyMonitor(interval=0.01)
    monitor.register("bulkhead", "broken", Broken())
    monitor.register("bulkhead", "ok", Gauge("ok"))
    assert [s.name for s in monitor.snapshot()] == ["ok"]
    async with monitor:
        await asyncio.sleep(0.05)
    monitor.unregister("bulkhead", "ok")
    assert monitor.snapshot() == []


def test_rate_limiter_and_breaker_adapters() -> None:
    from bounded.breaker import CircuitBreaker
    from bounded.ratelimit import RateLimiter

    monitor = ConcurrencyMonitor()
    limiter = RateLimiter(60, 60.0, name="openai")
    breaker = CircuitBreaker(name="llm")
    monitor.register("rate_limiter", "openai", limiter)
    monitor.register("breaker", "llm", breaker)
    stats = {s.kind: s for s in monitor.snapshot()}
    assert stats["rate_limiter"].limit == 60
    assert stats["breaker"].state == "closed"
    assert stats["breaker"].utilization == 0.0
    breaker.force_open()
    stats = {s.kind: s for s in monitor.snapshot()}
    assert stats["breaker"].state == "forced_open"
    assert stats["breaker"].utilization == 1.0


@pytest.mark.looptime
async def test_a_rate_limiter_oscillating_at_the_threshold_alerts_once() -> None:
    """A limiter used at about two thirds of its rate, in pairs that queue, for a minute.

    Each pair queues its second request for one interval (utilization 1), then the
    limiter idles for 0.8 s (its sliding estimate near 0.67): without a hold of one
    period the alert would fire and resolve every cycle.
    """
    limiter = RateLimiter(10, per=4.0, name="openai")  # one unit per 0.4 s
    monitor = ConcurrencyMonitor(interval=0.25, alert_threshold=0.8)
    monitor.register("rate_limiter", "openai", limiter)
    seen: list[Alert] = []
    monitor.on_alert(seen.append)
    async with monitor:
        for _ in range(50):
            await limiter.acquire()
            await limiter.acquire()
            await asyncio.sleep(0.8)
        assert [a.state for a in seen] == ["firing"]
        await asyncio.sleep(10.0)  # idle for more than a period: resolves, once
    assert [a.state for a in seen] == ["firing", "resolved"]
    assert seen[0].message.startswith("rate limiter openai: ")
    assert " of 10 per 4 s used, " in seen[0].message


async def test_messages_read_in_each_kind_s_own_terms() -> None:
    limiter = RateLimiter(60, per=60.0, burst=60, name="openai")
    for _ in range(54):
        assert limiter.try_acquire()
    msg = describe(resource_stats("rate_limiter", "openai", limiter))
    assert msg == "rate limiter openai: 54 of 60 per 60 s used, 0 waiting"

    cb = CircuitBreaker("llm", minimum_calls=1, open_for=12.0)

    async def boom() -> None:
        raise OSError("down")

    with pytest.raises(OSError, match="down"):
        await cb.call(boom)
    assert describe(resource_stats("breaker", "llm", cb)) == "breaker llm is open, retry in 12 s"
    cb.force_open()
    assert describe(resource_stats("breaker", "llm", cb)) == "breaker llm is forced-open"
    cb.reset()
    assert describe(resource_stats("breaker", "llm", cb)) == (
        "breaker llm is closed, failure rate at 0% of its opening threshold"
    )
    gauge = Gauge("main", limit=20)
    gauge.in_use = 18
    assert describe(resource_stats("database", "main", gauge)) == (
        "database pool main: 18 of 20 connections in use, 0 waiting"
    )


def test_an_open_breaker_alert_names_its_state_not_a_utilisation() -> None:
    monitor = ConcurrencyMonitor()
    cb = CircuitBreaker("llm")
    cb.force_open()
    monitor.register("breaker", "llm", cb)
    (alert,) = monitor.check()
    assert alert.message == "breaker llm is forced-open"
    assert "in use" not in alert.message
