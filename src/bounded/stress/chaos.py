"""A schedule of faults, each with a start and a duration, played during a run.

An event is written ``START+DURATION KIND[:key=value,...]`` (seconds from the run's
start), e.g. ``10+5 network:latency=0.2,jitter=0.05``. Kinds:

- ``network``: `Faults` fields on the `FaultProxy` in front of the dependency
  (``latency``, ``jitter``, ``bandwidth``, ``slow_close``, ``reset``, ``blackhole``,
  ``refuse``);
- ``provider``: fields of the mock provider's config set through its admin endpoint
  (``PATCH /admin/config``), e.g. ``error_rate=1,error_statuses=529`` or ``rpm=10``;
  the previous values come back at the end;
- ``db_terminate``: every client backend of the DSN's database is terminated
  (``pg_terminate_backend``) at the start of the window;
- ``db_restart``: an embedded PostgreSQL (`bounded.db.embedded.EmbeddedPostgres`, one
  the target started itself, never the machine's server) is stopped for the window and
  started again at its end;
- ``memory``: a ballast of ``mib`` MiB (pages touched, so it is resident) held for the window;
- ``cpu``: ``workers`` busy processes for the window.

Every fault is undone at the end of its window, and at once if the run stops early.
`random_schedule` draws a seeded schedule. Each played window is recorded as an event
``{"name", "kind", "start", "end"}`` for the result and the report's time axis.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bounded._validate import non_negative, positive
from bounded.stress.faultproxy import FaultProxy, Faults

if TYPE_CHECKING:
    from bounded.db.embedded import EmbeddedPostgres
    from bounded.http import HttpClient

__all__ = ["KINDS", "ChaosEvent", "Injectors", "parse_chaos", "play", "random_schedule"]

KINDS = ("network", "provider", "db_terminate", "db_restart", "memory", "cpu")
_SPEC = re.compile(
    r"^\s*(?P<start>[0-9.]+)\s*\+\s*(?P<duration>[0-9.]+)\s+(?P<kind>[a-z_]+)(?::(?P<params>.*))?$"
)
_TERMINATE = """
select count(pg_terminate_backend(pid)) from pg_stat_activity
where datname = current_database() and backend_type = 'client backend'
  and pid <> pg_backend_pid() and application_name <> 'bounded-stress-sampler'
"""


def _value(raw: str) -> Any:
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    if "|" in raw:
        return [_value(v) for v in raw.split("|") if v]
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


@dataclass(frozen=True)
class ChaosEvent:
    """One fault window: `kind` with `params`, from `start` for `duration` seconds."""

    start: float
    duration: float
    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        non_negative("start", self.start)
        non_negative("duration", self.duration)
        if self.kind not in KINDS:
            raise ValueError(f"chaos: unknown kind {self.kind!r}; known: {', '.join(KINDS)}")

    @property
    def name(self) -> str:
        """A short label, e.g. ``network latency=0.2``."""
        params = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kind} {params}".strip()


def parse_chaos(spec: str) -> ChaosEvent:
    """Parse ``START+DURATION KIND[:key=value,...]``; lists as ``a|b`` (one element: ``a|``)."""
    m = _SPEC.match(spec)
    if m is None:
        raise ValueError(
            f"chaos: cannot parse {spec!r}; expected START+DURATION KIND[:key=value,...], "
            "e.g. '10+5 network:latency=0.2'"
        )
    params: dict[str, Any] = {}
    for item in filter(None, (m["params"] or "").split(",")):
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"chaos: parameter {item!r} in {spec!r} is not key=value")
        params[key.strip()] = _value(raw.strip())
    event = ChaosEvent(float(m["start"]), float(m["duration"]), m["kind"], params)
    if event.kind == "network":
        Faults(**params)  # unknown or bad fields fail now, not mid-run
    return event


def random_schedule(
    seed: int, duration: float, kinds: Sequence[ChaosEvent], count: int = 3
) -> list[ChaosEvent]:
    """`count` windows drawn from the `kinds` templates at seeded, non-overlapping times.

    Each template's own duration is kept; starts fall in the middle 80% of the run.
    """
    positive("duration", duration)
    rng = random.Random(seed)
    slot = duration * 0.8 / count
    events = []
    for n in range(count):
        template = rng.choice(list(kinds))
        length = min(template.duration, slot * 0.8)
        start = duration * 0.1 + n * slot + rng.uniform(0, slot - length)
        events.append(ChaosEvent(round(start, 3), length, template.kind, dict(template.params)))
    return events


def _spin(parent: int, seconds: float) -> None:  # pragma: no cover - runs in a child process
    # Bounded on its own too: if the parent dies without terminating it, it stops by itself.
    end = time.monotonic() + seconds
    while time.monotonic() < end and os.getppid() == parent:
        for _ in range(100_000):
            pass


@dataclass
class Injectors:
    """What the faults act on; a kind whose injector is missing is a ValueError up front."""

    proxy: FaultProxy | None = None
    provider_admin: str | None = None  # base URL of the mock provider, e.g. http://127.0.0.1:8080
    provider_token: str | None = field(default=None, repr=False)  # the mock's admin token
    dsn: str | None = None
    embedded: EmbeddedPostgres | None = None

    def check(self, events: Sequence[ChaosEvent]) -> None:
        """Raise ValueError when an event needs an injector that is not configured."""
        needs = {
            "network": self.proxy,
            "provider": self.provider_admin,
            "db_terminate": self.dsn,
            "db_restart": self.embedded,
        }
        for e in events:
            if e.kind in needs and needs[e.kind] is None:
                raise ValueError(f"chaos: {e.kind!r} events need the {_NEEDS[e.kind]}")
            if e.kind == "provider" and not self.provider_token:
                raise ValueError(
                    "chaos: 'provider' events need the mock provider's admin token "
                    "(--provider-admin-token or BOUNDED_MOCK_ADMIN_TOKEN)"
                )

    async def preflight(self, events: Sequence[ChaosEvent]) -> None:
        """Raise ValueError, before any load, when the mock provider cannot take the
        ``provider`` events: unreachable, the admin token refused, or a field it does not have.
        """
        changed = {k for e in events if e.kind == "provider" for k in e.params}
        if not changed:
            return
        try:
            async with self._admin() as (client, base):
                config = (await client.get(base + "/config")).json()
                await client.request("PATCH", base + "/config", json={})  # the token alone
        except Exception as exc:
            raise ValueError(
                f"chaos: the mock provider's admin API at {self.provider_admin}: {exc}"
            ) from None
        unknown = sorted(changed - set(config))
        if unknown:
            raise ValueError(
                f"chaos: the mock provider has no field {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(config))}"
            )

    @contextlib.asynccontextmanager
    async def applied(self, event: ChaosEvent) -> AsyncIterator[dict[str, Any]]:
        """Apply `event`'s fault for the duration of the block.

        The block gets a dict the injector fills with what it measured (``provider``:
        ``upstream_requests``, the requests the provider received during the window).
        """
        measured: dict[str, Any] = {}
        if event.kind == "network":
            assert self.proxy is not None
            async with self.proxy.fault(**event.params):
                yield measured
        elif event.kind == "provider":
            async with self._provider(event.params, measured):
                yield measured
        elif event.kind == "db_terminate":
            await self._terminate()
            yield measured
        elif event.kind == "db_restart":
            assert self.embedded is not None
            await asyncio.to_thread(self.embedded.stop)
            try:
                yield measured
            finally:
                await asyncio.to_thread(self.embedded.start)
        elif event.kind == "memory":
            ballast = bytearray(int(float(event.params.get("mib", 256)) * 2**20))
            ballast[::4096] = b"\x01" * len(ballast[::4096])  # touch every page
            try:
                yield measured
            finally:
                del ballast
        else:
            workers = int(event.params.get("workers", 1))
            async with self._busy(workers, event.duration):
                yield measured

    @contextlib.asynccontextmanager
    async def _admin(self) -> AsyncIterator[tuple[HttpClient, str]]:
        """A client carrying the mock provider's admin token, and its ``/admin`` base URL."""
        from bounded.http import HttpClient

        assert self.provider_admin is not None
        token = {"x-admin-token": self.provider_token or ""}
        async with HttpClient("chaos", timeout=5.0, headers=token) as client:
            yield client, self.provider_admin.rstrip("/") + "/admin"

    @contextlib.asynccontextmanager
    async def _provider(
        self, changes: dict[str, Any], measured: dict[str, Any]
    ) -> AsyncIterator[None]:
        async with self._admin() as (client, base):
            before = (await client.get(base + "/config")).json()
            requests_before = (await client.get(base + "/stats")).json()["requests_total"]
            await client.request("PATCH", base + "/config", json=changes)
            try:
                yield
            finally:
                restore = {k: before[k] for k in changes}
                await client.request("PATCH", base + "/config", json=restore)
                # Counted over the same span as the window's recorded start and end.
                requests_after = (await client.get(base + "/stats")).json()["requests_total"]
                measured["upstream_requests"] = requests_after - requests_before

    async def _terminate(self) -> None:
        import asyncpg

        # One short-lived admin connection per fault window, outside the target's pool.
        conn = await asyncpg.connect(self.dsn, timeout=5.0)  # bounded: ignore[BND002]
        try:
            await conn.fetchval(_TERMINATE)
        finally:
            await conn.close()

    @contextlib.asynccontextmanager
    async def _busy(self, workers: int, seconds: float) -> AsyncIterator[None]:
        ctx = multiprocessing.get_context("spawn")
        # The workers' own limit leaves room for a late start; terminate() ends them on time.
        args = (os.getpid(), seconds + 10.0)
        procs = [ctx.Process(target=_spin, args=args, daemon=True) for _ in range(max(1, workers))]
        for p in procs:
            p.start()
        try:
            yield
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                await asyncio.to_thread(p.join, 5.0)


_NEEDS = {
    "network": "fault proxy (--proxy LISTEN_PORT:UPSTREAM_PORT)",
    "provider": "mock provider's base URL (--provider-admin URL)",
    "db_terminate": "database DSN (--dsn)",
    "db_restart": (
        "embedded PostgreSQL the target owns (Target(embedded=...) from a registered "
        "target, or an `embedded` attribute of the target function or its module)"
    ),
}


async def play(
    events: Sequence[ChaosEvent], injectors: Injectors, record: list[dict[str, Any]]
) -> None:
    """Play `events` from now (time 0), appending each window to `record` as it ends.

    A fault that fails to apply or lift ends its own window with an ``error`` (the others
    go on). Cancelling it lifts whatever fault is in force.
    """
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def one(event: ChaosEvent) -> None:
        await asyncio.sleep(max(0.0, t0 + event.start - loop.time()))
        started = loop.time() - t0
        measured: dict[str, Any] = {}
        try:
            async with injectors.applied(event) as measured:
                await asyncio.sleep(event.duration)
        except Exception as exc:
            measured = {**measured, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            record.append(
                {
                    "name": event.name,
                    "kind": event.kind,
                    "start": round(started, 3),
                    "end": round(loop.time() - t0, 3),
                    **measured,
                }
            )

    async with asyncio.TaskGroup() as tg:
        for event in events:
            tg.create_task(one(event))
