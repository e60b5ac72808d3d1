"""The interface a rate-limiting algorithm offers to `RateLimiter`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class Algorithm(Protocol):
    """Admission state of one limiter. Times are loop times; costs are units > 0.

    `admissible_at` and `try_admit` must agree exactly: at any `now >= admissible_at(c)`
    (with no state change in between) `try_admit(c, now)` succeeds, so a timer set for
    that instant never spins.
    """

    @property
    def capacity(self) -> float:
        """The largest cost that can ever be admitted."""
        ...

    def try_admit(self, cost: float, now: float) -> bool:
        """Admit `cost` units now if they conform; never waits."""
        ...

    def try_admit_late(self, cost: float, now: float) -> bool:
        """`try_admit` for a queued request whose timer fired late (see `Gcra`)."""
        ...

    def admissible_at(self, cost: float, now: float) -> float:
        """The earliest time (>= now) at which `cost` units would conform."""
        ...

    def projected_admission(self, queued: Iterable[float], cost: float, now: float) -> float:
        """When `cost` would be admitted after every cost in `queued` (FIFO), in order."""
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
