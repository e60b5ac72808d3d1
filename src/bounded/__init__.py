"""bounded: concurrency control and resilience for asyncio services.

Public names are imported on first use (PEP 562), so ``import bounded`` stays cheap and
pulls in asyncpg or httpx2 only when a database pool or HTTP client is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bounded.errors import (
    BoundedError,
    BulkheadFull,
    CircuitOpen,
    ConfigError,
    PoolExhausted,
    RateLimited,
    Rejected,
)

if TYPE_CHECKING:
    from bounded.breaker import BreakerStats, CircuitBreaker
    from bounded.bulkhead import Bulkhead, BulkheadStats
    from bounded.db import DatabasePool, PoolStats
    from bounded.fanout import gather, map, stream
    from bounded.http import HttpClient
    from bounded.manager import ConcurrencyManager
    from bounded.monitor import Alert, ConcurrencyMonitor, ResourceStats
    from bounded.policy import Policy
    from bounded.ratelimit import RateLimiter, RateLimiterStats
    from bounded.retry import Backoff, Retry, RetryBudget, RetryEvent
    from bounded.tasks import TaskManager, to_thread

    __version__: str

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "Bulkhead": "bounded.bulkhead",
    "BulkheadStats": "bounded.bulkhead",
    "RateLimiter": "bounded.ratelimit",
    "RateLimiterStats": "bounded.ratelimit",
    "gather": "bounded.fanout",
    "map": "bounded.fanout",
    "stream": "bounded.fanout",
    "Retry": "bounded.retry",
    "Backoff": "bounded.retry",
    "RetryBudget": "bounded.retry",
    "RetryEvent": "bounded.retry",
    "CircuitBreaker": "bounded.breaker",
    "BreakerStats": "bounded.breaker",
    "Policy": "bounded.policy",
    "TaskManager": "bounded.tasks",
    "to_thread": "bounded.tasks",
    "DatabasePool": "bounded.db",
    "PoolStats": "bounded.db",
    "HttpClient": "bounded.http",
    "ConcurrencyManager": "bounded.manager",
    "ConcurrencyMonitor": "bounded.monitor",
    "ResourceStats": "bounded.monitor",
    "Alert": "bounded.monitor",
}

__all__ = [
    "Alert",
    "Backoff",
    "BoundedError",
    "BreakerStats",
    "Bulkhead",
    "BulkheadFull",
    "BulkheadStats",
    "CircuitBreaker",
    "CircuitOpen",
    "ConcurrencyManager",
    "ConcurrencyMonitor",
    "ConfigError",
    "DatabasePool",
    "HttpClient",
    "Policy",
    "PoolExhausted",
    "PoolStats",
    "RateLimited",
    "RateLimiter",
    "RateLimiterStats",
    "Rejected",
    "ResourceStats",
    "Retry",
    "RetryBudget",
    "RetryEvent",
    "TaskManager",
    "gather",
    "map",
    "stream",
    "to_thread",
]


def _version() -> str:
    """The installed distribution's version: pyproject.toml is its one source."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bounded")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
        globals()[name] = value
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bounded' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"__version__"})
