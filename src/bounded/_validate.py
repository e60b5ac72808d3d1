"""Argument checks shared by every constructor: a `ValueError` that names the argument."""

from __future__ import annotations

import math


def positive(name: str, value: float) -> float:
    """Return `value` if it is a finite number > 0, else raise ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def non_negative(name: str, value: float) -> float:
    """Return `value` if it is a finite number >= 0, else raise ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def positive_int(name: str, value: int) -> int:
    """Return `value` if it is an int >= 1, else raise ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return value


def optional_positive(name: str, value: float | None) -> float | None:
    """Like `positive`, but None passes through (meaning: no limit)."""
    return None if value is None else positive(name, value)


def optional_non_negative(name: str, value: float | None) -> float | None:
    """Like `non_negative`, but None passes through (meaning: no limit)."""
    return None if value is None else non_negative(name, value)


def fraction(name: str, value: float) -> float:
    """Return `value` if it lies in [0, 1], else raise ValueError naming `name`."""
    non_negative(name, value)
    if value > 1:
        raise ValueError(f"{name} must be <= 1, got {value!r}")
    return value


def optional_count(name: str, value: int | None) -> int | None:
    """Return `value` if it is None or an int >= 0, else raise ValueError naming `name`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0 or None, got {value!r}")
    return value
