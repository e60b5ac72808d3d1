"""Watch every registered resource and alert before one is exhausted.

Alerts read as the resource they are about: "rate limiter openai: 54 of 60 per 60 s
used, 3 waiting", "bulkhead llm: 15 of 16 slots in use, 2 queued", "breaker llm is
open, retry in 12 s".
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from bounded._validate import fraction, non_negative, positive

__all__ = [
    "Alert",
    "AlertCallback",
    "ConcurrencyMonitor",
    "ResourceStats",
    "describe",
    "resource_stats",
]

logger = logging.getLogger("bounded.monitor")


@dataclass(frozen=True, slots=True)
class ResourceStats:
    """One resource at one instant.

    `in_use` and `limit` are in the resource's own unit: permits for a bulkhead,
    connections for a pool, requests per `per` for a rate limiter (where `in_use` is the
    share of the rate currently spent). `limit` is None when a resource has none
    (a circuit breaker). `state` is the breaker state, else None. `per` is a rate
    limiter's period in seconds; `retry_after` an open breaker's seconds until it probes.
    """

    kind: str
    name: str
    in_use: float
    limit: float | None
    utilization: float
    queued: int
    rejected_total: int
    state: str | None = None
    per: float | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    """A resource crossed the alert threshold (`state="firing"`) or fell back below it.

    `message` describes the resource in its own terms (see `describe`).
    """

    resource: str
    kind: str
    utilization: float
    threshold: float
    state: Literal["firing", "resolved"] = "firing"
    message: str = field(default="", compare=False)


AlertCallback = Callable[[Alert], Any]

# A breaker in these states counts as fully used: nothing gets through.
_BLOCKING_STATES = frozenset({"open", "forced_open"})


def resource_stats(kind: str, name: str, obj: Any) -> ResourceStats:
    """Read `obj.stats()` into a `ResourceStats` (duck-typed over every primitive's stats)."""
    stats = obj.stats()
    state: str | None = getattr(stats, "state", None)
    queued = int(getattr(stats, "queued", getattr(stats, "waiting", 0)) or 0)
    rejected = int(getattr(stats, "rejected_total", 0) or 0)
    utilization = float(getattr(stats, "utilization", 0.0) or 0.0)
    if kind == "breaker":
        if state in _BLOCKING_STATES:
            utilization = 1.0
        else:
            # How close the failure rate is to tripping the breaker.
            threshold = float(getattr(obj, "failure_rate", 0.0) or 0.0)
            calls = int(getattr(stats, "calls", 0) or 0)
            minimum = int(getattr(obj, "minimum_calls", 1) or 1)
            rate = float(getattr(stats, "failure_rate", 0.0) or 0.0)
            utilization = min(1.0, rate / threshold) if threshold > 0 and calls >= minimum else 0.0
        retry_after = getattr(stats, "retry_after", None)
        return ResourceStats(
            kind, name, 0.0, None, utilization, queued, rejected, state, retry_after=retry_after
        )
    if kind == "rate_limiter":
        limit = float(getattr(stats, "rate", 0.0))
        per = float(getattr(stats, "per", 1.0))
        return ResourceStats(
            kind, name, utilization * limit, limit, utilization, queued, rejected, per=per
        )
    raw_limit = getattr(stats, "limit", None)
    if raw_limit is None:
        raw_limit = getattr(stats, "max_size", None)
    limit_value = float(raw_limit) if raw_limit is not None else None
    in_use = float(getattr(stats, "in_use", 0) or 0)
    return ResourceStats(kind, name, in_use, limit_value, utilization, queued, rejected, state)


_UNITS = {"bulkhead": ("slots", "queued"), "database": ("connections", "waiting")}
_TITLES = {
    "rate_limiter": "rate limiter",
    "database": "database pool",
    "http_client": "HTTP client",
}


def describe(stats: ResourceStats) -> str:
    """One line a person reads at a glance, in the resource's own terms."""
    title = f"{_TITLES.get(stats.kind, stats.kind.replace('_', ' '))} {stats.name}"
    if stats.kind == "breaker":
        state = stats.state or "closed"
        if state == "open":
            wait = "" if stats.retry_after is None else f", retry in {stats.retry_after:.0f} s"
            return f"breaker {stats.name} is open{wait}"
        if state == "closed":
            return (
                f"breaker {stats.name} is closed, failure rate at "
                f"{stats.utilization:.0%} of its opening threshold"
            )
        return f"breaker {stats.name} is {state.replace('_', '-')}"
    limit = "no limit" if stats.limit is None else f"{stats.limit:g}"
    if stats.kind == "rate_limiter":
        return (
            f"{title}: {stats.in_use:.0f} of {limit} per {stats.per or 1.0:g} s used, "
            f"{stats.queued} waiting"
        )
    unit, waiting = _UNITS.get(stats.kind, ("", "waiting"))
    of = f"{stats.in_use:g} of {limit} {unit}".rstrip()
    return f"{title}: {of} in use, {stats.queued} {waiting}"


def _now() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


class ConcurrencyMonitor:
    """Sees every registered resource; fires an `Alert` when one reaches `alert_threshold`.

    An alert fires once when utilization reaches the threshold and resolves when it falls
    below ``threshold - hysteresis``, so a resource hovering at the threshold alerts once.
    A rate limiter's alert resolves only once it has stayed below that for a whole period
    of the limiter (`per` seconds): its utilization swings within a period as requests
    are admitted and the window slides, and that is not a change of state.
    Run it with ``async with monitor:`` (or let a `ConcurrencyManager` run it), or call
    `check()` to evaluate once.
    """

    def __init__(
        self, interval: float = 1.0, alert_threshold: float = 0.8, *, hysteresis: float = 0.05
    ) -> None:
        self._interval = positive("interval", interval)
        self._threshold = positive("alert_threshold", fraction("alert_threshold", alert_threshold))
        self._hysteresis = non_negative("hysteresis", hysteresis)
        self._resources: dict[tuple[str, str], Any] = {}
        self._callbacks: list[AlertCallback] = []
        self._firing: set[tuple[str, str]] = set()
        self._below_since: dict[tuple[str, str], float] = {}
        self._pending: set[asyncio.Task[Any]] = set()
        self._task: asyncio.Task[None] | None = None

    # -- settings (live) -----------------------------------------------------------------

    @property
    def interval(self) -> float:
        """Seconds between two checks."""
        return self._interval

    @interval.setter
    def interval(self, value: float) -> None:
        self._interval = positive("interval", value)

    @property
    def alert_threshold(self) -> float:
        """Utilization at or above which an alert fires."""
        return self._threshold

    @alert_threshold.setter
    def alert_threshold(self, value: float) -> None:
        self._threshold = positive("alert_threshold", fraction("alert_threshold", value))

    # -- registry ------------------------------------------------------------------------

    def register(self, kind: str, name: str, obj: Any) -> None:
        """Watch `obj` (anything with `stats()`) as resource `name` of `kind`."""
        if not callable(getattr(obj, "stats", None)):
            raise TypeError(f"{kind} {name!r}: object has no stats() method")
        self._resources[(kind, name)] = obj

    def unregister(self, kind: str, name: str) -> None:
        """Stop watching a resource (no-op if unknown)."""
        self._resources.pop((kind, name), None)
        self._firing.discard((kind, name))
        self._below_since.pop((kind, name), None)

    def resources(self) -> Iterator[tuple[str, str, Any]]:
        """Every registered `(kind, name, obj)`."""
        for (kind, name), obj in list(self._resources.items()):
            yield kind, name, obj

    def snapshot(self) -> list[ResourceStats]:
        """The current stats of every resource, sorted by kind then name."""
        out = []
        for kind, name, obj in self.resources():
            try:
                out.append(resource_stats(kind, name, obj))
            except Exception:
                logger.exception("stats() of %s %r failed", kind, name)
        out.sort(key=lambda s: (s.kind, s.name))
        return out

    @property
    def firing(self) -> list[tuple[str, str]]:
        """The `(kind, name)` of every resource whose alert is currently firing."""
        return sorted(self._firing)

    # -- alerts --------------------------------------------------------------------------

    def on_alert(self, callback: AlertCallback) -> AlertCallback:
        """Call `callback(alert)` on every firing and resolution; usable as a decorator.

        A coroutine function is run as a task; exceptions are logged, never propagated.
        """
        self._callbacks.append(callback)
        return callback

    def check(self) -> list[Alert]:
        """Evaluate every resource once; return (and dispatch) the alerts that changed state."""
        alerts: list[Alert] = []
        threshold = self._threshold
        now = _now()
        for stats in self.snapshot():
            key = (stats.kind, stats.name)
            if key not in self._firing:
                if stats.utilization >= threshold:
                    self._firing.add(key)
                    message = describe(stats)
                    alerts.append(
                        Alert(
                            stats.name, stats.kind, stats.utilization, threshold, "firing", message
                        )
                    )
                    logger.warning("%s (alert at %.0f%%)", message, threshold * 100)
                continue
            if stats.utilization >= threshold - self._hysteresis:
                self._below_since.pop(key, None)
                continue
            since = self._below_since.setdefault(key, now)
            hold = stats.per if stats.kind == "rate_limiter" and stats.per else 0.0
            if now - since < hold:
                continue
            self._firing.discard(key)
            del self._below_since[key]
            message = describe(stats)
            alerts.append(
                Alert(stats.name, stats.kind, stats.utilization, threshold, "resolved", message)
            )
            logger.info("%s (alert resolved)", message)
        for alert in alerts:
            self._dispatch(alert)
        return alerts

    def _dispatch(self, alert: Alert) -> None:
        for callback in list(self._callbacks):
            try:
                result = callback(alert)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._pending.add(task)
                    task.add_done_callback(self._callback_done)
            except Exception:
                logger.exception("alert callback %r failed", callback)

    def _callback_done(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("alert callback failed", exc_info=task.exception())

    # -- running -------------------------------------------------------------------------

    async def run(self) -> None:
        """Check every `interval` seconds (loop time) until cancelled."""
        while True:
            try:
                self.check()
            except Exception:
                logger.exception("monitor check failed")
            await asyncio.sleep(self._interval)

    async def start(self) -> None:
        """Start the periodic check as a task of this monitor (see also `run`)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="bounded-monitor")

    async def stop(self) -> None:
        """Stop the periodic check and wait for pending alert callbacks to be cancelled."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.drain()

    async def drain(self) -> None:
        """Cancel and await alert callbacks still running."""
        pending = list(self._pending)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self._pending.clear()

    async def __aenter__(self) -> ConcurrencyMonitor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
