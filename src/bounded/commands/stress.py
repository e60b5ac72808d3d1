"""`bounded stress TARGET` (a load run) and `bounded stress compare` (the regression gate)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

__all__ = ["register"]


class _RunByDefault(TyperGroup):
    """`bounded stress TARGET ...` means `bounded stress run TARGET ...`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


stress_app = typer.Typer(
    cls=_RunByDefault,
    help="Load a target with a profile, check thresholds, gate regressions. "
    "`bounded stress TARGET ...` is short for `bounded stress run TARGET ...`.",
    no_args_is_help=True,
)


def _importable_from_cwd() -> None:
    # As uvicorn does: `module:function` targets are found relative to where the CLI runs.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


@stress_app.command("run")
def run_command(
    target: Annotated[
        str,
        typer.Argument(
            help="package.module:function (async, called with index and rng), an http(s) URL "
            "on loopback, or a registered target name.",
            show_default=False,
        ),
    ],
    profile: Annotated[
        str, typer.Option(help="light, medium, heavy, spike or endurance.")
    ] = "light",
    duration: Annotated[
        float | None, typer.Option(help="Seconds; the profile's phases scale with it.")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="Base arrival rate, requests/s (spike: 10x of it).")
    ] = None,
    users: Annotated[
        int | None, typer.Option(help="Closed model: this many virtual users instead of a rate.")
    ] = None,
    think_time: Annotated[float, typer.Option(help="Closed model: seconds between calls.")] = 0.0,
    max_in_flight: Annotated[
        int | None, typer.Option(help="Requests due beyond this many in flight are dropped.")
    ] = None,
    threshold: Annotated[
        list[str] | None,
        typer.Option(help="e.g. 'p99<2s', 'errors<1%', 'db_connections<=20' (repeatable)."),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the per-request RNGs and Poisson arrivals.")
    ] = 0,
    poisson: Annotated[
        bool, typer.Option(help="Poisson arrivals instead of even spacing.")
    ] = False,
    request_timeout: Annotated[
        float | None, typer.Option(help="Seconds before a request counts as a timeout.")
    ] = None,
    grace: Annotated[
        float, typer.Option(help="Seconds to wait for requests in flight at the end.")
    ] = 30.0,
    dsn: Annotated[
        str | None,
        typer.Option(help="PostgreSQL DSN whose pg_stat_activity is sampled."),
    ] = None,
    method: Annotated[str, typer.Option(help="HTTP method for a URL target.")] = "GET",
    body: Annotated[
        str | None, typer.Option(help="JSON body for a URL target (implies POST if GET).")
    ] = None,
    http_client: Annotated[
        str,
        typer.Option(
            help="Client for a URL target: 'lean' (the generator's own, little CPU per "
            "request) or 'httpx' (bounded.HttpClient, the service stack's)."
        ),
    ] = "lean",
    chaos: Annotated[
        list[str] | None,
        typer.Option(help="'START+DURATION KIND[:k=v,...]', e.g. '10+5 network:latency=0.2'."),
    ] = None,
    proxy: Annotated[
        str | None,
        typer.Option(help="LISTEN_PORT:UPSTREAM_PORT: a fault proxy on loopback for 'network'."),
    ] = None,
    provider_admin: Annotated[
        str | None, typer.Option(help="Mock provider base URL for 'provider' chaos events.")
    ] = None,
    provider_admin_token: Annotated[
        str | None,
        typer.Option(
            help="The mock provider's admin token, for 'provider' chaos events.",
            envvar="BOUNDED_MOCK_ADMIN_TOKEN",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the JSON result (docs/stress.md) here.")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
    quiet: Annotated[bool, typer.Option(help="No live display.")] = False,
) -> None:
    """Load TARGET with a profile and report; exit 1 when a threshold fails or a request is lost."""
    from rich.console import Console

    from bounded.stress.chaos import Injectors, parse_chaos
    from bounded.stress.display import LiveDisplay, summary_table
    from bounded.stress.faultproxy import FaultProxy
    from bounded.stress.scenario import run_scenario
    from bounded.stress.targets import HTTP_CLIENTS
    from bounded.stress.thresholds import parse_threshold

    _importable_from_cwd()
    thresholds = threshold or []
    try:
        for t in thresholds:
            parse_threshold(t)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--threshold") from None
    try:
        events = [parse_chaos(c) for c in chaos or []]
    except (ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--chaos") from None
    ports: tuple[int, int] | None = None
    if proxy is not None:
        listen, _, upstream = proxy.partition(":")
        if not (listen.isdigit() and upstream.isdigit()):
            raise typer.BadParameter("expected LISTEN_PORT:UPSTREAM_PORT", param_hint="--proxy")
        ports = (int(listen), int(upstream))
    if http_client not in HTTP_CLIENTS:
        raise typer.BadParameter(
            f"expected one of {', '.join(HTTP_CLIENTS)}", param_hint="--http-client"
        )
    http_options: dict[str, Any] = {"method": method, "http_client": http_client}
    if body is not None:
        try:
            http_options["json_body"] = json.loads(body)
        except ValueError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--body") from None
        if method == "GET":
            http_options["method"] = "POST"
    if request_timeout is not None:
        http_options["request_timeout"] = request_timeout
    console = Console(stderr=True)
    title = f"bounded stress {target} ({'closed' if users else profile})"
    display = None if quiet else LiveDisplay(console, title)

    async def main() -> Any:
        async with contextlib.AsyncExitStack() as stack:
            fault_proxy = None
            if ports is not None:
                fault_proxy = await stack.enter_async_context(
                    FaultProxy(ports[1], port=ports[0], seed=seed)
                )
            injectors = Injectors(
                proxy=fault_proxy,
                provider_admin=provider_admin,
                provider_token=provider_admin_token,
                dsn=dsn,
            )
            return await scenario(injectors)

    async def scenario(injectors: Any) -> Any:
        return await run_scenario(
            target,
            profile=profile,
            duration=duration,
            rate=rate,
            users=users,
            think_time=think_time,
            max_in_flight=max_in_flight,
            thresholds=thresholds,
            seed=seed,
            poisson=poisson,
            request_timeout=request_timeout,
            grace=grace,
            dsn=dsn,
            http_options=http_options,
            chaos=events,
            injectors=injectors,
            on_interval=display.update if display else None,
        )

    try:
        if display is not None:
            with display:
                result = asyncio.run(main())
        else:
            result = asyncio.run(main())
    except (ValueError, OSError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    console.print(summary_table(result))
    if json_out is not None:
        _write_json(json_out, result.to_json())
        console.print(f"wrote {json_out}")
    if report is not None:
        from bounded.stress.report import write_report

        write_report(result, report)
        console.print(f"wrote {report}")
    if result.lost:
        console.print(f"[red]{result.lost} request(s) lost: scheduled != succeeded+failed+dropped")
    if not result.passed:
        raise typer.Exit(1)


@stress_app.command("compare")
def compare_command(
    baseline: Annotated[str, typer.Argument(help="Baseline target (module:function).")],
    candidate: Annotated[str, typer.Argument(help="Candidate target (module:function).")],
    rounds: Annotated[
        int, typer.Option(help="Interleaved rounds (one sample per side each).")
    ] = 10,
    round_duration: Annotated[
        float, typer.Option(help="Seconds per round (both sides, call by call).")
    ] = 0.5,
    users: Annotated[int, typer.Option(help="Concurrent callers in a round.")] = 1,
    alpha: Annotated[float, typer.Option(help="Significance level of the U test.")] = 0.01,
    margin: Annotated[float, typer.Option(help="Slowdown that counts, as a fraction.")] = 0.05,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the verdict here.")] = None,
) -> None:
    """Run BASELINE and CANDIDATE interleaved call by call; exit 1 on a regression.

    Regression: Mann-Whitney U p < alpha AND median ratio > 1 + margin. Exit 0 for "ok"
    and for "inconclusive" (the verdict is printed; noise was larger than the effect).
    """
    from bounded.stress.compare import compare_calls
    from bounded.stress.targets import open_target

    _importable_from_cwd()

    async def main() -> Any:
        async with open_target(baseline) as a, open_target(candidate) as b:
            return await compare_calls(
                a.call,
                b.call,
                rounds=rounds,
                round_duration=round_duration,
                users=users,
                alpha=alpha,
                margin=margin,
            )

    try:
        comparison = asyncio.run(main())
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"{comparison.verdict}: median ratio {comparison.ratio:.3f}, "
        f"p = {comparison.p_value:.2g}, noise {comparison.noise:.1%}"
    )
    if json_out is not None:
        _write_json(json_out, comparison.to_json())
    if comparison.verdict == "regression":
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the `stress` command group to the `bounded` CLI."""
    app.add_typer(stress_app, name="stress")
