"""`bounded mock-llm`: run the mock OpenAI/Anthropic provider from the command line."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

__all__ = ["register"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: may resolve anywhere


def mock_llm(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8080,
    allow_remote: Annotated[
        bool, typer.Option(help="Allow a --host other than loopback (the mock is unauthenticated).")
    ] = False,
    admin_token: Annotated[
        str | None,
        typer.Option(
            envvar="BOUNDED_MOCK_ADMIN_TOKEN",
            help="Token for changing the mock over HTTP (default: generated and printed).",
            show_default=False,
        ),
    ] = None,
    embedding_dimensions: Annotated[
        int, typer.Option(help="Length of /v1/embeddings vectors by default.")
    ] = 256,
    seed: Annotated[int, typer.Option(help="Seed for replies, jitter and faults.")] = 0,
    latency: Annotated[float, typer.Option(help="Base latency per request, seconds.")] = 0.02,
    per_token: Annotated[
        float, typer.Option(help="Extra latency per output token, seconds.")
    ] = 0.0,
    jitter: Annotated[
        float, typer.Option(help="Uniform random extra latency up to this, seconds.")
    ] = 0.0,
    capacity: Annotated[int | None, typer.Option(help="Concurrent requests at full speed.")] = None,
    max_concurrency: Annotated[
        int | None, typer.Option(help="Requests in service before queueing (default 2 x capacity).")
    ] = None,
    max_queue: Annotated[
        int, typer.Option(help="Queued requests before 'overloaded' answers.")
    ] = 1000,
    window: Annotated[
        float, typer.Option(help="Rate-limit window in seconds (60: per minute).")
    ] = 60.0,
    rpm: Annotated[int | None, typer.Option(help="Requests per window.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens (input + output) per window.")] = None,
    input_tpm: Annotated[int | None, typer.Option(help="Input tokens per window.")] = None,
    output_tpm: Annotated[int | None, typer.Option(help="Output tokens per window.")] = None,
    output_tokens: Annotated[int | None, typer.Option(help="Fixed reply length in tokens.")] = None,
    error_rate: Annotated[
        float, typer.Option(help="Fraction of requests answered with an error.")
    ] = 0.0,
    error_status: Annotated[
        list[int] | None,
        typer.Option(help="Status for injected errors (repeatable; default 500, 503, 529)."),
    ] = None,
    slow_rate: Annotated[float, typer.Option(help="Fraction of requests made slow.")] = 0.0,
    slow_seconds: Annotated[
        float, typer.Option(help="Extra delay of a slow request, seconds.")
    ] = 5.0,
    reset_rate: Annotated[float, typer.Option(help="Fraction of connections reset.")] = 0.0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve a mock OpenAI (/v1/chat/completions, /v1/responses, /v1/embeddings) and
    Anthropic (/v1/messages) API.

    Change its behaviour while it runs with PUT /admin/config (with the admin token);
    read counters at GET /admin/stats.
    """
    import secrets

    import uvicorn
    from pydantic import ValidationError

    from bounded.mockllm.app import create_app
    from bounded.mockllm.config import MockConfig
    from bounded.mockllm.server import bind_socket

    if not _is_loopback(host) and not allow_remote:
        raise typer.BadParameter(
            f"{host!r} is not a loopback address; pass --allow-remote to expose the mock",
            param_hint="--host",
        )
    if admin_token is not None and not admin_token:
        raise typer.BadParameter("must not be empty", param_hint="--admin-token")

    try:
        config = MockConfig(
            seed=seed,
            latency_base=latency,
            latency_per_token=per_token,
            latency_jitter=jitter,
            capacity=capacity,
            max_concurrency=max_concurrency,
            max_queue=max_queue,
            window=window,
            rpm=rpm,
            tpm=tpm,
            input_tpm=input_tpm,
            output_tpm=output_tpm,
            output_tokens=output_tokens,
            error_rate=error_rate,
            error_statuses=error_status or [500, 503, 529],
            slow_rate=slow_rate,
            slow_seconds=slow_seconds,
            reset_rate=reset_rate,
            embedding_dimensions=embedding_dimensions,
        )
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    bound = sock.getsockname()[1]
    where = f"[{host}]" if ":" in host else host
    token = admin_token or secrets.token_urlsafe(24)
    url = f"http://{where}:{bound}"
    typer.echo(f"mock LLM provider on {url} (OpenAI base URL: {url}/v1)")
    if admin_token is None:
        typer.echo(f"admin token: {token}")
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config, admin_token=token),
            log_level=log_level,
            http="h11",
            lifespan="off",
        )
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def register(app: typer.Typer) -> None:
    """Add the `mock-llm` command to the `bounded` CLI."""
    app.command("mock-llm")(mock_llm)
