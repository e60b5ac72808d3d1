"""ConcurrencyManager: the registry, system-wide defaults, strict mode and policies."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from bounded import errors
from bounded.config import ConfigErrors
from bounded.data import data_text
from bounded.errors import ConfigError
from bounded.manager import ConcurrencyManager


def example(tmp_path: Path) -> Path:
    path = tmp_path / "bounded.yaml"
    path.write_text(data_text("bounded.yaml"))
    return path


def test_from_file_builds_the_example(tmp_path: Path) -> None:
    manager = ConcurrencyManager.from_file(example(tmp_path), watch=False, env={})
    assert manager.bulkhead("llm").limit == 10
    assert manager.bulkhead("stress_test").limit == 5
    assert manager.bulkhead("api_calls").limit == 20
    openai = manager.rate_limiter("openai")
    assert (openai.rate, openai.per) == (60, 60)
    assert manager.rate_limiter("anthropic").rate == 50
    assert manager.config.alert_threshold == 0.8


def test_same_object_per_name_and_declared_ones_are_watched() -> None:
    manager = ConcurrencyManager.from_dict(
        {
            "bulkheads": {"llm": {"limit": 3}},
            "rate_limits": {"openai": "60/min"},
            "breakers": {"db": {}},
        },
        env={},
    )
    assert manager.bulkhead("llm") is manager.bulkhead("llm")
    kinds = {(s.kind, s.name) for s in manager.monitor.snapshot()}
    assert kinds == {("bulkhead", "llm"), ("rate_limiter", "openai"), ("breaker", "db")}
    manager.bulkhead("other")
    assert ("bulkhead", "other") in {(s.kind, s.name) for s in manager.monitor.snapshot()}


def test_undeclared_names_get_the_defaults() -> None:
    manager = ConcurrencyManager.from_dict(
        {"defaults": {"bulkhead": {"limit": 7, "max_wait": 2}, "breaker": {"open_for": 5}}},
        env={},
    )
    bulkhead = manager.bulkhead("anything")
    assert (bulkhead.limit, bulkhead.max_wait) == (7, 2)
    assert manager.breaker("x").open_for == 5
    with pytest.raises(ConfigError) as info:
        manager.rate_limiter("openai")
    assert info.value.path == "rate_limits.openai"


def test_strict_mode_rejects_undeclared_names() -> None:
    manager = ConcurrencyManager.from_dict(
        {"strict": True, "bulkheads": {"llm": {}}, "defaults": {"rate_limit": "10/s"}}, env={}
    )
    assert manager.bulkhead("llm").limit == 10
    for access, path in (
        (manager.bulkhead, "bulkheads.lm"),
        (manager.rate_limiter, "rate_limits.lm"),
        (manager.breaker, "breakers.lm"),
        (manager.retry, "retries.lm"),
        (manager.policy, "policies.lm"),
        (manager.http_client, "http_clients.lm"),
    ):
        with pytest.raises(ConfigError) as info:
            access("lm")
        assert info.value.path == path
        assert info.value.message == "not declared (strict mode)"


def test_database_must_be_declared() -> None:
    manager = ConcurrencyManager.from_dict({}, env={})
    with pytest.raises(ConfigError) as info:
        manager.database("rag")
    assert info.value.path == "databases.rag"


def test_from_dict_validates() -> None:
    with pytest.raises(ConfigErrors) as info:
        ConcurrencyManager.from_dict({"bulkheads": {"llm": {"limit": 0}}}, env={})
    assert info.value.path == "bulkheads.llm.limit"


def test_policy_is_composed_from_the_registry(tmp_path: Path) -> None:
    manager = ConcurrencyManager.from_file(example(tmp_path), watch=False, env={})
    policy = manager.policy("openai_call")
    assert policy is manager.policy("openai_call")
    assert policy.bulkhead is manager.bulkhead("llm")
    assert policy.provider is manager.provider("openai")
    assert policy.rate_limiter is None
    assert policy.breaker is manager.breaker("llm")
    assert policy.retry is manager.retry("llm")
    assert (policy.timeout, policy.deadline) == (60, 180)
    undeclared = manager.policy("misc")
    assert undeclared.timeout == 30
    assert undeclared.bulkhead is manager.bulkhead("misc")
    assert manager.bulkhead("misc").limit == 10


async def test_retry_names_map_to_exception_types() -> None:
    manager = ConcurrencyManager.from_dict(
        {
            "retries": {
                "r": {
                    "attempts": 3,
                    "on": ["TransportError", "RateLimited"],
                    "backoff": {"initial": 0.001, "max": 1, "jitter": "none"},
                }
            }
        },
        env={},
    )
    retry = manager.retry("r")
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx2.ConnectError("down")
        if calls == 2:
            raise errors.RateLimited("x", 0.0)
        return "ok"

    assert await retry.call(flaky) == "ok"
    assert calls == 3

    async def wrong() -> None:
        raise KeyError("not retried")

    with pytest.raises(KeyError):
        await retry.call(wrong)


def test_http_client_from_config() -> None:
    manager = ConcurrencyManager.from_dict(
        {"http_clients": {"openai": {"base_url": "http://127.0.0.1:1/v1", "max_connections": 7}}},
        env={},
    )
    client = manager.http_client("openai")
    assert client is manager.http_client("openai")
    assert client.max_connections == 7
    assert manager.http_client("other").max_connections == 100


def test_undeclared_names_are_bounded() -> None:
    manager = ConcurrencyManager.from_dict({}, env={})
    manager.max_undeclared = 5
    for i in range(5):
        manager.bulkhead(f"b{i}")
    assert manager.bulkhead("b0") is manager.bulkhead("b0")
    with pytest.raises(ConfigError, match="more than 5 undeclared names") as info:
        manager.bulkhead("user-1234")
    assert info.value.path == "bulkheads.user-1234"
    assert len(manager.monitor.snapshot()) == 5


@pytest.mark.looptime
async def test_policy_call_end_to_end(tmp_path: Path) -> None:
    """rag_query: 10 s per attempt, retried on TimeoutError, inside bulkhead rag_queries."""
    import asyncio

    manager = ConcurrencyManager.from_file(example(tmp_path), watch=False, env={})
    attempts = 0
    seen_in_use: list[int] = []

    async def query() -> str:
        nonlocal attempts
        attempts += 1
        seen_in_use.append(manager.bulkhead("rag_queries").stats().in_use)
        if attempts == 1:
            await asyncio.sleep(60)  # cut at the 10 s per-attempt timeout
        return "rows"

    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await manager.policy("rag_query").call(query) == "rows"
    assert attempts == 2
    assert seen_in_use == [1, 1]
    assert 10 <= loop.time() - start < 11  # one timeout plus a short backoff
    assert manager.breaker("rag_db").stats().failed_calls == 1
