"""The schema of a `bounded.yaml` file: one pydantic model per section.

Every model forbids unknown keys (the loader turns them into a did-you-mean message).
Bounds here are the per-field checks; checks that relate several sections (a policy
naming a missing bulkhead, bulkheads exceeding a database's pool) live in the loader.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from bounded.breaker import MAX_WINDOW, MAX_WINDOW_SECONDS
from bounded.config.exceptions import resolve_exceptions

__all__ = [
    "RETRYABLE_EXCEPTIONS",
    "BackendConfig",
    "BackoffConfig",
    "BoundedConfig",
    "BreakerConfig",
    "BudgetConfig",
    "BulkheadConfig",
    "DatabaseConfig",
    "DefaultsConfig",
    "HttpClientConfig",
    "MonitoringConfig",
    "PolicyConfig",
    "PrometheusConfig",
    "ProviderConfig",
    "RateLimitConfig",
    "RetryConfig",
]


def _importable(name: str) -> str:
    resolve_exceptions([name])  # ValueError naming what cannot be imported
    return name


# An exception by short name (see bounded.config.exceptions) or import path, checked at load.
ExceptionName = Annotated[str, AfterValidator(_importable)]

# What `retries.<name>.on` retries when not given.
RETRYABLE_EXCEPTIONS: tuple[str, ...] = (
    "TransportError",
    "TimeoutError",
    "RateLimited",
    "CircuitOpen",
    "RetryableHTTPError",
    "ConnectionError",
    "PoolExhausted",
    "BulkheadFull",
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class BulkheadConfig(_Section):
    """`bulkheads.<name>`: a named concurrency limit."""

    limit: Annotated[int, Field(ge=1)] = 10
    max_queue: Annotated[int | None, Field(ge=0)] = None
    max_wait: Annotated[float | None, Field(gt=0)] = None
    # The database whose connections the holders of this bulkhead use (cross-checked).
    database: str | None = None


_PER_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_SHORTHAND = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")


def parse_rate(text: str) -> tuple[float, float]:
    """Parse ``"60/min"`` or ``"100/10s"`` into ``(rate, per_seconds)``; ValueError if not."""
    match = _SHORTHAND.match(text.lower())
    if match is None or match.group(3) not in _PER_UNITS:
        raise ValueError("rate shorthand must look like '60/min' or '100/10s'")
    count = float(match.group(2)) if match.group(2) else 1.0
    return float(match.group(1)), count * _PER_UNITS[match.group(3)]


class RateLimitConfig(_Section):
    """`rate_limits.<name>`: `rate` units per `per` seconds (or the shorthand ``"60/min"``)."""

    rate: Annotated[float, Field(gt=0)]
    per: Annotated[float, Field(gt=0)] = 1.0
    burst: Annotated[float, Field(ge=1)] = 1.0
    algorithm: Literal["gcra", "sliding_window"] = "gcra"
    max_wait: Annotated[float | None, Field(ge=0)] = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            rate, per = parse_rate(data)
            return {"rate": rate, "per": per}
        return data


class BreakerConfig(_Section):
    """`breakers.<name>`: circuit breaker thresholds."""

    failure_rate: Annotated[float, Field(gt=0, le=1)] = 0.5
    minimum_calls: Annotated[int, Field(ge=1)] = 10
    window: Annotated[int, Field(ge=1, le=MAX_WINDOW)] = 20
    window_seconds: Annotated[float | None, Field(gt=0, le=MAX_WINDOW_SECONDS)] = None
    slow_call_duration: Annotated[float | None, Field(gt=0)] = None
    slow_call_rate: Annotated[float, Field(gt=0, le=1)] = 1.0
    open_for: Annotated[float, Field(gt=0)] = 30.0
    half_open_calls: Annotated[int, Field(ge=1)] = 3
    # Exceptions recorded as failures / not recorded at all (short names or import paths).
    failure_on: list[ExceptionName] = ["Exception"]
    ignore: list[ExceptionName] = []
    # State and window in the Redis backend, shared by every process (needs `backend`).
    shared: bool = False


class BackoffConfig(_Section):
    """`retries.<name>.backoff`: exponential backoff with jitter."""

    initial: Annotated[float, Field(gt=0)] = 0.5
    max: Annotated[float, Field(gt=0)] = 30.0
    multiplier: Annotated[float, Field(ge=1)] = 2.0
    jitter: Literal["full", "equal", "decorrelated", "none"] = "full"


class BudgetConfig(_Section):
    """`retries.<name>.budget`: retries capped to a share of recent first attempts."""

    ratio: Annotated[float, Field(ge=0)] = 0.1
    min_per_second: Annotated[float, Field(ge=0)] = 10.0


class RetryConfig(_Section):
    """`retries.<name>`: what to retry, how often and how long to wait between attempts."""

    attempts: Annotated[int, Field(ge=1)] = 5
    on: list[ExceptionName] = list(RETRYABLE_EXCEPTIONS)
    backoff: BackoffConfig = BackoffConfig()
    deadline: Annotated[float | None, Field(gt=0)] = None
    respect_retry_after: bool = True
    max_retry_after: Annotated[float, Field(gt=0)] = 120.0
    budget: BudgetConfig | None = None


class PolicyConfig(_Section):
    """`policies.<name>`: a composition of other sections, referenced by name."""

    deadline: Annotated[float | None, Field(gt=0)] = None
    timeout: Annotated[float | None, Field(gt=0)] = None
    retry: str | None = None
    breaker: str | None = None
    rate_limit: str | None = None
    bulkhead: str | None = None
    # An LLM provider's limits, reserved before the bulkhead (`providers.<name>`).
    provider: str | None = None


_PRESETS: dict[str, dict[str, int | None]] = {
    "openai": {"rpm": 60, "tpm": 30_000, "input_tpm": None, "output_tpm": None},
    "anthropic": {"rpm": 50, "tpm": None, "input_tpm": 30_000, "output_tpm": 8_000},
}


class ProviderConfig(_Section):
    """`providers.<name>`: an LLM provider account's request and token limits per `period`.

    `preset` (openai, anthropic) supplies the numbers that are not given; a limit set to
    null is off. `resync` follows the provider's rate-limit headers; a 429 is retried by
    the provider part up to `rate_limit_retries` times after waiting for the budget.
    """

    preset: Literal["openai", "anthropic"] | None = None
    rpm: Annotated[int | None, Field(ge=1)] = None
    tpm: Annotated[int | None, Field(ge=1)] = None
    input_tpm: Annotated[int | None, Field(ge=1)] = None
    output_tpm: Annotated[int | None, Field(ge=1)] = None
    period: Annotated[float, Field(gt=0)] = 60.0
    resync: bool = True
    max_wait: Annotated[float | None, Field(ge=0)] = None
    rate_limit_retries: Annotated[int, Field(ge=0)] = 3

    def limits(self) -> dict[str, int | None]:
        """rpm, tpm, input_tpm and output_tpm: the preset's, overridden by those given."""
        preset = _PRESETS.get(self.preset or "", {})
        return {
            key: getattr(self, key) if key in self.model_fields_set else preset.get(key)
            for key in ("rpm", "tpm", "input_tpm", "output_tpm")
        }

    @model_validator(mode="after")
    def _some_limit(self) -> ProviderConfig:
        if all(value is None for value in self.limits().values()):
            raise ValueError(
                "needs a preset (openai, anthropic) or at least one of rpm, tpm, "
                "input_tpm, output_tpm"
            )
        return self


class DatabaseConfig(_Section):
    """`databases.<name>`: an asyncpg pool (dsn None: the DATABASE_URL environment variable)."""

    dsn: str | None = None
    min_size: Annotated[int, Field(ge=0)] = 5
    max_size: Annotated[int, Field(ge=1)] = 20
    acquire_timeout: Annotated[float, Field(gt=0)] = 10.0
    statement_timeout: Annotated[float | None, Field(gt=0)] = 10.0
    ssl: str | bool = "auto"
    application_name: str | None = None

    @model_validator(mode="after")
    def _small_pools(self) -> DatabaseConfig:
        # A pool declared with only a small max_size gets min_size = max_size, not an error.
        if "min_size" not in self.model_fields_set and self.min_size > self.max_size:
            self.__dict__["min_size"] = self.max_size
        return self


class HttpClientConfig(_Section):
    """`http_clients.<name>`: a pooled httpx2 client."""

    base_url: str = ""
    timeout: Annotated[float, Field(gt=0)] = 60.0
    max_connections: Annotated[int, Field(ge=1)] = 100
    max_keepalive: Annotated[int, Field(ge=1)] = 20
    headers: dict[str, str] = {}


class BackendConfig(_Section):
    """`backend`: where limits keep their state: in-process memory, or Redis (shared).

    With `type: redis`, `url` is required; `on_error` decides what happens while Redis
    is unavailable (`fail_open`: admit at 1/`expected_processes` of each limit in each
    process; `fail_closed`: reject); `timeout` bounds every call; `lease` is how long
    a bulkhead slot of a crashed process stays taken; `max_connections` caps the pool.
    """

    type: Literal["memory", "redis"] = "memory"
    url: str | None = None
    prefix: str = "bounded:"
    on_error: Literal["fail_open", "fail_closed"] = "fail_open"
    timeout: Annotated[float, Field(gt=0)] = 0.5
    expected_processes: Annotated[int, Field(ge=1)] = 1
    lease: Annotated[float, Field(gt=0)] = 10.0
    max_connections: Annotated[int, Field(ge=1)] = 50

    @model_validator(mode="after")
    def _redis_needs_url(self) -> BackendConfig:
        if self.type == "redis" and not self.url:
            raise ValueError("url is required when type is 'redis' (e.g. ${REDIS_URL})")
        return self


class PrometheusConfig(_Section):
    """`monitoring.prometheus`: the address of the `/metrics` endpoint (port 0: any free port)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9464


class MonitoringConfig(_Section):
    """`monitoring`: how often resources are checked, and the optional metrics endpoint."""

    enabled: bool = True
    interval: Annotated[float, Field(gt=0)] = 1.0
    prometheus: PrometheusConfig | None = None
    # One OpenTelemetry span per policy call (needs the `otel` extra).
    tracing: bool = False


class DefaultsConfig(_Section):
    """`defaults`: the system-wide policy given to every name that is not declared."""

    bulkhead: BulkheadConfig = BulkheadConfig()
    rate_limit: RateLimitConfig | None = None
    breaker: BreakerConfig = BreakerConfig()
    retry: RetryConfig = RetryConfig()
    timeout: Annotated[float | None, Field(gt=0)] = 30.0
    database: DatabaseConfig = DatabaseConfig()
    http_client: HttpClientConfig = HttpClientConfig()


class BoundedConfig(_Section):
    """A whole `bounded.yaml`."""

    defaults: DefaultsConfig = DefaultsConfig()
    bulkheads: dict[str, BulkheadConfig] = {}
    rate_limits: dict[str, RateLimitConfig] = {}
    breakers: dict[str, BreakerConfig] = {}
    retries: dict[str, RetryConfig] = {}
    policies: dict[str, PolicyConfig] = {}
    providers: dict[str, ProviderConfig] = {}
    databases: dict[str, DatabaseConfig] = {}
    http_clients: dict[str, HttpClientConfig] = {}
    backend: BackendConfig = BackendConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    alert_threshold: Annotated[float, Field(gt=0, le=1)] = 0.8
    strict: bool = False
