"""`providers:` in bounded.yaml: presets, validation, the policy part, monitor and metrics."""

from __future__ import annotations

from typing import Any

import pytest

from bounded import ConcurrencyManager
from bounded.config import ConfigErrors, load_dict

YAML: dict[str, Any] = {
    "providers": {
        "openai": {"preset": "openai", "rpm": 500},
        "claude": {"preset": "anthropic", "output_tpm": None, "resync": False},
        "local": {"tpm": 1000, "period": 10, "rate_limit_retries": 0},
    },
    "bulkheads": {"llm": {"limit": 4}},
    "policies": {"llm_call": {"provider": "openai", "bulkhead": "llm", "timeout": 30}},
}


def paths(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load_dict(data)
    return [p.path for p in info.value.problems]


def test_presets_are_overridden_by_the_numbers_given() -> None:
    manager = ConcurrencyManager.from_dict(YAML)
    openai = manager.provider("openai")
    assert {k: v.rate for k, v in openai.limiters.items()} == {"requests": 500, "tokens": 30_000}
    assert openai.limiters["tokens"].per == 60
    claude = manager.provider("claude")
    assert set(claude.limiters) == {"requests", "input_tokens"}  # output_tpm: null is off
    assert claude.resync is False
    local = manager.provider("local")
    assert set(local.limiters) == {"tokens"}
    assert local.limiters["tokens"].per == 10
    assert local.rate_limit_retries == 0
    policy = manager.policy("llm_call")
    assert policy.provider is openai
    assert policy.bulkhead is manager.bulkhead("llm")


def test_validation_names_the_dotted_path() -> None:
    assert paths({"providers": {"x": {}}}) == ["providers.x"]
    assert paths({"providers": {"x": {"rpm": 0}}}) == ["providers.x.rpm"]
    assert paths({"providers": {"x": {"preset": "azure"}}}) == ["providers.x.preset"]
    assert paths({"providers": {"x": {"rpm": 1, "rpms": 2}}}) == ["providers.x.rpms"]
    assert paths({"policies": {"p": {"provider": "opnai"}}}) == ["policies.p.provider"]
    with pytest.raises(ConfigErrors) as info:
        load_dict(
            {
                "providers": {"openai": {"preset": "openai"}},
                "policies": {"p": {"provider": "opnai"}},
            }
        )
    assert "did you mean 'openai'" in str(info.value)


def test_undeclared_provider_is_an_error() -> None:
    manager = ConcurrencyManager.from_dict({})
    with pytest.raises(Exception, match=r"providers\.openai"):
        manager.provider("openai")


async def test_monitor_and_metrics_show_the_provider_budget() -> None:
    manager = ConcurrencyManager.from_dict(YAML)
    openai = manager.provider("openai")
    reservation = await openai.acquire(100, 900)
    reservation.settle(100, 200)
    stats = {(s.kind, s.name): s for s in manager.monitor.snapshot()}
    busiest = stats["provider", "openai"]  # tokens: 300 of 30,000 used
    assert (busiest.in_use, busiest.limit) == (300, 30_000)
    text = manager.metrics.generate().decode()
    assert 'bounded_provider_available{name="openai.tokens"} 29700.0' in text
    assert 'bounded_provider_limit{name="openai.requests"} 500.0' in text
    assert 'bounded_provider_rate_limited_total{name="openai"} 0.0' in text
    assert 'bounded_provider_resyncs_total{name="claude"} 0.0' in text


async def test_reload_changes_limits_live() -> None:
    manager = ConcurrencyManager.from_dict(YAML)
    openai = manager.provider("openai")
    changed = {
        **YAML,
        "providers": {
            **YAML["providers"],
            "openai": {"preset": "openai", "rpm": 100, "resync": False},
        },
    }
    assert await manager.reload(changed)
    assert manager.provider("openai") is openai
    assert openai.limiters["requests"].rate == 100
    assert openai.resync is False
