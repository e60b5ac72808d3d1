"""`bounded demo`: the FM-043 stress pattern, unbounded `asyncio.gather` vs `bounded`.

Many concurrent "workflow" calls hit a simulated dependency that can serve `capacity`
requests at once (think of an LLM provider or a small database). First every call is
started at once with plain `asyncio.gather` (the FM-043 pattern), then the same calls
run through `bounded.map` with a limit matching the capacity, a `Bulkhead` in front of
the dependency and a `Retry` with jittered backoff for its transient errors.
"""

from __future__ import annotations

import asyncio
import math
import random
import tracemalloc
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Generator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bounded import _validate
from bounded._extras import require
from bounded.bulkhead import Bulkhead
from bounded.fanout import map as bounded_map
from bounded.policy import Policy
from bounded.retry import Backoff, Retry

__all__ = [
    "Dependency",
    "DependencyTimeout",
    "Flaky",
    "Overloaded",
    "PhaseResult",
    "TransientError",
    "register",
    "render",
    "run_bounded",
    "run_demo",
    "run_gather",
]


_T = TypeVar("_T")


class TransientError(Exception):
    """A failure of the dependency that a later attempt may not see."""


class Overloaded(TransientError):
    """The dependency's queue is full (like an HTTP 503 from an overloaded provider)."""


class DependencyTimeout(TransientError):
    """A request waited longer than the dependency's timeout for a worker."""


class Flaky(TransientError):
    """A random transient error (a dropped connection, a 502)."""


class Dependency:
    """An in-process stand-in for a service that can work on `capacity` requests at once.

    Each request holds one of `capacity` workers for about `service_time` seconds
    (uniform in [0.5, 1.5] times it). Beyond capacity requests queue, so latency grows
    with load; a request that waits more than `queue_timeout` for a worker fails with
    `DependencyTimeout`, and, if `max_queue` is set, one arriving when that many requests
    already wait fails at once with `Overloaded`. A fraction `flake_rate` of served
    requests fail with `Flaky`.
    """

    __slots__ = (
        "_rng",
        "_workers",
        "capacity",
        "flake_rate",
        "in_service",
        "max_queue",
        "peak_load",
        "queue_timeout",
        "requests",
        "service_time",
        "waiting",
    )

    def __init__(
        self,
        capacity: int,
        *,
        service_time: float = 0.01,
        queue_timeout: float = 2.0,
        max_queue: int | None = None,
        flake_rate: float = 0.01,
        rng: random.Random | None = None,
    ) -> None:
        self.capacity = _validate.positive_int("capacity", capacity)
        self.service_time = _validate.positive("service_time", service_time)
        self.queue_timeout = _validate.positive("queue_timeout", queue_timeout)
        self.max_queue = (
            None if max_queue is None else _validate.positive_int("max_queue", max_queue)
        )
        self.flake_rate = _validate.fraction("flake_rate", flake_rate)
        self._rng = rng if rng is not None else random.Random(0)
        self._workers = asyncio.Semaphore(capacity)
        self.in_service = 0
        self.waiting = 0
        self.peak_load = 0  # most requests in service or waiting at once
        self.requests = 0

    async def call(self) -> None:
        """Serve one request, or raise a `TransientError`."""
        self.requests += 1
        if self.max_queue is not None and self._workers.locked() and self.waiting >= self.max_queue:
            raise Overloaded("dependency queue full")
        self.waiting += 1
        self.peak_load = max(self.peak_load, self.in_service + self.waiting)
        try:
            async with asyncio.timeout(self.queue_timeout):
                await self._workers.acquire()
        except TimeoutError:
            raise DependencyTimeout(f"no worker within {self.queue_timeout:g} s") from None
        finally:
            self.waiting -= 1
        self.in_service += 1
        try:
            await asyncio.sleep(self.service_time * self._rng.uniform(0.5, 1.5))
            if self._rng.random() < self.flake_rate:
                raise Flaky("transient error")
        finally:
            self.in_service -= 1
            self._workers.release()


@dataclass(frozen=True, slots=True)
class PhaseResult:
    """What one run of the workflow calls did.

    Latencies are of the successful calls, in seconds: `end_to_end_*` from the moment
    the whole batch was submitted, `call_*` from the moment that call started.
    """

    label: str
    calls: int
    failed: int
    failures: dict[str, int]  # exception class name -> count
    retries: int
    peak_tasks: int
    peak_at_dependency: int
    peak_memory: int  # bytes, tracemalloc peak above the memory in use at the start
    end_to_end_p50: float
    end_to_end_p99: float
    call_p50: float
    call_p99: float
    wall_time: float


class _TaskCounter:
    """A task factory that counts live tasks (created and not yet done)."""

    __slots__ = ("_previous", "live", "peak")

    def __init__(self, previous: Any) -> None:
        self._previous = previous
        self.live = 0
        self.peak = 0

    def __call__(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, _T] | Generator[Any, None, _T],
        /,
        **kw: Any,
    ) -> asyncio.Future[_T]:
        if self._previous is not None:
            task: asyncio.Future[_T] = self._previous(loop, coro, **kw)
        else:
            task = asyncio.Task(coro, loop=loop, **kw)
        self.live += 1
        self.peak = max(self.peak, self.live)
        task.add_done_callback(self._done)
        return task

    def _done(self, _: asyncio.Future[Any]) -> None:
        self.live -= 1


@contextmanager
def _count_tasks(loop: asyncio.AbstractEventLoop) -> Generator[_TaskCounter, None, None]:
    previous = loop.get_task_factory()
    counter = _TaskCounter(previous)
    loop.set_task_factory(counter)
    try:
        yield counter
    finally:
        loop.set_task_factory(previous)


@contextmanager
def _memory_peak() -> Generator[list[int], None, None]:
    """Yields a one-item list that holds the tracemalloc peak (bytes) when the block exits."""
    out = [0]
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    try:
        yield out
    finally:
        out[0] = max(0, tracemalloc.get_traced_memory()[1] - base)
        if started:
            tracemalloc.stop()


def _quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile; 0.0 for no values."""
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


Workflow = Callable[[int], Awaitable[None]]


async def _phase(
    label: str,
    calls: int,
    dependency: Dependency,
    run_all: Callable[[Workflow], Awaitable[list[Any]]],
    attempt: Callable[[], Awaitable[None]],
    on_done: Callable[[], None] | None,
) -> tuple[PhaseResult, list[Any]]:
    loop = asyncio.get_running_loop()
    end_to_end: list[float] = []
    per_call: list[float] = []
    t0 = loop.time()

    async def workflow(i: int) -> None:
        start = loop.time()
        try:
            await attempt()
        finally:
            if on_done is not None:
                on_done()
        now = loop.time()
        end_to_end.append(now - t0)
        per_call.append(now - start)

    with _memory_peak() as peak, _count_tasks(loop) as tasks:
        outcomes = await run_all(workflow)
        wall = loop.time() - t0
    failed = sum(1 for o in outcomes if isinstance(o, BaseException))
    result = PhaseResult(
        label=label,
        calls=calls,
        failed=failed,
        failures=dict(Counter(type(o).__name__ for o in outcomes if isinstance(o, BaseException))),
        retries=dependency.requests - calls,
        peak_tasks=tasks.peak,
        peak_at_dependency=dependency.peak_load,
        peak_memory=peak[0],
        end_to_end_p50=_quantile(end_to_end, 0.5),
        end_to_end_p99=_quantile(end_to_end, 0.99),
        call_p50=_quantile(per_call, 0.5),
        call_p99=_quantile(per_call, 0.99),
        wall_time=wall,
    )
    return result, outcomes


def _dependency(capacity: int, seed: int) -> Dependency:
    return Dependency(capacity, rng=random.Random(seed))


async def run_gather(
    calls: int, capacity: int, seed: int = 0, on_done: Callable[[], None] | None = None
) -> PhaseResult:
    """Every call started at once with `asyncio.gather`, no retry: the FM-043 pattern.

    `return_exceptions=True` only so that failures can be counted; the code FM-043 found
    let the first one propagate and left the other tasks running.
    """
    dependency = _dependency(capacity, seed)

    async def run_all(workflow: Workflow) -> list[Any]:
        # The FM-043 baseline this demo exists to show.
        return await asyncio.gather(  # bounded: ignore[BND001]
            *(workflow(i) for i in range(calls)), return_exceptions=True
        )

    result, _ = await _phase(
        "asyncio.gather (FM-043)", calls, dependency, run_all, dependency.call, on_done
    )
    return result


async def run_bounded(
    calls: int, capacity: int, seed: int = 0, on_done: Callable[[], None] | None = None
) -> PhaseResult:
    """The same calls through `bounded.map` (limit = capacity), a bulkhead and a retry."""
    dependency = _dependency(capacity, seed)
    policy = Policy(
        name="demo",
        retry=Retry(
            on=TransientError,
            attempts=5,
            backoff=Backoff(initial=0.05, max=1.0, jitter="full"),
            rng=random.Random(seed + 1),
        ),
        bulkhead=Bulkhead(capacity, name="demo-dependency"),
    )

    async def attempt() -> None:
        await policy.call(dependency.call)

    async def run_all(workflow: Workflow) -> list[Any]:
        return await bounded_map(workflow, range(calls), limit=capacity, return_exceptions=True)

    result, _ = await _phase(
        "bounded (map + bulkhead + retry)", calls, dependency, run_all, attempt, on_done
    )
    return result


async def run_demo(
    calls: int = 10_000,
    capacity: int = 20,
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[PhaseResult, PhaseResult]:
    """Run both phases, one after the other; returns (gather, bounded)."""
    _validate.positive_int("calls", calls)
    _validate.positive_int("capacity", capacity)
    results = []
    for label, runner in (
        ("asyncio.gather", run_gather),
        ("bounded", run_bounded),
    ):
        on_done = None
        if progress is not None:
            task_id = progress.add_task(label, total=calls)

            def on_done(task_id: Any = task_id) -> None:
                progress.advance(task_id)

        results.append(await runner(calls, capacity, seed, on_done))
    return results[0], results[1]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def _kinds(r: PhaseResult) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(r.failures.items())) or "-"


def render(console: Console, gathered: PhaseResult, bounded: PhaseResult, capacity: int) -> None:
    """Print the comparison table and a one-line verdict."""
    table = Table(
        title=f"FM-043 stress: {gathered.calls:,} workflow calls, dependency capacity {capacity}",
        title_justify="left",
    )
    table.add_column("")
    table.add_column(gathered.label, justify="right")
    table.add_column(bounded.label, justify="right")
    rows: list[tuple[str, Callable[[PhaseResult], str]]] = [
        ("failed calls", lambda r: f"{r.failed:,}"),
        ("failures by kind", _kinds),
        ("retries", lambda r: f"{r.retries:,}"),
        ("peak tasks in flight", lambda r: f"{r.peak_tasks:,}"),
        ("peak requests at the dependency", lambda r: f"{r.peak_at_dependency:,}"),
        ("peak memory (tracemalloc)", lambda r: f"{r.peak_memory / 2**20:.1f} MiB"),
        ("latency from submission p50", lambda r: _ms(r.end_to_end_p50)),
        ("latency from submission p99", lambda r: _ms(r.end_to_end_p99)),
        ("latency from call start p50", lambda r: _ms(r.call_p50)),
        ("latency from call start p99", lambda r: _ms(r.call_p99)),
        ("total time", lambda r: f"{r.wall_time:.2f} s"),
        (
            "successful calls per second",
            lambda r: f"{(r.calls - r.failed) / max(r.wall_time, 1e-9):,.0f}",
        ),
    ]
    for name, cell in rows:
        table.add_row(name, cell(gathered), cell(bounded))
    console.print(table)
    console.print(
        "[dim]Latencies are of successful calls. 'From submission' counts from the moment "
        "the whole batch was handed over; 'from call start' from when that call began. "
        "The gather run does not retry (as in FM-043); failures are counted with "
        "return_exceptions=True.[/]"
    )
    console.print(
        f"[bold]Verdict:[/] bounded finished all {bounded.calls:,} calls with "
        f"{bounded.failed:,} failures using at most {bounded.peak_tasks:,} tasks and "
        f"{bounded.peak_memory / 2**20:.1f} MiB; unbounded gather failed "
        f"{gathered.failed:,} ({gathered.failed / gathered.calls:.0%}) with "
        f"{gathered.peak_tasks:,} tasks and {gathered.peak_memory / 2**20:.1f} MiB."
    )


# (calls, capacity): the full run, and `--quick`, where still more than half of the
# gathered calls time out.
_FULL = (10_000, 20)
_QUICK = (2_000, 5)


def register(app: typer.Typer) -> None:
    """Add the `demo` command to the CLI."""

    @app.command()
    def demo(
        calls: int | None = typer.Option(
            None,
            min=1,
            help="Number of concurrent workflow calls "
            f"[default: {_FULL[0]:,}, quick {_QUICK[0]:,}].",
            show_default=False,
        ),
        capacity: int | None = typer.Option(
            None,
            min=1,
            help="Requests the simulated dependency serves at once "
            f"[default: {_FULL[1]}, quick {_QUICK[1]}].",
            show_default=False,
        ),
        seed: int = typer.Option(0, help="Seed for service times, errors and jitter."),
        quick: bool = typer.Option(
            False, "--quick", help="A short run (a few seconds) with the same outcome."
        ),
    ) -> None:
        """Run the FM-043 stress pattern: unbounded gather vs bounded fan-out."""
        # The demo's extra, kept stable for users while the demo grows into the reference
        # workflow (mock provider, embedded PostgreSQL).
        require("all", "bounded demo")
        default_calls, default_capacity = _QUICK if quick else _FULL
        calls = default_calls if calls is None else calls
        capacity = default_capacity if capacity is None else capacity
        console = Console()
        progress = Progress(
            TextColumn("{task.description:>16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        with progress:
            gathered, bounded = asyncio.run(run_demo(calls, capacity, seed, progress))
        render(console, gathered, bounded, capacity)
