"""TARGET resolution and the HTTP target against the mock provider on loopback."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator

import pytest

from bounded import ConcurrencyManager
from bounded.db.embedded import EmbeddedPostgres
from bounded.mockllm import MockConfig, MockLLMServer
from bounded.stress import Target, constant, open_target, register_target, run_open
from bounded.stress.targets import HTTP_CLIENTS

CHAT = "/v1/chat/completions"
BODY = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


async def test_module_function_target_and_its_monitor() -> None:
    async with open_target("tests.stress.sample_targets:quick") as target:
        await target.call(0, random.Random(0))
        monitor = target.monitor()
        assert monitor is not None
        assert [s.name for s in monitor.snapshot()] == ["sample"]
        assert target.embedded is None
        assert target.metrics() is None


async def test_a_module_manager_exposes_its_monitor_and_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.stress import sample_targets

    manager = ConcurrencyManager.from_dict({"bulkheads": {"db": {"limit": 2}}}, env={})
    manager.bulkhead("db")
    monkeypatch.delattr(sample_targets, "monitor")
    monkeypatch.setattr(sample_targets, "manager", manager, raising=False)
    async with open_target("tests.stress.sample_targets:quick") as target:
        assert target.monitor() is manager.monitor
        assert target.metrics() is manager.metrics


async def test_an_embedded_attribute_of_the_module_is_what_db_restart_acts_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.stress import sample_targets

    server = EmbeddedPostgres()  # never started: only its identity matters here
    try:
        monkeypatch.setattr(sample_targets, "embedded", server, raising=False)
        async with open_target("tests.stress.sample_targets:quick") as target:
            assert target.embedded is server
        monkeypatch.setattr(sample_targets, "embedded", "not a server")
        async with open_target("tests.stress.sample_targets:quick") as target:
            assert target.embedded is None
    finally:
        server.close()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tests.stress.sample_targets:not_async", "not an async callable"),
        ("tests.stress.sample_targets:missing", "no attribute"),
        ("tests.stress.no_such_module:fn", "cannot import"),
        ("no-such-name", "registered"),
        ("http://192.0.2.1/", "loopback"),
        ("ftp://127.0.0.1/", "http"),
        ("http://127.0.0.1:1/?http_client", "http_client"),
    ],
)
async def test_bad_targets_raise_value_error(spec: str, message: str) -> None:
    options = {"http_client": "curl"} if spec.endswith("?http_client") else {}
    with pytest.raises(ValueError, match=message):
        async with open_target(spec, **options):
            pass


async def test_registered_target_by_name() -> None:
    calls: list[int] = []

    @contextlib.asynccontextmanager
    async def factory() -> AsyncIterator[Target]:
        async def call(index: int, rng: random.Random) -> None:
            calls.append(index)

        yield Target("counting", call)

    register_target("counting", factory)
    async with open_target("counting") as target:
        await target.call(7, random.Random(0))
    assert calls == [7]
    with pytest.raises(ValueError, match="name"):
        register_target("a:b", factory)


@pytest.mark.parametrize("http_client", HTTP_CLIENTS)
async def test_http_target_against_the_mock_provider(http_client: str) -> None:
    async with MockLLMServer(MockConfig(latency_base=0.005)) as srv:
        async with open_target(
            srv.url + CHAT, method="POST", json_body=BODY, http_client=http_client
        ) as target:
            result = await run_open(target.call, constant(40, 0.5), grace=5)
        assert srv.state.stats()["requests_total"] >= 20
    assert result.succeeded == result.scheduled == 20
    assert result.latency["p50"] >= 0.005


@pytest.mark.parametrize("http_client", HTTP_CLIENTS)
async def test_http_errors_are_classified_by_status(http_client: str) -> None:
    config = MockConfig(latency_base=0, error_rate=1.0, error_statuses=[503])
    options = {"method": "POST", "json_body": BODY, "http_client": http_client}
    async with MockLLMServer(config) as srv:
        async with open_target(srv.url + CHAT, **options) as target:
            errors = await run_open(target.call, constant(20, 0.5), grace=5)
        srv.update(error_rate=0.0, rpm=2)
        async with open_target(srv.url + CHAT, **options) as target:
            limited = await run_open(target.call, constant(20, 0.5), grace=5)
    assert errors.failed["upstream_5xx"] == 10
    assert limited.failed["upstream_429"] == 8
    assert limited.succeeded == 2
    assert limited.lost == errors.lost == 0


@pytest.mark.parametrize("http_client", HTTP_CLIENTS)
async def test_an_http_target_is_named_without_its_credentials(http_client: str) -> None:
    async with MockLLMServer(MockConfig(latency_base=0)) as srv:
        plain = srv.url + CHAT
        secret_url = srv.url.replace("://", "://user:s3cret@") + CHAT + "?api_key=s3cret"
        async with open_target(
            secret_url, method="POST", json_body=BODY, http_client=http_client
        ) as target:
            await target.call(0, random.Random(0))
    assert "s3cret" not in target.name
    assert target.name == plain
