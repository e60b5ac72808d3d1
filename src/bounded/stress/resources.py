"""Sample the process (and what the target exposes) once per interval during a run.

Figures: RSS, CPU, asyncio tasks, threads, open file descriptors; PostgreSQL
connections to the target's database from ``pg_stat_activity`` when a DSN is given
(the sampler's own connection is not counted); and, when the target exposes a
`ConcurrencyMonitor`, every resource of its ``snapshot()`` and every alert it raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import psutil  # type: ignore[import-untyped]

from bounded.stress.targets import Monitored

__all__ = ["ResourceSampler"]

logger = logging.getLogger("bounded.stress")

_PG_QUERY = """
select count(*) from pg_stat_activity
where datname = current_database() and backend_type = 'client backend'
  and pid <> pg_backend_pid()
"""
_PG_TIMEOUT = 2.0


class ResourceSampler:
    """``async with ResourceSampler(...) as s: figures = await s()``; safe to call each second.

    `dsn` is used for one connection of its own (application_name
    ``bounded-stress-sampler``); it never appears in a log or result.
    """

    def __init__(
        self,
        *,
        dsn: str | None = None,
        monitor: Callable[[], Monitored | None] = lambda: None,
    ) -> None:
        self._dsn = dsn
        self._monitor = monitor
        self._process = psutil.Process()
        self._conn: Any = None
        self._watched: Any = None
        #: Alerts of the target's monitor: {"time" (loop clock), "resource", "kind",
        #: "state", "utilization"}, in the order they came.
        self.alerts: list[dict[str, Any]] = []

    def _watch_alerts(self, monitor: Monitored | None) -> None:
        on_alert = getattr(monitor, "on_alert", None)
        if monitor is None or monitor is self._watched or not callable(on_alert):
            return
        self._watched = monitor
        loop = asyncio.get_running_loop()

        def record(alert: Any) -> None:
            if self._watched is monitor:
                self.alerts.append(
                    {
                        "time": loop.time(),
                        "resource": alert.resource,
                        "kind": alert.kind,
                        "state": alert.state,
                        "utilization": alert.utilization,
                    }
                )

        on_alert(record)

    async def __aenter__(self) -> Self:
        self._process.cpu_percent(None)  # the first reading starts the CPU clock
        self._watch_alerts(self._monitor())
        if self._dsn is not None:
            import asyncpg

            try:
                self._conn = await asyncpg.connect(
                    self._dsn,
                    timeout=5.0,
                    server_settings={"application_name": "bounded-stress-sampler"},
                )
            except (OSError, asyncpg.PostgresError) as exc:
                # The DSN is not repeated: it may carry a password.
                raise ConnectionError(
                    f"resource sampler: cannot connect to PostgreSQL ({type(exc).__name__})"
                ) from None
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._watched = None  # a monitor outliving the run keeps a callback that does nothing
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=2.0)
            self._conn = None

    async def __call__(self) -> dict[str, Any]:
        """The figures at this instant (numbers, plus ``monitor``: a list of resources)."""
        p = self._process
        with p.oneshot():
            figures: dict[str, Any] = {
                "rss_bytes": p.memory_info().rss,
                "cpu_percent": p.cpu_percent(None),
                "threads": p.num_threads(),
                "tasks": len(asyncio.all_tasks()),
            }
            if hasattr(p, "num_fds"):
                figures["fds"] = p.num_fds()
        if self._conn is not None:
            try:
                async with asyncio.timeout(_PG_TIMEOUT):
                    figures["db_connections"] = int(await self._conn.fetchval(_PG_QUERY))
            except Exception as exc:
                logger.warning("pg_stat_activity sample failed: %s", type(exc).__name__)
        monitor = self._monitor()
        self._watch_alerts(monitor)
        if monitor is not None:
            figures["monitor"] = [
                {
                    "kind": s.kind,
                    "name": s.name,
                    "in_use": s.in_use,
                    "limit": s.limit,
                    "queued": s.queued,
                    "utilization": s.utilization,
                    "rejected_total": s.rejected_total,
                    "state": s.state,
                }
                for s in monitor.snapshot()
            ]
        return figures
