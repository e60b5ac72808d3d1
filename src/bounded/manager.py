"""`ConcurrencyManager`: the registry of every limit a service uses."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from bounded._extras import missing_extra_message
from bounded.config.exceptions import resolve_exceptions
from bounded.config.loader import (
    ConfigErrors,
    load_dict,
    load_text,
    read_config,
    read_config_bytes,
)
from bounded.config.models import (
    BoundedConfig,
    BreakerConfig,
    BulkheadConfig,
    DatabaseConfig,
    HttpClientConfig,
    PolicyConfig,
    ProviderConfig,
    RateLimitConfig,
    RetryConfig,
)
from bounded.errors import ConfigError
from bounded.metrics import Metrics, MetricsServer
from bounded.monitor import ConcurrencyMonitor

if TYPE_CHECKING:
    from bounded.breaker import CircuitBreaker
    from bounded.bulkhead import Bulkhead
    from bounded.db import DatabasePool
    from bounded.http import HttpClient
    from bounded.llm.limits import ProviderLimits
    from bounded.policy import Policy
    from bounded.ratelimit import RateLimiter
    from bounded.redis import RedisBackend, RedisBulkhead, RedisRateLimiter
    from bounded.retry import Retry
    from bounded.tasks import TaskManager

__all__ = ["ConcurrencyManager"]

logger = logging.getLogger("bounded.manager")

# Settings of a live breaker (`shared` picks its class: fixed until a restart).
_BREAKER_FIELDS = tuple(f for f in BreakerConfig.model_fields if f != "shared")


def _breaker_settings(cfg: BreakerConfig) -> dict[str, Any]:
    """Keyword arguments of `CircuitBreaker` from its configuration (names -> types)."""
    settings = cfg.model_dump(exclude={"shared"})
    for field in ("failure_on", "ignore"):
        settings[field] = resolve_exceptions(settings[field])
    return settings


class ConcurrencyManager:
    """One registry per service: named bulkheads, rate limiters, breakers, retries,
    policies, database pools and HTTP clients, built from one configuration.

    Each accessor returns the same live object for a name every time. A name that is not
    declared gets the `defaults` section (or a `ConfigError` with ``strict: true``).
    ``async with manager:`` opens the declared pools and clients and starts the monitor,
    the reload watcher and the metrics endpoint; leaving it stops them in reverse order.
    """

    def __init__(
        self,
        config: BoundedConfig | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        watch: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._config = config if config is not None else BoundedConfig()
        self._path = Path(path) if path is not None else None
        self._watch = watch and self._path is not None
        self._env = env
        monitoring = self._config.monitoring
        self._monitor = ConcurrencyMonitor(
            interval=monitoring.interval, alert_threshold=self._config.alert_threshold
        )
        self._metrics = Metrics(self._monitor)
        self._tracer = _otel_tracer() if monitoring.tracing else None
        self._bulkheads: dict[str, Bulkhead | RedisBulkhead] = {}
        self._rate_limiters: dict[str, RateLimiter | RedisRateLimiter] = {}
        self._backend = self._create_backend()
        self._breakers: dict[str, CircuitBreaker] = {}
        self._retries: dict[str, Retry] = {}
        self._retry_configs: dict[str, RetryConfig] = {}
        self._policies: dict[str, Policy] = {}
        self._policy_configs: dict[str, PolicyConfig] = {}
        self._databases: dict[str, DatabasePool] = {}
        self._http_clients: dict[str, HttpClient] = {}
        self._providers: dict[str, ProviderLimits] = {}
        self._state: Literal["new", "starting", "running", "closed"] = "new"
        from bounded.tasks import TaskManager

        self._tasks = TaskManager(name="bounded-manager")
        self._server: MetricsServer | None = None
        self._stop_watch: asyncio.Event | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._reload_lock: asyncio.Lock | None = None
        self._file_text: bytes | None = None  # the content of the configuration in force
        self._undeclared: set[tuple[str, str]] = set()
        #: How many distinct undeclared names may get `defaults` (bounded registry).
        self.max_undeclared = 1000
        #: Successful and rejected reloads so far.
        self.reloads = 0
        self.failed_reloads = 0
        self._create_declared()

    def __repr__(self) -> str:
        source = f" {str(self._path)!r}" if self._path is not None else ""
        return (
            f"<ConcurrencyManager{source} {self._state} bulkheads={len(self._bulkheads)} "
            f"rate_limiters={len(self._rate_limiters)} breakers={len(self._breakers)} "
            f"databases={len(self._databases)} http_clients={len(self._http_clients)}>"
        )

    # -- construction --------------------------------------------------------------------

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        watch: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> ConcurrencyManager:
        """Load `path` (YAML); with `watch`, changes to the file are applied while running."""
        text, config = _read_config(Path(path), env)
        manager = cls(config, path=path, watch=watch, env=env)
        manager._file_text = text
        return manager

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, env: Mapping[str, str] | None = None
    ) -> ConcurrencyManager:
        """Build from an already parsed configuration (overrides and interpolation apply)."""
        return cls(load_dict(data, env=env, source="<dict>"), env=env)

    def _create_declared(self) -> None:
        config = self._config
        for name in config.bulkheads:
            self.bulkhead(name)
        for name in config.rate_limits:
            self.rate_limiter(name)
        for name in config.breakers:
            self.breaker(name)
        for name in config.providers:
            self.provider(name)

    # -- properties ----------------------------------------------------------------------

    @property
    def config(self) -> BoundedConfig:
        """The configuration in force (replaced by each successful reload)."""
        return self._config

    @property
    def monitor(self) -> ConcurrencyMonitor:
        """The monitor that sees every resource of this manager."""
        return self._monitor

    @property
    def metrics(self) -> Metrics:
        """The Prometheus metrics of this manager (a private registry)."""
        return self._metrics

    @property
    def metrics_url(self) -> str | None:
        """The URL of the `/metrics` endpoint while it is serving, else None."""
        return self._server.url if self._server is not None else None

    @property
    def tasks(self) -> TaskManager:
        """The manager's own `TaskManager`: spawn background work here, and it is
        cancelled (and awaited) when the manager closes, after its monitor and reloads."""
        return self._tasks

    @property
    def running(self) -> bool:
        """True between `start()` and `close()`."""
        return self._state == "running"

    # -- registry ------------------------------------------------------------------------

    def _lookup(self, section: str, name: str, default: Any) -> Any:
        declared: dict[str, Any] = getattr(self._config, section)
        if name in declared:
            return declared[name]
        if self._config.strict:
            raise ConfigError(f"{section}.{name}", "not declared (strict mode)")
        if default is None:
            raise ConfigError(f"{section}.{name}", f"not declared, and {section} have no defaults")
        self._check_undeclared(section, name)
        return default

    def _check_undeclared(self, section: str, name: str) -> None:
        # Names built from request data would grow the registry (and the metrics) forever.
        self._undeclared.add((section, name))
        if len(self._undeclared) > self.max_undeclared:
            self._undeclared.discard((section, name))
            raise ConfigError(
                f"{section}.{name}",
                f"more than {self.max_undeclared} undeclared names: declare them, and never "
                "build resource names from request data",
            )

    def _track(self, kind: str, name: str, obj: Any) -> None:
        self._monitor.register(kind, name, obj)
        if hasattr(obj, "wait_observer"):
            obj.wait_observer = self._metrics.observer(kind, name)

    def _create_backend(self) -> RedisBackend | None:
        """The shared-state backend of `backend: {type: redis}` (None: in-process memory)."""
        cfg = self._config.backend
        if cfg.type != "redis" or cfg.url is None:
            return None
        from bounded.redis import RedisBackend

        backend = RedisBackend(
            cfg.url,
            prefix=cfg.prefix,
            on_error=cfg.on_error,
            timeout=cfg.timeout,
            expected_processes=cfg.expected_processes,
            lease=cfg.lease,
            max_connections=cfg.max_connections,
        )
        self._metrics.registry.register(backend.collector())
        return backend

    @property
    def backend(self) -> RedisBackend | None:
        """The Redis backend the limits live in, or None for in-process memory."""
        return self._backend

    def bulkhead(self, name: str) -> Bulkhead | RedisBulkhead:
        """The bulkhead `name` (created on first use from `bulkheads.<name>` or defaults)."""
        found = self._bulkheads.get(name)
        if found is not None:
            return found
        from bounded.bulkhead import Bulkhead

        cfg: BulkheadConfig = self._lookup("bulkheads", name, self._config.defaults.bulkhead)
        bulkhead: Bulkhead | RedisBulkhead
        if self._backend is not None:
            bulkhead = self._backend.bulkhead(
                cfg.limit, name=name, max_queue=cfg.max_queue, max_wait=cfg.max_wait
            )
        else:
            bulkhead = Bulkhead(
                cfg.limit, name=name, max_queue=cfg.max_queue, max_wait=cfg.max_wait
            )
        self._bulkheads[name] = bulkhead
        self._track("bulkhead", name, bulkhead)
        return bulkhead

    def rate_limiter(self, name: str) -> RateLimiter | RedisRateLimiter:
        """The rate limiter `name` (from `rate_limits.<name>`, or `defaults.rate_limit`)."""
        found = self._rate_limiters.get(name)
        if found is not None:
            return found
        from bounded.ratelimit import RateLimiter

        cfg: RateLimitConfig = self._lookup("rate_limits", name, self._config.defaults.rate_limit)
        make = RateLimiter if self._backend is None else self._backend.rate_limiter
        limiter = make(
            cfg.rate,
            cfg.per,
            name=name,
            burst=cfg.burst,
            algorithm=cfg.algorithm,
            max_wait=cfg.max_wait,
        )
        self._rate_limiters[name] = limiter
        self._track("rate_limiter", name, limiter)
        return limiter

    def breaker(self, name: str) -> CircuitBreaker:
        """The circuit breaker `name` (from `breakers.<name>` or `defaults.breaker`)."""
        found = self._breakers.get(name)
        if found is not None:
            return found
        from bounded.breaker import CircuitBreaker

        cfg: BreakerConfig = self._lookup("breakers", name, self._config.defaults.breaker)
        if not cfg.shared:
            breaker = CircuitBreaker(name=name, **_breaker_settings(cfg))
        elif self._backend is not None:
            breaker = self._backend.circuit_breaker(name, **_breaker_settings(cfg))
        else:
            raise ConfigError(f"breakers.{name}.shared", "needs `backend: {type: redis}`")
        self._breakers[name] = breaker
        self._track("breaker", name, breaker)
        self._metrics.watch_breaker(breaker)
        return breaker

    def provider(self, name: str) -> ProviderLimits:
        """The LLM provider limits `name` from `providers.<name>` (declared only)."""
        found = self._providers.get(name)
        if found is not None:
            return found
        if name not in self._config.providers:
            raise ConfigError(f"providers.{name}", "not declared (providers have no defaults)")
        from bounded.llm.limits import ProviderLimits

        cfg = self._config.providers[name]
        provider = ProviderLimits(
            **cfg.limits(),
            period=cfg.period,
            name=name,
            max_wait=cfg.max_wait,
            resync=cfg.resync,
            rate_limit_retries=cfg.rate_limit_retries,
        )
        self._providers[name] = provider
        self._track("provider", name, provider)
        return provider

    def retry(self, name: str) -> Retry:
        """The retry strategy `name` (from `retries.<name>` or `defaults.retry`)."""
        found = self._retries.get(name)
        if found is not None:
            return found
        cfg: RetryConfig = self._lookup("retries", name, self._config.defaults.retry)
        retry = self._build_retry(name, cfg)
        self._retries[name] = retry
        self._retry_configs[name] = cfg
        return retry

    def _build_retry(self, name: str, cfg: RetryConfig) -> Retry:
        from bounded.retry import Backoff, Retry, RetryBudget

        on_retry, on_give_up = self._metrics.retry_hooks(name)
        budget = RetryBudget(cfg.budget.ratio, cfg.budget.min_per_second) if cfg.budget else None
        return Retry(
            on=resolve_exceptions(cfg.on),
            attempts=cfg.attempts,
            backoff=Backoff(
                initial=cfg.backoff.initial,
                max=cfg.backoff.max,
                multiplier=cfg.backoff.multiplier,
                jitter=cfg.backoff.jitter,
            ),
            deadline=cfg.deadline,
            respect_retry_after=cfg.respect_retry_after,
            max_retry_after=cfg.max_retry_after,
            budget=budget,
            name=name,
            on_retry=on_retry,
            on_give_up=on_give_up,
        )

    def _policy_config(self, name: str) -> PolicyConfig:
        if name in self._config.policies:
            return self._config.policies[name]
        if self._config.strict:
            raise ConfigError(f"policies.{name}", "not declared (strict mode)")
        # An undeclared policy: the default timeout, inside a (default) bulkhead of its name.
        self._check_undeclared("policies", name)
        return PolicyConfig(timeout=self._config.defaults.timeout, bulkhead=name)

    def policy(self, name: str) -> Policy:
        """The policy `name`: its retry, breaker, rate limit and bulkhead by name.

        A reload that changes a policy (or its retry settings) replaces the `Policy`
        object, so look it up per call rather than keeping it for the process lifetime.
        """
        found = self._policies.get(name)
        if found is not None:
            return found
        cfg = self._policy_config(name)
        policy = self._build_policy(name, cfg)
        self._policies[name] = policy
        self._policy_configs[name] = cfg
        return policy

    def _build_policy(self, name: str, cfg: PolicyConfig) -> Policy:
        from bounded.policy import Policy

        return Policy(
            name=name,
            deadline=cfg.deadline,
            retry=self.retry(cfg.retry) if cfg.retry else None,
            breaker=self.breaker(cfg.breaker) if cfg.breaker else None,
            rate_limiter=self.rate_limiter(cfg.rate_limit) if cfg.rate_limit else None,
            bulkhead=self.bulkhead(cfg.bulkhead) if cfg.bulkhead else None,
            timeout=cfg.timeout,
            provider=self.provider(cfg.provider) if cfg.provider else None,
            observer=self._metrics.policy(name),
            tracer=self._tracer,
        )

    def database(self, name: str) -> DatabasePool:
        """The database pool `name` from `databases.<name>` (opened by `start()`)."""
        found = self._databases.get(name)
        if found is not None:
            return found
        if name not in self._config.databases:
            raise ConfigError(
                f"databases.{name}",
                "not declared (database pools are declared so that the manager opens them)",
            )
        return self._create_database(name, self._config.databases[name])

    def _create_database(self, name: str, cfg: DatabaseConfig) -> DatabasePool:
        from bounded.db import DatabasePool

        pool = DatabasePool(
            cfg.dsn,
            name=name,
            min_size=cfg.min_size,
            max_size=cfg.max_size,
            acquire_timeout=cfg.acquire_timeout,
            statement_timeout=cfg.statement_timeout,
            ssl=cfg.ssl,
            application_name=cfg.application_name,
        )
        self._databases[name] = pool
        self._track("database", name, pool)
        return pool

    def http_client(self, name: str) -> HttpClient:
        """The HTTP client `name` (from `http_clients.<name>` or `defaults.http_client`)."""
        found = self._http_clients.get(name)
        if found is not None:
            return found
        from bounded.http import HttpClient

        if self._state == "closed":
            raise RuntimeError("the manager is closed")
        cfg: HttpClientConfig = self._lookup(
            "http_clients", name, self._config.defaults.http_client
        )
        client = HttpClient(
            name,
            base_url=cfg.base_url,
            timeout=cfg.timeout,
            max_connections=cfg.max_connections,
            max_keepalive=cfg.max_keepalive,
            headers=cfg.headers,
        )
        self._http_clients[name] = client
        self._track("http_client", name, client)
        return client

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Open declared pools and clients; start the monitor, reload watcher and metrics."""
        if self._state != "new":
            if self._state == "closed":
                raise RuntimeError("a closed ConcurrencyManager cannot be started again")
            return
        self._state = "starting"
        self._reload_lock = asyncio.Lock()
        try:
            for name in self._config.databases:
                await self._open_database(name)
            for name in self._config.http_clients:
                await self.http_client(name).open()
            if self._config.monitoring.enabled:
                self._tasks.spawn(self._monitor.run(), name="bounded-monitor")
            if self._watch:
                self._stop_watch = asyncio.Event()
                self._watch_task = self._tasks.spawn(self._watch_file(), name="bounded-reload")
            prometheus = self._config.monitoring.prometheus
            if prometheus is not None:
                server = MetricsServer(self._metrics, prometheus.host, prometheus.port)
                try:
                    await server.start()
                except OSError as exc:
                    where = f"{prometheus.host}:{prometheus.port}"
                    raise ConfigError(
                        "monitoring.prometheus.port",
                        f"cannot serve metrics on {where}: {exc.strerror or exc}",
                    ) from exc
                self._server = server
        except BaseException:
            await self._shutdown()
            raise
        self._state = "running"

    async def _open_database(self, name: str) -> None:
        """Open pool `name`; a failure names its configuration key and the pool."""
        pool = self.database(name)
        try:
            await pool.open()
        except Exception as exc:
            # The pool's own errors never quote the password; the DSN shown is redacted.
            raise ConfigError(
                f"databases.{name}",
                f"cannot open pool {name!r} ({pool.redacted_dsn}): {type(exc).__name__}: {exc}",
            ) from exc

    async def close(self) -> None:
        """Stop everything `start()` started, in reverse order. Closing twice is harmless."""
        if self._state == "closed":
            return
        await self._shutdown()

    async def _shutdown(self) -> None:
        self._state = "closed"
        server, self._server = self._server, None
        if server is not None:
            await server.close()
        if self._stop_watch is not None:
            self._stop_watch.set()
        stuck = await self._tasks.shutdown(timeout=10.0)
        if stuck:
            logger.error("tasks that would not stop: %s", [t.get_name() for t in stuck])
        await self._monitor.drain()
        for client in reversed(list(self._http_clients.values())):
            try:
                await client.aclose()
            except Exception:
                logger.exception("closing HTTP client %r failed", client.name)
        for pool in reversed(list(self._databases.values())):
            try:
                await pool.close()
            except Exception:
                logger.exception("closing database pool %r failed", pool.name)
        if self._backend is not None:
            await self._backend.aclose()

    async def __aenter__(self) -> ConcurrencyManager:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- hot reload ----------------------------------------------------------------------

    async def _watch_file(self) -> None:
        import watchfiles

        assert self._path is not None
        assert self._stop_watch is not None
        # Watch the directory, not the file: editors and Kubernetes ConfigMaps replace the
        # file (or a symlink to it) rather than writing it in place. Only changes to the
        # file, or to what it resolves through (a ConfigMap's `..data` symlink and the
        # folder it points to), re-read it; it is applied only if its content changed.
        # Other files (a log written next to it) are ignored before watchfiles logs them.
        path = self._path.absolute()

        def concerns_config(_change: watchfiles.Change, changed: str) -> bool:
            if changed == str(path):
                return True
            try:
                target = path.resolve()
                return Path(changed).resolve() in (target, *target.parents[:-1])
            except (OSError, RuntimeError):  # a symlink loop: let reload() report it
                return True

        async for _changes in watchfiles.awatch(
            path.parent,
            watch_filter=concerns_config,
            stop_event=self._stop_watch,
            debounce=200,
            step=50,
            recursive=False,
        ):
            try:
                await self.reload(only_if_changed=True)
            except Exception:  # the watcher must outlive any save; reload logs its own errors
                logger.exception("configuration reload from %s failed; still watching", path)

    async def reload(
        self,
        config: BoundedConfig | Mapping[str, Any] | None = None,
        *,
        only_if_changed: bool = False,
    ) -> bool:
        """Validate a new configuration and apply it to the live objects.

        With no argument the file given to `from_file` is read again (with
        `only_if_changed`, nothing happens if its text is the one in force). A
        configuration that fails validation is not applied: every problem is logged at
        ERROR and False is returned; the running configuration stays in force.
        """
        lock = self._reload_lock
        if lock is None:
            lock = self._reload_lock = asyncio.Lock()
        async with lock:
            source = str(self._path) if config is None else "<reload>"
            try:
                if isinstance(config, BoundedConfig):
                    new = config
                elif config is not None:
                    new = load_dict(config, env=self._env, source="<reload>")
                elif self._path is not None:
                    try:
                        text = await asyncio.to_thread(read_config_bytes, self._path)
                    except OSError as exc:
                        if only_if_changed:
                            return False  # being replaced; the next event reads it
                        message = f"cannot read {self._path}: {exc.strerror or exc}"
                        raise ConfigErrors([ConfigError("", message)]) from None
                    if only_if_changed and text == self._file_text:
                        return False  # another file in the folder changed, or a no-op save
                    # Remember what was read, valid or not, so one bad save logs once.
                    self._file_text = text
                    # Parsing and validating a large file takes a while: not on the loop.
                    new = await asyncio.to_thread(load_text, text, env=self._env, source=source)
                else:
                    raise ValueError("reload() needs a configuration: this manager has no file")
            except ConfigErrors as exc:
                self.failed_reloads += 1
                logger.error(
                    "configuration reload from %s rejected (%d problem(s)); keeping the "
                    "running configuration",
                    source,
                    len(exc.problems),
                )
                for problem in exc.problems:
                    logger.error("reload rejected: %s", problem)
                return False
            self._apply(new)
            if self._state == "running":
                await self._open_new_resources()
            self.reloads += 1
            logger.info("configuration reloaded from %s", source)
            return True

    async def _open_new_resources(self) -> None:
        """Open the pools and clients a reload declared (a failure is logged, not raised)."""
        for name in self._config.databases:
            if name not in self._databases:
                try:
                    await self.database(name).open()
                except Exception as exc:
                    logger.error("databases.%s: cannot open the new pool: %s", name, exc)
        for name in self._config.http_clients:
            if name not in self._http_clients:
                await self.http_client(name).open()

    def _apply(self, new: BoundedConfig) -> None:
        old, self._config = self._config, new
        for name, bulkhead in self._bulkheads.items():
            cfg = self._current("bulkheads", name, old, new.defaults.bulkhead)
            if cfg is not None:
                _set(bulkhead, f"bulkheads.{name}", "max_queue", cfg.max_queue)
                _set(bulkhead, f"bulkheads.{name}", "max_wait", cfg.max_wait)
                _set(bulkhead, f"bulkheads.{name}", "limit", cfg.limit)
        for name, limiter in self._rate_limiters.items():
            rl = self._current("rate_limits", name, old, new.defaults.rate_limit)
            if rl is not None:
                self._apply_rate_limit(name, limiter, rl)
        for name, breaker in self._breakers.items():
            bc = self._current("breakers", name, old, new.defaults.breaker)
            if bc is not None:
                self._apply_breaker(name, breaker, bc)
        for name, provider in self._providers.items():
            declared = new.providers.get(name)
            if declared is None:
                logger.info("providers.%s: removed from the configuration; kept as it was", name)
            elif declared != old.providers.get(name):
                self._apply_provider(name, provider, declared)
        rebuilt: set[str] = set()
        for name in list(self._retries):
            rc = self._current("retries", name, old, new.defaults.retry)
            if rc is not None and rc != self._retry_configs[name]:
                self._retries[name] = self._build_retry(name, rc)
                self._retry_configs[name] = rc
                rebuilt.add(name)
                logger.info("retries.%s: replaced (settings changed)", name)
        for name in list(self._policies):
            if name not in new.policies and name in old.policies:
                logger.info("policies.%s: removed from the configuration; kept as it was", name)
                continue
            pc = new.policies.get(name) or PolicyConfig(timeout=new.defaults.timeout, bulkhead=name)
            if pc != self._policy_configs[name] or (pc.retry is not None and pc.retry in rebuilt):
                self._policies[name] = self._build_policy(name, pc)
                self._policy_configs[name] = pc
                logger.info("policies.%s: replaced (settings changed)", name)
        for section, live in (("databases", self._databases), ("http_clients", self._http_clients)):
            old_section: dict[str, Any] = getattr(old, section)
            new_section: dict[str, Any] = getattr(new, section)
            for name in live:
                if old_section.get(name) != new_section.get(name):
                    logger.warning(
                        "%s.%s: changed settings take effect after a restart", section, name
                    )
        if old.monitoring.prometheus != new.monitoring.prometheus:
            logger.warning("monitoring.prometheus: changes take effect after a restart")
        if old.monitoring.enabled != new.monitoring.enabled:
            logger.warning("monitoring.enabled: changes take effect after a restart")
        if old.monitoring.tracing != new.monitoring.tracing:
            logger.warning("monitoring.tracing: changes take effect after a restart")
        _set(self._monitor, "monitoring", "interval", new.monitoring.interval)
        _set(self._monitor, "", "alert_threshold", new.alert_threshold)
        self._create_declared()

    def _current(self, section: str, name: str, old: BoundedConfig, default: Any) -> Any:
        """The new settings of a live object, or None to leave it as it is."""
        declared: dict[str, Any] = getattr(self._config, section)
        if name in declared:
            return declared[name]
        if name in getattr(old, section):
            logger.info("%s.%s: removed from the configuration; kept as it was", section, name)
            return None
        return default  # undeclared before and now: follows the defaults

    def _apply_breaker(self, name: str, breaker: CircuitBreaker, cfg: BreakerConfig) -> None:
        path = f"breakers.{name}"
        shared = False
        if self._backend is not None:
            from bounded.redis import RedisCircuitBreaker

            shared = isinstance(breaker, RedisCircuitBreaker)
        if cfg.shared != shared:
            logger.warning("%s.shared: changes take effect after a restart", path)
        time_based = breaker.window_seconds is not None
        if time_based != (cfg.window_seconds is not None):
            logger.warning("%s: switching window kind takes effect after a restart", path)
        settings = _breaker_settings(cfg)
        for field in _BREAKER_FIELDS:
            if field == "window" and (time_based or cfg.window_seconds is not None):
                continue
            if field == "window_seconds" and (not time_based or cfg.window_seconds is None):
                continue
            _set(breaker, path, field, settings[field])

    def _apply_provider(self, name: str, provider: ProviderLimits, cfg: ProviderConfig) -> None:
        path = f"providers.{name}"
        limits = cfg.limits()
        kinds = {"requests": "rpm", "tokens": "tpm"}
        kinds.update(input_tokens="input_tpm", output_tokens="output_tpm")
        if {k for k, key in kinds.items() if limits[key] is not None} != set(provider.limiters):
            logger.warning("%s: adding or removing a limit takes effect after a restart", path)
        if cfg.period != provider.limiters[next(iter(provider.limiters))].per:
            logger.warning("%s.period: changes take effect after a restart", path)
        for kind, limiter in provider.limiters.items():
            value = limits[kinds[kind]]
            if value is not None:
                _set(limiter, f"{path}.{kinds[kind]}", "rate", float(value))
        _set(provider, path, "resync", cfg.resync)
        _set(provider, path, "rate_limit_retries", cfg.rate_limit_retries)

    def _apply_rate_limit(
        self, name: str, limiter: RateLimiter | RedisRateLimiter, cfg: RateLimitConfig
    ) -> None:
        path = f"rate_limits.{name}"
        if cfg.algorithm != limiter.algorithm:
            logger.warning("%s.algorithm: changes take effect after a restart", path)
        # `per` is fixed at construction: keep the same units per second.
        _set(limiter, path, "rate", cfg.rate * limiter.per / cfg.per)
        if cfg.algorithm == limiter.algorithm:
            _set(limiter, path, "burst", cfg.burst)
        _set(limiter, path, "max_wait", cfg.max_wait)


def _otel_tracer() -> Any:
    """The OpenTelemetry tracer of `bounded` (`monitoring.tracing: true`)."""
    try:
        from opentelemetry import trace
    except ImportError:
        raise ConfigError(
            "monitoring.tracing", missing_extra_message("OpenTelemetry tracing", "otel")
        ) from None
    return trace.get_tracer("bounded")


def _read_config(path: Path, env: Mapping[str, str] | None) -> tuple[bytes, BoundedConfig]:
    """The content of a configuration file and its validated configuration."""
    text = read_config(path)
    return text, load_text(text, env=env, source=str(path))


def _set(obj: Any, path: str, attr: str, value: Any) -> None:
    """Assign a live setting if it changed, logging the change (or why it could not be)."""
    try:
        current = getattr(obj, attr)
    except AttributeError:
        return
    if current == value or (
        isinstance(current, float | int)
        and isinstance(value, float | int)
        and abs(current - value) <= 1e-9 * max(1.0, abs(value))
    ):
        return
    where = f"{path}.{attr}" if path else attr
    try:
        setattr(obj, attr, value)
    except (AttributeError, ValueError, TypeError) as exc:
        logger.warning("%s: cannot change live (%s); takes effect after a restart", where, exc)
        return
    logger.info("%s: %r -> %r", where, current, value)
