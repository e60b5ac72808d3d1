"""A small chat client for OpenAI and Anthropic that goes through limits and a policy."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import httpx2

from bounded.errors import RateLimited
from bounded.http import HttpClient, HTTPError, RetryableHTTPError
from bounded.llm.errors import as_quota_error, is_quota_error
from bounded.llm.limits import (
    ProviderLimits,
    Reservation,
    call_cost,
    current_reservation,
    token_count,
)
from bounded.llm.tokens import estimate_message_tokens
from bounded.retry import Backoff, Retry

__all__ = ["ChatClient", "ChatResult", "Usage", "default_retry"]

T = TypeVar("T")
Provider = Literal["openai", "anthropic"]
Message = Mapping[str, Any]

ANTHROPIC_VERSION = "2023-06-01"


class _Caller(Protocol):
    async def call(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T: ...


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a call used, as the provider reported them."""

    input_tokens: int
    output_tokens: int

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class ChatResult:
    """The reply text, usage, model and why generation stopped."""

    text: str
    usage: Usage
    model: str
    finish_reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


def default_retry() -> Retry:
    """What `ChatClient` retries by default: retryable HTTP statuses, transport errors, limits.

    Five attempts, full-jitter backoff from 0.5 s capped at 30 s, honouring ``retry-after``.
    """
    return Retry(
        on=(RetryableHTTPError, httpx2.TransportError, RateLimited),
        attempts=5,
        backoff=Backoff(initial=0.5, max=30.0, multiplier=2.0, jitter="full"),
    )


class ChatClient:
    """Send one chat request to OpenAI or Anthropic and return its text and usage.

    Each attempt reserves a request and tokens from `limits` (if given), sends through
    an `HttpClient`, resyncs `limits` from the response headers and settles the tokens
    with the real usage. Attempts are repeated by `policy` (anything with
    ``await policy.call(fn, ...)``, e.g. `bounded.Policy` or `bounded.Retry`; default
    `default_retry()`). A `Policy` with a provider part reserves instead, before its
    bulkhead, and the client settles that reservation. Quota and spend-limit errors raise
    `QuotaExceeded`, never retried. Non-streaming only.
    """

    __slots__ = ("_api_key", "_http", "_owns_http", "limits", "model", "policy", "provider")

    def __init__(
        self,
        provider: Provider,
        *,
        api_key: str | None,
        base_url: str,
        model: str,
        policy: _Caller | None = None,
        limits: ProviderLimits | None = None,
        http: HttpClient | None = None,
        timeout: float = 60.0,
    ) -> None:
        if provider not in ("openai", "anthropic"):
            raise ValueError(f"provider must be 'openai' or 'anthropic', got {provider!r}")
        self.provider: Provider = provider
        self.model = model
        self.policy: _Caller = policy if policy is not None else default_retry()
        self.limits = limits
        self._api_key = api_key
        self._owns_http = http is None
        self._http = (
            http if http is not None else HttpClient(provider, base_url=base_url, timeout=timeout)
        )

    @classmethod
    def openai(
        cls,
        *,
        api_key: str | None = None,
        base_url: str = "https://api.openai.com/v1",
        model: str = "gpt-4o-mini",
        policy: _Caller | None = None,
        limits: ProviderLimits | None = None,
        http: HttpClient | None = None,
        timeout: float = 60.0,
    ) -> ChatClient:
        """A client for OpenAI's chat completions API (`api_key` default: ``OPENAI_API_KEY``)."""
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        return cls(
            "openai",
            api_key=key,
            base_url=base_url,
            model=model,
            policy=policy,
            limits=limits,
            http=http,
            timeout=timeout,
        )

    @classmethod
    def anthropic(
        cls,
        *,
        api_key: str | None = None,
        base_url: str = "https://api.anthropic.com",
        model: str = "claude-sonnet-4-5",
        policy: _Caller | None = None,
        limits: ProviderLimits | None = None,
        http: HttpClient | None = None,
        timeout: float = 60.0,
    ) -> ChatClient:
        """A client for Anthropic's messages API (`api_key` default: ``ANTHROPIC_API_KEY``)."""
        key = api_key if api_key is not None else os.environ.get("ANTHROPIC_API_KEY")
        return cls(
            "anthropic",
            api_key=key,
            base_url=base_url,
            model=model,
            policy=policy,
            limits=limits,
            http=http,
            timeout=timeout,
        )

    def __repr__(self) -> str:
        return f"<ChatClient {self.provider} model={self.model!r}>"

    @property
    def http(self) -> HttpClient:
        """The HTTP client requests go through."""
        return self._http

    async def aclose(self) -> None:
        """Close the HTTP client if this chat client created it."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _headers(self) -> dict[str, str]:
        if self.provider == "openai":
            return {"authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        return headers

    def _payload(
        self,
        messages: list[dict[str, Any]],
        system: str | None,
        max_tokens: int,
        extra: Mapping[str, Any],
    ) -> dict[str, Any]:
        if self.provider == "openai":
            if system is not None:
                messages = [{"role": "system", "content": system}, *messages]
            return {"model": self.model, "messages": messages, "max_tokens": max_tokens, **extra}
        # Anthropic takes the system prompt apart from the messages.
        systems = [
            m["content"]
            for m in messages
            if m.get("role") == "system" and isinstance(m.get("content"), str)
        ]
        if system is not None:
            systems.insert(0, system)
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [m for m in messages if m.get("role") != "system"],
            "max_tokens": max_tokens,
            **extra,
        }
        if systems:
            payload["system"] = "\n".join(systems)
        return payload

    async def complete(
        self,
        prompt: str | Sequence[Message],
        *,
        max_tokens: int = 1024,
        system: str | None = None,
        **extra: Any,
    ) -> ChatResult:
        """Send one chat request (a prompt string or a list of messages) and return the reply.

        `extra` fields (temperature, ...) go into the request body as they are.
        """
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
        messages = (
            [{"role": "user", "content": prompt}]
            if isinstance(prompt, str)
            else [dict(m) for m in prompt]
        )
        payload = self._payload(messages, system, max_tokens, extra)
        estimate = estimate_message_tokens(payload["messages"], payload.get("system"))
        with call_cost(estimate, max_tokens):
            return await self.policy.call(self._attempt, payload, estimate, max_tokens)

    async def _attempt(self, payload: dict[str, Any], estimate: int, max_tokens: int) -> ChatResult:
        held = current_reservation()
        if held is None and self.limits is not None:
            async with self.limits.reserve(estimate, max_tokens) as own:
                return await self._send(payload, own)
        return await self._send(payload, held)

    async def _send(self, payload: dict[str, Any], held: Reservation | None) -> ChatResult:
        path = "/chat/completions" if self.provider == "openai" else "/v1/messages"
        limits = held.limits if held is not None else self.limits
        try:
            response = await self._http.post(path, json=payload, headers=self._headers())
        except HTTPError as exc:
            if limits is not None:
                limits.update_from_headers(exc.headers)
            if is_quota_error(exc):
                raise as_quota_error(exc) from None
            raise
        if limits is not None:
            limits.update_from_headers(response.headers)
        data = response.json()
        result = self._parse(data)
        reported = _reported_usage(data) if held is not None else None
        if held is not None and reported is not None:
            held.settle(*reported)
        return result

    def _parse(self, data: dict[str, Any]) -> ChatResult:
        used_in, used_out = _reported_usage(data) or (0, 0)
        if self.provider == "openai":
            choice = (data.get("choices") or [{}])[0]
            return ChatResult(
                text=(choice.get("message") or {}).get("content") or "",
                usage=Usage(used_in, used_out),
                model=str(data.get("model", self.model)),
                finish_reason=choice.get("finish_reason"),
                raw=data,
            )
        text = "".join(
            b.get("text", "") for b in data.get("content") or [] if b.get("type") == "text"
        )
        return ChatResult(
            text=text,
            usage=Usage(used_in, used_out),
            model=str(data.get("model", self.model)),
            finish_reason=data.get("stop_reason"),
            raw=data,
        )


def _reported_usage(data: Mapping[str, Any]) -> tuple[int, int] | None:
    """(input, output) tokens the reply reports (OpenAI or Anthropic names); None if not."""
    usage = data.get("usage")
    if not isinstance(usage, Mapping):
        return None
    used_in = token_count(usage.get("prompt_tokens", usage.get("input_tokens")))
    used_out = token_count(usage.get("completion_tokens", usage.get("output_tokens")))
    if used_in is None or used_out is None:
        return None
    return used_in, used_out
