"""BND005: a blocking call (sync HTTP, sleep, subprocess, sync client) inside ``async def``."""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import TYPE_CHECKING

from bounded.audit.core import Rule
from bounded.audit.model import (
    LANGCHAIN_TWINS,
    SYNC_CLIENTS,
    Function,
    Loop,
    ModuleModel,
    ProjectFacts,
)
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


# Every import path a name must be bound to for a call through it to be in _BLOCKING_CALLS
# ("time", "urllib", "urllib.request", "urllib.request.urlopen"...).
_BLOCKING_ROOTS = frozenset(
    q.rsplit(".", n)[0] for q in _BLOCKING_CALLS for n in range(q.count(".") + 1)
)

CALLS: dict[str, CallHook] = dict.fromkeys(_BLOCKING_CALLS, _blocking)
CALLS.update(dict.fromkeys(_SYNC_CLIENT_CTORS, _sync_client))


# Method names of the built-in types: a call may well be on a dict or a str.
_BUILTIN_METHODS = frozenset(
    name for kind in (dict, list, str, set, bytes, tuple, object) for name in dir(kind)
)


def function(m: ModuleModel, node: Function) -> None:
    """Tell the run how a method of this name is defined: async, or sync and blocking."""
    if not m.classes or node.name in _BUILTIN_METHODS:
        return
    if isinstance(node, ast.AsyncFunctionDef):
        how = 2
    else:
        # nothing imported so far can name a blocking call: skip walking the body
        can_block = not _BLOCKING_ROOTS.isdisjoint(m.imports.values())
        how = 1 if can_block and _blocks(m, node) else 0
    if how:
        m.facts.blocking[node.name] = m.facts.blocking.get(node.name, 0) | how


def _blocks(m: ModuleModel, node: Function) -> bool:
    """The body (not nested functions) calls a blocking function directly."""
    stack: list[ast.AST] = list(node.body)
    while stack:
        sub = stack.pop()
        if isinstance(sub, ast.Call) and m.qualname(sub.func) in _BLOCKING_CALLS:
            return True
        if not isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            stack.extend(ast.iter_child_nodes(sub))
    return False


def _if_only_blocking(name: str) -> Callable[[ProjectFacts], bool]:
    def keep(facts: ProjectFacts) -> bool:
        return facts.blocking.get(name, 0) == 1

    return keep


def async_method_call(m: ModuleModel, node: ast.Call, func: ast.Attribute) -> None:
    """Methods of sync clients (made here or elsewhere) called inside ``async def``, and
    methods the run defines only as sync code that blocks (``retriever.search()`` whose
    classes call ``requests.get``)."""
    attr = func.attr
    receiver = func.value
    if (
        attr not in _BUILTIN_METHODS
        and id(node) not in m.awaited
        and m.qualname(func) is None  # a method, not a module's function
        and not cli_command(m)
    ):
        m.defer(
            node,
            RULE.code,
            f".{attr}() is defined in this code base only as sync code that blocks (sync "
            "HTTP or sleep): calling it inside async def blocks the event loop",
            _if_only_blocking(attr),
        )
    if isinstance(receiver, ast.Call):
        kind = m.kind_of_value(receiver)
        if kind == "sync_client:requests.Session" and attr in _REQUESTS_VERBS:
            m.report(
                node, RULE.code, f"requests.Session.{attr}() is blocking HTTP inside async def"
            )
        elif kind is not None and kind.startswith("sync_obj:") and id(node) not in m.awaited:
            _library_call(m, node, attr, kind.partition(":")[2])
        return
    if root_name(func) is None:
        return
    base: ast.expr = receiver
    while isinstance(base, ast.Attribute) and not (
        isinstance(base.value, ast.Name) and base.value.id == "self"
    ):
        base = base.value
    kind = m.kind_of(base) if isinstance(base, ast.Name | ast.Attribute) else None
    if kind is None or id(node) in m.awaited:
        return
    what = kind.partition(":")[2]
    if kind.startswith("sync_obj:"):
        _library_call(m, node, attr, what)
        return
    if not kind.startswith("sync_client:") or ".aio." in f"{dotted(func) or ''}.":
        return  # the client's async surface (``await client.aio.models.generate_content()``)
    if _lazy_stream(node, what):
        return  # iterating it blocks (reported at the loop), not building it
    methods = _LIBRARY_METHODS.get(what)
    if methods is not None and attr not in methods:
        return  # llama.cpp's close() frees memory: only inference blocks
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


# What of a library's object blocks where not every method does: LangChain's sync twins of
# its ``a``-prefixed coroutines, a local model's inference (a client that only does sync I/O
# blocks in every method).
_LIBRARY_METHODS: dict[str, frozenset[str]] = {
    "LangChain": LANGCHAIN_TWINS,
    "transformers": frozenset({"generate"}),
    "llama.cpp": frozenset(
        {"create_completion", "create_chat_completion", "create_embedding", "embed", "generate"}
    ),
}


def _library_call(m: ModuleModel, node: ast.Call, attr: str, what: str) -> None:
    """A method of an object a blocking library built, or one annotated with its type."""
    methods = _LIBRARY_METHODS.get(what)
    if (methods is not None and attr not in methods) or _lazy_stream(node, what):
        return
    if what == "LangChain":
        message = f".{attr}() is the sync twin of LangChain's `.a{attr}()`"
    elif what == "transformers":
        message = f".{attr}() runs a transformers model's inference"
    else:
        message = f"call on a synchronous {what} client"
    m.report(node, RULE.code, message + " inside async def: it blocks the event loop")


def _lazy_stream(node: ast.Call, what: str) -> bool:
    """``create_completion(..., stream=True)`` of llama.cpp returns a generator: nothing
    runs until it is iterated (the loop is reported)."""
    return what == "llama.cpp" and any(
        kw.arg == "stream" and isinstance(kw.value, ast.Constant) and kw.value.value is True
        for kw in node.keywords
    )


def loop(m: ModuleModel, node: Loop, tries: list[ast.Try | ast.TryStar]) -> None:
    """A plain ``for`` over a blocking iterator (a token streamer, a sync client's stream)."""
    if (
        isinstance(node, ast.For)
        and m.in_async
        and isinstance(node.iter, ast.Name | ast.Attribute)
        and (m.kind_of(node.iter) or "").startswith("sync_iter:")
        and not cli_command(m)
    ):
        what = (m.kind_of(node.iter) or "").partition(":")[2]
        m.report(
            node,
            RULE.code,
            f"a plain `for` over a synchronous {what} stream inside async def: each step "
            "blocks the event loop",
        )
