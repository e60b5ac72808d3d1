"""Provider rate limits: requests and tokens per minute, reserved before a call.

A call reserves one request and its token estimate (prompt estimate + ``max_tokens``)
before it is sent, and settles with the real usage afterwards: unused tokens go back,
an underestimate is consumed on top. Response headers resync the limiters with what
the provider says is left, so a limit set too high (or shared with other processes)
stops producing 429s after the first window.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from bounded._validate import optional_count, optional_non_negative, positive, positive_int
from bounded.http import HTTPError
from bounded.llm.errors import is_quota_error
from bounded.llm.headers import parse_rate_limit_headers
from bounded.ratelimit import RateLimiter

__all__ = [
    "ANTHROPIC_DEFAULT",
    "OPENAI_DEFAULT",
    "LimitsPreset",
    "ProviderLimits",
    "ProviderStats",
    "Reservation",
    "call_cost",
    "current_reservation",
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


# (input tokens, max output tokens) of the call about to go through a policy.
_COST: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "bounded_llm_cost", default=None
)
# The reservation a policy's provider part holds for the attempt running in this task.
_HELD: contextvars.ContextVar[Reservation | None] = contextvars.ContextVar(
    "bounded_llm_reservation", default=None
)


@contextlib.contextmanager
def call_cost(input_tokens: int, max_tokens: int) -> Iterator[None]:
    """Tell a policy's provider part what the call inside this block will cost.

    ``with call_cost(estimate, max_tokens): await policy.call(fn)``: each attempt then
    reserves one request and ``estimate + max_tokens`` tokens before the bulkhead.
    Without it a policy's provider part reserves one request and no tokens; tokens are
    charged when the call settles with its usage.
    """
    token = _COST.set((max(0, input_tokens), max(0, max_tokens)))
    try:
        yield
    finally:
        _COST.reset(token)


def current_reservation() -> Reservation | None:
    """The reservation a policy's provider part made for the running attempt, if any."""
    return _HELD.get()


def token_count(value: Any) -> int | None:
    """A token count a provider reported, if it is one (an int >= 0); else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


class Reservation:
    """Units taken for one call; `settle` it with the real usage once known."""

    __slots__ = ("_limits", "input_tokens", "max_tokens", "settled")

    def __init__(self, limits: ProviderLimits, input_tokens: int, max_tokens: int) -> None:
        self._limits = limits
        self.input_tokens = input_tokens
        self.max_tokens = max_tokens
        self.settled = False

    @property
    def limits(self) -> ProviderLimits:
        """The provider limits the units were taken from."""
        return self._limits

    def _reserved(self) -> dict[str, int]:
        return {
            "tokens": self.input_tokens + self.max_tokens,
            "input_tokens": self.input_tokens,
            "output_tokens": self.max_tokens,
        }

    def settle(self, input_tokens: int, output_tokens: int) -> None:
        """Adjust the token limiters to the real usage: refund the unused, consume the extra."""
        for name, value in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
            if token_count(value) is None:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
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


@dataclass(frozen=True, slots=True)
class ProviderStats:
    """A provider's budget at one instant, and what its responses did to it.

    `available` and `limits` map each limit ("requests", "tokens", "input_tokens",
    "output_tokens") to units left now and units per period. `utilization` is the
    busiest limit's. `rate_limited_total` counts 429s seen, `resyncs_total` responses
    whose rate-limit headers lowered a limiter, `waits_total` reservations that waited.
    `in_use` and `limit` are the busiest limit's share of its rate in units, and its
    units per period (as for a rate limiter).
    """

    name: str
    in_use: float
    limit: float
    utilization: float
    queued: int
    rejected_total: int
    rate_limited_total: int
    resyncs_total: int
    waits_total: int
    available: dict[str, float] = field(default_factory=dict)
    limits: dict[str, float] = field(default_factory=dict)


class ProviderLimits:
    """Requests and tokens per `period` (60 s) for one provider account, as `RateLimiter`s.

    OpenAI counts prompt + completion tokens together (`tpm`); Anthropic limits input and
    output tokens separately (`input_tpm`, `output_tpm`). Requests use GCRA (smooth
    spacing), tokens a sliding window (costs are large). `max_wait` makes a reservation
    that would wait longer raise `RateLimited` up front. `resync` False ignores the
    providers' rate-limit headers. As a `Policy` part (``Policy(provider=limits)``) a
    provider 429 is retried here, after the resync, up to `rate_limit_retries` times,
    before the breaker or the policy's retry see it.
    """

    __slots__ = (
        "_observer",
        "_rate_limited_total",
        "_resyncs_total",
        "_waits_total",
        "limiters",
        "name",
        "rate_limit_retries",
        "resync",
    )

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
        resync: bool = True,
        rate_limit_retries: int = 3,
    ) -> None:
        positive("period", period)
        optional_non_negative("max_wait", max_wait)
        self.name = name
        self.resync = resync
        if optional_count("rate_limit_retries", rate_limit_retries) is None:
            raise ValueError("rate_limit_retries must be an integer >= 0, got None")
        self.rate_limit_retries = rate_limit_retries
        self._observer: Callable[[float], None] | None = None
        self._rate_limited_total = 0
        self._resyncs_total = 0
        self._waits_total = 0
        self.limiters: dict[str, RateLimiter] = {}
        arguments = ("rpm", "tpm", "input_tpm", "output_tpm")
        values = (rpm, tpm, input_tpm, output_tpm)
        for kind, argument, value in zip(_KINDS, arguments, values, strict=True):
            if value is None:
                continue
            positive_int(argument, value)
            self.limiters[kind] = RateLimiter(
                value,
                period,
                name=f"{name}.{kind}",
                algorithm="gcra" if kind == "requests" else "sliding_window",
                max_wait=max_wait,
            )
            self.limiters[kind].wait_observer = self._observe_wait

    @classmethod
    def from_preset(
        cls,
        preset: LimitsPreset,
        *,
        period: float = 60.0,
        name: str = "llm",
        max_wait: float | None = None,
        resync: bool = True,
        rate_limit_retries: int = 3,
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
            resync=resync,
            rate_limit_retries=rate_limit_retries,
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
        if not self.resync:
            return
        try:
            info = parse_rate_limit_headers(headers)
        except Exception:  # never let a provider's header change break a call
            logger.debug("ignoring unparseable rate-limit headers", exc_info=True)
            return
        resynced = False
        for kind, (remaining, reset_after) in info.items():
            limiter = self.limiters.get(kind)
            if limiter is not None:  # a reset beyond the limiter's window is capped at it
                limiter.throttle(remaining, min(reset_after, limiter.per))
                resynced = True
        if resynced:
            self._resyncs_total += 1

    def rate_limited(self, error: HTTPError) -> None:
        """Count a provider 429 and hold every caller back for its ``retry-after``."""
        self._rate_limited_total += 1
        requests = self.limiters.get("requests")
        if requests is not None and error.retry_after:
            requests.throttle(0, min(error.retry_after, requests.per))

    @property
    def wait_observer(self) -> Callable[[float], None] | None:
        """Called with the seconds each reservation waited for a limiter (metrics hook)."""
        return self._observer

    @wait_observer.setter
    def wait_observer(self, observer: Callable[[float], None] | None) -> None:
        self._observer = observer

    def _observe_wait(self, seconds: float) -> None:
        self._waits_total += 1
        if self._observer is not None:
            self._observer(seconds)

    def stats(self) -> ProviderStats:
        """Units left and per period of each limit, and the counters."""
        per_limiter = {kind: limiter.stats() for kind, limiter in self.limiters.items()}
        busiest = max(per_limiter.values(), key=lambda s: s.utilization)
        return ProviderStats(
            name=self.name,
            in_use=busiest.utilization * busiest.rate,
            limit=busiest.rate,
            utilization=busiest.utilization,
            queued=sum(s.queued for s in per_limiter.values()),
            rejected_total=sum(s.rejected_total for s in per_limiter.values()),
            rate_limited_total=self._rate_limited_total,
            resyncs_total=self._resyncs_total,
            waits_total=self._waits_total,
            available={kind: s.available for kind, s in per_limiter.items()},
            limits={kind: s.rate for kind, s in per_limiter.items()},
        )

    def _policy_layer(
        self, inner: Callable[[Any, tuple[Any, ...], dict[str, Any]], Awaitable[Any]]
    ) -> Callable[[Any, tuple[Any, ...], dict[str, Any]], Awaitable[Any]]:
        """`Policy`'s provider part: reserve (outside the bulkhead), run `inner`, and on a
        provider 429 give the tokens back and wait for the resynced budget again."""

        async def provider(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            input_tokens, max_tokens = _COST.get() or (0, 0)
            refusals = 0
            while True:
                reservation = await self.acquire(input_tokens, max_tokens)
                token = _HELD.set(reservation)
                try:
                    return await inner(fn, args, kwargs)
                except HTTPError as exc:
                    reservation.cancel()  # the provider refused: nothing was generated
                    if exc.status_code != 429 or is_quota_error(exc):
                        raise
                    self.rate_limited(exc)
                    refusals += 1
                    if refusals > self.rate_limit_retries:
                        raise
                    logger.info(
                        "provider %r answered 429; waiting for its budget (retry %d of %d)",
                        self.name,
                        refusals,
                        self.rate_limit_retries,
                    )
                finally:
                    _HELD.reset(token)

        return provider
