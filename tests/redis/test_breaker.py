"""RedisCircuitBreaker: one breaker state for every process, transitions atomic in Redis."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor

import pytest

from bounded import CircuitOpen
from bounded.redis import RedisBackend, RedisCircuitBreaker
from tests.redis import workers


class Boom(Exception):
    pass


async def fail() -> None:
    raise Boom


async def succeed() -> str:
    return "ok"


@pytest.fixture
async def other(redis_url: str, prefix: str) -> AsyncIterator[RedisBackend]:
    """A second backend (own pool) on the same prefix: another process's view."""
    async with RedisBackend(redis_url, prefix=prefix) as backend:
        yield backend


def _pair(
    backend: RedisBackend, other: RedisBackend, **settings: object
) -> tuple[RedisCircuitBreaker, RedisCircuitBreaker]:
    config = {"minimum_calls": 4, "window": 4, "open_for": 0.4, "half_open_calls": 2}
    config.update(settings)
    return (
        backend.circuit_breaker("shared", **config),  # type: ignore[arg-type]
        other.circuit_breaker("shared", **config),  # type: ignore[arg-type]
    )


async def _open_until_half_open(breaker: RedisCircuitBreaker) -> None:
    for _ in range(4):
        with pytest.raises(Boom):
            await breaker.call(fail)
    await asyncio.sleep(0.45)  # open_for


async def test_one_processes_failures_open_it_for_the_others(
    backend: RedisBackend, other: RedisBackend
) -> None:
    a, b = _pair(backend, other)
    seen: list[tuple[str, str]] = []
    b.on_transition(lambda breaker, old, new: seen.append((old, new)))
    assert await b.call(succeed) == "ok"
    for _ in range(2):
        with pytest.raises(Boom):
            await a.call(fail)
    assert a.state == "closed"  # 3 calls: fewer than minimum_calls
    with pytest.raises(Boom):
        await a.call(fail)
    assert a.state == "open"  # 3 of 4 failed, the call from the other process included
    with pytest.raises(CircuitOpen) as caught:
        await b.call(succeed)
    assert caught.value.retry_after is not None
    assert 0 < caught.value.retry_after <= 0.4
    assert b.state == "open"
    assert seen == [("closed", "open")]
    stats = b.stats()
    assert (stats.calls, stats.failed_calls, stats.rejected_total) == (4, 3, 1)


async def test_half_open_admits_exactly_half_open_calls_across_processes(
    backend: RedisBackend, other: RedisBackend
) -> None:
    a, b = _pair(backend, other)
    await _open_until_half_open(a)
    release = asyncio.Event()
    admitted = 0

    async def probe() -> None:
        nonlocal admitted
        admitted += 1
        await release.wait()

    attempts = [asyncio.create_task(x.call(probe)) for x in (a, b, a, b, a, b)]
    await asyncio.sleep(0.3)
    assert admitted == 2
    release.set()
    results = await asyncio.gather(*attempts, return_exceptions=True)
    assert sum(isinstance(r, CircuitOpen) for r in results) == 4
    assert await a.refresh() == "closed"  # both probes succeeded
    assert await b.refresh() == "closed"
    assert b.stats().calls == 0


async def test_a_failed_probe_reopens_it_for_everyone(
    backend: RedisBackend, other: RedisBackend
) -> None:
    a, b = _pair(backend, other, half_open_calls=1)
    await _open_until_half_open(a)
    with pytest.raises(Boom):
        await b.call(fail)  # the probe
    with pytest.raises(CircuitOpen):
        await a.call(succeed)
    assert a.state == b.state == "open"


async def test_a_lost_probe_frees_its_slot_after_open_for(
    backend: RedisBackend, other: RedisBackend
) -> None:
    a, b = _pair(backend, other, half_open_calls=1)
    await _open_until_half_open(a)
    hung = asyncio.create_task(a.call(asyncio.sleep, 30))
    await asyncio.sleep(0.1)
    with pytest.raises(CircuitOpen):
        await b.call(succeed)  # the only probe slot is taken
    await asyncio.sleep(0.4)  # the probe never reports (as if its process had died)
    assert await b.call(succeed) == "ok"
    assert b.state == "closed"
    hung.cancel()
    await asyncio.gather(hung, return_exceptions=True)


async def test_async_with_force_open_disable_and_reset_reach_every_process(
    backend: RedisBackend, other: RedisBackend
) -> None:
    a, b = _pair(backend, other)
    async with a:
        pass
    a.force_open()
    await a.refresh()
    with pytest.raises(CircuitOpen) as caught:
        async with b:
            pass
    assert caught.value.retry_after is None
    assert b.state == "forced_open"
    b.disable()
    await b.refresh()
    for _ in range(8):
        with pytest.raises(Boom):
            async with a:
                raise Boom
    assert a.state == "disabled"
    assert a.stats().calls == 1  # nothing recorded while disabled
    a.reset()
    await a.refresh()
    assert await b.refresh() == "closed"
    assert b.stats().calls == 0


async def _sleep_until(backend: RedisBackend, second: float) -> None:
    """Sleep until `second` (seconds since the epoch) on the Redis clock."""
    seconds, micros = await backend.client.time()
    await asyncio.sleep(max(0.0, second - (seconds + micros / 1e6)))


async def test_a_time_window_holds_the_last_seconds_of_every_process(
    backend: RedisBackend, other: RedisBackend
) -> None:
    a, b = _pair(backend, other, window=None, window_seconds=2)  # 4 calls at least
    assert (a.window, a.window_seconds) == (None, 2)
    start = int((await backend.client.time())[0]) + 1
    await _sleep_until(backend, start + 0.1)
    for _ in range(2):
        with pytest.raises(Boom):
            await a.call(fail)
    await _sleep_until(backend, start + 1.1)
    assert await a.call(succeed) == "ok"
    await _sleep_until(backend, start + 2.1)  # the first second's two failures leave
    assert await b.call(succeed) == "ok"
    with pytest.raises(Boom):
        await b.call(fail)
    assert (b.stats().calls, b.stats().failed_calls) == (3, 1)
    # Too few calls to judge (the last 4 calls, 2 of them failed, would open it).
    assert await a.refresh() == "closed"
    with pytest.raises(Boom):
        await b.call(fail)
    assert b.state == "open"  # 2 of 4 in the last two seconds
    assert await a.refresh() == "open"
    with pytest.raises(CircuitOpen):
        await a.call(succeed)


async def test_a_time_window_resized_live_recounts_what_it_holds(
    backend: RedisBackend,
) -> None:
    breaker = backend.circuit_breaker(
        "resized", window_seconds=3, minimum_calls=10, failure_rate=0.5
    )
    start = int((await backend.client.time())[0]) + 1
    await _sleep_until(backend, start + 0.1)
    with pytest.raises(Boom):
        await breaker.call(fail)
    await _sleep_until(backend, start + 1.1)
    assert await breaker.call(succeed) == "ok"
    assert breaker.stats().calls == 2
    breaker.window_seconds = 1  # only the current second: the failure leaves
    await breaker.refresh()
    assert (breaker.stats().calls, breaker.stats().failed_calls) == (1, 0)
    breaker.window_seconds = 3  # and does not come back
    assert await breaker.call(succeed) == "ok"
    assert (breaker.stats().calls, breaker.stats().failed_calls) == (2, 0)


async def test_keys_expire_and_share_one_hash_slot(backend: RedisBackend) -> None:
    breaker = backend.circuit_breaker("keys", open_for=5.0)
    await breaker.call(succeed)
    timed = backend.circuit_breaker("keys", open_for=5.0, window_seconds=10)
    await timed.call(succeed)
    keys = await backend.client.keys(f"{backend.prefix}*")
    assert len(keys) == 3  # state, window, seconds
    for key in keys:
        assert b"{keys}" in key
        assert 0 < await backend.client.pttl(key) <= (5 + 86400) * 1000


async def test_unavailable_redis_fail_open_uses_a_local_breaker_fail_closed_rejects() -> None:
    url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    async with RedisBackend(url, timeout=0.2) as backend:
        breaker = backend.circuit_breaker("down", minimum_calls=2, window=2)
        assert await breaker.call(succeed) == "ok"
        with pytest.raises(Boom):
            await breaker.call(fail)
        with pytest.raises(CircuitOpen):  # the local stand-in opened: 1 of 2 failed
            await breaker.call(succeed)
    async with RedisBackend(url, timeout=0.2, on_error="fail_closed") as backend:
        breaker = backend.circuit_breaker("down")
        with pytest.raises(CircuitOpen) as caught:
            await breaker.call(succeed)
        assert caught.value.retry_after == backend.retry_interval


def test_three_processes_one_fails_all_see_it_open(redis_url: str, prefix: str) -> None:
    context = multiprocessing.get_context("spawn")
    roles = ["fail", "watch", "watch"]
    with ProcessPoolExecutor(len(roles), mp_context=context) as pool:
        futures = [pool.submit(workers.breaker_worker, redis_url, prefix, role) for role in roles]
        outcomes = [f.result() for f in futures]
    assert outcomes[0] == "opened"
    assert outcomes[1:] == ["rejected", "rejected"]


async def test_settings_change_live_in_every_call(backend: RedisBackend) -> None:
    breaker = backend.circuit_breaker("live", minimum_calls=4, window=8)
    for _ in range(3):
        await breaker.call(succeed)
    breaker.window = 2  # the window shrinks to the last 2 calls
    with pytest.raises(Boom):
        await breaker.call(fail)
    assert breaker.stats().calls == 2
    assert breaker.state == "open"  # 1 of 2 failed, minimum_calls capped at the window
