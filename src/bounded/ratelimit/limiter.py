"""RateLimiter: weighted, strictly FIFO admission at a rate, with one timer for the queue."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

from bounded import _validate
from bounded.errors import RateLimited
from bounded.ratelimit.algorithm import Algorithm
from bounded.ratelimit.checks import check_burst, check_cost, check_pace, too_costly
from bounded.ratelimit.gcra import Gcra
from bounded.ratelimit.sliding_window import SlidingWindow

__all__ = ["RateLimiter", "RateLimiterStats"]

_names = itertools.count(1)
_log = logging.getLogger("bounded.ratelimit")

AlgorithmName = Literal["gcra", "sliding_window"]

#: Timer granularity of the event loops asyncio runs on: epoll and poll wait in whole
#: milliseconds (rounded up), as does libuv (uvloop).
TIMER_RESOLUTION = 1e-3
#: How late a timer may fire and still have its admissions counted from when they were
#: due: one resolution of rounding plus as much again of wake-up delay.
LATENESS_ALLOWANCE = 2 * TIMER_RESOLUTION


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
        check_burst(burst)
        check_pace(rate, per, burst if algorithm == "gcra" else 1)
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
        _validate.positive("rate", value)
        check_pace(value, self._per, self.burst if self._algorithm_name == "gcra" else 1)
        now = self._change_time()
        self._rate = value
        self._algorithm.set_rate(value, self._per, now)
        self._serve(now)

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
        check_burst(value)
        if not isinstance(self._algorithm, Gcra):
            raise ValueError("burst applies to algorithm='gcra' only")
        check_pace(self._rate, self._per, value)
        now = self._change_time()
        self._algorithm.burst = value
        self._serve(now)

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
        if self._algorithm.try_admit(cost, _clock()):
            self._admitted_total += cost
            return True
        return False

    async def acquire(self, cost: float = 1) -> None:
        """Wait (FIFO) until `cost` units are admitted; `RateLimited` if past `max_wait`."""
        try:
            fits = 0 < cost <= self._algorithm.capacity and cost is not True
        except TypeError:  # not a number
            fits = False
        if not fits:
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
        now = self._change_time()
        self._algorithm.refund(cost, now)
        self._admitted_total = max(0.0, self._admitted_total - cost)
        self._serve(now)

    def consume(self, cost: float) -> None:
        """Count `cost` units as used now, without waiting, even beyond the limit.

        For settling a reservation that turned out too small; later requests wait
        until the debt is paid.
        """
        _validate.positive("cost", cost)
        now = self._change_time()
        self._algorithm.force(cost, now)
        self._admitted_total += cost
        self._serve(now)

    def throttle(self, remaining: float, reset_after: float) -> None:
        """A server reports only `remaining` units left for `reset_after` seconds.

        The limiter lowers what it admits to match; it never admits more because of it.
        """
        _validate.non_negative("remaining", remaining)
        _validate.non_negative("reset_after", reset_after)
        now = self._change_time()
        self._algorithm.throttle(remaining, reset_after, now)
        self._serve(now)

    def stats(self) -> RateLimiterStats:
        """Counters and current state."""
        now = _clock()
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
        check_cost(cost, self._algorithm.capacity, self._algorithm_name)

    async def _wait(self, cost: float) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        max_wait = self._max_wait
        queue_full = self._max_queue is not None and self._queued >= self._max_queue
        at = None
        if max_wait is not None or queue_full:
            at = self._projected_admission(cost, started, exact=False)
            if not queue_full and max_wait is not None and at - started > max_wait:
                # The projection may still count requests that left: check before refusing.
                at = self._projected_admission(cost, started, exact=True)
            wait = at - started
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
        self._algorithm.enqueued(cost, started, at)
        if self._timer is None:
            # No timer pending means no live waiter ahead: evaluate this one now.
            self._serve(started)
        # A live change (a throttle, a lower rate, a debt) may push the admission past
        # what was projected: `max_wait` still bounds the wait.
        expiry = (
            None
            if max_wait is None or waiter.future.done()
            else loop.call_at(started + max_wait, self._expire, waiter, max_wait)
        )
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.cancelled():
                # Left the queue without being admitted: later waiters may move up.
                self._leave(waiter)
            elif waiter.future.exception() is None:
                # Admitted just before the cancellation landed: hand the units on.
                self.refund(cost)
            raise
        finally:
            if expiry is not None:
                expiry.cancel()
        if self.wait_observer is not None:
            try:
                self.wait_observer(loop.time() - started)
            except Exception:  # observing must never cost the caller its admission
                _log.exception("wait_observer of rate limiter %r failed", self.name)

    def _leave(self, waiter: _Waiter) -> None:
        """A queued request left without being admitted: later ones may move up."""
        self._queued -= 1
        self._queued_cost -= waiter.cost
        self._algorithm.dequeued()
        if not self._queued:
            self._algorithm.drained()
        if len(self._waiters) > 2 * self._queued + 16:
            # Dead waiters pile up behind a head that waits long (a throttle, a debt)
            # while callers time out: drop them.
            self._waiters = deque(w for w in self._waiters if not w.future.done())
        self._serve(asyncio.get_running_loop().time())

    def _expire(self, waiter: _Waiter, max_wait: float) -> None:
        """`max_wait` is up for a queued request: admit it if it conforms, else refuse it."""
        now = asyncio.get_running_loop().time()
        self._serve(now, now - LATENESS_ALLOWANCE)  # as its admission timer would
        future = waiter.future
        if future.done():
            return
        retry_after = self._algorithm.admissible_at(waiter.cost, now) - now
        self._rejected_total += 1
        future.set_exception(
            RateLimited(
                self.name,
                retry_after,
                f"rate limiter {self.name!r}: not admitted within max_wait={max_wait:g}s "
                "(the limit was lowered while it waited)",
            )
        )
        self._leave(waiter)

    def _projected_admission(self, cost: float, now: float, *, exact: bool) -> float:
        def queued() -> list[float]:
            return [w.cost for w in self._waiters if not w.future.done()]

        return self._algorithm.projected_admission(
            cost, now, self._queued_cost, queued, exact=exact
        )

    def _change_time(self) -> float:
        """The time to apply a live change at, or RuntimeError before anything changes."""
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            if self._queued:
                raise RuntimeError(
                    f"rate limiter {self.name!r} has requests waiting on an event loop: "
                    "change it from that loop (loop.call_soon_threadsafe)"
                ) from None
            return _clock()

    def _on_timer(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        self._serve(now, now - LATENESS_ALLOWANCE)

    def _serve(self, now: float, since: float | None = None) -> None:
        """Admit every queued request that conforms at `now`, oldest first, then set the
        one timer for the next. `since`: how far back a late admission may be counted."""
        timer = self._timer
        if timer is not None:
            timer.cancel()
            self._timer = None
        waiters = self._waiters
        algorithm = self._algorithm
        credit_from = now if since is None else since
        while waiters:
            head = waiters[0]
            if head.future.done():
                waiters.popleft()
                continue
            cost = head.cost
            if cost > algorithm.capacity:
                # The capacity shrank below it while it waited: it can never be admitted.
                error = ValueError(too_costly(cost, algorithm.capacity, self._algorithm_name))
            elif algorithm.admit_queued(cost, now, credit_from):
                error = None
            else:
                at = algorithm.admissible_at(cost, now)
                self._timer = asyncio.get_running_loop().call_at(at, self._on_timer)
                return
            waiters.popleft()
            self._queued -= 1
            self._queued_cost -= cost
            if error is None:
                self._admitted_total += cost
                head.future.set_result(None)
            else:
                head.future.set_exception(error)
        if not self._queued:
            self._queued_cost = 0.0  # drop accumulated rounding error
            algorithm.drained()


def _clock() -> float:
    """Loop time, or outside a running loop the clock of asyncio's default loop."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()
