"""Prometheus metrics for every resource a monitor sees, and an asyncio `/metrics` endpoint.

The collector reads each resource's `stats()` at scrape time, so nothing is updated on the
hot path except the wait-time histograms, which the primitives feed through their
`wait_observer` hook. The HTTP endpoint runs on the event loop (no thread), so scrapes
read the primitives from the loop's own thread and the endpoint stops with its owner.

Metric names (labels in braces, all bounded in number):

- ``bounded_limit{kind,name}``, ``bounded_in_use{kind,name}``: permits or connections.
- ``bounded_utilization_ratio{kind,name}``: 0-1, every kind (a rate limiter's share of
  its rate; a breaker's failure rate relative to its trip threshold, 1 while open).
- ``bounded_queued{kind,name}``: callers waiting.
- ``bounded_acquired_total{kind,name}``, ``bounded_rejected_total{kind,name}``.
- ``bounded_rate_limit_per_second{name}``, ``bounded_rate_limit_available{name}``,
  ``bounded_rate_limit_admitted_total{name}`` (units, a request may cost several).
- ``bounded_breaker_state{name,state}``: 1 for the current state, 0 for the four others.
- ``bounded_breaker_failure_ratio{name}``: failure rate over the breaker's window.
- ``bounded_pool_connections{name,state="in_use"|"idle"}``.
- ``bounded_http_requests_total{name}``, ``bounded_http_errors_total{name}``.
- ``bounded_provider_available{name}``, ``bounded_provider_limit{name}``: units left now and
  per period of each LLM provider limit (name ``<provider>.requests``, ``.tokens``, ...);
  ``bounded_provider_rate_limited_total{name}`` (429s seen),
  ``bounded_provider_resyncs_total{name}`` (responses whose headers lowered a limit),
  ``bounded_provider_waits_total{name}`` (reservations that waited).
- ``bounded_wait_seconds{kind,name}``: histogram of the time callers waited for a
  permit. For bulkheads and pools every acquisition is counted (those that did not wait
  fall in the first bucket); for rate limiters only the acquisitions that had to wait.

Counted as they happen, for the policies, retries and breakers of a manager:

- ``bounded_policy_calls_total{name,outcome}`` and the histogram
  ``bounded_policy_call_duration_seconds{name,outcome}``; outcome is one of success,
  error, rejected, timeout, deadline, cancelled.
- ``bounded_policy_attempts_total{name}``: attempts of `fn`, first ones included.
- ``bounded_timeouts_total{name}``: attempts cut by a policy's per-attempt timeout.
- ``bounded_deadlines_exceeded_total{name}``: calls cut by a policy's deadline.
- ``bounded_retries_total{name}``: retries made by a retry strategy.
- ``bounded_retry_give_ups_total{name,reason}``: reason is attempts, retry_after,
  deadline or budget.
- ``bounded_breaker_transitions_total{name,state}``: state is the state entered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from bounded.monitor import ConcurrencyMonitor, resource_stats

if TYPE_CHECKING:
    from bounded.breaker import CircuitBreaker
    from bounded.policy import CallRecord
    from bounded.retry import RetryEvent

__all__ = [
    "BREAKER_STATES",
    "WAIT_BUCKETS",
    "Metrics",
    "MetricsServer",
    "PolicyMetrics",
    "WaitHistogram",
]

logger = logging.getLogger("bounded.metrics")

BREAKER_STATES = ("closed", "open", "half_open", "forced_open", "disabled")
WAIT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)


class WaitHistogram:
    """Fixed-bucket histogram of wait times in seconds (fed from the event loop thread)."""

    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(WAIT_BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        """Record one wait."""
        seconds = max(0.0, seconds)
        self.counts[bisect_left(WAIT_BUCKETS, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def cumulative(self, zero_waits: int = 0) -> list[tuple[str, float]]:
        """Prometheus buckets `(le, cumulative count)`, with `zero_waits` in the first bucket."""
        out: list[tuple[str, float]] = []
        total = zero_waits
        for bound, count in zip((*WAIT_BUCKETS, float("inf")), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return out


class PolicyMetrics:
    """A policy's counters with its label already bound: a `bounded.policy.PolicyObserver`."""

    __slots__ = ("_attempts", "_deadlines", "_metrics", "_name", "_outcomes", "_timeouts")

    def __init__(self, metrics: Metrics, name: str) -> None:
        self._metrics = metrics
        self._name = name
        # Series per outcome are made on first use: most policies never see most outcomes.
        self._outcomes: dict[str, tuple[Counter, Histogram]] = {}
        self._attempts = metrics.policy_attempts.labels(name)
        self._timeouts = metrics.timeouts.labels(name)
        self._deadlines = metrics.deadlines.labels(name)

    def call_done(self, outcome: str, seconds: float, record: CallRecord) -> None:
        """Count one finished call."""
        series = self._outcomes.get(outcome)
        if series is None:
            metrics = self._metrics
            series = self._outcomes[outcome] = (
                metrics.policy_calls.labels(self._name, outcome),
                metrics.policy_duration.labels(self._name, outcome),
            )
        series[0].inc()
        series[1].observe(seconds)
        if record.attempts:
            self._attempts.inc(record.attempts)
        if record.timeouts:
            self._timeouts.inc(record.timeouts)
        if record.deadline_exceeded:
            self._deadlines.inc()


GIVE_UP_REASONS = ("attempts", "retry_after", "deadline", "budget")


class Metrics:
    """The Prometheus view of a monitor's resources, in a private `CollectorRegistry`,
    plus the counters of policies, retries and breakers wired to it."""

    def __init__(self, monitor: ConcurrencyMonitor) -> None:
        self.monitor = monitor
        self.registry = CollectorRegistry(auto_describe=False)
        self._histograms: dict[tuple[str, str], WaitHistogram] = {}
        self.registry.register(_Collector(self))
        reg = self.registry
        self.policy_calls = Counter(
            "bounded_policy_calls", "Policy calls by outcome.", ["name", "outcome"], registry=reg
        )
        self.policy_duration = Histogram(
            "bounded_policy_call_duration_seconds",
            "Policy call latency in seconds, retries and waits included.",
            ["name", "outcome"],
            buckets=WAIT_BUCKETS,
            registry=reg,
        )
        self.policy_attempts = Counter(
            "bounded_policy_attempts", "Attempts made by policy calls.", ["name"], registry=reg
        )
        self.timeouts = Counter(
            "bounded_timeouts", "Attempts cut by a per-attempt timeout.", ["name"], registry=reg
        )
        self.deadlines = Counter(
            "bounded_deadlines_exceeded", "Calls cut by a deadline.", ["name"], registry=reg
        )
        self.retries = Counter(
            "bounded_retries", "Retries made (attempts after the first).", ["name"], registry=reg
        )
        self.give_ups = Counter(
            "bounded_retry_give_ups",
            "Calls a retry stopped retrying, by reason.",
            ["name", "reason"],
            registry=reg,
        )
        self.breaker_transitions = Counter(
            "bounded_breaker_transitions",
            "Circuit breaker state changes, by the state entered.",
            ["name", "state"],
            registry=reg,
        )

    def policy(self, name: str) -> PolicyMetrics:
        """The observer that counts the calls of policy `name`."""
        return PolicyMetrics(self, name)

    def retry_hooks(self, name: str) -> tuple[Callable[[RetryEvent], None], ...]:
        """`(on_retry, on_give_up)` hooks that count the retries and give-ups of `name`."""
        retries = self.retries.labels(name)
        give_ups = {r: self.give_ups.labels(name, r) for r in GIVE_UP_REASONS}

        def on_retry(event: RetryEvent) -> None:
            retries.inc()

        def on_give_up(event: RetryEvent) -> None:
            give_ups[event.cause].inc()

        return on_retry, on_give_up

    def watch_breaker(self, breaker: CircuitBreaker) -> None:
        """Count the state changes of `breaker`."""
        entered = {s: self.breaker_transitions.labels(breaker.name, s) for s in BREAKER_STATES}

        def on_transition(cb: CircuitBreaker, old: str, new: str) -> None:
            entered[new].inc()

        breaker.on_transition(on_transition)

    def observer(self, kind: str, name: str) -> Callable[[float], None]:
        """A `wait_observer` hook that records into the `bounded_wait_seconds` histogram."""
        histogram = self._histograms.setdefault((kind, name), WaitHistogram())
        return histogram.observe

    def histogram(self, kind: str, name: str) -> WaitHistogram | None:
        """The wait histogram of one resource, if it has one."""
        return self._histograms.get((kind, name))

    def generate(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)


def _gauge(name: str, doc: str, labels: Iterable[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _counter(name: str, doc: str, labels: Iterable[str]) -> CounterMetricFamily:
    # prometheus-client appends the `_total` suffix to counter samples.
    return CounterMetricFamily(name, doc, labels=list(labels))


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        kn = ("kind", "name")
        limit = _gauge("bounded_limit", "Maximum concurrent holders (permits, connections).", kn)
        in_use = _gauge("bounded_in_use", "Holders right now (permits, connections).", kn)
        util = _gauge(
            "bounded_utilization_ratio", "Share of the resource in use (0-1), per resource.", kn
        )
        queued = _gauge("bounded_queued", "Callers waiting for the resource.", kn)
        acquired = _counter("bounded_acquired", "Successful acquisitions.", kn)
        rejected = _counter("bounded_rejected", "Requests refused (queue full, wait, open).", kn)
        rl_rate = _gauge(
            "bounded_rate_limit_per_second", "Configured rate of a rate limiter.", ["name"]
        )
        rl_available = _gauge(
            "bounded_rate_limit_available", "Units a rate limiter can admit now.", ["name"]
        )
        rl_admitted = _counter(
            "bounded_rate_limit_admitted", "Units admitted by a rate limiter.", ["name"]
        )
        breaker_state = _gauge(
            "bounded_breaker_state", "1 for the breaker's current state, else 0.", ["name", "state"]
        )
        breaker_failures = _gauge(
            "bounded_breaker_failure_ratio", "Failure rate over the breaker's window.", ["name"]
        )
        pool = _gauge(
            "bounded_pool_connections", "Database pool connections by state.", ["name", "state"]
        )
        http_requests = _counter("bounded_http_requests", "HTTP requests sent.", ["name"])
        http_errors = _counter("bounded_http_errors", "HTTP requests that failed.", ["name"])
        provider_available = _gauge(
            "bounded_provider_available", "Units an LLM provider limit has left now.", ["name"]
        )
        provider_limit = _gauge(
            "bounded_provider_limit", "Units per period of an LLM provider limit.", ["name"]
        )
        provider_counters = {
            field: _counter(f"bounded_provider_{field.removesuffix('_total')}", doc, ["name"])
            for field, doc in (
                ("rate_limited_total", "429 responses seen from an LLM provider."),
                ("resyncs_total", "Responses whose rate-limit headers lowered a limit."),
                ("waits_total", "Reservations that waited for an LLM provider's budget."),
            )
        }
        waits = HistogramMetricFamily(
            "bounded_wait_seconds", "Time callers waited for a permit, in seconds.", labels=kn
        )
        for kind, name, obj in self._metrics.monitor.resources():
            try:
                stats = obj.stats()
                summary = resource_stats(kind, name, obj)
            except Exception:
                logger.exception("stats() of %s %r failed during a scrape", kind, name)
                continue
            labels = [kind, name]
            util.add_metric(labels, summary.utilization)
            if kind == "breaker":
                current = str(getattr(stats, "state", ""))
                for state in BREAKER_STATES:
                    breaker_state.add_metric([name, state], 1.0 if state == current else 0.0)
                breaker_failures.add_metric([name], float(getattr(stats, "failure_rate", 0.0)))
                rejected.add_metric(labels, float(summary.rejected_total))
                continue
            queued.add_metric(labels, float(summary.queued))
            if kind == "rate_limiter":
                per = float(getattr(stats, "per", 1.0)) or 1.0
                rl_rate.add_metric([name], float(getattr(stats, "rate", 0.0)) / per)
                rl_available.add_metric([name], float(getattr(stats, "available", 0.0)))
                rl_admitted.add_metric([name], float(getattr(stats, "admitted_total", 0.0)))
                rejected.add_metric(labels, float(summary.rejected_total))
            else:
                if summary.limit is not None:
                    limit.add_metric(labels, summary.limit)
                in_use.add_metric(labels, summary.in_use)
            acquired_total = getattr(stats, "acquired_total", None)
            if acquired_total is not None:
                acquired.add_metric(labels, float(acquired_total))
            if kind != "rate_limiter" and hasattr(stats, "rejected_total"):
                rejected.add_metric(labels, float(summary.rejected_total))
            if kind == "database":
                pool.add_metric([name, "in_use"], float(getattr(stats, "in_use", 0)))
                pool.add_metric([name, "idle"], float(getattr(stats, "idle", 0)))
            elif kind == "http_client":
                http_requests.add_metric([name], float(getattr(stats, "requests_total", 0)))
                http_errors.add_metric([name], float(getattr(stats, "errors_total", 0)))
            elif kind == "provider":
                for unit, left in stats.available.items():
                    provider_available.add_metric([f"{name}.{unit}"], float(left))
                    provider_limit.add_metric([f"{name}.{unit}"], float(stats.limits[unit]))
                for field, family in provider_counters.items():
                    family.add_metric([name], float(getattr(stats, field)))
            histogram = self._metrics.histogram(kind, name)
            if histogram is not None:
                # The hook sees only waits; acquisitions that did not wait go to bucket one.
                zero = 0
                if isinstance(acquired_total, int):
                    zero = max(0, acquired_total - histogram.count)
                waits.add_metric(labels, histogram.cumulative(zero), histogram.sum)
        yield from (limit, in_use, util, queued, acquired, rejected)
        yield from (rl_rate, rl_available, rl_admitted, breaker_state, breaker_failures)
        yield from (pool, http_requests, http_errors, waits)
        yield from (provider_available, provider_limit, *provider_counters.values())


class MetricsServer:
    """A minimal HTTP/1.1 server for `GET /metrics`, running on the event loop.

    Each connection answers one request then closes; a slow or silent client is dropped
    after `request_timeout` seconds. `close()` stops listening and ends open connections.
    """

    _MAX_HEADER = 16 * 1024

    def __init__(
        self,
        metrics: Metrics,
        host: str = "127.0.0.1",
        port: int = 9464,
        *,
        request_timeout: float = 10.0,
    ) -> None:
        self._metrics = metrics
        self._host = host
        self._port = port
        self._timeout = request_timeout
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        """The bound port (the real one when started with port 0)."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    @property
    def url(self) -> str:
        """The URL of the metrics endpoint."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/metrics"

    async def start(self) -> None:
        """Listen on `host:port`."""
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, self._host, self._port)
            logger.info("serving metrics on %s", self.url)

    async def close(self) -> None:
        """Stop listening, end open connections and wait for their handlers."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.gather(*handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            async with asyncio.timeout(self._timeout):
                head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > self._MAX_HEADER:
                raise ValueError("header too large")
            method, _, rest = head.partition(b" ")
            target = rest.split(b" ", 1)[0].split(b"?", 1)[0]
            if method not in (b"GET", b"HEAD"):
                status, ctype, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
            elif target == b"/metrics":
                status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, self._metrics.generate()
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"see /metrics\n"
            header = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode("ascii")
            writer.write(header if method == b"HEAD" else header + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()
            if task is not None:
                self._handlers.discard(task)
