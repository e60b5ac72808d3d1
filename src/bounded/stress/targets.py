"""What a stress run calls: resolve a TARGET string into an async callable.

A TARGET is one of:

- a registered name (`register_target`, or an entry point in the
  ``bounded.stress.targets`` group, so a package such as a reference workflow can add
  itself without `bounded` importing it);
- ``package.module:function``: an async callable taking ``(index, rng)``;
- an ``http://`` or ``https://`` URL on loopback, sent with the load generator's own
  HTTP/1.1 client (`bounded.stress.http.LoadClient`, the default) or with
  `bounded.HttpClient` (``http_client="httpx"``, the service stack's client).

Every target is opened as an async context manager yielding a `Target`, so a target
that needs set-up (a server, a pool, a `ConcurrencyManager`) owns its lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.metadata
import inspect
import ipaddress
import json
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import httpx2

from bounded.http import HttpClient, redact_url
from bounded.stress.counters import Exposition

if TYPE_CHECKING:
    from bounded.db.embedded import EmbeddedPostgres

__all__ = [
    "ENTRY_POINT_GROUP",
    "HTTP_CLIENTS",
    "Call",
    "Monitored",
    "Target",
    "TargetFactory",
    "http_target",
    "is_loopback",
    "open_target",
    "register_target",
]

ENTRY_POINT_GROUP = "bounded.stress.targets"

#: One request: called with the request's index and its own seeded RNG.
Call = Callable[[int, random.Random], Awaitable[Any]]


class Monitored(Protocol):
    """Anything with `snapshot()` returning `ResourceStats` (a `ConcurrencyMonitor`)."""

    def snapshot(self) -> list[Any]: ...


@dataclass
class Target:
    """An opened target: the call, a display name, what to sample while it runs, the
    Prometheus metrics it keeps, and the embedded PostgreSQL it owns, if any (what a
    ``db_restart`` chaos event stops)."""

    name: str
    call: Call
    # Read at every sample: a ConcurrencyMonitor (or any object with snapshot()).
    monitor: Callable[[], Monitored | None] = field(default=lambda: None)
    embedded: EmbeddedPostgres | None = None
    # Read before and after the run: a Metrics (a ConcurrencyManager's `metrics`), whose
    # counters the result reports next to the runner's counts.
    metrics: Callable[[], Exposition | None] = field(default=lambda: None)


TargetFactory = Callable[[], contextlib.AbstractAsyncContextManager[Target]]

_REGISTRY: dict[str, TargetFactory] = {}


def register_target(name: str, factory: TargetFactory) -> None:
    """Make `name` usable as a TARGET; `factory()` opens it (an async context manager)."""
    if not name or ":" in name or "/" in name:
        raise ValueError(f"name must be a plain word, got {name!r}")
    _REGISTRY[name] = factory


def _registered(name: str) -> TargetFactory | None:
    if name in _REGISTRY:
        return _REGISTRY[name]
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            factory: TargetFactory = ep.load()
            return factory
    return None


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) is on loopback only."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


#: The HTTP clients an HTTP target can send with (see `http_target`).
HTTP_CLIENTS: tuple[str, ...] = ("lean", "httpx")


@contextlib.asynccontextmanager
async def http_target(
    url: str,
    *,
    method: str = "GET",
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
    request_timeout: float = 60.0,
    max_connections: int = 1000,
    http_client: str = "lean",
) -> AsyncIterator[Target]:
    """Send one request to `url` per call (loopback hosts only).

    `http_client` is ``"lean"`` (`bounded.stress.http.LoadClient`: keep-alive HTTP/1.1 on
    `asyncio.Protocol`, the request encoded once; little CPU per request, so the
    generator does not limit what it measures) or ``"httpx"`` (`bounded.HttpClient`, the
    client a bounded service uses). Both raise the same typed errors for error statuses,
    so failures are classified alike; `request_timeout` is their connect and read timeout.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url must be an http(s) URL, got {url!r}")
    if not await asyncio.to_thread(is_loopback, parts.hostname):  # a name is looked up
        raise ValueError(f"url must point to a loopback address, got host {parts.hostname!r}")
    if http_client not in HTTP_CLIENTS:
        raise ValueError(
            f"http_client must be one of {', '.join(HTTP_CLIENTS)}, not {http_client!r}"
        )
    label = redact_url(url)  # the name reports carry: no credentials, no query string
    # The same request every call: its URL and body are prepared once, not per request.
    fields = dict(headers or {})
    body = b""
    if json_body is not None:
        body = json.dumps(json_body, separators=(",", ":")).encode()
        fields.setdefault("content-type", "application/json")
    if http_client == "httpx":
        async with HttpClient(
            "stress",
            timeout=request_timeout,
            max_connections=max_connections,
            max_keepalive=max_connections,
            headers=fields,
        ) as client:
            parsed = httpx2.URL(url)
            content = body or None

            async def call(index: int, rng: random.Random) -> None:
                await client.request(method, parsed, content=content)

            yield Target(name=label, call=call)
        return

    from bounded.stress.http import LoadClient, encode_request

    raw = encode_request(method, url, body=body, headers=fields)
    async with LoadClient(
        f"{parts.scheme}://{parts.netloc}",
        max_connections=max_connections,
        connect_timeout=request_timeout,
        read_timeout=request_timeout,
    ) as lean:

        async def send(index: int, rng: random.Random) -> None:
            await lean.check(raw, method, label)

        yield Target(name=label, call=send)


@contextlib.asynccontextmanager
async def _callable_target(spec: str) -> AsyncIterator[Target]:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"target: cannot import module {module_name!r}: {exc}") from None
    fn: Any = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise ValueError(f"target: {module_name!r} has no attribute {attr!r}")
    if not callable(fn) or not (
        inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)
    ):
        raise ValueError(f"target: {spec!r} is not an async callable")

    # Looked up at each use: a module may create its manager lazily.
    def monitor() -> Monitored | None:
        found: Monitored | None = _exposed(fn, module, "monitor", "snapshot")
        return found

    def metrics() -> Exposition | None:
        found: Exposition | None = _exposed(fn, module, "metrics", "generate")
        return found

    yield Target(
        name=spec,
        call=fn,
        monitor=monitor,
        embedded=_embedded_of(fn, module),
        metrics=metrics,
    )


def _exposed(fn: Any, module: Any, attr: str, method: str) -> Any:
    """`attr` of the function, of its module or of the module's `manager`, if it has `method`."""
    found = getattr(fn, attr, None) or getattr(module, attr, None)
    if found is None:
        manager = getattr(module, "manager", None)
        found = getattr(manager, attr, None) if manager is not None else None
    return found if callable(getattr(found, method, None)) else None


def _embedded_of(*owners: Any) -> EmbeddedPostgres | None:
    """The `EmbeddedPostgres` an ``embedded`` attribute of the function or module names."""
    from bounded.db.embedded import EmbeddedPostgres

    for owner in owners:
        found = getattr(owner, "embedded", None)
        if isinstance(found, EmbeddedPostgres):
            return found
    return None


def open_target(spec: str, **http_options: Any) -> contextlib.AbstractAsyncContextManager[Target]:
    """Resolve a TARGET string (see the module docstring) into an async context manager.

    `http_options` go to `http_target` when `spec` is a URL.
    """
    if "://" in spec:
        return http_target(spec, **http_options)
    if ":" in spec:
        return _callable_target(spec)
    factory = _registered(spec)
    if factory is None:
        known = sorted(
            set(_REGISTRY)
            | {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
        )
        raise ValueError(
            f"target: {spec!r} is not a URL, a module:function or a registered name "
            f"(registered: {', '.join(known) or 'none'})"
        )
    return factory()
