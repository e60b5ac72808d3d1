"""Bounded fan-out: `gather`, `map` and `stream` with at most `limit` things running.

All three run a pool of at most `limit` worker tasks that pull work from a shared
iterator, never one task per item: the cost per item is a few microseconds and the only
memory that grows with the input is the result list that `gather` and `map` return.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, overload

from bounded._validate import positive_int

__all__ = ["gather", "map", "stream"]

_T = TypeVar("_T")
_X = TypeVar("_X")

_CancelledError = asyncio.CancelledError


def _cancelled_from_outside() -> bool:
    """True when the running task has been asked to cancel (the error is ours to propagate)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _outcome(aw: Awaitable[Any]) -> Any:
    """The result of `aw`, or the exception it raised (for `return_exceptions=True`)."""
    try:
        return await aw
    except Exception as exc:
        return exc
    except _CancelledError as exc:
        if _cancelled_from_outside():
            raise
        return exc


class _Pool:
    """Up to `limit` tasks running `factory()`; the first failure cancels all of them.

    Workers are started lazily: the first one at `start()`, each further one when a
    worker has taken an item (`spawn()`), so a short input never creates `limit` tasks.
    """

    __slots__ = (
        "_ctx",
        "_factory",
        "_loop",
        "error",
        "failed",
        "limit",
        "started",
        "tasks",
        "waiters",
    )

    def __init__(self, factory: Callable[[], Any], limit: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._ctx = contextvars.copy_context()
        self._factory = factory
        self.limit = limit
        self.started = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.error: BaseException | None = None
        self.failed = False
        # Whoever waits on the pool: the caller of `run`, or the consumers of a stream
        # (more than one when several tasks iterate it at once).
        self.waiters: list[asyncio.Future[None]] = []

    def spawn(self) -> None:
        """Start one more worker unless `limit` were started or the pool has failed."""
        if self.started >= self.limit or self.failed:
            return
        self.started += 1
        # Each worker runs in its own copy of the caller's context, like a task would.
        task = self._loop.create_task(self._factory(), context=self._ctx.copy())
        self.tasks.add(task)
        task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        # Retrieved even when the pool has already failed, so that a second error (while
        # the first one cancels the rest) is dropped quietly, as by asyncio.gather, and
        # not logged as "never retrieved".
        exc = None if task.cancelled() else task.exception()
        if not self.failed:
            # A worker cancelled while we were not aborting: something inside raised
            # CancelledError on its own, which asyncio.gather also treats as a failure.
            if task.cancelled():
                exc = _CancelledError()
            if exc is not None:
                self.fail(exc)
                return
        if not self.tasks:
            self.notify()

    def fail(self, exc: BaseException | None) -> None:
        """Record the first failure (None: the caller gave up) and cancel every worker."""
        if self.failed:
            return
        self.failed = True
        self.error = exc
        for task in self.tasks:
            task.cancel()
        self.notify()

    def notify(self) -> None:
        """Wake whoever waits on the pool (the caller of `run`, or stream consumers)."""
        waiters = self.waiters
        if waiters:
            self.waiters = []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def wait(self) -> None:
        """Wait for the next `notify`."""
        waiter = self._loop.create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except _CancelledError:
            with contextlib.suppress(ValueError):  # `notify` may have dropped it already
                self.waiters.remove(waiter)
            raise

    async def drain(self) -> bool:
        """Wait until every worker has finished; True if we were cancelled meanwhile.

        Cancellation is held back until the workers are gone (like a TaskGroup), so no
        worker outlives the call; the caller re-raises it afterwards.
        """
        cancelled = False
        while self.tasks:
            try:
                await self.wait()
            except _CancelledError:
                cancelled = True
        return cancelled

    async def run(self) -> None:
        """Start the workers, wait for all of them, clean up and raise on failure."""
        self.spawn()
        try:
            while self.tasks and not self.failed:
                await self.wait()
        except _CancelledError:
            self.fail(None)
            await self.drain()
            raise
        if self.failed:
            if await self.drain():
                raise _CancelledError
            exc = self.error
            self.error = None
            if exc is None:  # pragma: no cover - fail(None) only comes from cancellation
                raise _CancelledError
            try:
                raise exc
            finally:
                del exc


async def _wait_all(futures: list[asyncio.Future[Any]]) -> bool:
    """Wait until every future is done, holding back cancellation; True if cancelled.

    An error a future ends with (one that failed while being cancelled) is retrieved and
    dropped, as asyncio.gather does after its first error.
    """
    cancelled = False
    pending = [f for f in futures if not f.done()]
    while pending:
        try:
            await asyncio.wait(pending)
        except _CancelledError:
            cancelled = True
        pending = [f for f in pending if not f.done()]
    for future in futures:
        if not future.cancelled():
            future.exception()
    return cancelled


def _discard(aws: Iterable[Awaitable[Any]]) -> list[asyncio.Future[Any]]:
    """Close unstarted coroutines, cancel futures; return the futures to wait for."""
    futures: list[asyncio.Future[Any]] = []
    for aw in aws:
        if asyncio.isfuture(aw):
            if not aw.done():
                aw.cancel()
                futures.append(aw)
        else:
            close = getattr(aw, "close", None)
            if close is not None and asyncio.iscoroutine(aw):
                close()
    return futures


@overload
async def gather(
    *aws: Awaitable[_T], limit: int, return_exceptions: Literal[False] = False
) -> list[_T]: ...
@overload
async def gather(
    *aws: Awaitable[_T], limit: int, return_exceptions: bool
) -> list[_T | BaseException]: ...
async def gather(
    *aws: Awaitable[_T], limit: int, return_exceptions: bool = False
) -> list[_T] | list[_T | BaseException]:
    """Await every awaitable with at most `limit` running at once; results in input order.

    A drop-in for `asyncio.gather` that is bounded. On the first exception (unless
    `return_exceptions`) every running awaitable is cancelled, every coroutine not yet
    started is closed, futures and tasks passed in are cancelled, and once all of them
    have finished the exception propagates. Cancelling the caller does the same and
    re-raises `CancelledError`. No task started here outlives the call.

    With `return_exceptions=True`, exceptions (including a `CancelledError` raised by an
    awaitable on its own) are returned in place of results.

    Coroutines run inside at most `limit` worker tasks, not one task each: context
    variables set by one coroutine may be seen by a later one in the same worker.
    """
    try:
        positive_int("limit", limit)
    except ValueError:
        _discard(aws)
        raise
    n = len(aws)
    results: list[Any] = [None] * n
    if n == 0:
        return results
    it: Iterator[tuple[int, Awaitable[_T]]] = enumerate(aws)

    async def worker() -> None:
        for i, aw in it:
            if pool.started < limit:
                pool.spawn()
            results[i] = await (_outcome(aw) if return_exceptions else aw)

    pool = _Pool(worker, limit)
    watched: list[asyncio.Future[Any]] = []
    if not return_exceptions:
        # Futures passed in run already: one that fails before a worker reaches it
        # fails the call at once, as with asyncio.gather.
        def on_future_done(fut: asyncio.Future[Any]) -> None:
            if not pool.failed:
                exc = _CancelledError() if fut.cancelled() else fut.exception()
                if exc is not None:
                    pool.fail(exc)

        for aw in aws:
            if asyncio.isfuture(aw):
                aw.add_done_callback(on_future_done)
                watched.append(aw)
    try:
        await pool.run()
    except BaseException:
        # Workers are gone; what they never reached is still ours to dispose of.
        if await _wait_all(_discard(a for _, a in it)):
            raise _CancelledError from None
        raise
    finally:
        for fut in watched:
            fut.remove_done_callback(on_future_done)
    return results


@overload
async def map(
    fn: Callable[[_X], Awaitable[_T]],
    items: Iterable[_X] | AsyncIterable[_X],
    *,
    limit: int,
    return_exceptions: Literal[False] = False,
) -> list[_T]: ...
@overload
async def map(
    fn: Callable[[_X], Awaitable[_T]],
    items: Iterable[_X] | AsyncIterable[_X],
    *,
    limit: int,
    return_exceptions: bool,
) -> list[_T | BaseException]: ...
async def map(
    fn: Callable[[_X], Awaitable[_T]],
    items: Iterable[_X] | AsyncIterable[_X],
    *,
    limit: int,
    return_exceptions: bool = False,
) -> list[_T] | list[_T | BaseException]:
    """Return `[await fn(x) for x in items]`, with at most `limit` calls running at once.

    `items` may be any iterable or async iterable and is consumed lazily: an item is
    taken only when a worker is free, so at most `limit` items are in flight. Results are
    in input order. Failure and cancellation behave as in `gather`: the first exception
    cancels the calls in flight and propagates once they have finished (unless
    `return_exceptions`). The caller's iterable is not closed.
    """
    positive_int("limit", limit)
    results: list[Any] = []
    call: Callable[[_X], Awaitable[Any]] = (lambda x: _outcome(fn(x))) if return_exceptions else fn

    if isinstance(items, AsyncIterable):
        ait = aiter(items)
        lock = asyncio.Lock()  # an async generator cannot be advanced concurrently
        exhausted = False

        async def worker() -> None:
            nonlocal exhausted
            while True:
                async with lock:
                    if exhausted:
                        return
                    try:
                        x = await anext(ait)
                    except StopAsyncIteration:
                        exhausted = True
                        return
                    i = len(results)
                    results.append(None)
                pool.spawn()
                results[i] = await call(x)

    else:
        # Inputs of known length get the result list allocated once, up front.
        grow = type(items) not in (list, tuple, range)
        if not grow:
            results = [None] * len(items)  # type: ignore[arg-type]
        it = enumerate(items)

        async def worker() -> None:
            for i, x in it:
                if grow:
                    results.append(None)
                if pool.started < limit:
                    pool.spawn()
                results[i] = await call(x)

    pool = _Pool(worker, limit)
    await pool.run()
    return results


class _Stream(Generic[_X, _T]):
    """The async context manager and iterator returned by `stream`."""

    __slots__ = (
        "_ait",
        "_exhausted",
        "_fn",
        "_free",
        "_it",
        "_items",
        "_limit",
        "_lock",
        "_next",
        "_ordered",
        "_pool",
        "_pulled",
        "_ready",
        "_ready_at",
        "_return_exceptions",
        "_room",
        "_state",
    )

    def __init__(
        self,
        fn: Callable[[_X], Awaitable[_T]],
        items: Iterable[_X] | AsyncIterable[_X],
        limit: int,
        ordered: bool,
        return_exceptions: bool,
    ) -> None:
        self._fn = fn
        self._items = items
        self._limit = limit
        self._ordered = ordered
        self._return_exceptions = return_exceptions
        self._ait: AsyncIterator[_X] | None = None
        self._it: Iterator[_X] | None = None
        self._lock: asyncio.Lock | None = None
        self._exhausted = False
        self._pool: _Pool | None = None
        self._free = 2 * limit  # window permits not taken
        self._room: deque[asyncio.Future[None]] = deque()  # workers waiting for a permit
        self._pulled = 0
        self._next = 0
        self._ready: deque[Any] = deque()  # completion order (unordered)
        self._ready_at: dict[int, Any] = {}  # index -> result (ordered)
        self._state = "new"  # new -> open -> closed

    async def __aenter__(self) -> AsyncIterator[_T]:
        if self._state != "new":
            raise RuntimeError("a bounded.stream can be entered only once")
        self._state = "open"
        if isinstance(self._items, AsyncIterable):
            self._ait = aiter(self._items)
            self._lock = asyncio.Lock()
        else:
            self._it = iter(self._items)
        self._pool = _Pool(self._worker, self._limit)
        self._pool.spawn()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._state = "closed"
        pool = self._pool
        if pool is None:
            return
        pool.fail(None)
        cancelled = await pool.drain()
        self._ready.clear()
        self._ready_at.clear()
        if cancelled and exc_type is None:
            raise _CancelledError

    # One permit per item taken and not yet handed to the consumer. `limit` workers
    # bound what runs; the window of 2 * limit lets as many finished results wait for
    # the consumer, who runs once per loop iteration, so that a worker rarely parks.
    # Memory stays O(limit) whatever the input. (asyncio.Semaphore scans all its
    # waiters on every release: O(limit) per item.)
    async def _wait_for_room(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._room.append(fut)
        try:
            await fut
        except _CancelledError:
            if fut.done() and not fut.cancelled():
                self._release()  # the permit was handed to us: pass it on
            else:
                # `_release` may have dropped the cancelled future from the deque already.
                with contextlib.suppress(ValueError):
                    self._room.remove(fut)
            raise

    def _release(self) -> None:
        room = self._room
        while room:
            fut = room.popleft()
            if not fut.done():
                fut.set_result(None)  # hand the permit over directly (FIFO)
                return
        self._free += 1

    async def _anext_item(self) -> tuple[int, _X] | None:
        """Take the next item of an async input and its index, or None when exhausted."""
        assert self._lock is not None
        assert self._ait is not None
        async with self._lock:
            if self._exhausted:
                return None
            try:
                x = await anext(self._ait)
            except StopAsyncIteration:
                self._exhausted = True
                return None
            i = self._pulled
            self._pulled = i + 1
            return i, x

    async def _worker(self) -> None:
        pool = self._pool
        assert pool is not None
        fn = self._fn
        it = self._it
        ordered = self._ordered
        return_exceptions = self._return_exceptions
        ready, ready_at = self._ready, self._ready_at
        while True:
            if self._free > 0 and not self._room:
                self._free -= 1
            else:
                await self._wait_for_room()
            if it is not None:
                try:
                    x = next(it)
                except StopIteration:
                    self._release()
                    return
                i = self._pulled
                self._pulled = i + 1
            else:
                taken = await self._anext_item()
                if taken is None:
                    self._release()
                    return
                i, x = taken
            if pool.started < self._limit:
                pool.spawn()
            result = await (_outcome(fn(x)) if return_exceptions else fn(x))
            if ordered:
                ready_at[i] = result
                if i == self._next:
                    pool.notify()
            else:
                ready.append(result)
                pool.notify()

    def __aiter__(self) -> AsyncIterator[_T]:
        return self

    async def __anext__(self) -> _T:
        pool = self._pool
        if self._state != "open" or pool is None:
            if self._state == "new":
                raise RuntimeError("iterate a bounded.stream inside `async with`")
            raise StopAsyncIteration
        while True:
            if pool.failed:
                self._state = "closed"
                if await pool.drain():
                    raise _CancelledError
                exc = pool.error
                pool.error = None
                if exc is None:  # pragma: no cover - fail(None) only on exit
                    raise StopAsyncIteration
                try:
                    raise exc
                finally:
                    del exc
            if self._ordered:
                ready_at = self._ready_at
                if self._next in ready_at:
                    result = ready_at.pop(self._next)
                    self._next += 1
                    self._release()
                    return result  # type: ignore[no-any-return]
            elif self._ready:
                result = self._ready.popleft()
                self._release()
                return result  # type: ignore[no-any-return]
            if not pool.tasks:
                self._state = "closed"
                raise StopAsyncIteration
            await pool.wait()


@overload
def stream(
    fn: Callable[[_X], Awaitable[_T]],
    items: Iterable[_X] | AsyncIterable[_X],
    *,
    limit: int,
    ordered: bool = False,
    return_exceptions: Literal[False] = False,
) -> _Stream[_X, _T]: ...
@overload
def stream(
    fn: Callable[[_X], Awaitable[_T]],
    items: Iterable[_X] | AsyncIterable[_X],
    *,
    limit: int,
    ordered: bool = False,
    return_exceptions: bool,
) -> _Stream[_X, _T | BaseException]: ...
def stream(
    fn: Callable[[_X], Awaitable[_T]],
    items: Iterable[_X] | AsyncIterable[_X],
    *,
    limit: int,
    ordered: bool = False,
    return_exceptions: bool = False,
) -> _Stream[_X, _T] | _Stream[_X, _T | BaseException]:
    """Run `fn` over `items` with at most `limit` calls at once, yielding results.

    Use as ``async with bounded.stream(fn, items, limit=10) as results: async for r in
    results: ...``. Results come as they complete, or in input order with
    `ordered=True`. At most `limit` calls run at once and items taken and not yet
    yielded (running or buffered) never exceed ``2 * limit``, so memory is O(limit) for
    any input length, and a slow consumer slows the input down. The first exception
    from `fn` (unless `return_exceptions`) cancels everything in flight and is raised by
    the next step of the iteration; results not yet yielded are dropped. Leaving the
    `async with` early cancels what is in flight and waits for it to finish.
    """
    positive_int("limit", limit)
    return _Stream(fn, items, limit, ordered, return_exceptions)
