"""LLM throughput against the mock provider: client limits vs server limits, header resync.

Two scenarios, each against its own mock server (`bounded mock-llm` in a child process,
like a remote provider) on 127.0.0.1:

(a) the client's `ProviderLimits` equal the server's limit of N requests per window:
    throughput should be >= 99% of N with zero 429s;
(b) the server allows half what the client is configured for: after the first window,
    resync from the rate-limit headers should keep 429s under 1% of requests.

The window is scaled down (default 10 s instead of 60 s, N=100 per window: the same
600 requests per minute) so each of the four runs (the last a control with header
resync off) takes about 30 s. Run: ``python -m bench.llm``
(options: ``--window``, ``--n``, ``--duration``, ``--workers``) or ``python -m bench llm``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from bench._harness import Row, Section, Target

WINDOW = 10.0
N = 100
DURATION = 30.0
WORKERS = 8


@dataclass
class Outcome:
    """What one scenario measured."""

    provider: str
    server_limit: int
    client_limit: int
    window: float
    duration: float
    succeeded: int  # replies the server sent by the deadline
    sent: int  # HTTP requests the server saw (including retries)
    rate_limited: int  # 429 answers
    sent_after_first: int
    rate_limited_after_first: int
    failed: int  # calls that gave up after the retries

    @property
    def per_window(self) -> float:
        """Successful calls per window."""
        return self.succeeded / (self.duration / self.window)

    @property
    def throughput(self) -> float:
        """Successful calls per window as a fraction of the server's limit."""
        return self.per_window / self.server_limit

    @property
    def fraction_429_after_first(self) -> float:
        """429s among requests sent after the first window."""
        return self.rate_limited_after_first / max(1, self.sent_after_first)


@contextlib.asynccontextmanager
async def mock_server(
    config: Any, *, in_process: bool
) -> AsyncIterator[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]]:
    """The mock provider's base URL and a function returning its /admin/stats."""
    from bounded.mockllm import MockLLMServer

    if in_process:
        async with MockLLMServer(config) as srv:

            async def local_stats() -> dict[str, Any]:
                return srv.state.stats()

            yield srv.url, local_stats
        return
    import httpx2

    # `--port 0` announces the port it bound ("mock LLM provider on http://host:port ...").
    args = ["--port", "0", "--log-level", "warning", "--window", str(config.window)]
    for flag, value in (("--rpm", config.rpm), ("--tpm", config.tpm)):
        if value is not None:
            args += [flag, str(value)]
    args += ["--latency", str(config.latency_base), "--jitter", str(config.latency_jitter)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from bounded.cli import main; main()",
        "mock-llm",
        *args,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            announced = (await proc.stdout.readline()).decode()
        url = announced.split(" on ", 1)[1].split()[0]
        async with httpx2.AsyncClient(base_url=url, timeout=10) as admin:

            async def remote_stats() -> dict[str, Any]:
                stats: dict[str, Any] = (await admin.get("/admin/stats")).json()
                return stats

            yield url, remote_stats
    finally:
        proc.terminate()
        await proc.wait()


def _deaf_limits() -> type[Any]:
    """Control: `ProviderLimits` that ignore the rate-limit headers."""
    from bounded.llm import ProviderLimits

    class DeafLimits(ProviderLimits):
        __slots__ = ()

        def update_from_headers(self, headers: Mapping[str, str]) -> None:
            return None

    return DeafLimits


async def measure(
    *,
    provider: Literal["openai", "anthropic"] = "openai",
    server_limit: int = N,
    client_limit: int = N,
    window: float = WINDOW,
    duration: float = DURATION,
    workers: int = WORKERS,
    latency: float = 0.02,
    resync: bool = True,
    in_process: bool = False,
) -> Outcome:
    """Run `workers` callers through one `ChatClient` for `duration` seconds.

    The mock runs in its own process (as a remote provider would), or in this event
    loop with `in_process`.
    """
    from bounded.http import RetryableHTTPError
    from bounded.llm import ChatClient, ProviderLimits
    from bounded.mockllm import MockConfig

    config = MockConfig(
        rpm=server_limit, window=window, latency_base=latency, latency_jitter=latency
    )
    async with mock_server(config, in_process=in_process) as (url, server_stats):
        cls = ProviderLimits if resync else _deaf_limits()
        limits = cls(rpm=client_limit, period=window, name=provider)
        if provider == "openai":
            chat = ChatClient.openai(
                api_key="mock", base_url=url + "/v1", model="mock", limits=limits
            )
        else:
            chat = ChatClient.anthropic(api_key="mock", base_url=url, model="mock", limits=limits)
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + duration
        first_window: dict[str, int] = {}
        at_deadline: dict[str, int] = {}

        async def snapshots() -> None:
            await asyncio.sleep(start + window - loop.time())
            stats = await server_stats()
            first_window["sent"] = stats.get("requests_total", 0)
            first_window["429"] = stats["statuses"].get("429", 0)
            await asyncio.sleep(deadline - loop.time())
            at_deadline["200"] = (await server_stats())["statuses"].get("200", 0)

        failed = 0

        async def worker(i: int) -> None:
            nonlocal failed
            n = 0
            while loop.time() < deadline:
                n += 1
                try:
                    await chat.complete(f"worker {i} call {n}", max_tokens=16)
                except RetryableHTTPError:
                    failed += 1  # retries exhausted

        async with chat:
            snap = asyncio.create_task(snapshots())
            async with asyncio.timeout(duration + 60):
                await asyncio.gather(*(worker(i) for i in range(workers)))
            await snap
        stats = await server_stats()
        succeeded = at_deadline["200"]
    sent = stats.get("requests_total", 0)
    limited = stats["statuses"].get("429", 0)
    return Outcome(
        provider=provider,
        server_limit=server_limit,
        client_limit=client_limit,
        window=window,
        duration=duration,
        succeeded=succeeded,
        sent=sent,
        rate_limited=limited,
        sent_after_first=sent - first_window["sent"],
        rate_limited_after_first=limited - first_window["429"],
        failed=failed,
    )


async def _one(case: int, window: float, n: int, duration: float, workers: int) -> Outcome:
    common = {"window": window, "duration": duration, "workers": workers, "client_limit": n}
    if case == 0:
        return await measure(server_limit=n, **common)  # type: ignore[arg-type]
    provider: Literal["openai", "anthropic"] = "anthropic" if case == 2 else "openai"
    return await measure(
        provider=provider,
        server_limit=n // 2,
        resync=case != 3,
        **common,  # type: ignore[arg-type]
    )


def sections(
    outcomes: list[Outcome], window: float, n: int, duration: float, workers: int
) -> list[Section]:
    """The results as one benchmark table with the issue's two targets."""
    same, lower_openai, lower_anthropic, deaf = outcomes
    rows = []
    for label, o in (
        ("(a) client = server limit, OpenAI headers", same),
        ("(b) server limit = client/2, OpenAI headers", lower_openai),
        ("(b) server limit = client/2, Anthropic headers", lower_anthropic),
        ("control: (b) with header resync off", deaf),
    ):
        rows.append(
            Row(
                label,
                o.throughput * 100,
                extra={
                    "server/client limit": f"{o.server_limit}/{o.client_limit}",
                    "ok calls/window": f"{o.per_window:.1f}",
                    "requests sent": str(o.sent),
                    "429s": str(o.rate_limited),
                    "429s after 1st window": f"{o.rate_limited_after_first} "
                    f"({o.fraction_429_after_first:.2%})",
                    "calls failed": str(o.failed),
                },
            )
        )
    targets = [
        Target(
            "(a) throughput >= 99% of N with zero 429s",
            same.throughput >= 0.99 and same.rate_limited == 0,
            f"{same.throughput:.1%}, {same.rate_limited} x 429",
        ),
        Target(
            "(b) 429s < 1% of requests after the first window (both header styles)",
            max(lower_openai.fraction_429_after_first, lower_anthropic.fraction_429_after_first)
            < 0.01,
            f"OpenAI {lower_openai.fraction_429_after_first:.2%}, "
            f"Anthropic {lower_anthropic.fraction_429_after_first:.2%}",
        ),
    ]
    return [
        Section(
            title=f"LLM calls through ChatClient + ProviderLimits against the mock provider "
            f"(N={n} per {window:g} s window, {duration:g} s, {workers} concurrent callers)",
            unit="% of server limit",
            reference=None,
            rows=rows,
            targets=targets,
            columns=[
                "server/client limit",
                "ok calls/window",
                "requests sent",
                "429s",
                "429s after 1st window",
                "calls failed",
            ],
            notes=[
                "The window is scaled down from 60 s so the run is short; the rates "
                f"equal {n * 60 / window:g} requests per minute.",
                "(b) is above 100% of the server's per-window limit because the server's "
                "bucket starts full (a burst of one window's worth), as the providers' do.",
                "The mock runs as `bounded mock-llm` in a child process; mock latency 20-40 ms; "
                "default ChatClient retry (5 attempts, full jitter, "
                "honours retry-after). 429s are counted by the server, retries included.",
            ],
            value_format="{:.1f}",
        )
    ]


def run(
    window: float = WINDOW, n: int = N, duration: float = DURATION, workers: int = WORKERS
) -> list[Section]:
    """Both scenarios and a control without resync, one after the other (~4 x `duration`)."""
    outcomes = [asyncio.run(_one(i, window, n, duration, workers)) for i in range(4)]
    return sections(outcomes, window, n, duration, workers)


def main() -> None:
    from rich.console import Console

    from bench._harness import print_section

    parser = argparse.ArgumentParser(prog="python -m bench.llm", description=__doc__)
    parser.add_argument("--window", type=float, default=WINDOW)
    parser.add_argument("--n", type=int, default=N)
    parser.add_argument("--duration", type=float, default=DURATION)
    parser.add_argument("--workers", type=int, default=WORKERS)
    args = parser.parse_args()
    console = Console()
    for section in run(args.window, args.n, args.duration, args.workers):
        print_section(console, section)


if __name__ == "__main__":
    main()
