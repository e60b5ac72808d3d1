"""Policy: deadline, retry, breaker, rate limiter, bulkhead and timeout in a fixed order.

A policy built with an `observer` (the manager's Prometheus wiring) or a `tracer` (an
OpenTelemetry tracer) wraps each call in one more layer that records its outcome,
latency, attempts and limiter waits; without them the chain is exactly the bare one.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import inspect
import itertools
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, cast

from bounded._validate import optional_positive
from bounded.breaker import CircuitBreaker
from bounded.errors import Rejected
from bounded.retry import Retry

if TYPE_CHECKING:
    from bounded.llm.limits import ProviderLimits

__all__ = ["CallRecord", "Policy", "PolicyObserver"]

P = ParamSpec("P")
T = TypeVar("T")

Fn = Callable[..., Awaitable[Any]]
Layer = Callable[[Fn, tuple[Any, ...], dict[str, Any]], Awaitable[Any]]

_names = itertools.count(1)
_log = logging.getLogger("bounded.policy")
_get_running_loop = asyncio.get_running_loop
_current_task = asyncio.current_task

# Timer entry: [when, seq, task, cancelling count at entry, state]
_ARMED = 0
_FIRED = 1
_DONE = 2


class _Timer:
    """Cancels tasks whose deadline has passed, for one event loop.

    Same semantics as `asyncio.timeout` (the expired scope raises TimeoutError, an outer
    cancellation stays a CancelledError) but far cheaper on the path where nothing
    expires: arming is a heap push, and one loop timer serves every armed deadline, so a
    call that finishes in time never creates or cancels a loop timer.
    """

    __slots__ = ("_handle", "_heap", "_live", "_loop", "_seq", "_when")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[list[Any]] = []
        self._seq = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._when = 0.0
        self._live = 0

    def arm(self, when: float) -> list[Any]:
        task = _current_task(self._loop)
        if task is None:
            raise RuntimeError("bounded.Policy timeouts must be used inside a task")
        entry = [when, next(self._seq), task, task.cancelling(), _ARMED]
        heap = self._heap
        heapq.heappush(heap, entry)
        self._live += 1
        if self._handle is None or when < self._when:
            self._schedule(when)
        if len(heap) > 64 and len(heap) > 2 * self._live:
            # finished entries wait in the heap until they expire; keep memory bounded
            self._heap = heap = [e for e in heap if e[4] == _ARMED]
            heapq.heapify(heap)
        return entry

    def disarm(self, entry: list[Any]) -> bool:
        """Leave the scope; True if it expired and no other cancellation is pending."""
        state = entry[4]
        entry[4] = _DONE
        if state == _ARMED:
            self._live -= 1
            return False
        if state == _FIRED:
            task: asyncio.Task[Any] = entry[2]
            baseline: int = entry[3]
            return task.uncancel() <= baseline
        return False

    def _schedule(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._when = when
        self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        now = max(self._when, self._loop.time())
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if entry[4] == _ARMED:
                entry[4] = _FIRED
                self._live -= 1
                entry[2].cancel()
        while heap and heap[0][4] != _ARMED:
            heapq.heappop(heap)
        if heap:
            self._schedule(heap[0][0])


class _TimerSlot(threading.local):
    timer: _Timer | None = None


_slot = _TimerSlot()


def _timer(loop: asyncio.AbstractEventLoop) -> _Timer:
    """The timer of `loop`, cached per thread (a thread runs one loop at a time)."""
    timer = _slot.timer
    if timer is None or timer._loop is not loop:
        timer = _slot.timer = _Timer(loop)
    return timer


def _direct(fn: Fn, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Awaitable[Any]:
    return fn(*args, **kwargs)


def _timeout_layer(seconds: float, inner: Layer) -> Layer:
    async def timeout(fn: Fn, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        loop = _get_running_loop()
        timer = _timer(loop)
        entry = timer.arm(loop.time() + seconds)
        try:
            result = await inner(fn, args, kwargs)
        except BaseException as exc:
            if timer.disarm(entry) and isinstance(exc, asyncio.CancelledError):
                record = _current_call.get()
                if record is not None:
                    record.timeouts += 1
                raise TimeoutError(f"attempt timed out after {seconds:g}s") from exc
            raise
        timer.disarm(entry)
        return result

    return timeout


def _context_layer(cms: list[AbstractAsyncContextManager[Any]], inner: Layer) -> Layer:
    """Enter `cms` in order around `inner` (two nested in one coroutine: one frame less)."""
    if len(cms) == 2:
        outer_cm, inner_cm = cms

        async def guarded2(fn: Fn, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            async with outer_cm, inner_cm:
                return await inner(fn, args, kwargs)

        return guarded2
    (cm,) = cms

    async def guarded(fn: Fn, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        async with cm:
            return await inner(fn, args, kwargs)

    return guarded


def _breaker_layer(breaker: CircuitBreaker, inner: Layer) -> Layer:
    call = breaker.call
    if inner is _direct:

        def broken_fn(fn: Fn, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Awaitable[Any]:
            return call(fn, *args, **kwargs)

        return broken_fn

    def broken(fn: Fn, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Awaitable[Any]:
        return call(inner, fn, args, kwargs)

    return broken


def _retry_layer(retry: Retry, inner: Layer) -> Layer:
    run = retry._run

    def retried(fn: Fn, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Awaitable[Any]:
        return run(inner, (fn, args, kwargs), {}, None)

    return retried


def _deadline_layer(seconds: float, retry: Retry | None, inner: Layer) -> Layer:
    run = retry._run if retry is not None else None

    async def bounded_call(fn: Fn, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        loop = _get_running_loop()
        timer = _timer(loop)
        when = loop.time() + seconds
        entry = timer.arm(when)
        try:
            if run is None:
                result = await inner(fn, args, kwargs)
            else:
                # the retry knows the deadline, so it never starts a backoff ending past it
                result = await run(inner, (fn, args, kwargs), {}, when)
        except BaseException as exc:
            if timer.disarm(entry) and isinstance(exc, asyncio.CancelledError):
                record = _current_call.get()
                if record is not None:
                    record.deadline_exceeded = True
                raise TimeoutError(f"deadline of {seconds:g}s exceeded") from exc
            raise
        timer.disarm(entry)
        return result

    return bounded_call


class CallRecord:
    """What one observed policy call went through: attempts, expiries, limiter waits."""

    __slots__ = ("attempts", "deadline_exceeded", "timeouts", "waits")

    def __init__(self) -> None:
        self.attempts = 0
        self.timeouts = 0
        self.deadline_exceeded = False
        #: Seconds spent entering each limiter, by kind ("rate_limiter", "bulkhead", ...).
        self.waits: dict[str, float] = {}

    def outcome(self, exc: BaseException | None) -> str:
        """The call's outcome label: success, error, rejected, timeout, deadline, cancelled."""
        if exc is None:
            return "success"
        if isinstance(exc, TimeoutError):
            if self.deadline_exceeded:
                return "deadline"
            if self.timeouts and isinstance(exc.__cause__, asyncio.CancelledError):
                return "timeout"
        if isinstance(exc, Rejected):
            return "rejected"
        if isinstance(exc, asyncio.CancelledError):
            return "cancelled"
        return "error"


class PolicyObserver(Protocol):
    """Receives every finished call of a policy (the manager's metrics implement it)."""

    def call_done(self, outcome: str, seconds: float, record: CallRecord) -> None:
        """One call ended with `outcome` after `seconds` (loop time)."""


# The record of the observed policy call running in this context, if any.
_current_call: ContextVar[CallRecord | None] = ContextVar("bounded_policy_call", default=None)


def _wait_kind(cm: AbstractAsyncContextManager[Any]) -> str:
    """The wait label of a limiter from its class name: "rate_limiter", "bulkhead", ..."""
    name = type(cm).__name__
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _timed_context_layer(cms: list[AbstractAsyncContextManager[Any]], inner: Layer) -> Layer:
    """Like `_context_layer`, also adding the time spent entering each to the call record."""
    for cm in reversed(cms):
        inner = _timed_cm_layer(_wait_kind(cm), cm, inner)
    return inner


def _timed_cm_layer(kind: str, cm: AbstractAsyncContextManager[Any], inner: Layer) -> Layer:
    async def guarded(fn: Fn, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        loop = _get_running_loop()
        started = loop.time()
        async with cm:
            record = _current_call.get()
            if record is not None:
                waits = record.waits
                waits[kind] = waits.get(kind, 0.0) + loop.time() - started
            return await inner(fn, args, kwargs)

    return guarded


def _attempt_layer(inner: Layer) -> Layer:
    """Counts the attempts of an observed call."""

    def attempt(fn: Fn, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Awaitable[Any]:
        record = _current_call.get()
        if record is not None:
            record.attempts += 1
        return inner(fn, args, kwargs)

    return attempt


def _observed_layer(name: str, observer: PolicyObserver | None, tracer: Any, inner: Layer) -> Layer:
    """The outermost layer of an observed policy: one record (and span) per call."""
    use_span: Any = None
    if tracer is not None:
        from opentelemetry.trace import use_span

    async def observed(fn: Fn, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        record = CallRecord()
        token = _current_call.set(record)
        loop = _get_running_loop()
        started = loop.time()
        span = None if tracer is None else tracer.start_span(f"bounded.policy {name}")
        error: BaseException | None = None
        try:
            if span is None:
                return await inner(fn, args, kwargs)
            with use_span(
                span, end_on_exit=False, record_exception=False, set_status_on_exception=False
            ):
                return await inner(fn, args, kwargs)
        except BaseException as exc:
            error = exc
            raise
        finally:
            _current_call.reset(token)
            outcome = record.outcome(error)
            try:
                if observer is not None:
                    observer.call_done(outcome, loop.time() - started, record)
                if span is not None:
                    _end_span(span, name, outcome, record, error)
            except Exception:  # observing must never change the call's result
                _log.exception("recording a call of policy %r failed", name)

    return observed


def _end_span(
    span: Any, name: str, outcome: str, record: CallRecord, error: BaseException | None
) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("bounded.policy", name)
    span.set_attribute("bounded.outcome", outcome)
    span.set_attribute("bounded.attempts", record.attempts)
    for kind, seconds in record.waits.items():
        span.set_attribute(f"bounded.wait.{kind}.seconds", seconds)
    if error is not None and outcome != "cancelled":
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__} ({outcome})"))
    span.end()


class Policy:
    """Runs calls through resilience parts in a fixed order, outermost first.

    deadline (whole call, retries and waits included) -> retry -> breaker -> rate
    limiter -> provider -> bulkhead -> per-attempt timeout -> fn. So a retry waiting out
    its backoff holds no bulkhead slot, every attempt pays a rate-limit unit and is seen by
    the breaker, and the timeout covers only the work. Any part may be None (skipped).
    Deadline and timeout expiry raise the builtin `TimeoutError`.

    `observer` receives each call's outcome, latency and `CallRecord` (a
    `ConcurrencyManager` passes its Prometheus metrics here). `tracer`, an OpenTelemetry
    tracer (the ``bounded[otel]`` extra), makes one span per call named
    ``bounded.policy <name>`` with the outcome, the attempts and the seconds spent
    waiting in each limiter (``bounded.wait.rate_limiter.seconds``, ...).

    `provider` (`bounded.llm.ProviderLimits`) reserves the provider's requests and tokens
    before the bulkhead, so a caller waiting for the provider's budget holds no slot; see
    `bounded.llm.call_cost` for how a call states its token estimate.
    """

    __slots__ = (
        "_breaker",
        "_bulkhead",
        "_deadline",
        "_name",
        "_observer",
        "_provider",
        "_rate_limiter",
        "_retry",
        "_run",
        "_timeout",
        "_tracer",
    )

    def __init__(
        self,
        name: str | None = None,
        *,
        deadline: float | None = None,
        retry: Retry | None = None,
        breaker: CircuitBreaker | None = None,
        rate_limiter: AbstractAsyncContextManager[Any] | None = None,
        bulkhead: AbstractAsyncContextManager[Any] | None = None,
        timeout: float | None = None,
        provider: ProviderLimits | None = None,
        observer: PolicyObserver | None = None,
        tracer: Any = None,
    ) -> None:
        self._name = name if name is not None else f"policy-{next(_names)}"
        if observer is not None and not callable(getattr(observer, "call_done", None)):
            raise ValueError(f"observer must have a call_done method, got {observer!r}")
        if tracer is not None and not callable(getattr(tracer, "start_span", None)):
            raise ValueError(f"tracer must be an OpenTelemetry Tracer, got {tracer!r}")
        self._observer = observer
        self._tracer = tracer
        self._deadline = optional_positive("deadline", deadline)
        self._timeout = optional_positive("timeout", timeout)
        if retry is not None and not isinstance(retry, Retry):
            raise ValueError(f"retry must be a bounded.Retry or None, got {retry!r}")
        if breaker is not None and not isinstance(breaker, CircuitBreaker):
            raise ValueError(f"breaker must be a bounded.CircuitBreaker or None, got {breaker!r}")
        for arg, value in (("rate_limiter", rate_limiter), ("bulkhead", bulkhead)):
            if value is not None and not (
                hasattr(value, "__aenter__") and hasattr(value, "__aexit__")
            ):
                raise ValueError(f"{arg} must be an async context manager or None, got {value!r}")
        if provider is not None:
            from bounded.llm.limits import ProviderLimits

            if not isinstance(provider, ProviderLimits):
                raise ValueError(
                    f"provider must be a bounded.llm.ProviderLimits or None, got {provider!r}"
                )
        self._provider = provider
        self._retry = retry
        self._breaker = breaker
        self._rate_limiter = rate_limiter
        self._bulkhead = bulkhead
        self._run = self._compose()

    def _compose(self) -> Layer:
        """Build the chain once, innermost first, leaving out the parts that are None."""
        observed = self._observer is not None or self._tracer is not None
        layer: Layer = _direct
        if self._timeout is not None:
            layer = _timeout_layer(self._timeout, layer)
        cms = [cm for cm in (self._rate_limiter, self._bulkhead) if cm is not None]
        contexts = _timed_context_layer if observed else _context_layer
        if self._provider is not None:  # between the rate limiter and the bulkhead
            if self._bulkhead is not None:
                layer = contexts([self._bulkhead], layer)
            layer = self._provider._policy_layer(layer)
            if self._rate_limiter is not None:
                layer = contexts([self._rate_limiter], layer)
        elif cms:
            layer = contexts(cms, layer)
        if self._breaker is not None:
            layer = _breaker_layer(self._breaker, layer)
        if observed:
            layer = _attempt_layer(layer)
        if self._deadline is not None:
            layer = _deadline_layer(self._deadline, self._retry, layer)
        elif self._retry is not None:
            layer = _retry_layer(self._retry, layer)
        if observed:
            layer = _observed_layer(self._name, self._observer, self._tracer, layer)
        return layer

    @property
    def name(self) -> str:
        """The policy's name."""
        return self._name

    @property
    def deadline(self) -> float | None:
        """Seconds for the whole call, retries included (None: unbounded)."""
        return self._deadline

    @property
    def timeout(self) -> float | None:
        """Seconds for each attempt of `fn` alone (None: unbounded)."""
        return self._timeout

    @property
    def retry(self) -> Retry | None:
        """The retry part, if any."""
        return self._retry

    @property
    def breaker(self) -> CircuitBreaker | None:
        """The circuit breaker part, if any."""
        return self._breaker

    @property
    def rate_limiter(self) -> AbstractAsyncContextManager[Any] | None:
        """The rate limiter part, if any."""
        return self._rate_limiter

    @property
    def provider(self) -> ProviderLimits | None:
        """The provider limits part, if any."""
        return self._provider

    @property
    def bulkhead(self) -> AbstractAsyncContextManager[Any] | None:
        """The bulkhead part, if any."""
        return self._bulkhead

    @property
    def observer(self) -> PolicyObserver | None:
        """What receives each call's outcome (the manager's metrics), if any."""
        return self._observer

    @property
    def tracer(self) -> Any:
        """The OpenTelemetry tracer making a span per call, if any."""
        return self._tracer

    def __repr__(self) -> str:
        parts = [
            f"{k}={v!r}"
            for k, v in (
                ("deadline", self._deadline),
                ("retry", self._retry),
                ("breaker", self._breaker),
                ("rate_limiter", self._rate_limiter),
                ("provider", self._provider),
                ("bulkhead", self._bulkhead),
                ("timeout", self._timeout),
            )
            if v is not None
        ]
        return f"Policy({self._name!r}, {', '.join(parts)})"

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await `fn(*args, **kwargs)` through every part of the policy; return its result."""
        return cast(T, await self._run(fn, args, kwargs))

    def __call__(
        self,
        fn: Callable[P, Awaitable[T]],
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate an async function so every call goes through this policy."""
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"Policy decorates async functions, got {fn!r}")
        run = self._run

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return cast(T, await run(fn, args, kwargs))

        return wrapper
