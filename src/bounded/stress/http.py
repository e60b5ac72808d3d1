"""The load generator's HTTP/1.1 client: keep-alive connections on `asyncio.Protocol`.

A load generator's client must cost little per request, or its own CPU sets the rate and
the latency it reports. `LoadClient` sends pre-encoded requests (`encode_request`, done
once per target) over a pool of keep-alive connections to one origin and parses responses
with httptools (llhttp, the parser uvicorn uses): Content-Length, chunked and
close-delimited bodies. Error statuses raise the same typed errors as `bounded.HttpClient`
(`bounded.http.error_class`), so a run classifies them the same way: 429 with its
``retry_after``, 5xx, other 4xx. A connect or read timeout raises `TimeoutError`; a
refused, reset or closed connection raises `ConnectionError` (an `OSError`).

The pool opens at most `max_connections` connections (requests beyond it wait for one)
and reuses the most recently released first. No redirects, cookies, compression,
proxies or HTTP/2: it is for driving one service, not a general client.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools
import httpx2

from bounded._validate import positive, positive_int
from bounded.http import HTTPError, default_tls, error_class, parse_retry_after

__all__ = ["LoadClient", "Response", "encode_request"]

_USER_AGENT = "bounded-stress"


@dataclass(frozen=True, slots=True)
class Response:
    """A complete response: status, raw header pairs (as sent) and the whole body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first header called `name` (case-insensitive), decoded as Latin-1."""
        key = name.lower().encode("latin-1")
        for k, v in self.headers:
            if k.lower() == key:
                return v.decode("latin-1")
        return None


def encode_request(
    method: str,
    url: str,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> bytes:
    """One HTTP/1.1 request (head and body) as bytes, to send as often as needed.

    `url` is absolute; its path and query become the request target. ``host``,
    ``user-agent`` and ``content-length`` are set unless `headers` sets them.
    """
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"url must be absolute, got {url!r}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    fields = {"host": parts.netloc.rpartition("@")[2], "user-agent": _USER_AGENT}
    if body or method.upper() in ("POST", "PUT", "PATCH"):
        fields["content-length"] = str(len(body))
    fields.update({k.lower(): v for k, v in (headers or {}).items()})
    for name, value in fields.items():
        if any(c in name + value for c in "\r\n\0") or not name:
            raise ValueError(f"invalid header {name!r}")
    head = f"{method.upper()} {target} HTTP/1.1\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return (head + "\r\n").encode("latin-1") + body


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request in flight."""

    def __init__(self, pool: LoadClient) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Response] | None = None
        self.usable = True  # False once closing, broken or told to close
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.headers_done = False
        self.status = 0
        self.head = False  # a HEAD request: its response has no body, whatever it says
        self.last_read = 0.0
        self.timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.last_read = self.loop.time()
        if self.waiter is None:  # bytes nobody asked for: the connection is out of step
            self.abort()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(ConnectionError(f"malformed HTTP response: {exc}"))

    def eof_received(self) -> bool:
        self.usable = False
        if self.waiter is not None and self.headers_done and not self.framed():
            self.complete()  # a close-delimited body ends with the connection
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.waiter is not None:
            self.fail(exc or ConnectionResetError("connection closed before the response"))
        self.pool.lost(self)

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.status = self.parser.get_status_code()
        if self.head:  # llhttp would wait for the body Content-Length announces
            self.parser = httptools.HttpResponseParser(self)
            self.complete()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if not self.parser.should_keep_alive():
            self.usable = False
        self.complete()

    # the pool's side
    def send(self, raw: bytes, timeout: float) -> asyncio.Future[Response]:
        """Write `raw` and return the future of its response."""
        assert self.transport is not None
        self.waiter = waiter = self.loop.create_future()
        self.headers = []
        self.body = []
        self.headers_done = False
        self.head = raw.startswith(b"HEAD ")
        self.last_read = now = self.loop.time()
        if self.timer is None:  # armed once, re-armed only when it fires (no cost per request)
            self.timer = self.loop.call_at(now + timeout, self.check_timeout, timeout)
        self.transport.write(raw)
        return waiter

    def framed(self) -> bool:
        """Whether the response says where its body ends (else it ends at close)."""
        for name, value in self.headers:
            lower = name.lower()
            if lower == b"content-length" or (
                lower == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                return True
        return False

    def complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(self.status, self.headers, b"".join(self.body)))

    def fail(self, exc: BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.abort()

    def check_timeout(self, timeout: float) -> None:
        """Fail the request in flight if no byte came for `timeout` seconds since it was
        sent or since the last byte; else wait again (idle: the next `send` re-arms)."""
        self.timer = None
        if self.waiter is None:
            return
        due = self.last_read + timeout
        if self.loop.time() < due:
            self.timer = self.loop.call_at(due, self.check_timeout, timeout)
        else:
            self.fail(TimeoutError(f"no response byte for {timeout:g} s"))

    def abort(self) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.abort()


class LoadClient:
    """Keep-alive HTTP/1.1 connections to one origin (``http://host:port`` or ``https://``).

    `send` writes a request made by `encode_request` and returns its `Response`, or raises
    (see the module docstring). Use ``async with`` or `aclose()`, which closes every
    connection and returns once all are closed.
    """

    def __init__(
        self,
        origin: str,
        *,
        max_connections: int = 100,
        connect_timeout: float = 60.0,
        read_timeout: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"origin must be an http(s) URL, got {origin!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self.ssl = ssl_context or default_tls()
        self.max_connections = positive_int("max_connections", max_connections)
        self.connect_timeout = positive("connect_timeout", connect_timeout)
        self.read_timeout = positive("read_timeout", read_timeout)
        self.loop = asyncio.get_running_loop()
        self.open = 0  # connections opened or being opened, not yet lost
        self.peak = 0  # the most `open` ever was
        self.connections_made = 0
        self._idle: list[_Connection] = []
        self._connections: set[_Connection] = set()
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False
        self._all_closed: asyncio.Event = asyncio.Event()
        self._all_closed.set()

    async def __aenter__(self) -> LoadClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def idle(self) -> int:
        """Open connections waiting for a request."""
        return len(self._idle)

    async def send(self, raw: bytes) -> Response:
        """Send one encoded request; return its response (any status)."""
        conn = await self._acquire()
        try:
            response = await conn.send(raw, self.read_timeout)
        except BaseException:  # cancelled mid-request: the connection is out of step
            conn.abort()
            raise
        self._release(conn)
        return response

    async def check(self, raw: bytes, method: str = "", url: str = "") -> Response:
        """`send`, then raise the typed error of an error status, as `bounded.HttpClient` does.

        `method` and `url` only label the error (pass a URL without credentials).
        """
        response = await self.send(raw)
        if response.status >= 400:
            raise self.error(response, method, url)
        return response

    @staticmethod
    def error(response: Response, method: str = "", url: str = "") -> HTTPError:
        """The `RetryableHTTPError` or `HTTPStatusError` of an error response."""
        headers = httpx2.Headers(response.headers)  # case-insensitive, as error_class reads them
        cls = error_class(response.status, headers)
        return cls(
            response.status,
            parse_retry_after(headers),
            method=method,
            url=url,
            headers=headers,
            body=response.body.decode("utf-8", "replace"),
        )

    async def _acquire(self) -> _Connection:
        while True:
            if self._closed:
                raise RuntimeError("LoadClient is closed")
            while self._idle:
                conn = self._idle.pop()
                if conn.usable:
                    return conn
            if self.open < self.max_connections:
                return await self._connect()
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # pass on the turn this waiter was given
                else:
                    self._waiters.remove(waiter)
                raise

    async def _connect(self) -> _Connection:
        self.open += 1
        self.peak = max(self.peak, self.open)
        self._all_closed.clear()
        conn = _Connection(self)
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self.loop.create_connection(
                    lambda: conn,
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                )
        except BaseException:
            if conn.transport is None:  # else its connection_lost frees the place
                self._gone()
            raise
        self.connections_made += 1
        self._connections.add(conn)
        if self._closed:
            conn.abort()
            raise RuntimeError("LoadClient is closed")
        return conn

    def _release(self, conn: _Connection) -> None:
        if conn.usable and not self._closed:
            self._idle.append(conn)
            self._wake()
        else:
            conn.abort()  # `lost` frees its place

    def lost(self, conn: _Connection) -> None:
        """A connection's transport is gone (called once per connection by its protocol)."""
        self._connections.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)
        self._gone()

    def _gone(self) -> None:
        self.open -= 1
        if self.open == 0:
            self._all_closed.set()
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def aclose(self) -> None:
        """Close every connection (requests in flight fail) and wait until all are closed."""
        self._closed = True
        self._idle.clear()
        for conn in list(self._connections):
            conn.fail(ConnectionAbortedError("LoadClient closed"))
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)  # they see the client closed
        await self._all_closed.wait()
