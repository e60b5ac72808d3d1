"""GCRA (generic cell rate algorithm): a token bucket kept as one timestamp."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

__all__ = ["Gcra"]


class Gcra:
    """Units are spaced `per / rate` apart; up to `burst` units may arrive together.

    State is the theoretical arrival time `tat`: the bucket holds
    `burst - max(tat - now, 0) / interval` units. No half-open window of length t
    admits more than `burst + t / interval` units (exactly, on a loop whose timers fire
    on time, such as a virtual-time test loop).
    """

    __slots__ = (
        "_bucket_end",
        "_burst",
        "_current",
        "_hold_until",
        "_interval",
        "_per",
        "_previous",
        "_rate",
        "_tat",
    )

    def __init__(self, rate: float, per: float, burst: float) -> None:
        self._rate = rate
        self._per = per
        self._interval = per / rate
        self._burst = burst
        self._tat = -math.inf
        # Set by `throttle(0, ...)`: until then the pause is in seconds, not in units, so
        # a rate change does not stretch it.
        self._hold_until = -math.inf
        # Units admitted in the current and previous period, for `load`.
        self._bucket_end = -math.inf
        self._current = 0.0
        self._previous = 0.0

    @property
    def capacity(self) -> float:
        return self._burst

    @property
    def burst(self) -> float:
        return self._burst

    @burst.setter
    def burst(self, value: float) -> None:
        self._burst = value

    def try_admit(self, cost: float, now: float) -> bool:
        tat = self._tat
        if now >= tat + (cost - self._burst) * self._interval:
            self._tat = (tat if tat > now else now) + cost * self._interval
            if now >= self._bucket_end:
                self._roll(now)
            self._current += cost
            return True
        return False

    def admit_queued(self, cost: float, now: float, since: float) -> bool:
        tat = self._tat
        due = tat + (cost - self._burst) * self._interval
        if now >= due:
            # Late (since < now): counted from when it was due, back to `since` or half an
            # interval, whichever is further (with unit costs, half an interval adds no
            # unit to a window of a whole number of intervals). A late timer costs no pace.
            if since < now:
                since = min(since, now - 0.5 * self._interval)
            start = due if due > since else since
            self._tat = (tat if tat > start else start) + cost * self._interval
            if now >= self._bucket_end:
                self._roll(now)
            self._current += cost
            return True
        return False

    def admissible_at(self, cost: float, now: float) -> float:
        at = self._tat + (cost - self._burst) * self._interval
        return at if at > now else now

    def projected_admission(
        self,
        cost: float,
        now: float,
        queued_cost: float,
        queued: Callable[[], Iterable[float]],
        *,
        exact: bool,
    ) -> float:
        # FIFO and every cost <= burst: the queue moves tat by exactly its total cost.
        tat = self._tat if self._tat > now else now
        at = tat + (queued_cost + cost - self._burst) * self._interval
        return at if at > now else now

    def enqueued(self, cost: float, now: float, at: float | None) -> None:
        return None

    def dequeued(self) -> None:
        return None

    def drained(self) -> None:
        return None

    def available(self, now: float) -> float:
        backlog = self._tat - now
        if backlog <= 0:
            return self._burst
        return max(0.0, self._burst - backlog / self._interval)  # 0 during a debt or pause

    def load(self, now: float) -> float:
        if now >= self._bucket_end:
            self._roll(now)
        # Sliding-window-counter estimate of the units admitted over the last period.
        elapsed = 1.0 - (self._bucket_end - now) / self._per
        estimate = self._previous * (1.0 - elapsed) + self._current
        return min(1.0, estimate / self._rate)

    def _roll(self, now: float) -> None:
        if now >= self._bucket_end + self._per:
            self._previous = 0.0
            self._bucket_end = now + self._per
        else:
            self._previous = self._current
            self._bucket_end += self._per
        self._current = 0.0

    def force(self, cost: float, now: float) -> None:
        self._tat = (self._tat if self._tat > now else now) + cost * self._interval
        if now >= self._bucket_end:
            self._roll(now)
        self._current += cost

    def refund(self, cost: float, now: float) -> None:
        if self._tat > now:
            self._tat = max(self._tat - cost * self._interval, now)
        self._current = max(0.0, self._current - cost)

    def throttle(self, remaining: float, reset_after: float, now: float) -> None:
        # `max` below is what makes this only ever lower the admissions.
        if remaining < 1:
            # Nothing left: the next unit conforms at `now + reset_after`.
            hold = now + reset_after
            target = hold + (self._burst - 1) * self._interval
            if target > self._tat:
                self._tat = target
                self._hold_until = max(self._hold_until, hold)
        else:
            self._tat = max(self._tat, now + (self._burst - remaining) * self._interval)

    def set_rate(self, rate: float, per: float, now: float) -> None:
        interval = per / rate
        if self._tat > now:
            # A throttle's pause stays a pause; the backlog after it is kept in units,
            # drained at the new pace.
            base = min(max(self._hold_until, now), self._tat)
            self._tat = base + (self._tat - base) / self._interval * interval
        self._rate = rate
        self._per = per
        self._interval = interval
