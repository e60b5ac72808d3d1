"""The rules `bounded audit` checks: one code per FM-043 pattern, with its `bounded` fix."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_CODES", "RULES", "Rule", "expand_codes"]


@dataclass(frozen=True, slots=True)
class Rule:
    """A check: its code, a short name, what it finds and the one-line fix printed with it.

    A rule that is not `default` reports style, not a run-time fault: it runs only when
    selected (``--select BND010``) and is reported at SARIF level ``note``.
    """

    code: str
    name: str
    summary: str
    fix: str
    default: bool = True


RULES: dict[str, Rule] = {
    rule.code: rule
    for rule in (
        Rule(
            "BND000",
            "syntax-error",
            "The file could not be parsed, so it was not checked.",
            "fix the syntax error (the file is skipped until then)",
        ),
        Rule(
            "BND001",
            "unbounded-gather",
            "asyncio.gather/wait/as_completed over a collection whose size is not a constant, "
            "with no concurrency bound in sight.",
            "use `await bounded.gather(*aws, limit=N)` or `await bounded.map(fn, items, limit=N)`",
        ),
        Rule(
            "BND002",
            "connection-per-operation",
            "A new database connection per operation instead of a pool.",
            "create one `bounded.DatabasePool` (or asyncpg.create_pool) at start-up and use "
            "`async with pool.connection() as conn`",
        ),
        Rule(
            "BND003",
            "daemon-thread",
            "Daemon threads, or threads used as timeouts with join(timeout).",
            "use `await bounded.to_thread(fn, ...)` with `asyncio.timeout(...)`, or a "
            "non-daemon thread that is joined",
        ),
        Rule(
            "BND004",
            "get-event-loop",
            "asyncio.get_event_loop() where no loop may be running, and loop= arguments.",
            "use `asyncio.get_running_loop()` in coroutines and `asyncio.run(main())` at the top",
        ),
        Rule(
            "BND005",
            "blocking-call-in-async",
            "A blocking call inside `async def` stalls the whole event loop.",
            "use the async client (`bounded.HttpClient`, httpx.AsyncClient, AsyncOpenAI, "
            "`await asyncio.sleep`) or `await bounded.to_thread(fn, ...)`",
        ),
        Rule(
            "BND006",
            "unclosed-resource",
            "An async client or pool created without `async with`, try/finally close, or an "
            "owner that closes it.",
            "use `async with` (or `bounded.HttpClient`/`bounded.DatabasePool` owned by a "
            "ConcurrencyManager), or close it in `finally`",
        ),
        Rule(
            "BND007",
            "breaker-bypass",
            "A circuit breaker bypassed (calling the unprotected function) or disabled/forced "
            "outside tests.",
            "call through the breaker (`await cb.call(fn, ...)` or the decorated function)",
        ),
        Rule(
            "BND008",
            "retry-without-jitter",
            "A retry loop that sleeps a constant or deterministic backoff: every client retries "
            "in lock-step.",
            "use `bounded.Retry(on=..., backoff=bounded.Backoff(jitter='full'))` or add "
            "`random.uniform(...)` to the delay",
        ),
        Rule(
            "BND009",
            "dropped-task",
            "asyncio.create_task/ensure_future whose result is dropped: the task can be "
            "garbage-collected mid-flight and its exception is lost.",
            "keep a reference: `tm.spawn(coro)` on a `bounded.TaskManager`, or store and await "
            "the task",
        ),
        Rule(
            "BND010",
            "get-event-loop-in-coroutine",
            "asyncio.get_event_loop() inside a coroutine: it returns the running loop, so it "
            "works, but it reads as if a loop could be created (style; off by default).",
            "use `asyncio.get_running_loop()` (`bounded audit --select BND010 --fix` rewrites it)",
            default=False,
        ),
    )
}
DEFAULT_CODES: frozenset[str] = frozenset(code for code, rule in RULES.items() if rule.default)


def expand_codes(tokens: list[str]) -> set[str]:
    """Codes named by `tokens` (codes or prefixes such as ``BND00``); ValueError if unknown."""
    selected: set[str] = set()
    for raw in tokens:
        token = raw.strip().upper()
        if not token:
            continue
        if token == "ALL":
            selected.update(RULES)
            continue
        matched = [code for code in RULES if code.startswith(token)]
        if not matched:
            raise ValueError(f"unknown rule code {raw.strip()!r} (known: {', '.join(RULES)})")
        selected.update(matched)
    return selected
