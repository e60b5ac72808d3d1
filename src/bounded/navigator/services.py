"""The parts the navigator runs against: the mock provider in a child process, and a
PostgreSQL server with pgvector (``DATABASE_URL`` when it has the extension, otherwise
the embedded server)."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

import httpx2

from bounded.http import default_tls
from bounded.navigator.corpus import has_pgvector

__all__ = ["MockProvider", "ProviderSettings", "pgvector_database"]


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """The mock provider's account and service model (rates per `window` seconds)."""

    rpm: int = 300
    tpm: int = 300_000
    window: float = 10.0
    capacity: int = 16
    latency: float = 0.03
    per_token: float = 0.0005
    jitter: float = 0.02
    max_queue: int = 200

    @property
    def requests_per_second(self) -> float:
        """The request rate the account sustains."""
        return self.rpm / self.window

    def limits(self) -> dict[str, Any]:
        """The rate-limit fields of the mock's configuration."""
        return {"rpm": self.rpm, "tpm": self.tpm, "window": self.window}


class MockProvider:
    """`bounded mock-llm` in a child process, with its admin API (use ``async with``).

    The child starts without rate limits so that the corpus can be embedded at once;
    `apply_limits` turns the account's limits on with full buckets.
    """

    def __init__(self, settings: ProviderSettings, seed: int = 0) -> None:
        self.settings = settings
        self.seed = seed
        self.url = ""
        self._token = secrets.token_urlsafe(16)
        self._proc: asyncio.subprocess.Process | None = None
        self._admin: httpx2.AsyncClient | None = None

    async def __aenter__(self) -> MockProvider:
        s = self.settings
        args = [
            "--port", "0", "--log-level", "warning", "--seed", str(self.seed),
            "--capacity", str(s.capacity), "--max-queue", str(s.max_queue),
            "--latency", str(s.latency), "--per-token", str(s.per_token),
            "--jitter", str(s.jitter), "--window", str(s.window),
        ]  # fmt: skip
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from bounded.cli import main; main()",
            "mock-llm",
            *args,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "BOUNDED_MOCK_ADMIN_TOKEN": self._token},
        )
        try:
            assert self._proc.stdout is not None
            async with asyncio.timeout(30):
                announced = (await self._proc.stdout.readline()).decode()
            if " on " not in announced:
                raise RuntimeError(f"the mock provider did not start: {announced.strip()!r}")
            self.url = announced.split(" on ", 1)[1].split()[0]
            self._admin = httpx2.AsyncClient(
                base_url=self.url,
                timeout=10,
                headers={"x-admin-token": self._token},
                verify=default_tls(),
            )
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stop()

    async def _stop(self) -> None:
        if self._admin is not None:
            await self._admin.aclose()
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            await self._proc.wait()

    async def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        assert self._admin is not None, "use `async with MockProvider(...)`"
        response = await self._admin.request(method, path, json=body)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    async def apply_limits(self) -> None:
        """Turn the account's limits on, buckets full, and zero the counters."""
        await self._call("PATCH", "/admin/config", {"rpm": None, "tpm": None})
        await self._call("PATCH", "/admin/config", self.settings.limits())
        await self._call("DELETE", "/admin/stats")

    async def stats(self) -> dict[str, Any]:
        """The mock's counters (requests, 429s, statuses) since `apply_limits`."""
        return await self._call("GET", "/admin/stats")

    def describe(self) -> dict[str, Any]:
        """The settings, for reports."""
        return asdict(self.settings)


@asynccontextmanager
async def pgvector_database() -> AsyncIterator[tuple[str, str]]:
    """(dsn, where): ``DATABASE_URL`` if its server offers pgvector, else an embedded
    server started for the block (`where` says which, without credentials)."""
    url = os.environ.get("DATABASE_URL")
    if url and await has_pgvector(url):
        yield url, "DATABASE_URL"
        return
    from bounded.db.embedded import EmbeddedPostgres

    server = EmbeddedPostgres()
    try:
        dsn = await asyncio.to_thread(server.start)
        yield dsn, "embedded PostgreSQL" + (" (DATABASE_URL has no pgvector)" if url else "")
    finally:
        await asyncio.to_thread(server.close)
