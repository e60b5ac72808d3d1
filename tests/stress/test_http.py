"""The load generator's HTTP client against real loopback servers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bounded.http import HttpClient, HTTPStatusError, RetryableHTTPError
from bounded.mockllm import MockConfig, MockLLMServer
from bounded.stress import constant, open_target, run_closed, run_open
from bounded.stress.accounting import classify_error
from bounded.stress.http import LoadClient, encode_request

CHAT = "/v1/chat/completions"
BODY = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}

Writer = asyncio.StreamWriter
Reader = asyncio.StreamReader
Handler = Callable[[str, Reader, Writer], Awaitable[None]]


def ok(body: bytes, *extra: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in extra)
    return f"HTTP/1.1 200 OK\r\ncontent-length: {len(body)}\r\n{head}\r\n".encode() + body


@dataclass
class Server:
    """A tiny HTTP/1.1 server: `handler(path, writer)` answers each request."""

    handler: Handler
    port: int = 0
    accepted: int = 0
    open: int = 0
    peak: int = 0
    requests: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def serve(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        self.accepted += 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                length = 0
                for line in head.split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.requests += 1
                await self.handler(head.split(" ")[1], reader, writer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # cancelled: the loop is closing (3.11 logs a cancelled handler as an error)
        finally:
            self.open -= 1
            writer.close()


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[Server]:
    server = Server(handler)
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        with contextlib.suppress(Exception):
            listener.close_clients()  # type: ignore[attr-defined]  # 3.13+
        await listener.wait_closed()


async def answer(path: str, reader: Reader, writer: Writer) -> None:
    """Behaviours by path, for the tests below."""
    if path == "/chunked":
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for part in (b"hello ", b"chunked ", b"world"):
            await writer.drain()
            await asyncio.sleep(0.01)  # each chunk in its own segment
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
        writer.write(b"0\r\n\r\n")
    elif path == "/until-close":
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nto the end")
        await writer.drain()
        writer.close()
    elif path == "/close":
        writer.write(ok(b"bye", "connection: close"))
        await writer.drain()
        writer.close()
    elif path == "/head":  # as a HEAD response: the length of the body not sent
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n")
    elif path == "/429":
        writer.write(
            b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-length: 4\r\n\r\nslow"
        )
    elif path == "/503":
        writer.write(b"HTTP/1.1 503 Unavailable\r\ncontent-length: 0\r\n\r\n")
    elif path == "/404-retry":
        writer.write(b"HTTP/1.1 404 Not Found\r\nx-should-retry: true\r\ncontent-length: 0\r\n\r\n")
    elif path == "/404":
        writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nno")
    elif path == "/silent":
        await reader.read()  # until the client closes
    elif path == "/trickle":
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\n")
        for byte in b"abcdef":
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(bytes([byte]))
    elif path == "/reset":
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    elif path.startswith("/slow"):
        await asyncio.sleep(0.02)
        writer.write(ok(b"slow"))
    else:
        writer.write(ok(path.encode()))


def get(url: str) -> bytes:
    return encode_request("GET", url)


async def test_keep_alive_reuses_one_connection() -> None:
    async with serving(answer) as srv, LoadClient(srv.url()) as client:
        bodies = [(await client.send(get(srv.url(f"/{i}")))).body for i in range(50)]
        assert bodies == [f"/{i}".encode() for i in range(50)]
        assert srv.accepted == client.connections_made == 1
        assert client.idle == client.open == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [("/chunked", b"hello chunked world"), ("/7", b"/7"), ("/until-close", b"to the end")],
)
async def test_bodies_chunked_content_length_and_close_delimited(path: str, body: bytes) -> None:
    async with serving(answer) as srv, LoadClient(srv.url()) as client:
        for _ in range(2):  # the second on the same or, after a close, a new connection
            response = await client.send(get(srv.url(path)))
            assert (response.status, response.body) == (200, body)
    assert srv.accepted == (2 if path == "/until-close" else 1)


async def test_a_head_response_has_no_body_and_keeps_the_connection() -> None:
    async with serving(answer) as srv, LoadClient(srv.url()) as client:
        for _ in range(2):
            head = await client.send(encode_request("HEAD", srv.url("/head")))
            assert (head.status, head.body, head.header("Content-Length")) == (200, b"", "10")
            assert (await client.send(get(srv.url("/x")))).body == b"/x"
        assert srv.accepted == 1


async def test_connection_close_is_honoured() -> None:
    async with serving(answer) as srv, LoadClient(srv.url()) as client:
        for _ in range(3):
            assert (await client.send(get(srv.url("/close")))).body == b"bye"
        assert srv.accepted == 3
        await asyncio.sleep(0.05)
        assert client.open == 0


@pytest.mark.parametrize(
    ("path", "error", "kind", "retry_after"),
    [
        ("/429", RetryableHTTPError, "upstream_429", 7.0),
        ("/503", RetryableHTTPError, "upstream_5xx", None),
        ("/404", HTTPStatusError, "other", None),
        ("/404-retry", RetryableHTTPError, "other", None),
    ],
)
async def test_error_statuses_raise_what_http_client_raises(
    path: str, error: type[Exception], kind: str, retry_after: float | None
) -> None:
    async with serving(answer) as srv:
        raised: list[BaseException] = []
        async with LoadClient(srv.url()) as lean:
            with pytest.raises(error) as lean_info:
                await lean.check(get(srv.url(path)), "GET", srv.url(path))
            raised.append(lean_info.value)
        async with HttpClient("t") as reference:
            with pytest.raises(error) as ref_info:
                await reference.get(srv.url(path))
            raised.append(ref_info.value)
    for exc in raised:
        assert classify_error(exc) == kind
        assert getattr(exc, "retry_after", None) == retry_after
    ours, theirs = raised
    assert str(ours) == str(theirs)


async def test_read_timeout_is_a_timeout_and_trickling_bytes_are_not() -> None:
    async with serving(answer) as srv, LoadClient(srv.url(), read_timeout=0.3) as client:
        assert (await client.send(get(srv.url("/trickle")))).body == b"abcdef"  # ~0.3 s in all
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TimeoutError) as info:
            await client.send(get(srv.url("/silent")))
        assert 0.3 <= loop.time() - start < 2
        assert classify_error(info.value) == "timeout"
        await asyncio.sleep(0.05)
        assert client.open == 0  # the timed-out connection is closed, not reused
        assert (await client.send(get(srv.url("/next")))).body == b"/next"
        assert srv.accepted == 2


async def test_connection_refused_and_reset_are_connection_errors() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        async with LoadClient(f"http://127.0.0.1:{port}") as client:
            with pytest.raises(ConnectionRefusedError) as refused:
                await client.send(get(f"http://127.0.0.1:{port}/"))
            assert client.open == 0
    async with serving(answer) as srv, LoadClient(srv.url()) as client:
        with pytest.raises(ConnectionError) as reset:
            await client.send(get(srv.url("/reset")))
        assert (await client.send(get(srv.url("/after")))).body == b"/after"
        assert client.open == 1
    assert classify_error(refused.value) == classify_error(reset.value) == "other"


async def test_an_idle_connection_closed_by_the_server_is_not_reused() -> None:
    async with serving(answer) as srv, LoadClient(srv.url()) as client:
        await client.send(get(srv.url("/a")))
        for task in asyncio.all_tasks():  # the server's handler: close its side
            if task.get_coro().__qualname__ == "Server.serve":  # type: ignore[union-attr]
                task.cancel()
        await asyncio.sleep(0.05)
        assert client.open == 0
        assert (await client.send(get(srv.url("/b")))).body == b"/b"
        assert srv.accepted == 2


async def test_a_cancelled_request_closes_its_connection() -> None:
    async with serving(answer) as srv, LoadClient(srv.url()) as client:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await client.send(get(srv.url("/silent")))
        assert (await client.send(get(srv.url("/next")))).body == b"/next"
        assert srv.accepted == 2


@settings(max_examples=15, deadline=None)
@given(limit=st.integers(1, 6), concurrent=st.integers(1, 25))
def test_the_pool_never_opens_more_than_its_limit(limit: int, concurrent: int) -> None:
    async def main() -> None:
        async with serving(answer) as srv:
            async with LoadClient(srv.url(), max_connections=limit) as client:
                raw = get(srv.url("/slow"))
                for _ in range(2):
                    responses = await asyncio.gather(*(client.send(raw) for _ in range(concurrent)))
                    assert [r.body for r in responses] == [b"slow"] * concurrent
                assert client.peak == srv.peak == srv.accepted == min(limit, concurrent)
            assert client.open == 0
            await asyncio.sleep(0.02)
            assert srv.open == 0

    asyncio.run(main())


async def test_aclose_fails_requests_in_flight_and_leaks_no_connection() -> None:
    async with serving(answer) as srv:
        client = LoadClient(srv.url(), max_connections=4)
        raw = get(srv.url("/silent"))
        pending = [asyncio.ensure_future(client.send(raw)) for _ in range(6)]
        await asyncio.sleep(0.1)
        assert client.open == srv.open == 4
        await client.aclose()
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        assert all(isinstance(o, ConnectionError | RuntimeError) for o in outcomes), outcomes
        assert client.open == 0
        await asyncio.sleep(0.05)
        assert srv.open == 0


@pytest.mark.parametrize("http_client", ["lean", "httpx"])
async def test_runner_accounting_holds_with_either_client(http_client: str) -> None:
    config = MockConfig(latency_base=0.002, error_rate=0.3, error_statuses=[503, 429])
    async with MockLLMServer(config) as srv:
        async with open_target(
            srv.url + CHAT, method="POST", json_body=BODY, http_client=http_client
        ) as target:
            opened = await run_open(target.call, constant(200, 0.5), max_in_flight=5, grace=5)
            closed = await run_closed(target.call, users=8, iterations=300, grace=5)
        served = srv.state.stats()["requests_total"]
    for result in (opened, closed):
        assert result.lost == 0
        assert result.succeeded + result.failed_total + result.dropped == result.scheduled
        assert result.failed["upstream_5xx"] > 0
        assert result.failed["upstream_429"] > 0
        assert result.failed["other"] == result.failed["timeout"] == 0
    assert served == opened.succeeded + opened.failed_total + closed.succeeded + closed.failed_total
