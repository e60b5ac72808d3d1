"""LLM provider limits, header resync and a small chat client.

- `ProviderLimits`: requests and tokens per minute for one provider account, with
  presets `OPENAI_DEFAULT` (60 RPM) and `ANTHROPIC_DEFAULT` (50 RPM); tokens are
  reserved before a call and settled with the real usage after it.
- `ProviderLimits.update_from_headers`: resync from ``x-ratelimit-*`` and
  ``anthropic-ratelimit-*`` response headers.
- `QuotaExceeded`: exhausted quota or spend limit, never retried.
- `ChatClient.openai(...)` / `ChatClient.anthropic(...)`: one chat request through
  limits and a policy, returning text and usage.
- `http_client(provider=..., policy=...)` / `LimitedTransport`: the official SDKs
  (``AsyncOpenAI(http_client=...)``, ``AsyncAnthropic(http_client=...)``) under the same
  limits and policy.
- ``Policy(provider=limits)`` reserves before the bulkhead; `call_cost` states a call's
  token estimate, `current_reservation` is the reservation of the running attempt.
"""

from __future__ import annotations

from bounded.llm.client import ChatClient, ChatResult, Usage, default_retry
from bounded.llm.errors import QuotaExceeded, is_quota_error
from bounded.llm.headers import parse_duration, parse_rate_limit_headers, parse_rfc3339_delay
from bounded.llm.limits import (
    ANTHROPIC_DEFAULT,
    OPENAI_DEFAULT,
    LimitsPreset,
    ProviderLimits,
    ProviderStats,
    Reservation,
    call_cost,
    current_reservation,
)
from bounded.llm.tokens import estimate_message_tokens, estimate_tokens
from bounded.llm.transport import LimitedTransport, http_client, request_cost

__all__ = [
    "ANTHROPIC_DEFAULT",
    "OPENAI_DEFAULT",
    "ChatClient",
    "ChatResult",
    "LimitedTransport",
    "LimitsPreset",
    "ProviderLimits",
    "ProviderStats",
    "QuotaExceeded",
    "Reservation",
    "Usage",
    "call_cost",
    "current_reservation",
    "default_retry",
    "estimate_message_tokens",
    "estimate_tokens",
    "http_client",
    "is_quota_error",
    "parse_duration",
    "parse_rate_limit_headers",
    "parse_rfc3339_delay",
    "request_cost",
]
