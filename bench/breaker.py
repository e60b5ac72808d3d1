"""Circuit breakers on the closed path: overhead per call on a call that succeeds."""

from __future__ import annotations

import asyncio

import aiobreaker  # type: ignore[import-untyped]

from bench._harness import Row, Section, Target, Timed, interleaved, timed_calls
from bounded.breaker import CircuitBreaker

FLOOR = "bare await (floor)"
CALL = "bounded.CircuitBreaker(name=...).call(fn)"
PEER = "aiobreaker.CircuitBreaker().call_async(fn)"


async def ok() -> int:
    return 1


def run() -> list[Section]:
    return [asyncio.run(_run())]


async def _run() -> Section:
    cb = CircuitBreaker(name="bench")
    cm = CircuitBreaker(name="bench-cm")
    timed = CircuitBreaker(name="bench-time", window_seconds=60.0)
    peer = aiobreaker.CircuitBreaker()

    async def with_cm() -> int:
        async with cm:
            return await ok()

    cases: dict[str, Timed] = {
        FLOOR: timed_calls(ok),
        CALL: timed_calls(lambda: cb.call(ok)),
        "async with bounded.CircuitBreaker(...)": timed_calls(with_cm),
        "bounded.CircuitBreaker(window_seconds=60.0).call(fn)": timed_calls(lambda: timed.call(ok)),
        PEER: timed_calls(lambda: peer.call_async(ok)),
    }
    ns = await interleaved(cases)
    base = ns[FLOOR]
    rows = [
        Row(name, v / 1000, extra={"overhead us": f"{(v - base) / 1000:.2f}"})
        for name, v in ns.items()
    ]
    ours, theirs = (ns[CALL] - base) / 1000, (ns[PEER] - base) / 1000
    return Section(
        title="Circuit breaker, closed path, on a call that succeeds",
        unit="us/call",
        reference=None,
        rows=rows,
        targets=[
            Target(
                "bounded.CircuitBreaker.call: closed path cheaper than aiobreaker",
                ours < theirs,
                f"{ours:.2f} vs {theirs:.2f} us overhead",
            )
        ],
        columns=["overhead us"],
        notes=[
            "overhead = time per call minus the bare await of the same coroutine function.",
            "bounded: default count window of 20 calls unless window_seconds is given; "
            "aiobreaker counts consecutive failures (fail_max=5) in memory storage.",
        ],
        value_format="{:.2f}",
    )
