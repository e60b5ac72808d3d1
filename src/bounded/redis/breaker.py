"""RedisCircuitBreaker: a `CircuitBreaker` whose state and window every process shares."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast

from bounded.breaker import BreakerStats, CircuitBreaker, State
from bounded.redis.backend import BackendUnavailable, RedisBackend

__all__ = ["RedisCircuitBreaker"]

_log = logging.getLogger("bounded.breaker")

P = ParamSpec("P")
T = TypeVar("T")

_US = 1_000_000.0
_OK = 1
_SLOW = 4
# Permits the script hands out; a probe's permit is its half-open epoch (>= 0).
_PERMIT_CLOSED = -1
_PERMIT_DISABLED = -2
_REJECTED = -3
# Stands for "admitted by the local fallback breaker" while Redis is unavailable.
_LOCAL = -4


class RedisCircuitBreaker(CircuitBreaker):
    """A circuit breaker shared by every process using the same Redis, prefix and name.

    A `CircuitBreaker` (same rules, interface and settings, which may change live) whose
    state and window (`window` calls, or `window_seconds` of Redis time) live in Redis: one
    process's failures
    open it for all, and half-open admits exactly `half_open_calls` probes across
    processes. Each call costs two script calls (admit, then record its outcome), each
    atomic in Redis, on Redis server time.

    Differences forced by the network: `state` and `stats()` are as of this process's
    last call (``await refresh()`` reads them now); `on_transition` callbacks run in each
    process when it observes a change; `force_open`, `disable` and `reset` return at once
    and reach Redis in the background. A probe that has not reported within `open_for`
    (its process died) frees its slot. While Redis is unavailable, `fail_open` falls
    back to this breaker's in-memory behaviour in this process, `fail_closed` rejects.
    """

    __slots__ = (
        "_backend",
        "_call",
        "_entered",
        "_pending",
        "_retry_after",
        "_shared_calls",
        "_shared_failed",
        "_shared_slow",
        "_shared_state",
    )

    def __init__(self, backend: RedisBackend, name: str, **settings: Any) -> None:
        """`settings`: those of `CircuitBreaker`."""
        super().__init__(name, **settings)
        self._backend = backend
        parts = ("breaker", "window", "seconds")
        self._call = backend.command("breaker", [backend.key(name, part) for part in parts])
        self._shared_state: State = "closed"
        self._shared_calls = self._shared_failed = self._shared_slow = 0
        self._retry_after: float | None = None
        self._pending: asyncio.Task[None] | None = None
        # Per task, the permits (and start times) of `async with` blocks entered.
        self._entered: dict[asyncio.Task[Any] | None, list[tuple[int, float]]] = {}

    def __repr__(self) -> str:
        return f"<RedisCircuitBreaker {self.name!r} {self._shared_state}>"

    @property
    def state(self) -> State:
        """The shared state as this process last saw it."""
        return self._shared_state

    def stats(self) -> BreakerStats:
        """The shared window and state as of this process's last call."""
        return BreakerStats.from_counts(
            self.name,
            self._shared_state,
            calls=self._shared_calls,
            failed=self._shared_failed,
            slow=self._shared_slow,
            rejected_total=self._rejected,
            retry_after=self._retry_after,
        )

    def force_open(self) -> None:
        """Reject every call, in every process, until `reset()`."""
        self._send("force_open")

    def disable(self) -> None:
        """Admit every call and record nothing, in every process, until `reset()`."""
        self._send("disable")

    def reset(self) -> None:
        """Close the circuit with an empty window, in every process."""
        self._send("reset")

    async def refresh(self) -> State:
        """Read the shared state now, after any command sent before (counts no call)."""
        if self._pending is not None:
            await self._pending
        await self._command("peek")
        return self._shared_state

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await `fn(*args, **kwargs)` through the breaker (CircuitOpen if not admitted)."""
        permit = await self._shared_admit()
        if permit == _LOCAL:
            return await super().call(fn, *args, **kwargs)
        start = asyncio.get_running_loop().time()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            await self._shared_finish(permit, self._classify(exc), start)
            raise
        await self._shared_finish(permit, _OK, start)
        return result

    async def __aenter__(self) -> None:
        permit = await self._shared_admit()
        if permit == _LOCAL:
            await super().__aenter__()
        task = asyncio.current_task()
        self._entered.setdefault(task, []).append((permit, asyncio.get_running_loop().time()))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task = asyncio.current_task()
        stack = self._entered[task]
        permit, start = stack.pop()
        if not stack:
            del self._entered[task]
        if permit == _LOCAL:
            await super().__aexit__(exc_type, exc, tb)
            return
        code = _OK if exc is None else self._classify(exc)
        await self._shared_finish(permit, code, start)

    async def _shared_admit(self) -> int:
        try:
            permit = await self._run("admit")
        except BackendUnavailable:
            if self._backend.on_error == "fail_open":
                return _LOCAL
            raise self._reject(self._backend.retry_interval) from None
        if permit == _REJECTED:
            raise self._reject(self._retry_after)
        return permit

    async def _shared_finish(self, permit: int, code: int, start: float) -> None:
        if permit == _PERMIT_DISABLED:
            return
        limit = self.slow_call_duration
        if code and limit is not None and asyncio.get_running_loop().time() - start >= limit:
            code |= _SLOW
        # Unavailable: the outcome is lost; a probe's slot lapses after open_for.
        with contextlib.suppress(BackendUnavailable):
            await self._run("record", permit, code)

    def _send(self, op: str) -> None:
        self._pending = self._backend.spawn(self._command(op))

    async def _command(self, op: str) -> None:
        try:
            await self._run(op)
        except BackendUnavailable:
            if op != "peek":
                getattr(CircuitBreaker, op)(self)  # at least this process follows it

    def _settings(self) -> str:
        """The configuration as the script takes it (read each call: it may change live)."""
        seconds = self.window_seconds
        return (
            f"{self.failure_rate!r} {self.minimum_calls} {self.window or 0} "
            f"{self.open_for * _US!r} {self.half_open_calls} {self.slow_call_rate!r} "
            f"{0 if self.slow_call_duration is None else 1} "
            f"{0 if seconds is None else max(1, math.ceil(seconds))}"
        )

    async def _run(self, op: str, *args: int) -> int:
        text: bytes = await self._backend.run(self._call, (f"{op} {self._settings()}", *args))
        state, permit, retry_us, calls, failed, slow = text.split()
        self._shared_calls, self._shared_failed = int(calls), int(failed)
        self._shared_slow = int(slow)
        retry = int(retry_us)
        self._retry_after = retry / _US if retry >= 0 else None
        self._observe(cast(State, state.decode()))
        return int(permit)

    def _observe(self, new: State) -> None:
        old = self._shared_state
        if new == old:
            return
        self._shared_state = new
        for callback in list(self._callbacks):
            try:
                callback(self, old, new)
            except Exception:
                _log.exception("on_transition callback of breaker %r failed", self.name)
