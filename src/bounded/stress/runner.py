"""Drive a target with load: the open model (arrival rate) and the closed model (users).

Open model: request ``i`` is due at its intended start from the `Schedule`; latency is
measured from that intended start, so a stall of the target or of the generator shows
in every request it delayed (coordinated omission corrected, as wrk2 and k6's
arrival-rate executors do). A request due while `max_in_flight` are running is dropped
and counted. How late the generator started each request is reported as `lateness`.

Closed model: `users` virtual users each call the target, wait `think_time`, and call
again until the duration is over; latency is measured from the actual start.

Every scheduled request ends as exactly one of succeeded, failed (classified) or dropped;
requests still running `grace` seconds after the end are cancelled and count as timeouts.
All timing reads the event loop's clock, so runs are exact on a virtual-time loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from bounded._validate import non_negative, optional_positive, positive, positive_int
from bounded.stress.accounting import IntervalStats, Tally
from bounded.stress.result import RunResult
from bounded.stress.schedule import Schedule
from bounded.stress.targets import Call

__all__ = ["Sampler", "run_closed", "run_open"]

logger = logging.getLogger("bounded.stress")

#: Called once per interval; returns the resource figures attached to that interval.
Sampler = Callable[[], Awaitable[dict[str, Any]]]

# A burst of overdue arrivals yields to the loop this often, so ticks and requests run.
_YIELD_EVERY = 64


class _GraceExpired(TimeoutError):
    """Still running when the run's grace period ended."""


@dataclass
class _Run:
    call: Call
    seed: int
    interval: float
    timeout: float | None
    grace: float
    sampler: Sampler | None
    on_interval: Callable[[IntervalStats], None] | None
    tally: Tally = field(default_factory=Tally)
    timeline: list[IntervalStats] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    unsampled: list[IntervalStats] = field(default_factory=list)
    t0: float = 0.0
    next_boundary: float = 0.0

    async def one(self, index: int, intended: float) -> None:
        """Run request `index` and account for how it ended. Never raises but cancellation."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.tally.start(started - intended)
        rng = random.Random((self.seed << 40) + index)
        try:
            if self.timeout is None:
                await self.call(index, rng)
            else:
                async with asyncio.timeout(self.timeout):
                    await self.call(index, rng)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                self.tally.fail(_GraceExpired("cancelled at the end of the grace period"))
                raise
            # Raised inside the target without anyone cancelling this request: its error.
            self.tally.fail(exc)
        except Exception as exc:
            self.tally.fail(exc)
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: count, then let go
            self.tally.fail(exc)
            raise
        else:
            end = loop.time()
            self.tally.succeed(end - intended, end - started)

    def track(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def roll(self, now: float) -> None:
        """Close every interval that ended at or before `now` (sampled later by the ticker)."""
        while self.next_boundary <= now:
            end = self.next_boundary
            stats = self.tally.checkpoint(end - self.interval - self.t0, end - self.t0)
            self.timeline.append(stats)
            self.unsampled.append(stats)
            self.next_boundary += self.interval

    async def report(self) -> None:
        """Attach percentiles and resource figures to the intervals just closed; pass them on."""
        self.tally.settle()
        while self.unsampled:
            stats = self.unsampled.pop(0)
            if self.sampler is not None:
                try:
                    stats.resources = await self.sampler()
                except Exception:
                    logger.warning("resource sampling failed", exc_info=True)
            if self.on_interval is not None:
                self.on_interval(stats)

    async def ticker(self) -> None:
        loop = asyncio.get_running_loop()
        for n in itertools.count(1):
            await asyncio.sleep(max(0.0, self.t0 + n * self.interval - loop.time()))
            self.roll(loop.time())
            await self.report()

    async def finish(self, ticker: asyncio.Task[None], grace: float | None = None) -> float:
        """Wait up to `grace` for what is in flight, cancel the rest, close the last interval."""
        if self.tasks:
            wait = self.grace if grace is None else grace
            _, pending = await asyncio.wait(set(self.tasks), timeout=wait)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        end = asyncio.get_running_loop().time()
        self.roll(end)
        last = self.next_boundary - self.interval
        if end > last or not self.timeline:
            stats = self.tally.checkpoint(last - self.t0, end - self.t0)
            self.timeline.append(stats)
            self.unsampled.append(stats)
        await self.report()
        return end - self.t0

    def result(self, model: str, elapsed: float, config: dict[str, Any]) -> RunResult:
        return RunResult.from_tally(
            self.tally,
            self.timeline,
            model=model,
            elapsed=elapsed,
            config=config,
            started_at=self.t0,
        )


def _check_common(interval: float, request_timeout: float | None, grace: float) -> None:
    positive("interval", interval)
    optional_positive("request_timeout", request_timeout)
    non_negative("grace", grace)


async def run_open(
    call: Call,
    schedule: Schedule,
    *,
    max_in_flight: int = 1000,
    seed: int = 0,
    interval: float = 1.0,
    request_timeout: float | None = None,
    grace: float = 30.0,
    sampler: Sampler | None = None,
    on_interval: Callable[[IntervalStats], None] | None = None,
) -> RunResult:
    """Call `call` at the arrival times of `schedule` (open model) and account for each request.

    `request_timeout` bounds each call (a `TimeoutError`, counted as "timeout"); `grace` is how long
    the run waits after the schedule ends for requests still in flight.
    """
    positive_int("max_in_flight", max_in_flight)
    _check_common(interval, request_timeout, grace)
    loop = asyncio.get_running_loop()
    run = _Run(call, seed, interval, request_timeout, grace, sampler, on_interval)
    run.t0 = loop.time()
    run.next_boundary = run.t0 + interval
    ticker = loop.create_task(run.ticker())
    burst = 0
    try:
        for index, offset in enumerate(schedule.arrivals()):
            intended = run.t0 + offset
            now = loop.time()
            if intended > now:
                await asyncio.sleep(intended - now)
                burst = 0
            else:
                burst += 1
                if burst % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
            run.roll(intended)
            run.tally.schedule()
            if run.tally.in_flight >= max_in_flight:
                run.tally.drop()
            else:
                run.tally.dispatch()
                run.track(run.one(index, intended))
        # Let the clock reach the schedule's end even if the last arrival came earlier.
        await asyncio.sleep(max(0.0, run.t0 + schedule.duration - loop.time()))
    except BaseException:
        await run.finish(ticker, grace=0.0)
        raise
    elapsed = await run.finish(ticker)
    config = {
        "schedule": {
            "segments": [[s.duration, s.start_rate, s.end_rate] for s in schedule.segments],
            "poisson": schedule.poisson,
        },
        "max_in_flight": max_in_flight,
        "seed": seed,
        "interval": interval,
        "request_timeout": request_timeout,
        "grace": grace,
    }
    return run.result("open", elapsed, config)


async def run_closed(
    call: Call,
    *,
    users: int,
    duration: float | None = None,
    iterations: int | None = None,
    think_time: float = 0.0,
    seed: int = 0,
    interval: float = 1.0,
    request_timeout: float | None = None,
    grace: float = 30.0,
    sampler: Sampler | None = None,
    on_interval: Callable[[IntervalStats], None] | None = None,
) -> RunResult:
    """`users` virtual users call `call` back to back (with `think_time` between).

    The run stops after `duration` seconds or once `iterations` calls were made in all,
    whichever comes first (at least one must be given). Latency is measured from each
    call's actual start (the closed model has no intended start), so a slow target lowers
    the request rate instead of showing in latency.
    """
    positive_int("users", users)
    if duration is None and iterations is None:
        raise ValueError("duration or iterations must be given")
    if duration is not None:
        positive("duration", duration)
    if iterations is not None:
        positive_int("iterations", iterations)
    non_negative("think_time", think_time)
    _check_common(interval, request_timeout, grace)
    loop = asyncio.get_running_loop()
    run = _Run(call, seed, interval, request_timeout, grace, sampler, on_interval)
    run.t0 = loop.time()
    run.next_boundary = run.t0 + interval
    end = run.t0 + duration if duration is not None else math.inf
    remaining = iterations if iterations is not None else math.inf
    counter = itertools.count()

    async def user() -> None:
        nonlocal remaining
        while loop.time() < end and remaining > 0:
            remaining -= 1
            run.tally.schedule()
            run.tally.dispatch()
            await run.one(next(counter), loop.time())
            # A target that never yields must not starve the other users and the ticker.
            await asyncio.sleep(think_time)

    ticker = loop.create_task(run.ticker())
    try:
        for _ in range(users):
            run.track(user())
        if duration is not None:
            await asyncio.sleep(duration)
        else:
            await asyncio.wait(set(run.tasks))
    except BaseException:
        await run.finish(ticker, grace=0.0)
        raise
    elapsed = await run.finish(ticker)
    config = {
        "users": users,
        "duration": duration,
        "iterations": iterations,
        "think_time": think_time,
        "seed": seed,
        "interval": interval,
        "request_timeout": request_timeout,
        "grace": grace,
    }
    return run.result("closed", elapsed, config)
