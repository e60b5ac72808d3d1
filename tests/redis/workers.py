"""Worker processes for the cross-process tests (bench/redis.py has its own, for the 10 s runs)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from bounded.redis import RedisBackend

TASKS = 20  # acquiring in a loop, per rate worker process


async def start_together(backend: RedisBackend, processes: int, connections: int) -> float:
    """Open `connections` connections, wait until `processes` workers have; return the
    agreed start (wall clock). A service's connections are open long before its steady
    state, so the tests measure the limit, not connection set-up on a loaded machine."""
    client = backend.client
    await asyncio.gather(*(client.ping() for _ in range(connections)))
    if await client.incr(f"{backend.prefix}ready") == processes:
        await client.set(f"{backend.prefix}start", repr(time.time() + 0.2), ex=60)
    await client.expire(f"{backend.prefix}ready", 60)
    while (start := await client.get(f"{backend.prefix}start")) is None:
        await asyncio.sleep(0.01)
    await asyncio.sleep(max(0.0, float(start) - time.time()))
    return float(start)


def rate_worker(
    url: str, prefix: str, algorithm: str, rate: float, processes: int, seconds: float
) -> list[float]:
    """Acquire from the shared limiter as fast as allowed; return admissions (Redis clock)."""

    async def main() -> list[float]:
        admitted: list[float] = []
        async with RedisBackend(url, prefix=prefix) as backend:
            limiter = backend.rate_limiter(rate, 1.0, name="shared", algorithm=algorithm)  # type: ignore[arg-type]
            limiter.admission_observer = admitted.append
            end = await start_together(backend, processes, TASKS) + seconds

            async def task() -> None:
                while time.time() < end:
                    await limiter.acquire()

            await asyncio.gather(*(task() for _ in range(TASKS)))
        return [t for t in admitted if t < end]

    return asyncio.run(main())


def bulkhead_worker(url: str, prefix: str, limit: int, processes: int, seconds: float) -> int:
    """Hold the shared bulkhead in turns; record each holder in Redis; return the most seen."""

    async def main() -> int:
        async with RedisBackend(url, prefix=prefix, lease=2.0) as backend:
            bulkhead = backend.bulkhead(limit, name="shared")
            counter = f"{prefix}holders-seen"
            most = 0
            end = await start_together(backend, processes, 8) + seconds

            async def task() -> None:
                nonlocal most
                while time.time() < end:
                    async with bulkhead:
                        most = max(most, await backend.client.incr(counter))
                        await asyncio.sleep(0.005)
                        await backend.client.decr(counter)

            await asyncio.gather(*(task() for _ in range(8)))
            await backend.client.expire(counter, 60)
        return most

    return asyncio.run(main())


def hold_forever(url: str, prefix: str, lease: float) -> None:
    """Take the only slot of bulkhead "crash" and keep it until killed."""

    async def main() -> None:
        async with RedisBackend(url, prefix=prefix, lease=lease) as backend:
            await backend.bulkhead(1, name="crash").acquire()
            print("holding", flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main())


def breaker_worker(url: str, prefix: str, role: str) -> str:
    """One process of the shared-breaker test: "fail" opens it, a "watch"er then sees it open."""
    from bounded import CircuitOpen

    async def main() -> str:
        async with RedisBackend(url, prefix=prefix) as backend:
            breaker = backend.circuit_breaker("shared", minimum_calls=3, window=3, open_for=60)
            await start_together(backend, 3, 1)
            opened = f"{prefix}opened"
            if role == "fail":

                async def fail() -> None:
                    raise RuntimeError("down")

                for _ in range(3):
                    with contextlib.suppress(RuntimeError):
                        await breaker.call(fail)
                await backend.client.set(opened, "1", ex=60)
                return "opened" if breaker.state == "open" else breaker.state
            while not await backend.client.exists(opened):
                await asyncio.sleep(0.01)

            async def work() -> None:
                return None

            try:
                await breaker.call(work)
            except CircuitOpen:
                return "rejected"
            return "admitted"

    return asyncio.run(main())
