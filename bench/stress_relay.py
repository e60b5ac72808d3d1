"""A timing TCP relay, run in its own process by `python -m bench stress_locust`.

``python -m bench.stress_relay UPSTREAM_PORT`` listens on a free loopback port (printed as
``port N`` on the first line), forwards every connection to 127.0.0.1:UPSTREAM_PORT, and
times each HTTP/1.1 exchange it carries: from the first byte of a request arriving to the
last byte of its response passed back. A request starts with the first client byte after
a response began (so a head and body written apart are one request); keep-alive
connections carry one request at a time. A line ``reset`` on its standard input (sent
with no request in flight) closes the exchanges so far and forgets their timings; when
its standard input closes it prints one latency a line (seconds) and exits.

This is a measurement of the generator's requests taken outside the generator: another
process, another clock read, no shared code with the runner's accounting.
"""

from __future__ import annotations

import asyncio
import sys
import time

_CHUNK = 65536


class _Exchange:
    """The timing state of one relayed connection."""

    def __init__(self, done: list[float]) -> None:
        self.done = done
        self.start: float | None = None
        self.last: float | None = None  # last response byte of the current request

    def request_bytes(self, now: float) -> None:
        if self.start is None or self.last is not None:
            self.finish()
            self.start, self.last = now, None

    def response_bytes(self, now: float) -> None:
        self.last = now

    def finish(self) -> None:
        if self.start is not None and self.last is not None:
            self.done.append(self.last - self.start)
        self.start = self.last = None


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    exchange: _Exchange,
    *,
    requests: bool,
) -> None:
    try:
        while data := await reader.read(_CHUNK):
            if requests:  # timed as it arrives
                exchange.request_bytes(time.perf_counter())
                writer.write(data)
            else:  # timed once passed on
                writer.write(data)
                exchange.response_bytes(time.perf_counter())
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(upstream: int) -> None:
    done: list[float] = []
    exchanges: set[_Exchange] = set()

    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        exchange = _Exchange(done)
        exchanges.add(exchange)
        up_r, up_w = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(
            _pipe(client_r, up_w, exchange, requests=True),
            _pipe(up_r, client_w, exchange, requests=False),
        )
        exchange.finish()
        exchanges.discard(exchange)

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        if line.strip() == "reset":
            for exchange in exchanges:
                exchange.finish()
            done.clear()
    for exchange in exchanges:
        exchange.finish()
    server.close()
    sys.stdout.write("".join(f"{d:.9f}\n" for d in done))
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
