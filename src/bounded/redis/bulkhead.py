"""RedisBulkhead: a concurrency limit across processes, as a leased semaphore in Redis."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import logging
import uuid
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

from redis.exceptions import RedisError

from bounded import _validate
from bounded.bulkhead import Bulkhead, BulkheadStats
from bounded.errors import BulkheadFull
from bounded.redis.backend import BackendUnavailable, RedisBackend

__all__ = ["RedisBulkhead"]

logger = logging.getLogger("bounded.redis")

_US = 1_000_000.0
# A slot held through the in-process fallback while Redis was unavailable.
_LOCAL = ""


class _Waiter:
    __slots__ = ("future", "ticket", "token")

    def __init__(self, token: str, ticket: int, future: asyncio.Future[str]) -> None:
        self.token = token
        self.ticket = ticket  # its place in the queue in Redis
        self.future = future


class RedisBulkhead:
    """At most `limit` holders across every process sharing the name, prefix and Redis.

    Holders are leased: each process renews its holders' leases every third of
    ``backend.lease`` seconds, so the slot of a process that dies comes back within
    one lease. Waiters hold tickets in one queue in Redis (fair across processes,
    FIFO within one) and are woken by a release notification (Redis pub/sub), with
    a re-check each renewal in case a notification was missed.

    Differences forced by the network: `try_acquire` is a coroutine and `release`
    returns at once, handing the slot back in the background (the returned task
    may be awaited; ``async with`` waits for it). `stats().in_use` counts the holders
    of every process as of the last call to Redis.
    """

    __slots__ = (
        "_acquired_total",
        "_backend",
        "_command",
        "_fallback",
        "_held",
        "_keeper",
        "_keys",
        "_limit",
        "_max_queue",
        "_max_wait",
        "_pump_lock",
        "_rejected_total",
        "_seen_in_use",
        "_tokens",
        "_waiters",
        "name",
        "wait_observer",
    )

    def __init__(
        self,
        backend: RedisBackend,
        limit: int = 10,
        *,
        name: str,
        max_queue: int | None = None,
        max_wait: float | None = None,
    ) -> None:
        self._limit = _validate.positive_int("limit", limit)
        self._max_queue = _validate.optional_count("max_queue", max_queue)
        self._max_wait = _validate.optional_non_negative("max_wait", max_wait)
        self._backend = backend
        self.name = name
        parts = ("holders", "queue", "alive", "tickets", "released")
        self._keys = [backend.key(name, part) for part in parts]
        self._command = backend.command("bulkhead", self._keys)
        prefix = uuid.uuid4().hex
        self._tokens = (f"{prefix}:{n}" for n in itertools.count(1))
        self._held: list[str] = []  # tokens of this process's holders (_LOCAL: fallback)
        self._waiters: deque[_Waiter] = deque()
        self._keeper: asyncio.Task[None] | None = None
        self._pump_lock: asyncio.Lock | None = None
        self._fallback: Bulkhead | None = None
        self._seen_in_use = 0
        self._acquired_total = 0
        self._rejected_total = 0
        #: Called with the seconds waited, each time an acquire had to queue.
        self.wait_observer: Callable[[float], None] | None = None

    def __repr__(self) -> str:
        return (
            f"<RedisBulkhead {self.name!r} held here={len(self._held)} "
            f"limit={self._limit} queued={len(self._waiters)}>"
        )

    @property
    def limit(self) -> int:
        """The number of concurrent holders allowed across processes; assign to resize."""
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        self._limit = _validate.positive_int("limit", value)
        if self._fallback is not None:
            self._fallback.limit = self._local_limit()
        if self._waiters:
            self._backend.spawn(self._pump())

    @property
    def max_queue(self) -> int | None:
        """The most waiters of this process allowed to queue (None: unbounded)."""
        return self._max_queue

    @max_queue.setter
    def max_queue(self, value: int | None) -> None:
        self._max_queue = _validate.optional_count("max_queue", value)

    @property
    def max_wait(self) -> float | None:
        """The longest a waiter queues before `BulkheadFull` (None: forever)."""
        return self._max_wait

    @max_wait.setter
    def max_wait(self, value: float | None) -> None:
        self._max_wait = _validate.optional_non_negative("max_wait", value)

    @property
    def in_use(self) -> int:
        """Slots held by this process."""
        return len(self._held)

    async def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody is queued; never waits."""
        if self._waiters:
            return False
        token = next(self._tokens)
        try:
            granted, _ = await self._call("try", token)
        except BackendUnavailable:
            if self._backend.on_error == "fail_closed" or not self._local().try_acquire():
                return False
            token, granted = _LOCAL, True
        if granted:
            self._hold(token)
        return granted

    async def acquire(self) -> None:
        """Take a slot, waiting in FIFO order; `BulkheadFull` if the queue or wait is capped."""
        if self._max_queue is not None and len(self._waiters) >= self._max_queue:
            raise self._reject(f"{len(self._waiters)} waiters already queued (max_queue)")
        token = next(self._tokens)
        op = "try" if self._max_wait == 0 else "acquire"
        call = self._backend.spawn(self._call(op, token))
        try:
            granted, ticket = await asyncio.shield(call)
        except BackendUnavailable:
            await self._acquire_locally()
            return
        except asyncio.CancelledError:
            call.add_done_callback(lambda _: self._backend.spawn(self._leave(token)))
            raise
        if granted:
            self._hold(token)
            return
        if op == "try":
            raise self._reject("no slot free and max_wait is 0")
        await self._wait(token, ticket)

    def release(self) -> asyncio.Task[None]:
        """Give back a slot (in the background: the returned task may be awaited)."""
        if not self._held:
            raise RuntimeError(f"bulkhead {self.name!r} released more often than acquired")
        token = self._held.pop()
        return self._backend.spawn(self._release(token))

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()

    def stats(self) -> BulkheadStats:
        """Holders across processes (as of the last call), and this process's counters."""
        in_use = max(self._seen_in_use, len(self._held)) if self._held else self._seen_in_use
        return BulkheadStats(
            name=self.name,
            limit=self._limit,
            in_use=in_use,
            queued=sum(1 for w in self._waiters if not w.future.done()),
            utilization=min(1.0, in_use / self._limit),
            acquired_total=self._acquired_total,
            rejected_total=self._rejected_total,
        )

    # -- Redis ----------------------------------------------------------------------

    async def _call(self, op: str, *tokens: str) -> tuple[bool, int]:
        """Run `op`: whether the slot is granted, and the ticket of a token left queued."""
        reply = await self._backend.run(
            self._command, (op, self._limit, self._backend.lease * _US, *tokens)
        )
        self._seen_in_use = int(reply[1])
        return bool(reply[0]), int(reply[2])

    async def _release(self, token: str) -> None:
        if token == _LOCAL:
            self._local().release()
            return
        with contextlib.suppress(BackendUnavailable):  # the lease runs out on its own
            await self._call("release", token)
        if not self._held and not self._waiters:
            self._stop_keeper()

    async def _leave(self, token: str) -> None:
        with contextlib.suppress(BackendUnavailable):  # the ticket lapses with its lease
            await self._call("leave", token)

    def _hold(self, token: str) -> None:
        self._held.append(token)
        self._acquired_total += 1
        if token != _LOCAL:
            self._start_keeper()

    # -- waiting --------------------------------------------------------------------

    async def _wait(self, token: str, ticket: int) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        waiter = _Waiter(token, ticket, loop.create_future())
        self._enqueue(waiter)
        self._start_keeper()
        try:
            async with asyncio.timeout(self._max_wait):
                held = await waiter.future
        except asyncio.CancelledError:
            future = waiter.future
            if future.done() and not future.cancelled() and future.exception() is None:
                self._held.append(future.result())
                self.release()  # granted just before the cancellation landed: pass it on
            else:
                self._backend.spawn(self._leave(token))
            raise
        except TimeoutError:
            self._backend.spawn(self._leave(token))
            raise self._reject(f"no slot within max_wait={self._max_wait}s") from None
        except BulkheadFull as exc:
            self._rejected_total += 1
            raise exc from None
        finally:
            if not waiter.future.done():
                waiter.future.cancel()
        self._hold(held)
        if self.wait_observer is not None:
            self.wait_observer(loop.time() - started)

    async def _pump(self) -> None:
        """Grant slots to this process's waiters, oldest first, while Redis grants them."""
        if self._pump_lock is None:
            self._pump_lock = asyncio.Lock()
        async with self._pump_lock:  # one grant in flight per waiter
            await self._pump_locked()

    async def _pump_locked(self) -> None:
        waiters = self._waiters
        while waiters:
            head = waiters[0]
            if head.future.done():
                waiters.popleft()
                continue
            try:
                granted, ticket = await self._call("acquire", head.token)
            except BackendUnavailable:
                self._fail_waiters()
                return
            if not granted:
                if ticket == head.ticket or waiters[0] is not head:
                    return
                # Queued anew (its ticket had lapsed): its place in line has changed.
                waiters.popleft()
                head.ticket = ticket
                self._enqueue(head)
                continue
            if head.future.done():
                # Cancelled or timed out while the grant was on its way: hand it back.
                self._backend.spawn(self._release(head.token))
            else:
                head.future.set_result(head.token)
            if waiters and waiters[0] is head:
                waiters.popleft()

    def _enqueue(self, waiter: _Waiter) -> None:
        """Line up `waiter` by its ticket: the calls that queue this process's waiters
        run concurrently, so their answers may arrive out of the order Redis gave."""
        bisect.insort(self._waiters, waiter, key=lambda w: w.ticket)

    def _fail_waiters(self) -> None:
        """Redis is unavailable: waiters fall back or are refused, as configured."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if waiter.future.done():
                continue
            if self._backend.on_error == "fail_closed":
                waiter.future.set_exception(self._unavailable())
            else:
                self._backend.spawn(self._wait_locally(waiter.future))

    async def _wait_locally(self, future: asyncio.Future[str]) -> None:
        local = self._local()
        await local.acquire()
        if future.done():
            local.release()
        else:
            future.set_result(_LOCAL)

    def _start_keeper(self) -> None:
        if self._keeper is None or self._keeper.done():
            self._keeper = self._backend.service(self._keep())

    def _stop_keeper(self) -> None:
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()

    async def _keep(self) -> None:
        """Renew this process's leases and wake its waiters on each release notice."""
        period = self._backend.lease / 3
        loop = asyncio.get_running_loop()
        pubsub: Any = None
        renew_at = loop.time() + period
        reconnected = False  # a first error may be a connection that went stale
        try:
            while self._held or self._waiters:
                try:
                    if pubsub is None:
                        pubsub = self._backend.client.pubsub()
                        async with asyncio.timeout(self._backend.timeout):
                            await pubsub.subscribe(self._keys[4])
                        await self._pump()  # a release may have slipped in before
                    await pubsub.get_message(
                        ignore_subscribe_messages=True,
                        timeout=max(0.0, renew_at - loop.time()),
                    )
                    reconnected = False
                    if loop.time() >= renew_at:
                        renew_at = loop.time() + period
                        tokens = [t for t in self._held if t != _LOCAL]
                        tokens += [w.token for w in self._waiters if not w.future.done()]
                        if tokens:
                            await self._call("renew", *tokens)
                    await self._pump()
                except (RedisError, OSError, TimeoutError, BackendUnavailable) as exc:
                    if pubsub is not None:
                        await _close_quietly(pubsub)
                        pubsub = None
                    if not isinstance(exc, BackendUnavailable):
                        if not reconnected:
                            reconnected = True
                            continue
                        self._backend.failed(exc)
                    self._fail_waiters()
                    await asyncio.sleep(self._backend.reconnect_delay())
        finally:
            if pubsub is not None:
                await _close_quietly(pubsub)

    # -- failure --------------------------------------------------------------------

    def _local_limit(self) -> int:
        return max(1, self._limit // self._backend.expected_processes)

    def _local(self) -> Bulkhead:
        if self._fallback is None:
            self._fallback = Bulkhead(
                self._local_limit(),
                name=self.name,
                max_queue=self._max_queue,
                max_wait=self._max_wait,
            )
        return self._fallback

    def _unavailable(self) -> BulkheadFull:
        return BulkheadFull(
            self.name,
            self._backend.retry_interval,
            f"bulkhead {self.name!r}: Redis is unavailable (on_error=fail_closed)",
        )

    async def _acquire_locally(self) -> None:
        if self._backend.on_error == "fail_closed":
            self._rejected_total += 1
            raise self._unavailable()
        try:
            await self._local().acquire()
        except BulkheadFull:
            self._rejected_total += 1
            raise
        self._hold(_LOCAL)

    def _reject(self, reason: str) -> BulkheadFull:
        self._rejected_total += 1
        return BulkheadFull(self.name, None, f"bulkhead {self.name!r} is full: {reason}")


async def _close_quietly(pubsub: Any) -> None:
    with contextlib.suppress(RedisError, OSError):
        await pubsub.aclose()
