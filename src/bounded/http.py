"""A named, pooled HTTP client (httpx2) whose error statuses become typed, retryable errors.

`HttpClient` owns one `httpx2.AsyncClient` with connection limits and a 60 s default
timeout. Responses with 408, 409, 429, 5xx or 529 raise `RetryableHTTPError` carrying
`retry_after` (from `retry-after-ms`, `retry-after` in seconds, or `retry-after` as an
HTTP date); other 4xx raise `HTTPStatusError`. A `x-should-retry: true|false` response
header overrides that classification, as the OpenAI and Anthropic SDKs do.

Errors carry the response status, headers and the start of the body, never the request
headers, so an API key sent in ``Authorization`` or ``x-api-key`` cannot leak through them.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import json
import logging
import math
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2

from bounded._validate import positive, positive_int
from bounded.errors import BoundedError

__all__ = [
    "RETRYABLE_STATUSES",
    "HTTPError",
    "HTTPStatusError",
    "HttpClient",
    "HttpClientStats",
    "RetryableHTTPError",
    "classify",
    "default_tls",
    "error_class",
    "is_retryable_status",
    "parse_retry_after",
    "redact_url",
]

logger = logging.getLogger(__name__)

#: Statuses that are worth retrying (besides any other 5xx): timeout, conflict, rate limit,
#: server errors and Anthropic's 529 "overloaded".
RETRYABLE_STATUSES: frozenset[int] = frozenset({408, 409, 429, 500, 502, 503, 504, 529})

_BODY_EXCERPT = 1000


@functools.cache
def default_tls() -> ssl.SSLContext:
    """The process's certificate-verifying TLS context, as httpx2 builds it by default
    (honouring ``SSL_CERT_FILE``/``SSL_CERT_DIR``), shared by every client `bounded` builds.

    Loading a CA bundle takes tens of milliseconds; done once per process instead of once
    per client, and (through `HttpClient.open`) off the event loop.
    """
    return httpx2.create_ssl_context()


def is_retryable_status(status_code: int) -> bool:
    """Whether a response status is retryable: 408, 409, 429, 529 or any 5xx."""
    return status_code in RETRYABLE_STATUSES or 500 <= status_code <= 599


def redact_url(url: httpx2.URL | str) -> str:
    """`url` without its query string, fragment and userinfo (they may carry a key)."""
    url = httpx2.URL(url)
    return str(url.copy_with(query=None, fragment=None, username=None, password=None))


class HTTPError(BoundedError):
    """A response with an error status. Base of `RetryableHTTPError` and `HTTPStatusError`.

    Attributes: `status_code`, `retry_after` (seconds or None), `headers` (the response's,
    never the request's), `body` (the first 1000 characters of the response body),
    `method` and `url` (without query string or credentials).
    """

    def __init__(
        self,
        status_code: int,
        retry_after: float | None = None,
        *,
        method: str = "",
        url: str = "",
        headers: Mapping[str, str] | None = None,
        body: str = "",
    ) -> None:
        self.status_code = status_code
        self.retry_after = retry_after
        self.method = method
        self.url = url
        self.headers: httpx2.Headers = httpx2.Headers(headers or {})
        self.body = body = body[:_BODY_EXCERPT]
        text = f"HTTP {status_code}"
        if method or url:
            text += f" from {method} {url}".rstrip()
        if retry_after is not None:
            text += f" (retry after {retry_after:.3f}s)"
        if body:
            text += f": {body[:200]}"
        super().__init__(text)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.status_code, self.retry_after, self.__dict__.copy()))

    def json(self) -> Any:
        """The response body parsed as JSON, or None when it is not JSON (or was cut short)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @classmethod
    def from_response(
        cls, response: httpx2.Response, retry_after: float | None = None
    ) -> HTTPError:
        """Build the error for `response`; its body must already have been read."""
        try:
            body = response.text
        except (httpx2.ResponseNotRead, UnicodeDecodeError):
            body = ""
        return cls(
            response.status_code,
            retry_after,
            method=response.request.method,
            url=redact_url(response.request.url),
            headers=response.headers,
            body=body,
        )


def _rebuild(
    cls: type[HTTPError], status: int, retry_after: float | None, state: dict[str, Any]
) -> HTTPError:
    err = cls(status, retry_after)
    err.__dict__.update(state)
    err.args = (str(err.args[0]),)
    return err


class RetryableHTTPError(HTTPError):
    """An error status worth retrying (408, 409, 429, 5xx, 529, or ``x-should-retry: true``)."""


class HTTPStatusError(HTTPError):
    """An error status not worth retrying (other 4xx, or ``x-should-retry: false``)."""


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait according to `retry-after-ms` or `retry-after` (seconds or HTTP date).

    An HTTP date is taken relative to the response's `date` header when present, else to
    the wall clock (`now`, default `time.time()`): HTTP dates are wall-clock by nature.
    Returns None when no header is present or it cannot be parsed; never negative.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
        except ValueError:
            logger.debug("ignoring malformed retry-after-ms header %r", raw_ms)
        else:
            if math.isfinite(ms) and ms >= 0:
                return ms / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
        logger.debug("ignoring malformed retry-after header %r", raw)
        return None
    try:
        when = email.utils.parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        logger.debug("ignoring malformed retry-after header %r", raw)
        return None
    reference = now
    date_header = headers.get("date")
    if date_header is not None:
        with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
            reference = email.utils.parsedate_to_datetime(date_header).timestamp()
    if reference is None:
        reference = time.time()
    return max(0.0, when - reference)


def _should_retry_override(headers: Mapping[str, str]) -> bool | None:
    value = headers.get("x-should-retry")
    if value is None:
        return None
    value = value.strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def error_class(status_code: int, headers: Mapping[str, str]) -> type[HTTPError]:
    """`RetryableHTTPError` or `HTTPStatusError` for an error status (>= 400) and its
    response headers (a case-insensitive mapping: ``x-should-retry`` overrides the status)."""
    override = _should_retry_override(headers)
    retryable = is_retryable_status(status_code) if override is None else override
    return RetryableHTTPError if retryable else HTTPStatusError


def classify(response: httpx2.Response) -> HTTPError | None:
    """The error a response maps to, or None for 1xx/2xx/3xx. The body must have been read."""
    if response.status_code < 400:
        return None
    cls = error_class(response.status_code, response.headers)
    return cls.from_response(response, parse_retry_after(response.headers))


@dataclass(frozen=True, slots=True)
class HttpClientStats:
    """A snapshot of an `HttpClient`: requests in flight against `max_connections`."""

    name: str
    in_use: int
    limit: int
    utilization: float
    requests_total: int
    errors_total: int


class HttpClient:
    """One pooled `httpx2.AsyncClient` under a name, with typed retryable errors.

    Use ``async with HttpClient(...) as client`` or call `aclose()` when done (the
    `ConcurrencyManager` does it for the clients it owns). Extra keyword arguments of
    `request` go to `httpx2.AsyncClient.request`.
    """

    __slots__ = (
        "_base_url",
        "_client",
        "_closed",
        "_errors_total",
        "_headers",
        "_in_use",
        "_max_keepalive",
        "_requests_total",
        "_timeout",
        "_transport",
        "max_connections",
        "name",
    )

    def __init__(
        self,
        name: str = "default",
        *,
        base_url: str = "",
        timeout: float = 60.0,
        max_connections: int = 100,
        max_keepalive: int = 20,
        headers: Mapping[str, str] | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self._base_url = base_url
        self._timeout = positive("timeout", timeout)
        self.max_connections = positive_int("max_connections", max_connections)
        self._max_keepalive = positive_int("max_keepalive", max_keepalive)
        self._headers = dict(headers or {})
        self._transport = transport
        self._client: httpx2.AsyncClient | None = None
        self._closed = False
        self._in_use = 0
        self._requests_total = 0
        self._errors_total = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._client is not None else "idle"
        return f"<HttpClient {self.name!r} {self._base_url!r} {state}>"

    @property
    def closed(self) -> bool:
        """True once `aclose()` was called."""
        return self._closed

    @property
    def client(self) -> httpx2.AsyncClient:
        """The underlying `httpx2.AsyncClient`, created on first use."""
        if self._closed:
            raise RuntimeError(f"HttpClient {self.name!r} is closed")
        if self._client is None:
            self._client = httpx2.AsyncClient(
                base_url=self._base_url,
                timeout=self._timeout,
                limits=httpx2.Limits(
                    max_connections=self.max_connections,
                    max_keepalive_connections=min(self._max_keepalive, self.max_connections),
                ),
                headers=self._headers,
                transport=self._transport,
                verify=default_tls(),
            )
        return self._client

    async def open(self) -> None:
        """Create the underlying client now rather than on the first request."""
        if not default_tls.cache_info().currsize:  # the process's first client loads the CAs
            await asyncio.to_thread(default_tls)
        _ = self.client

    async def aclose(self) -> None:
        """Close the connection pool. Idempotent."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> HttpClient:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def request(self, method: str, url: str | httpx2.URL, **kwargs: Any) -> httpx2.Response:
        """Send a request; return the response or raise `RetryableHTTPError`/`HTTPStatusError`.

        Transport errors (`httpx2.TransportError`, timeouts) propagate unchanged.
        """
        client = self.client
        self._in_use += 1
        self._requests_total += 1
        try:
            response = await client.request(method, url, **kwargs)
        except BaseException:
            self._errors_total += 1
            raise
        finally:
            self._in_use -= 1
        error = classify(response)
        if error is not None:
            self._errors_total += 1
            raise error
        return response

    async def get(self, url: str | httpx2.URL, **kwargs: Any) -> httpx2.Response:
        """`request("GET", url, ...)`."""
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str | httpx2.URL, **kwargs: Any) -> httpx2.Response:
        """`request("POST", url, ...)`."""
        return await self.request("POST", url, **kwargs)

    @contextlib.asynccontextmanager
    async def stream(self, method: str, url: str, **kwargs: Any) -> AsyncIterator[httpx2.Response]:
        """Send a request and yield the response with its body unread (for SSE, downloads).

        Error statuses raise like `request` (their body is read first, to be reported).
        """
        client = self.client
        self._in_use += 1
        self._requests_total += 1
        in_body = False  # exceptions from the caller's block are not request errors
        try:
            async with client.stream(method, url, **kwargs) as response:
                if response.status_code >= 400:
                    await response.aread()
                    error = classify(response)
                    if error is not None:
                        raise error
                in_body = True
                yield response
        except BaseException:
            if not in_body:
                self._errors_total += 1
            raise
        finally:
            self._in_use -= 1

    def stats(self) -> HttpClientStats:
        """Requests in flight (`in_use`) against `max_connections` (`limit`), and totals."""
        limit = self.max_connections
        return HttpClientStats(
            name=self.name,
            in_use=self._in_use,
            limit=limit,
            utilization=self._in_use / limit,
            requests_total=self._requests_total,
            errors_total=self._errors_total,
        )
