"""Sliding log: never more than `rate` units in any window of length `per`."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

__all__ = ["SlidingWindow"]


class SlidingWindow:
    """Keeps one entry per admission instant (not per unit) for the last `per` seconds.

    Memory is bounded by the number of admissions in one period (at most
    `rate / smallest cost`), so a 2M-tokens-per-minute limit with 1,000-token calls
    holds 2,000 entries. An entry admitted at `ts` counts in windows `(t - per, t]`
    and stops counting at `ts + per`.
    """

    __slots__ = ("_log", "_per", "_rate", "_used")

    def __init__(self, rate: float, per: float) -> None:
        self._rate = rate
        self._per = per
        self._log: deque[list[float]] = deque()  # [admitted_at, cost], oldest first
        self._used = 0.0

    @property
    def capacity(self) -> float:
        return self._rate

    def _expire(self, now: float) -> None:
        log = self._log
        per = self._per
        while log and log[0][0] + per <= now:
            self._used -= log.popleft()[1]
        if not log:
            self._used = 0.0  # drop accumulated rounding error

    def _record(self, cost: float, now: float) -> None:
        log = self._log
        if log and log[-1][0] == now:
            log[-1][1] += cost
        else:
            log.append([now, cost])
        self._used += cost

    def try_admit(self, cost: float, now: float) -> bool:
        self._expire(now)
        if self._used + cost <= self._rate:
            self._record(cost, now)
            return True
        return False

    def try_admit_late(self, cost: float, now: float) -> bool:
        # Lateness costs at most one timer delay per period here: nothing to credit.
        return self.try_admit(cost, now)

    def admissible_at(self, cost: float, now: float) -> float:
        self._expire(now)
        excess = self._used + cost - self._rate
        if excess <= 0:
            return now
        # The window must shed `excess` units: wait for the oldest entries to expire.
        freed = 0.0
        for admitted_at, entry_cost in self._log:
            freed += entry_cost
            if freed >= excess:
                return admitted_at + self._per
        return now  # unreachable while cost <= rate

    def projected_admission(self, queued: Iterable[float], cost: float, now: float) -> float:
        self._expire(now)
        window = deque((entry[0], entry[1]) for entry in self._log)
        used = self._used
        at = now
        per = self._per
        for next_cost in (*queued, cost):
            while window and window[0][0] + per <= at:
                used -= window.popleft()[1]
            while used + next_cost > self._rate and window:
                admitted_at, entry_cost = window.popleft()
                at = max(at, admitted_at + per)
                used -= entry_cost
            window.append((at, next_cost))
            used += next_cost
        return at

    def available(self, now: float) -> float:
        self._expire(now)
        return max(0.0, self._rate - self._used)

    def load(self, now: float) -> float:
        self._expire(now)
        return min(1.0, self._used / self._rate)

    def force(self, cost: float, now: float) -> None:
        self._expire(now)
        self._record(cost, now)

    def refund(self, cost: float, now: float) -> None:
        # Taken from the oldest entries: windows that hold both the refunded entry and
        # an older one count the same total either way; windows that hold only the
        # newer one count more. So a refund never makes a later window undercount.
        self._expire(now)
        log = self._log
        while cost > 0 and log:
            oldest = log[0]
            taken = min(cost, oldest[1])
            oldest[1] -= taken
            self._used -= taken
            cost -= taken
            if oldest[1] <= 0:
                log.popleft()

    def throttle(self, remaining: float, reset_after: float, now: float) -> None:
        self._expire(now)
        # Until the reset (at most one period ahead, so the log stays in time order)
        # the window must hold at least `rate - remaining`. Entries that expire before
        # the reset do not help: a phantom admission expiring at the reset makes up the rest.
        reset_at = min(now + reset_after, now + self._per)
        at = reset_at - self._per
        surviving = sum(cost for admitted_at, cost in self._log if admitted_at > at)
        missing = (self._rate - remaining) - surviving
        if missing <= 0:
            return
        log = self._log
        index = len(log)
        while index and log[index - 1][0] > at:
            index -= 1
        log.insert(index, [at, missing])
        self._used += missing

    def set_rate(self, rate: float, per: float, now: float) -> None:
        self._rate = rate
        self._per = per
        self._expire(now)
