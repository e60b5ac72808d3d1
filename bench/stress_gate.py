"""The regression gate against a plain "> 5% slower than the stored baseline" check.

The workload is CPU-bound (a fixed number of loop iterations per request, about a
millisecond), so "12% slower" is a real 12% more work, not a sleep. First one baseline
measurement is stored, as a CI job would keep it from an earlier build. Then:

- 6 comparisons of identical code: baseline vs the same function. Any "regression" is a
  false alarm.
- 5 comparisons against a 12% slower function. A "regression" is a catch.

Each comparison runs `bounded.stress.compare.compare_calls` (calls interleaved A B B A,
Mann-Whitney U p < 0.01 AND median ratio > 1.05). The plain check compares the median of
the same candidate rounds with the stored baseline and flags anything > 5% slower.
"""

from __future__ import annotations

import asyncio
import random
import statistics

from bench._harness import Row, Section, Target
from bounded.stress.compare import Comparison, compare_calls
from bounded.stress.runner import run_closed

ROUNDS = 16
ROUND_SECONDS = 0.3
IDENTICAL = 6
SLOWED = 5
SLOWDOWN = 1.12
ITERATIONS = 20_000  # about 1 ms of CPU per request on this kind of machine


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def _workload(iterations: int):  # type: ignore[no-untyped-def]
    async def call(index: int, rng: random.Random) -> None:
        _spin(iterations)

    return call


BASELINE = _workload(ITERATIONS)
SAME = _workload(ITERATIONS)
SLOWER = _workload(round(ITERATIONS * SLOWDOWN))


async def _stored_baseline() -> float:
    """One continuous measurement, as a CI job would have stored it earlier."""
    samples = []
    for _ in range(ROUNDS):
        r = await run_closed(BASELINE, users=1, duration=ROUND_SECONDS, grace=5)
        samples.append(r.latency["p50"])
    return statistics.median(samples)


async def _run() -> Section:
    stored = await _stored_baseline()
    rows: list[Row] = []
    outcomes: dict[str, list[tuple[Comparison, bool]]] = {"identical": [], "slowed": []}
    for kind, candidate, count in (("identical", SAME, IDENTICAL), ("slowed", SLOWER, SLOWED)):
        for n in range(count):
            c = await compare_calls(
                BASELINE, candidate, rounds=ROUNDS, round_duration=ROUND_SECONDS
            )
            plain = statistics.median(c.candidate) / stored > 1.05
            outcomes[kind].append((c, plain))
            rows.append(
                Row(
                    f"{kind} #{n + 1}",
                    c.ratio,
                    extra={
                        "p (U test)": f"{c.p_value:.2g}",
                        "noise": f"{c.noise:.1%}",
                        "gate": c.verdict,
                        "vs stored": f"{statistics.median(c.candidate) / stored:.3f}",
                        "plain >5%": "flagged" if plain else "ok",
                    },
                )
            )
    gate_false = sum(c.verdict == "regression" for c, _ in outcomes["identical"])
    plain_false = sum(plain for _, plain in outcomes["identical"])
    gate_caught = sum(c.verdict == "regression" for c, _ in outcomes["slowed"])
    plain_caught = sum(plain for _, plain in outcomes["slowed"])
    return Section(
        title="Regression gate: interleaved Mann-Whitney + median ratio vs a plain 5% check",
        unit="median ratio candidate/baseline",
        reference=None,
        rows=rows,
        columns=["p (U test)", "noise", "gate", "vs stored", "plain >5%"],
        value_format="{:.3f}",
        targets=[
            Target(
                f"gate: 0 false alarms in {IDENTICAL} identical comparisons",
                gate_false == 0,
                f"gate {gate_false}/{IDENTICAL}, plain check {plain_false}/{IDENTICAL}",
            ),
            Target(
                f"gate: a real {SLOWDOWN - 1:.0%} slowdown caught in >= 4 of {SLOWED}",
                gate_caught >= 4,
                f"gate {gate_caught}/{SLOWED}, plain check {plain_caught}/{SLOWED}",
            ),
        ],
        notes=[
            f"{ROUNDS} rounds of {ROUND_SECONDS} s per comparison; calls "
            "alternate A B B A within a round; a sample is a round's median latency per side.",
            f"workload: {ITERATIONS:,} loop iterations per request (slowed: x{SLOWDOWN}); the "
            "stored baseline was measured once, before all comparisons.",
            "gate: regression when one-sided U test p < 0.01 AND median ratio > 1.05; "
            "'inconclusive' when the rounds scatter more than the effect.",
        ],
    )


def run() -> list[Section]:
    return [asyncio.run(_run())]
