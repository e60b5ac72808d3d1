"""Sliding window: never more than `rate` units in any window of length `per`."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable

__all__ = ["RESOLUTION", "SlidingWindow"]

#: Admissions less than `per / RESOLUTION` apart share one bucket.
RESOLUTION = 1000


class SlidingWindow:
    """Admissions of the last `per` seconds, coalesced into buckets of `per / 1000`.

    A bucket `[opened_at, expires_at, cost]` holds the admissions made from `opened_at`
    until less than `per / 1000` later; it counts until `per` after its latest one
    (`expires_at`). Counting each unit a little longer than needed never lets a window
    hold more than `rate`, and it delays a unit by at most `per / 1000`. Memory is then
    bounded whatever the rate or the number of admissions: at most about 1,000 buckets
    (2,000 with `throttle`), well under 1 MiB.
    """

    __slots__ = (
        "_hold_left",
        "_hold_until",
        "_log",
        "_per",
        "_projection",
        "_rate",
        "_resolution",
        "_used",
    )

    def __init__(self, rate: float, per: float) -> None:
        self._rate = rate
        self._per = per
        self._resolution = per / RESOLUTION
        self._log: deque[list[float]] = deque()  # buckets, oldest (and first to expire) first
        self._used = 0.0  # units in the buckets
        self._projection: _Projection | None = None
        # A `throttle` whose reset lies beyond one period: until `_hold_until` at most
        # `_hold_left` more units (the buckets cover only the first period).
        self._hold_until = -math.inf
        self._hold_left = math.inf

    @property
    def capacity(self) -> float:
        return self._rate

    def _expire(self, now: float) -> None:
        log = self._log
        while log and log[0][1] <= now:
            self._used -= log.popleft()[2]
        if not log:
            self._used = 0.0  # drop accumulated rounding error

    def _record(self, cost: float, now: float) -> None:
        log = self._log
        if log and now - log[-1][0] < self._resolution:
            last = log[-1]
            last[1] = now + self._per
            last[2] += cost
        else:
            log.append([now, now + self._per, cost])
        self._used += cost

    def try_admit(self, cost: float, now: float) -> bool:
        log = self._log
        if log and log[0][1] <= now:
            self._expire(now)
        if self._used + cost <= self._rate:
            if now < self._hold_until:
                if cost > self._hold_left:
                    return False
                self._hold_left -= cost
            self._record(cost, now)
            return True
        return False

    def admit_queued(self, cost: float, now: float, since: float) -> bool:
        # A late timer only delays this admission; the units that expired meanwhile are
        # free all the same, so throughput loses one timer delay per period at most and
        # the window guarantee holds exactly on any loop.
        return self.try_admit(cost, now)

    def admissible_at(self, cost: float, now: float) -> float:
        at = self._window_admits_at(cost, now)
        if at < self._hold_until and cost > self._hold_left:
            return self._hold_until  # the window admits it then too: it only empties
        return at

    def _window_admits_at(self, cost: float, now: float) -> float:
        self._expire(now)
        used = self._used
        if used + cost <= self._rate:
            return now
        # The same arithmetic `_expire` and `try_admit` will do, so the two agree exactly.
        for bucket in self._log:
            used -= bucket[2]
            if used + cost <= self._rate:
                return bucket[1]
        return self._log[-1][1]  # everything expired: `_expire` then resets `used` to 0

    def projected_admission(
        self,
        cost: float,
        now: float,
        queued_cost: float,
        queued: Callable[[], Iterable[float]],
        *,
        exact: bool,
    ) -> float:
        projection = self._projection
        if projection is None or (exact and projection.loose):
            projection = self._projection = _Projection(self._log, self._per, self._resolution)
            for queued_one in queued():
                at = projection.admission(queued_one, now, self._rate)
                projection.add(queued_one, at, self._rate)
        at = projection.admission(cost, now, self._rate)
        if at < self._hold_until and queued_cost + cost > self._hold_left:
            return self._hold_until
        return at

    def enqueued(self, cost: float, now: float, at: float | None) -> None:
        projection = self._projection
        if projection is not None:
            if at is None:
                at = projection.admission(cost, now, self._rate)
            projection.add(cost, at, self._rate)

    def dequeued(self) -> None:
        if self._projection is not None:
            self._projection.loose = True

    def drained(self) -> None:
        self._projection = None

    def available(self, now: float) -> float:
        self._expire(now)
        free = self._rate - self._used
        if now < self._hold_until and self._hold_left < free:
            free = self._hold_left
        return max(0.0, free)

    def load(self, now: float) -> float:
        self._expire(now)
        return min(1.0, self._used / self._rate)

    def force(self, cost: float, now: float) -> None:
        if now < self._hold_until:
            self._hold_left -= cost  # used all the same: less is left until the reset
        self._expire(now)
        self._record(cost, now)
        self._projection = None

    def refund(self, cost: float, now: float) -> None:
        # Taken from the oldest buckets: windows that hold both the refunded bucket and
        # an older one count the same total either way; windows that hold only the
        # newer one count more. So a refund never makes a later window undercount.
        self._expire(now)
        self._projection = None
        log = self._log
        while cost > 0 and log:
            oldest = log[0]
            taken = min(cost, oldest[2])
            oldest[2] -= taken
            self._used -= taken
            cost -= taken
            if oldest[2] <= 0:
                log.popleft()

    def throttle(self, remaining: float, reset_after: float, now: float) -> None:
        self._expire(now)
        if reset_after > self._per:
            # Beyond one period the buckets below cannot say it: hold the rest.
            self._projection = None
            if now < self._hold_until:
                self._hold_until = max(self._hold_until, now + reset_after)
                self._hold_left = min(self._hold_left, remaining)
            else:
                self._hold_until = now + reset_after
                self._hold_left = remaining
        # Until the reset (at most one period ahead, so the log stays in time order)
        # the window must hold at least `rate - remaining`. Buckets that expire before
        # the reset do not help: a phantom bucket expiring at the reset makes up the rest.
        reset_at = min(now + reset_after, now + self._per)
        log = self._log
        surviving = sum(bucket[2] for bucket in log if bucket[1] > reset_at)
        missing = (self._rate - remaining) - surviving
        if missing <= 0:
            return
        self._projection = None
        index = len(log)
        while index and log[index - 1][1] > reset_at:
            index -= 1
        admitted_at = reset_at - self._per
        before = log[index - 1] if index else None
        if before is not None and admitted_at - before[0] < self._resolution:
            before[1] = reset_at  # it expired no later: counting it longer is safe
            before[2] += missing
        else:
            log.insert(index, [admitted_at, reset_at, missing])
        self._used += missing

    def set_rate(self, rate: float, per: float, now: float) -> None:
        self._rate = rate
        self._per = per
        self._resolution = per / RESOLUTION
        self._projection = None
        self._expire(now)


class _Projection:
    """When the queued requests will be admitted, kept as the queue grows.

    Entries are the window's buckets, then the queue's projected admissions, in expiry
    order: `expires[i]` and `cumulative[i]`, the cost of entries 0..i. A request of cost
    c fits once `total + c - rate` units have expired: a bisection of `cumulative`. The
    units needed only grow, so entries before the last answer are dropped as it moves.
    """

    __slots__ = (
        "cumulative",
        "expires",
        "loose",
        "opened",
        "per",
        "resolution",
        "start",
        "tail",
        "total",
    )

    def __init__(self, log: deque[list[float]], per: float, resolution: float) -> None:
        self.per = per
        self.resolution = resolution
        self.expires = [bucket[1] for bucket in log]
        self.cumulative: list[float] = []
        total = 0.0
        for bucket in log:
            total += bucket[2]
            self.cumulative.append(total)
        self.total = total
        self.start = 0  # entries before it are never an answer again
        self.tail = -math.inf  # projected admission of the last queued request
        self.opened = -math.inf  # projected admission that opened the last entry
        # Some request counted here left the queue: answers may be late, never early.
        self.loose = False

    def admission(self, cost: float, now: float, rate: float) -> float:
        at = self.tail if self.tail > now else now
        needed = self.total + cost - rate
        if needed <= 0:
            return at
        index = bisect_left(self.cumulative, needed, self.start)
        if index == len(self.cumulative):
            index -= 1  # rounding: the last entry frees everything
        expires = self.expires[index]
        return expires if expires > at else at

    def add(self, cost: float, at: float, rate: float) -> None:
        self.total += cost
        self.tail = at
        if self.expires and at - self.opened < self.resolution:
            self.expires[-1] = at + self.per
            self.cumulative[-1] = self.total
        else:
            self.expires.append(at + self.per)
            self.cumulative.append(self.total)
            self.opened = at
        # Every later request needs more than `total - rate` units expired.
        if self.total > rate:
            self.start = bisect_left(self.cumulative, self.total - rate, self.start)
        if self.start > 64 and self.start * 2 > len(self.expires):
            del self.expires[: self.start]
            del self.cumulative[: self.start]
            self.start = 0
