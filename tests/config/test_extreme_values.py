"""Values valid one by one whose combination a limiter cannot compute are refused at load."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bounded.config import ConfigErrors, load_dict
from bounded.manager import ConcurrencyManager

from .conftest import ConfigCheck


def problems(data: dict[str, object], env: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigErrors) as info:
        load_dict(data, env=env or {})
    return {p.path: p.message for p in info.value.problems}


def test_issue_reproducer_fails_config_check(config_check: ConfigCheck) -> None:
    """Issue 8 item 3: this passed `config check`, then the first acquire() spun forever."""
    result = config_check("rate_limits: {x: {rate: 1.0e-300, per: 1.0e+300}}\n")
    assert result.exit_code == 1
    assert "rate_limits.x.rate: rate 1e-300 per 1e+300 s cannot be computed" in result.output


@pytest.mark.parametrize(
    ("entry", "path"),
    [
        ({"rate": 1e-300, "per": 1e300}, "rate_limits.x.rate"),  # per / rate = inf
        ({"rate": 1e300, "per": 1e-300}, "rate_limits.x.rate"),  # per / rate = 0
        ({"rate": 5e-324, "per": 1e308}, "rate_limits.x.rate"),
        ({"rate": 1, "per": 1e300, "burst": 1e300}, "rate_limits.x.burst"),
    ],
)
def test_uncomputable_rates_are_refused_at_their_path(entry: dict[str, float], path: str) -> None:
    assert path in problems({"rate_limits": {"x": entry}})


def test_defaults_rate_limit_and_overrides_are_checked_too() -> None:
    found = problems({"defaults": {"rate_limit": {"rate": 1e-300, "per": 1e300}}})
    assert "defaults.rate_limit.rate" in found
    found = problems(
        {"rate_limits": {"x": {"rate": 1, "per": 1}}},
        env={"BOUNDED_RATE_LIMITS__X__PER": "1.0e+308", "BOUNDED_RATE_LIMITS__X__RATE": "1e-300"},
    )
    assert "rate_limits.x.rate" in found


def test_monitor_interval_that_would_spin_is_refused() -> None:
    found = problems({"monitoring": {"interval": 1e-300}})
    assert found["monitoring.interval"].startswith("must be >= 0.01 s")
    assert load_dict({"monitoring": {"interval": 0.01}}, env={}).monitoring.interval == 0.01


async def test_reload_with_uncomputable_rate_keeps_the_running_limiter() -> None:
    manager = ConcurrencyManager.from_dict({"rate_limits": {"x": {"rate": 10, "per": 1}}}, env={})
    limiter = manager.rate_limiter("x")
    assert not await manager.reload({"rate_limits": {"x": {"rate": 1e-300, "per": 1e300}}})
    assert (limiter.rate, limiter.per) == (10, 1)
    assert manager.failed_reloads == 1


positive = st.floats(min_value=5e-324, max_value=1.7e308, allow_nan=False, allow_infinity=False)


@given(rate=positive, per=positive, burst=st.floats(min_value=1, max_value=1.7e308))
def test_an_accepted_rate_limit_is_always_computable(rate: float, per: float, burst: float) -> None:
    entry = {"rate": rate, "per": per, "burst": burst}
    interval = per / rate
    computable = interval > 0 and math.isfinite(interval) and math.isfinite(burst * interval)
    if computable and rate / per > 0:
        assert load_dict({"rate_limits": {"x": entry}}, env={}).rate_limits["x"].rate == rate
    else:
        found = problems({"rate_limits": {"x": entry}})
        assert set(found) <= {"rate_limits.x.rate", "rate_limits.x.burst"}
