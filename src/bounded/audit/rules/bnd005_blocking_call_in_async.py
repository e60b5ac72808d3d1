"""BND005: a blocking call (sync HTTP, sleep, subprocess, sync client) inside ``async def``."""

from __future__ import annotations

import ast
import re
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from bounded.audit.core import Rule
from bounded.audit.local_work import own_nodes
from bounded.audit.model import (
    CHILD_PROCESS_CALLS,
    LANGCHAIN_TWINS,
    PROCESS_WAITS,
    SYNC_CLIENTS,
    Function,
    Loop,
    ModuleModel,
    ProjectFacts,
    callee_name,
)
from bounded.audit.names import (
    call_argument,
    constructed_class,
    dotted,
    flag_switch,
    is_self_attr,
    root_name,
    string_switch,
    timeout_arg,
)
from bounded.audit.rules.bnd002_connection_per_operation import kept_from_start_up

if TYPE_CHECKING:
    from bounded.audit.model import CallHook, MethodHook

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
    **{
        f"{driver}.connect": f"{driver}.connect() is a blocking (sync) database connection"
        for driver in (
            "pymysql",
            "MySQLdb",
            "mysql.connector",
            "oracledb",
            "cx_Oracle",
            "snowflake.connector",
            "pyodbc",
            "pymssql",
        )
    },
    "socket.gethostbyname": "socket.gethostbyname() is a blocking DNS lookup",
    "socket.gethostbyname_ex": "socket.gethostbyname_ex() is a blocking DNS lookup",
    "socket.gethostbyaddr": "socket.gethostbyaddr() is a blocking reverse DNS lookup",
    "socket.getaddrinfo": (
        "socket.getaddrinfo() is a blocking DNS lookup (`await loop.getaddrinfo(...)`)"
    ),
    "socket.create_connection": "socket.create_connection() is a blocking DNS lookup and connect",
    "sqlite3.connect": (
        "sqlite3.connect() opens a sync SQLite connection: its queries and commits block on disk"
    ),
    "concurrent.futures.as_completed": (
        "concurrent.futures.as_completed() waits for the pool's threads to finish"
    ),
    "concurrent.futures.wait": "concurrent.futures.wait() waits for the pool's threads to finish",
}
for _verb in _REQUESTS_VERBS - {"send"}:
    _BLOCKING_CALLS[f"requests.{_verb}"] = f"requests.{_verb}() is blocking HTTP"
    _BLOCKING_CALLS[f"httpx.{_verb}"] = f"httpx.{_verb}() is blocking HTTP"
    _BLOCKING_CALLS[f"httpx2.{_verb}"] = f"httpx2.{_verb}() is blocking HTTP"
# LiteLLM's module-level calls are sync HTTP to the provider; each has an ``a``-prefixed
# coroutine twin (``litellm.acompletion``).
for _call in (
    "completion",
    "text_completion",
    "embedding",
    "image_generation",
    "transcription",
    "speech",
    "moderation",
    "rerank",
):
    _BLOCKING_CALLS[f"litellm.{_call}"] = (
        f"litellm.{_call}() is blocking HTTP (its coroutine is litellm.a{_call}())"
    )
# bcrypt's hashing is deliberately slow CPU work (tens to hundreds of ms per call).
for _call in ("hashpw", "checkpw", "kdf"):
    _BLOCKING_CALLS[f"bcrypt.{_call}"] = (
        f"bcrypt.{_call}() hashes a password: deliberately slow CPU work"
    )
# Hugging Face ``datasets``: downloads (or reads and prepares) a whole dataset synchronously.
_BLOCKING_CALLS["datasets.load_dataset"] = (
    "datasets.load_dataset() downloads and prepares the dataset synchronously"
)
# creating these inside async def is reported (a requests.Session is only reported when used)
_SYNC_CLIENT_CTORS = {
    q: what
    for q, what in SYNC_CLIENTS.items()
    if what not in ("requests.Session", "psycopg2", "psycopg", "http.client", "password hasher")
}


def _blocking(m: ModuleModel, node: ast.Call, q: str) -> None:
    if m.in_async and not _returns_at_once(m, node, q) and not runs_alone(m):
        m.report(node, RULE.code, _BLOCKING_CALLS[q] + " inside async def")


def _returns_at_once(m: ModuleModel, node: ast.Call, q: str) -> bool:
    """A call of a blocking function that, so called, does not wait: a poll, a mocked
    completion, a lookup of a numeric address."""
    return (
        _polls(node, q)
        or _mocked(node, q)
        or _numeric_lookup(m, node, q)
        or _short_connect(m, node, q)
    )


def _short_connect(m: ModuleModel, node: ast.Call, q: str) -> bool:
    """``socket.create_connection(address, 0.25)``: a probe that gives up within a fraction
    of a second, a short pause like a join bounded under one second."""
    if q != "socket.create_connection":
        return False
    timeout = call_argument(node, 1, "timeout")
    seconds = m.constant_seconds(timeout) if timeout is not None else None
    return seconds is not None and seconds < 1


# getaddrinfo's flags that make it only parse a numeric address, with no DNS query
_NUMERIC_FLAGS = frozenset({"socket.AI_NUMERICHOST"})


# A name that holds an IP address, not a host name (``target_ip``, ``ip_address``).
_IP_NAME = re.compile(r"(?:^|_)ip(?:v[46])?(?:_?addr(?:ess)?)?$", re.IGNORECASE)


def _numeric_lookup(m: ModuleModel, node: ast.Call, q: str) -> bool:
    """``socket.getaddrinfo(host, port, flags=socket.AI_NUMERICHOST | ...)`` (or a module
    constant holding those flags), or a lookup of a name that holds an IP address
    (``socket.getaddrinfo(str(target_ip), port)``): it parses a numeric address and
    returns at once, or fails; no name lookup is made."""
    if q not in ("socket.getaddrinfo", "socket.gethostbyname"):
        return False
    host = call_argument(node, 0, "host")
    if (
        isinstance(host, ast.Call)
        and isinstance(host.func, ast.Name)
        and host.func.id == "str"
        and len(host.args) == 1
    ):
        host = host.args[0]
    name = dotted(host) if host is not None else None
    if name is not None and _IP_NAME.search(name.rsplit(".", 1)[-1]):
        return True
    if q != "socket.getaddrinfo":
        return False
    flags = call_argument(node, 5, "flags")
    values = [flags] if flags is not None else []
    if isinstance(flags, ast.Name):
        values.extend(m.assignments(flags.id))
    return any(
        isinstance(part, ast.Attribute | ast.Name) and m.qualname(part) in _NUMERIC_FLAGS
        for value in values
        for part in ast.walk(value)
    )


def _polls(node: ast.Call, q: str) -> bool:
    """``concurrent.futures.wait(fs, timeout=0)``: a look at which futures are done."""
    timeout = timeout_arg(node, 1) if q.startswith("concurrent.futures.") else None
    return isinstance(timeout, ast.Constant) and timeout.value == 0


def _mocked(node: ast.Call, q: str) -> bool:
    """``litellm.completion(..., mock_response="Hi")`` returns the mock without a request."""
    return q.startswith("litellm.") and any(kw.arg == "mock_response" for kw in node.keywords)


def _future_result(m: ModuleModel, node: ast.Call, func: ast.Attribute) -> None:
    """``future.result()`` of a thread pool's ``submit(...)`` waits for the thread; of
    ``asyncio.run_coroutine_threadsafe(...)``, for a loop to run the coroutine."""
    receiver = func.value
    threadsafe = _threadsafe_call(m, receiver)
    if threadsafe is not None:
        _threadsafe_result(m, node, threadsafe)
        return
    if (
        m.in_async
        and (m.kind_of_value(receiver) == "future" or m.kind_of(receiver) == "future")
        and not runs_alone(m)
    ):
        m.report(
            node,
            RULE.code,
            "result() of a thread pool's future inside async def waits for the thread: it "
            "blocks the event loop",
        )


def _waits_on_a_loop(m: ModuleModel) -> None:
    """The sync def being walked (a method or a module's function, not a nested def) waits
    for a loop: a coroutine that calls it blocks as on sync HTTP (`function` recorded the
    rest of how it is defined)."""
    node = m.scope.node
    if not isinstance(node, ast.FunctionDef):
        return
    facts = m.facts
    _unsummarise(m)  # it blocks by a call of its own
    if m.classes:
        if any(item is node for item in m.classes[-1].node.body):
            facts.blocking[node.name] = facts.blocking.get(node.name, 0) | _BLOCKS
            facts.methods.setdefault(m.classes[-1].name, {})[node.name] = _BLOCKS
    elif len(m.scopes) == 2:
        facts.blocking_functions.setdefault(node.name, set()).add(_module_path(m.path))


def _threadsafe_call(m: ModuleModel, receiver: ast.expr) -> ast.Call | None:
    """The ``asyncio.run_coroutine_threadsafe(...)`` call whose future `receiver` is, itself
    or every value this function binds to the name."""
    if isinstance(receiver, ast.Call):
        values: list[ast.expr] = [receiver]
    elif isinstance(receiver, ast.Name):
        values = m.scope.assigned.get(receiver.id, [])
    else:
        return None
    calls = [
        v
        for v in values
        if isinstance(v, ast.Call) and m.qualname(v.func) == "asyncio.run_coroutine_threadsafe"
    ]
    return calls[0] if calls and len(calls) == len(values) else None


def _threadsafe_result(m: ModuleModel, node: ast.Call, threadsafe: ast.Call) -> None:
    """Inside ``async def`` the wait blocks this loop (forever when the target loop is this
    one); in sync code, onto the loop ``asyncio.get_running_loop()`` gave this function, it
    blocks that loop's own thread, which can then never run the coroutine."""
    if m.in_async:
        if not runs_alone(m):
            m.report(
                node,
                RULE.code,
                "result() of asyncio.run_coroutine_threadsafe(...) inside async def blocks the "
                "event loop until a loop runs the coroutine (a deadlock if that loop is this "
                "one); `await asyncio.wrap_future(...)` or await the coroutine",
            )
        return
    _waits_on_a_loop(m)
    loop = threadsafe.args[1] if len(threadsafe.args) > 1 else None
    loop = next((kw.value for kw in threadsafe.keywords if kw.arg == "loop"), loop)
    values = m.scope.assigned.get(loop.id, []) if isinstance(loop, ast.Name) else []
    running = [
        v
        for v in values
        if isinstance(v, ast.Call) and m.qualname(v.func) == "asyncio.get_running_loop"
    ]
    if running and all(
        v in running or (isinstance(v, ast.Constant) and v.value is None) for v in values
    ):
        m.report(
            node,
            RULE.code,
            "result() of asyncio.run_coroutine_threadsafe(...) onto the running loop, on "
            "that loop's own thread (asyncio.get_running_loop() succeeded here): the loop "
            "blocks waiting for a coroutine only it can run, a deadlock",
        )


_CLI_FRAMEWORKS = frozenset({"typer", "cyclopts", "click", "asyncclick"})
_CLI_DECORATORS = frozenset({"command", "default"})
# Flask runs each async view to completion on a new loop of its own, per request.
_FLASK_APPS = frozenset({"flask.Flask", "flask.Blueprint"})
_FLASK_DECORATORS = frozenset({"route", "get", "post", "put", "patch", "delete"})


@dataclass(slots=True)
class _Interactive:
    # coroutine node id -> whether it reads the console with input()
    by_node: dict[int, bool] = field(default_factory=dict)


# Coroutines a service awaits once before it serves (or after it stops serving).
_START_UP = frozenset({"initialize", "_initialize", "lifespan", "startup", "on_startup"})


def runs_alone(m: ModuleModel) -> bool:
    """The coroutine runs alone on its loop, so a blocking call there delays nothing else:
    a start-up step (``async def initialize``, ``lifespan``, ``startup``: before the
    service serves), a command of a CLI framework (``@app.command``, ``@app.default`` in
    a module that imports typer, cyclopts or click), a Flask view (``@app.route``, ``@bp.get`` in a
    module that imports ``Flask`` or ``Blueprint`` and not Quart, whose views share one
    loop), or a console session that waits on a human with ``input()`` (it blocks its loop
    on the console by design). A chat bot's ``@bot.command`` is none of these."""
    node = m.scope.node
    if not isinstance(node, ast.AsyncFunctionDef):
        return False
    if node.name in _START_UP or _off_loop(m, node):
        return True
    if _reads_console(m, node):
        return True
    if not node.decorator_list:
        return _annotated_command(m, node)
    imported = m.imports.values()
    roots = {path.partition(".")[0] for path in imported}
    if not roots.isdisjoint(_CLI_FRAMEWORKS):
        methods = _CLI_DECORATORS
    elif "quart" not in roots and not _FLASK_APPS.isdisjoint(imported):
        methods = _FLASK_DECORATORS
    else:
        return False
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = dotted(target) or ""
        if name.rpartition(".")[2] in methods and "." in name:
            return True
    return False


@dataclass(slots=True)
class _Stepper:
    found: bool | None = None  # the module steps coroutines itself (None: not looked yet)


def _off_loop(m: ModuleModel, node: ast.AsyncFunctionDef) -> bool:
    """The coroutine runs on no loop that serves others: it is defined in the module's
    ``if __name__ == "__main__":`` demo, run by hand, or the module steps its coroutines
    itself without a loop (``coro.send(None)``, the result taken from ``StopIteration``:
    gel's blocking client shares its protocol code with the async one this way)."""
    block = m.main_block
    if block is not None and block[0] <= node.lineno <= block[1]:
        return True
    state = m.state(_Stepper)
    if state.found is None:
        state.found = m.mentions(b".send(None)") and any(
            _steps_coroutine(function) for function in m.functions.values()
        )
    return state.found


def _steps_coroutine(function: Function) -> bool:
    """``try: coro.send(None) except StopIteration as e: return e.value`` on a parameter."""
    params = {arg.arg for arg in (*function.args.posonlyargs, *function.args.args)}
    for sub in ast.walk(function):
        if not isinstance(sub, ast.Try) or not any(
            isinstance(h.type, ast.Name) and h.type.id == "StopIteration" for h in sub.handlers
        ):
            continue
        for call in (c for stmt in sub.body for c in ast.walk(stmt)):
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr == "send"
                and isinstance(call.func.value, ast.Name)
                and call.func.value.id in params
                and len(call.args) == 1
                and isinstance(call.args[0], ast.Constant)
                and call.args[0].value is None
            ):
                return True
    return False


def _annotated_command(m: ModuleModel, node: ast.AsyncFunctionDef) -> bool:
    """A module-level coroutine whose parameters are declared with a CLI framework's
    options (``host: Annotated[str, Parameter(help=...)]``, ``typer.Option()``): a command
    registered by a call (``app.command(ssh)``) rather than a decorator."""
    if node.col_offset:
        return False  # a method or a nested function
    params = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
    return any(
        isinstance(sub, ast.Call)
        and (m.qualname(sub.func) or "").partition(".")[0] in _CLI_FRAMEWORKS
        for param in params
        if param.annotation is not None
        for sub in ast.walk(param.annotation)
    )


def _reads_console(m: ModuleModel, node: ast.AsyncFunctionDef) -> bool:
    """The coroutine calls the built-in ``input()`` (not a name the module binds)."""
    if not m.mentions(b"input("):
        return False
    cache = m.state(_Interactive).by_node
    found = cache.get(id(node))
    if found is None:
        found = cache[id(node)] = (
            "input" not in m.imports
            and "input" not in m.functions
            and any(
                isinstance(sub, ast.Call)
                and isinstance(sub.func, ast.Name)
                and sub.func.id == "input"
                for sub in ast.walk(node)
            )
        )
    return found


def _sync_client(m: ModuleModel, node: ast.Call, q: str) -> None:
    scope = m.scope.node
    if _only_offloaded(scope, node):
        return  # built on the loop, used only on a worker thread
    if m.in_async and not (isinstance(scope, ast.AsyncFunctionDef) and _off_loop(m, scope)):
        m.report(
            node,
            RULE.code,
            f"synchronous {_SYNC_CLIENT_CTORS[q]} client inside async def: every call blocks "
            "the event loop",
        )


# Calls that run the callable they are handed on a worker thread.
_HAND_OFFS = frozenset({"to_thread", "run_in_executor", "run_sync"})


def _only_offloaded(fn: ast.AST | None, node: ast.Call) -> bool:
    """The client `node` builds is bound to a local name (``ddgs = DDGS()``, ``with
    DDGS() as ddgs``) that the function only hands to a worker thread
    (``await asyncio.to_thread(ddgs.text, query)``): its calls block a thread, not the
    loop, and building it does no I/O."""
    if fn is None:
        return False
    name = next(
        (
            target.id
            for sub in ast.walk(fn)
            for value, target in (
                [(sub.value, t) for t in sub.targets]
                if isinstance(sub, ast.Assign)
                else [(sub.context_expr, sub.optional_vars)]
                if isinstance(sub, ast.withitem)
                else []
            )
            if value is node and isinstance(target, ast.Name)
        ),
        None,
    )
    if name is None:
        return False
    handed = {
        id(part)
        for sub in ast.walk(fn)
        if isinstance(sub, ast.Call) and callee_name(sub) in _HAND_OFFS
        for arg in (*sub.args, *(kw.value for kw in sub.keywords))
        for part in ast.walk(arg)
    }
    reads = [
        sub
        for sub in ast.walk(fn)
        if isinstance(sub, ast.Name) and sub.id == name and isinstance(sub.ctx, ast.Load)
    ]
    return bool(reads) and all(id(read) in handed for read in reads)


# Every import path a name must be bound to for a call through it to be in _BLOCKING_CALLS
# ("time", "urllib", "urllib.request", "urllib.request.urlopen"...).
_BLOCKING_ROOTS = frozenset(
    q.rsplit(".", n)[0]
    for q in (*_BLOCKING_CALLS, *CHILD_PROCESS_CALLS)
    for n in range(q.count(".") + 1)
)

CALLS: dict[str, CallHook] = dict.fromkeys(_BLOCKING_CALLS, _blocking)
CALLS.update(dict.fromkeys(_SYNC_CLIENT_CTORS, _sync_client))


def _thread_join(m: ModuleModel, node: ast.Call, func: ast.Attribute) -> None:
    """``thread.join()`` waits for a thread to end: on the loop, nothing else runs meanwhile
    (a join bounded by under a second is a short pause, left alone)."""
    if m.kind_of(func.value) != "thread" or id(node) in m.awaited:
        return
    if isinstance(func.value, ast.Name) and _drained_before(m, node, func.value.id):
        return
    timeout = timeout_arg(node, 0)
    seconds = m.constant_seconds(timeout) if timeout is not None else None
    if seconds is not None and seconds < 1:
        return
    _blocks_on(
        m,
        node,
        "join() of a thread inside async def blocks the event loop until the thread ends; "
        "`await asyncio.to_thread(thread.join)`",
    )


def _drained_before(m: ModuleModel, node: ast.Call, thread: str) -> bool:
    """``for text in streamer: yield text`` and then ``thread.join()``, where the thread
    feeds `streamer` (handed to it, or used by its target defined here): the stream ended
    because the thread finished, so the join returns at once (the loop is what blocked)."""
    fn = m.scope.node
    if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
        return False
    fed: set[str] = set()
    for built in m.assignments(thread):
        if not isinstance(built, ast.Call):
            continue
        fed.update(n.id for n in ast.walk(built) if isinstance(n, ast.Name))
        target = next((kw.value for kw in built.keywords if kw.arg == "target"), None)
        inner = m.function_named(target.id) if isinstance(target, ast.Name) else None
        if inner is not None:
            fed.update(n.id for n in ast.walk(inner) if isinstance(n, ast.Name))
    return any(
        isinstance(sub, ast.For)
        and isinstance(sub.iter, ast.Name)
        and sub.iter.id in fed
        and sub.iter.id != thread
        and (sub.end_lineno or sub.lineno) < node.lineno
        for sub in own_nodes(fn.body)
    )


def _credentials_refresh(m: ModuleModel, node: ast.Call, func: ast.Attribute) -> None:
    """``credentials.refresh(google.auth.transport.requests.Request())``: a sync HTTP
    request for a token."""
    if not any(
        isinstance(arg, ast.Call) and m.qualname(arg.func) == _GOOGLE_SYNC_REQUEST
        for arg in node.args
    ):
        return
    _blocks_on(
        m,
        node,
        "refresh() with google.auth's sync transport Request() is blocking HTTP inside "
        "async def; refresh in `asyncio.to_thread` or use google.auth's aio transport",
    )


def _blocks_on(m: ModuleModel, node: ast.Call, message: str) -> None:
    """A blocking call found by its receiver or arguments: reported inside ``async def``,
    and in a sync def, what makes it block in the chains."""
    if not m.in_async:
        _blocks_here(m)
    elif not runs_alone(m):
        m.report(node, RULE.code, message)


_GOOGLE_SYNC_REQUEST = "google.auth.transport.requests.Request"
METHODS: dict[str, MethodHook] = {
    "result": _future_result,
    "join": _thread_join,
    "refresh": _credentials_refresh,
}


# Method names of the built-in types: a call may well be on a dict or a str.
_BUILTIN_METHODS = frozenset(
    name for kind in (dict, list, str, set, bytes, tuple, object) for name in dir(kind)
)


def function(m: ModuleModel, node: Function) -> None:
    """Tell the run how a method or a module's function is defined: async, or sync code that
    blocks or not."""
    in_class = bool(m.classes)
    if isinstance(node, ast.AsyncFunctionDef):
        # nested in a summarised sync def, it serves both colours (``if colour == "async":
        # async def run(): ...; return run()``, then sync code): the caller picks the path
        _unsummarise(m)
    if (in_class and node.name in _BUILTIN_METHODS) or (not in_class and len(m.scopes) > 1):
        return  # a built-in type's method name, or a function nested in another
    if in_class and not any(item is node for item in m.classes[-1].node.body):
        return  # a function nested in a method
    blocks = 0
    if isinstance(node, ast.AsyncFunctionDef):
        how = _ASYNC
    elif _BLOCKING_ROOTS.isdisjoint(m.imports.values()):
        how = _DOES_NOT_BLOCK  # nothing imported so far can name a blocking call: skip the body
    else:
        blocks = _blocks(m, node)
        how = blocks or _DOES_NOT_BLOCK
    facts = m.facts
    if how == _DOES_NOT_BLOCK:
        key = (_module_path(m.path), m.classes[-1].name if in_class else "", node.name)
        facts.callees.setdefault(key, set())
        m.state(_Summaries).keys[id(node)] = key
    if in_class:
        if how in (_ASYNC, _WAITS_FOR_CHILD):
            facts.not_blocking.add((m.classes[-1].name, node.name))
        facts.blocking[node.name] = facts.blocking.get(node.name, 0) | how
        facts.forwards[node.name] = facts.forwards.get(node.name, True) and _forwards(node)
        methods = facts.methods.setdefault(m.classes[-1].name, {})
        methods[node.name] = methods.get(node.name, blocks) & blocks
    elif blocks == _BLOCKS:
        facts.blocking_functions.setdefault(node.name, set()).add(_module_path(m.path))


def _forwards(node: Function) -> bool:
    """A sync method that calls its first parameter with its ``*args``
    (``def _call(self, fn, *args, **kwargs): ... return fn(*args, **kwargs)``)."""
    params = node.args.args
    if isinstance(node, ast.AsyncFunctionDef) or node.args.vararg is None or len(params) < 2:
        return False
    fn, rest = params[1].arg, node.args.vararg.arg
    return any(
        isinstance(sub, ast.Call)
        and isinstance(sub.func, ast.Name)
        and sub.func.id == fn
        and any(
            isinstance(a, ast.Starred) and getattr(a.value, "id", None) == rest for a in sub.args
        )
        for sub in ast.walk(node)
    )


def _module_path(path: str) -> str:
    """``pkg/mod`` for ``pkg/mod.py`` and ``pkg/mod/__init__.py``."""
    stem = path.replace("\\", "/").removesuffix(".py")
    return stem.removesuffix("/__init__")


# The tail of a finding on a call of the code base's own sync code that blocks.
_BLOCKS_HOW = (
    "(sync HTTP, sleep, password hashing, a wait on a loop): calling it inside async def "
    "blocks the event loop"
)
# How a def blocks (the bits of `ProjectFacts.blocking`): a sync def on a remote peer or a
# set time (BND005), an async def, a sync def not by a call it makes directly, or one only
# on a child process (the opt-in BND012).
_BLOCKS = 1
_ASYNC = 2
_DOES_NOT_BLOCK = 4
_WAITS_FOR_CHILD = 8


@dataclass(slots=True)
class _Summaries:
    # id of a sync def that blocks by no call it makes directly -> its `callees` key
    keys: dict[int, tuple[str, str, str]] = field(default_factory=dict)


def _summary_key(m: ModuleModel) -> tuple[str, str, str] | None:
    """The `callees` key of the sync def being walked, if it is summarised and the walk is
    not in a branch for one configuration only."""
    if m.scope.switched:
        return None
    return m.state(_Summaries).keys.get(id(m.scope.node))


def _blocks_here(m: ModuleModel) -> None:
    """The sync def being walked blocks by a call it makes (found as it is walked)."""
    key = _summary_key(m)
    if key is not None:
        m.facts.callees[key].add(_BLOCKS_HERE)


def _unsummarise(m: ModuleModel) -> None:
    """Settle the sync def being walked apart from `callees`."""
    key = m.state(_Summaries).keys.pop(id(m.scope.node), None)
    if key is not None:
        del m.facts.callees[key]


def _note_callee(m: ModuleModel, node: ast.Call) -> None:
    """Record what the sync def being walked calls that may block (see `_settle`)."""
    key = _summary_key(m)
    if key is None:
        return
    callees = m.facts.callees[key]
    func = node.func
    q = m.qualname(func)
    if q is not None:
        package, _, name = q.rpartition(".")
        if package and package.partition(".")[0] not in _STDLIB:
            callees.add(("f", package.replace(".", "/"), name))
    elif isinstance(func, ast.Name):
        if _module_function(m, func):
            callees.add(("f", key[0], func.id))
    elif isinstance(func, ast.Attribute) and _calls_a_sync_client(m, node, func):
        callees.add(_BLOCKS_HERE)
    elif isinstance(func, ast.Attribute) and func.attr not in _BUILTIN_METHODS:
        cls = _receiver_class(m, func.value)
        if cls is None:
            callees.add(("a", "", func.attr))
        elif cls:
            callees.add(("m", cls, func.attr))


# the callee a sync def records for a call that blocks, found as it is walked
_BLOCKS_HERE = ("x", "", "")


def _calls_a_sync_client(m: ModuleModel, node: ast.Call, func: ast.Attribute) -> bool:
    """`func` is a method of a sync client or of a blocking library's object that does I/O
    (``self.s3.put_object(...)``, ``session.get(...)``)."""
    receiver = func.value
    if isinstance(receiver, ast.Call):
        kind = m.kind_of_value(receiver) or ""
    else:
        base = _client_base(receiver)
        kind = (m.kind_of(base) if isinstance(base, ast.Name | ast.Attribute) else None) or ""
    sort, _, what = kind.partition(":")
    if sort == "sync_obj":
        return _library_blocks(node, func.attr, what)
    return sort == "sync_client" and _client_blocks(node, func, what)


def _module_function(m: ModuleModel, func: ast.Name) -> bool:
    """A bare name that calls this module's function (not a method, parameter or local)."""
    fn = m.functions.get(func.id)
    return not (
        fn is None
        or fn.col_offset  # a method: only module-level functions are called by bare name
        or func.id in m.scope.params
        or m.assignments(func.id)
    )


def _settle(facts: ProjectFacts) -> None:
    """Fold `callees` into the blocking facts, once per run: a sync def blocks if it calls,
    through any depth of the run's own sync code, one that blocks by a call it makes."""
    if facts.settled:
        return
    facts.settled = True
    pending = {key: callees for key, callees in facts.callees.items() if callees}
    left_by_method = Counter((cls, name) for _, cls, name in facts.callees)
    changed = True
    while changed:
        changed = False
        for key, callees in list(pending.items()):
            if not any(_callee_blocks(facts, callee) for callee in callees):
                continue
            del pending[key]
            changed = True
            module, cls, name = key
            if not cls:
                facts.blocking_functions.setdefault(name, set()).add(module)
                continue
            # a method of an object of unknown class (`blocking`) stays judged by its direct
            # calls: through a chain, it is one branch of one definition too often
            left_by_method[cls, name] -= 1
            if not left_by_method[cls, name] and (cls, name) not in facts.not_blocking:
                facts.methods.setdefault(cls, {})[name] = _BLOCKS


def _callee_blocks(facts: ProjectFacts, callee: tuple[str, str, str]) -> bool:
    """A callee `_note_callee` recorded blocks, by what the run has settled so far."""
    kind, where, name = callee
    if kind == "x":
        return True
    if kind == "f":
        return _function_blocks(facts, name, where)
    return _method_blocks(facts, name, where if kind == "m" else None, _BLOCKS)


def _blocks(m: ModuleModel, node: Function) -> int:
    """How the body (not nested functions) blocks by a call it makes directly: _BLOCKS,
    _WAITS_FOR_CHILD (``subprocess.run``, ``self.proc.wait()`` of a ``Popen``), or 0."""
    how = 0
    stack: list[ast.AST] = list(node.body)
    while stack:
        sub = stack.pop()
        if isinstance(sub, ast.If) and (string_switch(sub.test) or flag_switch(sub.test, node)):
            continue  # a branch for one configuration or an opt-in flag only (as in the chains)
        if isinstance(sub, ast.Call):
            func = sub.func
            q = m.qualname(func)
            if q in _BLOCKING_CALLS and not _returns_at_once(m, sub, q):
                return _BLOCKS
            if q in CHILD_PROCESS_CALLS or (
                isinstance(func, ast.Attribute)
                and func.attr in PROCESS_WAITS
                and m.kind_of(func.value) == "process"
            ):
                how = _WAITS_FOR_CHILD
        if not isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            stack.extend(ast.iter_child_nodes(sub))
    return how


def _if_blocking(name: str, cls: str | None, how: int) -> Callable[[ProjectFacts], bool]:
    """Keep a call of method `name` on an instance of `cls` if that class's method blocks
    so (`how`); on an object of unknown class, if every definition of `name` in the run
    blocks one way or the other, and so for the weaker _WAITS_FOR_CHILD when not all block
    on a peer."""

    def keep(facts: ProjectFacts) -> bool:
        _settle(facts)
        return _method_blocks(facts, name, cls, how)

    return keep


def _method_blocks(facts: ProjectFacts, name: str, cls: str | None, how: int) -> bool:
    """Method `name` of `cls` (None: of an object of unknown class) blocks so (`how`)."""
    if cls is not None:
        return facts.method_blocks(cls, name) == how
    defined = facts.blocking.get(name, 0)
    if how == _BLOCKS:
        return defined == _BLOCKS
    return defined & _WAITS_FOR_CHILD != 0 and defined & ~(_BLOCKS | _WAITS_FOR_CHILD) == 0


def _receiver_class(m: ModuleModel, receiver: ast.expr) -> str | None:
    """The class of the object a method is called on, by evidence: ``self`` in a class, a
    name or ``self.x`` built from a class (``server = Server(...)``, ``Server().start()``),
    a parameter annotated with one, an item of a parameter annotated as a sequence of one
    (``for node in nodes`` with ``nodes: Sequence[ImageNode]``). "" when the object is known
    to be something else (a thread, a client), None when nothing is known."""
    if isinstance(receiver, ast.Name):
        if receiver.id == "self" and m.classes:
            return m.classes[-1].name
        if m.kind_of(receiver) is not None:
            return ""
        return _class_of(m, receiver.id)
    if isinstance(receiver, ast.Call):
        return constructed_class(receiver)
    if is_self_attr(receiver) and m.classes:
        if m.kind_of(receiver) is not None:
            return ""
        return m.classes[-1].built.get(cast(ast.Attribute, receiver).attr)
    return None


def _class_of(m: ModuleModel, name: str, *, item: bool = False) -> str | None:
    """The class of what `name` holds (`item`: of the items it holds), from the innermost
    scope that binds it: every value assigned to it is built from that class, or it is a
    parameter annotated with it."""
    for scope in reversed(m.scopes):
        values = scope.assigned.get(name)
        if values is not None:
            if item:
                return None
            found = {
                _class_of(m, v.id, item=True)
                if isinstance(v, ast.Name) and v.id != name
                # a loop's target is recorded with the iterable it walks
                else constructed_class(v.value if isinstance(v, ast.Await) else v)
                for v in values
            }
            return found.pop() if len(found) == 1 else None
        if name in scope.params:
            return _annotated_class(scope.node, name, item=item)
    return None


# Annotations that hold one class: ``Optional[Server]``, and the items of a sequence.
_OPTIONAL = frozenset({"Optional"})
_SEQUENCES = frozenset(
    {"Sequence", "List", "list", "Iterable", "Iterator", "Collection", "Set", "set"}
)


def _annotated_class(node: ast.AST | None, name: str, *, item: bool = False) -> str | None:
    """The class parameter `name` of function `node` is annotated with (``server: Server``,
    ``"Server"``, ``Optional[Server]``); `item`: of its items (``Sequence[Server]``)."""
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    args = node.args
    annotation = next(
        (a.annotation for a in (*args.posonlyargs, *args.args, *args.kwonlyargs) if a.arg == name),
        None,
    )
    if isinstance(annotation, ast.Subscript):
        outer = (dotted(annotation.value) or "").rpartition(".")[2]
        if outer not in (_SEQUENCES if item else _OPTIONAL):
            return None
        annotation = annotation.slice
    elif item:
        return None
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        text: str | None = annotation.value
    else:
        text = dotted(annotation) if isinstance(annotation, ast.expr) else None
    last = (text or "").rpartition(".")[2]
    return last if last[:1].isupper() and last.isidentifier() else None


def every_call(m: ModuleModel, node: ast.Call) -> None:
    """A function of the run's modules (this one, or imported by absolute name) that is
    sync code and blocks, called inside ``async def``."""
    if not m.scopes[-1].is_async:
        _note_callee(m, node)
        return
    if id(node) in m.awaited or _asks_for_async(node):
        return
    func = node.func
    _sync_twin(m, node)
    q = m.qualname(func)
    if q is None:
        if not isinstance(func, ast.Name) or not _module_function(m, func):
            return
        name, module = func.id, _module_path(m.path)
    else:
        package, _, name = q.rpartition(".")
        if not package or q in m.hooks.calls or package.partition(".")[0] in _STDLIB:
            return
        module = package.replace(".", "/")
    if runs_alone(m):
        return
    m.defer(
        node,
        RULE.code,
        f"{name}() is sync code of this code base that blocks {_BLOCKS_HOW}",
        _if_blocking_function(name, module),
    )


def _coroutine_twins(name: str) -> tuple[str, ...]:
    """The names a coroutine twin of sync method `name` takes: ``a_generate``,
    ``agenerate``, ``generate_async`` or ``async_generate`` for ``generate`` (leading
    underscores kept: ``_a_generate_reason`` for ``_generate_reason``)."""
    bare = name.lstrip("_")
    lead = name[: len(name) - len(bare)]
    return (f"{lead}a_{bare}", f"{lead}a{bare}", f"{lead}{bare}_async", f"{lead}async_{bare}")


@dataclass(slots=True)
class _Methods:
    # the methods of each class of the module, by the class node's id
    by_class: dict[int, dict[str, Function]] = field(default_factory=dict)


def _sync_twin(m: ModuleModel, node: ast.Call) -> None:
    """``self.generate(...)`` inside ``async def`` where the class defines both ``def
    generate`` and its coroutine twin ``async def a_generate``: the author wrote a coroutine
    for that work because the sync method waits on I/O, and this call takes the sync one."""
    func = node.func
    if not (
        m.classes
        and isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id == "self"
    ):
        return
    cls = m.classes[-1].node
    methods = m.state(_Methods).by_class.get(id(cls))
    if methods is None:
        methods = {
            item.name: item
            for item in cls.body
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        m.state(_Methods).by_class[id(cls)] = methods
    if not isinstance(methods.get(func.attr), ast.FunctionDef):
        return
    twin = next(
        (
            t
            for t in _coroutine_twins(func.attr)
            if isinstance(methods.get(t), ast.AsyncFunctionDef)
        ),
        None,
    )
    if (
        twin is None
        or twin == m.scope.name  # the coroutine falling back to its sync twin
        or not _awaits_twins_of(methods[twin], func.attr, _called_names(methods[func.attr]))
        or runs_alone(m)
    ):
        return
    m.report(
        node,
        RULE.code,
        f"self.{func.attr}() is the sync twin of `self.{twin}()` inside async def: it blocks "
        "the event loop (await the coroutine twin)",
    )


def _called_names(fn: ast.AST) -> set[str]:
    """The functions and methods `fn` calls, by name (``self.model.generate(...)`` gives
    "generate")."""
    return {
        name for sub in ast.walk(fn) if isinstance(sub, ast.Call) and (name := callee_name(sub))
    }


def _awaits_twins_of(fn: ast.AST, sync: str, names: set[str]) -> bool:
    """`fn` hands the sync method `sync` to a thread (``await asyncio.to_thread(self.save,
    ...)``), or awaits the coroutine twin of a function or method the sync one calls
    (``await self.model.a_generate(...)`` where it calls ``self.model.generate(...)``): the
    sync one waits on what the coroutine awaits."""
    for sub in ast.walk(fn):
        if isinstance(sub, ast.Call) and any(
            isinstance(arg, ast.Attribute) and arg.attr == sync and is_self_attr(arg)
            for arg in sub.args
        ):
            return True
        if isinstance(sub, ast.Await) and isinstance(sub.value, ast.Call):
            called = callee_name(sub.value)
            if called and any(called in _coroutine_twins(name) for name in names):
                return True
    return False


_STDLIB = frozenset(sys.stdlib_module_names)


def _if_blocking_function(name: str, module: str) -> Callable[[ProjectFacts], bool]:
    """Keep a call of function `name` of `module` (``pkg/mod``) if its definition in the run
    blocks."""

    def keep(facts: ProjectFacts) -> bool:
        _settle(facts)
        return _function_blocks(facts, name, module)

    return keep


def _function_blocks(facts: ProjectFacts, name: str, module: str) -> bool:
    """Function `name` of `module` (``pkg/mod``, or its tail) is defined in the run as sync
    code that blocks."""
    suffix = "/" + module
    return any(("/" + path).endswith(suffix) for path in facts.blocking_functions.get(name, ()))


def _asks_for_async(node: ast.Call) -> bool:
    """``self._delay_waiter(bucket, _force_async=True)``: the caller tells a two-coloured
    def to take its async branch (its result is awaited), not the blocking one."""
    return any(
        kw.arg is not None
        and "async" in kw.arg.lower()
        and isinstance(kw.value, ast.Constant)
        and kw.value.value is True
        for kw in node.keywords
    )


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
        and not runs_alone(m)
        and not _asks_for_async(node)
    ):
        cls = _receiver_class(m, receiver)
        if cls is None and id(node) in m.scheduled:
            cls = ""  # known by its name only, and handed to a scheduler: a coroutine
        if cls != "":
            where = f"of {cls} is" if cls else "is defined in this code base only as"
            m.defer(
                node,
                RULE.code,
                f".{attr}() {where} sync code that blocks {_BLOCKS_HOW}",
                _if_blocking(attr, cls, _BLOCKS),
            )
            m.defer(
                node,
                "BND012",
                f".{attr}() {where} sync code that waits for a child process to exit: "
                "calling it inside async def blocks the event loop while the child runs",
                _if_blocking(attr, cls, _WAITS_FOR_CHILD),
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
    if root_name(func) is None or id(node) in m.awaited:
        return
    if node.args:
        _forwarded(m, node, attr)
    base = _client_base(receiver)
    kind = m.kind_of(base) if isinstance(base, ast.Name | ast.Attribute) else None
    if kind is None:
        return
    what = kind.partition(":")[2]
    if kind.startswith("sync_obj:"):
        _library_call(m, node, attr, what)
        return
    if not kind.startswith("sync_client:") or not _client_blocks(node, func, what):
        return
    if what in _DATABASES and _opens_at_start_up(m):
        return  # schema set-up where the start-up method opens the connection it keeps
    if runs_alone(m):
        return
    if what == "requests.Session":
        m.report(node, RULE.code, f"requests.Session.{attr}() is blocking HTTP inside async def")
    elif what == "http.client" or not (isinstance(base, ast.Name) and base.id in m.scope.kinds):
        # one built here was reported where it was built, unless building it sends nothing
        m.report(
            node,
            RULE.code,
            f"call on a synchronous {what} client inside async def blocks the event loop",
        )


_DATABASES = frozenset({"psycopg2", "psycopg"})


def _opens_at_start_up(m: ModuleModel) -> bool:
    """The function being walked is a start-up method that opens a sync database
    connection and keeps it (``self.conn = psycopg2.connect(...)`` in ``initialize()``)."""
    node = m.scope.node
    return node is not None and any(
        isinstance(sub, ast.Call)
        and SYNC_CLIENTS.get(m.qualname(sub.func) or "") in _DATABASES
        and kept_from_start_up(m, sub)
        for sub in ast.walk(node)
    )


def _client_base(receiver: ast.expr) -> ast.expr:
    """The name or ``self.x`` an attribute chain starts from (``self.client`` of
    ``self.client.chat.completions``)."""
    while isinstance(receiver, ast.Attribute) and not (
        isinstance(receiver.value, ast.Name) and receiver.value.id == "self"
    ):
        receiver = receiver.value
    return receiver


def _forwarded(m: ModuleModel, node: ast.Call, attr: str) -> None:
    """``self._call(self.client.chat.complete, ...)``: a sync client's method handed to a
    method that every definition in the run calls it from, synchronously."""
    handed = node.args[0]
    if not isinstance(handed, ast.Attribute) or "async" in handed.attr:
        return
    base = _client_base(handed.value)
    kind = m.kind_of(base) if isinstance(base, ast.Name | ast.Attribute) else None
    if kind is None or not kind.startswith("sync_client:") or kind.endswith(":requests.Session"):
        return
    if (
        ".aio." in f"{dotted(handed) or ''}."
        or _LIBRARY_METHODS.get(kind[12:]) is not None
        or (isinstance(base, ast.Name) and base.id in m.scope.kinds)  # built here: reported
    ):
        return
    m.defer(
        node,
        RULE.code,
        f".{attr}() calls the synchronous {kind[12:]} client's .{handed.attr}() it is handed, "
        "inside async def: it blocks the event loop",
        lambda facts: facts.forwards.get(attr, False),
    )


# What of a library's object blocks where not every method does: LangChain's sync twins of
# its ``a``-prefixed coroutines, a local model's inference (a client that only does sync I/O
# blocks in every method).
_LIBRARY_METHODS: dict[str, frozenset[str]] = {
    "LangChain": LANGCHAIN_TWINS,
    "transformers": frozenset({"generate"}),
    "password hasher": frozenset({"hash", "verify", "verify_and_update", "encrypt"}),
    # building an http.client connection opens nothing: its request and response do
    "http.client": frozenset({"request", "getresponse", "connect", "endheaders", "send"}),
    "llama.cpp": frozenset(
        {"create_completion", "create_chat_completion", "create_embedding", "embed", "generate"}
    ),
}


# A boto3 client's methods that build something locally, with no request.
_BOTO3_LOCAL = frozenset(
    {
        "generate_presigned_url",
        "generate_presigned_post",
        "get_paginator",
        "get_waiter",
        "can_paginate",
        "close",
    }
)


def _library_blocks(node: ast.Call, attr: str, what: str) -> bool:
    """Method `attr` of an object a blocking library built (``sync_obj:<what>``) blocks."""
    methods = _LIBRARY_METHODS.get(what)
    if (methods is not None and attr not in methods) or _lazy_stream(node, what):
        return False
    # not a sub-resource (``s3.Bucket(name)``) or ``client.meta.events.register``
    return what != "boto3" or not (attr in _BOTO3_LOCAL or attr[:1].isupper() or _via_member(node))


def _client_blocks(node: ast.Call, func: ast.Attribute, what: str) -> bool:
    """Method `func` of a sync client (``sync_client:<what>``) does its I/O: not the client's
    async surface (``client.aio.models.generate_content()``), not a lazy stream, and for an
    HTTP session a request verb."""
    if ".aio." in f"{dotted(func) or ''}." or _lazy_stream(node, what) or func.attr == "close":
        return False  # closing a sync client drops its sockets: it does not wait on a peer
    methods = _LIBRARY_METHODS.get(what)
    if methods is not None:
        return func.attr in methods  # llama.cpp's close() frees memory: only inference blocks
    if what in ("requests.Session", "httpx.Client", "httpx2.Client"):
        return func.attr in _REQUESTS_VERBS
    # the old SDK's ``client.count_tokens()`` runs a local tokenizer (the API's is
    # ``client.messages.count_tokens()``)
    return not (what == "Anthropic" and func.attr == "count_tokens" and not _via_member(node))


def _library_call(m: ModuleModel, node: ast.Call, attr: str, what: str) -> None:
    """A method of an object a blocking library built, or one annotated with its type."""
    if not _library_blocks(node, attr, what) or runs_alone(m):
        return
    if what == "LangChain":
        message = f".{attr}() is the sync twin of LangChain's `.a{attr}()`"
    elif what == "transformers":
        message = f".{attr}() runs a transformers model's inference"
    else:
        message = f"call on a synchronous {what} client"
    m.report(node, RULE.code, message + " inside async def: it blocks the event loop")


def _via_member(node: ast.Call) -> bool:
    """The call is on a member of the object (``client.meta.events.register(...)``), not on
    the object itself (``client.put_object(...)``, ``self.client.invoke_model(...)``)."""
    receiver = cast(ast.Attribute, node.func).value
    return isinstance(receiver, ast.Attribute) and not is_self_attr(receiver)


def _lazy_stream(node: ast.Call, what: str) -> bool:
    """``create_completion(..., stream=True)`` of llama.cpp returns a generator: nothing
    runs until it is iterated (the loop is reported)."""
    return what == "llama.cpp" and any(
        kw.arg == "stream" and isinstance(kw.value, ast.Constant) and kw.value.value is True
        for kw in node.keywords
    )


def loop(m: ModuleModel, node: Loop, tries: list[ast.Try | ast.TryStar]) -> None:
    """A plain ``for`` over a blocking iterator (a token streamer, a sync client's stream)."""
    if not (
        isinstance(node, ast.For) and m.in_async and isinstance(node.iter, ast.Name | ast.Attribute)
    ):
        return
    kind = m.kind_of(node.iter) or ""
    if kind.startswith("sync_iter:") and not runs_alone(m):
        what = kind.partition(":")[2]
        m.report(
            node,
            RULE.code,
            f"a plain `for` over a synchronous {what} stream inside async def: each step "
            "blocks the event loop",
        )
