"""HttpClient against a real local HTTP server (uvicorn on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import pickle
import time
from collections.abc import AsyncIterator, Iterator

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bounded import Retry
from bounded.http import (
    HttpClient,
    HTTPStatusError,
    RetryableHTTPError,
    is_retryable_status,
    parse_retry_after,
)
from bounded.mockllm.server import ASGIServer

SECRET = "sk-test-SECRET-0123456789"


async def status(request: Request) -> Response:
    """Answer with the status in the path and every query parameter as a header."""
    headers = {k: v for k, v in request.query_params.items() if k != "key"}
    return JSONResponse(
        {"error": {"message": "nope"}},
        status_code=int(request.path_params["code"]),
        headers=headers,
    )


async def slow(request: Request) -> Response:
    await request.app.state.release.wait()
    return JSONResponse({"ok": True})


async def flaky(request: Request) -> Response:
    request.app.state.calls += 1
    if request.app.state.calls <= 2:
        return JSONResponse({}, status_code=503, headers={"retry-after-ms": "10"})
    return JSONResponse({"calls": request.app.state.calls})


@pytest.fixture
async def server() -> AsyncIterator[ASGIServer]:
    app = Starlette(
        routes=[
            Route("/status/{code:int}", status, methods=["GET", "POST"]),
            Route("/slow", slow),
            Route("/flaky", flaky),
        ]
    )
    app.state.release = asyncio.Event()
    app.state.calls = 0
    async with ASGIServer(app) as srv:
        yield srv


@pytest.fixture
async def client(server: ASGIServer) -> AsyncIterator[HttpClient]:
    async with HttpClient(
        "test", base_url=server.url, headers={"authorization": f"Bearer {SECRET}"}
    ) as c:
        yield c


async def test_success_is_returned_and_counted(client: HttpClient) -> None:
    response = await client.get("/status/200")
    assert response.status_code == 200
    stats = client.stats()
    assert (stats.name, stats.requests_total, stats.errors_total, stats.in_use) == ("test", 1, 0, 0)
    assert stats.limit == 100


@pytest.mark.parametrize("code", [408, 409, 429, 500, 502, 503, 504, 529])
async def test_retryable_statuses(client: HttpClient, code: int) -> None:
    with pytest.raises(RetryableHTTPError) as info:
        await client.post(f"/status/{code}")
    assert info.value.status_code == code
    assert info.value.retry_after is None
    assert client.stats().errors_total == 1


@pytest.mark.parametrize("code", [400, 401, 403, 404, 422])
async def test_other_4xx_are_not_retryable(client: HttpClient, code: int) -> None:
    with pytest.raises(HTTPStatusError) as info:
        await client.get(f"/status/{code}")
    assert not isinstance(info.value, RetryableHTTPError)
    assert info.value.status_code == code
    assert info.value.json() == {"error": {"message": "nope"}}


def test_status_classification() -> None:
    assert is_retryable_status(501)
    assert is_retryable_status(529)
    assert not is_retryable_status(400)
    assert not is_retryable_status(200)


async def test_retry_after_ms(client: HttpClient) -> None:
    with pytest.raises(RetryableHTTPError) as info:
        await client.get("/status/429", params={"retry-after-ms": "1500", "retry-after": "9"})
    assert info.value.retry_after == 1.5


async def test_retry_after_seconds(client: HttpClient) -> None:
    with pytest.raises(RetryableHTTPError) as info:
        await client.get("/status/503", params={"retry-after": "7"})
    assert info.value.retry_after == 7.0


async def test_retry_after_http_date(client: HttpClient) -> None:
    # Relative to the server's own `date` header (whole seconds).
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    with pytest.raises(RetryableHTTPError) as info:
        await client.get("/status/503", params={"retry-after": later})
    assert info.value.retry_after is not None
    assert 28.0 <= info.value.retry_after <= 31.0


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "2.5"}) == 2.5
    future = email.utils.formatdate(1_000_100, usegmt=True)
    assert parse_retry_after({"retry-after": future}, now=1_000_000) == 100.0
    past = email.utils.formatdate(999_000, usegmt=True)
    assert parse_retry_after({"retry-after": past}, now=1_000_000) == 0.0
    date = email.utils.formatdate(1_800_000_000, usegmt=True)
    later = email.utils.formatdate(1_800_000_030, usegmt=True)
    assert parse_retry_after({"retry-after": later, "date": date}) == 30.0
    # malformed values are ignored, a bad retry-after-ms falls back to retry-after
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "-3"}) is None
    assert parse_retry_after({"retry-after-ms": "x", "retry-after": "4"}) == 4.0
    assert parse_retry_after({}) is None


async def test_x_should_retry_overrides(client: HttpClient) -> None:
    with pytest.raises(HTTPStatusError) as info:
        await client.get("/status/503", params={"x-should-retry": "false"})
    assert not isinstance(info.value, RetryableHTTPError)
    with pytest.raises(RetryableHTTPError):
        await client.get("/status/400", params={"x-should-retry": "true"})
    with pytest.raises(RetryableHTTPError):  # unknown values leave the default
        await client.get("/status/500", params={"x-should-retry": "maybe"})


async def test_api_key_never_in_errors(server: ASGIServer) -> None:
    async with HttpClient(base_url=server.url) as client:
        with pytest.raises(HTTPStatusError) as info:
            await client.get(
                "/status/401",
                headers={"authorization": f"Bearer {SECRET}", "x-api-key": SECRET},
                params={"key": SECRET},
            )
    err = info.value
    copy = pickle.loads(pickle.dumps(err))
    assert copy.status_code == 401
    assert isinstance(copy, HTTPStatusError)
    for text in (
        str(err),
        repr(err),
        str(dict(err.headers)),
        err.body,
        err.url,
        str(copy),
        repr(vars(err)),
    ):
        assert SECRET not in text
    assert "/status/401" in str(err)


async def test_in_use_counts_requests_in_flight(server: ASGIServer, client: HttpClient) -> None:
    task = asyncio.create_task(client.get("/slow"))
    while client.stats().in_use == 0:
        await asyncio.sleep(0.001)
    stats = client.stats()
    assert stats.in_use == 1
    assert stats.utilization == pytest.approx(0.01)
    server.app.state.release.set()  # type: ignore[attr-defined]
    assert (await task).json() == {"ok": True}
    assert client.stats().in_use == 0


async def test_stream_reads_body_and_raises_on_error(client: HttpClient) -> None:
    async with client.stream("GET", "/status/200") as response:
        body = await response.aread()
    assert b"nope" in body
    with pytest.raises(RetryableHTTPError) as info:
        async with client.stream("GET", "/status/529", params={"retry-after": "3"}):
            pass
    assert info.value.retry_after == 3.0
    assert "nope" in info.value.body
    assert client.stats().in_use == 0


async def test_transport_errors_pass_through() -> None:
    async with ASGIServer(Starlette()) as srv:
        url = srv.url
    async with HttpClient(base_url=url) as client:
        with pytest.raises(httpx2.TransportError):
            await client.get("/")
        assert client.stats().errors_total == 1


async def test_close_is_idempotent_and_final(server: ASGIServer) -> None:
    client = HttpClient(base_url=server.url)
    await client.get("/status/204")
    await client.aclose()
    await client.aclose()
    assert client.closed
    with pytest.raises(RuntimeError, match="closed"):
        await client.get("/status/200")


async def test_retry_honours_retry_after_ms(client: HttpClient) -> None:
    retry = Retry(on=RetryableHTTPError, attempts=3)
    response = await retry.call(client.get, "/flaky")
    assert response.json() == {"calls": 3}


def test_validation() -> None:
    with pytest.raises(ValueError, match="timeout"):
        HttpClient(timeout=0)
    with pytest.raises(ValueError, match="max_connections"):
        HttpClient(max_connections=0)


def test_repr_hides_headers() -> None:
    client = HttpClient("x", headers={"authorization": SECRET})
    assert SECRET not in repr(client)


async def test_errors_are_not_logged_with_secrets(
    client: HttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(RetryableHTTPError):
        await client.get("/status/429", params={"retry-after": "garbage"})
    assert SECRET not in caplog.text


@pytest.fixture
def ca_loads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The thread id of every CA-bundle load, with the shared TLS context built afresh."""
    import ssl
    import threading

    from bounded.http import default_tls

    loads: list[int] = []
    real = ssl.SSLContext.load_verify_locations

    def counted(self: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        loads.append(threading.get_ident())
        real(self, *args, **kwargs)

    default_tls.cache_clear()
    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    yield loads
    default_tls.cache_clear()


async def test_clients_share_one_tls_context_loaded_off_the_loop(ca_loads: list[int]) -> None:
    import threading

    from bounded.llm import http_client

    loop_thread = threading.get_ident()
    async with HttpClient("a") as first, HttpClient("b") as second:
        await first.open()
        _ = second.client
        sdk_client = http_client()
        await sdk_client.aclose()
    assert len(ca_loads) == 1  # one load for the process, not one per client
    assert loop_thread not in ca_loads  # and not on the event loop


async def test_http_client_keeps_an_explicit_verify(ca_loads: list[int]) -> None:
    from bounded.llm import http_client

    unverified = http_client(verify=False)
    await unverified.aclose()
    assert ca_loads == []
