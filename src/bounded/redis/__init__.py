"""Limits shared across processes and hosts, with their state in Redis.

``backend = RedisBackend(url)`` holds one connection pool; ``backend.rate_limiter(...)``,
``backend.bulkhead(...)`` and ``backend.circuit_breaker(...)`` build limiters with the
interface of `bounded.RateLimiter`, `bounded.Bulkhead` and `bounded.CircuitBreaker` whose
state every process using the same Redis, prefix and name shares. Requires the ``redis`` extra.
"""

from bounded._extras import import_extra

with import_extra("bounded.redis"):
    from bounded.redis.backend import OnError, RedisBackend
    from bounded.redis.breaker import RedisCircuitBreaker
    from bounded.redis.bulkhead import RedisBulkhead
    from bounded.redis.ratelimit import RedisRateLimiter

__all__ = ["OnError", "RedisBackend", "RedisBulkhead", "RedisCircuitBreaker", "RedisRateLimiter"]
