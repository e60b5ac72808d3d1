"""Argument checks of a rate limit, shared by the in-memory and the Redis limiters."""

from __future__ import annotations

import math

from bounded import _validate


def check_burst(burst: float) -> float:
    """Return `burst` if at least one unit fits, else raise ValueError naming it."""
    _validate.positive("burst", burst)
    if burst < 1:
        raise ValueError(f"burst must be >= 1 (one unit must fit), got {burst!r}")
    return burst


def check_pace(rate: float, per: float, burst: float) -> None:
    """Reject a rate and period whose spacing between units cannot be computed."""
    interval = per / rate
    if not (0 < interval < math.inf and burst * interval < math.inf):
        raise ValueError(
            f"rate={rate!r} per={per!r}s gives {interval!r}s between units: "
            "rate / per must be a positive number a float can hold"
        )


def too_costly(cost: float, capacity: float, algorithm: str) -> str:
    """The error message for a `cost` above what the limiter can ever admit."""
    what = "burst" if algorithm == "gcra" else "rate"
    return (
        f"cost must be <= the limiter's capacity ({what}={capacity:g}), "
        f"got {cost!r}; such a request could never be admitted"
    )


def check_cost(cost: float, capacity: float, algorithm: str) -> None:
    """Raise ValueError unless `cost` is a finite number in (0, capacity]."""
    _validate.positive("cost", cost)
    if cost > capacity:
        raise ValueError(too_costly(cost, capacity, algorithm))
