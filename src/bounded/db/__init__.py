"""PostgreSQL through asyncpg: `DatabasePool`, its `PoolStats`, and `redact_dsn`."""

from __future__ import annotations

from bounded.db.dsn import redact_dsn
from bounded.db.pool import DatabasePool, PoolStats

__all__ = ["DatabasePool", "PoolStats", "redact_dsn"]
