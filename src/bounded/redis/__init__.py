"""Limits shared across processes and hosts, with their state in Redis.

``backend = RedisBackend(url)`` holds one connection pool; ``backend.rate_limiter(...)``
and ``backend.bulkhead(...)`` build limiters with the interface of `bounded.RateLimiter`
and `bounded.Bulkhead` whose state every process using the same Redis, prefix and name
shares. Requires the ``redis`` extra.
"""

from bounded._extras import import_extra

with import_extra("bounded.redis"):
    from bounded.redis.backend import OnError, RedisBackend
    from bounded.redis.bulkhead import RedisBulkhead
    from bounded.redis.ratelimit import RedisRateLimiter

__all__ = ["OnError", "RedisBackend", "RedisBulkhead", "RedisRateLimiter"]
