"""Arrival-rate schedules for the open model, and the named load profiles.

A `Schedule` is a sequence of segments, each with a rate that is constant or changes
linearly over the segment. Arrivals are placed where the cumulative number of requests
the rate asks for crosses the next whole number, so a constant 100/s schedule starts
requests at exactly 0.00, 0.01, 0.02 ... seconds (k6's constant-arrival-rate does the
same). With ``poisson=True`` the crossings are those of a unit-rate Poisson process mapped
through the same cumulative curve (time rescaling), seeded, so runs are reproducible.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from bounded._validate import non_negative, positive

__all__ = [
    "PROFILES",
    "Profile",
    "Schedule",
    "Segment",
    "constant",
    "profile",
    "ramp",
    "spike",
    "step",
]


@dataclass(frozen=True, slots=True)
class Segment:
    """`duration` seconds whose rate goes linearly from `start_rate` to `end_rate` (per second)."""

    duration: float
    start_rate: float
    end_rate: float

    def __post_init__(self) -> None:
        non_negative("duration", self.duration)
        non_negative("start_rate", self.start_rate)
        non_negative("end_rate", self.end_rate)

    def count(self, t: float) -> float:
        """Requests the segment asks for in its first `t` seconds."""
        slope = (self.end_rate - self.start_rate) / self.duration if self.duration else 0.0
        return self.start_rate * t + slope * t * t / 2.0

    @property
    def total(self) -> float:
        """Requests the whole segment asks for."""
        return self.count(self.duration)

    def time_at(self, n: float) -> float:
        """Offset within the segment where `count` reaches `n` (0 <= n <= total)."""
        r0 = self.start_rate
        slope = (self.end_rate - r0) / self.duration if self.duration else 0.0
        if n <= 0:
            return 0.0
        if abs(slope) < 1e-12:
            return n / r0
        # slope/2 t^2 + r0 t - n = 0; this form of the root stays accurate when slope ~ 0.
        disc = max(0.0, r0 * r0 + 2.0 * slope * n)
        return 2.0 * n / (r0 + math.sqrt(disc))

    def rate_at(self, t: float) -> float:
        """The rate `t` seconds into the segment."""
        if not self.duration:
            return self.start_rate
        return self.start_rate + (self.end_rate - self.start_rate) * t / self.duration


@dataclass(frozen=True, slots=True)
class Schedule:
    """An arrival-rate schedule: segments played one after the other."""

    segments: tuple[Segment, ...]
    poisson: bool = False
    seed: int = 0

    @property
    def duration(self) -> float:
        """Total length in seconds."""
        return sum(s.duration for s in self.segments)

    @property
    def expected(self) -> int:
        """Number of arrivals of the uniform (non-Poisson) schedule."""
        return sum(1 for _ in Schedule(self.segments).arrivals())

    def rate_at(self, t: float) -> float:
        """Scheduled rate (requests/s) at `t` seconds from the start; 0 after the end."""
        for seg in self.segments:
            if t < seg.duration:
                return seg.rate_at(t)
            t -= seg.duration
        return 0.0

    def arrivals(self) -> Iterator[float]:
        """Intended start offsets in seconds from the run's start, increasing, lazily."""
        rng = random.Random(self.seed)
        # `target` is the next crossing in cumulative-count space, `before` the count
        # already consumed by earlier segments and `offset` their total duration.
        target = rng.expovariate(1.0) if self.poisson else 0.0
        before = 0.0
        offset = 0.0
        for seg in self.segments:
            total = seg.total
            while target - before < total:
                yield offset + seg.time_at(target - before)
                target += rng.expovariate(1.0) if self.poisson else 1.0
            before += total
            offset += seg.duration


def constant(rate: float, duration: float) -> Schedule:
    """`rate` requests/s for `duration` seconds."""
    positive("rate", rate)
    return Schedule((Segment(positive("duration", duration), rate, rate),))


def ramp(start_rate: float, end_rate: float, duration: float) -> Schedule:
    """A rate changing linearly from `start_rate` to `end_rate` over `duration` seconds."""
    if start_rate <= 0 and end_rate <= 0:
        raise ValueError("ramp: start_rate or end_rate must be > 0")
    return Schedule((Segment(positive("duration", duration), start_rate, end_rate),))


def step(rates: Sequence[float], step_duration: float) -> Schedule:
    """Each rate in `rates` held for `step_duration` seconds, in order."""
    if not rates:
        raise ValueError("rates must not be empty")
    positive("step_duration", step_duration)
    return Schedule(tuple(Segment(step_duration, positive("rates", r), r) for r in rates))


def spike(rate: float, duration: float, factor: float = 10.0) -> Schedule:
    """Steady `rate` for the first third, `factor` x `rate` for the second, steady again."""
    positive("rate", rate)
    positive("factor", factor)
    third = positive("duration", duration) / 3.0
    return Schedule(
        (
            Segment(third, rate, rate),
            Segment(third, rate * factor, rate * factor),
            Segment(third, rate, rate),
        )
    )


@dataclass(frozen=True, slots=True)
class Profile:
    """A named load: its schedule and the most requests the generator keeps in flight.

    A request due while `max_in_flight` are running is dropped (and counted as dropped),
    as k6's arrival-rate executors do when they run out of virtual users.
    """

    name: str
    schedule: Schedule
    max_in_flight: int
    description: str


# name -> (default rate, default duration, max in flight, description)
PROFILES: dict[str, tuple[float, float, int, str]] = {
    "light": (50.0, 20.0, 100, "constant rate, up to 100 in flight"),
    "medium": (250.0, 30.0, 500, "ramp over a third, then hold; up to 500 in flight"),
    "heavy": (
        1000.0,
        30.0,
        1000,
        "ramp over a third, then hold; up to 1,000 in flight",
    ),
    "spike": (50.0, 30.0, 1000, "steady, then 10x the rate for a third, then steady again"),
    "endurance": (50.0, 60.0, 100, "constant rate for the whole (long) duration"),
}


def profile(
    name: str,
    *,
    duration: float | None = None,
    rate: float | None = None,
    poisson: bool = False,
    seed: int = 0,
) -> Profile:
    """The named profile, its phases scaled to `duration` and its base rate set to `rate`."""
    if name not in PROFILES:
        raise ValueError(f"profile: unknown profile {name!r}; known: {', '.join(PROFILES)}")
    default_rate, default_duration, max_in_flight, description = PROFILES[name]
    r = positive("rate", rate) if rate is not None else default_rate
    d = positive("duration", duration) if duration is not None else default_duration
    if name in ("light", "endurance"):
        segments = constant(r, d).segments
    elif name in ("medium", "heavy"):
        segments = (Segment(d / 3.0, r / 10.0, r), Segment(d - d / 3.0, r, r))
    else:
        segments = spike(r, d).segments
    return Profile(name, Schedule(segments, poisson, seed), max_in_flight, description)
