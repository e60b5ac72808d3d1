"""Retry with jittered backoff, Retry-After and a retry budget.

Every retry is logged at INFO on the ``bounded.retry`` logger (the reason and the delay),
and every give-up at INFO with the attempts' history at DEBUG; `on_retry` and
`on_give_up` hooks receive a `RetryEvent` for the same moments.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import logging
import math
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, ParamSpec, TypeVar, cast

from bounded._validate import non_negative, optional_positive, positive, positive_int

__all__ = ["Backoff", "Retry", "RetryBudget", "RetryEvent", "RetryHook"]

P = ParamSpec("P")
T = TypeVar("T")

Jitter = Literal["full", "equal", "decorrelated", "none"]
_JITTERS: frozenset[str] = frozenset({"full", "equal", "decorrelated", "none"})

ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]
Predicate = Callable[[BaseException], bool]

_log = logging.getLogger("bounded.retry")
_names = itertools.count(1)
_NOTE_PREFIX = "bounded.Retry gave up after "


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """One retry about to happen (`on_retry`) or the end of retrying (`on_give_up`).

    `attempt` is the number of the attempt that just failed (1 = the first call) with
    `exception`. For `on_retry`, `delay` is the wait before the next attempt and `reason`
    is empty; for `on_give_up`, `delay` is 0, `reason` says why retrying stopped and
    `cause` is its one-word kind: "attempts", "retry_after", "deadline" or "budget".
    """

    retry: str
    attempt: int
    exception: BaseException
    delay: float
    reason: str = ""
    cause: str = ""


RetryHook = Callable[[RetryEvent], object]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: `initial * multiplier**n` seconds capped at `max`, with jitter.

    `jitter`: "full" (uniform in [0, d]), "equal" (d/2 plus uniform in [0, d/2]),
    "decorrelated" (AWS: uniform in [initial, 3 * previous delay], capped) or "none".
    """

    initial: float = 0.5
    max: float = 30.0
    multiplier: float = 2.0
    jitter: Jitter = "full"

    def __post_init__(self) -> None:
        positive("initial", self.initial)
        positive("max", self.max)
        positive("multiplier", self.multiplier)
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier!r}")
        if self.max < self.initial:
            raise ValueError(f"max must be >= initial ({self.initial!r}), got {self.max!r}")
        if self.jitter not in _JITTERS:
            raise ValueError(
                f"jitter must be one of {sorted(_JITTERS)}, got {self.jitter!r}",
            )

    def ceiling(self, attempt: int) -> float:
        """The un-jittered delay before retry number `attempt` (1 = first retry), capped."""
        try:
            value = self.initial * self.multiplier ** (attempt - 1)
        except OverflowError:
            return self.max
        return min(self.max, value)

    def delay(self, attempt: int, previous: float, rng: random.Random) -> float:
        """Seconds to wait before retry number `attempt`; `previous` is the last delay (0: none)."""
        jitter = self.jitter
        if jitter == "decorrelated":
            prev = previous if previous > self.initial else self.initial
            return min(self.max, rng.uniform(self.initial, prev * 3.0))
        ceiling = self.ceiling(attempt)
        if jitter == "full":
            return rng.uniform(0.0, ceiling)
        if jitter == "equal":
            half = ceiling / 2.0
            return half + rng.uniform(0.0, half)
        return ceiling


_DEFAULT_BACKOFF = Backoff()
_get_running_loop = asyncio.get_running_loop
_BUCKETS = 10  # ring size of RetryBudget: memory stays fixed whatever the window


class RetryBudget:
    """Caps retries to `ratio` of recent first attempts, plus `min_per_second` (Finagle-style).

    Over a sliding window of `window` seconds of loop time, a retry is allowed while
    ``retries < min_per_second * window + ratio * first_attempts``. One budget may be
    shared by many `Retry` objects and concurrent calls.
    """

    __slots__ = (
        "_dep",
        "_dep_total",
        "_end",
        "_epoch",
        "_min_per_second",
        "_ratio",
        "_reserve",
        "_slot",
        "_wd",
        "_wd_total",
        "_width",
        "_window",
    )

    def __init__(
        self, ratio: float = 0.1, min_per_second: float = 10, window: float = 10.0
    ) -> None:
        self._ratio = non_negative("ratio", ratio)
        self._min_per_second = non_negative("min_per_second", min_per_second)
        self._window = positive("window", window)
        self._reserve = self._min_per_second * self._window
        self._width = self._window / _BUCKETS
        self._dep = [0] * _BUCKETS
        self._wd = [0] * _BUCKETS
        self._dep_total = 0
        self._wd_total = 0
        self._epoch = 0  # index of the current bucket since loop time 0
        self._slot = 0  # its position in the ring
        self._end = self._width  # loop time at which the current bucket ends

    @property
    def ratio(self) -> float:
        """Retries allowed per first attempt in the window."""
        return self._ratio

    @ratio.setter
    def ratio(self, value: float) -> None:
        self._ratio = non_negative("ratio", value)

    @property
    def min_per_second(self) -> float:
        """Retries per second allowed regardless of traffic."""
        return self._min_per_second

    @min_per_second.setter
    def min_per_second(self, value: float) -> None:
        self._min_per_second = non_negative("min_per_second", value)
        self._reserve = self._min_per_second * self._window

    @property
    def window(self) -> float:
        """Seconds of history the budget looks at."""
        return self._window

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self._ratio!r}, min_per_second={self._min_per_second!r}, "
            f"window={self._window!r})"
        )

    def _roll(self, now: float) -> None:
        """Move to the bucket holding `now`, expiring those older than the window."""
        epoch = int(now // self._width)
        last = self._epoch
        if epoch == last:
            return
        if epoch - last >= _BUCKETS or epoch < last:
            self._dep = [0] * _BUCKETS
            self._wd = [0] * _BUCKETS
            self._dep_total = self._wd_total = 0
        else:
            dep, wd = self._dep, self._wd
            for i in range(last + 1, epoch + 1):
                slot = i % _BUCKETS
                self._dep_total -= dep[slot]
                self._wd_total -= wd[slot]
                dep[slot] = wd[slot] = 0
        self._epoch = epoch
        self._slot = epoch % _BUCKETS
        self._end = (epoch + 1) * self._width

    def deposit(self) -> None:
        """Record a first attempt (earns `ratio` retries)."""
        now = _get_running_loop().time()
        if now >= self._end or now < self._end - self._width:
            self._roll(now)
        self._dep[self._slot] += 1
        self._dep_total += 1

    def try_withdraw(self) -> bool:
        """Take one retry from the budget if it allows one now; False if exhausted."""
        self._roll(_get_running_loop().time())
        if self._wd_total < self._reserve + self._ratio * self._dep_total:
            self._wd[self._slot] += 1
            self._wd_total += 1
            return True
        return False

    def balance(self) -> float:
        """Retries currently available (may be fractional)."""
        self._roll(_get_running_loop().time())
        return max(0.0, self._reserve + self._ratio * self._dep_total - self._wd_total)


def _retry_after(exc: BaseException) -> float | None:
    value = getattr(exc, "retry_after", None)
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        return None
    return max(0.0, float(value))


_shared_rng = random.Random()


class Retry:
    """Calls an async function again when it raises an exception matching `on`.

    `on` is an exception type, a tuple of them, or a predicate on the exception; only
    `Exception` subclasses are ever considered (so `CancelledError` is never retried).
    `attempts` counts the first call. When retrying stops the last exception itself is
    re-raised with a note listing the attempts. Safe to share between concurrent calls.
    """

    __slots__ = (
        "_attempts",
        "_backoff",
        "_budget",
        "_deadline",
        "_max_retry_after",
        "_name",
        "_on",
        "_on_give_up",
        "_on_retry",
        "_pred",
        "_respect_retry_after",
        "_rng",
        "_types",
    )

    def __init__(
        self,
        on: ExceptionTypes | Predicate,
        *,
        attempts: int = 5,
        backoff: Backoff = _DEFAULT_BACKOFF,
        deadline: float | None = None,
        respect_retry_after: bool = True,
        max_retry_after: float = 120.0,
        budget: RetryBudget | None = None,
        rng: random.Random | None = None,
        name: str | None = None,
        on_retry: RetryHook | None = None,
        on_give_up: RetryHook | None = None,
    ) -> None:
        self._name = name if name is not None else f"retry-{next(_names)}"
        for arg, hook in (("on_retry", on_retry), ("on_give_up", on_give_up)):
            if hook is not None and not callable(hook):
                raise ValueError(f"{arg} must be a callable or None, got {hook!r}")
        self._on_retry = on_retry
        self._on_give_up = on_give_up
        self._types: tuple[type[BaseException], ...] | None = None
        self._pred: Predicate | None = None
        if isinstance(on, type) and issubclass(on, BaseException):
            self._types = (on,)
        elif isinstance(on, tuple):
            if not on or not all(isinstance(t, type) and issubclass(t, BaseException) for t in on):
                raise ValueError(f"on must be exception types or a predicate, got {on!r}")
            self._types = on
        elif callable(on):
            self._pred = cast(Predicate, on)
        else:
            raise ValueError(f"on must be exception types or a predicate, got {on!r}")
        self._on = on
        self._attempts = positive_int("attempts", attempts)
        if not isinstance(backoff, Backoff):
            raise ValueError(f"backoff must be a Backoff, got {backoff!r}")
        self._backoff = backoff
        self._deadline = optional_positive("deadline", deadline)
        self._respect_retry_after = bool(respect_retry_after)
        self._max_retry_after = non_negative("max_retry_after", max_retry_after)
        if budget is not None and not isinstance(budget, RetryBudget):
            raise ValueError(f"budget must be a RetryBudget or None, got {budget!r}")
        self._budget = budget
        self._rng = rng if rng is not None else _shared_rng

    # read-only views of the configuration
    @property
    def name(self) -> str:
        """The retry's name (in logs, metrics and `RetryEvent`)."""
        return self._name

    @property
    def on_retry(self) -> RetryHook | None:
        """Called with a `RetryEvent` before each backoff sleep (errors are logged)."""
        return self._on_retry

    @property
    def on_give_up(self) -> RetryHook | None:
        """Called with a `RetryEvent` when retrying stops (errors are logged)."""
        return self._on_give_up

    @property
    def on(self) -> ExceptionTypes | Predicate:
        """What is retried: exception types or a predicate."""
        return self._on

    @property
    def attempts(self) -> int:
        """Most calls made, the first included."""
        return self._attempts

    @property
    def backoff(self) -> Backoff:
        """The delay schedule between attempts."""
        return self._backoff

    @property
    def deadline(self) -> float | None:
        """Seconds for the whole call including waits (None: unbounded)."""
        return self._deadline

    @property
    def respect_retry_after(self) -> bool:
        """Whether an exception's `retry_after` sets the next delay."""
        return self._respect_retry_after

    @property
    def max_retry_after(self) -> float:
        """A `retry_after` above this stops retrying."""
        return self._max_retry_after

    @property
    def budget(self) -> RetryBudget | None:
        """The shared retry budget, if any."""
        return self._budget

    def __repr__(self) -> str:
        return (
            f"Retry({self._name!r}, on={self._on!r}, attempts={self._attempts}, "
            f"backoff={self._backoff!r}, deadline={self._deadline!r}, budget={self._budget!r})"
        )

    def matches(self, exc: BaseException) -> bool:
        """Whether `exc` would be retried (ignoring attempts, budget and deadline)."""
        if not isinstance(exc, Exception):
            return False
        types = self._types
        if types is not None:
            return isinstance(exc, types)
        assert self._pred is not None
        return bool(self._pred(exc))

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await `fn(*args, **kwargs)`, retrying as configured; return its result."""
        return await self._run(fn, args, kwargs, None)

    async def _run(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        deadline_at: float | None,
    ) -> T:
        """`call`, with an outer absolute deadline in loop time (from `Policy`) or None."""
        budget = self._budget
        if budget is not None:
            budget.deposit()
        started = None if self._deadline is None else asyncio.get_running_loop().time()
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            if not self.matches(exc):
                raise
            first = exc
        return await self._again(first, fn, args, kwargs, deadline_at, started)

    async def _again(
        self,
        exc: Exception,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        deadline_at: float | None,
        started: float | None,
    ) -> T:
        loop = asyncio.get_running_loop()
        if started is not None and self._deadline is not None:
            own = started + self._deadline
            deadline_at = own if deadline_at is None else min(deadline_at, own)
        history: list[str] = []
        attempt = 1
        previous = 0.0
        while True:
            reason = cause = ""
            delay = 0.0
            if attempt >= self._attempts:
                cause, reason = "attempts", f"no attempts left ({self._attempts})"
            else:
                header = _retry_after(exc) if self._respect_retry_after else None
                if header is not None:
                    delay = header
                    if header > self._max_retry_after:
                        cause = "retry_after"
                        reason = f"retry_after {header:g}s exceeds max_retry_after"
                else:
                    delay = self._backoff.delay(attempt, previous, self._rng)
                if not reason and deadline_at is not None and loop.time() + delay > deadline_at:
                    cause, reason = "deadline", "deadline would be exceeded"
                if not reason and self._budget is not None and not self._budget.try_withdraw():
                    cause, reason = "budget", "retry budget exhausted"
            if reason:
                history.append(f"  attempt {attempt}: {type(exc).__qualname__}, not retried")
                _give_up_note(exc, f"{_NOTE_PREFIX}{attempt} attempt(s): {reason}", history)
                _log.info(
                    "%s: giving up after %d attempt(s): %s (last error %s)",
                    self._name,
                    attempt,
                    reason,
                    type(exc).__qualname__,
                )
                if _log.isEnabledFor(logging.DEBUG):
                    _log.debug("%s: attempts of the call:\n%s", self._name, "\n".join(history))
                if self._on_give_up is not None:
                    await self._hook(
                        self._on_give_up, RetryEvent(self._name, attempt, exc, 0.0, reason, cause)
                    )
                raise exc
            history.append(
                f"  attempt {attempt}: {type(exc).__qualname__}, retried after {delay:.3f}s",
            )
            _log.info(
                "%s: attempt %d failed with %s, retrying in %.3fs",
                self._name,
                attempt,
                type(exc).__qualname__,
                delay,
            )
            if _log.isEnabledFor(logging.DEBUG):
                _log.debug("%s: attempt %d failed: %r", self._name, attempt, exc)
            if self._on_retry is not None:
                await self._hook(self._on_retry, RetryEvent(self._name, attempt, exc, delay))
            await asyncio.sleep(delay)
            previous = delay
            attempt += 1
            try:
                return await fn(*args, **kwargs)
            except Exception as new:
                if not self.matches(new):
                    raise
                exc = new

    async def _hook(self, hook: RetryHook, event: RetryEvent) -> None:
        """Run a hook (awaiting an awaitable result); its errors are logged, never raised."""
        try:
            result = hook(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            _log.exception("%s: hook %r failed", self._name, hook)

    def __call__(
        self,
        fn: Callable[P, Awaitable[T]],
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate an async function so every call goes through this retry."""
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"Retry decorates async functions, got {fn!r}")
        run = self._run

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return await run(fn, args, kwargs, None)

        return wrapper


def _give_up_note(exc: BaseException, headline: str, history: list[str]) -> None:
    """Note the attempts on `exc`, replacing the note of an earlier give-up on the same
    instance (a module-level or cached exception raised again must not grow)."""
    notes = getattr(exc, "__notes__", None)
    if notes:
        kept = [n for n in notes if not (isinstance(n, str) and n.startswith(_NOTE_PREFIX))]
        if len(kept) != len(notes):
            exc.__notes__ = kept
    exc.add_note(headline + "\n" + "\n".join(history))
