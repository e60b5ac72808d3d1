"""BND002: a new database connection per operation (per call, per loop item) instead of a pool."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bounded.audit.core import Rule
from bounded.audit.model import ModuleModel, Scope

if TYPE_CHECKING:
    from bounded.audit.model import CallHook

RULE = Rule(
    "BND002",
    "connection-per-operation",
    "A new database connection per operation instead of a pool.",
    "create one `bounded.DatabasePool` (or asyncpg.create_pool) at start-up and use "
    "`async with pool.connection() as conn`",
)
_CONNECT_PER_OP = (
    "asyncpg.connect",
    "psycopg.AsyncConnection.connect",
    "aiomysql.connect",
    "aiosqlite.connect",
    "aiopg.connect",
    "asyncmy.connect",
)
# Functions that run once at start-up (or own a long-lived connection), not per request;
# creating or updating the schema is a start-up step too.
_STARTUP_NAME = re.compile(
    r"main|start|setup|set_up|init|lifespan|bootstrap|connect|migrat|open|aenter|create_app"
    r"|pool|warm|cli|prepare|probe|ping|reachable|ready|health|admin|schema",
    re.IGNORECASE,
)


@dataclass(slots=True)
class _State:
    by_scope: dict[Scope, list[tuple[ast.Call, str]]] = field(default_factory=dict)


def _connect(m: ModuleModel, node: ast.Call, q: str) -> None:
    scope = m.scope
    if len(m.scopes) == 1 or _STARTUP_NAME.search(scope.name) or id(node) in m.lifetime:
        return  # at import, at start-up, or stored on an object for its lifetime
    where = "in a loop" if scope.loop_depth else f"in {scope.name}()"
    per = "item" if scope.loop_depth else "operation"
    message = f"{q}() {where}: a new database connection per {per}"
    m.state(_State).by_scope.setdefault(scope, []).append((node, message))


def _sync_connect(m: ModuleModel, node: ast.Call, q: str) -> None:
    if m.in_async:
        m.report(
            node,
            RULE.code,
            "psycopg2.connect() inside async def: a blocking new connection per call",
        )


CALLS: dict[str, CallHook] = dict.fromkeys(_CONNECT_PER_OP, _connect)
CALLS["psycopg2.connect"] = _sync_connect


def scope_end(m: ModuleModel, scope: Scope) -> None:
    found = m.state(_State).by_scope.pop(scope, None)
    if found is None or scope.is_generator:
        return  # a generator (an async context manager) holds its connection for its lifetime
    for node, message in found:
        m.report(node, RULE.code, message)
