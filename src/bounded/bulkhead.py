"""Bulkhead: a named concurrency limit with a bounded FIFO queue and a wait deadline."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from bounded import _validate
from bounded.errors import BulkheadFull

__all__ = ["Bulkhead", "BulkheadStats"]

_names = itertools.count(1)
_log = logging.getLogger("bounded.bulkhead")


@dataclass(frozen=True, slots=True)
class BulkheadStats:
    """A point-in-time view of a bulkhead."""

    name: str
    limit: int
    in_use: int
    queued: int
    utilization: float
    acquired_total: int
    rejected_total: int


class Bulkhead:
    """At most `limit` holders at once; waiters are served strictly first-in first-out.

    `max_queue` bounds the number of waiters (beyond it: `BulkheadFull` at once) and
    `max_wait` bounds how long one waits (then: `BulkheadFull`). `limit`, `max_queue`
    and `max_wait` can be changed live; shrinking the limit never interrupts holders.
    A waiter cancelled after being granted a slot hands the slot to the next waiter.
    """

    __slots__ = (
        "_acquired_total",
        "_in_use",
        "_limit",
        "_max_queue",
        "_max_wait",
        "_queued",
        "_rejected_total",
        "_waiters",
        "name",
        "wait_observer",
    )

    def __init__(
        self,
        limit: int = 10,
        *,
        name: str | None = None,
        max_queue: int | None = None,
        max_wait: float | None = None,
    ) -> None:
        self._limit = _validate.positive_int("limit", limit)
        self._max_queue = _validate.optional_count("max_queue", max_queue)
        self._max_wait = _validate.optional_non_negative("max_wait", max_wait)
        self.name = name if name is not None else f"bulkhead-{next(_names)}"
        self._in_use = 0
        # Futures of waiting acquirers, oldest first. Finished ones (cancelled, timed
        # out) are skipped when a slot is handed on, so leaving the queue is O(1).
        self._waiters: deque[asyncio.Future[None]] = deque()
        # Waiters neither granted, expired nor cancelled (a cancelled one counts until it
        # resumes): what stats and max_queue report. Never consulted to grant a slot.
        self._queued = 0
        self._acquired_total = 0
        self._rejected_total = 0
        #: Called with the seconds waited, each time an acquire had to queue.
        self.wait_observer: Callable[[float], None] | None = None

    def __repr__(self) -> str:
        return f"<Bulkhead {self.name!r} in_use={self._in_use}/{self._limit} queued={self._queued}>"

    @property
    def limit(self) -> int:
        """The number of concurrent holders allowed; assign to resize live."""
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        self._limit = _validate.positive_int("limit", value)
        self._wake()

    @property
    def max_queue(self) -> int | None:
        """The most waiters allowed to queue (None: unbounded)."""
        return self._max_queue

    @max_queue.setter
    def max_queue(self, value: int | None) -> None:
        self._max_queue = _validate.optional_count("max_queue", value)

    @property
    def max_wait(self) -> float | None:
        """The longest a waiter queues before `BulkheadFull` (None: forever)."""
        return self._max_wait

    @max_wait.setter
    def max_wait(self, value: float | None) -> None:
        self._max_wait = _validate.optional_non_negative("max_wait", value)

    @property
    def in_use(self) -> int:
        """The number of slots held now."""
        return self._in_use

    # Invariant: while a slot is free, no live waiter is queued. Waiters queue only when
    # every slot is taken, and whatever frees a slot (`release`, a larger `limit`) hands
    # it to the oldest live waiter at once. So a free slot is always the caller's to take,
    # without overtaking anyone (unlike a check of the queue length, which still counts
    # waiters that were cancelled or granted but have not resumed yet).

    def locked(self) -> bool:
        """True when an acquire would have to wait."""
        return self._in_use >= self._limit

    def try_acquire(self) -> bool:
        """Take a slot if one is free (nobody is then waiting); never waits."""
        if self._in_use < self._limit:
            self._in_use += 1
            self._acquired_total += 1
            return True
        return False

    async def acquire(self) -> None:
        """Take a slot, waiting in FIFO order; `BulkheadFull` if the queue or wait is capped."""
        if self._in_use < self._limit:
            self._in_use += 1
            self._acquired_total += 1
            return
        await self._wait_for_slot()

    def release(self) -> None:
        """Give back a slot; it goes to the oldest waiter, if any."""
        if self._in_use <= 0:
            raise RuntimeError(f"bulkhead {self.name!r} released more often than acquired")
        self._in_use -= 1
        if self._waiters:
            self._wake()

    async def __aenter__(self) -> None:
        if self._in_use < self._limit:
            self._in_use += 1
            self._acquired_total += 1
            return
        await self._wait_for_slot()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def stats(self) -> BulkheadStats:
        """Counters and current occupancy."""
        return BulkheadStats(
            name=self.name,
            limit=self._limit,
            in_use=self._in_use,
            queued=self._queued,
            utilization=self._in_use / self._limit,
            acquired_total=self._acquired_total,
            rejected_total=self._rejected_total,
        )

    def _reject(self, reason: str) -> BulkheadFull:
        self._rejected_total += 1
        return BulkheadFull(self.name, None, f"bulkhead {self.name!r} is full: {reason}")

    async def _wait_for_slot(self) -> None:
        max_wait = self._max_wait
        if self._max_queue is not None and self._queued >= self._max_queue:
            raise self._reject(f"{self._queued} waiters already queued (max_queue)")
        if max_wait == 0:
            raise self._reject("no slot free and max_wait is 0")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.append(future)
        self._queued += 1
        started = loop.time()
        timer = None if max_wait is None else loop.call_at(started + max_wait, self._expire, future)
        try:
            await future
        except asyncio.CancelledError:
            if future.cancelled():
                self._queued -= 1  # left the queue before any grant
            elif future.exception() is None:
                # Granted just before the cancellation landed: pass the slot on.
                self.release()
            raise
        except BulkheadFull:
            raise self._reject(f"no slot within max_wait={max_wait}s") from None
        finally:
            if timer is not None:
                timer.cancel()
            if len(self._waiters) > 2 * self._queued + 16:
                # Dead waiters pile up while no slot frees (a stuck holder): drop them.
                self._waiters = deque(f for f in self._waiters if not f.done())
        self._acquired_total += 1
        if self.wait_observer is not None:
            try:
                self.wait_observer(loop.time() - started)
            except Exception:  # observing must never cost the caller its slot
                _log.exception("wait_observer of bulkhead %r failed", self.name)

    def _wake(self) -> None:
        """Grant free slots to the oldest live waiters."""
        waiters = self._waiters
        while waiters and self._in_use < self._limit:
            future = waiters.popleft()
            if not future.done():
                self._in_use += 1
                self._queued -= 1
                future.set_result(None)

    def _expire(self, future: asyncio.Future[None]) -> None:
        if not future.done():
            self._queued -= 1
            # Replaced by a fully described BulkheadFull in the waiter.
            future.set_exception(BulkheadFull(self.name, None))
