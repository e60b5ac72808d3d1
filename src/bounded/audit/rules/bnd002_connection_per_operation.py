"""BND002: a new database connection (or MCP client session) per operation instead of a pool."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bounded.audit.core import Rule
from bounded.audit.model import ModuleModel, Scope, callee_name
from bounded.audit.names import dotted

if TYPE_CHECKING:
    from bounded.audit.model import CallHook

RULE = Rule(
    "BND002",
    "connection-per-operation",
    "A new database connection per operation instead of a pool.",
    "create one `bounded.DatabasePool` (or asyncpg.create_pool) at start-up and use "
    "`async with pool.connection() as conn`",
)
# Client-server drivers only: an embedded database (aiosqlite) opens a local file, with no
# handshake, server process or connection limit to exhaust.
_CONNECT_PER_OP = (
    "asyncpg.connect",
    "psycopg.AsyncConnection.connect",
    "aiomysql.connect",
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


def kept_from_start_up(m: ModuleModel, node: ast.Call) -> bool:
    """The connection `node` opens is stored on an object by a start-up function
    (``self.conn = psycopg2.connect(...)`` in ``initialize()``): one for the object's
    lifetime, opened before it serves, not one per operation."""
    return id(node) in m.lifetime and _STARTUP_NAME.search(m.scope.name) is not None


def _sync_connect(m: ModuleModel, node: ast.Call, q: str) -> None:
    if m.in_async and not kept_from_start_up(m, node):
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


# An MCP client session: for a stdio server, a new server process.
_MCP_SESSIONS = frozenset({"mcp.ClientSession", "mcp.client.session.ClientSession"})
# What a caller asks of an MCP server; listing what it offers is discovery, usually done once.
_MCP_OPERATIONS = frozenset({"call_tool", "read_resource", "get_prompt"})


@dataclass(slots=True)
class _Sessions:
    # `async with opener(...) as session` blocks whose body does one operation, with the
    # opening call and the function they are in: whether the opener makes an MCP session
    # is known at the module's end (``from mcp import ClientSession`` may be imported
    # inside the opener, further down)
    single_use: list[tuple[ast.Call, ast.AST | None]] = field(default_factory=list)


def async_with(m: ModuleModel, node: ast.AsyncWith) -> None:
    """``async with open_session(...) as session:`` whose body does one MCP operation."""
    if not m.in_async or len(node.items) != 1 or _STARTUP_NAME.search(m.scope.name):
        return
    item = node.items[0]
    call = item.context_expr
    target = item.optional_vars
    if (
        isinstance(call, ast.Call)
        and isinstance(target, ast.Name)
        and _one_operation(m, node.body, target.id)
    ):
        m.state(_Sessions).single_use.append((call, m.scope.node))


def _one_operation(m: ModuleModel, body: list[ast.stmt], session: str) -> bool:
    """`body` uses `session` for exactly one operation (``call_tool``, or a helper of this
    module it passes the session to that does one), outside any loop, and for nothing else
    but ``initialize()``."""
    operations = 0
    uses = 0  # the session's name as a receiver or an argument accounted for
    stack: list[tuple[ast.AST, bool]] = [(stmt, False) for stmt in body]
    while stack:
        sub, in_loop = stack.pop()
        if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(sub, ast.Call):
            func = sub.func
            if isinstance(func, ast.Attribute) and _is_name(func.value, session):
                uses += 1
                if func.attr in _MCP_OPERATIONS:
                    operations += 1 + in_loop  # in a loop: many operations on one session
                elif func.attr != "initialize":
                    return False
            elif any(_is_name(arg, session) for arg in sub.args):
                helper = m.functions.get(callee_name(sub) or "")
                if helper is None or not _calls_operation(helper):
                    return False
                uses += 1
                operations += 1 + in_loop
        elif isinstance(sub, ast.Name) and sub.id == session:
            uses -= 1
        loop = isinstance(sub, ast.For | ast.AsyncFor | ast.While | _COMPREHENSIONS)
        stack.extend((child, in_loop or loop) for child in ast.iter_child_nodes(sub))
    return operations == 1 and uses == 0


_COMPREHENSIONS = ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _calls_operation(fn: ast.AST) -> bool:
    return any(
        isinstance(sub, ast.Call)
        and isinstance(sub.func, ast.Attribute)
        and sub.func.attr in _MCP_OPERATIONS
        for sub in ast.walk(fn)
    )


def _opens_mcp_session(m: ModuleModel, call: ast.Call) -> bool:
    """`call` builds an MCP ``ClientSession``, or calls this module's async context manager
    that enters one and yields it (``async with self._session(server) as session``)."""
    if m.qualname(call.func) in _MCP_SESSIONS:
        return True
    opener = m.functions.get(callee_name(call) or "")
    if not isinstance(opener, ast.AsyncFunctionDef) or not any(
        (dotted(d) or "").endswith("asynccontextmanager") for d in opener.decorator_list
    ):
        return False
    inner = [sub for sub in ast.walk(opener) if isinstance(sub, ast.AsyncWith)]
    return any(
        isinstance(item.context_expr, ast.Call)
        and m.qualname(item.context_expr.func) in _MCP_SESSIONS
        and any(isinstance(sub, ast.Yield) for sub in ast.walk(block))
        for block in inner
        for item in block.items
    )


def module_end(m: ModuleModel) -> None:
    for call, function in m.state(_Sessions).single_use:
        if function is not None and any(isinstance(sub, ast.Yield) for sub in ast.walk(function)):
            continue  # a generator holds its session for its lifetime
        if _opens_mcp_session(m, call):
            m.report(
                call,
                RULE.code,
                "a new MCP client session (for a stdio server, a new server process) for "
                "one operation: a connection per operation",
            )
