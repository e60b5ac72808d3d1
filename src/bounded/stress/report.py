"""A single-file HTML report of a run: works offline, no external script, style or font.

Charts are inline SVG drawn here (so the page needs no script at all); each carries
``data-points`` with how many values it plots. Events (e.g. chaos windows) are shaded
on every chart's time axis. The full JSON result is embedded as
``<script type="application/json" id="result">`` for tools that read the page.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bounded.stress.accounting import ERROR_CLASSES
from bounded.stress.result import RunResult

__all__ = ["render_report", "write_report"]

_W, _H = 760, 240
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 64, 16, 28, 36
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_BREAKER_LEVEL = {"closed": 0.0, "half_open": 0.5, "open": 1.0, "forced_open": 1.0}

Series = dict[str, list[tuple[float, float]]]


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 10.0 ** math.floor(math.log10(v))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 or v == int(v) else f"{v:,.3g}"


def _chart(
    title: str,
    unit: str,
    series: Series,
    events: Sequence[dict[str, Any]],
    x_max: float,
    alerts: Sequence[dict[str, Any]] = (),
) -> str:
    series = {k: v for k, v in series.items() if v}
    points = sum(len(v) for v in series.values())
    y_max = _nice_max(max((y for v in series.values() for _, y in v), default=0.0))
    x_max = x_max if x_max > 0 else 1.0
    plot_w, plot_h = _W - _PAD_L - _PAD_R, _H - _PAD_T - _PAD_B
    height = _H + 14 * (max(1, math.ceil(len(series) / 4)) - 1)  # legend rows of 4

    def sx(x: float) -> float:
        return _PAD_L + plot_w * x / x_max

    def sy(y: float) -> float:
        return _PAD_T + plot_h * (1 - y / y_max)

    out = [
        f'<svg class="chart" data-points="{points}" viewBox="0 0 {_W} {height}" '
        f'width="{_W}" height="{height}" role="img" aria-label="{html.escape(title)}">',
        f'<text x="{_PAD_L}" y="18" class="title">{html.escape(title)} '
        f'<tspan class="unit">({html.escape(unit)})</tspan></text>',
    ]
    for e in events:
        x0, x1 = sx(max(0.0, float(e["start"]))), sx(min(x_max, float(e["end"])))
        label = html.escape(str(e.get("name", "event")))
        out.append(
            f'<rect class="event" x="{x0:.1f}" y="{_PAD_T}" width="{max(1.0, x1 - x0):.1f}" '
            f'height="{plot_h}"><title>{label}: {e["start"]:g}-{e["end"]:g} s</title></rect>'
            f'<text class="event-label" x="{x0 + 2:.1f}" y="{_PAD_T + 10}">{label}</text>'
        )
    for a in alerts:
        if 0 <= float(a["time"]) <= x_max:
            x = sx(float(a["time"]))
            label = html.escape(f"alert {a['state']}: {a['kind']} {a['resource']}")
            out.append(
                f'<line class="alert-{a["state"]}" x1="{x:.1f}" x2="{x:.1f}" y1="{_PAD_T}" '
                f'y2="{_PAD_T + plot_h}"><title>{label} at {a["time"]:g} s</title></line>'
            )
    for i in range(5):
        y = y_max * i / 4
        out.append(
            f'<line class="grid" x1="{_PAD_L}" x2="{_W - _PAD_R}" '
            f'y1="{sy(y):.1f}" y2="{sy(y):.1f}"/>'
            f'<text class="tick" x="{_PAD_L - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">'
            f"{_fmt(y)}</text>"
        )
        x = x_max * i / 4
        out.append(
            f'<text class="tick" x="{sx(x):.1f}" y="{_H - _PAD_B + 16}" text-anchor="middle">'
            f"{_fmt(x)} s</text>"
        )
    for n, (name, values) in enumerate(series.items()):
        color = _COLORS[n % len(_COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in values)
        out.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{path}">'
            f"<title>{html.escape(name)}</title></polyline>"
        )
        lx = _PAD_L + 8 + (n % 4) * 170
        ly = _H - 6 + 14 * (n // 4)
        out.append(
            f'<rect x="{lx}" y="{ly - 8}" width="10" height="3" fill="{color}"/>'
            f'<text class="legend" x="{lx + 14}" y="{ly - 4}">{html.escape(name)}</text>'
        )
    if not points:
        out.append(
            f'<text class="empty" x="{_W / 2}" y="{_H / 2}" text-anchor="middle">no data</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _charts(result: RunResult) -> list[str]:
    tl = result.timeline
    events = result.events
    alerts = result.alerts
    x_max = max((i.end for i in tl), default=result.elapsed)

    def per_interval(fn: Any) -> list[tuple[float, float]]:
        return [(i.end, float(fn(i))) for i in tl]

    def per_second(fn: Any) -> list[tuple[float, float]]:
        # A short last interval (the run's tail) would turn a few requests into a rate spike.
        full = max((i.end - i.start for i in tl), default=0.0)
        return [(i.end, fn(i) / (i.end - i.start)) for i in tl if i.end - i.start >= full / 2]

    latency: Series = {
        k: [(i.end, i.latency[k] * 1000) for i in tl if i.succeeded]
        for k in ("p50", "p90", "p99", "max")
    }
    throughput: Series = {
        "succeeded": per_second(lambda i: i.succeeded),
        "scheduled": per_second(lambda i: i.scheduled),
        "failed": per_second(lambda i: sum(i.failed.values())),
        "dropped": per_second(lambda i: i.dropped),
    }
    in_flight: Series = {"in flight (runner)": per_interval(lambda i: i.in_flight)}
    breakers: Series = {}
    for i in tl:
        for r in i.resources.get("monitor", []):
            name = f"{r['kind']} {r['name']}"
            if r["kind"] == "breaker":
                level = _BREAKER_LEVEL.get(str(r.get("state")), 0.0)
                breakers.setdefault(name, []).append((i.end, level))
                continue
            in_flight.setdefault(f"{name} in use", []).append((i.end, float(r["in_use"])))
            if r.get("limit") is not None:
                in_flight.setdefault(f"{name} limit", []).append((i.end, float(r["limit"])))
            if r.get("queued"):
                in_flight.setdefault(f"{name} queued", []).append((i.end, float(r["queued"])))
    errors: Series = {k: per_second(lambda i, k=k: i.failed.get(k, 0)) for k in ERROR_CLASSES}
    errors = {k: v for k, v in errors.items() if any(y for _, y in v)} or {"none": errors["other"]}

    def resource(key: str, scale: float = 1.0) -> list[tuple[float, float]]:
        return [
            (i.end, float(i.resources[key]) / scale)
            for i in tl
            if isinstance(i.resources.get(key), int | float)
        ]

    charts = [
        _chart("Latency from intended start", "ms", latency, events, x_max, alerts),
        _chart("Throughput", "requests/s", throughput, events, x_max, alerts),
        _chart("In flight against limits", "count", in_flight, events, x_max, alerts),
        _chart("Errors by class", "errors/s", errors, events, x_max, alerts),
        _chart(
            "Process",
            "RSS MiB, tasks, threads",
            {
                "RSS MiB": resource("rss_bytes", 2**20),
                "tasks": resource("tasks"),
                "threads": resource("threads"),
            },
            events,
            x_max,
            alerts,
        ),
    ]
    if any(isinstance(i.resources.get("db_connections"), int) for i in tl):
        conns = {"PostgreSQL connections": resource("db_connections")}
        charts.append(_chart("Database connections", "count", conns, events, x_max, alerts))
    if breakers:
        charts.append(
            _chart(
                "Breaker state", "0 closed, 0.5 half-open, 1 open", breakers, events, x_max, alerts
            )
        )
    return charts


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}
h1{font-size:20px}table{border-collapse:collapse;margin:8px 0 16px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}
.ok{color:#1a7f37;font-weight:600}.bad{color:#c62828;font-weight:600}
svg.chart{display:block;margin:12px 0;background:#fff;border:1px solid #eee}
.title{font-weight:600;font-size:13px}.unit{font-weight:400;fill:#666}
.tick,.legend,.event-label{font-size:11px;fill:#555}.grid{stroke:#eee}
.event{fill:#ffb74d;opacity:.25}.empty{fill:#999}
.alert-firing{stroke:#c62828;stroke-dasharray:4 3}
.alert-resolved{stroke:#2e7d32;stroke-dasharray:4 3}
"""


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_report(result: RunResult) -> str:
    """The report as one HTML string."""
    data = result.to_json()
    acc = data["accounting"]
    verdict = (
        '<span class="ok">PASSED</span>' if result.passed else '<span class="bad">FAILED</span>'
    )
    identity = (
        f"scheduled {acc['scheduled']:,} = succeeded {acc['succeeded']:,} + failed "
        f"{acc['failed']:,} + dropped {acc['dropped']:,}"
        + (" (holds)" if acc["lost"] == 0 else f' <span class="bad">lost {acc["lost"]:,}</span>')
    )
    lat_keys = list(result.latency)
    latency = _table(
        ["ms", *lat_keys],
        [
            [label, *(f"{values[k] * 1000:,.2f}" for k in lat_keys)]
            for label, values in (
                ("from intended start", result.latency),
                ("service time", result.service_time),
                ("scheduling lateness", result.lateness),
            )
        ],
    )
    errors = _table(list(ERROR_CLASSES), [[f"{result.failed.get(k, 0):,}" for k in ERROR_CLASSES]])
    thresholds = _table(
        ["threshold", "actual", "result"],
        [
            [
                html.escape(t.expression),
                "not measured" if t.actual is None else f"{t.actual:,.6g}",
                '<span class="ok">pass</span>' if t.passed else '<span class="bad">FAIL</span>',
            ]
            for t in result.thresholds
        ],
    )
    events = _table(
        ["event", "start s", "end s", "recovered after s", "fault"],
        [
            [
                html.escape(str(e.get("name", ""))),
                f"{float(e['start']):,.1f}",
                f"{float(e['end']):,.1f}",
                "not recovered" if e["recovery_time"] is None else f"{e['recovery_time']:,.1f}",
                f'<span class="bad">{html.escape(e["error"])}</span>'
                if "error" in e
                else "applied",
            ]
            for e in data["events"]
        ],
    )
    alerts = _table(
        ["time s", "resource", "state", "utilization"],
        [
            [
                f"{float(a['time']):,.2f}",
                html.escape(f"{a['kind']} {a['resource']}"),
                html.escape(str(a["state"])),
                f"{float(a['utilization']):.0%}",
            ]
            for a in result.alerts
        ],
    )
    counters = _table(
        ["counter", "increase over the run"],
        [[html.escape(series), f"{value:,.0f}"] for series, value in result.metrics.items()],
    )
    embedded = json.dumps(data).replace("</", "<\\/")
    title = html.escape(f"bounded stress: {result.target or 'target'}")
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_CSS}</style></head><body>"
        f"<h1>{title} {verdict}</h1>"
        f"<p>model {html.escape(result.model)}, profile {html.escape(str(result.profile))}, "
        f"{result.elapsed:,.1f} s, throughput {result.throughput:,.1f}/s</p>"
        f"<p>{identity}</p>"
        f"<h2>Latency</h2>{latency}<h2>Errors by class</h2>{errors}"
        + (f"<h2>Thresholds</h2>{thresholds}" if result.thresholds else "")
        + (f"<h2>Events</h2>{events}" if result.events else "")
        + (f"<h2>Alerts</h2>{alerts}" if result.alerts else "")
        + (f"<h2>Prometheus counters</h2>{counters}" if result.metrics else "")
        + "<h2>Over time</h2>"
        + "".join(_charts(result))
        + f'<script type="application/json" id="result">{embedded}</script>'
        + "</body></html>\n"
    )


def write_report(result: RunResult, path: str | Path) -> None:
    """Write `render_report(result)` to `path`."""
    Path(path).write_text(render_report(result), encoding="utf-8")
