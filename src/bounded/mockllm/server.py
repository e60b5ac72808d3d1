"""Run an ASGI app (the mock provider) on uvicorn inside the current event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any, Self

import uvicorn
from starlette.types import ASGIApp

from bounded.mockllm.app import MockState, create_app
from bounded.mockllm.config import MockConfig

__all__ = ["ASGIServer", "MockLLMServer", "bind_socket"]


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening, non-blocking TCP socket on `host`:`port` (0: a free port).

    Binding before serving makes a busy port fail here (`OSError`), before anything is
    announced, and tells the real port when 0 was asked for.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so; without it
    # replies written in two parts wait out the client's delayed ACK (about 40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # In-process: leave the host application's signal handlers alone.
        yield


class ASGIServer:
    """Serve an ASGI app with uvicorn in the running loop, on a pre-bound socket.

    Port 0 picks a free port; `url` tells which. ``async with`` starts and stops it.
    """

    def __init__(
        self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
    ) -> None:
        self.app = app
        self.host = host
        self._port = port
        self._log_level = log_level
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        """The bound port (known once started)."""
        if self._socket is None:
            raise RuntimeError("server is not started")
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind the socket and start serving; returns once the server accepts connections."""
        if self._task is not None:
            raise RuntimeError("server already started")
        sock = self._socket = bind_socket(self.host, self._port)
        config = uvicorn.Config(
            self.app,
            log_level=self._log_level,
            lifespan="off",
            http="h11",
            access_log=False,
            proxy_headers=False,
            timeout_graceful_shutdown=1,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="asgi-server")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # startup failed: raise why
                raise RuntimeError("server stopped during startup")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        """Stop serving and close every connection. Idempotent."""
        server, task, self._task = self._server, self._task, None
        if server is None or task is None:
            return
        server.should_exit = True
        try:
            await task
        finally:
            if self._socket is not None:
                self._socket.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class MockLLMServer(ASGIServer):
    """The mock LLM provider served by uvicorn in the running loop.

    ``async with MockLLMServer(MockConfig(rpm=60)) as srv: ...`` serves on `srv.url`
    (OpenAI clients use ``srv.url + "/v1"``). Change behaviour live with
    `srv.update(...)` or through ``PUT /admin/config`` with `srv.admin_token`.
    """

    def __init__(
        self,
        config: MockConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        admin_token: str | None = None,
    ) -> None:
        app = create_app(config, admin_token=admin_token)
        super().__init__(app, host=host, port=port, log_level=log_level)

    @property
    def admin_token(self) -> str:
        """The token ``PUT``/``PATCH /admin/config`` and ``DELETE /admin/stats`` require."""
        token: str = self.app.state.admin_token  # type: ignore[attr-defined]
        return token

    @property
    def state(self) -> MockState:
        """The server's live state (config, buckets, counters)."""
        state: MockState = self.app.state.mock  # type: ignore[attr-defined]
        return state

    @property
    def config(self) -> MockConfig:
        """The current configuration."""
        return self.state.config

    def update(self, **changes: Any) -> MockConfig:
        """Change configuration fields live (same as ``PUT /admin/config``)."""
        return self.state.update(changes)
