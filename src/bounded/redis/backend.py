"""RedisBackend: one connection pool, the Lua scripts, and what to do when Redis fails."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
from collections.abc import Coroutine, Iterator, Sequence
from importlib import resources
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import redis.asyncio as aioredis
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from bounded import _validate
from bounded.bulkhead import Bulkhead
from bounded.retry import Backoff

if TYPE_CHECKING:
    from bounded.redis.breaker import RedisCircuitBreaker
    from bounded.redis.bulkhead import RedisBulkhead
    from bounded.redis.ratelimit import AlgorithmName, RedisRateLimiter

__all__ = ["BackendUnavailable", "OnError", "RedisBackend"]

logger = logging.getLogger("bounded.redis")

OnError = Literal["fail_open", "fail_closed"]
T = TypeVar("T")
#: The head of a script call, ``("EVALSHA", sha, numkeys, *keys)``, encoded once.
Command = tuple[str | bytes, ...]
_UNCAPPED = 2**31 - 1


class BackendUnavailable(Exception):
    """Internal: Redis did not answer in time (or at all); the caller falls back."""


class RedisBackend:
    """Shared state for limiters in Redis: ``RedisBackend(os.environ["REDIS_URL"])``.

    One connection pool (redis-py's asyncio client) serves every limiter built on the
    backend; ``await backend.aclose()`` (or ``async with backend``) closes it. Script
    calls keep the connections they check out of it between calls. Every
    key starts with `prefix` and carries the limiter's name as a hash tag, so the keys
    of one limiter share a Redis Cluster slot.

    When Redis fails (an error, or no answer within `timeout` seconds), `on_error`
    decides: ``"fail_open"`` admits through a per-process in-memory limiter at the
    shared limit divided by `expected_processes`; ``"fail_closed"`` rejects with
    `retry_after`. One WARNING is logged per outage; `errors_total` counts the failed
    calls; Redis is tried again `retry_interval` seconds after a failure.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "bounded:",
        on_error: OnError = "fail_open",
        timeout: float = 0.5,
        expected_processes: int = 1,
        retry_interval: float = 1.0,
        lease: float = 10.0,
        max_connections: int = 50,
    ) -> None:
        if on_error not in ("fail_open", "fail_closed"):
            raise ValueError(f"on_error must be 'fail_open' or 'fail_closed', got {on_error!r}")
        self.prefix = prefix
        self.on_error: OnError = on_error
        self._deadlines = _Deadlines(_validate.positive("timeout", timeout))
        self.expected_processes = _validate.positive_int("expected_processes", expected_processes)
        self.retry_interval = _validate.positive("retry_interval", retry_interval)
        self._reconnect = Backoff(retry_interval, retry_interval, jitter="equal")
        self._rng = random.Random()
        #: Seconds a bulkhead slot stays held after its holder stops renewing it.
        self.lease = _validate.positive("lease", lease)
        # Bounds the script calls in flight (each holds one pooled connection). A Bulkhead,
        # not an asyncio.Semaphore: its synchronous try_acquire spares the common case a
        # coroutine per call (measured: ~1 us of an uncontended acquire's ~90).
        self._connections = Bulkhead(
            _validate.positive_int("max_connections", max_connections), name="redis connections"
        )
        self._url = url
        self._client: aioredis.Redis | None = None
        # Connections checked out of the pool for script calls, idle between calls: the
        # pool's check-out and release (its lock, health check and observability hooks)
        # cost more than a third of a round trip in redis-py 8 (bench/redis.py).
        self._idle: list[AbstractConnection] = []
        self._shas: dict[str, bytes] = {}
        self._sources: dict[str | bytes, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._services: set[asyncio.Task[None]] = set()
        self._down_until = -math.inf
        self._outage = False
        self._closed = False
        #: Calls to Redis that failed or timed out.
        self.errors_total = 0
        #: Outages seen (a WARNING each).
        self.outages_total = 0

    @property
    def timeout(self) -> float:
        """Seconds each call to Redis may take (connection wait, connect, send, reply)."""
        return self._deadlines.seconds

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("down" if self._outage else "up")
        return f"<RedisBackend prefix={self.prefix!r} {self.on_error} {state}>"

    @property
    def client(self) -> aioredis.Redis:
        """The redis-py asyncio client (created on first use)."""
        if self._closed:
            raise RuntimeError("this RedisBackend is closed")
        if self._client is None:
            # No socket_timeout: redis-py would wrap every send in a wait_for task and
            # every read in a timeout scope; `run` bounds the whole call with one cheap
            # deadline instead. Script calls beyond max_connections wait in `run` (a
            # burst is not an outage); pub/sub connections (one per bulkhead) come on
            # top, so the pool itself is not capped.
            pool = aioredis.ConnectionPool.from_url(
                self._url,
                socket_timeout=None,
                socket_connect_timeout=self.timeout,
                max_connections=_UNCAPPED,
            )
            self._client = aioredis.Redis.from_pool(pool)
        return self._client

    @property
    def available(self) -> bool:
        """False during an outage (until Redis answers again)."""
        return not self._outage

    def key(self, name: str, part: str) -> str:
        """The key of one part of limiter `name`: ``<prefix>{<name>}:<part>``."""
        return f"{self.prefix}{{{name}}}:{part}"

    def command(self, script: str, keys: Sequence[str]) -> Command:
        """The call of packaged Lua script `script` on `keys`, for `run` (build it once)."""
        sha = self._shas.get(script)
        if sha is None:
            source = resources.files("bounded.redis").joinpath(f"scripts/{script}.lua").read_text()
            sha = self._shas[script] = hashlib.sha1(source.encode()).hexdigest().encode()
            self._sources[sha] = source
        return ("EVALSHA", sha, b"%d" % len(keys), *(key.encode() for key in keys))

    async def run(self, command: Command, args: Sequence[Any]) -> Any:
        """Run a script call (EVALSHA, loading the script after a NOSCRIPT) with `args`.

        `BackendUnavailable` on failure or timeout (counted, logged once).
        """
        loop = asyncio.get_running_loop()
        if self._outage:
            now = loop.time()
            if now < self._down_until:
                raise BackendUnavailable
            # This call probes Redis; the others keep to the fallback until it answers.
            self._down_until = now + self.retry_interval
        deadlines = self._deadlines
        task = deadlines.arm(loop)
        connections = self._connections
        try:
            if not connections.try_acquire():
                await connections.acquire()
            try:
                try:
                    result = await self._call(command, args)
                except NoScriptError:
                    await self._call(("SCRIPT", "LOAD", self._sources[command[1]]), ())
                    result = await self._call(command, args)
            finally:
                connections.release()
        except BaseException as exc:
            expired = deadlines.disarm(task)
            if expired and isinstance(exc, asyncio.CancelledError):
                exc = TimeoutError(f"no answer within {self.timeout:g}s")
            elif not isinstance(exc, RedisError | OSError):
                raise
            self.failed(exc)
            raise BackendUnavailable from None
        deadlines.disarm(task)
        if self._outage:
            self._outage = False
            logger.warning("Redis backend answers again: shared limits back in force")
        return result

    async def _call(self, command: Command, args: Sequence[Any]) -> Any:
        """One script call on an idle checked-out connection (checked out if none is idle)."""
        reused = bool(self._idle)
        pool = self.client.connection_pool
        conn = self._idle.pop() if reused else await pool.get_connection()  # type: ignore[no-untyped-call]
        packed = conn.pack_command(*command, *args)
        try:
            # As the pool does at check-out: unread bytes or a closed socket (a restart
            # while idle) mean a fresh connection; `send_packed_command` reconnects.
            if conn.is_connected and await conn.can_read():
                await conn.disconnect()
            try:
                await conn.send_packed_command(packed, check_health=False)
                return await conn.read_response()
            except RedisConnectionError:
                if not reused:
                    raise
            # Idle since before a restart whose close the loop had not yet seen: once
            # more, on a new connection, as redis-py's own retry would.
            await conn.send_packed_command(packed, check_health=False)
            return await conn.read_response()
        finally:
            # redis-py disconnects on any failure but an error reply: the connection is
            # reusable either way. (An outage may have swapped the list meanwhile.)
            self._idle.append(conn)

    def reconnect_delay(self) -> float:
        """About `retry_interval` (equal jitter), so processes do not reconnect in lock-step."""
        return self._reconnect.delay(1, 0.0, self._rng)

    def failed(self, exc: BaseException) -> None:
        """Count a failed call; the first of an outage logs one WARNING."""
        self.errors_total += 1
        self._down_until = asyncio.get_running_loop().time() + self.retry_interval
        if not self._outage:
            self._outage = True
            self.outages_total += 1
            if self._client is not None:
                # Idle connections from before the outage would fail once it is over.
                self.spawn(self._reset(self._client.connection_pool, self._idle))
                self._idle = []
            mode = (
                f"admitting at 1/{self.expected_processes} of each limit in this process"
                if self.on_error == "fail_open"
                else "rejecting"
            )
            logger.warning(
                "Redis backend unavailable (%s: %s); %s until it answers",
                type(exc).__name__,
                exc,
                mode,
            )

    @staticmethod
    async def _reset(pool: aioredis.ConnectionPool, idle: list[AbstractConnection]) -> None:
        for conn in idle:
            await pool.release(conn)
        await pool.disconnect(inuse_connections=False)

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `coro` in the background, kept referenced until done (awaited at close)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def service(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a long-lived background loop, cancelled when the backend closes."""
        task = asyncio.get_running_loop().create_task(coro)
        self._services.add(task)
        task.add_done_callback(self._services.discard)
        return task

    def rate_limiter(
        self,
        rate: float,
        per: float = 1.0,
        *,
        name: str,
        burst: float = 1,
        algorithm: AlgorithmName = "gcra",
        max_wait: float | None = None,
        max_queue: int | None = None,
    ) -> RedisRateLimiter:
        """A `RateLimiter` whose state lives in Redis under `name`, shared by every process."""
        from bounded.redis.ratelimit import RedisRateLimiter

        return RedisRateLimiter(
            self,
            rate,
            per,
            name=name,
            burst=burst,
            algorithm=algorithm,
            max_wait=max_wait,
            max_queue=max_queue,
        )

    def bulkhead(
        self,
        limit: int = 10,
        *,
        name: str,
        max_queue: int | None = None,
        max_wait: float | None = None,
    ) -> RedisBulkhead:
        """A `Bulkhead` whose holders are leased in Redis under `name`, across processes."""
        from bounded.redis.bulkhead import RedisBulkhead

        return RedisBulkhead(self, limit, name=name, max_queue=max_queue, max_wait=max_wait)

    def circuit_breaker(self, name: str, **settings: Any) -> RedisCircuitBreaker:
        """A `CircuitBreaker` whose state and window live in Redis under `name`.

        `settings` are those of `CircuitBreaker`.
        """
        from bounded.redis.breaker import RedisCircuitBreaker

        return RedisCircuitBreaker(self, name, **settings)

    def collector(self) -> Collector:
        """Prometheus metrics of this backend: errors and whether Redis is reachable."""
        return _BackendCollector(self)

    async def aclose(self) -> None:
        """Finish background calls (refunds, releases) and close the connection pool."""
        if self._closed:
            return
        for service in list(self._services):
            service.cancel()
        await asyncio.gather(*self._services, return_exceptions=True)
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._closed = True
        self._deadlines.close()
        client, self._client = self._client, None
        self._idle = []
        if client is not None:  # disconnects the checked-out connections too
            await client.aclose()

    async def __aenter__(self) -> RedisBackend:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _Deadlines:
    """A deadline of `seconds` for each call in flight: the calling task is cancelled then.

    Same semantics as `asyncio.timeout` (see `disarm`), at the cost of one dict entry per
    call. The policy timer needs a heap because its deadlines differ in length; these are
    all `seconds` long, so they expire in the order they were armed and the dict (in
    insertion order) is the queue. One loop timer, re-armed only when it fires, serves
    them all.
    """

    __slots__ = ("_armed", "_expired", "_handle", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._armed: dict[asyncio.Task[Any], tuple[float, int]] = {}
        self._expired: dict[asyncio.Task[Any], int] = {}
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, loop: asyncio.AbstractEventLoop) -> asyncio.Task[Any]:
        """Start the current task's deadline; returns the task, for `disarm`."""
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("RedisBackend calls must run inside a task")
        when = loop.time() + self.seconds
        self._armed[task] = (when, task.cancelling())
        if self._handle is None:
            self._handle = loop.call_at(when, self._expire, loop)
        return task

    def disarm(self, task: asyncio.Task[Any]) -> bool:
        """End `task`'s deadline; True if it expired and no other cancellation is pending."""
        if self._armed.pop(task, None) is not None:
            return False
        baseline = self._expired.pop(task, None)
        return baseline is not None and task.uncancel() <= baseline

    def close(self) -> None:
        """Stop the loop timer (the backend is closed: nothing is in flight)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._handle = None
        now = loop.time()
        armed = self._armed
        while armed:
            task = next(iter(armed))
            when, baseline = armed[task]
            if when > now:
                self._handle = loop.call_at(when, self._expire, loop)
                return
            del armed[task]
            self._expired[task] = baseline
            task.cancel()


class _BackendCollector(Collector):
    def __init__(self, backend: RedisBackend) -> None:
        self._backend = backend

    def collect(self) -> Iterator[Metric]:
        errors = CounterMetricFamily(
            "bounded_backend_errors",
            "Calls to the shared-state backend that failed.",
            labels=["type"],
        )
        errors.add_metric(["redis"], float(self._backend.errors_total))
        up = GaugeMetricFamily(
            "bounded_backend_up", "1 while the backend answers.", labels=["type"]
        )
        up.add_metric(["redis"], 1.0 if self._backend.available else 0.0)
        yield errors
        yield up
