"""Terminal output of a run: a live table per interval, and the final summary."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from bounded.stress.accounting import ERROR_CLASSES, IntervalStats
from bounded.stress.result import RunResult

__all__ = ["LiveDisplay", "summary_table"]

_SHOWN = 12  # most recent intervals kept on screen
_BEHIND = 0.010  # p99 scheduling lateness above which the generator says it fell behind


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def _mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f}"


class LiveDisplay:
    """``with LiveDisplay(console) as d: ... d.update(interval)``: the latest intervals."""

    def __init__(self, console: Console, title: str) -> None:
        self._console = console
        self._title = title
        self._rows: list[IntervalStats] = []
        self._live = Live(self._render(), console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> Self:
        self._live.__enter__()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._live.__exit__(et, e, tb)

    def update(self, interval: IntervalStats) -> None:
        """Show one more closed interval."""
        self._rows = [*self._rows[-(_SHOWN - 1) :], interval]
        self._live.update(self._render())

    def _render(self) -> Table:
        table = Table(title=self._title, title_justify="left")
        for name in ("t (s)", "due", "ok", "failed", "dropped", "in flight"):
            table.add_column(name, justify="right")
        for name in ("p50 ms", "p99 ms", "late ms", "RSS MiB", "tasks", "db conns"):
            table.add_column(name, justify="right")
        for i in self._rows:
            res = i.resources
            table.add_row(
                f"{i.end:.1f}",
                f"{i.scheduled:,}",
                f"{i.succeeded:,}",
                f"{sum(i.failed.values()):,}",
                f"{i.dropped:,}",
                f"{i.in_flight:,}",
                _ms(i.latency["p50"]),
                _ms(i.latency["p99"]),
                _ms(i.lateness_max),
                _mib(res.get("rss_bytes")),
                str(res.get("tasks", "-")),
                str(res.get("db_connections", "-")),
            )
        return table


def summary_table(result: RunResult) -> Group:
    """The end-of-run summary: accounting, errors by class, latency, chaos, thresholds."""
    counts = Table(title="accounting", title_justify="left")
    for name in ("scheduled", "succeeded", "failed", "dropped", "lost", "throughput /s"):
        counts.add_column(name, justify="right")
    counts.add_row(
        f"{result.scheduled:,}",
        f"{result.succeeded:,}",
        f"{result.failed_total:,}",
        f"{result.dropped:,}",
        f"[{'red' if result.lost else 'green'}]{result.lost:,}[/]",
        f"{result.throughput:,.1f}",
    )
    errors = Table(title="errors by class", title_justify="left")
    for kind in ERROR_CLASSES:
        errors.add_column(kind, justify="right")
    errors.add_row(*(f"{result.failed.get(k, 0):,}" for k in ERROR_CLASSES))
    latency = Table(title="latency (ms)", title_justify="left")
    latency.add_column("measure")
    keys = list(result.latency)
    for key in keys:
        latency.add_column(key, justify="right")
    latency.add_row("from intended start", *(_ms(result.latency[k]) for k in keys))
    latency.add_row("service time", *(_ms(result.service_time[k]) for k in keys))
    latency.add_row("scheduling lateness", *(_ms(result.lateness[k]) for k in keys))
    parts: list[RenderableType] = [counts, errors, latency]
    if result.dropped or result.lateness["p99"] > _BEHIND:
        parts.append(
            Text(
                f"the generator fell behind: {result.dropped:,} request(s) dropped at the "
                f"in-flight limit, p99 scheduling lateness {result.lateness['p99'] * 1000:,.1f} ms "
                "(latency above counts it: it is measured from the intended start)",
                style="yellow",
            )
        )
    if result.events:
        faults = Table(title="chaos", title_justify="left")
        for column in ("fault", "window s", "recovery s", "result"):
            faults.add_column(column, justify="left" if column in ("fault", "result") else "right")
        for event in result.to_json()["events"]:
            recovery = event["recovery_time"]
            faults.add_row(
                event["name"],
                f"{event['start']:g}-{event['end']:g}",
                "never" if recovery is None else f"{recovery:g}",
                Text(event["error"], style="red")
                if "error" in event
                else Text("applied", style="green"),
            )
        parts.append(faults)
    if result.thresholds:
        checks = Table(title="thresholds", title_justify="left")
        checks.add_column("threshold")
        checks.add_column("actual", justify="right")
        checks.add_column("result")
        for t in result.thresholds:
            actual = "not measured" if t.actual is None else f"{t.actual:,.6g}"
            verdict = "[green]pass[/]" if t.passed else "[red]FAIL[/]"
            checks.add_row(t.expression, actual, verdict)
        parts.append(checks)
    return Group(*parts)
