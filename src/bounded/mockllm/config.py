"""Configuration of the mock LLM provider; every field can be changed at run time."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["MockConfig"]


class MockConfig(BaseModel):
    """How the mock provider behaves: latency, capacity, rate limits and faults.

    Rate limits are per `window` seconds (60 by default, so `rpm` is requests per minute);
    tests and benchmarks shrink the window to run quickly. Each limit is a token bucket
    of that size refilled continuously over the window, as OpenAI and Anthropic describe
    theirs. None disables a limit.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    seed: int = 0
    # Latency model: base + per_token * output tokens + uniform[0, jitter), all seconds.
    latency_base: float = Field(default=0.02, ge=0)
    latency_per_token: float = Field(default=0.0, ge=0)
    latency_jitter: float = Field(default=0.0, ge=0)
    # Capacity model: up to `capacity` concurrent requests at normal latency; beyond it the
    # latency grows in proportion (in service / capacity) up to `max_concurrency` requests
    # in service (default 2 x capacity); later ones queue FIFO, up to `max_queue`, and
    # beyond that are answered "overloaded" (529 on /v1/messages, 503 on OpenAI's path).
    capacity: int | None = Field(default=None, ge=1)
    max_concurrency: int | None = Field(default=None, ge=1)
    max_queue: int = Field(default=1000, ge=0)
    # Rate limits per window.
    window: float = Field(default=60.0, gt=0)
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    input_tpm: int | None = Field(default=None, ge=1)
    output_tpm: int | None = Field(default=None, ge=1)
    # Replies: None derives the length (8-47 tokens) from the prompt; capped by max_tokens.
    output_tokens: int | None = Field(default=None, ge=1)
    # Length of /v1/embeddings vectors when the request gives no `dimensions`.
    embedding_dimensions: int = Field(default=256, ge=1, le=8192)
    # Faults, as fractions of requests that passed the rate limits.
    error_rate: float = Field(default=0.0, ge=0, le=1)
    error_statuses: list[int] = Field(default_factory=lambda: [500, 503, 529])
    slow_rate: float = Field(default=0.0, ge=0, le=1)
    slow_seconds: float = Field(default=5.0, ge=0)
    reset_rate: float = Field(default=0.0, ge=0, le=1)
    # Answer every chat request with the provider's quota / spend-limit error.
    quota_exceeded: bool = False
    # When set, requests must present this key (Authorization: Bearer or x-api-key).
    api_key: str | None = None

    @field_validator("error_statuses")
    @classmethod
    def _check_statuses(cls, value: list[int]) -> list[int]:
        if not value or any(not 400 <= s <= 599 for s in value):
            raise ValueError("error_statuses must be a non-empty list of 4xx/5xx codes")
        return value

    @property
    def effective_max_concurrency(self) -> int | None:
        """Requests served at once; None when unlimited."""
        if self.max_concurrency is not None:
            return self.max_concurrency
        return None if self.capacity is None else 2 * self.capacity

    def public(self) -> dict[str, Any]:
        """The configuration as JSON data, with the API key masked."""
        data = self.model_dump()
        if data["api_key"] is not None:
            data["api_key"] = "***"
        return data
