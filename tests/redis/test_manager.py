"""`backend: {type: redis}` in the configuration: the manager builds shared limiters."""

from __future__ import annotations

import asyncio

import pytest

from bounded import CircuitBreaker, CircuitOpen, ConcurrencyManager
from bounded.errors import ConfigError
from bounded.redis import RedisBulkhead, RedisCircuitBreaker, RedisRateLimiter


async def test_manager_builds_limits_on_redis_and_closes_the_pool(
    redis_url: str, prefix: str
) -> None:
    config = {
        "backend": {"type": "redis", "url": "${REDIS_URL}", "prefix": prefix},
        "bulkheads": {"llm": {"limit": 2}},
        "rate_limits": {"openai": {"rate": 5, "per": 1.0, "max_wait": 0.1}},
        "policies": {"call": {"bulkhead": "llm", "rate_limit": "openai"}},
        "monitoring": {"enabled": False},
    }
    manager = ConcurrencyManager.from_dict(config, env={"REDIS_URL": redis_url})
    backend = manager.backend
    assert backend is not None
    assert backend.prefix == prefix
    async with manager:
        bulkhead = manager.bulkhead("llm")
        limiter = manager.rate_limiter("openai")
        assert isinstance(bulkhead, RedisBulkhead)
        assert isinstance(limiter, RedisRateLimiter)
        assert await manager.policy("call").call(asyncio.sleep, 0, "done") == "done"
        assert await backend.client.exists(backend.key("openai", "gcra"))
        text = manager.metrics.generate().decode()
        assert 'bounded_backend_errors_total{type="redis"} 0.0' in text
        assert 'bounded_backend_up{type="redis"} 1.0' in text
        assert "bounded_rate_limit_admitted_total" in text
        await backend.client.delete(*await backend.client.keys(f"{prefix}*"))
    assert repr(backend).endswith("closed>")


def test_memory_stays_the_default() -> None:
    manager = ConcurrencyManager.from_dict({"rate_limits": {"x": {"rate": 1}}}, env={})
    assert manager.backend is None
    assert not isinstance(manager.rate_limiter("x"), RedisRateLimiter)


async def test_a_shared_breaker_opens_for_every_manager(redis_url: str, prefix: str) -> None:
    config = {
        "backend": {"type": "redis", "url": "${REDIS_URL}", "prefix": prefix},
        "breakers": {
            "llm": {
                "shared": True,
                "minimum_calls": 2,
                "window": 2,
                "failure_on": ["ConnectionError"],
            },
            "local": {"minimum_calls": 2},
        },
        "policies": {"call": {"breaker": "llm"}},
        "monitoring": {"enabled": False},
    }
    one = ConcurrencyManager.from_dict(config, env={"REDIS_URL": redis_url})
    two = ConcurrencyManager.from_dict(config, env={"REDIS_URL": redis_url})

    async def down() -> None:
        raise ConnectionError("down")

    async with one, two:
        assert isinstance(one.breaker("llm"), RedisCircuitBreaker)
        assert type(one.breaker("local")) is CircuitBreaker
        for _ in range(2):
            with pytest.raises(ConnectionError, match="down"):
                await one.policy("call").call(down)
        with pytest.raises(CircuitOpen):
            await two.policy("call").call(asyncio.sleep, 0)
        text = two.metrics.generate().decode()
        assert 'bounded_breaker_transitions_total{name="llm",state="open"} 1.0' in text
        backend = one.backend
        assert backend is not None
        await backend.client.delete(*await backend.client.keys(f"{prefix}*"))


def test_a_shared_breaker_needs_the_redis_backend() -> None:
    for window in ({"window": 20}, {"window_seconds": 10}):
        with pytest.raises(ConfigError, match=r"breakers\.llm\.shared"):
            ConcurrencyManager.from_dict({"breakers": {"llm": {"shared": True, **window}}}, env={})
