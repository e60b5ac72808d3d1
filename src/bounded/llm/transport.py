"""An httpx2 transport that puts the official SDKs' requests under provider limits and a policy.

``AsyncOpenAI(http_client=bounded.llm.http_client(provider=limits, policy=policy),
max_retries=0)`` (and the same for ``AsyncAnthropic``) sends every request through
`LimitedTransport`, which for each attempt

- reserves one request and ``prompt estimate + max_tokens`` tokens from the request body
  (chat completions, Responses, messages, embeddings; other requests pass through);
- resyncs the limits from the rate-limit headers of every response, errors included;
- settles the reservation with the usage the response reports: from the body, or, for a
  streaming response, from the event that carries it (read as it passes, never buffered);
- gives the tokens back when the provider refused (any error status) or could not be
  reached.

With a `policy`, error statuses become `RetryableHTTPError`/`HTTPStatusError` inside it
(so its retry and breaker see them); when the policy gives up, the last error response is
handed to the SDK, which raises its own typed error as usual. Turn the SDK's retries off
(``max_retries=0``) so that the policy is the one retry loop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import httpx2

from bounded.http import HTTPError, classify, default_tls
from bounded.llm.errors import QuotaExceeded, as_quota_error, is_quota_error
from bounded.llm.limits import (
    ProviderLimits,
    Reservation,
    call_cost,
    current_reservation,
    token_count,
)
from bounded.llm.tokens import estimate_tokens, message_text

__all__ = ["LimitedTransport", "http_client", "request_cost"]

logger = logging.getLogger(__name__)

# The official SDKs number their own attempts in this header (0: the first).
_SDK_RETRY = "x-stainless-retry-count"

#: Output tokens reserved when a request does not say (``max_tokens`` is optional there).
DEFAULT_MAX_TOKENS = 4096


class _Caller(Protocol):
    async def call(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any: ...


def _embedding_text(raw: Any) -> str:
    items = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    if items and all(isinstance(i, int) for i in items):
        return " ".join(str(i) for i in items)  # one input as token ids
    return "\n".join(
        i if isinstance(i, str) else " ".join(str(t) for t in i)
        for i in items
        if isinstance(i, str | list)
    )


def _max_tokens(body: Mapping[str, Any], keys: tuple[str, ...], default: int) -> int:
    for key in keys:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default


def request_cost(
    method: str, path: str, body: Any, *, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> tuple[int, int] | None:
    """(input token estimate, max output tokens) of an LLM API request; None for others.

    Knows ``/chat/completions``, ``/responses``, ``/messages`` and ``/embeddings``.
    """
    if method != "POST" or not isinstance(body, Mapping):
        return None
    if path.endswith("/chat/completions"):
        messages = body.get("messages")
        text = message_text(messages if isinstance(messages, list) else [])
        keys: tuple[str, ...] = ("max_completion_tokens", "max_tokens")
    elif path.endswith("/responses"):
        raw = body.get("input")
        items = [{"content": raw}] if isinstance(raw, str) else raw
        text = message_text(items if isinstance(items, list) else [], body.get("instructions"))
        keys = ("max_output_tokens",)
    elif path.endswith("/messages"):
        messages = body.get("messages")
        text = message_text(messages if isinstance(messages, list) else [], body.get("system"))
        keys = ("max_tokens",)
    elif path.endswith("/embeddings"):
        return estimate_tokens(_embedding_text(body.get("input"))), 0
    else:
        return None
    return estimate_tokens(text), _max_tokens(body, keys, default_max_tokens)


def _usage(data: Any) -> tuple[int | None, int | None, bool]:
    """(input tokens, output tokens, final) reported by a response body or stream event."""
    if not isinstance(data, Mapping):
        return None, None, False
    kind = data.get("type")
    usage: Any = data.get("usage")
    final = usage is not None and kind != "message_start"
    if isinstance(kind, str) and kind.startswith("response."):  # Responses API events
        response = data.get("response")
        usage = response.get("usage") if isinstance(response, Mapping) else None
        final = kind in ("response.completed", "response.incomplete", "response.failed")
    elif kind == "message_start":  # Anthropic: input now, output in message_delta
        message = data.get("message")
        usage = message.get("usage") if isinstance(message, Mapping) else None
    if not isinstance(usage, Mapping):
        return None, None, False
    used_in = token_count(usage.get("input_tokens", usage.get("prompt_tokens")))
    used_out = token_count(usage.get("output_tokens", usage.get("completion_tokens")))
    if data.get("object") == "list":  # embeddings: no output
        used_out = 0
    return used_in, used_out, final


class _SettlingStream(httpx2.AsyncByteStream):
    """Passes a server-sent event stream through, settling the reservation from its usage.

    Only lines that mention usage are parsed. The reservation is settled once the final
    usage has passed; a stream that ends without it keeps the whole reservation.
    """

    def __init__(self, stream: httpx2.AsyncByteStream, reservation: Reservation) -> None:
        self._stream = stream
        self._reservation = reservation
        self._tail = b""
        self._input: int | None = None
        self._output: int | None = None
        self._final = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            if not self._final:
                self._scan(chunk)
            yield chunk

    def _scan(self, chunk: bytes) -> None:
        data = self._tail + chunk if self._tail else chunk
        if b"_tokens" not in data:  # most events: keep only the unfinished line
            self._tail = data[data.rfind(b"\n") + 1 :]
            return
        lines = data.split(b"\n")
        self._tail = lines.pop()
        for line in lines:
            if not line.startswith(b"data:") or b"_tokens" not in line:
                continue
            try:
                data = json.loads(line[5:])
            except ValueError:
                continue
            used_in, used_out, final = _usage(data)
            self._input = used_in if used_in is not None else self._input
            self._output = used_out if used_out is not None else self._output
            if final and self._input is not None and self._output is not None:
                self._final = True
                self._reservation.settle(self._input, self._output)
                return

    async def aclose(self) -> None:
        await self._stream.aclose()


class _Exchange:
    """One SDK request across the policy's attempts; keeps the last error response."""

    __slots__ = ("refused", "request")

    def __init__(self, request: httpx2.Request) -> None:
        self.request = request
        self.refused: httpx2.Response | None = None


async def _buffered(response: httpx2.Response, request: httpx2.Request) -> httpx2.Response:
    """The response with its body read, as a fresh response the client can read again."""
    if response.is_stream_consumed:  # an inner transport that reads (a mock, a cache)
        return response
    raw = b"".join([chunk async for chunk in response.aiter_raw()])
    return httpx2.Response(
        response.status_code,
        headers=response.headers,
        content=raw,
        extensions=response.extensions,
        request=request,
    )


class LimitedTransport(httpx2.AsyncBaseTransport):
    """Sends requests through `policy` and `provider` limits to `inner` (the network).

    `provider`: the `ProviderLimits` to reserve from; default the policy's provider part.
    A `Policy` with a provider part reserves before its bulkhead; otherwise this transport
    reserves inside the attempt. `default_max_tokens` is reserved for output when a request
    does not give a maximum.
    """

    def __init__(
        self,
        *,
        provider: ProviderLimits | None = None,
        policy: _Caller | None = None,
        inner: httpx2.AsyncBaseTransport | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        if provider is None and policy is not None:
            provider = getattr(policy, "provider", None)
        if provider is not None and not isinstance(provider, ProviderLimits):
            raise ValueError(f"provider must be a bounded.llm.ProviderLimits, got {provider!r}")
        if policy is not None and not callable(getattr(policy, "call", None)):
            raise ValueError(f"policy must have an async call(fn, ...) method, got {policy!r}")
        self.provider = provider
        self.policy = policy
        self.default_max_tokens = default_max_tokens
        self._warned_sdk_retries = False
        self._inner = inner if inner is not None else httpx2.AsyncHTTPTransport()

    async def aclose(self) -> None:
        """Close the inner transport (its connection pool)."""
        await self._inner.aclose()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send `request` under the limits; return the response (error statuses included)."""
        try:
            body = json.loads(request.content) if request.content else None
        except (ValueError, httpx2.RequestNotRead):
            body = None
        cost = request_cost(
            request.method, request.url.path, body, default_max_tokens=self.default_max_tokens
        )
        if cost is None or (self.provider is None and self.policy is None):
            response = await self._inner.handle_async_request(request)
            if self.provider is not None:
                self.provider.update_from_headers(response.headers)
            return response
        if not self._warned_sdk_retries and request.headers.get(_SDK_RETRY, "0") != "0":
            self._warned_sdk_retries = True  # the SDK retries what the policy gave up on
            logger.warning(
                "the SDK retries requests itself; create it with max_retries=0 so that the "
                "bounded policy is the one retry loop"
            )
        exchange = _Exchange(request)
        streaming = isinstance(body, Mapping) and body.get("stream") is True
        try:
            with call_cost(*cost):
                if self.policy is None:
                    return await self._attempt(exchange, cost, streaming)
                result: httpx2.Response = await self.policy.call(
                    self._attempt, exchange, cost, streaming
                )
                return result
        except HTTPError:
            if exchange.refused is not None:
                return exchange.refused  # the SDK raises its own error for it
            raise
        except TimeoutError as exc:  # the policy's timeout or deadline
            raise httpx2.TimeoutException(str(exc) or "timed out", request=request) from exc

    async def _attempt(
        self, exchange: _Exchange, cost: tuple[int, int], streaming: bool
    ) -> httpx2.Response:
        held = current_reservation()
        own = held is None and self.provider is not None
        if own:
            assert self.provider is not None
            held = await self.provider.acquire(*cost)
        try:
            return await self._send(exchange, held, streaming)
        except (httpx2.ConnectError, httpx2.ConnectTimeout):
            if held is not None:
                held.cancel()  # the request never reached the provider
            raise
        except HTTPError as exc:
            if own and held is not None:
                held.cancel()  # the provider refused: nothing was generated
                if exc.status_code == 429 and not isinstance(exc, QuotaExceeded):
                    held.limits.rate_limited(exc)
            raise

    async def _send(
        self, exchange: _Exchange, held: Reservation | None, streaming: bool
    ) -> httpx2.Response:
        request = exchange.request
        response = await self._inner.handle_async_request(request)
        limits = held.limits if held is not None else self.provider
        if limits is not None:
            limits.update_from_headers(response.headers)
        if response.status_code >= 400:
            refused = exchange.refused = await _buffered(response, request)
            error = classify(refused)
            assert error is not None
            if is_quota_error(error):
                raise as_quota_error(error)
            raise error
        if streaming and held is not None:
            assert isinstance(response.stream, httpx2.AsyncByteStream)
            return httpx2.Response(
                response.status_code,
                headers=response.headers,
                stream=_SettlingStream(response.stream, held),
                extensions=response.extensions,
                request=request,
            )
        if held is None:
            return response
        buffered = await _buffered(response, request)
        try:
            data = buffered.json()
        except ValueError:
            data = None
        used_in, used_out, _ = _usage(data)
        if used_in is not None and used_out is not None:
            held.settle(used_in, used_out)
        return buffered


def http_client(
    *,
    provider: ProviderLimits | None = None,
    policy: _Caller | None = None,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
    max_connections: int = 1000,
    max_keepalive: int = 100,
    **client_kwargs: Any,
) -> httpx2.AsyncClient:
    """An `httpx2.AsyncClient` whose requests go through a `LimitedTransport`.

    For ``AsyncOpenAI(http_client=...)`` and ``AsyncAnthropic(http_client=...)`` (with
    ``max_retries=0``). `client_kwargs` go to `httpx2.AsyncClient` (the SDKs set their
    own base URL, headers and per-request timeouts); ``verify`` goes to the transport that
    connects (default: the process's shared `bounded.http.default_tls`). Close it with the
    SDK client.
    """
    verify = client_kwargs.pop("verify", True)  # for the transport that connects
    inner = httpx2.AsyncHTTPTransport(
        verify=default_tls() if verify is True else verify,
        limits=httpx2.Limits(
            max_connections=max_connections,
            max_keepalive_connections=min(max_keepalive, max_connections),
        ),
    )
    transport = LimitedTransport(
        provider=provider, policy=policy, inner=inner, default_max_tokens=default_max_tokens
    )
    client_kwargs.setdefault("follow_redirects", True)  # as the SDKs' default clients
    return httpx2.AsyncClient(transport=transport, **client_kwargs)
