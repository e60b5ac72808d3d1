"""Invariants of the Redis-backed limiters under random schedules (Hypothesis, real Redis).

- RateLimiter: whatever the costs and cancellations (including those that give a
  reservation back), the admissions, on the Redis clock, never break the algorithm's
  window guarantee.
- Bulkhead: the holders recorded in Redis never exceed the limit, and once everyone has
  let go or given up, nothing is left held or queued (no leaked slot or ticket).
- CircuitBreaker: the shared breaker's window and state follow the in-memory breaker's,
  call for call, whatever the outcomes (ok, failed, ignored, not a failure).
"""

from __future__ import annotations

import asyncio
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bounded import CircuitBreaker, CircuitOpen
from bounded.redis import RedisBackend
from tests.limiters.windows import most_in_window, worst_gcra_excess

SETTINGS = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PER = 0.2
CLOCK = 1e-6  # the scripts keep time in whole microseconds


@SETTINGS
@given(
    algorithm=st.sampled_from(["gcra", "sliding_window"]),
    burst=st.sampled_from([1, 3]),
    ops=st.lists(
        st.tuples(st.sampled_from(["request", "request", "cancel", "sleep"]), st.integers(0, 20)),
        min_size=1,
        max_size=25,
    ),
)
def test_admissions_keep_the_guarantee_under_cancellation(
    redis_url: str, algorithm: str, burst: int, ops: list[tuple[str, int]]
) -> None:
    rate = 6.0

    async def scenario() -> None:
        admitted: list[tuple[float, float]] = []
        seen: list[float] = []
        async with RedisBackend(redis_url, prefix=f"bounded-prop-{uuid.uuid4().hex}:") as backend:
            limiter = backend.rate_limiter(
                rate,
                PER,
                name="prop",
                algorithm=algorithm,
                burst=burst,  # type: ignore[arg-type]
            )
            limiter.admission_observer = seen.append

            async def request(cost: int) -> None:
                await limiter.acquire(cost)
                admitted.append((seen[-1], cost))  # no await since the observer ran

            tasks: list[asyncio.Task[None]] = []
            for op, n in ops:
                if op == "request":
                    tasks.append(asyncio.create_task(request(n % burst + 1)))
                elif op == "cancel" and tasks:
                    tasks[n % len(tasks)].cancel()
                await asyncio.sleep(0.002 + (0.02 if op == "sleep" else 0.0))
            async with asyncio.timeout(30):
                await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0.01)  # background give-backs land before the keys go
            await backend.client.delete(*await backend.client.keys(f"{backend.prefix}*") or ["-"])
        times = [t for t, _ in admitted]
        units = [float(c) for _, c in admitted]
        if algorithm == "gcra":
            assert worst_gcra_excess(times, units, burst, rate / PER) <= rate / PER * CLOCK
        else:
            assert most_in_window(times, units, PER - CLOCK) <= rate

    asyncio.run(scenario())


@SETTINGS
@given(
    limit=st.integers(1, 4),
    ops=st.lists(
        st.tuples(st.sampled_from(["spawn", "spawn", "cancel", "release"]), st.integers(0, 20)),
        max_size=25,
    ),
)
def test_bulkhead_never_exceeds_and_never_leaks(
    redis_url: str, limit: int, ops: list[tuple[str, int]]
) -> None:
    async def scenario() -> None:
        async with RedisBackend(
            redis_url, prefix=f"bounded-prop-{uuid.uuid4().hex}:", lease=5.0
        ) as backend:
            bulkhead = backend.bulkhead(limit, name="prop")
            holders = backend.key("prop", "holders")
            queue = backend.key("prop", "queue")
            tasks: list[asyncio.Task[None]] = []
            releases: list[asyncio.Event] = []
            most = 0

            async def holder(done: asyncio.Event) -> None:
                async with bulkhead:
                    await done.wait()

            for op, n in ops:
                if op == "spawn":
                    releases.append(asyncio.Event())
                    tasks.append(asyncio.create_task(holder(releases[-1])))
                elif op == "cancel" and tasks:
                    tasks[n % len(tasks)].cancel()
                elif op == "release" and releases:
                    releases[n % len(releases)].set()
                await asyncio.sleep(0.005)
                most = max(most, await backend.client.zcard(holders))
            for done in releases:
                done.set()
            async with asyncio.timeout(30):
                await asyncio.gather(*tasks, return_exceptions=True)
                while await backend.client.zcard(holders) or await backend.client.zcard(queue):
                    await asyncio.sleep(0.01)  # background releases and leaves land
            assert most <= limit
            assert bulkhead.stats().queued == 0
            assert bulkhead.in_use == 0
            await backend.client.delete(*await backend.client.keys(f"{backend.prefix}*") or ["-"])

    asyncio.run(scenario())


class _Failure(Exception):
    pass


class _Ignored(Exception):
    pass


@SETTINGS
@given(
    window=st.integers(1, 6),
    minimum_calls=st.integers(1, 6),
    failure_rate=st.sampled_from([0.2, 0.5, 1.0]),
    outcomes=st.lists(st.sampled_from(["ok", "fail", "ignored", "other"]), min_size=1, max_size=30),
)
def test_the_shared_breaker_follows_the_in_memory_one(
    redis_url: str, window: int, minimum_calls: int, failure_rate: float, outcomes: list[str]
) -> None:
    settings = {
        "window": window,
        "minimum_calls": minimum_calls,
        "failure_rate": failure_rate,
        "open_for": 60.0,
        "failure_on": _Failure,
        "ignore": _Ignored,
    }
    errors = {"fail": _Failure, "ignored": _Ignored, "other": ValueError}

    async def scenario() -> None:
        async with RedisBackend(redis_url, prefix=f"bounded-prop-{uuid.uuid4().hex}:") as backend:
            shared = backend.circuit_breaker("prop", **settings)
            local = CircuitBreaker("prop", **settings)  # type: ignore[arg-type]

            async def work(outcome: str) -> None:
                if outcome != "ok":
                    raise errors[outcome]

            for outcome in outcomes:
                results = []
                for breaker in (shared, local):
                    try:
                        await breaker.call(work, outcome)
                    except Exception as exc:  # the outcome itself, or CircuitOpen
                        results.append(type(exc))
                    else:
                        results.append(None)
                assert results[0] == results[1]
                assert shared.state == local.state
                got, want = shared.stats(), local.stats()
                assert (got.calls, got.failed_calls) == (want.calls, want.failed_calls)
                if results[0] is CircuitOpen:
                    break
            await backend.client.delete(*await backend.client.keys(f"{backend.prefix}*"))

    asyncio.run(scenario())
