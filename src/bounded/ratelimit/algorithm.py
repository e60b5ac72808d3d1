"""The interface a rate-limiting algorithm offers to `RateLimiter`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol


class Algorithm(Protocol):
    """Admission state of one limiter. Times are loop times; costs are units > 0.

    `admissible_at` and `try_admit` must agree exactly: at any `now >= admissible_at(c)`
    (with no state change in between) `try_admit(c, now)` succeeds, so a timer set for
    that instant never spins. Every method is O(1) or O(log n) except where it says.
    """

    @property
    def capacity(self) -> float:
        """The largest cost that can ever be admitted."""
        ...

    def try_admit(self, cost: float, now: float) -> bool:
        """Admit `cost` units now if they conform; never waits."""
        ...

    def admit_queued(self, cost: float, now: float, since: float) -> bool:
        """`try_admit` for the head of the queue, whose timer may have fired late.

        If it conformed before `now` and `since < now` (a timer fired late), it may be
        counted from when it conformed, but not from before `since` (an algorithm may
        allow more, and says so): the limiter keeps pace with a loop whose timers fire
        late. With `since == now` it is exactly `try_admit`.
        """
        ...

    def admissible_at(self, cost: float, now: float) -> float:
        """The earliest time (>= now) at which `cost` units would conform."""
        ...

    def projected_admission(
        self,
        cost: float,
        now: float,
        queued_cost: float,
        queued: Callable[[], Iterable[float]],
        *,
        exact: bool,
    ) -> float:
        """When `cost` would be admitted after the queue (FIFO), whose costs sum to
        `queued_cost`. `queued()` lists them, oldest first, if the algorithm must rebuild
        a projection (then O(queue), else O(log queue)). Not `exact`: the projection may
        still count requests that left the queue (it is then late, never early)."""
        ...

    def enqueued(self, cost: float, now: float, at: float | None) -> None:
        """A request of `cost` joined the queue, projected (if known) to be admitted `at`."""
        ...

    def dequeued(self) -> None:
        """A queued request left without being admitted (cancelled)."""
        ...

    def drained(self) -> None:
        """Nobody is queued any more: forget any projection of the queue."""
        ...

    def available(self, now: float) -> float:
        """Units that could be admitted at once."""
        ...

    def load(self, now: float) -> float:
        """Fraction of the allowed rate used recently (0..1)."""
        ...

    def force(self, cost: float, now: float) -> None:
        """Count `cost` units as admitted now even if they do not conform (debt)."""
        ...

    def refund(self, cost: float, now: float) -> None:
        """Give back up to `cost` units admitted earlier, never above the capacity."""
        ...

    def throttle(self, remaining: float, reset_after: float, now: float) -> None:
        """Admit at most `remaining` units until `now + reset_after` (only ever lowers)."""
        ...

    def set_rate(self, rate: float, per: float, now: float) -> None:
        """Change the rate, keeping what has been admitted so far."""
        ...
