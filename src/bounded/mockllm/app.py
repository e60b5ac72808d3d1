"""The mock provider's ASGI app: OpenAI and Anthropic chat endpoints plus an admin API.

Endpoints:
- ``POST /v1/chat/completions``, ``/v1/responses`` (OpenAI) and ``POST /v1/messages``
  (Anthropic), with ``"stream": true`` answered as server-sent events in each API's format;
- ``POST /v1/embeddings``: deterministic unit vectors derived from the input text;
- ``GET /v1/models`` (in Anthropic's shape when ``anthropic-version`` is sent);
- ``GET /admin/config`` and ``PUT``/``PATCH /admin/config`` (a partial JSON object) to read
  and change the `MockConfig` live; ``GET /admin/stats`` and ``DELETE /admin/stats``.
  Changes need the admin token;
- ``GET /health``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import itertools
import json
import logging
import math
import random
import secrets
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from bounded.llm.tokens import estimate_message_tokens, estimate_tokens, message_text
from bounded.mockllm.config import MockConfig
from bounded.mockllm.models import MODELS, CapacityGate, TokenBucket, make_reply

__all__ = ["MockState", "create_app", "embedding", "format_duration"]

logger = logging.getLogger(__name__)

Provider = Literal["openai", "anthropic"]
Api = Literal["chat", "responses", "embeddings", "messages"]
_PROVIDERS: dict[Api, Provider] = {
    "chat": "openai",
    "responses": "openai",
    "embeddings": "openai",
    "messages": "anthropic",
}

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_LIMIT_KINDS = ("requests", "tokens", "input_tokens", "output_tokens")


def format_duration(seconds: float) -> str:
    """A duration the way OpenAI's reset headers write it (Go style): ``6m0s``, ``12ms``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = f"{int(hours)}h" if hours else ""
    if hours or minutes:
        out += f"{int(minutes)}m"
    return out + f"{secs:.3f}".rstrip("0").rstrip(".") + "s"


def _rfc3339(after: float) -> str:
    when = dt.datetime.fromtimestamp(time.time() + after, tz=dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Reject(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


_COUNTERS = (
    "requests_total",
    "input_tokens_total",
    "output_tokens_total",
    "rate_limited_total",
    "overloaded_total",
    "quota_errors_total",
    "errors_injected_total",
    "resets_injected_total",
    "slow_injected_total",
)


class MockState:
    """Live state of one mock server: config, rate-limit buckets, capacity gate, counters."""

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.buckets: dict[str, TokenBucket] = {}
        self.gate = CapacityGate(config.effective_max_concurrency, config.max_queue)
        self.counters: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self._ids = 0
        self._build_buckets()

    def _limits(self, config: MockConfig) -> dict[str, int | None]:
        return {
            "requests": config.rpm,
            "tokens": config.tpm,
            "input_tokens": config.input_tpm,
            "output_tokens": config.output_tpm,
        }

    def _build_buckets(self) -> None:
        now = _now()
        self.buckets = {
            kind: TokenBucket(limit, self.config.window, now)
            for kind, limit in self._limits(self.config).items()
            if limit is not None
        }

    def update(self, changes: Mapping[str, Any]) -> MockConfig:
        """Apply a partial config change; rate-limit buckets restart full if limits changed."""
        old = self.config
        new = MockConfig.model_validate({**old.model_dump(), **changes})
        self.config = new
        if new.seed != old.seed:
            self.rng = random.Random(new.seed)
        if self._limits(new) != self._limits(old) or new.window != old.window:
            self._build_buckets()
        self.gate.limit = new.effective_max_concurrency
        self.gate.max_queue = new.max_queue
        self.gate.wake()
        return new

    def next_id(self) -> int:
        """A fresh response id number."""
        self._ids += 1
        return self._ids

    def stats(self) -> dict[str, Any]:
        """Counters since start (or the last reset) and the current load."""
        now = _now()
        return {
            # Every counter, 0 until it first counts, so readers need no defaults.
            **{k: self.counters[k] for k in sorted({*_COUNTERS, *self.counters})},
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "in_service": self.gate.in_service,
            "queued": self.gate.queued,
            "peak_in_service": self.gate.peak_in_service,
            "remaining": {k: b.remaining(now) for k, b in self.buckets.items()},
        }

    def reset_stats(self) -> None:
        """Zero the counters."""
        self.counters.clear()
        self.statuses.clear()
        self.gate.peak_in_service = self.gate.in_service

    # rate limits -------------------------------------------------------------

    def costs(self, input_tokens: int, max_tokens: int) -> dict[str, int]:
        """Units each limit charges at admission (output is reserved as max_tokens)."""
        return {
            "requests": 1,
            "tokens": input_tokens + max_tokens,
            "input_tokens": input_tokens,
            "output_tokens": max_tokens,
        }

    def check_limits(self, costs: Mapping[str, int]) -> tuple[str, float] | None:
        """Charge the limits, or return (kind, seconds until admissible) without charging."""
        now = _now()
        for kind in _LIMIT_KINDS:
            bucket = self.buckets.get(kind)
            if bucket is None:
                continue
            if costs[kind] > bucket.limit:
                return kind, float("inf")
            wait = bucket.wait(costs[kind], now)
            if wait > 0:
                return kind, wait
        for kind, bucket in self.buckets.items():
            bucket.take(costs[kind], now)
        return None

    def refund_output(self, unused: int) -> None:
        """Give back output tokens reserved but not generated."""
        now = _now()
        for kind in ("tokens", "output_tokens"):
            bucket = self.buckets.get(kind)
            if bucket is not None and unused > 0:
                bucket.give_back(unused, now)

    def limit_headers(self, provider: Provider) -> dict[str, str]:
        """The provider's rate-limit headers for the current bucket levels."""
        now = _now()
        headers: dict[str, str] = {}
        if provider == "openai":
            for kind in ("requests", "tokens"):
                bucket = self.buckets.get(kind)
                if bucket is None:
                    continue
                headers[f"x-ratelimit-limit-{kind}"] = str(bucket.limit)
                headers[f"x-ratelimit-remaining-{kind}"] = str(bucket.remaining(now))
                headers[f"x-ratelimit-reset-{kind}"] = format_duration(bucket.reset(now))
            return headers
        tokens = self.buckets.get("tokens")
        if tokens is None:
            # "tokens" reports the most restrictive token limit in effect.
            candidates = [
                self.buckets[k] for k in ("input_tokens", "output_tokens") if k in self.buckets
            ]
            tokens = min(candidates, key=lambda b: b.remaining(now), default=None)
        for name, bucket in (
            ("requests", self.buckets.get("requests")),
            ("tokens", tokens),
            ("input-tokens", self.buckets.get("input_tokens")),
            ("output-tokens", self.buckets.get("output_tokens")),
        ):
            if bucket is None:
                continue
            headers[f"anthropic-ratelimit-{name}-limit"] = str(bucket.limit)
            headers[f"anthropic-ratelimit-{name}-remaining"] = str(bucket.remaining(now))
            headers[f"anthropic-ratelimit-{name}-reset"] = _rfc3339(bucket.reset(now))
        return headers


def _now() -> float:
    # The server, not a library primitive: a process-wide monotonic clock, usable before
    # any event loop runs (the app is built before uvicorn starts its loop).
    return time.monotonic()


def _error(
    provider: Provider,
    status: int,
    message: str,
    *,
    kind: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    if provider == "openai":
        body: dict[str, Any] = {
            "error": {
                "message": message,
                "type": kind or ("server_error" if status >= 500 else "invalid_request_error"),
                "param": None,
                "code": code,
            }
        }
    else:
        body = {
            "type": "error",
            "error": {
                "type": kind or _ANTHROPIC_ERROR_TYPES.get(status, "api_error"),
                "message": message,
            },
        }
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _rate_limited(
    state: MockState, provider: Provider, kind: str, wait: float, model: str
) -> JSONResponse:
    bucket = state.buckets[kind]
    headers = state.limit_headers(provider)
    if wait == float("inf"):
        message = (
            f"Request too large for {model}: it needs more {kind} than the limit {bucket.limit}."
        )
        return _error(
            provider,
            429 if provider == "openai" else 413,
            message,
            kind=kind if provider == "openai" else None,
            code="rate_limit_exceeded",
            headers=headers,
        )
    headers["retry-after"] = str(max(1, int(wait + 0.999)))
    label = kind.replace("_", " ")
    if provider == "openai":
        headers["retry-after-ms"] = str(max(1, round(wait * 1000)))
        message = (
            f"Rate limit reached for {model} on {label} per min: Limit {bucket.limit}. "
            f"Please try again in {format_duration(wait)}."
        )
        return _error(
            provider, 429, message, kind=kind, code="rate_limit_exceeded", headers=headers
        )
    message = (
        "This request would exceed the rate limit for your organization of "
        f"{bucket.limit} {label} per minute."
    )
    return _error(provider, 429, message, kind="rate_limit_error", headers=headers)


class _MockApp(Starlette):
    """Keeps the server's own `send` in the scope so a fault can abort the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["mockllm.raw_send"] = send
        await super().__call__(scope, receive, send)


async def _reset_connection(request: Request) -> None:
    """Drop the TCP connection without a response (the client sees a protocol/read error)."""
    raw = request.scope.get("mockllm.raw_send")
    transport = getattr(getattr(raw, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionResetError("mock connection reset")  # server-agnostic fallback
    transport.abort()
    await asyncio.sleep(0)  # let the server see the connection is gone


def _check_key(config: MockConfig, request: Request) -> bool:
    if config.api_key is None:
        return True
    auth = request.headers.get("authorization", "")
    offered = (
        auth[7:] if auth.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
    )
    return offered == config.api_key


async def _serve(request: Request, api: Api) -> Response:
    state: MockState = request.app.state.mock
    state.counters["requests_total"] += 1
    response = await _serve_inner(request, state, api)
    if response.status_code != 499:
        state.statuses[response.status_code] += 1
    return response


def _max_tokens(body: dict[str, Any], api: Api) -> int:
    if api == "embeddings":
        return 0
    if api == "responses":
        key = "max_output_tokens"
    elif api == "messages" or "max_tokens" in body:
        key = "max_tokens"
    else:
        key = "max_completion_tokens"
    raw = body.get(key, None if api == "messages" else 4096)
    if raw is None and api == "responses":
        raw = 4096  # the SDK sends null for "not given"
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 1:
        raise ValueError(f"{key} must be a positive integer")
    return raw


def _embedding_inputs(body: dict[str, Any]) -> list[str]:
    raw = body.get("input")
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        raise ValueError("input must be a string or a non-empty list")
    if all(isinstance(i, int) for i in items):
        items = [items]  # one input given as token ids
    texts: list[str] = []
    for item in items:
        if isinstance(item, str) and item:
            texts.append(item)
        elif isinstance(item, list) and item and all(isinstance(i, int) for i in item):
            texts.append(" ".join(str(i) for i in item))
        else:
            raise ValueError("input must be non-empty strings or lists of token ids")
    return texts


def _parse(body: Any, api: Api) -> tuple[list[Any], Any, str, int]:
    """(messages, system prompt, model, max_tokens) of a request body; ValueError if invalid."""
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    model = str(body.get("model") or "mock-model")
    max_tokens = _max_tokens(body, api)
    if api == "embeddings":
        texts = _embedding_inputs(body)
        return [{"role": "user", "content": t} for t in texts], None, model, max_tokens
    if api == "responses":
        raw = body.get("input")
        messages = [{"role": "user", "content": raw}] if isinstance(raw, str) else raw
        system = body.get("instructions")
        if not isinstance(messages, list) or not messages:
            raise ValueError("input must be a string or a non-empty list of items")
        return messages, system, model, max_tokens
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list")
    return messages, body.get("system") if api == "messages" else None, model, max_tokens


async def _serve_inner(request: Request, state: MockState, api: Api) -> Response:
    config = state.config
    provider = _PROVIDERS[api]
    try:
        body = await request.json()
        messages, system, model, max_tokens = _parse(body, api)
    except ValueError as exc:
        return _error(provider, 400, str(exc))
    if not _check_key(config, request):
        return _error(provider, 401, "Incorrect API key provided.", code="invalid_api_key")
    input_tokens = estimate_message_tokens(messages, system)

    if config.quota_exceeded:
        state.counters["quota_errors_total"] += 1
        if provider == "openai":
            return _error(
                provider,
                429,
                "You exceeded your current quota, please check your plan and billing details.",
                kind="insufficient_quota",
                code="insufficient_quota",
            )
        return _error(provider, 400, "You have reached your specified API usage limits.")

    refused = state.check_limits(state.costs(input_tokens, max_tokens))
    if refused is not None:
        state.counters["rate_limited_total"] += 1
        return _rate_limited(state, provider, *refused, model)

    if not await state.gate.acquire():
        state.counters["overloaded_total"] += 1
        state.refund_output(max_tokens)
        return _error(
            provider,
            529 if provider == "anthropic" else 503,
            "Overloaded",
            kind="overloaded_error" if provider == "anthropic" else "server_error",
        )
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            state.gate.release()

    try:
        rng = state.rng
        roll = rng.random()
        if roll < config.reset_rate:
            state.counters["resets_injected_total"] += 1
            state.refund_output(max_tokens)
            await _reset_connection(request)
            return Response(status_code=499)  # never sent: the connection is gone
        if roll < config.reset_rate + config.error_rate:
            state.counters["errors_injected_total"] += 1
            state.refund_output(max_tokens)
            status = config.error_statuses[int(rng.random() * len(config.error_statuses))]
            await asyncio.sleep(config.latency_base)
            return _error(
                provider,
                status,
                f"Injected fault: HTTP {status}",
                headers=state.limit_headers(provider),
            )

        factor = 1.0
        if config.capacity is not None and state.gate.in_service > config.capacity:
            factor = state.gate.in_service / config.capacity
        extra = 0.0
        if config.slow_rate and rng.random() < config.slow_rate:
            state.counters["slow_injected_total"] += 1
            extra = config.slow_seconds
        first = (config.latency_base + config.latency_jitter * rng.random()) * factor + extra
        text, output_tokens, truncated = "", 0, False
        if api != "embeddings":
            prompt = message_text(messages, system)
            text, output_tokens, truncated = make_reply(
                config.seed, model, prompt, max_tokens, config.output_tokens
            )
            state.refund_output(max_tokens - output_tokens)
        state.counters["input_tokens_total"] += input_tokens
        state.counters["output_tokens_total"] += output_tokens
        headers = state.limit_headers(provider)
        request_id = f"req_mock{state.next_id()}"
        headers["x-request-id" if provider == "openai" else "request-id"] = request_id
        if api == "embeddings":
            await asyncio.sleep(first)
            return JSONResponse(
                _embeddings_payload(body, messages, model, config.embedding_dimensions),
                headers=headers,
            )
        per_token = config.latency_per_token * factor
        reply = _Reply(request_id, model, text, input_tokens, output_tokens, truncated)
        if body.get("stream"):
            events: AsyncIterator[str]
            if api == "chat":
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                events = _openai_stream(reply, include_usage, first, per_token)
            elif api == "responses":
                events = _responses_stream(reply, first, per_token)
            else:
                events = _anthropic_stream(reply, first, per_token)
            released = True  # the stream releases the slot when it ends
            return _GatedStream(events, state.gate, headers)
        await asyncio.sleep(first + per_token * output_tokens)
        payload = {
            "chat": _chat_payload,
            "responses": _response_payload,
            "messages": _message_payload,
        }[api](reply)
        return JSONResponse(payload, headers=headers)
    finally:
        release()


@dataclass(frozen=True, slots=True)
class _Reply:
    request_id: str
    model: str
    text: str
    input_tokens: int
    output_tokens: int
    truncated: bool


def _chat_payload(reply: _Reply) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{reply.request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text},
                "finish_reason": "length" if reply.truncated else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
        },
    }


def _message_payload(reply: _Reply) -> dict[str, Any]:
    return {
        "id": f"msg_{reply.request_id}",
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": "max_tokens" if reply.truncated else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
    }


def _response_item(reply: _Reply, text: str | None) -> dict[str, Any]:
    """The Responses API's output message; `text` None: still empty (in progress)."""
    return {
        "type": "message",
        "id": f"msg_{reply.request_id}",
        "status": "in_progress" if text is None else "completed",
        "role": "assistant",
        "content": []
        if text is None
        else [{"type": "output_text", "text": text, "annotations": []}],
    }


def _response_payload(reply: _Reply, *, done: bool = True) -> dict[str, Any]:
    status = "incomplete" if reply.truncated else "completed"
    return {
        "id": f"resp_{reply.request_id}",
        "object": "response",
        "created_at": int(time.time()),
        "model": reply.model,
        "status": status if done else "in_progress",
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if done and reply.truncated else None,
        "output": [_response_item(reply, reply.text)] if done else [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": reply.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": reply.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": reply.input_tokens + reply.output_tokens,
        }
        if done
        else None,
    }


def embedding(text: str, dimensions: int, *, seed: int = 0) -> list[float]:
    """A deterministic unit vector for `text`: the same text always gives the same vector."""
    digest = hashlib.sha256(f"{seed}\x00{text}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def _embeddings_payload(
    body: dict[str, Any], messages: list[Any], model: str, default_dimensions: int
) -> dict[str, Any]:
    raw_dims = body.get("dimensions")
    dims = raw_dims if isinstance(raw_dims, int) and raw_dims >= 1 else default_dimensions
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    tokens = 0
    for index, message in enumerate(messages):
        vector = embedding(message["content"], dims)
        tokens += estimate_tokens(message["content"])
        value: Any = vector
        if as_base64:
            value = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


class _GatedStream(StreamingResponse):
    """A streaming response that frees its capacity slot however the stream ends."""

    def __init__(
        self, content: AsyncIterator[str], gate: CapacityGate, headers: dict[str, str]
    ) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self._gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._gate.release()


def _sse(data: Any, event: str | None = None) -> str:
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _pieces(text: str, per_token: float) -> AsyncIterator[str]:
    """The reply word by word (one token each), `per_token` seconds apart."""
    for i, word in enumerate(text.split(" ") if text else []):
        await asyncio.sleep(per_token)
        yield word if i == 0 else " " + word


async def _openai_stream(
    reply: _Reply, include_usage: bool, first: float, per_token: float
) -> AsyncIterator[str]:
    base = {
        "id": f"chatcmpl-{reply.request_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": reply.model,
    }
    await asyncio.sleep(first)
    yield _sse(
        {
            **base,
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            ],
        }
    )
    async for piece in _pieces(reply.text, per_token):
        yield _sse(
            {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        )
    finish = "length" if reply.truncated else "stop"
    yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if include_usage:
        yield _sse(
            {
                **base,
                "choices": [],
                "usage": {
                    "prompt_tokens": reply.input_tokens,
                    "completion_tokens": reply.output_tokens,
                    "total_tokens": reply.input_tokens + reply.output_tokens,
                },
            }
        )
    yield "data: [DONE]\n\n"


async def _responses_stream(reply: _Reply, first: float, per_token: float) -> AsyncIterator[str]:
    """The Responses API's semantic events; usage arrives in the last (``response.completed``)."""
    sequence = itertools.count()

    def event(kind: str, **fields: Any) -> str:
        return _sse({"type": kind, "sequence_number": next(sequence), **fields}, kind)

    item_id = f"msg_{reply.request_id}"
    part = {"output_index": 0, "item_id": item_id, "content_index": 0}
    await asyncio.sleep(first)
    started = _response_payload(reply, done=False)
    yield event("response.created", response=started)
    yield event("response.in_progress", response=started)
    yield event("response.output_item.added", output_index=0, item=_response_item(reply, None))
    empty = {"type": "output_text", "text": "", "annotations": []}
    yield event("response.content_part.added", **part, part=empty)
    async for piece in _pieces(reply.text, per_token):
        yield event("response.output_text.delta", **part, delta=piece, logprobs=[])
    yield event("response.output_text.done", **part, text=reply.text, logprobs=[])
    done = {"type": "output_text", "text": reply.text, "annotations": []}
    yield event("response.content_part.done", **part, part=done)
    yield event("response.output_item.done", output_index=0, item=_response_item(reply, reply.text))
    final = "response.incomplete" if reply.truncated else "response.completed"
    yield event(final, response=_response_payload(reply))


async def _anthropic_stream(reply: _Reply, first: float, per_token: float) -> AsyncIterator[str]:
    await asyncio.sleep(first)
    message: dict[str, Any] = {
        "id": f"msg_{reply.request_id}",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": reply.model,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
    }
    yield _sse({"type": "message_start", "message": message}, "message_start")
    yield _sse(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        "content_block_start",
    )
    async for piece in _pieces(reply.text, per_token):
        yield _sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            },
            "content_block_delta",
        )
    yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
    yield _sse(
        {
            "type": "message_delta",
            "delta": {
                "stop_reason": "max_tokens" if reply.truncated else "end_turn",
                "stop_sequence": None,
            },
            "usage": {"output_tokens": reply.output_tokens},
        },
        "message_delta",
    )
    yield _sse({"type": "message_stop"}, "message_stop")


async def _chat_completions(request: Request) -> Response:
    return await _serve(request, "chat")


async def _responses(request: Request) -> Response:
    return await _serve(request, "responses")


async def _messages(request: Request) -> Response:
    return await _serve(request, "messages")


async def _embeddings(request: Request) -> Response:
    return await _serve(request, "embeddings")


async def _models(request: Request) -> Response:
    """The mock's model list, in Anthropic's shape when the client sends its version header."""
    if "anthropic-version" in request.headers:
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2026-01-01T00:00:00Z"}
            for m in MODELS
        ]
        return JSONResponse(
            {"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]}
        )
    models: list[dict[str, Any]] = [
        {"id": m, "object": "model", "created": 0, "owned_by": "bounded-mock"} for m in MODELS
    ]
    return JSONResponse({"object": "list", "data": models})


def _admin_allowed(request: Request) -> bool:
    """Whether a request changing the mock carries its admin token (Bearer or x-admin-token)."""
    token: str = request.app.state.admin_token
    auth = request.headers.get("authorization", "")
    offered = auth[7:] if auth.lower().startswith("bearer ") else ""
    offered = request.headers.get("x-admin-token", offered)
    return secrets.compare_digest(offered.encode(), token.encode())


def _admin_refused() -> JSONResponse:
    return JSONResponse(
        {"error": "admin token required (Authorization: Bearer <token> or x-admin-token)"},
        status_code=401,
        headers={"www-authenticate": "Bearer"},
    )


async def _get_config(request: Request) -> Response:
    state: MockState = request.app.state.mock
    return JSONResponse(state.config.public())


async def _put_config(request: Request) -> Response:
    if not _admin_allowed(request):
        return _admin_refused()
    state: MockState = request.app.state.mock
    try:
        changes = await request.json()
        if not isinstance(changes, dict):
            raise ValueError("expected a JSON object")
        had_key = state.config.api_key is not None
        new = state.update(changes)
    except ValidationError as exc:
        return JSONResponse({"error": json.loads(exc.json(include_url=False))}, status_code=422)
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    logger.info("mock LLM config changed: %s", sorted(changes))
    if had_key and new.api_key is None:
        logger.warning("mock LLM: API key checks turned off by an admin request")
    return JSONResponse(new.public())


async def _get_stats(request: Request) -> Response:
    state: MockState = request.app.state.mock
    return JSONResponse(state.stats())


async def _delete_stats(request: Request) -> Response:
    if not _admin_allowed(request):
        return _admin_refused()
    state: MockState = request.app.state.mock
    state.reset_stats()
    return JSONResponse(state.stats())


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(config: MockConfig | None = None, *, admin_token: str | None = None) -> Starlette:
    """The mock provider as a Starlette app; its `MockState` is at ``app.state.mock``.

    Changing the configuration or resetting the counters over HTTP needs `admin_token`
    (default: a random one, at ``app.state.admin_token``).
    """
    if admin_token is not None and not admin_token:
        raise ValueError("admin_token must be a non-empty string or None")
    app = _MockApp(
        routes=[
            Route("/v1/chat/completions", _chat_completions, methods=["POST"]),
            Route("/v1/responses", _responses, methods=["POST"]),
            Route("/v1/embeddings", _embeddings, methods=["POST"]),
            Route("/v1/messages", _messages, methods=["POST"]),
            Route("/v1/models", _models, methods=["GET"]),
            Route("/admin/config", _get_config, methods=["GET"]),
            Route("/admin/config", _put_config, methods=["PUT", "PATCH"]),
            Route("/admin/stats", _get_stats, methods=["GET"]),
            Route("/admin/stats", _delete_stats, methods=["DELETE"]),
            Route("/health", _health, methods=["GET"]),
        ],
    )
    app.state.mock = MockState(config or MockConfig())
    app.state.admin_token = admin_token or secrets.token_urlsafe(24)
    return app
