"""Parse the providers' rate-limit headers into (remaining, seconds until reset) pairs.

OpenAI sends ``x-ratelimit-remaining-{requests,tokens}`` with
``x-ratelimit-reset-{requests,tokens}`` as durations (``6m0s``, ``12ms``, ``1h2m3.5s``);
Anthropic sends ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-
{remaining,reset}`` with resets as RFC 3339 timestamps. Malformed and non-finite
values are skipped with a debug log, never an exception: a provider changing its
headers must not break calls that succeeded. A reset further away than `max_reset`
(default `MAX_RESET`, ten minutes) is taken as `max_reset`, so that one absurd header
(``1000000000h``, ``9999-12-31T23:59:59Z``) cannot stall a client for years.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import time
from collections.abc import Mapping

from bounded._validate import positive

__all__ = [
    "MAX_RESET",
    "RateLimitInfo",
    "parse_duration",
    "parse_rate_limit_headers",
    "parse_rfc3339_delay",
]

logger = logging.getLogger(__name__)

#: kind ("requests", "tokens", "input_tokens", "output_tokens") -> (remaining, reset_after)
RateLimitInfo = dict[str, tuple[float, float]]

#: Default cap on a reset, in seconds: the providers' limits are per minute, and their
#: documented resets (daily limits aside) are a few minutes at most.
MAX_RESET = 600.0

_UNITS = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ns": 1e-9,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|μs|ns|h|m|s)")


def parse_duration(text: str) -> float | None:
    """Seconds in a Go-style duration (``6m0s``, ``12ms``, ``1h2m3.5s``, ``0s``), else None.

    A bare number is taken as seconds. A duration that overflows to infinity is None.
    """
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        return value if math.isfinite(value) and value >= 0 else None
    total = 0.0
    pos = 0
    for match in _PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and pos > 0 and math.isfinite(total) else None


def parse_rfc3339_delay(text: str, *, now: float | None = None) -> float | None:
    """Seconds from `now` (default: the wall clock) until an RFC 3339 timestamp, >= 0; else None."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
        if when.tzinfo is None:
            return None
        delay = when.timestamp() - (time.time() if now is None else now)
    except (ValueError, OverflowError):
        return None
    return max(0.0, delay) if math.isfinite(delay) else None


def _remaining(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _capped(reset: float | None, max_reset: float, header: str) -> float | None:
    if reset is not None and reset > max_reset:
        logger.debug("capping %s of %g s at %g s", header, reset, max_reset)
        return max_reset
    return reset


def parse_rate_limit_headers(
    headers: Mapping[str, str], *, now: float | None = None, max_reset: float = MAX_RESET
) -> RateLimitInfo:
    """What OpenAI/Anthropic headers say is left of each limit, and for how long.

    `headers` must be case-insensitive with lower-case lookups working (httpx2.Headers, or
    a dict with lower-case keys). Pairs with a malformed, non-finite or missing half are
    left out; every value returned is finite and >= 0, and no reset exceeds `max_reset`
    seconds.
    """
    positive("max_reset", max_reset)
    info: RateLimitInfo = {}
    for kind in ("requests", "tokens"):
        raw_remaining = headers.get(f"x-ratelimit-remaining-{kind}")
        raw_reset = headers.get(f"x-ratelimit-reset-{kind}")
        if raw_remaining is None or raw_reset is None:
            continue
        remaining = _remaining(raw_remaining)
        reset = _capped(parse_duration(raw_reset), max_reset, f"x-ratelimit-reset-{kind}")
        if remaining is None or reset is None:
            logger.debug(
                "ignoring malformed x-ratelimit-*-%s headers %r/%r", kind, raw_remaining, raw_reset
            )
            continue
        info[kind] = (remaining, reset)
    for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
        raw_remaining = headers.get(f"anthropic-ratelimit-{kind}-remaining")
        raw_reset = headers.get(f"anthropic-ratelimit-{kind}-reset")
        if raw_remaining is None or raw_reset is None:
            continue
        remaining = _remaining(raw_remaining)
        delay = parse_rfc3339_delay(raw_reset, now=now)
        reset = _capped(delay, max_reset, f"anthropic-ratelimit-{kind}-reset")
        if remaining is None or reset is None:
            logger.debug(
                "ignoring malformed anthropic-ratelimit-%s headers %r/%r",
                kind,
                raw_remaining,
                raw_reset,
            )
            continue
        info[kind.replace("-", "_")] = (remaining, reset)
    return info
