"""DatabasePool: a named, bounded asyncpg pool that never leaks its password."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl as ssl_module
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn

import asyncpg

from bounded import _validate
from bounded.db.dsn import ParsedDsn, SslSetting, parse_dsn, redact_dsn, resolve_ssl, scrub
from bounded.errors import ConfigError, PoolExhausted

__all__ = ["DatabasePool", "PoolStats"]

logger = logging.getLogger("bounded.db")

# Failures that mean "this connection is gone". A read shortcut retries once on a fresh
# connection after any of them (see DatabasePool._run).
_CONNECTION_LOST: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash, cannot connect now
    ConnectionResetError,
    BrokenPipeError,
)
# Server errors proving the statement did not commit, so even a write may be retried.
_NOT_EXECUTED: tuple[type[BaseException], ...] = (asyncpg.exceptions.OperatorInterventionError,)


def _retry_safe(exc: BaseException, idempotent: bool) -> bool:
    """True when `exc` says the connection died and retrying cannot apply a statement twice."""
    if isinstance(exc, asyncpg.exceptions.InternalClientError | asyncpg.exceptions.InterfaceError):
        # Raised before anything is sent: the connection got the server's farewell
        # (or was closed) while idle in the pool.
        text = str(exc)
        return "cannot switch to state" in text or "connection is closed" in text
    if isinstance(exc, _NOT_EXECUTED) or isinstance(exc.__cause__, _NOT_EXECUTED):
        return True
    return idempotent and isinstance(exc, _CONNECTION_LOST)


class _ScrubSecrets(logging.Filter):
    """Masks the passwords of live pools in asyncpg's own log records (e.g. reconnect errors)."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = tuple(s for pool in list(_LIVE_POOLS) for s in pool._secrets)
        if not secrets:
            return True
        message = record.getMessage()
        clean = scrub(message, secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            text = scrub(record.exc_text, secrets)
            if text != record.exc_text:
                record.exc_text = text
                record.exc_info = None  # a handler formatting it afresh would leak again
        return True


_LIVE_POOLS: weakref.WeakSet[DatabasePool] = weakref.WeakSet()
_SCRUB_FILTER = _ScrubSecrets()
for _name in ("asyncpg", "asyncpg.pool", "asyncpg.connection"):
    logging.getLogger(_name).addFilter(_SCRUB_FILTER)

# Hold times are sampled on one acquire in eight (a clock read each side is not free).
_HOLD_SAMPLE_MASK = 7
# How much one new hold time moves the running mean used for `retry_after`.
_HOLD_EWMA = 0.2


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A point-in-time view of a pool (no DSN, no secret)."""

    name: str
    size: int  # open connections
    in_use: int  # connections handed out (including ones being reset on release)
    idle: int  # open connections nobody holds
    max_size: int
    waiting: int  # acquires in progress
    utilization: float  # in_use / max_size
    acquired_total: int = 0  # connections handed out since the pool was created
    rejected_total: int = 0  # acquires that ended in PoolExhausted


class DatabasePool:
    """A named asyncpg connection pool with an acquire deadline and a statement timeout.

    ``dsn`` (URL or libpq key/value form) defaults to the ``DATABASE_URL`` environment
    variable. ``ssl="auto"`` means no TLS for loopback hosts and unix sockets and verified
    TLS elsewhere; ``True``/``False``, an ``ssl.SSLContext`` or an sslmode string override
    it. Waiting longer than ``acquire_timeout`` for a connection raises `PoolExhausted`.
    Every statement is limited to ``statement_timeout`` seconds server-side (None: no
    limit). Connections carry ``application_name`` (default ``bounded:<name>``). The pool
    survives a database restart: dead connections are dropped and replaced on demand.
    The password appears in no repr, log record, error or stats.
    """

    __slots__ = (
        "__weakref__",
        "_acquire_timeout",
        "_acquired_total",
        "_application_name",
        "_closing",
        "_connect_kwargs",
        "_hold_mean",
        "_in_use",
        "_max_size",
        "_min_size",
        "_open_lock",
        "_parsed",
        "_pool",
        "_redacted",
        "_rejected_total",
        "_secrets",
        "_ssl",
        "_statement_timeout",
        "_waiting",
        "name",
        "wait_observer",
    )

    def __init__(
        self,
        dsn: str | None = None,
        *,
        name: str = "default",
        min_size: int = 5,
        max_size: int = 20,
        acquire_timeout: float = 10.0,
        statement_timeout: float | None = 10.0,
        ssl: SslSetting = "auto",
        application_name: str | None = None,
        **connect_kwargs: Any,
    ) -> None:
        self.name = name
        self._max_size = _validate.positive_int("max_size", max_size)
        if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 0:
            raise ValueError(f"min_size must be an integer >= 0, got {min_size!r}")
        if min_size > max_size:
            raise ValueError(f"min_size must be <= max_size ({max_size}), got {min_size!r}")
        self._min_size = min_size
        self._acquire_timeout = _validate.positive("acquire_timeout", acquire_timeout)
        self._statement_timeout = _validate.optional_positive(
            "statement_timeout", statement_timeout
        )
        if dsn is None:
            dsn = os.environ.get("DATABASE_URL") or None
        if not dsn:
            raise ConfigError(
                f"databases.{name}.dsn", "no DSN given and the DATABASE_URL variable is not set"
            )
        self._redacted = redact_dsn(dsn)
        self._parsed: ParsedDsn = parse_dsn(dsn)
        secrets = list(self._parsed.secrets)
        for key in ("password", "sslpassword"):
            value = connect_kwargs.get(key)
            if isinstance(value, str) and value:
                secrets.append(value)
        self._secrets: tuple[str, ...] = tuple(sorted(set(secrets), key=len, reverse=True))
        if self._secrets:
            _LIVE_POOLS.add(self)
        self._ssl = resolve_ssl(ssl, self._parsed)
        self._application_name = (
            application_name if application_name is not None else f"bounded:{name}"
        )
        self._connect_kwargs = connect_kwargs
        self._pool: asyncpg.Pool | None = None
        self._open_lock: asyncio.Lock | None = None
        self._closing = False
        self._in_use = 0
        self._waiting = 0
        self._acquired_total = 0
        self._rejected_total = 0
        self._hold_mean = 0.0
        #: Called with the seconds an acquire waited, each time the pool was fully in use.
        self.wait_observer: Callable[[float], None] | None = None

    # -- description ---------------------------------------------------------------------

    def __repr__(self) -> str:
        state = "open" if self._pool is not None else "closed"
        return (
            f"<DatabasePool {self.name!r} {self._redacted} {state} "
            f"in_use={self._in_use}/{self._max_size} waiting={self._waiting}>"
        )

    @property
    def redacted_dsn(self) -> str:
        """The DSN with its password replaced by ``***``."""
        return self._redacted

    @property
    def max_size(self) -> int:
        """The most connections this pool opens."""
        return self._max_size

    @property
    def min_size(self) -> int:
        """The connections this pool keeps open when idle."""
        return self._min_size

    @property
    def acquire_timeout(self) -> float:
        """Seconds an acquire may wait before `PoolExhausted`."""
        return self._acquire_timeout

    @property
    def statement_timeout(self) -> float | None:
        """Server-side limit on each statement, in seconds (None: none)."""
        return self._statement_timeout

    @property
    def application_name(self) -> str:
        """The ``application_name`` every connection of this pool reports."""
        return self._application_name

    @property
    def ssl(self) -> bool | ssl_module.SSLContext | str | None:
        """The TLS setting handed to asyncpg (None: the DSN's sslmode or PGSSLMODE decides)."""
        return self._ssl

    @property
    def is_open(self) -> bool:
        """True between `open()` and `close()`."""
        return self._pool is not None

    def stats(self) -> PoolStats:
        """Current size, use and queue of the pool."""
        pool = self._pool
        size = pool.get_size() if pool is not None else 0
        in_use = self._in_use
        return PoolStats(
            name=self.name,
            size=size,
            in_use=in_use,
            idle=max(size - in_use, 0),
            max_size=self._max_size,
            waiting=self._waiting,
            utilization=in_use / self._max_size,
            acquired_total=self._acquired_total,
            rejected_total=self._rejected_total,
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the pool and its first ``min_size`` connections (idempotent)."""
        if self._pool is not None:
            return
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self._pool is not None:
                return
            server_settings: dict[str, str] = dict(
                self._parsed.kwargs.get("server_settings", {}),
                **self._connect_kwargs.get("server_settings", {}),
            )
            server_settings["application_name"] = self._application_name
            if self._statement_timeout is not None:
                server_settings["statement_timeout"] = str(round(self._statement_timeout * 1000))
            kwargs: dict[str, Any] = {**self._parsed.kwargs, **self._connect_kwargs}
            kwargs["server_settings"] = server_settings
            if self._ssl is not None:
                kwargs["ssl"] = self._ssl
            try:
                pool = await asyncpg.create_pool(
                    self._parsed.dsn,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    **kwargs,
                )
            except Exception as exc:
                clean = self._scrubbed(exc, f"cannot open pool {self.name!r}")
                if clean is exc:
                    raise
                raise clean from None
            self._pool = pool
            self._closing = False
            logger.info(
                "database pool %r open: %s (min_size=%d, max_size=%d)",
                self.name,
                self._redacted,
                self._min_size,
                self._max_size,
            )

    async def close(self, grace: float = 10.0) -> None:
        """Wait up to `grace` seconds for held connections to come back, then close all."""
        pool = self._pool
        if pool is None or self._closing:
            return
        self._closing = True
        try:
            async with asyncio.timeout(grace):
                await pool.close()
        except TimeoutError:
            logger.warning(
                "database pool %r: connections still held after %.1fs; terminating them",
                self.name,
                grace,
            )
            pool.terminate()
        finally:
            self._pool = None
            self._closing = False
        logger.info("database pool %r closed", self.name)

    async def __aenter__(self) -> DatabasePool:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- connections -----------------------------------------------------------------------

    def connection(self) -> _ConnectionContext:
        """``async with pool.connection() as conn``: hold one connection for the block."""
        return _ConnectionContext(self)

    def _raise_clean(self, exc: BaseException) -> NoReturn:
        """Re-raise `exc` as it is, or as a copy without the secret it quotes."""
        clean = self._scrubbed(exc, f"pool {self.name!r} cannot connect")
        if clean is exc:
            raise exc
        raise clean from None

    async def _wait(self, steps: Generator[Any, None, Any], pending: Any) -> Any:
        """Finish an acquire that had to wait (for a free connection, or a new one)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._waiting += 1
        try:
            async with asyncio.timeout_at(started + self._acquire_timeout) as deadline:
                con = await _Resume(steps, pending)
        except TimeoutError:
            if deadline.expired():
                self._rejected_total += 1
                raise PoolExhausted(
                    self.name,
                    self._retry_after(),
                    f"PoolExhausted: no connection from pool {self.name!r} within "
                    f"{self._acquire_timeout:g}s ({self._max_size} in use)",
                ) from None
            raise
        except Exception as exc:
            self._raise_clean(exc)
        finally:
            self._waiting -= 1
        observer = self.wait_observer
        if observer is not None:
            try:
                observer(loop.time() - started)
            except Exception:  # observing must never cost the caller its connection
                logger.exception("wait_observer of pool %r failed", self.name)
        return con

    def _hold_sample(self, held_since: float) -> None:
        held = asyncio.get_running_loop().time() - held_since
        self._hold_mean += _HOLD_EWMA * (held - self._hold_mean)

    async def _release_after(self, con: Any, failure: BaseException | None) -> None:
        """Give `con` back (already counted free) after the holder's block failed."""
        pool = self._pool
        if pool is None:
            return
        if failure is not None and _retry_safe(failure, True):
            await self._expire_idle(con)
        try:
            await pool.release(con)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The caller's own exception is on the way: the failed reset is secondary.
            logger.debug("database pool %r: release after a failure: %r", self.name, type(exc))

    def _release_failed(self, exc: BaseException) -> None:
        # asyncpg has already dropped the broken connection and the caller's work is done,
        # so a failed reset is not the caller's problem.
        logger.warning(
            "database pool %r: dropped a connection that failed on release: %s",
            self.name,
            scrub(f"{type(exc).__name__}: {exc}", self._secrets),
        )

    def _retry_after(self) -> float:
        # Queue ahead of us drains at about max_size connections per mean hold time.
        if self._hold_mean <= 0:
            return self._acquire_timeout
        return min(self._hold_mean * (self._waiting + 1) / self._max_size, self._acquire_timeout)

    def _scrubbed(self, exc: BaseException, context: str) -> BaseException:
        """`exc` itself when neither it nor its chain quotes a secret, else a masked copy."""
        if not self._secrets or not self._leaks(exc):
            return exc
        clean = scrub(str(exc), self._secrets)
        message = f"{context}: {clean}"
        try:
            replacement = type(exc)(message)
        except Exception:
            replacement = RuntimeError(message)
        if str(replacement) != message:
            replacement = RuntimeError(message)
        return replacement

    def _leaks(self, exc: BaseException) -> bool:
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen and len(seen) < 16:
            seen.add(id(current))
            texts = [str(current), *(repr(arg) for arg in current.args)]
            if any(scrub(t, self._secrets) != t for t in texts):
                return True
            current = current.__cause__ or current.__context__
        return False

    # -- shortcuts -------------------------------------------------------------------------

    async def _run(self, method: str, query: str, args: tuple[Any, ...], idempotent: bool) -> Any:
        for attempt in (1, 2):
            async with self.connection() as con:
                try:
                    return await getattr(con, method)(query, *args)
                except Exception as exc:
                    # A connection killed while idle in the pool (server restart,
                    # pg_terminate_backend) is noticed only when used: retry once on a new
                    # one when the statement surely did not take effect, or is a read.
                    if attempt == 2 or not _retry_safe(exc, idempotent):
                        clean = self._scrubbed(exc, f"pool {self.name!r}")
                        if clean is exc:
                            raise
                        raise clean from None
                    logger.info(
                        "database pool %r: connection lost (%s); retrying once",
                        self.name,
                        type(exc).__name__,
                    )
                    await self._expire_idle(con)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _expire_idle(self, con: Any) -> None:
        # A lost connection usually means its siblings are gone too: have the pool replace
        # each idle one on its next acquire instead of failing one caller per connection.
        pool = self._pool
        if pool is not None:
            await pool.expire_connections()
        raw = getattr(con, "_con", None)
        if raw is not None and not raw.is_closed():
            raw.terminate()

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """Run `query` and return all rows."""
        rows: list[asyncpg.Record] = await self._run("fetch", query, args, True)
        return rows

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        """Run `query` and return its first row (None if there is none)."""
        row: asyncpg.Record | None = await self._run("fetchrow", query, args, True)
        return row

    async def fetchval(self, query: str, *args: Any, column: int = 0) -> Any:
        """Run `query` and return one value of its first row."""
        if column == 0:
            return await self._run("fetchval", query, args, True)
        row = await self.fetchrow(query, *args)
        return None if row is None else row[column]

    async def execute(self, query: str, *args: Any) -> str:
        """Run `query` (or several, without arguments) and return the status of the last."""
        status: str = await self._run("execute", query, args, False)
        return status


class _Resume:
    """Awaits the rest of a coroutine already started by hand (``yield from``, resumed)."""

    __slots__ = ("_pending", "_steps")

    def __init__(self, steps: Generator[Any, None, Any], pending: Any) -> None:
        self._steps = steps
        self._pending = pending

    def __await__(self) -> Generator[Any, None, Any]:
        steps, pending = self._steps, self._pending
        while True:
            try:
                yield pending
            except BaseException as exc:  # cancellation included: the inner coroutine cleans up
                try:
                    pending = steps.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    pending = steps.send(None)
                except StopIteration as done:
                    return done.value


class _ConnectionContext:
    """The ``async with pool.connection()`` object."""

    __slots__ = ("_con", "_held_since", "_pool")

    def __init__(self, pool: DatabasePool) -> None:
        self._pool = pool
        self._con: Any = None
        self._held_since = 0.0

    async def __aenter__(self) -> Any:
        if self._con is not None:
            raise RuntimeError("this connection context is already in use")
        owner = self._pool
        pool = owner._pool
        if pool is None or owner._closing:
            raise RuntimeError(f"database pool {owner.name!r} is not open")
        # Run asyncpg's acquire by hand up to its first suspension: with an idle connection
        # it finishes at once, and the deadline timer (the costliest part) is never armed.
        steps = pool.acquire().__await__()
        try:
            pending = steps.send(None)
        except StopIteration as done:
            con = done.value
        except Exception as exc:
            owner._raise_clean(exc)
        else:
            con = await owner._wait(steps, pending)
        owner._in_use += 1
        owner._acquired_total += 1
        if not owner._acquired_total & _HOLD_SAMPLE_MASK:
            self._held_since = asyncio.get_running_loop().time()
        self._con = con
        return con

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        con, self._con = self._con, None
        owner = self._pool
        # Counted free from here: asyncpg hands the connection to the next waiter as soon
        # as its reset is done, possibly before this coroutine resumes.
        owner._in_use -= 1
        if self._held_since:
            owner._hold_sample(self._held_since)
            self._held_since = 0.0
        pool = owner._pool
        if exc is not None or pool is None:
            await owner._release_after(con, exc)
            return
        try:
            await pool.release(con)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            owner._release_failed(error)
