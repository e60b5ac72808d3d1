"""The mock provider served by uvicorn on 127.0.0.1, driven with plain httpx2."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from typer.testing import CliRunner

from bounded.cli import app as cli_app
from bounded.llm import estimate_tokens, parse_duration
from bounded.mockllm import MockConfig, MockLLMServer
from bounded.mockllm.app import format_duration
from bounded.mockllm.models import make_reply

OPENAI = "/v1/chat/completions"
ANTHROPIC = "/v1/messages"


def body(
    prompt: str = "Tell me about bounded queues", max_tokens: int = 100, **extra: Any
) -> dict[str, Any]:
    return {
        "model": "mock-1",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        **extra,
    }


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=10) as client:
        yield client


async def test_openai_reply_and_usage(http: httpx2.AsyncClient) -> None:
    async with MockLLMServer(MockConfig(latency_base=0)) as srv:
        r = await http.post(srv.url + OPENAI, json=body("hello there world"))
    assert r.status_code == 200
    data = r.json()
    text = data["choices"][0]["message"]["content"]
    assert data["object"] == "chat.completion"
    assert data["model"] == "mock-1"
    assert data["usage"]["prompt_tokens"] == estimate_tokens("hello there world") == 6
    assert data["usage"]["completion_tokens"] == estimate_tokens(text) > 0
    assert data["usage"]["total_tokens"] == 6 + data["usage"]["completion_tokens"]
    assert data["choices"][0]["finish_reason"] == "stop"


async def test_anthropic_reply_truncated_by_max_tokens(http: httpx2.AsyncClient) -> None:
    async with MockLLMServer(MockConfig(latency_base=0)) as srv:
        r = await http.post(srv.url + ANTHROPIC, json=body(max_tokens=3, system="be brief"))
    data = r.json()
    assert r.status_code == 200
    assert data["type"] == "message"
    assert data["usage"] == {
        "input_tokens": estimate_tokens("be brief\nTell me about bounded queues"),
        "output_tokens": 3,
    }
    assert len(data["content"][0]["text"].split()) == 3
    assert data["stop_reason"] == "max_tokens"


async def test_replies_are_deterministic(http: httpx2.AsyncClient) -> None:
    texts = []
    for seed in (1, 1, 2):
        async with MockLLMServer(MockConfig(seed=seed, latency_base=0)) as srv:
            r = await http.post(srv.url + OPENAI, json=body("same prompt"))
            texts.append(r.json()["choices"][0]["message"]["content"])
    assert texts[0] == texts[1] != texts[2]
    assert make_reply(1, "m", "p", 100) == make_reply(1, "m", "p", 100)
    assert make_reply(1, "m", "p", 100) != make_reply(1, "m", "q", 100)


async def test_validation_errors(http: httpx2.AsyncClient) -> None:
    async with MockLLMServer(MockConfig(latency_base=0, api_key="right")) as srv:
        r = await http.post(
            srv.url + ANTHROPIC, json={"messages": []}, headers={"x-api-key": "right"}
        )
        assert r.status_code == 400
        assert r.json()["error"]["type"] == "invalid_request_error"
        r = await http.post(
            srv.url + OPENAI, json=body(), headers={"authorization": "Bearer wrong"}
        )
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_api_key"
        r = await http.post(
            srv.url + OPENAI, json=body(), headers={"authorization": "Bearer right"}
        )
        assert r.status_code == 200
        assert (await http.get(srv.url + "/admin/config")).json()["api_key"] == "***"


def sse_events(text: str) -> list[tuple[str | None, str]]:
    events = []
    for block in text.strip().split("\n\n"):
        name = None
        data = ""
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        events.append((name, data))
    return events


async def test_openai_streaming(http: httpx2.AsyncClient) -> None:
    async with MockLLMServer(MockConfig(latency_base=0)) as srv:
        plain = (await http.post(srv.url + OPENAI, json=body())).json()
        req = body(stream=True, stream_options={"include_usage": True})
        async with http.stream("POST", srv.url + OPENAI, json=req) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            text = (await r.aread()).decode()
    events = sse_events(text)
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert content == plain["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == plain["usage"]


async def test_anthropic_streaming(http: httpx2.AsyncClient) -> None:
    async with MockLLMServer(MockConfig(latency_base=0)) as srv:
        plain = (await http.post(srv.url + ANTHROPIC, json=body())).json()
        r = await http.post(srv.url + ANTHROPIC, json=body(stream=True))
    events = sse_events(r.text)
    names = [n for n, _ in events]
    assert names[0] == "message_start"
    assert names[1] == "content_block_start"
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    payloads = [json.loads(d) for _, d in events]
    assert all(p["type"] == n for n, p in zip(names, payloads, strict=True))
    text = "".join(p["delta"]["text"] for p in payloads if p["type"] == "content_block_delta")
    assert text == plain["content"][0]["text"]
    assert payloads[0]["message"]["usage"]["input_tokens"] == plain["usage"]["input_tokens"]
    assert payloads[-2]["usage"]["output_tokens"] == plain["usage"]["output_tokens"]


async def test_openai_rate_limit_headers_and_429(http: httpx2.AsyncClient) -> None:
    async with MockLLMServer(MockConfig(latency_base=0, rpm=2, tpm=10_000, window=60)) as srv:
        ok = await http.post(srv.url + OPENAI, json=body())
        assert ok.headers["x-ratelimit-limit-requests"] == "2"
        assert ok.headers["x-ratelimit-remaining-requests"] == "1"
        assert ok.headers["x-ratelimit-limit-tokens"] == "10000"
        reset = parse_duration(ok.headers["x-ratelimit-reset-requests"])
        assert reset is not None
        assert 29 < reset <= 30
        await http.post(srv.url + OPENAI, json=body())
        r = await http.post(srv.url + OPENAI, json=body())
        stats = (await http.get(srv.url + "/admin/stats")).json()
    assert r.status_code == 429
    err = r.json()["error"]
    assert err["code"] == "rate_limit_exceeded"
    assert err["type"] == "requests"
    assert r.headers["x-ratelimit-remaining-requests"] == "0"
    assert 29_000 < int(r.headers["retry-after-ms"]) <= 30_000
    assert r.headers["retry-after"] == "30"
    assert stats["rate_limited_total"] == 1
    assert stats["statuses"] == {"200": 2, "429": 1}


async def test_anthropic_rate_limit_headers_and_429(http: httpx2.AsyncClient) -> None:
    config = MockConfig(latency_base=0, rpm=50, input_tpm=100, output_tpm=1000, window=60)
    async with MockLLMServer(config) as srv:
        ok = await http.post(srv.url + ANTHROPIC, json=body(max_tokens=10))
        h = ok.headers
        assert h["anthropic-ratelimit-requests-limit"] == "50"
        assert h["anthropic-ratelimit-requests-remaining"] == "49"
        assert h["anthropic-ratelimit-input-tokens-limit"] == "100"
        assert int(h["anthropic-ratelimit-input-tokens-remaining"]) == 100 - estimate_tokens(
            body()["messages"][0]["content"]
        )
        reset = dt.datetime.fromisoformat(h["anthropic-ratelimit-requests-reset"])
        assert reset.tzinfo is not None
        assert "anthropic-ratelimit-tokens-remaining" in h
        r = await http.post(srv.url + ANTHROPIC, json=body("word " * 95, max_tokens=10))
    assert r.status_code == 429
    assert r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert int(r.headers["retry-after"]) >= 1


async def test_unused_output_tokens_are_refunded(http: httpx2.AsyncClient) -> None:
    async with MockLLMServer(MockConfig(latency_base=0, tpm=1000, output_tokens=5)) as srv:
        r = await http.post(srv.url + OPENAI, json=body("a b", max_tokens=500))
    # 2 input + 500 reserved, then 495 unused given back
    assert 1000 - 7 <= int(r.headers["x-ratelimit-remaining-tokens"]) <= 1000


async def test_fault_injection_statuses(http: httpx2.AsyncClient) -> None:
    async with MockLLMServer(
        MockConfig(latency_base=0, error_rate=1.0, error_statuses=[529])
    ) as srv:
        r = await http.post(srv.url + ANTHROPIC, json=body())
        assert r.status_code == 529
        assert r.json()["error"]["type"] == "overloaded_error"
        srv.update(error_statuses=[500])
        r = await http.post(srv.url + OPENAI, json=body())
        assert r.status_code == 500
        assert r.json()["error"]["type"] == "server_error"
        assert srv.state.stats()["errors_injected_total"] == 2


async def test_connection_reset(http: httpx2.AsyncClient) -> None:
    async with MockLLMServer(MockConfig(latency_base=0, reset_rate=1.0)) as srv:
        with pytest.raises((httpx2.RemoteProtocolError, httpx2.ReadError)):
            await http.post(srv.url + OPENAI, json=body())
        srv.update(reset_rate=0.0)
        r = await http.post(srv.url + OPENAI, json=body())
        assert r.status_code == 200
        assert srv.state.stats()["resets_injected_total"] == 1


async def test_slow_responses(http: httpx2.AsyncClient) -> None:
    async with MockLLMServer(MockConfig(latency_base=0, slow_rate=1.0, slow_seconds=5.0)) as srv:
        with pytest.raises(httpx2.ReadTimeout):
            await http.post(srv.url + OPENAI, json=body(), timeout=0.2)
        assert srv.state.stats()["slow_injected_total"] == 1


async def test_capacity_queue_then_overload(http: httpx2.AsyncClient) -> None:
    config = MockConfig(latency_base=0.3, capacity=1, max_concurrency=1, max_queue=1)
    async with MockLLMServer(config) as srv:
        first = asyncio.create_task(http.post(srv.url + ANTHROPIC, json=body("one")))
        while srv.state.gate.in_service == 0:
            await asyncio.sleep(0.005)
        second = asyncio.create_task(http.post(srv.url + ANTHROPIC, json=body("two")))
        while srv.state.gate.queued == 0:
            await asyncio.sleep(0.005)
        third = await http.post(srv.url + ANTHROPIC, json=body("three"))
        assert third.status_code == 529
        assert third.json()["error"]["type"] == "overloaded_error"
        r1, r2 = await asyncio.gather(first, second)
        stats = srv.state.stats()
    assert r1.status_code == r2.status_code == 200
    assert stats["peak_in_service"] == 1
    assert stats["overloaded_total"] == 1


async def test_admin_config_live_changes(http: httpx2.AsyncClient) -> None:
    async with MockLLMServer(MockConfig(latency_base=0), admin_token="t0ken") as srv:
        admin = {"authorization": "Bearer t0ken"}
        r = await http.put(srv.url + "/admin/config", json={"rpm": 1, "window": 60}, headers=admin)
        assert r.status_code == 200
        assert r.json()["rpm"] == 1
        assert (await http.post(srv.url + OPENAI, json=body())).status_code == 200
        assert (await http.post(srv.url + OPENAI, json=body())).status_code == 429
        r = await http.patch(srv.url + "/admin/config", json={"rpm": None}, headers=admin)
        assert r.json()["rpm"] is None
        assert (await http.post(srv.url + OPENAI, json=body())).status_code == 200
        bad = await http.put(srv.url + "/admin/config", json={"error_rate": 2}, headers=admin)
        assert bad.status_code == 422
        assert bad.json()["error"][0]["loc"] == ["error_rate"]
        unknown = await http.put(srv.url + "/admin/config", json={"nope": 1}, headers=admin)
        assert unknown.status_code == 422
        assert (await http.get(srv.url + "/admin/config")).json()["error_rate"] == 0.0
        stats = (await http.get(srv.url + "/admin/stats")).json()
        assert stats["requests_total"] == 3
        cleared = await http.delete(srv.url + "/admin/stats", headers={"x-admin-token": "t0ken"})
        assert cleared.json()["requests_total"] == 0


async def test_admin_changes_need_the_admin_token(http: httpx2.AsyncClient) -> None:
    config = MockConfig(latency_base=0, api_key="sk-mock")
    async with MockLLMServer(config) as srv:
        assert len(srv.admin_token) >= 24  # generated
        key = {"authorization": "Bearer sk-mock"}  # the API key is not the admin token
        for method, path, payload in (
            ("PATCH", "/admin/config", {"api_key": None}),
            ("PUT", "/admin/config", {"rpm": 1}),
            ("DELETE", "/admin/stats", None),
        ):
            for headers in ({}, key, {"x-admin-token": "wrong"}):
                r = await http.request(method, srv.url + path, json=payload, headers=headers)
                assert r.status_code == 401, (method, path, headers)
        assert srv.config.api_key == "sk-mock"
        assert srv.config.rpm is None
        assert (await http.post(srv.url + OPENAI, json=body())).status_code == 401
        admin = {"authorization": f"Bearer {srv.admin_token}"}
        r = await http.patch(srv.url + "/admin/config", json={"api_key": None}, headers=admin)
        assert r.status_code == 200
        assert (await http.post(srv.url + OPENAI, json=body())).status_code == 200


async def test_quota_exceeded_bodies(http: httpx2.AsyncClient) -> None:
    async with MockLLMServer(MockConfig(latency_base=0, quota_exceeded=True)) as srv:
        r = await http.post(srv.url + OPENAI, json=body())
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "insufficient_quota"
        r = await http.post(srv.url + ANTHROPIC, json=body())
        assert r.status_code == 400
        assert "usage limits" in r.json()["error"]["message"]


def test_format_duration_round_trips() -> None:
    for seconds, text in [
        (0, "0s"),
        (0.012, "12ms"),
        (1, "1s"),
        (360, "6m0s"),
        (3723.5, "1h2m3.5s"),
    ]:
        assert format_duration(seconds) == text
        assert parse_duration(text) == pytest.approx(seconds)


def test_cli_help() -> None:
    result = CliRunner().invoke(cli_app, ["mock-llm", "--help"])
    assert result.exit_code == 0
    for option in ("--port", "--rpm", "--capacity", "--error-rate"):
        assert option in result.output


async def test_stream_frees_its_slot_when_the_client_leaves(http: httpx2.AsyncClient) -> None:
    config = MockConfig(
        latency_base=0, latency_per_token=0.05, output_tokens=40, capacity=1, max_concurrency=1
    )
    async with MockLLMServer(config) as srv:
        async with http.stream("POST", srv.url + OPENAI, json=body(stream=True)) as r:
            async for _ in r.aiter_lines():
                break  # first chunk only, then hang up
        assert srv.state.gate.in_service <= 1
        async with asyncio.timeout(5):
            while srv.state.gate.in_service:
                await asyncio.sleep(0.01)
        srv.update(latency_per_token=0.0)
        r2 = await http.post(srv.url + OPENAI, json=body(stream=True))
        assert r2.status_code == 200
        assert r2.text.endswith("data: [DONE]\n\n")
        async with asyncio.timeout(5):  # the server frees the slot after its last write
            while srv.state.gate.in_service:
                await asyncio.sleep(0.01)


def test_cli_refuses_a_busy_port_before_announcing_it() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli_app, ["mock-llm", "--port", str(port)])
    assert result.exit_code == 1
    assert "mock LLM provider on" not in result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output


def test_cli_refuses_a_remote_host_without_allow_remote() -> None:
    result = CliRunner().invoke(cli_app, ["mock-llm", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "--allow-remote" in result.output


async def test_cli_port_0_announces_the_bound_port_and_admin_token() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from bounded.cli import main; main()",
        "mock-llm",
        "--port",
        "0",
        "--log-level",
        "warning",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            first = (await proc.stdout.readline()).decode()
            second = (await proc.stdout.readline()).decode()
        match = re.search(r"on http://127\.0\.0\.1:(\d+) ", first)
        assert match is not None, first
        assert int(match.group(1)) > 0
        token = second.removeprefix("admin token: ").strip()
        url = f"http://127.0.0.1:{match.group(1)}"
        async with httpx2.AsyncClient(base_url=url, timeout=10) as http:
            assert (await http.get("/health")).json() == {"status": "ok"}
            assert (await http.delete("/admin/stats")).status_code == 401
            auth = {"authorization": f"Bearer {token}"}
            assert (await http.delete("/admin/stats", headers=auth)).status_code == 200
    finally:
        proc.terminate()
        await proc.wait()


def test_listening_socket_is_tcp_so_replies_are_not_delayed() -> None:
    # asyncio turns Nagle off (TCP_NODELAY) only for sockets created with IPPROTO_TCP.
    from bounded.mockllm.server import bind_socket

    with bind_socket("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockname()[1] > 0


async def test_stats_report_every_counter_before_it_first_counts(
    http: httpx2.AsyncClient,
) -> None:
    async with MockLLMServer(MockConfig(latency_base=0)) as srv:
        fresh = (await http.get(srv.url + "/admin/stats")).json()
        assert fresh["requests_total"] == 0
        assert fresh["rate_limited_total"] == 0
        await http.post(srv.url + OPENAI, json=body())
        assert (await http.get(srv.url + "/admin/stats")).json()["requests_total"] == 1
