"""RedisRateLimiter: `RateLimiter` with its state in Redis, one script call per acquire."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Literal

from bounded import _validate
from bounded.errors import RateLimited
from bounded.ratelimit import RateLimiter, RateLimiterStats
from bounded.ratelimit.checks import check_burst, check_cost, check_pace
from bounded.redis.backend import BackendUnavailable, RedisBackend

__all__ = ["AlgorithmName", "RedisRateLimiter"]

AlgorithmName = Literal["gcra", "sliding_window"]

_US = 1_000_000.0


class RedisRateLimiter:
    """A rate limit shared by every process that uses the same Redis, name and prefix.

    Same guarantees and interface as `bounded.RateLimiter`, with Redis server time as
    the clock. Each acquire is one script call: it admits at once, or reserves the
    earliest admission time after everyone who reached Redis before it (and then
    sleeps locally until then), or refuses up front when that time is beyond
    `max_wait`. A reservation abandoned by cancellation is given back when nothing
    was reserved after it (a gcra reservation with later ones on top lapses unused;
    a sliding-window one is always removed).

    Differences forced by the network: `try_acquire` is a coroutine; `refund`,
    `consume` and `throttle` return at once and reach Redis in the background (the
    returned task may be awaited); `stats().available` is as of the last call.
    """

    __slots__ = (
        "_admitted_total",
        "_algorithm",
        "_available",
        "_backend",
        "_burst",
        "_capacity",
        "_command",
        "_fallback",
        "_last",
        "_max_queue",
        "_max_wait",
        "_params",
        "_per",
        "_queued",
        "_rate",
        "_rejected_total",
        "_spec_acquire",
        "_spec_acquire_at",
        "_spec_try",
        "_tokens",
        "admission_observer",
        "name",
        "wait_observer",
    )

    def __init__(
        self,
        backend: RedisBackend,
        rate: float,
        per: float = 1.0,
        *,
        name: str,
        burst: float = 1,
        algorithm: AlgorithmName = "gcra",
        max_wait: float | None = None,
        max_queue: int | None = None,
    ) -> None:
        self._rate = _validate.positive("rate", rate)
        self._per = _validate.positive("per", per)
        check_burst(burst)
        check_pace(rate, per, burst if algorithm == "gcra" else 1)
        if algorithm == "gcra":
            self._command = backend.command(algorithm, [backend.key(name, "gcra")])
        elif algorithm == "sliding_window":
            keys = [backend.key(name, "log"), backend.key(name, "state")]
            self._command = backend.command(algorithm, keys)
        else:
            raise ValueError(f"algorithm must be 'gcra' or 'sliding_window', got {algorithm!r}")
        self._algorithm: AlgorithmName = algorithm
        self._burst = burst
        self._max_wait = _validate.optional_non_negative("max_wait", max_wait)
        self._max_queue = _validate.optional_count("max_queue", max_queue)
        self._backend = backend
        self.name = name
        self._queued = 0
        self._admitted_total = 0.0
        self._rejected_total = 0
        self._capacity = self._available = self.burst
        self._fallback: RateLimiter | None = None
        self._params = b""
        self._spec_acquire = self._spec_acquire_at = self._spec_try = b""
        self._encode_params()
        self._last: asyncio.Future[None] | None = None
        # Names of this process's reservations, so a cancelled one can be found again.
        # Bytes, as sent: redis-py would encode a str on every call.
        process = uuid.uuid4().hex.encode()
        self._tokens = (b"%s:%d" % (process, n) for n in itertools.count(1))
        #: Called with the seconds waited, each time an acquire had to wait.
        self.wait_observer: Callable[[float], None] | None = None
        #: Called with each admission's time on the Redis clock (seconds since the epoch),
        #: so admissions of several processes can be compared on one clock.
        self.admission_observer: Callable[[float], None] | None = None

    def __repr__(self) -> str:
        return (
            f"<RedisRateLimiter {self.name!r} {self._rate:g}/{self._per:g}s "
            f"{self._algorithm} queued={self._queued}>"
        )

    @property
    def algorithm(self) -> AlgorithmName:
        """Which algorithm admits requests."""
        return self._algorithm

    @property
    def rate(self) -> float:
        """Units admitted per `per` seconds; assign to change live (sent with each call)."""
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        _validate.positive("rate", value)
        check_pace(value, self._per, self._burst if self._algorithm == "gcra" else 1)
        self._rate = value
        self._encode_params()
        if self._fallback is not None:
            self._fallback.rate = self._rate / self._backend.expected_processes

    @property
    def per(self) -> float:
        """The period, in seconds, that `rate` refers to."""
        return self._per

    @property
    def burst(self) -> float:
        """The most units admitted at once (gcra); the whole rate for sliding_window."""
        return self._burst if self._algorithm == "gcra" else self._rate

    @burst.setter
    def burst(self, value: float) -> None:
        check_burst(value)
        if self._algorithm != "gcra":
            raise ValueError("burst applies to algorithm='gcra' only")
        check_pace(self._rate, self._per, value)
        self._burst = value
        self._encode_params()

    @property
    def max_wait(self) -> float | None:
        """The longest an acquire may wait before `RateLimited` (None: forever)."""
        return self._max_wait

    @max_wait.setter
    def max_wait(self, value: float | None) -> None:
        self._max_wait = _validate.optional_non_negative("max_wait", value)
        self._encode_params()

    @property
    def max_queue(self) -> int | None:
        """The most requests of this process allowed to wait (None: unbounded)."""
        return self._max_queue

    @max_queue.setter
    def max_queue(self, value: int | None) -> None:
        self._max_queue = _validate.optional_count("max_queue", value)

    async def try_acquire(self, cost: float = 1) -> bool:
        """Admit `cost` units if they conform now and nobody is waiting; never waits."""
        check_cost(cost, self.burst, self._algorithm)
        try:
            spec = self._spec_try if cost == 1 else self._spec("acquire", cost, 0)
            admitted = (await self._call(spec, next(self._tokens)))[0]
        except BackendUnavailable:
            local = self._local()
            admitted = self._backend.on_error == "fail_open" and local.try_acquire(
                min(cost, local.burst)
            )
        if admitted:
            self._admitted_total += cost
        return admitted

    async def acquire(self, cost: float = 1) -> None:
        """Wait until `cost` units are admitted; `RateLimited` at once if past `max_wait`."""
        if not 0 < cost <= self._capacity:
            check_cost(cost, self.burst, self._algorithm)
        if self._max_queue is not None and self._queued >= self._max_queue:
            self._rejected_total += 1
            raise RateLimited(
                self.name,
                None,
                f"rate limiter {self.name!r}: {self._queued} requests already queued (max_queue)",
            )
        observer = self.admission_observer
        if cost == 1:
            spec = self._spec_acquire if observer is None else self._spec_acquire_at
        else:
            op = "acquire" if observer is None else "acquire_at"
            spec = self._spec(op, cost, self._wait_arg())
        token = next(self._tokens)
        try:
            reply = await self._backend.run(self._command, (spec, token))
        except BackendUnavailable:
            await self._acquire_locally(cost)
            return
        except asyncio.CancelledError:
            # The reservation may have been made: give it back (a no-op if it was not).
            self._give_back(cost, token)
            raise
        if type(reply) is int and reply <= 0:  # admitted at once (the common case)
            self._available = -reply / 1000
            self._admitted_total += cost
            return
        admitted, wait_us, at_us = self._outcome(reply)
        wait = wait_us / _US
        if not admitted:
            self._rejected_total += 1
            raise RateLimited(
                self.name,
                wait,
                f"rate limiter {self.name!r}: the wait would be {wait:.3f}s "
                f"(max_wait={self._max_wait:g}s)",
            )
        if wait_us:
            # Sleepers of this process leave in the order of their reservations, even
            # when several reserved the same instant.
            ahead, turn = self._last, asyncio.get_running_loop().create_future()
            self._last = turn
            self._queued += 1
            try:
                await asyncio.sleep(wait)
                if ahead is not None and not ahead.done():
                    await asyncio.shield(ahead)
            except asyncio.CancelledError:
                self._give_back(cost, token)
                raise
            finally:
                self._queued -= 1
                turn.set_result(None)
                if self._last is turn:
                    self._last = None
            if self.wait_observer is not None:
                self.wait_observer(wait)
        self._admitted_total += cost
        if observer is not None:
            observer(at_us / _US)

    async def __aenter__(self) -> None:
        await self.acquire(1)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def refund(self, cost: float) -> asyncio.Task[None]:
        """Give back `cost` unused units (never above the burst capacity), in the background."""
        _validate.positive("cost", cost)
        self._admitted_total = max(0.0, self._admitted_total - cost)
        return self._backend.spawn(self._update("refund", cost))

    def consume(self, cost: float) -> asyncio.Task[None]:
        """Count `cost` units as used now, even beyond the limit (a debt later requests pay)."""
        _validate.positive("cost", cost)
        self._admitted_total += cost
        return self._backend.spawn(self._update("consume", cost))

    def throttle(self, remaining: float, reset_after: float) -> asyncio.Task[None]:
        """A server reports only `remaining` units left for `reset_after` seconds.

        Every process sharing the limit lowers what it admits to match.
        """
        _validate.non_negative("remaining", remaining)
        _validate.non_negative("reset_after", reset_after)
        return self._backend.spawn(self._update("throttle", 1, remaining, reset_after))

    def stats(self) -> RateLimiterStats:
        """Counters of this process; `available` as Redis reported it on the last call."""
        capacity = self.burst
        utilization = 1.0 if self._queued else max(0.0, 1.0 - self._available / capacity)
        return RateLimiterStats(
            name=self.name,
            rate=self._rate,
            per=self._per,
            available=self._available,
            queued=self._queued,
            admitted_total=self._admitted_total,
            rejected_total=self._rejected_total,
            utilization=min(1.0, utilization),
        )

    def _encode_params(self) -> None:
        """The limit's numbers as the script takes them, encoded once per change."""
        if self._algorithm == "gcra":
            numbers = (self._per / self._rate * _US, self._burst)
        else:
            numbers = (self._rate, self._per * _US)
        self._params = b"%r %r" % tuple(float(n) for n in numbers)
        self._spec_acquire = self._spec("acquire", 1, self._wait_arg())
        self._spec_acquire_at = self._spec("acquire_at", 1, self._wait_arg())
        self._spec_try = self._spec("acquire", 1, 0)
        self._capacity = self.burst

    def _wait_arg(self) -> float:
        return -1.0 if self._max_wait is None else self._max_wait * _US

    def _spec(self, op: str, cost: float, arg: float) -> bytes:
        """The script's first argument: ``op cost <params> arg`` in one string."""
        return b"%s %r %s %r" % (op.encode(), float(cost), self._params, float(arg))

    async def _call(self, spec: bytes, extra: bytes | float) -> tuple[bool, int, int]:
        """One script call, its reply as `_outcome` reads it."""
        return self._outcome(await self._backend.run(self._command, (spec, extra)))

    def _outcome(self, reply: int | bytes) -> tuple[bool, int, int]:
        """Admitted, the wait (or retry_after) and the admission time in microseconds (the
        time is -1 unless the op asked for it), from a script's reply (see the scripts)."""
        if type(reply) is int:
            if reply > 0:
                self._available = 0.0
                return True, reply, -1
            self._available = -reply / 1000
            return True, 0, -1
        admitted, wait, available, at = map(int, reply.split())  # type: ignore[union-attr]
        self._available = available / 1000
        return admitted == 1, wait, at

    async def _update(
        self, op: str, cost: float, remaining: float = 0, reset_after: float = 0
    ) -> None:
        try:
            await self._call(self._spec(op, cost, remaining), float(reset_after) * _US)
        except BackendUnavailable:
            if self._backend.on_error == "fail_open":
                local = self._local()
                if op == "throttle":
                    local.throttle(remaining, reset_after)
                else:
                    getattr(local, op)(cost)

    def _give_back(self, cost: float, token: bytes) -> None:
        self._backend.spawn(self._cancel(cost, token))

    async def _cancel(self, cost: float, token: bytes) -> None:
        # Unreachable Redis: the reservation lapses at its time, nothing to undo here.
        with contextlib.suppress(BackendUnavailable):
            await self._call(self._spec("cancel", cost, 0), token)

    def _local(self) -> RateLimiter:
        """The per-process stand-in while Redis is unavailable (fail_open)."""
        if self._fallback is None:
            share = self._rate / self._backend.expected_processes
            self._fallback = RateLimiter(
                share,
                self._per,
                name=self.name,
                burst=self._burst if self._algorithm == "gcra" else 1,
                algorithm=self._algorithm,
                max_wait=self._max_wait,
            )
        return self._fallback

    async def _acquire_locally(self, cost: float) -> None:
        if self._backend.on_error == "fail_closed":
            self._rejected_total += 1
            retry_after = self._backend.retry_interval
            raise RateLimited(
                self.name,
                retry_after,
                f"rate limiter {self.name!r}: Redis is unavailable (on_error=fail_closed)",
            )
        local = self._local()
        taken = min(cost, local.burst)
        try:
            await local.acquire(taken)
        except RateLimited:
            self._rejected_total += 1
            raise
        if cost > taken:
            local.consume(cost - taken)  # the local share is smaller than one request
        self._admitted_total += cost
