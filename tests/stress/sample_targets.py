"""Targets the CLI tests load by name (``tests.stress.sample_targets:...``)."""

from __future__ import annotations

import asyncio
import os
import random

from bounded import Bulkhead
from bounded.monitor import ConcurrencyMonitor

bulkhead = Bulkhead(limit=4, name="sample")
monitor = ConcurrencyMonitor()
monitor.register("bulkhead", "sample", bulkhead)


async def quick(index: int, rng: random.Random) -> None:
    """Answers within a millisecond, through a bulkhead the monitor watches."""
    async with bulkhead:
        await asyncio.sleep(rng.random() / 1000)


async def failing(index: int, rng: random.Random) -> None:
    """Every call times out."""
    raise TimeoutError


def not_async(index: int, rng: random.Random) -> None:
    """Not a coroutine function: rejected as a target."""


async def slow(index: int, rng: random.Random) -> None:
    """Takes half a second."""
    await asyncio.sleep(0.5)


async def through_proxy(index: int, rng: random.Random) -> None:
    """One echo round trip through 127.0.0.1:$STRESS_PROXY_PORT, 0.5 s at most."""
    # Generous for a loopback echo: on a loaded machine a slow round trip after the
    # fault must not read as "not recovered".
    async with asyncio.timeout(0.5):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", int(os.environ["STRESS_PROXY_PORT"])
        )
        try:
            writer.write(b"hi")
            await reader.readexactly(2)
        finally:
            writer.close()
