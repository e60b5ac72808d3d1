"""Targets the CLI tests load by name (``tests.stress.sample_targets:...``)."""

from __future__ import annotations

import asyncio
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
