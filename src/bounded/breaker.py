"""Circuit breaker with Resilience4j semantics."""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar

from bounded._validate import fraction, optional_positive, positive, positive_int
from bounded.errors import CircuitOpen, Rejected

__all__ = ["BreakerStats", "CircuitBreaker", "State"]

P = ParamSpec("P")
T = TypeVar("T")

State = Literal["closed", "open", "half_open", "forced_open", "disabled"]
TransitionCallback = Callable[["CircuitBreaker", str, str], object]

_CLOSED: State = "closed"
_OPEN: State = "open"
_HALF_OPEN: State = "half_open"
_FORCED_OPEN: State = "forced_open"
_DISABLED: State = "disabled"

# Outcome codes stored in the window: bit 0 recorded, bit 1 failed, bit 2 slow. 0 = not recorded.
_OK = 1
_FAIL = 3
_SLOW = 4

# Permits handed out by admission; a probe's permit is its half-open epoch (>= 0).
_PERMIT_CLOSED = -1
_PERMIT_NONE = -2

#: Windows keep one entry per call or per second: bound their memory (1 MiB, 2 MiB).
MAX_WINDOW = 1_000_000
MAX_WINDOW_SECONDS = 86_400.0

_log = logging.getLogger("bounded.breaker")
_names = itertools.count(1)
_get_running_loop = asyncio.get_running_loop
_current_task = asyncio.current_task


@dataclass(frozen=True, slots=True)
class BreakerStats:
    """A snapshot of a breaker: its window's counts and observed rates, and rejections."""

    name: str
    state: str
    calls: int
    failed_calls: int
    slow_calls: int
    failure_rate: float
    slow_call_rate: float
    rejected_total: int
    retry_after: float | None

    @classmethod
    def from_counts(
        cls,
        name: str,
        state: str,
        *,
        calls: int,
        failed: int,
        slow: int,
        rejected_total: int,
        retry_after: float | None,
    ) -> BreakerStats:
        """The snapshot of a window's counts, its rates computed (0 for an empty window)."""
        return cls(
            name=name,
            state=state,
            calls=calls,
            failed_calls=failed,
            slow_calls=slow,
            failure_rate=failed / calls if calls else 0.0,
            slow_call_rate=slow / calls if calls else 0.0,
            rejected_total=rejected_total,
            retry_after=retry_after,
        )


class _CountWindow:
    """The outcomes of the last `size` calls in a ring, with running counters."""

    __slots__ = ("_pos", "_ring", "calls", "failed", "size", "slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self._ring = bytearray(size)
        self._pos = 0
        self.calls = self.failed = self.slow = 0

    def record(self, code: int) -> bool:
        """Add an outcome (evicting the oldest); return whether any counter changed."""
        pos = self._pos
        ring = self._ring
        old = ring[pos]
        nxt = pos + 1
        self._pos = 0 if nxt == self.size else nxt
        if old == code:
            return False
        ring[pos] = code
        if old:
            self.failed += ((code >> 1) & 1) - ((old >> 1) & 1)
            self.slow += (code >> 2) - (old >> 2)
        else:
            self.calls += 1
            self.failed += (code >> 1) & 1
            self.slow += code >> 2
        return True

    def refresh(self) -> None:
        """Counts never age in a count window."""

    def outcomes(self) -> list[int]:
        """Recorded outcome codes, oldest first."""
        ring = self._ring
        ordered = ring[self._pos :] + ring[: self._pos]
        return [c for c in ordered if c]

    def clear(self) -> None:
        self._ring = bytearray(self.size)
        self._pos = 0
        self.calls = self.failed = self.slow = 0

    def resize(self, size: int) -> None:
        kept = self.outcomes()[-size:]
        self.size = size
        self.clear()
        for code in kept:
            self.record(code)


class _TimeWindow:
    """Outcomes of the last `seconds` of loop time in per-second buckets (fixed memory).

    The current second's counts live in `_cur_*` and move into the ring when it ends.
    """

    __slots__ = (
        "_calls",
        "_cur_calls",
        "_cur_failed",
        "_cur_slow",
        "_end",
        "_epoch",
        "_failed",
        "_slow",
        "calls",
        "failed",
        "n",
        "seconds",
        "slow",
    )

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.n = max(1, math.ceil(seconds))
        self._epoch = 0
        self._end = 1.0
        self._calls: list[int] = []
        self._failed: list[int] = []
        self._slow: list[int] = []
        self._cur_calls = self._cur_failed = self._cur_slow = 0
        self.calls = self.failed = self.slow = 0
        self.clear()

    def _flush(self) -> None:
        s = self._epoch % self.n
        self._calls[s] += self._cur_calls
        self._failed[s] += self._cur_failed
        self._slow[s] += self._cur_slow
        self._cur_calls = self._cur_failed = self._cur_slow = 0

    def _roll(self, now: float) -> None:
        epoch = int(now)
        last = self._epoch
        n = self.n
        if epoch - last >= n or epoch < last:
            self.clear()
        else:
            self._flush()
            calls, failed, slow = self._calls, self._failed, self._slow
            for i in range(last + 1, epoch + 1):
                s = i % n
                self.calls -= calls[s]
                self.failed -= failed[s]
                self.slow -= slow[s]
                calls[s] = failed[s] = slow[s] = 0
        self._epoch = epoch
        self._end = epoch + 1.0

    def record(self, code: int) -> bool:
        now = _get_running_loop().time()
        if now >= self._end or now < self._end - 1.0:
            self._roll(now)
        self.calls += 1
        self._cur_calls += 1
        if code != _OK:
            f = (code >> 1) & 1
            sl = code >> 2
            self.failed += f
            self._cur_failed += f
            self.slow += sl
            self._cur_slow += sl
        return True

    def refresh(self) -> None:
        try:
            now = _get_running_loop().time()
        except RuntimeError:
            return
        if now >= self._end or now < self._end - 1.0:
            self._roll(now)

    def clear(self) -> None:
        self._calls = [0] * self.n
        self._failed = [0] * self.n
        self._slow = [0] * self.n
        self._cur_calls = self._cur_failed = self._cur_slow = 0
        self.calls = self.failed = self.slow = 0

    def resize(self, seconds: float) -> None:
        """Change the length, keeping the most recent seconds that still fit."""
        self._flush()
        n = max(1, math.ceil(seconds))
        old_n = self.n
        newest_first = [
            (self._calls[i % old_n], self._failed[i % old_n], self._slow[i % old_n])
            for i in range(self._epoch, self._epoch - min(n, old_n), -1)
        ]
        self.seconds = seconds
        self.n = n
        self.clear()
        for offset, (c, f, sl) in enumerate(newest_first):
            s = (self._epoch - offset) % n
            self._calls[s], self._failed[s], self._slow[s] = c, f, sl
            self.calls += c
            self.failed += f
            self.slow += sl


def _exception_types(name: str, value: Any) -> tuple[type[BaseException], ...]:
    if isinstance(value, type) and issubclass(value, BaseException):
        return (value,)
    if isinstance(value, tuple) and all(
        isinstance(t, type) and issubclass(t, BaseException) for t in value
    ):
        return value
    raise ValueError(f"{name} must be an exception type or a tuple of them, got {value!r}")


def _window_size(value: int) -> int:
    positive_int("window", value)
    if value > MAX_WINDOW:
        raise ValueError(f"window must be <= {MAX_WINDOW} calls, got {value!r}")
    return value


def _window_seconds(value: float) -> float:
    positive("window_seconds", value)
    if value > MAX_WINDOW_SECONDS:
        raise ValueError(f"window_seconds must be <= {MAX_WINDOW_SECONDS:g}, got {value!r}")
    return value


_CATCH_ALL = (Exception, BaseException)


def _is_refusal(exc: BaseException) -> bool:
    """A refusal of load (a `Rejected`, or an error carrying HTTP status 429)."""
    return isinstance(exc, Rejected) or getattr(exc, "status_code", None) == 429


class CircuitBreaker:
    """Stops calling a failing dependency for a while, then probes it before closing again.

    Closed: outcomes go into a window of the last `window` calls (or `window_seconds` of
    loop time). Once it holds `minimum_calls`, a failure rate >= `failure_rate` or a
    slow-call rate >= `slow_call_rate` opens the circuit: calls fail at once with
    `CircuitOpen` for `open_for` seconds. Then half-open: exactly `half_open_calls`
    concurrent probes are admitted; if all succeed the circuit closes with an empty
    window, any failure re-opens it. Exceptions in `ignore` are not recorded; exceptions
    outside `failure_on` count as successes; cancellation is never a failure.

    A refusal of load (any `bounded.Rejected` such as `RateLimited` or `CircuitOpen`, and
    any error with ``status_code == 429``, e.g. ``openai.RateLimitError``) says the
    dependency is busy, not broken: it is not recorded unless `failure_on` names its
    type (or a base class narrower than `Exception`).
    """

    __slots__ = (
        "__weakref__",
        "_callbacks",
        "_failure_on",
        "_failure_rate",
        "_half_open_calls",
        "_ignore",
        "_min_calls",
        "_min_eff",
        "_name",
        "_open_for",
        "_opened_at",
        "_probe_epoch",
        "_probe_slow",
        "_probe_tasks",
        "_probes_ok",
        "_probes_running",
        "_refusals_on",
        "_rejected",
        "_slow_duration",
        "_slow_rate",
        "_starts",
        "_state",
        "_timed",
        "_window",
    )

    def __init__(
        self,
        name: str | None = None,
        *,
        failure_rate: float = 0.5,
        minimum_calls: int = 10,
        window: int = 20,
        window_seconds: float | None = None,
        slow_call_duration: float | None = None,
        slow_call_rate: float = 1.0,
        open_for: float = 30.0,
        half_open_calls: int = 3,
        failure_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        ignore: type[BaseException] | tuple[type[BaseException], ...] = (),
    ) -> None:
        self._name = name if name is not None else f"breaker-{next(_names)}"
        self._failure_rate = self._rate("failure_rate", failure_rate)
        self._slow_rate = self._rate("slow_call_rate", slow_call_rate)
        self._min_calls = positive_int("minimum_calls", minimum_calls)
        self._window: _CountWindow | _TimeWindow
        if window_seconds is not None:
            self._window = _TimeWindow(_window_seconds(window_seconds))
        else:
            self._window = _CountWindow(_window_size(window))
        self._slow_duration = optional_positive("slow_call_duration", slow_call_duration)
        self._timed = self._slow_duration is not None
        self._open_for = positive("open_for", open_for)
        self._half_open_calls = positive_int("half_open_calls", half_open_calls)
        self.failure_on = failure_on
        self.ignore = ignore
        self._state: State = _CLOSED
        self._opened_at = 0.0
        self._probe_epoch = 0
        self._probes_running = 0
        self._probes_ok = 0
        self._probe_slow = 0
        self._probe_tasks: dict[asyncio.Task[Any] | None, int] = {}
        self._starts: dict[asyncio.Task[Any] | None, list[float]] = {}
        self._rejected = 0
        self._callbacks: list[TransitionCallback] = []
        self._update_min()

    @staticmethod
    def _rate(name: str, value: float) -> float:
        positive(name, value)
        return fraction(name, value)

    def _update_min(self) -> None:
        w = self._window
        self._min_eff = (
            min(self._min_calls, w.size) if isinstance(w, _CountWindow) else (self._min_calls)
        )

    # ---------------------------------------------------------------- configuration
    @property
    def name(self) -> str:
        """The breaker's name (resource in `CircuitOpen`)."""
        return self._name

    @property
    def failure_rate(self) -> float:
        """Failure fraction (0, 1] of the window that opens the circuit."""
        return self._failure_rate

    @failure_rate.setter
    def failure_rate(self, value: float) -> None:
        self._failure_rate = self._rate("failure_rate", value)

    @property
    def slow_call_rate(self) -> float:
        """Slow-call fraction (0, 1] of the window that opens the circuit."""
        return self._slow_rate

    @slow_call_rate.setter
    def slow_call_rate(self, value: float) -> None:
        self._slow_rate = self._rate("slow_call_rate", value)

    @property
    def slow_call_duration(self) -> float | None:
        """Calls lasting at least this many seconds are slow (None: not tracked)."""
        return self._slow_duration

    @slow_call_duration.setter
    def slow_call_duration(self, value: float | None) -> None:
        self._slow_duration = optional_positive("slow_call_duration", value)
        self._timed = self._slow_duration is not None

    @property
    def minimum_calls(self) -> int:
        """Calls the window must hold before rates are evaluated."""
        return self._min_calls

    @minimum_calls.setter
    def minimum_calls(self, value: int) -> None:
        self._min_calls = positive_int("minimum_calls", value)
        self._update_min()

    @property
    def open_for(self) -> float:
        """Seconds the circuit stays open before probing (applies to an open circuit too)."""
        return self._open_for

    @open_for.setter
    def open_for(self, value: float) -> None:
        self._open_for = positive("open_for", value)

    @property
    def half_open_calls(self) -> int:
        """Concurrent probes admitted when half-open; all must succeed to close."""
        return self._half_open_calls

    @half_open_calls.setter
    def half_open_calls(self, value: int) -> None:
        self._half_open_calls = positive_int("half_open_calls", value)

    @property
    def window(self) -> int | None:
        """Calls in a count-based window (None for a time-based breaker)."""
        w = self._window
        return w.size if isinstance(w, _CountWindow) else None

    @window.setter
    def window(self, value: int) -> None:
        size = _window_size(value)
        w = self._window
        if not isinstance(w, _CountWindow):
            raise ValueError("window: this breaker has a time-based window (window_seconds)")
        w.resize(size)
        self._update_min()

    @property
    def window_seconds(self) -> float | None:
        """Seconds in a time-based window (None for a count-based breaker)."""
        w = self._window
        return w.seconds if isinstance(w, _TimeWindow) else None

    @window_seconds.setter
    def window_seconds(self, value: float) -> None:
        seconds = _window_seconds(value)
        w = self._window
        if not isinstance(w, _TimeWindow):
            raise ValueError("window_seconds: this breaker has a count-based window (window)")
        w.refresh()
        w.resize(seconds)

    @property
    def failure_on(self) -> tuple[type[BaseException], ...]:
        """Exception types recorded as failures (settable: a type or a tuple of them)."""
        return self._failure_on

    @failure_on.setter
    def failure_on(self, value: type[BaseException] | tuple[type[BaseException], ...]) -> None:
        self._failure_on = _exception_types("failure_on", value)
        # Refusals count only when named by something narrower than a catch-all.
        self._refusals_on = tuple(t for t in self._failure_on if t not in _CATCH_ALL)

    @property
    def ignore(self) -> tuple[type[BaseException], ...]:
        """Exception types not recorded at all (settable: a type or a tuple of them)."""
        return self._ignore

    @ignore.setter
    def ignore(self, value: type[BaseException] | tuple[type[BaseException], ...]) -> None:
        self._ignore = _exception_types("ignore", value)

    # ---------------------------------------------------------------- state
    @property
    def state(self) -> State:
        """ "closed", "open", "half_open", "forced_open" or "disabled"."""
        self._poll()
        return self._state

    def _poll(self) -> None:
        """An open circuit whose time is up reports (and behaves as) half-open."""
        if self._state is _OPEN:
            try:
                now = _get_running_loop().time()
            except RuntimeError:
                return
            if now >= self._opened_at + self._open_for:
                self._to_half_open()

    def _transition(self, new: State) -> None:
        old = self._state
        if old is new:
            return
        self._state = new
        self._probe_tasks.clear()
        if new is _OPEN:
            _log.warning("circuit breaker %r opened (was %s)", self._name, old)
        else:
            _log.info("circuit breaker %r: %s -> %s", self._name, old, new)
        for callback in list(self._callbacks):
            try:
                callback(self, old, new)
            except Exception:
                _log.exception("on_transition callback of breaker %r failed", self._name)

    def _to_open(self) -> None:
        self._opened_at = _get_running_loop().time()
        self._transition(_OPEN)

    def _to_half_open(self) -> None:
        self._probe_epoch += 1
        self._probes_running = self._probes_ok = self._probe_slow = 0
        self._transition(_HALF_OPEN)

    def _to_closed(self) -> None:
        self._window.clear()
        self._transition(_CLOSED)

    def force_open(self) -> None:
        """Reject every call until `reset()`."""
        self._transition(_FORCED_OPEN)

    def disable(self) -> None:
        """Admit every call and record nothing until `reset()`."""
        self._transition(_DISABLED)

    def reset(self) -> None:
        """Close the circuit with an empty window."""
        self._window.clear()
        self._probe_epoch += 1
        self._transition(_CLOSED)

    def on_transition(self, callback: TransitionCallback) -> TransitionCallback:
        """Call `callback(breaker, old_state, new_state)` on every state change.

        Exceptions from the callback are logged, never raised. Returns `callback`, so
        this can be used as a decorator.
        """
        self._callbacks.append(callback)
        return callback

    def stats(self) -> BreakerStats:
        """A snapshot of the window and state."""
        self._poll()
        w = self._window
        w.refresh()
        retry_after: float | None = None
        if self._state is _OPEN:
            try:
                now = _get_running_loop().time()
            except RuntimeError:
                now = self._opened_at
            retry_after = max(0.0, self._opened_at + self._open_for - now)
        return BreakerStats.from_counts(
            self._name,
            self._state,
            calls=w.calls,
            failed=w.failed,
            slow=w.slow,
            rejected_total=self._rejected,
            retry_after=retry_after,
        )

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self._name!r} {self._state}>"

    # ---------------------------------------------------------------- recording
    def _classify(self, exc: BaseException) -> int:
        """Outcome code of a call that raised `exc`; 0 means: not recorded."""
        if not isinstance(exc, Exception):
            return 0  # CancelledError, KeyboardInterrupt, ...
        if self._ignore and isinstance(exc, self._ignore):
            return 0
        if not isinstance(exc, self._failure_on):
            return _OK
        if _is_refusal(exc) and not isinstance(exc, self._refusals_on):
            return 0
        return _FAIL

    def _record(self, code: int) -> None:
        """Record a closed-state outcome and open the circuit if a threshold is reached."""
        w = self._window
        if not w.record(code):
            return
        calls = w.calls
        if calls >= self._min_eff and (
            w.failed / calls >= self._failure_rate
            or (self._timed and w.slow / calls >= self._slow_rate)
        ):
            self._to_open()

    def _probe_done(self, code: int) -> None:
        self._probes_running -= 1
        if not code:
            return  # cancelled or ignored: the slot is free again, nothing decided
        if code & 2:
            self._to_open()
            return
        self._probes_ok += 1
        self._probe_slow += code >> 2
        if self._probes_ok >= self._half_open_calls:
            if self._timed and self._probe_slow / self._probes_ok >= self._slow_rate:
                self._to_open()
            else:
                self._to_closed()

    def _reject(self, retry_after: float | None) -> CircuitOpen:
        self._rejected += 1
        return CircuitOpen(self._name, retry_after)

    def _admit(self) -> int:
        """Admit a call or raise CircuitOpen; return its permit."""
        state = self._state
        if state is _CLOSED:
            return _PERMIT_CLOSED
        if state is _DISABLED:
            return _PERMIT_NONE
        if state is _FORCED_OPEN:
            raise self._reject(None)
        if state is _OPEN:
            remaining = self._opened_at + self._open_for - _get_running_loop().time()
            if remaining > 0:
                raise self._reject(remaining)
            self._to_half_open()
        if self._probes_running + self._probes_ok < self._half_open_calls:
            self._probes_running += 1
            return self._probe_epoch
        raise self._reject(None)

    def _finish(self, permit: int, code: int, start: float | None) -> None:
        if code and start is not None:
            limit = self._slow_duration
            if limit is not None and _get_running_loop().time() - start >= limit:
                code |= _SLOW
        if permit == _PERMIT_CLOSED:
            if self._state is _CLOSED and code:
                self._record(code)
        elif permit >= 0 and self._state is _HALF_OPEN and permit == self._probe_epoch:
            self._probe_done(code)

    # ---------------------------------------------------------------- use
    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await `fn(*args, **kwargs)` through the breaker (CircuitOpen if not admitted)."""
        if self._state is _CLOSED and not self._timed:
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                if self._state is _CLOSED:
                    code = self._classify(exc)
                    if code:
                        self._record(code)
                raise
            if self._state is _CLOSED:
                self._record(_OK)
            return result
        permit = self._admit()
        start = _get_running_loop().time() if self._timed else None
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._finish(permit, self._classify(exc), start)
            raise
        self._finish(permit, _OK, start)
        return result

    async def __aenter__(self) -> None:
        if self._state is _CLOSED and not self._timed:
            return
        permit = self._admit()
        task = _current_task()
        if permit >= 0:
            self._probe_tasks[task] = self._probe_tasks.get(task, 0) + 1
        if self._timed and permit != _PERMIT_NONE:
            stack = self._starts.get(task)
            now = _get_running_loop().time()
            if stack is None:
                self._starts[task] = [now]
            else:
                stack.append(now)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._starts or self._probe_tasks or self._state is not _CLOSED:
            self._exit_slow(exc)
        elif exc is None:
            self._record(_OK)
        else:
            code = self._classify(exc)
            if code:
                self._record(code)

    def _exit_slow(self, exc: BaseException | None) -> None:
        task = _current_task()
        code = _OK if exc is None else self._classify(exc)
        start: float | None = None
        stack = self._starts.get(task)
        if stack:
            start = stack.pop()
            if not stack:
                del self._starts[task]
        probes = self._probe_tasks.get(task)
        if probes is not None:
            if probes > 1:
                self._probe_tasks[task] = probes - 1
            else:
                del self._probe_tasks[task]
            self._finish(self._probe_epoch, code, start)
        else:
            self._finish(_PERMIT_CLOSED, code, start)

    def __call__(
        self,
        fn: Callable[P, Awaitable[T]],
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate an async function so every call goes through this breaker."""
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"CircuitBreaker decorates async functions, got {fn!r}")
        call = self.call

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return await call(fn, *args, **kwargs)

        return wrapper
