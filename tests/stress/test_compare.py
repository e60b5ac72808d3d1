"""The regression gate's decision on synthetic samples with known answers."""

from __future__ import annotations

import asyncio
import random

import pytest

from bounded.stress.compare import compare_calls, decide


def noisy(median: float, spread: float, n: int = 12, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [median * (1 + rng.uniform(-spread, spread)) for _ in range(n)]


def test_separated_samples_exact_p_value() -> None:
    # Every candidate sample above every baseline one: p = 1 / C(20, 10).
    c = decide([1.0 + i / 100 for i in range(10)], [1.2 + i / 100 for i in range(10)])
    assert c.p_value == pytest.approx(1 / 184756, rel=1e-6)
    assert c.ratio == pytest.approx(1.245 / 1.045)
    assert c.verdict == "regression"


def test_identical_code_is_ok() -> None:
    for seed in range(6):
        c = decide(noisy(1.0, 0.02, seed=seed), noisy(1.0, 0.02, seed=seed + 100))
        assert c.verdict == "ok", c


def test_a_12_percent_slowdown_is_a_regression() -> None:
    c = decide(noisy(1.0, 0.02, seed=1), noisy(1.12, 0.02, seed=2))
    assert c.verdict == "regression"
    assert c.ratio == pytest.approx(1.12, abs=0.02)


def test_significant_but_small_change_is_not_a_regression() -> None:
    c = decide(noisy(1.0, 0.002, seed=1), noisy(1.02, 0.002, seed=2))
    assert c.p_value < 0.01
    assert c.verdict == "ok"


def test_large_change_inside_the_noise_is_inconclusive() -> None:
    c = decide(noisy(1.0, 0.4, n=6, seed=1), noisy(1.1, 0.4, n=6, seed=2))
    assert c.p_value >= 0.01
    assert c.verdict == "inconclusive"


def test_faster_candidate_is_ok() -> None:
    assert decide(noisy(1.0, 0.01, seed=1), noisy(0.8, 0.01, seed=2)).verdict == "ok"


def test_bad_samples() -> None:
    with pytest.raises(ValueError, match="samples"):
        decide([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="baseline"):
        decide([0.0, 0.0], [1.0, 2.0])


@pytest.mark.looptime(noop_cycles=1)
async def test_compare_calls_interleaves_calls_and_sees_a_slowdown() -> None:
    order: list[str] = []

    def side(name: str, seconds: float):  # type: ignore[no-untyped-def]
        async def call(index: int, rng: random.Random) -> None:
            order.append(name)
            await asyncio.sleep(seconds * (1 + rng.uniform(-0.01, 0.01)))

        return call

    c = await compare_calls(side("a", 0.010), side("b", 0.012), rounds=6, round_duration=0.2)
    assert order[:8] == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert order.count("a") == order.count("b")
    assert c.verdict == "regression"
    assert c.ratio == pytest.approx(1.2, abs=0.02)
    assert len(c.baseline) == len(c.candidate) == 6


@pytest.mark.looptime(noop_cycles=1)
async def test_compare_calls_on_identical_calls_is_ok() -> None:
    async def call(index: int, rng: random.Random) -> None:
        await asyncio.sleep(0.01 * (1 + rng.uniform(-0.02, 0.02)))

    c = await compare_calls(call, call, rounds=8, round_duration=0.2, users=2)
    assert c.verdict == "ok"
    assert c.ratio == pytest.approx(1.0, abs=0.02)
