"""An in-process asyncio TCP proxy that injects network faults (Toxiproxy's toxics).

Put it between a service and its dependency (PostgreSQL, the mock provider) and point the
service at `proxy.port`. Faults apply to both directions and can change while it runs:

- ``latency`` (seconds, plus uniform ``jitter``) before each chunk is forwarded;
- ``bandwidth`` (bytes per second) caps each direction;
- ``slow_close`` (seconds) delays passing on a close;
- ``reset``: connections are reset (TCP RST) at their next byte, new ones at once;
- ``blackhole``: data is swallowed, nothing comes back (a timeout, seen from the client);
- ``refuse``: the listening socket is closed, so connecting fails; lifting it listens again
  on the same port.

Loopback only: both the listening and the upstream address must be loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from bounded._validate import non_negative, optional_positive
from bounded.stress.targets import is_loopback

__all__ = ["FaultProxy", "Faults"]

_CHUNK = 65536


@dataclass(frozen=True)
class Faults:
    """The faults in force; the default is none (a transparent proxy)."""

    latency: float = 0.0
    jitter: float = 0.0
    bandwidth: float | None = None
    slow_close: float = 0.0
    reset: bool = False
    blackhole: bool = False
    refuse: bool = False

    def __post_init__(self) -> None:
        non_negative("latency", self.latency)
        non_negative("jitter", self.jitter)
        optional_positive("bandwidth", self.bandwidth)
        non_negative("slow_close", self.slow_close)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST rather than a FIN (SO_LINGER 0)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """``async with FaultProxy(upstream_port) as proxy:`` then connect to `proxy.port`."""

    def __init__(
        self,
        upstream_port: int,
        upstream_host: str = "127.0.0.1",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
    ) -> None:
        for name, value in (("upstream_host", upstream_host), ("host", host)):
            if not is_loopback(value):
                raise ValueError(f"{name} must be a loopback address, got {value!r}")
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self._port = port
        self._rng = random.Random(seed)
        self._faults = Faults()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections_total = 0

    @property
    def port(self) -> int:
        """The port the proxy listens on (known once started)."""
        if not self._port:
            raise RuntimeError("proxy is not started")
        return self._port

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._faults

    async def set_faults(self, faults: Faults | None = None, **changes: Any) -> None:
        """Replace the faults (or change some fields); takes effect at once."""
        new = dataclasses.replace(faults or self._faults, **changes)
        old, self._faults = self._faults, new
        if new.refuse and not old.refuse:
            await self._stop_listening()
        elif old.refuse and not new.refuse:
            await self._listen()

    async def clear(self) -> None:
        """Lift every fault."""
        await self.set_faults(Faults())

    @contextlib.asynccontextmanager
    async def fault(self, **faults: Any) -> AsyncIterator[None]:
        """Apply faults for the duration of the ``async with`` block, then lift them."""
        previous = self._faults
        await self.set_faults(Faults(**faults))
        try:
            yield
        finally:
            await self.set_faults(previous)

    async def start(self) -> None:
        """Start listening."""
        await self._listen()

    async def stop(self) -> None:
        """Stop listening and cut every connection."""
        await self._stop_listening()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=5.0)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _listen(self) -> None:
        if self._server is not None or self._faults.refuse:
            return
        self._server = await asyncio.start_server(
            self._accept, self.host, self._port, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_total += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(task)
            self._writers.discard(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._faults.reset:
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _reset(writer)
            return
        self._writers.add(up_writer)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, writer)),
            asyncio.create_task(self._pump(up_reader, writer, up_writer)),
        ]
        try:
            await asyncio.gather(*pumps)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._writers.discard(up_writer)
            for w in (writer, up_writer):
                w.close()

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        src_writer: asyncio.StreamWriter,
    ) -> None:
        """Copy src to dst applying the faults; on EOF pass the close on (maybe slowly)."""
        try:
            while data := await src.read(_CHUNK):
                f = self._faults
                if f.reset:
                    _reset(src_writer)
                    _reset(dst)
                    return
                if f.blackhole:
                    continue
                delay = f.latency + (self._rng.uniform(-f.jitter, f.jitter) if f.jitter else 0)
                if f.bandwidth:
                    delay += len(data) / f.bandwidth  # the time the chunk takes on the wire
                if delay > 0:
                    await asyncio.sleep(delay)
                dst.write(data)
                await dst.drain()
            if self._faults.slow_close:
                await asyncio.sleep(self._faults.slow_close)
            if dst.can_write_eof():
                dst.write_eof()
        except (ConnectionError, OSError):
            _reset(dst)
