"""Background tasks that are never orphaned, and thread offload with a bound.

`TaskManager` replaces bare ``asyncio.create_task`` (whose result the loop holds only
weakly) and daemon threads used as timers: it keeps every task alive until it is done,
logs and counts failures, and cancels everything at shutdown, reporting what would not
stop. `to_thread` is ``asyncio.to_thread`` with an optional limiter held for as long as
the thread really runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager, suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeVar

from bounded._validate import non_negative, positive_int
from bounded.errors import BulkheadFull

__all__ = ["TaskManager", "TaskManagerStats", "to_thread"]

logger = logging.getLogger("bounded.tasks")

_T = TypeVar("_T")

_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class TaskManagerStats:
    """A snapshot of a `TaskManager`."""

    name: str
    running: int
    limit: int | None
    spawned_total: int
    failed_total: int


class TaskManager:
    """Owns background tasks: strong references, failure logging, orderly shutdown.

    ``spawn(coro)`` starts a task and keeps it referenced until it is done; a task that
    fails (raises anything but `CancelledError`) is logged on the ``bounded.tasks``
    logger with its name and counted in `failed_total`. With `limit`, at most that many
    tasks run at once: `spawn` raises `BulkheadFull` when full, `spawn_wait` waits for
    room (first come, first served). `wait` waits until no task is left; `shutdown`
    cancels everything and reports the tasks that would not stop.

    ``async with TaskManager() as tm:`` cancels the tasks still running when the block
    ends (`on_exit="cancel"`, the default: background work that lives as long as its
    owner). With ``on_exit="wait"`` it behaves like `asyncio.TaskGroup`: the block's end
    waits for every task, and an exception (or cancellation) leaving the block cancels
    them instead. Either way the manager is shut down on exit.
    """

    __slots__ = (
        "_closed",
        "_failed_total",
        "_limit",
        "_name",
        "_on_exit",
        "_reserved",
        "_spawned_total",
        "_tasks",
        "_waiters",
    )

    def __init__(
        self,
        name: str | None = None,
        limit: int | None = None,
        *,
        on_exit: Literal["cancel", "wait"] = "cancel",
    ) -> None:
        self._name = name if name is not None else f"taskmanager-{next(_ids)}"
        self._limit = None if limit is None else positive_int("limit", limit)
        if on_exit not in ("cancel", "wait"):
            raise ValueError(f"on_exit must be 'cancel' or 'wait', got {on_exit!r}")
        self._on_exit = on_exit
        self._tasks: set[asyncio.Task[Any]] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._reserved = 0  # room handed to a woken `spawn_wait` that has not run yet
        self._spawned_total = 0
        self._failed_total = 0
        self._closed = False

    @property
    def name(self) -> str:
        """The manager's name (used in logs and errors)."""
        return self._name

    @property
    def limit(self) -> int | None:
        """Most tasks running at once (None: no limit)."""
        return self._limit

    @property
    def on_exit(self) -> Literal["cancel", "wait"]:
        """What leaving ``async with`` does with running tasks: cancel them, or wait."""
        return self._on_exit

    @property
    def closed(self) -> bool:
        """True once `shutdown` has been called: no new tasks are accepted."""
        return self._closed

    def __len__(self) -> int:
        return len(self._tasks)

    def __repr__(self) -> str:
        return (
            f"<TaskManager {self._name!r} running={len(self._tasks)} "
            f"limit={self._limit} closed={self._closed}>"
        )

    def stats(self) -> TaskManagerStats:
        """Return a snapshot of the counts."""
        return TaskManagerStats(
            name=self._name,
            running=len(self._tasks),
            limit=self._limit,
            spawned_total=self._spawned_total,
            failed_total=self._failed_total,
        )

    def _full(self) -> bool:
        return self._limit is not None and len(self._tasks) + self._reserved >= self._limit

    def spawn(self, coro: Coroutine[Any, Any, _T], *, name: str | None = None) -> asyncio.Task[_T]:
        """Start `coro` as a task owned by this manager and return the task.

        Raises `RuntimeError` after `shutdown`, and `BulkheadFull` when `limit` tasks are
        running or queued for; in both cases `coro` is closed, never run.
        """
        try:
            loop = asyncio.get_running_loop()
            if self._closed:
                raise RuntimeError(f"TaskManager {self._name!r} is shut down")
            if self._full():
                raise BulkheadFull(self._name, None)
        except BaseException:
            coro.close()  # it will never run: no "never awaited" warning later
            raise
        return self._start(loop, coro, name)

    async def spawn_wait(
        self, coro: Coroutine[Any, Any, _T], *, name: str | None = None
    ) -> asyncio.Task[_T]:
        """Like `spawn`, but wait (FIFO) for room instead of raising `BulkheadFull`."""
        try:
            loop = asyncio.get_running_loop()
            if self._closed:
                raise RuntimeError(f"TaskManager {self._name!r} is shut down")
            if self._full():
                fut: asyncio.Future[None] = loop.create_future()
                self._waiters.append(fut)
                try:
                    await fut
                except BaseException:
                    if fut.done() and not fut.cancelled() and fut.exception() is None:
                        # Room was handed to us: give it to the next in line.
                        self._reserved -= 1
                        self._wake_next()
                    else:
                        with suppress(ValueError):
                            self._waiters.remove(fut)
                    raise
                self._reserved -= 1
        except BaseException:
            coro.close()
            raise
        return self._start(loop, coro, name)

    def _start(
        self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, _T], name: str | None
    ) -> asyncio.Task[_T]:
        task = loop.create_task(coro, name=name)
        self._tasks.add(task)
        self._spawned_total += 1
        task.add_done_callback(self._on_done)
        return task

    def _wake_next(self) -> None:
        while self._waiters and not self._full():
            fut = self._waiters.popleft()
            if not fut.done():
                self._reserved += 1
                fut.set_result(None)

    def _on_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            exc = task.exception()  # also marks it retrieved: no "never retrieved" noise
            if exc is not None:
                self._failed_total += 1
                logger.error(
                    "task %r of %s failed: %s: %s",
                    task.get_name(),
                    self._name,
                    type(exc).__name__,
                    exc,
                    exc_info=exc,
                )
        self._wake_next()

    async def wait(self) -> None:
        """Wait until every task is done, including tasks spawned while waiting.

        Failures are logged and counted as usual, not raised. The calling task is not
        waited for even if the manager owns it. Bound the wait with `asyncio.timeout`.
        """
        current = asyncio.current_task()
        while True:
            pending = [t for t in self._tasks if t is not current]
            if not pending:
                return
            await asyncio.wait(pending)

    async def shutdown(self, timeout: float = 10.0) -> list[asyncio.Task[Any]]:  # noqa: ASYNC109
        """Stop accepting tasks, cancel every running one and wait up to `timeout` seconds.

        Returns the tasks that had not finished by then (each is also named in a WARNING
        log). They stay referenced by the manager until they end. The task calling
        `shutdown` is never cancelled or waited for, even if the manager owns it.
        """
        non_negative("timeout", timeout)
        self._closed = True
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(RuntimeError(f"TaskManager {self._name!r} is shut down"))
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        stragglers = [t for t in tasks if not t.done()]
        if stragglers:
            logger.warning(
                "%s: %d task(s) did not stop within %.3gs of cancellation: %s",
                self._name,
                len(stragglers),
                timeout,
                ", ".join(repr(t.get_name()) for t in stragglers),
            )
        return stragglers

    async def __aenter__(self) -> TaskManager:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._on_exit == "wait" and exc is None:
            try:
                await self.wait()
            except BaseException:
                await self.shutdown()
                raise
        await self.shutdown()


# -------------------------------------------------------------------- to_thread

_PENDING, _RUNNING, _FINISHED, _ABANDONED, _ORPHANED = range(5)

# Releases of limiters that have no synchronous `release()` run as tasks: keep them alive.
_release_tasks: set[asyncio.Task[Any]] = set()


class _ThreadCall:
    """One call in a worker thread, and who releases the limiter when it ends."""

    __slots__ = ("_call", "_limiter", "_lock", "_loop", "_state")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        limiter: AbstractAsyncContextManager[Any],
        call: Callable[[], Any],
    ) -> None:
        self._loop = loop
        self._limiter = limiter
        self._call = call
        self._lock = threading.Lock()
        self._state = _PENDING

    def run(self) -> Any:
        """Runs in the worker thread."""
        with self._lock:
            if self._state == _ABANDONED:
                return None  # the caller gave up before we started: do nothing
            self._state = _RUNNING
        try:
            return self._call()
        finally:
            with self._lock:
                orphaned = self._state == _ORPHANED
                self._state = _FINISHED
            if orphaned:
                # RuntimeError: the loop is closed, nobody is left to release to.
                with suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(_release, self._limiter)

    def abandon(self) -> None:
        """The awaiting task was cancelled: release now, or when the thread ends."""
        with self._lock:
            state = self._state
            if state == _RUNNING:
                self._state = _ORPHANED
                return
            self._state = _ABANDONED
        _release(self._limiter)


def _release(limiter: AbstractAsyncContextManager[Any]) -> None:
    """Release `limiter` from a callback (no task to await in)."""
    release = getattr(limiter, "release", None)
    if callable(release) and not asyncio.iscoroutinefunction(release):
        try:
            release()
        except Exception:
            logger.exception("releasing %r after an abandoned to_thread call failed", limiter)
        return

    async def exit_limiter() -> None:
        await limiter.__aexit__(None, None, None)

    task = asyncio.get_running_loop().create_task(exit_limiter())
    _release_tasks.add(task)
    task.add_done_callback(_release_done)


def _release_done(task: asyncio.Task[Any]) -> None:
    _release_tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error(
            "releasing a limiter after an abandoned to_thread call failed",
            exc_info=task.exception(),
        )


async def to_thread(
    fn: Callable[..., _T],
    /,
    *args: Any,
    limiter: AbstractAsyncContextManager[Any] | None = None,
    **kwargs: Any,
) -> _T:
    """Run ``fn(*args, **kwargs)`` in the loop's default executor and return its result.

    Like `asyncio.to_thread` (context variables are copied; no thread is created here),
    plus `limiter`: an async context manager such as a `Bulkhead` or an
    `asyncio.Semaphore`, held around the call so at most that many threads are used.

    Cancelling the caller cannot stop a thread: the caller gets `CancelledError` at once
    while the thread runs on, and the limiter stays held until the thread really ends,
    so the bound still holds. (A call cancelled before its thread started never runs.)
    A limiter is then released from a loop callback: through its synchronous
    ``release()`` when it has one, else through ``__aexit__`` in a background task.
    """
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    if limiter is None:
        return await loop.run_in_executor(None, call)
    await limiter.__aenter__()
    job = _ThreadCall(loop, limiter, call)
    try:
        fut = loop.run_in_executor(None, job.run)
    except BaseException:
        job.abandon()
        raise
    try:
        result: _T = await fut
    except asyncio.CancelledError:
        job.abandon()
        raise
    except BaseException as exc:
        await limiter.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    await limiter.__aexit__(None, None, None)
    return result
