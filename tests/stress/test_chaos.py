"""Chaos schedules: parsing, seeded draws, and each fault kind against a real dependency.

Runs on the real clock with short windows; assertions are about what happened (errors
during the window, recovery after it, every request accounted for), not about speed.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import random
from typing import Any

import asyncpg
import psutil  # type: ignore[import-untyped]
import pytest
from typer.testing import CliRunner

from bounded.cli import app
from bounded.http import HttpClient, RetryableHTTPError
from bounded.mockllm import MockConfig, MockLLMServer
from bounded.retry import Backoff, Retry
from bounded.stress import constant, run_open
from bounded.stress.chaos import ChaosEvent, Injectors, parse_chaos, play, random_schedule
from bounded.stress.faultproxy import FaultProxy
from bounded.stress.resources import ResourceSampler
from bounded.stress.thresholds import evaluate

CHAT = "/v1/chat/completions"
BODY = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def test_parse_chaos() -> None:
    e = parse_chaos("10+5 network:latency=0.2,reset=false")
    assert e == ChaosEvent(10.0, 5.0, "network", {"latency": 0.2, "reset": False})
    assert e.name == "network latency=0.2,reset=False"
    p = parse_chaos("1.5+2 provider:error_rate=1,error_statuses=503|529")
    assert p.params == {"error_rate": 1, "error_statuses": [503, 529]}
    assert parse_chaos("0+1 cpu").params == {}
    assert parse_chaos("0+1 provider:error_statuses=503|").params == {"error_statuses": [503]}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("network:latency=1", "cannot parse"),
        ("1+1 flood", "unknown kind"),
        ("1+1 network:latency", "key=value"),
        ("1+1 network:speed=3", "speed"),
        ("1+1 network:latency=-1", "latency"),
    ],
)
def test_bad_chaos_specs(spec: str, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        parse_chaos(spec)


def test_random_schedule_is_seeded_and_windows_do_not_overlap() -> None:
    kinds = [parse_chaos("0+5 network:reset=true"), parse_chaos("0+3 memory:mib=64")]
    a = random_schedule(7, 60.0, kinds, count=4)
    assert a == random_schedule(7, 60.0, kinds, count=4)
    assert a != random_schedule(8, 60.0, kinds, count=4)
    assert all(e.start >= 6.0 and e.start + e.duration <= 54.0 for e in a)
    assert all(x.start + x.duration <= y.start for x, y in itertools.pairwise(a))


def test_missing_injector_is_named() -> None:
    with pytest.raises(ValueError, match="fault proxy"):
        Injectors().check([parse_chaos("0+1 network:reset=true")])
    with pytest.raises(ValueError, match="DSN"):
        Injectors().check([parse_chaos("0+1 db_terminate")])


async def test_network_blackhole_window_fails_requests_then_recovers(echo_port: int) -> None:
    async with FaultProxy(echo_port) as proxy:

        async def call(index: int, rng: random.Random) -> None:
            async with asyncio.timeout(0.15):
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
                try:
                    writer.write(b"hi")
                    assert await reader.readexactly(2) == b"hi"
                finally:
                    writer.close()

        record: list[dict[str, Any]] = []
        events = [parse_chaos("0.5+0.5 network:blackhole=true")]
        chaos = asyncio.create_task(play(events, Injectors(proxy=proxy), record))
        result = await run_open(call, constant(20, 2.0), interval=0.5)
        await chaos
    assert result.lost == 0
    assert result.failed["timeout"] > 0
    by_interval = [(i.start, i.failed.get("timeout", 0)) for i in result.timeline]
    assert all(n == 0 for start, n in by_interval if start >= 1.5)  # recovered
    assert record[0]["kind"] == "network"
    assert record[0]["end"] - record[0]["start"] >= 0.5 - 0.002  # rounded to ms
    result.events = record
    assert result.recovery_time(record[0]) is not None
    assert proxy.faults.blackhole is False


async def test_provider_window_through_the_admin_endpoint() -> None:
    async with MockLLMServer(MockConfig(latency_base=0)) as srv, HttpClient() as client:

        async def call(index: int, rng: random.Random) -> None:
            await client.post(srv.url + CHAT, json=BODY)

        record: list[dict[str, Any]] = []
        events = [parse_chaos("0.3+0.5 provider:error_rate=1,error_statuses=529|503")]
        injectors = Injectors(provider_admin=srv.url, provider_token=srv.admin_token)
        chaos = asyncio.create_task(play(events, injectors, record))
        result = await run_open(call, constant(20, 1.5))
        await chaos
        assert srv.config.error_rate == 0  # put back
    assert result.failed["upstream_5xx"] > 0
    assert result.succeeded > 0
    assert result.lost == 0
    assert record[0]["upstream_requests"] > 0
    result.events = record
    amplification = result.amplification(record[0])
    assert amplification is not None
    assert 0.8 <= amplification <= 1.2  # no retries: one upstream request per attempt


async def test_retry_amplification_during_a_provider_window() -> None:
    retry = Retry(on=RetryableHTTPError, attempts=3, backoff=Backoff(initial=0.001, jitter="none"))
    async with MockLLMServer(MockConfig(latency_base=0)) as srv, HttpClient() as client:

        async def call(index: int, rng: random.Random) -> None:
            await retry.call(client.post, srv.url + CHAT, json=BODY)

        record: list[dict[str, Any]] = []
        events = [parse_chaos("1+1 provider:error_rate=1,error_statuses=503|")]
        injectors = Injectors(provider_admin=srv.url, provider_token=srv.admin_token)
        chaos = asyncio.create_task(play(events, injectors, record))
        result = await run_open(call, constant(20, 3.0))
        await chaos
    result.events = record
    # Every first attempt while the errors lasted was tried 3 times upstream; the window
    # also spans the admin calls that switch the errors on and off.
    amplification = result.amplification(record[0])
    assert amplification is not None
    assert 2.0 <= amplification <= 3.3
    (outcome,) = evaluate(result, ["amplification<=1.1"])
    assert not outcome.passed
    assert result.to_json()["events"][0]["amplification"] == outcome.actual


async def test_db_terminate_kills_the_targets_connections(own_database: str) -> None:
    conn = await asyncpg.connect(own_database)
    try:
        record: list[dict[str, Any]] = []
        await play([parse_chaos("0+0 db_terminate")], Injectors(dsn=own_database), record)
        async with asyncio.timeout(10):  # the server closes the connection
            while not conn.is_closed():
                await asyncio.sleep(0.02)
    finally:
        conn.terminate()
    assert record[0]["kind"] == "db_terminate"


async def test_memory_ballast_is_resident_for_its_window_only() -> None:
    async with ResourceSampler() as sampler:
        before = (await sampler())["rss_bytes"]
        injectors = Injectors()
        async with injectors.applied(parse_chaos("0+1 memory:mib=64")):
            during = (await sampler())["rss_bytes"]
    assert during - before >= 60 * 2**20


async def test_cpu_workers_run_for_their_window_only() -> None:
    def workers() -> list[psutil.Process]:
        # Spawned workers, not multiprocessing's resource tracker.
        return [c for c in psutil.Process().children() if "spawn_main" in " ".join(c.cmdline())]

    async with Injectors().applied(parse_chaos("0+1 cpu:workers=2")):
        busy = workers()
        assert len(busy) == 2
    assert multiprocessing.active_children() == []
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in busy)


def test_cli_chaos_errors_exit_2() -> None:
    runner = CliRunner()
    quick = "tests.stress.sample_targets:quick"
    bad = runner.invoke(app, ["stress", quick, "--chaos", "soon network", "--quiet"])
    assert bad.exit_code == 2
    missing = runner.invoke(
        app, ["stress", quick, "--chaos", "0+1 network:reset=true", "--quiet", "--duration", "1"]
    )
    assert missing.exit_code == 2
    assert "fault proxy" in missing.output


@pytest.mark.parametrize(
    ("injectors", "spec", "message"),
    [
        (Injectors(), "0+1 network:reset=true", "fault proxy"),
        (Injectors(), "0+1 db_terminate", "DSN"),
        (Injectors(), "0+1 db_restart", "embedded PostgreSQL"),
        (Injectors(provider_admin="http://127.0.0.1:1"), "0+1 provider:rpm=1", "admin token"),
    ],
)
def test_a_fault_without_its_injector_is_refused_up_front(
    injectors: Injectors, spec: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        injectors.check([parse_chaos(spec)])


async def test_provider_events_are_checked_against_the_mock_before_any_load() -> None:
    async with MockLLMServer(MockConfig(latency_base=0)) as srv:
        good = Injectors(provider_admin=srv.url, provider_token=srv.admin_token)
        await good.preflight([parse_chaos("0+1 provider:error_rate=1")])
        with pytest.raises(ValueError, match=r"no field 'status'.*known: .*error_rate"):
            await good.preflight([parse_chaos("0+1 provider:status=429")])
        wrong_token = Injectors(provider_admin=srv.url, provider_token="not-the-token")
        with pytest.raises(ValueError, match="admin API") as refused:
            await wrong_token.preflight([parse_chaos("0+1 provider:error_rate=1")])
        assert "not-the-token" not in str(refused.value)
        assert srv.config.error_rate == 0  # nothing was changed


async def test_a_fault_that_fails_ends_its_own_window_and_fails_the_run() -> None:
    async with MockLLMServer(MockConfig(latency_base=0)) as srv:
        # Past the preflight (played directly): the mock refuses the unknown field.
        events = [
            parse_chaos("0+0.2 provider:status=429"),
            parse_chaos("0.1+0.2 provider:error_rate=1"),
        ]
        injectors = Injectors(provider_admin=srv.url, provider_token=srv.admin_token)
        record: list[dict[str, Any]] = []
        chaos = asyncio.create_task(play(events, injectors, record))

        async def call(index: int, rng: random.Random) -> None:
            await asyncio.sleep(0)

        result = await run_open(call, constant(20, 0.5))
        await chaos
    failed, applied = sorted(record, key=lambda e: float(e["start"]))
    assert "422" in failed["error"]
    assert "error" not in applied  # the other fault went on
    assert applied["upstream_requests"] >= 0
    assert result.passed
    result.events = record
    assert not result.passed
    assert result.to_json()["events"][0]["error"] == failed["error"]
