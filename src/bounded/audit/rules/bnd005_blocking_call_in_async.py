"""BND005: a blocking call (sync HTTP, sleep, subprocess, sync client) inside ``async def``."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from bounded.audit.core import Rule
from bounded.audit.model import SYNC_CLIENTS, ModuleModel
from bounded.audit.names import dotted, root_name

if TYPE_CHECKING:
    from bounded.audit.model import CallHook

RULE = Rule(
    "BND005",
    "blocking-call-in-async",
    "A blocking call inside `async def` stalls the whole event loop.",
    "use the async client (`bounded.HttpClient`, httpx2.AsyncClient, AsyncOpenAI, "
    "`await asyncio.sleep`) or `await bounded.to_thread(fn, ...)`",
)
_REQUESTS_VERBS = frozenset(
    {"get", "post", "put", "patch", "delete", "head", "options", "request", "send", "stream"}
)
# Calls that block on a remote peer or for a set time (a blocking child process is BND012:
# how long it blocks, and whether other work shares the loop then, the code does not say).
_BLOCKING_CALLS: dict[str, str] = {
    "time.sleep": "time.sleep() blocks the event loop; use `await asyncio.sleep(...)`",
    "urllib.request.urlopen": "urllib.request.urlopen() is blocking network I/O",
    "psycopg.connect": "psycopg.connect() is a blocking (sync) connection",
}
for _verb in _REQUESTS_VERBS - {"send"}:
    _BLOCKING_CALLS[f"requests.{_verb}"] = f"requests.{_verb}() is blocking HTTP"
    _BLOCKING_CALLS[f"httpx.{_verb}"] = f"httpx.{_verb}() is blocking HTTP"
    _BLOCKING_CALLS[f"httpx2.{_verb}"] = f"httpx2.{_verb}() is blocking HTTP"
# creating these inside async def is reported (a requests.Session is only reported when used)
_SYNC_CLIENT_CTORS = {
    q: what
    for q, what in SYNC_CLIENTS.items()
    if what not in ("requests.Session", "psycopg2", "psycopg")
}


def _blocking(m: ModuleModel, node: ast.Call, q: str) -> None:
    if m.in_async and not cli_command(m):
        m.report(node, RULE.code, _BLOCKING_CALLS[q] + " inside async def")


_CLI_FRAMEWORKS = frozenset({"typer", "cyclopts", "click", "asyncclick"})


def cli_command(m: ModuleModel) -> bool:
    """The coroutine is a command of a CLI framework (``@app.command``, ``@app.default``
    in a module that imports typer, cyclopts or click): it runs alone on its loop, so a
    blocking call there delays nothing else. A chat bot's ``@bot.command`` is not one."""
    node = m.scope.node
    if not isinstance(node, ast.AsyncFunctionDef) or not any(
        path.partition(".")[0] in _CLI_FRAMEWORKS for path in m.imports.values()
    ):
        return False
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = dotted(target) or ""
        if name.rpartition(".")[2] in ("command", "default") and "." in name:
            return True
    return False


def _sync_client(m: ModuleModel, node: ast.Call, q: str) -> None:
    if m.in_async:
        m.report(
            node,
            RULE.code,
            f"synchronous {_SYNC_CLIENT_CTORS[q]} client inside async def: every call blocks "
            "the event loop",
        )


CALLS: dict[str, CallHook] = dict.fromkeys(_BLOCKING_CALLS, _blocking)
CALLS.update(dict.fromkeys(_SYNC_CLIENT_CTORS, _sync_client))


def async_method_call(m: ModuleModel, node: ast.Call, func: ast.Attribute) -> None:
    """Methods of sync clients (made here or elsewhere) called inside ``async def``."""
    attr = func.attr
    receiver = func.value
    if (
        isinstance(receiver, ast.Call)
        and attr in _REQUESTS_VERBS
        and m.kind_of_value(receiver) == "sync_client:requests.Session"
    ):
        m.report(node, RULE.code, f"requests.Session.{attr}() is blocking HTTP inside async def")
        return
    if root_name(func) is None:
        return
    base: ast.expr = receiver
    while isinstance(base, ast.Attribute) and not (
        isinstance(base.value, ast.Name) and base.value.id == "self"
    ):
        base = base.value
    kind = m.kind_of(base) if isinstance(base, ast.Name | ast.Attribute) else None
    if kind is None or not kind.startswith("sync_client:"):
        return
    what = kind.partition(":")[2]
    local = isinstance(base, ast.Name) and base.id in m.scope.kinds
    if what == "requests.Session":
        if attr in _REQUESTS_VERBS:
            m.report(
                node, RULE.code, f"requests.Session.{attr}() is blocking HTTP inside async def"
            )
    elif not local and (what not in ("httpx.Client", "httpx2.Client") or attr in _REQUESTS_VERBS):
        m.report(
            node,
            RULE.code,
            f"call on a synchronous {what} client inside async def blocks the event loop",
        )
