"""Provider rate limits: requests and tokens per minute, reserved before a call.

A call reserves one request and its token estimate (prompt estimate + ``max_tokens``)
before it is sent, and settles with the real usage afterwards: unused tokens go back,
an underestimate is consumed on top. Response headers resync the limiters with what
the provider says is left, so a limit set too high (or shared with other processes)
stops producing 429s after the first window.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from bounded._validate import optional_non_negative, positive, positive_int
from bounded.http import HTTPError
from bounded.llm.headers import parse_rate_limit_headers
from bounded.ratelimit import RateLimiter

__all__ = [
    "ANTHROPIC_DEFAULT",
    "OPENAI_DEFAULT",
    "LimitsPreset",
    "ProviderLimits",
    "Reservation",
]

logger = logging.getLogger(__name__)

_KINDS = ("requests", "tokens", "input_tokens", "output_tokens")


@dataclass(frozen=True, slots=True)
class LimitsPreset:
    """Numbers for `ProviderLimits`: per-minute request and token limits (None: no limit)."""

    rpm: int | None = None
    tpm: int | None = None
    input_tpm: int | None = None
    output_tpm: int | None = None


#: OpenAI: 60 requests and 30,000 tokens (prompt + completion) per minute.
OPENAI_DEFAULT = LimitsPreset(rpm=60, tpm=30_000)
#: Anthropic: 50 requests, 30,000 input and 8,000 output tokens per minute (tier 1).
ANTHROPIC_DEFAULT = LimitsPreset(rpm=50, input_tpm=30_000, output_tpm=8_000)


class Reservation:
    """Units taken for one call; `settle` it with the real usage once known."""

    __slots__ = ("_limits", "input_tokens", "max_tokens", "settled")

    def __init__(self, limits: ProviderLimits, input_tokens: int, max_tokens: int) -> None:
        self._limits = limits
        self.input_tokens = input_tokens
        self.max_tokens = max_tokens
        self.settled = False

    def _reserved(self) -> dict[str, int]:
        return {
            "tokens": self.input_tokens + self.max_tokens,
            "input_tokens": self.input_tokens,
            "output_tokens": self.max_tokens,
        }

    def settle(self, input_tokens: int, output_tokens: int) -> None:
        """Adjust the token limiters to the real usage: refund the unused, consume the extra."""
        if self.settled:
            return
        self.settled = True
        actual = {
            "tokens": input_tokens + output_tokens,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
        }
        for kind, reserved in self._reserved().items():
            limiter = self._limits.limiters.get(kind)
            if limiter is None:
                continue
            diff = reserved - actual[kind]
            if diff > 0:
                limiter.refund(diff)
            elif diff < 0:
                limiter.consume(-diff)

    def cancel(self) -> None:
        """Give every reserved token back (the provider produced nothing)."""
        if self.settled:
            return
        self.settled = True
        for kind, reserved in self._reserved().items():
            limiter = self._limits.limiters.get(kind)
            if limiter is not None and reserved > 0:
                limiter.refund(reserved)


class ProviderLimits:
    """Requests and tokens per `period` (60 s) for one provider account, as `RateLimiter`s.

    OpenAI counts prompt + completion tokens together (`tpm`); Anthropic limits input and
    output tokens separately (`input_tpm`, `output_tpm`). Requests use GCRA (smooth
    spacing), tokens a sliding window (costs are large). `max_wait` makes a reservation
    that would wait longer raise `RateLimited` up front.
    """

    __slots__ = ("limiters", "name")

    def __init__(
        self,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        input_tpm: int | None = None,
        output_tpm: int | None = None,
        period: float = 60.0,
        name: str = "llm",
        max_wait: float | None = None,
    ) -> None:
        positive("period", period)
        optional_non_negative("max_wait", max_wait)
        self.name = name
        self.limiters: dict[str, RateLimiter] = {}
        for kind, value in zip(_KINDS, (rpm, tpm, input_tpm, output_tpm), strict=True):
            if value is None:
                continue
            positive_int(kind if kind == "requests" else kind.replace("tokens", "tpm"), value)
            self.limiters[kind] = RateLimiter(
                value,
                period,
                name=f"{name}.{kind}",
                algorithm="gcra" if kind == "requests" else "sliding_window",
                max_wait=max_wait,
            )

    @classmethod
    def from_preset(
        cls,
        preset: LimitsPreset,
        *,
        period: float = 60.0,
        name: str = "llm",
        max_wait: float | None = None,
    ) -> ProviderLimits:
        """Fresh limiters with a preset's numbers (e.g. `OPENAI_DEFAULT`)."""
        return cls(
            rpm=preset.rpm,
            tpm=preset.tpm,
            input_tpm=preset.input_tpm,
            output_tpm=preset.output_tpm,
            period=period,
            name=name,
            max_wait=max_wait,
        )

    @classmethod
    def openai(
        cls,
        *,
        rpm: int = 60,
        tpm: int | None = 30_000,
        period: float = 60.0,
        name: str = "openai",
        max_wait: float | None = None,
    ) -> ProviderLimits:
        """OpenAI-style limits: requests and combined tokens per minute."""
        return cls(rpm=rpm, tpm=tpm, period=period, name=name, max_wait=max_wait)

    @classmethod
    def anthropic(
        cls,
        *,
        rpm: int = 50,
        input_tpm: int | None = 30_000,
        output_tpm: int | None = 8_000,
        period: float = 60.0,
        name: str = "anthropic",
        max_wait: float | None = None,
    ) -> ProviderLimits:
        """Anthropic-style limits: requests, input tokens and output tokens per minute."""
        return cls(
            rpm=rpm,
            input_tpm=input_tpm,
            output_tpm=output_tpm,
            period=period,
            name=name,
            max_wait=max_wait,
        )

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={lim.rate:g}/{lim.per:g}s" for k, lim in self.limiters.items())
        return f"<ProviderLimits {self.name!r} {parts}>"

    @property
    def requests(self) -> RateLimiter | None:
        """The requests-per-period limiter, if any."""
        return self.limiters.get("requests")

    async def acquire(self, input_tokens: int, max_tokens: int) -> Reservation:
        """Wait for one request and the token estimate; return the reservation to settle.

        If a later limiter refuses (`RateLimited`) or the wait is cancelled, units already
        taken are given back.
        """
        reservation = Reservation(self, max(0, input_tokens), max(0, max_tokens))
        costs = {"requests": 1, **reservation._reserved()}
        taken: list[tuple[RateLimiter, int]] = []
        try:
            for kind, limiter in self.limiters.items():
                cost = costs[kind]
                if cost <= 0:
                    continue
                await limiter.acquire(cost)
                taken.append((limiter, cost))
        except BaseException:
            for limiter, cost in taken:
                limiter.refund(cost)
            raise
        return reservation

    @contextlib.asynccontextmanager
    async def reserve(self, input_tokens: int, max_tokens: int) -> AsyncIterator[Reservation]:
        """``async with limits.reserve(estimate, max_tokens) as r: ...; r.settle(i, o)``.

        Leaving with an HTTP error status (the provider refused and generated nothing)
        gives the tokens back; any other exit without `settle` keeps the reservation,
        since the provider may have done the work.
        """
        reservation = await self.acquire(input_tokens, max_tokens)
        try:
            yield reservation
        except HTTPError:
            reservation.cancel()
            raise

    def update_from_headers(self, headers: Mapping[str, str]) -> None:
        """Lower the limiters to what the provider's rate-limit headers say is left."""
        try:
            info = parse_rate_limit_headers(headers)
        except Exception:  # never let a provider's header change break a call
            logger.debug("ignoring unparseable rate-limit headers", exc_info=True)
            return
        for kind, (remaining, reset_after) in info.items():
            limiter = self.limiters.get(kind)
            if limiter is not None:  # a reset beyond the limiter's window is capped at it
                limiter.throttle(remaining, min(reset_after, limiter.per))
