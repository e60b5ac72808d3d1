"""Rate limiting: weighted FIFO admission with GCRA or a sliding log."""

from bounded.ratelimit.limiter import RateLimiter, RateLimiterStats

__all__ = ["RateLimiter", "RateLimiterStats"]
