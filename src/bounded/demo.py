"""`bounded demo`: the FM-043 navigator before and after `bounded`, on real parts.

The demo starts PostgreSQL with pgvector (``DATABASE_URL`` when its server has the
extension, otherwise the embedded server) and the mock LLM provider in a child process
(a capacity, a latency model and request/token limits that answer real 429s), loads the
corpus, then runs the same load profile against each build of `bounded.navigator`, each
build in a fresh child process so that threads, tasks and memory are its own: a steady
phase at half the provider's sustainable workflow rate, then a spike at ten times it
(an open model: every workflow has an intended start time, and latency counts from it).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import multiprocessing
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import typer

if TYPE_CHECKING:
    from bounded.stress.result import RunResult

__all__ = [
    "FULL",
    "QUICK",
    "BuildResult",
    "DemoResult",
    "Profile",
    "classify",
    "guarded_targets",
    "register",
    "render",
    "run_demo",
    "run_result",
    "schedule",
    "write_reports",
]

BUILDS = ("unguarded", "guarded")
QUESTIONS = (
    "Is my MRI covered if the imaging center is out of network?",
    "Why was my physical therapy claim denied and how do I appeal?",
    "Which pharmacy tier is my insulin on and what will I pay?",
    "Do I need a referral to see a dermatologist?",
    "How much of my deductible is left after the ER visit?",
    "Can I switch my primary care doctor mid-year?",
)
FAILURE_CLASSES = (
    "provider 429",
    "provider overloaded (5xx)",
    "timeout",
    "too many clients",
    "connection error",
    "breaker open",
    "shed with retry_after",
)


def subquestions_for(index: int) -> int:
    """Sub-questions of the `index`-th workflow: 3 to 6, 4.5 on average."""
    return 3 + index % 4


#: Share of the provider's request rate the guarded build admits workflows for: the rest
#: absorbs retries and keeps the provider's queue short.
ADMISSION_SHARE = 0.8
#: Provider requests of an average workflow (classifier, embedding, synthesis + 4.5).
REQUESTS_PER_WORKFLOW = 7.5


@dataclass(frozen=True, slots=True)
class Profile:
    """The load: `steady_seconds` at `steady_load` x the sustainable workflow rate, then
    `spike_seconds` at `spike_load` x it; at most `drain_seconds` for stragglers."""

    steady_seconds: float
    spike_seconds: float
    drain_seconds: float
    steady_load: float = 0.5
    spike_load: float = 10.0


FULL = Profile(steady_seconds=15.0, spike_seconds=25.0, drain_seconds=15.0)
QUICK = Profile(steady_seconds=3.0, spike_seconds=5.0, drain_seconds=3.0)


def schedule(profile: Profile, sustainable: float) -> list[tuple[float, str]]:
    """(intended start offset in seconds, phase) of every workflow, evenly spaced."""
    starts: list[tuple[float, str]] = []
    offset = 0.0
    for phase, seconds, load in (
        ("steady", profile.steady_seconds, profile.steady_load),
        ("spike", profile.spike_seconds, profile.spike_load),
    ):
        rate = sustainable * load
        count = math.floor(seconds * rate)
        starts += [(offset + i / rate, phase) for i in range(count)]
        offset += seconds
    return starts


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def classify(exc: BaseException) -> str | None:
    """The failure class of a workflow's exception, or None when it has none (lost)."""
    from bounded.errors import CircuitOpen, Rejected

    chain = _chain(exc)
    for e in chain:
        if isinstance(e, CircuitOpen):
            return "breaker open"
        if isinstance(e, Rejected):
            return "shed with retry_after"
    for e in chain:
        status = getattr(e, "status_code", None)
        if status == 429:
            return "provider 429"
        if isinstance(status, int) and status >= 500:
            return "provider overloaded (5xx)"
    for e in chain:
        name = type(e).__name__
        if name == "TooManyConnectionsError" or "too many clients" in str(e):
            return "too many clients"
    for e in chain:
        if isinstance(e, TimeoutError) or "Timeout" in type(e).__name__:
            return "timeout"
    for e in chain:
        if isinstance(e, OSError) or "Connection" in type(e).__name__:
            return "connection error"
    return None


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


@dataclass(slots=True)
class BuildResult:
    """What one build did under the profile (seconds, bytes, counts)."""

    build: str
    scheduled: int = 0
    started: int = 0
    succeeded: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    unfinished: int = 0
    unclassified: dict[str, int] = field(default_factory=dict)  # exception type -> count
    elapsed: float = 0.0
    ended_by_watchdog: bool = False
    longest_loop_stall: float = 0.0
    spike_succeeded: int = 0
    spike_seconds: float = 0.0  # from the spike's start to its last success
    p50: float | None = None
    p99: float | None = None
    steady_p99: float | None = None
    shed: int = 0
    shed_with_retry_after: int = 0
    shed_p99: float | None = None
    peak_connections: int = 0
    peak_threads: int = 0
    threads_at_end: int = 0
    peak_tasks: int = 0
    rss_start: int = 0
    rss_end: int = 0
    rss_steady: int = 0  # the highest RSS sampled during the steady phase
    rss_peak: int = 0  # the highest RSS sampled after it (spike and drain)
    provider_requests: int = 0
    provider_429s: int = 0
    provider_429s_after_first_window: int = 0

    @property
    def not_started(self) -> int:
        """Workflows due before the end of the drain that the blocked loop never began."""
        return self.scheduled - self.started

    @property
    def lost(self) -> int:
        """Workflows that neither succeeded nor failed with a classified error."""
        return self.not_started + self.unfinished + sum(self.unclassified.values())

    @property
    def goodput(self) -> float:
        """Successful workflows per second of the spike (those intended to start in it)."""
        return self.spike_succeeded / self.spike_seconds if self.spike_seconds > 0 else 0.0

    @property
    def attempts_per_workflow(self) -> float:
        """Provider requests (every attempt, 429s included) per started workflow."""
        return self.provider_requests / self.started if self.started else 0.0

    @property
    def attempts_per_success(self) -> float:
        """Provider requests per successful workflow (inf when none succeeded)."""
        return self.provider_requests / self.succeeded if self.succeeded else math.inf

    def as_dict(self) -> dict[str, Any]:
        """JSON data, derived figures included."""
        return {
            **asdict(self),
            "not_started": self.not_started,
            "lost": self.lost,
            "goodput": self.goodput,
            "attempts_per_workflow": self.attempts_per_workflow,
            "attempts_per_success": (
                None if math.isinf(self.attempts_per_success) else self.attempts_per_success
            ),
        }


@dataclass(slots=True)
class DemoResult:
    """Both builds' results and what they ran against."""

    profile: Profile
    provider: dict[str, Any]
    sustainable: float  # workflows per second the provider's limits allow
    pool_max: int
    database: str
    builds: dict[str, BuildResult] = field(default_factory=dict)
    #: Each build's run in the form `bounded stress` reports (see `run_result`).
    runs: dict[str, RunResult] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON data."""
        return {
            "profile": asdict(self.profile),
            "provider": self.provider,
            "sustainable_workflows_per_second": self.sustainable,
            "pool_max": self.pool_max,
            "database": self.database,
            "builds": {name: r.as_dict() for name, r in self.builds.items()},
        }


def _with_application_name(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "application_name"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("application_name", name)])))


def _rss() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def guarded_env(dsn: str, provider: dict[str, Any]) -> dict[str, str]:
    """The variables of the guarded build's YAML for this provider account."""
    return {
        "NAVIGATOR_DSN": dsn,
        "NAVIGATOR_RPM": str(provider["rpm"]),
        "NAVIGATOR_TPM": str(provider["tpm"]),
        "NAVIGATOR_PERIOD": str(provider["window"]),
        "NAVIGATOR_RPS": str(ADMISSION_SHARE * provider["rpm"] / provider["window"]),
        "NAVIGATOR_LLM_CONCURRENCY": str(provider["capacity"]),
    }


# Seconds a build's process gets past the end of its run before it is ended.
_EXIT_GRACE = 2.0


class _Run:
    """One build's measurements, reported once: by the event loop when the run ends, or
    by the watchdog thread when the loop is blocked past the end of the run.

    Times are seconds since the run's start (`t0` on the loop's clock).
    """

    def __init__(self, build: str, profile: Profile, scheduled: int) -> None:
        self.result = BuildResult(build, scheduled=scheduled)
        self.profile = profile
        self.latencies: list[tuple[float, str]] = []
        self.shed_times: list[float] = []
        self.failed: Counter[str] = Counter()
        self.unclassified: Counter[str] = Counter()
        self.finished = 0
        self.last_spike_success = 0.0
        self.started_at = time.monotonic()
        self.t0 = self.started_at  # the loop's clock (time.monotonic) at the run's start
        # For the report: (index, begun, ended, failure class or None, retry_after given)
        # of every workflow that ended classified, resource samples (run seconds, figures),
        # and the guarded build's monitor alerts.
        self.ends: list[tuple[int, float, float, str | None, bool]] = []
        self.samples: list[tuple[float, dict[str, Any]]] = []
        self.alerts: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reported = False

    def record(
        self,
        exc: Exception | None,
        index: int,
        intended: float,
        begun: float,
        ended: float,
        phase: str,
    ) -> None:
        """One workflow's end."""
        self.finished += 1
        if exc is None:
            self.latencies.append((ended - intended, phase))
            self.ends.append((index, begun, ended, None, False))
            if phase == "spike":
                self.last_spike_success = max(self.last_spike_success, ended)
            return
        kind = classify(exc)
        if kind is None:
            self.unclassified[type(exc).__name__] += 1
            return
        self.failed[kind] += 1
        retry_after = getattr(exc, "retry_after", None) is not None
        self.ends.append((index, begun, ended, kind, retry_after))
        if kind in ("shed with retry_after", "breaker open"):
            self.shed_times.append(ended - begun)
            self.result.shed_with_retry_after += retry_after

    def report(self, send: Callable[[tuple[Any, ...]], None], *, watchdog: bool = False) -> bool:
        """Fill in the result and send it, unless it was sent already."""
        with self._lock:
            if self._reported:
                return False
            self._reported = True
        r = self.result
        latencies = list(self.latencies)
        every = [lat for lat, _ in latencies]
        r.elapsed = time.monotonic() - self.started_at
        r.ended_by_watchdog = watchdog
        r.unfinished = r.started - self.finished
        r.succeeded = len(latencies)
        r.failed = {k: self.failed[k] for k in FAILURE_CLASSES if self.failed[k]}
        r.unclassified = dict(self.unclassified)
        r.p50 = _quantile(every, 0.5)
        r.p99 = _quantile(every, 0.99)
        r.steady_p99 = _quantile([lat for lat, phase in latencies if phase == "steady"], 0.99)
        r.spike_succeeded = sum(phase == "spike" for _, phase in latencies)
        r.spike_seconds = max(0.0, self.last_spike_success - self.profile.steady_seconds)
        r.shed = len(self.shed_times)
        r.shed_p99 = _quantile(list(self.shed_times), 0.99)
        r.rss_end = _rss()
        steady_end = self.profile.steady_seconds
        rss = [(t, m["rss_bytes"]) for t, m in list(self.samples) if "rss_bytes" in m]
        # 0 when a phase has no sample: the RSS target then reads as missed, not as met.
        r.rss_steady = max((b for t, b in rss if t <= steady_end), default=0)
        r.rss_peak = max((b for t, b in rss if t > steady_end), default=0)
        r.threads_at_end = threading.active_count()
        trace = {
            "t0": self.t0,
            "ends": list(self.ends),
            "samples": list(self.samples),
            "alerts": list(self.alerts),
        }
        send(("result", r.build, asdict(r), trace))
        return True


def _watch_threads(
    run: _Run, stop: threading.Event, deadline: float, send: Callable[[tuple[Any, ...]], None]
) -> None:
    """Samples the thread count (and RSS, for the report) even while the event loop is
    blocked; past `deadline` (monotonic) it reports what the run finished and ends the
    process."""
    while not stop.wait(0.05):
        threads = threading.active_count()
        run.result.peak_threads = max(run.result.peak_threads, threads)
        run.samples.append((time.monotonic() - run.t0, {"threads": threads, "rss_bytes": _rss()}))
        if time.monotonic() > deadline and run.report(send, watchdog=True):
            os._exit(0)  # the loop is stuck: its threads would keep the process alive


async def _measure(
    build: str,
    dsn: str,
    url: str,
    provider: dict[str, Any],
    profile: Profile,
    sustainable: float,
    send: Callable[[tuple[Any, ...]], None],
) -> BuildResult:
    app_name = f"navigator-{build}"
    starts = schedule(profile, sustainable)
    navigator: Any
    if build == "unguarded":
        from bounded.navigator.unguarded import UnguardedNavigator

        navigator = UnguardedNavigator(url, _with_application_name(dsn, app_name))
    else:
        from bounded.navigator.guarded import GuardedNavigator

        navigator = GuardedNavigator(url, env=guarded_env(dsn, provider))
        await navigator.__aenter__()

    def monitor() -> Any:
        manager = getattr(navigator, "manager", None)  # the guarded build's
        return None if manager is None else manager.monitor

    try:
        return await _load(navigator, build, starts, profile, send, monitor)
    finally:
        if build == "guarded":
            await navigator.__aexit__(None, None, None)


async def _load(
    navigator: Any,
    build: str,
    starts: list[tuple[float, str]],
    profile: Profile,
    send: Callable[[tuple[Any, ...]], None],
    monitor: Callable[[], Any],
) -> BuildResult:
    from bounded.stress.resources import ResourceSampler

    loop = asyncio.get_running_loop()
    run = _Run(build, profile, len(starts))
    result = run.result
    result.rss_start = _rss()
    t0 = run.t0 = loop.time()
    stop = profile.steady_seconds + profile.spike_seconds + profile.drain_seconds

    async def one(index: int, offset: float, phase: str) -> None:
        begun = loop.time() - t0
        error: Exception | None = None
        try:
            await navigator.answer(QUESTIONS[index % len(QUESTIONS)], subquestions_for(index))
        except Exception as exc:
            error = exc
        run.record(error, index, offset, begun, loop.time() - t0, phase)

    async def sample(resources: ResourceSampler) -> None:
        for n in itertools.count():
            tick = loop.time()
            result.peak_tasks = max(result.peak_tasks, len(asyncio.all_tasks()))
            if n % 10 == 0:  # once a second: tasks, CPU, file descriptors, the monitor
                figures = await resources()
                del figures["threads"]  # sampled by the watchdog, which a blocked loop cannot stop
                run.samples.append((tick - t0, figures))
            send(("progress", build, len(starts), run.finished))
            await asyncio.sleep(0.1)
            result.longest_loop_stall = max(result.longest_loop_stall, loop.time() - tick - 0.1)

    resources = ResourceSampler(monitor=monitor)
    await resources.__aenter__()
    done = threading.Event()
    watchdog = threading.Thread(
        target=_watch_threads,
        args=(run, done, time.monotonic() + stop + _EXIT_GRACE, send),
        name="demo-watchdog",
    )
    watchdog.start()
    sampler = asyncio.create_task(sample(resources))
    tasks: set[asyncio.Task[None]] = set()
    try:
        for index, (offset, phase) in enumerate(starts):
            delay = t0 + offset - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif loop.time() - t0 >= stop:
                break  # the loop was blocked past the end of the run
            tasks.add(asyncio.create_task(one(index, offset, phase)))
            result.started += 1
        pending = tasks
        if tasks:
            # An open model: every due workflow was started, as clients would send them.
            _, pending = await asyncio.wait(  # bounded: ignore[BND001]
                tasks, timeout=max(t0 + stop - loop.time(), 0.0)
            )
        run.alerts = [{**a, "time": a["time"] - t0} for a in resources.alerts]
        run.report(send)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        await resources.__aexit__(None, None, None)
        done.set()
        await asyncio.to_thread(watchdog.join)
    return result


def _child(
    build: str,
    dsn: str,
    url: str,
    provider: dict[str, Any],
    profile: Profile,
    sustainable: float,
    conn: Connection,
) -> None:
    """A build's run in its own process; sends progress, then ("result", data)."""
    try:
        asyncio.run(_measure(build, dsn, url, provider, profile, sustainable, conn.send))
    except BaseException as exc:
        conn.send(("error", build, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        conn.close()


async def _sample_connections(
    dsn: str, application_name: str, seen: list[tuple[float, int]]
) -> None:
    """Append (time.monotonic(), connections of `application_name`) to `seen` every 50 ms,
    from this process, over a connection opened before the run."""
    from bounded.db import DatabasePool

    async with DatabasePool(
        dsn, min_size=1, max_size=1, application_name="navigator-monitor"
    ) as monitor:
        while True:
            count = await monitor.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                application_name,
            )
            seen.append((time.monotonic(), count))
            await asyncio.sleep(0.05)


async def _run_build(
    build: str,
    dsn: str,
    mock: Any,
    profile: Profile,
    sustainable: float,
    on_progress: Callable[[str, int, int], None] | None,
) -> tuple[BuildResult, RunResult]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    await mock.apply_limits()
    provider = mock.describe()
    proc = ctx.Process(
        target=_child,
        args=(build, dsn, mock.url, provider, profile, sustainable, child),
        name=f"navigator-{build}",
    )
    connections: list[tuple[float, int]] = []
    sampler = asyncio.create_task(_sample_connections(dsn, f"navigator-{build}", connections))
    proc.start()
    child.close()
    loop = asyncio.get_running_loop()
    started_at: float | None = None
    first_window_429s: int | None = None
    data: dict[str, Any] | None = None
    trace: dict[str, Any] = {}
    try:
        while data is None:
            if await asyncio.to_thread(parent.poll, 0.25):
                try:
                    message = parent.recv()
                except EOFError:
                    raise RuntimeError(f"the {build} run ended without a result") from None
                if message[0] == "progress":
                    if started_at is None:
                        started_at = loop.time()
                    if on_progress is not None:
                        on_progress(build, message[2], message[3])
                elif message[0] == "result":
                    data, trace = message[2], message[3]
                else:
                    raise RuntimeError(f"the {build} run failed: {message[2]}")
            if (
                first_window_429s is None
                and started_at is not None
                and loop.time() - started_at >= provider["window"]
            ):
                first_window_429s = (await mock.stats()).get("rate_limited_total", 0)
            if data is None and not proc.is_alive() and not parent.poll():
                raise RuntimeError(f"the {build} run exited with code {proc.exitcode}")
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        await asyncio.to_thread(proc.join, 10.0)
        if proc.is_alive():
            proc.kill()  # the unguarded build's daemon threads and executor, still busy
            await asyncio.to_thread(proc.join)
        parent.close()
    result = BuildResult(**data)
    result.peak_connections = max((count for _, count in connections), default=0)
    stats = await mock.stats()
    result.provider_requests = stats.get("requests_total", 0)
    result.provider_429s = stats.get("rate_limited_total", 0)
    result.provider_429s_after_first_window = result.provider_429s - (first_window_429s or 0)
    # The parent's clock is the child's: time.monotonic() is system-wide.
    samples = [(t - trace["t0"], {"db_connections": count}) for t, count in connections]
    trace["samples"] += samples
    return result, run_result(result, trace, profile, sustainable)


#: The demo's failure classes in the stress runner's (`bounded.stress.ERROR_CLASSES`).
_STRESS_CLASS = {
    "provider 429": "upstream_429",
    "provider overloaded (5xx)": "upstream_5xx",
    "timeout": "timeout",
    "too many clients": "other",
    "connection error": "other",
    "breaker open": "breaker_open",
    "shed with retry_after": "rejected",
}
_REPORT_INTERVAL = 1.0


def _interval_figures(
    samples: list[tuple[float, dict[str, Any]]], start: float, end: float
) -> dict[str, Any]:
    """The largest value of each figure sampled in [start, end); the last monitor snapshot."""
    figures: dict[str, Any] = {}
    for t, sample in samples:
        if start <= t < end:
            for key, value in sample.items():
                known = figures.get(key)
                numbers = isinstance(value, int | float) and isinstance(known, int | float)
                figures[key] = max(known, value) if numbers else value
    return figures


def run_result(
    build: BuildResult, trace: dict[str, Any], profile: Profile, sustainable: float
) -> RunResult:
    """`build`'s run as a `bounded stress` result, for its HTML report.

    `trace` is what the build's process recorded: every classified end (index, begun,
    ended, failure class or None, retry_after given) and resource samples (run seconds,
    figures). The workflows are replayed in time order through the stress runner's
    tally, one-second intervals, so its accounting holds: workflows never started,
    unfinished or failed with an error of no known class stay unaccounted (its "lost",
    as the table's). Failure classes map to the runner's; PostgreSQL's "too many
    clients" and connection errors are its "other". One threshold is checked: PostgreSQL
    connections within the guarded build's pool.
    """
    from bounded.stress.accounting import Tally
    from bounded.stress.result import RunResult
    from bounded.stress.thresholds import evaluate

    starts = schedule(profile, sustainable)
    ends = {end[0]: end for end in trace["ends"]}
    steps: list[tuple[float, int, int]] = []  # (run seconds, 0 due / 1 begun / 2 ended, index)
    for index, (offset, _) in enumerate(starts):
        steps.append((offset, 0, index))
        if index in ends:
            steps += [(ends[index][1], 1, index), (ends[index][2], 2, index)]
    steps.sort()
    tally = Tally()
    timeline: list[Any] = []

    def close_until(t: float) -> None:
        while (len(timeline) + 1) * _REPORT_INTERVAL <= t:
            n = len(timeline)
            timeline.append(tally.checkpoint(n * _REPORT_INTERVAL, (n + 1) * _REPORT_INTERVAL))

    for t, step, index in steps:
        close_until(t)
        intended = starts[index][0]
        if step == 0:
            tally.schedule()
            if index < build.started:
                tally.dispatch()
        elif step == 1:
            tally.start(t - intended)
        else:
            _, begun, ended, kind, retry_after = ends[index]
            if kind is None:
                tally.succeed(ended - intended, ended - begun)
            else:
                tally.fail_as(_STRESS_CLASS[kind], retry_after=retry_after)
    elapsed = max(build.elapsed, steps[-1][0] if steps else 0.0)
    close_until(elapsed)
    if not timeline or timeline[-1].end < elapsed:
        timeline.append(tally.checkpoint(len(timeline) * _REPORT_INTERVAL, elapsed))
    tally.settle()
    for stats in timeline:
        stats.resources = _interval_figures(trace["samples"], stats.start, stats.end)
    result = RunResult.from_tally(
        tally,
        timeline,
        model="open",
        elapsed=elapsed,
        config={
            "demo_profile": asdict(profile),
            "sustainable_workflows_per_second": sustainable,
            "interval": _REPORT_INTERVAL,
        },
    )
    result.target = f"navigator, {build.build} build"
    result.profile = "spike"
    result.alerts = trace["alerts"]
    result.events = [
        {
            "name": f"spike ({profile.spike_load:g}x)",
            "kind": "load",
            "start": profile.steady_seconds,
            "end": profile.steady_seconds + profile.spike_seconds,
        }
    ]
    evaluate(result, [f"db_connections<={_pool_max()}"])
    return result


def write_reports(result: DemoResult, directory: Path) -> list[Path]:
    """Write each build's `bounded stress` HTML report (``BUILD.html``) into `directory`."""
    from bounded.stress.report import write_report

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for build, run in result.runs.items():
        path = directory / f"{build}.html"
        write_report(run, path)
        paths.append(path)
    return paths


def _pool_max() -> int:
    """The guarded build's connection pool size, from its shipped configuration."""
    import yaml

    from bounded.navigator.guarded import CONFIG

    return int(yaml.safe_load(CONFIG.read_text())["databases"]["corpus"]["max_size"])


async def run_demo(
    profile: Profile = FULL,
    seed: int = 0,
    on_progress: Callable[[str, int, int], None] | None = None,
    on_status: Callable[[str], None] | None = None,
) -> DemoResult:
    """Start the parts, load the corpus, run both builds; returns their results."""
    import openai

    from bounded.navigator import corpus
    from bounded.navigator.services import MockProvider, ProviderSettings, pgvector_database

    def status(text: str) -> None:
        if on_status is not None:
            on_status(text)

    settings = ProviderSettings()
    sustainable = settings.requests_per_second / REQUESTS_PER_WORKFLOW
    status("starting PostgreSQL with pgvector and the mock provider (child process)")
    async with pgvector_database() as (dsn, where), MockProvider(settings, seed) as mock:
        status(f"database: {where}; provider: {mock.url}; loading the corpus")
        async with openai.AsyncOpenAI(
            base_url=mock.url + "/v1", api_key="navigator", max_retries=0
        ) as client:
            await corpus.load(dsn, client)
        result = DemoResult(
            profile=profile,
            provider=mock.describe(),
            sustainable=sustainable,
            pool_max=_pool_max(),
            database=where,
        )
        for build in BUILDS:
            result.builds[build], result.runs[build] = await _run_build(
                build, dsn, mock, profile, sustainable, on_progress
            )
    return result


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f} ms"


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _shed(r: BuildResult) -> str:
    return f"{_ms(r.shed_p99)} ({r.shed_with_retry_after:,})"


def _attempts(r: BuildResult) -> str:
    return f"{r.attempts_per_workflow:.1f} ({r.attempts_per_success:.1f})"


def _429s(r: BuildResult) -> str:
    return f"{r.provider_429s:,} ({r.provider_429s_after_first_window:,})"


def render(console: Any, result: DemoResult) -> None:
    """Print the side-by-side table and the guarded build's targets."""
    from rich.table import Table

    p = result.profile
    s = result.provider
    table = Table(
        title=(
            f"FM-043 navigator: {p.steady_seconds:g} s at {p.steady_load:g}x, then "
            f"{p.spike_seconds:g} s at {p.spike_load:g}x the provider's sustainable "
            f"{result.sustainable:.2f} workflows/s ({s['rpm']} requests per {s['window']:g} s, "
            f"capacity {s['capacity']}); database: {result.database}"
        ),
        title_justify="left",
    )
    table.add_column("")
    for build in result.builds:
        table.add_column(build, justify="right")
    rows: list[tuple[str, Callable[[BuildResult], str]]] = [
        ("workflows due (started)", lambda r: f"{r.scheduled:,} ({r.started:,})"),
        ("succeeded", lambda r: f"{r.succeeded:,}"),
    ]
    for kind in FAILURE_CLASSES:
        rows.append((f"failed: {kind}", lambda r, k=kind: f"{r.failed.get(k, 0):,}"))  # type: ignore[misc]
    rows += [
        ("lost (never started + unfinished + unclassified)", lambda r: f"{r.lost:,}"),
        ("goodput in the spike (workflows/s)", lambda r: f"{r.goodput:.2f}"),
        ("latency p50 from intended start", lambda r: _ms(r.p50)),
        ("latency p99 from intended start", lambda r: _ms(r.p99)),
        ("latency p99, steady phase", lambda r: _ms(r.steady_p99)),
        ("shed: answered p99 (with retry_after)", _shed),
        ("peak PostgreSQL connections", lambda r: f"{r.peak_connections:,}"),
        ("peak threads (at end)", lambda r: f"{r.peak_threads} ({r.threads_at_end})"),
        ("peak tasks", lambda r: f"{r.peak_tasks:,}"),
        ("longest event-loop stall", lambda r: _ms(r.longest_loop_stall)),
        ("RSS start -> end", lambda r: f"{_mib(r.rss_start)} -> {_mib(r.rss_end)}"),
        ("RSS peak: steady -> spike", lambda r: f"{_mib(r.rss_steady)} -> {_mib(r.rss_peak)}"),
        ("provider 429s (after 1st window)", _429s),
        ("upstream attempts per workflow (per success)", _attempts),
    ]  # fmt: skip
    for name, cell in rows:
        table.add_row(name, *(cell(r) for r in result.builds.values()))
    console.print(table)
    for name, r in result.builds.items():
        if r.ended_by_watchdog:
            console.print(
                f"[yellow]{name}: its event loop was still blocked when the run ended; "
                "the counts are what it had finished, then its process was ended.[/]"
            )
    console.print(
        "[dim]Latency counts from each workflow's intended start (coordinated omission "
        "corrected). 'lost': due but never started (the event loop was blocked), not "
        "finished when the drain ended, or failed with an error of no known class. Each "
        "build ran in its own process.[/]"
    )
    if "guarded" in result.builds:
        for name, ok, seen in guarded_targets(result):
            verdict = "[green]met[/]" if ok else "[red]missed[/]"
            console.print(f"guarded: {verdict} {name} ({seen})")


def guarded_targets(result: DemoResult) -> list[tuple[str, bool, str]]:
    """The issue's targets for the guarded build: (target, met, what was measured)."""
    g = result.builds["guarded"]
    return [
        ("0 lost", g.lost == 0, f"{g.lost}"),
        (
            f"PostgreSQL connections <= pool max {result.pool_max}",
            g.peak_connections <= result.pool_max,
            f"peak {g.peak_connections}",
        ),
        (
            "0 provider 429s after the first window",
            g.provider_429s_after_first_window == 0,
            f"{g.provider_429s_after_first_window}",
        ),
        (
            "goodput >= 95% of the sustainable rate",
            g.goodput >= 0.95 * result.sustainable,
            f"{g.goodput / result.sustainable:.0%}",
        ),
        (
            "p99 <= 2x the steady-phase p99",
            g.p99 is not None and g.steady_p99 is not None and g.p99 <= 2 * g.steady_p99,
            f"{_ms(g.p99)} vs {_ms(g.steady_p99)}",
        ),
        (
            "RSS within 10% of its steady value",
            0 < g.rss_peak <= 1.10 * g.rss_steady,
            f"peak {_mib(g.rss_peak)} vs steady {_mib(g.rss_steady)}",
        ),
        (
            "shed requests answered in <= 5 ms with retry_after",
            g.shed_p99 is not None and g.shed_p99 <= 0.005 and g.shed_with_retry_after == g.shed,
            f"p99 {_ms(g.shed_p99)}, {g.shed_with_retry_after}/{g.shed} with retry_after",
        ),
    ]


def register(app: typer.Typer) -> None:
    """Add the `demo` command to the CLI."""

    @app.command()
    def demo(
        quick: Annotated[
            bool, typer.Option("--quick", help="A ~30 s version (shorter phases).")
        ] = False,
        json_path: Annotated[
            Path | None, typer.Option("--json", help="Also write the results to this JSON file.")
        ] = None,
        seed: Annotated[
            int, typer.Option(help="Seed of the mock provider's replies and latency.")
        ] = 0,
        report_dir: Annotated[
            Path | None,
            typer.Option(
                "--report",
                help="Directory for each build's HTML report (default: a new temporary one).",
            ),
        ] = None,
    ) -> None:
        """The FM-043 navigator under a load spike: unguarded, then through `bounded`."""
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        from bounded._extras import MissingExtra, require

        try:
            # One install line for users: the extra that brings everything the demo runs.
            require("all", "bounded demo")
        except MissingExtra as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        console = Console()
        progress = Progress(
            TextColumn("{task.description:>10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("finished"),
            TimeElapsedColumn(),
            console=console,
        )
        profile = QUICK if quick else FULL
        task_ids: dict[str, Any] = {}

        def on_progress(build: str, started: int, finished: int) -> None:
            if build not in task_ids:
                task_ids[build] = progress.add_task(build, total=None)
            progress.update(task_ids[build], total=max(started, 1), completed=finished)

        started = time.monotonic()
        with progress:
            result = asyncio.run(
                run_demo(profile, seed, on_progress, lambda text: progress.console.log(text))
            )
        render(console, result)
        console.print(f"[dim]{time.monotonic() - started:.0f} s in all.[/]")
        if json_path is not None:
            json_path.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
            console.print(f"results written to {json_path}")
        if report_dir is None:
            report_dir = Path(tempfile.mkdtemp(prefix="bounded-demo-"))
        for path in write_reports(result, report_dir):
            console.print(f"HTML report: {path}", soft_wrap=True)
