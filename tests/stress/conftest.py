"""Fixtures of the stress tests."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import asyncpg
import pytest


@pytest.fixture
async def own_database(postgres_dsn: str) -> AsyncIterator[str]:
    """A database of this test's own, so other clients of the server are not counted."""
    name = f"bounded_stress_{os.getpid()}"
    admin = await asyncpg.connect(postgres_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
        base, _, _ = postgres_dsn.rpartition("/")
        yield f"{base}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
