"""RateLimiter: weighted, strictly FIFO admission at a rate, with one timer for the queue."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

from bounded import _validate
from bounded.errors import RateLimited
from bounded.ratelimit.algorithm import Algorithm
from bounded.ratelimit.gcra import Gcra
from bounded.ratelimit.sliding_window import SlidingWindow

__all__ = ["RateLimiter", "RateLimiterStats"]

_names = itertools.count(1)

AlgorithmName = Literal["gcra", "sliding_window"]


@dataclass(frozen=True, slots=True)
class RateLimiterStats:
    """A point-in-time view of a rate limiter."""

    name: str
    rate: float
    per: float
    available: float
    queued: int
    admitted_total: float
    rejected_total: int
    utilization: float


class _Waiter:
    __slots__ = ("cost", "future")

    def __init__(self, cost: float, future: asyncio.Future[None]) -> None:
        self.cost = cost
        self.future = future


class RateLimiter:
    """Admits at most `rate` units per `per` seconds, waiters served first-in first-out.

    `algorithm="gcra"` spaces units evenly and allows bursts of `burst` units: no
    half-open window of length t admits more than `burst + rate * t / per`.
    `algorithm="sliding_window"` admits at most `rate` units in any window of `per`.
    A heavy request queued first is admitted first (no queue-skipping by lighter ones).
    With `max_wait`, a request whose wait would exceed it is refused at once with
    `RateLimited(retry_after=<the wait>)`; with `max_queue`, so is a request that
    finds that many already waiting.
    """

    __slots__ = (
        "_admitted_total",
        "_algorithm",
        "_algorithm_name",
        "_max_queue",
        "_max_wait",
        "_per",
        "_queued",
        "_queued_cost",
        "_rate",
        "_rejected_total",
        "_timer",
        "_waiters",
        "name",
        "wait_observer",
    )

    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        *,
        name: str | None = None,
        burst: float = 1,
        algorithm: AlgorithmName = "gcra",
        max_wait: float | None = None,
        max_queue: int | None = None,
    ) -> None:
        self._rate = _validate.positive("rate", rate)
        self._per = _validate.positive("per", per)
        _check_burst(burst)
        self._max_wait = _validate.optional_non_negative("max_wait", max_wait)
        self._max_queue = _validate.optional_count("max_queue", max_queue)
        self._algorithm: Algorithm
        if algorithm == "gcra":
            self._algorithm = Gcra(rate, per, burst)
        elif algorithm == "sliding_window":
            self._algorithm = SlidingWindow(rate, per)
        else:
            raise ValueError(f"algorithm must be 'gcra' or 'sliding_window', got {algorithm!r}")
        self._algorithm_name: AlgorithmName = algorithm
        self.name = name if name is not None else f"rate-limiter-{next(_names)}"
        self._waiters: deque[_Waiter] = deque()
        self._queued = 0
        self._queued_cost = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._admitted_total = 0.0
        self._rejected_total = 0
        #: Called with the seconds waited, each time an acquire had to queue.
        self.wait_observer: Callable[[float], None] | None = None

    def __repr__(self) -> str:
        return (
            f"<RateLimiter {self.name!r} {self._rate:g}/{self._per:g}s "
            f"{self._algorithm_name} queued={self._queued}>"
        )

    @property
    def algorithm(self) -> AlgorithmName:
        """Which algorithm admits requests."""
        return self._algorithm_name

    @property
    def rate(self) -> float:
        """Units admitted per `per` seconds; assign to change live."""
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        self._rate = _validate.positive("rate", value)
        self._algorithm.set_rate(self._rate, self._per, _now())
        self._reschedule()

    @property
    def per(self) -> float:
        """The period, in seconds, that `rate` refers to."""
        return self._per

    @property
    def burst(self) -> float:
        """The most units admitted at once (gcra); the whole rate for sliding_window."""
        return self._algorithm.capacity

    @burst.setter
    def burst(self, value: float) -> None:
        _check_burst(value)
        if not isinstance(self._algorithm, Gcra):
            raise ValueError("burst applies to algorithm='gcra' only")
        self._algorithm.burst = value
        self._reschedule()

    @property
    def max_wait(self) -> float | None:
        """The longest an acquire may wait before `RateLimited` (None: forever)."""
        return self._max_wait

    @max_wait.setter
    def max_wait(self, value: float | None) -> None:
        self._max_wait = _validate.optional_non_negative("max_wait", value)

    @property
    def max_queue(self) -> int | None:
        """The most requests allowed to wait (None: unbounded)."""
        return self._max_queue

    @max_queue.setter
    def max_queue(self, value: int | None) -> None:
        self._max_queue = _validate.optional_count("max_queue", value)

    def try_acquire(self, cost: float = 1) -> bool:
        """Admit `cost` units if they conform now and nobody is queued; never waits."""
        self._check_cost(cost)
        if self._queued:
            return False
        if self._algorithm.try_admit(cost, _now()):
            self._admitted_total += cost
            return True
        return False

    async def acquire(self, cost: float = 1) -> None:
        """Wait (FIFO) until `cost` units are admitted; `RateLimited` if past `max_wait`."""
        if not 0 < cost <= self._algorithm.capacity:
            self._check_cost(cost)
        if not self._queued and self._algorithm.try_admit(cost, asyncio.get_running_loop().time()):
            self._admitted_total += cost
            return
        await self._wait(cost)

    async def __aenter__(self) -> None:
        if not self._queued and self._algorithm.try_admit(1, asyncio.get_running_loop().time()):
            self._admitted_total += 1
            return
        self._check_cost(1)
        await self._wait(1)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def refund(self, cost: float) -> None:
        """Give back `cost` unused units (never above the burst capacity)."""
        _validate.positive("cost", cost)
        self._algorithm.refund(cost, _now())
        self._admitted_total = max(0.0, self._admitted_total - cost)
        self._reschedule()

    def consume(self, cost: float) -> None:
        """Count `cost` units as used now, without waiting, even beyond the limit.

        For settling a reservation that turned out too small; later requests wait
        until the debt is paid.
        """
        _validate.positive("cost", cost)
        self._algorithm.force(cost, _now())
        self._admitted_total += cost
        self._reschedule()

    def throttle(self, remaining: float, reset_after: float) -> None:
        """A server reports only `remaining` units left for `reset_after` seconds.

        The limiter lowers what it admits to match; it never admits more because of it.
        """
        _validate.non_negative("remaining", remaining)
        _validate.non_negative("reset_after", reset_after)
        self._algorithm.throttle(remaining, reset_after, _now())
        self._reschedule()

    def stats(self) -> RateLimiterStats:
        """Counters and current state."""
        now = _stats_now()
        utilization = 1.0 if self._queued else self._algorithm.load(now)
        return RateLimiterStats(
            name=self.name,
            rate=self._rate,
            per=self._per,
            available=self._algorithm.available(now),
            queued=self._queued,
            admitted_total=self._admitted_total,
            rejected_total=self._rejected_total,
            utilization=utilization,
        )

    def _check_cost(self, cost: float) -> None:
        _validate.positive("cost", cost)
        capacity = self._algorithm.capacity
        if cost > capacity:
            what = "burst" if self._algorithm_name == "gcra" else "rate"
            raise ValueError(
                f"cost must be <= the limiter's capacity ({what}={capacity:g}), got {cost!r}; "
                "such a request could never be admitted"
            )

    async def _wait(self, cost: float) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        max_wait = self._max_wait
        queue_full = self._max_queue is not None and self._queued >= self._max_queue
        if max_wait is not None or queue_full:
            queued = (w.cost for w in self._waiters if not w.future.done())
            wait = self._algorithm.projected_admission(queued, cost, started) - started
            if queue_full:
                reason = f"{self._queued} requests already queued (max_queue)"
            elif max_wait is not None and wait > max_wait:
                reason = f"the wait would be {wait:.3f}s (max_wait={max_wait:g}s)"
            else:
                reason = ""
            if reason:
                self._rejected_total += 1
                raise RateLimited(self.name, wait, f"rate limiter {self.name!r}: {reason}")
        waiter = _Waiter(cost, loop.create_future())
        self._waiters.append(waiter)
        self._queued += 1
        self._queued_cost += cost
        if self._timer is None:
            # No timer pending means no live waiter ahead: evaluate this one now.
            self._reschedule()
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.cancelled():
                # Left the queue without being admitted: later waiters may move up.
                self._queued_cost -= cost
                self._reschedule()
            else:
                # Admitted just before the cancellation landed: hand the units on.
                self.refund(cost)
            raise
        finally:
            self._queued -= 1
        if self.wait_observer is not None:
            self.wait_observer(loop.time() - started)

    def _on_timer(self) -> None:
        self._timer = None
        self._reschedule(late=True)

    def _reschedule(self, *, late: bool = False) -> None:
        """Admit what conforms now and set the one timer for the head of the queue."""
        timer = self._timer
        if timer is not None:
            timer.cancel()
            self._timer = None
        waiters = self._waiters
        if not waiters:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        algorithm = self._algorithm
        while waiters:
            head = waiters[0]
            if head.future.done():
                waiters.popleft()
                continue
            admitted = (
                algorithm.try_admit_late(head.cost, now)
                if late
                else algorithm.try_admit(head.cost, now)
            )
            if not admitted:
                self._timer = loop.call_at(algorithm.admissible_at(head.cost, now), self._on_timer)
                return
            waiters.popleft()
            self._queued_cost -= head.cost
            self._admitted_total += head.cost
            head.future.set_result(None)


def _now() -> float:
    return asyncio.get_running_loop().time()


def _stats_now() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        # No loop running (a synchronous caller): asyncio's default loop clock.
        return time.monotonic()


def _check_burst(burst: float) -> None:
    _validate.positive("burst", burst)
    if burst < 1:
        raise ValueError(f"burst must be >= 1 (one unit must fit), got {burst!r}")
