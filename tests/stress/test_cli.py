"""`bounded stress` end to end: exit codes, JSON result against its schema, compare."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import TypeVar

import jsonschema
import pytest
from hdrh.histogram import HdrHistogram
from typer.testing import CliRunner

from bounded.cli import app
from bounded.db.embedded import EmbeddedPostgres, EmbeddedPostgresUnavailable
from bounded.db.pool import DatabasePool
from bounded.mockllm import MockConfig, MockLLMServer
from bounded.stress import Target, register_target

runner = CliRunner()
QUICK = "tests.stress.sample_targets:quick"
CHAT_BODY = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
T = TypeVar("T")
SCHEMA = json.loads(resources.files("bounded.stress").joinpath("result.schema.json").read_text())


def test_run_writes_a_valid_json_result_and_passes(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    args = ["stress", QUICK, "--duration", "1", "--rate", "40", "--quiet", "--json", str(out)]
    result = runner.invoke(app, [*args, "--threshold", "errors<1%", "--threshold", "lost==0"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    jsonschema.validate(data, SCHEMA)
    assert data["accounting"] == {
        "scheduled": 40,
        "succeeded": 40,
        "failed": 0,
        "dropped": 0,
        "lost": 0,
        "identity_holds": True,
    }
    assert data["passed"] is True
    overall = HdrHistogram.decode(data["histogram"])
    assert overall.get_total_count() == 40
    assert overall.get_value_at_percentile(99) / 1e6 == pytest.approx(data["latency"]["p99"])
    monitor = data["timeline"][0]["resources"]["monitor"]
    assert monitor[0]["name"] == "sample"
    assert monitor[0]["limit"] == 4
    assert {"rss_bytes", "threads", "tasks"} <= set(data["resources"])


def test_failed_threshold_exits_1(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    args = ["stress", "tests.stress.sample_targets:failing", "--duration", "0.5", "--quiet"]
    result = runner.invoke(app, [*args, "--threshold", "errors<1%", "--json", str(out)])
    assert result.exit_code == 1
    data = json.loads(out.read_text())
    assert data["errors"]["timeout"] == data["accounting"]["scheduled"] > 0
    assert data["thresholds"][0]["passed"] is False


def test_closed_model_from_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    args = ["stress", QUICK, "--users", "3", "--duration", "0.5", "--quiet", "--json", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    data = json.loads(out.read_text())
    assert data["model"] == "closed"
    assert data["accounting"]["lost"] == 0


def test_usage_errors_exit_2() -> None:
    bad_threshold = runner.invoke(app, ["stress", QUICK, "--threshold", "p99 fast"])
    assert bad_threshold.exit_code == 2
    assert "threshold" in bad_threshold.output
    bad_target = runner.invoke(app, ["stress", "nosuch.module:fn", "--quiet", "--duration", "1"])
    assert bad_target.exit_code == 2
    assert "cannot import" in bad_target.output
    bad_client = runner.invoke(app, ["stress", "http://127.0.0.1:1/", "--http-client", "curl"])
    assert bad_client.exit_code == 2
    assert "--http-client" in bad_client.output


def test_compare_same_target_is_not_a_regression(tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    args = ["stress", "compare", QUICK, QUICK, "--rounds", "3", "--round-duration", "0.1"]
    result = runner.invoke(app, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["verdict"] in ("ok", "inconclusive")


def test_live_display_and_report(tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    args = ["stress", QUICK, "--profile", "spike", "--duration", "1.5", "--rate", "10"]
    result = runner.invoke(app, [*args, "--report", str(page)])
    assert result.exit_code == 0, result.output
    assert "bounded stress tests.stress.sample_targets:quick (spike)" in result.output
    assert "accounting" in result.output
    assert page.read_text().startswith("<!DOCTYPE html>")


def test_a_generator_that_falls_behind_says_so(tmp_path: Path) -> None:
    # Every request takes 0.5 s and at most 2 may be in flight: most are dropped.
    args = ["stress", "tests.stress.sample_targets:slow", "--duration", "0.5", "--rate", "20"]
    result = runner.invoke(app, [*args, "--max-in-flight", "2"])
    assert result.exit_code == 0, result.output
    assert "the generator fell behind" in result.output


def _in_a_thread(serve: Callable[[], contextlib.AbstractAsyncContextManager[T]]) -> Iterator[T]:
    """Enter `serve()` on its own event loop in a thread (the CLI runs its own loop)."""
    loop = asyncio.new_event_loop()
    ready: list[tuple[T, asyncio.Event]] = []

    async def main() -> None:
        stop = asyncio.Event()
        async with serve() as served:
            ready.append((served, stop))
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    while not ready and thread.is_alive():
        time.sleep(0.01)
    served, stop = ready[0]
    yield served
    loop.call_soon_threadsafe(stop.set)
    thread.join(5)
    loop.close()


@pytest.fixture
def echo_in_a_thread() -> Iterator[int]:
    """The port of an echo server running in a thread."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
        writer.close()

    @contextlib.asynccontextmanager
    async def serve() -> AsyncIterator[int]:
        async with await asyncio.start_server(echo, "127.0.0.1", 0) as server:
            yield server.sockets[0].getsockname()[1]

    yield from _in_a_thread(serve)


@pytest.fixture
def mock_in_a_thread() -> Iterator[MockLLMServer]:
    """The mock provider (answering at once) running in a thread."""
    yield from _in_a_thread(lambda: MockLLMServer(MockConfig(latency_base=0)))


def test_network_chaos_through_the_cli_proxy(
    tmp_path: Path, echo_in_a_thread: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        listen = s.getsockname()[1]
    monkeypatch.setenv("STRESS_PROXY_PORT", str(listen))
    out = tmp_path / "r.json"
    args = ["stress", "tests.stress.sample_targets:through_proxy", "--duration", "3"]
    args += [
        "--rate",
        "20",
        "--quiet",
        "--json",
        str(out),
        "--proxy",
        f"{listen}:{echo_in_a_thread}",
    ]
    args += ["--chaos", "0.5+0.5 network:blackhole=true", "--threshold", "recovery<=2s"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    jsonschema.validate(data, SCHEMA)
    assert data["errors"]["timeout"] > 0
    assert data["accounting"]["lost"] == 0
    (event,) = data["events"]
    assert event["kind"] == "network"
    assert event["recovery_time"] is not None


def test_db_restart_without_an_embedded_server_is_a_usage_error() -> None:
    args = ["stress", QUICK, "--duration", "1", "--quiet", "--chaos", "0+1 db_restart"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "embedded PostgreSQL the target owns" in result.output


@contextlib.asynccontextmanager
async def _pool_on_its_own_server() -> AsyncIterator[Target]:
    """A target that starts its own embedded PostgreSQL: the one `db_restart` may stop."""
    server = EmbeddedPostgres()
    try:
        dsn = await asyncio.to_thread(server.start)
    except EmbeddedPostgresUnavailable as exc:
        await asyncio.to_thread(server.close)
        pytest.skip(f"embedded PostgreSQL cannot start: {exc}")
    try:
        pool = DatabasePool(dsn, name="stress-chaos", min_size=1, max_size=4, acquire_timeout=0.5)
        async with pool:

            async def call(index: int, rng: random.Random) -> None:
                assert await pool.fetchval("select 1") == 1

            yield Target("pool on an embedded server", call, embedded=server)
    finally:
        await asyncio.to_thread(server.close)


@pytest.mark.slow
def test_db_restart_from_the_cli_restarts_the_targets_embedded_server(tmp_path: Path) -> None:
    register_target("stress-embedded-pool", _pool_on_its_own_server)
    out = tmp_path / "r.json"
    args = ["stress", "stress-embedded-pool", "--duration", "6", "--rate", "10", "--quiet"]
    args += ["--request-timeout", "1", "--json", str(out), "--chaos", "1+1 db_restart"]
    result = runner.invoke(app, [*args, "--threshold", "recovery<=3s"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    jsonschema.validate(data, SCHEMA)
    assert data["accounting"]["lost"] == 0
    assert data["accounting"]["failed"] > 0  # while the server was down
    (event,) = data["events"]
    assert event["kind"] == "db_restart"
    assert event["recovery_time"] is not None
    assert any(i["succeeded"] for i in data["timeline"] if i["start"] >= event["end"])


def test_provider_chaos_from_the_cli_with_the_admin_token(
    tmp_path: Path, mock_in_a_thread: MockLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOUNDED_MOCK_ADMIN_TOKEN", mock_in_a_thread.admin_token)
    out = tmp_path / "r.json"
    url = mock_in_a_thread.url
    args = ["stress", url + "/v1/chat/completions", "--body", json.dumps(CHAT_BODY)]
    args += ["--duration", "2", "--rate", "20", "--quiet", "--json", str(out)]
    args += ["--provider-admin", url, "--chaos", "0.5+0.5 provider:error_rate=1"]
    result = runner.invoke(app, [*args, "--threshold", "amplification<=1.1"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["errors"]["upstream_5xx"] > 0
    assert data["accounting"]["lost"] == 0
    (event,) = data["events"]
    assert event["kind"] == "provider"
    assert event["upstream_requests"] > 0
    assert mock_in_a_thread.admin_token not in result.output


def test_provider_chaos_without_the_admin_token_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BOUNDED_MOCK_ADMIN_TOKEN", raising=False)
    args = ["stress", QUICK, "--duration", "1", "--quiet", "--provider-admin", "http://127.0.0.1:9"]
    result = runner.invoke(app, [*args, "--chaos", "0+1 provider:rpm=1"])
    assert result.exit_code == 2
    assert "admin token" in result.output
