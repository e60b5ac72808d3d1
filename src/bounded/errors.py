"""The exceptions `bounded` raises."""

from __future__ import annotations

__all__ = [
    "BoundedError",
    "BulkheadFull",
    "CircuitOpen",
    "ConfigError",
    "PoolExhausted",
    "RateLimited",
    "Rejected",
]


class BoundedError(Exception):
    """Base class of every error raised by `bounded`."""


class Rejected(BoundedError):
    """Load was refused; the caller may back off for `retry_after` seconds (None: unknown)."""

    def __init__(self, resource: str, retry_after: float | None = None, message: str = "") -> None:
        self.resource = resource
        self.retry_after = retry_after
        text = message or f"{type(self).__name__}: {resource!r} refused the request"
        if retry_after is not None:
            text += f" (retry after {retry_after:.3f}s)"
        super().__init__(text)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.resource, self.retry_after, self.args[0]))


class BulkheadFull(Rejected):
    """The bulkhead's queue is full, or the wait for a slot would exceed `max_wait`."""


class RateLimited(Rejected):
    """Admission would take longer than `max_wait`; `retry_after` is the time until admissible."""


class CircuitOpen(Rejected):
    """The circuit breaker is open; `retry_after` is the time until it turns half-open."""


class PoolExhausted(Rejected):
    """No connection became available within the pool's `acquire_timeout`."""


class ConfigError(BoundedError):
    """Invalid configuration; `path` is the dotted location, e.g. ``bulkheads.llm.limit``."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.path, self.message))
