"""One pass over a module's AST that runs every rule as a hook on the same walk.

The checker never imports or executes the code it reads. Names are matched by their
qualified import path (``import asyncio as aio`` then ``aio.gather`` is
``asyncio.gather``), never by bare identifiers that merely coincide.
"""

from __future__ import annotations

import ast
import re
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bounded.audit.rules import RULES

__all__ = ["Finding", "check_source"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One reported place: 1-based line and column, rule code and message."""

    path: str
    line: int
    column: int
    code: str
    message: str

    @property
    def fix(self) -> str:
        """The one-line `bounded` fix for this finding's rule."""
        return RULES[self.code].fix


# --- what the rules look for -----------------------------------------------------------

_GATHER_LIKE = {"asyncio.gather": "gather", "asyncio.wait": "wait"}
_GATHER_LIKE["asyncio.as_completed"] = "as_completed"
# asyncio APIs whose loop= parameter was removed in 3.10 (Task, Future, ensure_future keep it)
_LOOP_ARG_REMOVED = frozenset(
    "asyncio." + name
    for name in (
        "sleep",
        "gather",
        "wait",
        "wait_for",
        "shield",
        "as_completed",
        "Queue",
        "PriorityQueue",
        "LifoQueue",
        "Lock",
        "Event",
        "Condition",
        "Semaphore",
        "BoundedSemaphore",
        "open_connection",
        "start_server",
        "open_unix_connection",
        "start_unix_server",
        "create_subprocess_exec",
        "create_subprocess_shell",
    )
)
_TASK_FACTORIES = frozenset({"asyncio.create_task", "asyncio.ensure_future"})
_CONNECT_PER_OP = frozenset(
    {
        "asyncpg.connect",
        "psycopg.AsyncConnection.connect",
        "aiomysql.connect",
        "aiosqlite.connect",
        "aiopg.connect",
        "asyncmy.connect",
    }
)
# Functions that run once at start-up (or own a long-lived connection), not per request.
_STARTUP_NAME = re.compile(
    r"main|start|setup|set_up|init|lifespan|bootstrap|connect|migrat|open|aenter|create_app"
    r"|pool|warm|cli|prepare|probe|ping|reachable|ready|health|admin",
    re.IGNORECASE,
)
_REQUESTS_VERBS = frozenset(
    {"get", "post", "put", "patch", "delete", "head", "options", "request", "send", "stream"}
)
_BLOCKING_CALLS: dict[str, str] = {
    "time.sleep": "time.sleep() blocks the event loop; use `await asyncio.sleep(...)`",
    "urllib.request.urlopen": "urllib.request.urlopen() is blocking network I/O",
    "subprocess.run": "subprocess.run() blocks until the child exits",
    "subprocess.call": "subprocess.call() blocks until the child exits",
    "subprocess.check_call": "subprocess.check_call() blocks until the child exits",
    "subprocess.check_output": "subprocess.check_output() blocks until the child exits",
    "os.system": "os.system() blocks until the command exits",
    "psycopg.connect": "psycopg.connect() is a blocking (sync) connection",
}
for _verb in _REQUESTS_VERBS - {"send"}:
    _BLOCKING_CALLS[f"requests.{_verb}"] = f"requests.{_verb}() is blocking HTTP"
    _BLOCKING_CALLS[f"httpx.{_verb}"] = f"httpx.{_verb}() is blocking HTTP"
# Sync clients: creating one inside `async def` is flagged, and so is calling one made elsewhere.
_SYNC_CLIENTS: dict[str, str] = {
    "requests.Session": "requests.Session",
    "requests.sessions.Session": "requests.Session",
    "httpx.Client": "httpx.Client",
    "openai.OpenAI": "OpenAI",
    "openai.Client": "OpenAI",
    "openai.AzureOpenAI": "AzureOpenAI",
    "anthropic.Anthropic": "Anthropic",
    "anthropic.Client": "Anthropic",
    "anthropic.AnthropicBedrock": "AnthropicBedrock",
    "anthropic.AnthropicVertex": "AnthropicVertex",
}
# Sync database connections: calling one made elsewhere inside `async def` blocks the loop
# (creating one there is BND002 for psycopg2, BND005 for psycopg 3).
_SYNC_CONNECTIONS = {"psycopg2.connect": "psycopg2", "psycopg.connect": "psycopg"}
_ASYNC_RESOURCES: dict[str, str] = {
    "httpx.AsyncClient": "httpx.AsyncClient",
    "aiohttp.ClientSession": "aiohttp.ClientSession",
    "asyncpg.create_pool": "asyncpg pool",
    "aiomysql.create_pool": "aiomysql pool",
    "aiopg.create_pool": "aiopg pool",
    "openai.AsyncOpenAI": "AsyncOpenAI",
    "openai.AsyncClient": "AsyncOpenAI",
    "openai.AsyncAzureOpenAI": "AsyncAzureOpenAI",
    "anthropic.AsyncAnthropic": "AsyncAnthropic",
    "anthropic.AsyncClient": "AsyncAnthropic",
    "redis.asyncio.Redis": "redis.asyncio.Redis",
    "redis.asyncio.from_url": "redis.asyncio client",
}
# Releasing N resources at once puts no load on a dependency: not a BND001 fan-out.
_TEARDOWN = frozenset(
    {
        "aclose",
        "close",
        "disconnect",
        "terminate",
        "release",
        "shutdown",
        "stop",
        "cancel",
        "wait_closed",
        "__aexit__",
    }
)
_CLOSERS = frozenset({"aclose", "close", "__aexit__", "terminate", "disconnect", "shutdown"})
# Calls that take ownership of a resource passed to them.
# Calls that run a callback later and drop whatever it returns.
_CALLBACK_REGISTRARS = frozenset(
    {
        "add_done_callback",
        "call_soon",
        "call_soon_threadsafe",
        "call_later",
        "call_at",
        "add_signal_handler",
        "add_reader",
        "add_writer",
    }
)
_EXECUTORS = frozenset(
    {"concurrent.futures.ThreadPoolExecutor", "concurrent.futures.thread.ThreadPoolExecutor"}
)
_TEARDOWN_NAME = re.compile(
    r"stop|close|shutdown|exit|__del__|join|terminate|cleanup|dispose|teardown|quit|finali",
    re.IGNORECASE,
)
# A program's entry point: what it creates lives until the process exits.
_ENTRY_POINT = re.compile(r"_?(a?main|cli|entry_?point|run_(app|server|forever))$", re.IGNORECASE)
_OWNERS = frozenset(
    {"enter_async_context", "enter_context", "aclosing", "closing", "push_async_callback"}
)
_BREAKER_CTORS = {
    "bounded.CircuitBreaker": "bounded",
    "bounded.breaker.CircuitBreaker": "bounded",
    "aiobreaker.CircuitBreaker": "lib",
    "pybreaker.CircuitBreaker": "lib",
}
_BREAKER_FORCERS = frozenset({"disable", "force_open", "force_closed", "force_close"})
_LIB_BREAKER_FORCERS = frozenset({"open", "close", "half_open"})
_BREAKERISH = re.compile(r"breaker|circuit|(?:^|[._])cb$", re.IGNORECASE)
_TWIN_PATTERNS = (
    "_{}",
    "__{}",
    "{}_raw",
    "_{}_raw",
    "raw_{}",
    "_raw_{}",
    "{}_impl",
    "_{}_impl",
    "{}_unprotected",
    "_{}_unprotected",
    "{}_unwrapped",
    "{}_unsafe",
    "{}_direct",
)
_POOL_SIZE = re.compile(r"worker|concurren|parallel|limit|max_|pool", re.IGNORECASE)
# N copies of one coroutine that pull from a shared queue: a worker pool, bounded by N.
_WORKERISH = re.compile(
    r"worker|consum|loop|runner|drain|serve|listen|poll|reader|writer|pump", re.IGNORECASE
)
_QUEUEISH = re.compile(r"queue|(?:^|[._])q$|chan|inbox|jobs", re.IGNORECASE)
# methods that grow a collection after construction
_GROWERS = frozenset({"append", "add", "extend", "insert", "update", "setdefault", "appendleft"})
_SEMISH = re.compile(r"sem|limit|bulkhead|throttl|capacity|(?:^|[._])bh$", re.IGNORECASE)
_BOUNDED_CTORS = frozenset(
    {
        "asyncio.Semaphore",
        "asyncio.BoundedSemaphore",
        "bounded.Bulkhead",
        "bounded.bulkhead.Bulkhead",
        "bounded.RateLimiter",
        "aiolimiter.AsyncLimiter",
        "anyio.CapacityLimiter",
    }
)
_SLEEPS = frozenset({"time.sleep", "asyncio.sleep", "trio.sleep", "anyio.sleep"})
_RANDOM_MODULES = ("random.", "secrets.", "numpy.random.")
_RANDOMISH = re.compile(r"jitter|random|rand", re.IGNORECASE)
# Calls that keep a delay deterministic (anything else we cannot see into is given the benefit).
_PURE_QUALIFIED = frozenset({"itertools.count", "itertools.repeat"})
_PURE_CALLS = frozenset(
    {"min", "max", "float", "int", "pow", "abs", "round", "range", "enumerate", "len"}
)
_SERVER_DELAY = re.compile(r"retry.?after", re.IGNORECASE)
# Functions that poll for a state (a server up, a job done): not a retry against an outage.
_POLL_NAME = re.compile(r"wait|ready|readiness|poll|health|status|probe|alive|ping", re.I)
_DISCONNECTS = re.compile(
    r"Connection|Disconnect|ConnectError|ConnectTimeout|Closed|OSError|socket\.error", re.I
)
_SUPPRESS = re.compile(r"#\s*bounded:\s*ignore(?:\[([A-Za-z0-9_,\s]*)\])?")

_ALL = "*"


# Node types with nothing below them that any rule looks at.
_LEAVES: frozenset[type] = frozenset(
    {
        ast.Name,
        ast.Constant,
        ast.alias,
        ast.Pass,
        ast.Break,
        ast.Continue,
        ast.Nonlocal,
        str,
        int,
        type(None),
        *(
            cls
            for base in (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)
            for cls in base.__subclasses__()
        ),
    }
)
_SCALAR_FIELDS = frozenset(
    {
        "id",
        "ctx",
        "attr",
        "name",
        "asname",
        "module",
        "level",
        "kind",
        "type_comment",
        "is_async",
        "simple",
        "conversion",
        "op",
        "ops",
        "arg",
        "tag",
        "lineno",
    }
)
_CHILD_FIELDS: dict[type, tuple[str, ...]] = {}


def _child_fields(cls: type) -> tuple[str, ...]:
    fields = tuple(f for f in getattr(cls, "_fields", ()) if f not in _SCALAR_FIELDS)
    _CHILD_FIELDS[cls] = fields
    return fields


def _is_test_path(path: str) -> bool:
    parts = path.replace("\\", "/").split("/")
    name = parts[-1]
    return (
        "tests" in parts[:-1]
        or "test" in parts[:-1]
        or name.startswith("test_")
        or name.endswith("_test.py")
        or name == "conftest.py"
    )


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    if isinstance(node, ast.Name):
        return node.id
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _candidate_calls(value: ast.expr) -> list[ast.Call]:
    """Calls whose result `value` may be: ``c``, ``await c``, ``x or c``, ``c if t else d``."""
    if isinstance(value, ast.Await):
        value = value.value
    if isinstance(value, ast.Call):
        return [value]
    if isinstance(value, ast.BoolOp):
        return [c for v in value.values for c in _candidate_calls(v)]
    if isinstance(value, ast.IfExp):
        return _candidate_calls(value.body) + _candidate_calls(value.orelse)
    return []


def _timeout_arg(call: ast.Call, position: int) -> ast.expr | None:
    """The call's timeout (keyword or positional), None when absent or ``None``."""
    value = call.args[position] if len(call.args) > position else None
    for kw in call.keywords:
        if kw.arg == "timeout":
            value = kw.value
    if isinstance(value, ast.Constant) and value.value is None:
        return None
    return value


def _catches_disconnect(handler: ast.ExceptHandler) -> bool:
    """An ``except`` for a lost connection (ConnectionError, OSError, ConnectionClosed...)."""
    kind = handler.type
    names = kind.elts if isinstance(kind, ast.Tuple) else [kind] if kind is not None else []
    return any(_DISCONNECTS.search(_dotted(n) or "") for n in names)


def _cancels(body: list[ast.stmt], target: ast.expr) -> bool:
    """True if `body` calls ``<target>.cancel()`` (the loop variable's tasks are cancelled)."""
    if not isinstance(target, ast.Name):
        return False
    for stmt in body:
        if (
            isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Attribute)
            and stmt.value.func.attr == "cancel"
            and isinstance(stmt.value.func.value, ast.Name)
            and stmt.value.func.value.id == target.id
        ):
            return True
        if isinstance(stmt, ast.If) and _cancels(stmt.body, target):
            return True  # if not t.done(): t.cancel()
    return False


def _is_constant_size(node: ast.expr) -> bool:
    """True for iterables whose size is fixed in the source: range(3), (a, b), "abc"."""
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return not any(isinstance(e, ast.Starred) for e in node.elts)
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str | bytes)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "range"
        and not node.keywords
    ):
        return all(isinstance(a, ast.Constant) and isinstance(a.value, int) for a in node.args)
    return False


class _Frame:
    """A function (or the module) being walked."""

    __slots__ = (
        "aliases",
        "assigned",
        "cancelled",
        "closed",
        "collections",
        "connects",
        "escaped",
        "finally_depth",
        "globals",
        "is_async",
        "is_generator",
        "kinds",
        "loop_depth",
        "name",
        "params",
        "pending",
        "pool_loops",
        "semguard_loops",
        "stopping",
    )

    def __init__(self, name: str, is_async: bool) -> None:
        self.name = name
        self.is_async = is_async
        self.loop_depth = 0
        self.finally_depth = 0
        self.is_generator = False
        # local name -> kind ("thread", "sync_client:<what>", "loop", "breaker:<lib>", "bound")
        self.kinds: dict[str, str] = {}
        # local name -> comprehension, or (element, bounded) appended in a loop
        self.collections: dict[str, tuple[ast.expr, bool]] = {}
        # resource bound to a local name, awaiting a close / escape
        self.pending: dict[str, tuple[ast.Call, str]] = {}
        self.closed: dict[str, bool] = {}  # name -> closed inside a finally block
        self.escaped: set[str] = set()
        self.semguard_loops = 0
        self.pool_loops = 0  # enclosing `for _ in range(workers)` loops
        self.stopping = False  # an event was set: a shutdown path
        self.connects: list[tuple[ast.Call, str]] = []  # BND002 candidates
        self.globals: set[str] = set()  # names declared `global` here
        self.cancelled: set[str] = set()  # collections whose tasks were cancelled here
        self.params: frozenset[str] = frozenset()
        self.aliases: dict[str, str] = {}  # local name -> the dotted name it was read from
        # local name -> every expression assigned to it (for BND008's delay analysis)
        self.assigned: dict[str, list[ast.expr]] = {}


class _Class:
    __slots__ = ("closed", "grown", "kinds", "pending")

    def __init__(self) -> None:
        self.kinds: dict[str, str] = {}  # self attribute -> kind
        self.pending: dict[str, tuple[ast.Call, str]] = {}
        self.closed: set[str] = set()
        self.grown: set[str] = set()  # self attributes grown outside __init__


class _Checker:
    """Walks one module once; every rule is a hook on that walk."""

    def __init__(self, path: str, is_test: bool) -> None:
        self.path = path
        self.is_test = is_test
        self.imports: dict[str, str] = {}
        self.findings: list[tuple[int, int, str, str]] = []
        self.module = _Frame("<module>", False)
        self.frames: list[_Frame] = [self.module]
        self.classes: list[_Class] = []
        self.managed: set[int] = set()  # ids of resource-creating calls that are owned
        self.module_closed: set[str] = set()  # dotted names closed anywhere in the module
        self.module_pending: dict[str, tuple[ast.Call, str]] = {}
        self.sem_guarded: set[str] = set()  # functions whose body holds a semaphore
        # gather/wait call, which, callee, and the class whose self attribute it iterates
        self.gather_candidates: list[
            tuple[ast.AST, str, str | None, tuple[_Class, str] | None]
        ] = []
        self.breaker_protected: set[str] = set()
        self.defined_functions: set[str] = set()
        self.twin_calls: list[tuple[ast.AST, str, str]] = []
        # enclosing loops: (loop, its frame, try statements directly inside it)
        self.loops: list[
            tuple[ast.For | ast.AsyncFor | ast.While, _Frame, list[ast.Try | ast.TryStar]]
        ] = []
        self.imports_threading = False
        # node, message, the (scope, name) the thread is bound to
        self.daemons: list[tuple[ast.AST, str, tuple[object, str] | None]] = []
        self.joined: set[tuple[object, str] | None] = set()  # (scope, name) joined
        self.call_targets: dict[int, tuple[object, str] | None] = {}  # id(call) -> its target
        self.lifetime: set[int] = set()  # connect calls stored on an object: held, not per-op
        # module functions and methods by name (BND008 looks into backoff helpers)
        self.functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        self.helper_results: dict[ast.AST, bool] = {}
        self.dispatch: dict[type, Callable[[ast.AST], None]] = {
            ast.Import: self.visit_Import,  # type: ignore[dict-item]
            ast.ImportFrom: self.visit_ImportFrom,  # type: ignore[dict-item]
            ast.FunctionDef: self.visit_FunctionDef,  # type: ignore[dict-item]
            ast.AsyncFunctionDef: self.visit_FunctionDef,  # type: ignore[dict-item]
            ast.Lambda: self.visit_Lambda,  # type: ignore[dict-item]
            ast.ClassDef: self.visit_ClassDef,  # type: ignore[dict-item]
            ast.For: self.visit_Loop,  # type: ignore[dict-item]
            ast.AsyncFor: self.visit_Loop,  # type: ignore[dict-item]
            ast.While: self.visit_Loop,  # type: ignore[dict-item]
            ast.ListComp: self.visit_Comp,  # type: ignore[dict-item]
            ast.SetComp: self.visit_Comp,  # type: ignore[dict-item]
            ast.GeneratorExp: self.visit_Comp,  # type: ignore[dict-item]
            ast.DictComp: self.visit_Comp,  # type: ignore[dict-item]
            ast.Try: self.visit_Try,  # type: ignore[dict-item]
            ast.TryStar: self.visit_Try,  # type: ignore[dict-item]
            ast.With: self.visit_With,  # type: ignore[dict-item]
            ast.AsyncWith: self.visit_With,  # type: ignore[dict-item]
            ast.Assign: self.visit_Assign,  # type: ignore[dict-item]
            ast.AnnAssign: self.visit_Assign,  # type: ignore[dict-item]
            ast.AugAssign: self.visit_AugAssign,  # type: ignore[dict-item]
            ast.Expr: self.visit_Expr,  # type: ignore[dict-item]
            ast.Return: self.visit_Return,  # type: ignore[dict-item]
            ast.Yield: self.visit_Yield,  # type: ignore[dict-item]
            ast.YieldFrom: self.visit_Yield,  # type: ignore[dict-item]
            ast.Call: self.visit_Call,  # type: ignore[dict-item]
            ast.Global: self.visit_Global,  # type: ignore[dict-item]
        }

    # --- walking ---------------------------------------------------------------------

    def index(self, tree: ast.Module) -> None:
        """Module functions and methods by name, before the walk (uses may come first)."""
        for stmt in tree.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                self.functions[stmt.name] = stmt
            elif isinstance(stmt, ast.ClassDef):
                for item in stmt.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        self.functions.setdefault(item.name, item)

    def visit(self, node: ast.AST) -> None:
        handler = self.dispatch.get(type(node))
        if handler is not None:
            handler(node)
        elif type(node) not in _LEAVES:
            self.generic(node)

    def generic(self, node: ast.AST) -> None:
        dispatch = self.dispatch
        generic = self.generic
        leaves = _LEAVES
        fields = _CHILD_FIELDS.get(type(node))
        if fields is None:
            fields = _child_fields(type(node))
        for field in fields:
            value = getattr(node, field, None)
            if value is None:
                continue
            if type(value) is list:
                for item in value:
                    kind = type(item)
                    if kind in leaves:
                        continue
                    handler = dispatch.get(kind)
                    if handler is not None:
                        handler(item)
                    else:
                        generic(item)
            else:
                kind = type(value)
                if kind in leaves:
                    continue
                handler = dispatch.get(kind)
                if handler is not None:
                    handler(value)
                else:
                    generic(value)

    def visit_all(self, nodes: Iterable[ast.AST]) -> None:
        for node in nodes:
            self.visit(node)

    def report(self, node: ast.AST, code: str, message: str) -> None:
        line = getattr(node, "lineno", 1)
        col = getattr(node, "col_offset", 0)
        self.findings.append((line, col, code, message))

    @property
    def frame(self) -> _Frame:
        return self.frames[-1]

    # --- names -----------------------------------------------------------------------

    def qualname(self, node: ast.expr) -> str | None:
        """The import-qualified name of a Name/Attribute chain, or None if not imported."""
        if isinstance(node, ast.Name):
            return self.imports.get(node.id)
        attrs: list[str] = []
        while isinstance(node, ast.Attribute):
            attrs.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        base = self.imports.get(node.id)
        if base is None:
            return None
        attrs.append(base)
        return ".".join(reversed(attrs))

    def kind_of(self, node: ast.expr) -> str | None:
        """What a local/global name or ``self.attr`` was bound to, if we saw it."""
        if isinstance(node, ast.Name):
            for frame in reversed(self.frames):
                kind = frame.kinds.get(node.id)
                if kind is not None:
                    return kind
            return None
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
            and self.classes
        ):
            return self.classes[-1].kinds.get(node.attr)
        return None

    def bind_kind(self, target: ast.expr, kind: str) -> None:
        if isinstance(target, ast.Name):
            self.frame.kinds[target.id] = kind
        elif (
            isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == "self"
            and self.classes
        ):
            self.classes[-1].kinds[target.attr] = kind

    def kind_of_value(self, value: ast.expr) -> str | None:
        if isinstance(value, ast.Await):
            value = value.value
        if not isinstance(value, ast.Call):
            return None
        func = value.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "submit"
            and isinstance(func.value, ast.Name | ast.Attribute)
            and self.kind_of(func.value) == "executor"
        ):
            return "future"
        q = self.qualname(func)
        if q is None:
            return None
        if q in ("threading.Thread", "threading.Timer"):
            return "thread"
        if q in _EXECUTORS:
            return "executor"
        if q in _SYNC_CLIENTS:
            return "sync_client:" + _SYNC_CLIENTS[q]
        if q in _SYNC_CONNECTIONS:
            return "sync_client:" + _SYNC_CONNECTIONS[q]
        if q in ("asyncio.get_running_loop", "asyncio.get_event_loop", "asyncio.new_event_loop"):
            return "loop"
        if q == "asyncio.get_event_loop_policy":
            return "policy"
        if q in _BREAKER_CTORS:
            return "breaker:" + _BREAKER_CTORS[q]
        if q in _BOUNDED_CTORS:
            return "bound"
        return None

    # --- imports ---------------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.imports[alias.asname] = alias.name
            else:
                top = alias.name.partition(".")[0]
                self.imports[top] = top
            if alias.name == "threading":
                self.imports_threading = True

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module:
            return
        for alias in node.names:
            if alias.name != "*":
                self.imports[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        if node.module == "threading":
            self.imports_threading = True

    # --- scopes ----------------------------------------------------------------------

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for deco in node.decorator_list:
            self.visit(deco)
            target = deco.func if isinstance(deco, ast.Call) else deco
            text = _dotted(target) or ""
            kind = self.kind_of(target) if isinstance(target, ast.Name | ast.Attribute) else None
            if _BREAKERISH.search(text) or (kind or "").startswith("breaker:"):
                self.breaker_protected.add(node.name)
        self.visit(node.args)
        if node.returns is not None:
            self.visit(node.returns)
        self.defined_functions.add(node.name)
        if self._holds_semaphore(node.body) or any(
            self._is_semish(deco) for deco in node.decorator_list
        ):
            self.sem_guarded.add(node.name)
        frame = _Frame(node.name, isinstance(node, ast.AsyncFunctionDef))
        args = node.args
        frame.params = frozenset(
            a.arg
            for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg)
            if a is not None
        )
        self.frames.append(frame)
        self.visit_all(node.body)
        self.frames.pop()
        self._settle_function(frame)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit(node.args)
        self.frames.append(_Frame("<lambda>", False))
        self.visit(node.body)
        self.frames.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.visit_all(node.decorator_list)
        self.visit_all(node.bases)
        self.visit_all(node.keywords)
        cls = _Class()
        self.classes.append(cls)
        self.visit_all(node.body)
        self.classes.pop()
        for attr, (call, what) in cls.pending.items():
            if attr not in cls.closed:
                self.report(
                    call,
                    "BND006",
                    f"{what} stored on self.{attr} but the class never closes it "
                    f"(no self.{attr}.aclose()/close())",
                )

    def visit_Loop(self, node: ast.For | ast.AsyncFor | ast.While) -> None:
        frame = self.frame
        if isinstance(node, ast.While):
            self.visit(node.test)
        else:
            self.visit(node.target)
            self.visit(node.iter)
            self._record_assignment(node.target, node.iter)
        guarded = self._acquires_semaphore(node.body) or (
            not isinstance(node, ast.While) and self._constant_size(node.iter, 0)
        )
        pool = not isinstance(node, ast.While) and self._pool_range(node.iter)
        if (
            not isinstance(node, ast.While)
            and isinstance(node.iter, ast.Name)
            and _cancels(node.body, node.target)
        ):
            frame.cancelled.add(node.iter.id)  # for t in tasks: t.cancel()
        frame.loop_depth += 1
        frame.pool_loops += pool
        if guarded:
            frame.semguard_loops += 1
        tries: list[ast.Try | ast.TryStar] = []
        self.loops.append((node, frame, tries))
        self.visit_all(node.body)
        self.loops.pop()
        for try_node in tries:
            self._check_retry_loop(node, try_node)
        if guarded:
            frame.semguard_loops -= 1
        frame.pool_loops -= pool
        frame.loop_depth -= 1
        self.visit_all(node.orelse)

    def visit_Comp(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
    ) -> None:
        frame = self.frame
        frame.loop_depth += 1
        self.generic(node)
        frame.loop_depth -= 1

    def visit_Try(self, node: ast.Try | ast.TryStar) -> None:
        if node.handlers and self.loops and self.loops[-1][1] is self.frame:
            self.loops[-1][2].append(node)
        self.visit_all(node.body)
        self.visit_all(node.handlers)
        self.visit_all(node.orelse)
        frame = self.frame
        frame.finally_depth += 1
        self.visit_all(node.finalbody)
        frame.finally_depth -= 1

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            expr = item.context_expr
            inner = expr.value if isinstance(expr, ast.Await) else expr
            if isinstance(inner, ast.Call):
                self.managed.add(id(inner))
                kind = self.kind_of_value(inner)
                if kind is not None and item.optional_vars is not None:
                    self.bind_kind(item.optional_vars, kind)
            self._mark_escaped(inner)
            self.visit(expr)
            if item.optional_vars is not None:
                self.visit(item.optional_vars)
        self.visit_all(node.body)

    # --- statements ------------------------------------------------------------------

    def visit_Assign(self, node: ast.Assign | ast.AnnAssign) -> None:
        value = node.value
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if value is None:
            self.visit(targets[0])
            return
        # BND003: t.daemon = True
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and target.attr == "daemon"
                and isinstance(value, ast.Constant)
                and value.value is True
                and (self.imports_threading or self.kind_of(target.value) == "thread")
            ):
                self.daemons.append(
                    (
                        node,
                        "daemon thread: it is killed mid-work at interpreter exit and never joined",
                        self._scoped(target.value),
                    )
                )
        inner = value.value if isinstance(value, ast.Await) else value
        if len(targets) == 1 and isinstance(inner, ast.Call):
            self.call_targets[id(inner)] = self._scoped(targets[0])
            if isinstance(targets[0], ast.Attribute):
                self.lifetime.add(id(inner))  # self.conn = await asyncpg.connect(...)
        for target in targets:
            self._record_assignment(target, value)
            self._record_alias(target, value)
        if len(targets) == 1:
            target = targets[0]
            kind = self.kind_of_value(value)
            if kind is not None:
                self.bind_kind(target, kind)
            elif isinstance(target, ast.Name):
                self.frame.kinds.pop(target.id, None)
            for call in _candidate_calls(inner):
                resource = self._resource(call)
                if resource is not None:
                    self._track_resource(target, call, resource)
            if isinstance(target, ast.Name):
                if isinstance(value, ast.ListComp | ast.GeneratorExp | ast.SetComp | ast.DictComp):
                    self.frame.collections[target.id] = (value, False)
                else:
                    self.frame.collections.pop(target.id, None)
                    if target.id == "_" and isinstance(inner, ast.Call):
                        self._check_dropped_task(inner)
            elif (
                isinstance(value, ast.Name)
                and value.id in self.frame.pending
                and isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
                and self.classes
            ):
                # client = AsyncClient(); self._client = client: the class must close it
                self.classes[-1].pending[target.attr] = self.frame.pending[value.id]
                self.frame.escaped.add(value.id)
            else:
                # storing a local resource on an object hands it over
                self._mark_escaped(value)
        self.visit(value)
        for target in targets:
            self.visit(target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._record_assignment(node.target, node.value)
        self.visit(node.value)
        self.visit(node.target)

    def _record_assignment(self, target: ast.expr, value: ast.expr) -> None:
        if isinstance(target, ast.Name):
            self.frame.assigned.setdefault(target.id, []).append(value)
        elif isinstance(target, ast.Tuple | ast.List):
            for elt in target.elts:
                self._record_assignment(elt, value)

    def _record_alias(self, target: ast.expr, value: ast.expr) -> None:
        if isinstance(target, ast.Name):
            if isinstance(value, ast.Attribute):
                text = _dotted(value)
                if text is not None:
                    self.frame.aliases[target.id] = text
        elif (
            isinstance(target, ast.Tuple)
            and isinstance(value, ast.Tuple)
            and len(target.elts) == len(value.elts)
        ):
            for t, v in zip(target.elts, value.elts, strict=True):
                self._record_alias(t, v)

    def visit_Expr(self, node: ast.Expr) -> None:
        value = node.value
        if isinstance(value, ast.Call):
            self._check_dropped_task(value)
        elif isinstance(value, ast.ListComp | ast.SetComp) and isinstance(value.elt, ast.Call):
            self._check_dropped_task(value.elt)  # [create_task(f(x)) for x in xs] as a statement
        self.visit(value)

    def visit_Global(self, node: ast.Global) -> None:
        self.frame.globals.update(node.names)

    def visit_Return(self, node: ast.Return) -> None:
        if node.value is not None:
            self._hand_over(node.value)
            self.visit(node.value)

    def visit_Yield(self, node: ast.Yield | ast.YieldFrom) -> None:
        self.frame.is_generator = True
        if node.value is not None:
            self._hand_over(node.value)
            self.visit(node.value)

    def _hand_over(self, value: ast.expr) -> None:
        inner = value.value if isinstance(value, ast.Await) else value
        if isinstance(inner, ast.Call):
            self.managed.add(id(inner))
        elif isinstance(inner, ast.Tuple | ast.List):
            for elt in inner.elts:
                self._hand_over(elt)
        self._mark_escaped(inner)

    def _mark_escaped(self, node: ast.expr) -> None:
        if isinstance(node, ast.Name) and node.id in self.frame.pending:
            self.frame.escaped.add(node.id)

    # --- calls -----------------------------------------------------------------------

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        q = self.qualname(func)
        frame = self.frame
        if q is not None:
            self._check_qualified_call(node, q, frame)
        name = None
        if isinstance(func, ast.Attribute):
            self._check_method_call(node, func, frame)
            if isinstance(func.value, ast.Name) and func.value.id in ("self", "cls"):
                name = func.attr
        elif isinstance(func, ast.Name):
            name = func.id
        if name is not None and (
            name[0] == "_" or "raw" in name or "impl" in name or "unprotected" in name
        ):
            self.twin_calls.append((node, name, frame.name))
        if isinstance(func, ast.Attribute) and func.attr in _CALLBACK_REGISTRARS:
            for arg in node.args:
                if isinstance(arg, ast.Lambda) and isinstance(arg.body, ast.Call):
                    self._check_dropped_task(arg.body)  # lambda _: create_task(...)
        # ownership transfer: resources passed to another call are owned by it; a
        # constructor (`Owner(client)`) or an exit stack takes a local resource over
        callee = func.attr if isinstance(func, ast.Attribute) else name or ""
        owner = callee in _OWNERS or callee[:1].isupper()
        for value in (*node.args, *(kw.value for kw in node.keywords)):
            inner = value.value if isinstance(value, ast.Await | ast.Starred) else value
            if isinstance(inner, ast.Call):
                self.managed.add(id(inner))
            elif isinstance(inner, ast.Name) and inner.id in frame.pending and owner:
                frame.escaped.add(inner.id)
            elif isinstance(inner, ast.Attribute) and inner.attr in _CLOSERS:
                # stack.push_async_callback(client.aclose), atexit.register(pool.close)
                self._note_close(inner.value, frame)
        self.visit(func)
        for arg in node.args:
            self.visit(arg)
        for kw in node.keywords:
            self.visit(kw.value)

    def _check_qualified_call(self, node: ast.Call, q: str, frame: _Frame) -> None:
        # BND001
        which = _GATHER_LIKE.get(q)
        if which is not None:
            self._check_gather(node, which)
        # BND002
        elif q in _CONNECT_PER_OP:
            self._check_connect(node, q, frame)
        elif q == "psycopg2.connect":
            if self._in_async():
                self.report(
                    node,
                    "BND002",
                    "psycopg2.connect() inside async def: a blocking new connection per call",
                )
        # BND003
        elif q in ("threading.Thread", "threading.Timer"):
            for kw in node.keywords:
                if (
                    kw.arg == "daemon"
                    and isinstance(kw.value, ast.Constant)
                    and kw.value.value is True
                ):
                    self.daemons.append(
                        (
                            node,
                            f"{q}(daemon=True): killed mid-work at exit, never joined",
                            self.call_targets.get(id(node)),
                        )
                    )
        # BND004
        elif q == "asyncio.get_event_loop":
            self._check_get_event_loop(node, "asyncio.get_event_loop()")
        # BND005
        elif q in _BLOCKING_CALLS:
            if self._in_async():
                self.report(node, "BND005", _BLOCKING_CALLS[q] + " inside async def")
        elif q in _SYNC_CLIENTS:
            if self._in_async() and q not in ("requests.Session", "requests.sessions.Session"):
                self.report(
                    node,
                    "BND005",
                    f"synchronous {_SYNC_CLIENTS[q]} client inside async def: every call "
                    "blocks the event loop",
                )
        # BND006
        elif q in _ASYNC_RESOURCES and id(node) not in self.managed:
            self.report(
                node,
                "BND006",
                f"{_ASYNC_RESOURCES[q]} created without `async with` or a close: its "
                "connections leak",
            )
        if q in _LOOP_ARG_REMOVED and any(kw.arg == "loop" for kw in node.keywords):
            self.report(node, "BND004", f"loop= argument to {q}() (removed in Python 3.10)")

    def _check_get_event_loop(self, node: ast.Call, what: str) -> None:
        if self._in_async():
            # the running loop is returned: style, not a fault (BND010, off by default)
            self.report(node, "BND010", f"{what} in a coroutine: use asyncio.get_running_loop()")
            return
        if len(self.frames) == 1:
            msg = f"{what} at module level: no loop is running (use asyncio.run(main()))"
        else:
            msg = (
                f"{what} outside a coroutine: with no running loop it creates a stray loop "
                "(RuntimeError on Python 3.14); use asyncio.get_running_loop() or asyncio.run()"
            )
        self.report(node, "BND004", msg)

    def _check_method_call(self, node: ast.Call, func: ast.Attribute, frame: _Frame) -> None:
        attr = func.attr
        receiver = func.value
        if attr == "get_event_loop" and (
            self.kind_of_value(receiver) == "policy"
            or (
                isinstance(receiver, ast.Name | ast.Attribute)
                and self.kind_of(receiver) == "policy"
            )
        ):
            self._check_get_event_loop(node, "policy.get_event_loop()")
            return
        # BND007: f.__wrapped__(...)
        if attr == "__wrapped__":
            root = _root_name(receiver)
            # a wrapper calling what it wraps (self.__wrapped__, or the argument of the
            # decorator it is nested in) is the wrapper's own business, not a bypass
            own = (isinstance(receiver, ast.Name) and receiver.id in ("self", "cls")) or any(
                root in f.params for f in self.frames[1:-1]
            )
            if not self.is_test and not own:
                self.report(
                    node,
                    "BND007",
                    f"{_dotted(func) or '...__wrapped__'}() calls the undecorated "
                    "function, bypassing its decorators (a circuit breaker, if any)",
                )
            return
        if attr in _CLOSERS:
            self._note_close(receiver, frame)
        kind = self.kind_of(receiver) if isinstance(receiver, ast.Name | ast.Attribute) else None
        if attr == "set" and not node.args:
            frame.stopping = True  # stop_event.set(): a shutdown path
        # BND003: thread.join(timeout)
        if attr == "join":
            self._note_join(receiver, frame)
        if attr == "join" and kind == "thread":
            # a shutdown path that signalled the thread to stop may bound its wait
            if _timeout_arg(node, 0) is not None and not (
                frame.stopping or _TEARDOWN_NAME.search(frame.name)
            ):
                self.report(
                    node,
                    "BND003",
                    "thread used as a timeout: join(timeout) returns with the thread still running",
                )
        elif attr == "setDaemon" and kind == "thread":
            self.daemons.append(
                (
                    node,
                    "setDaemon(True): daemon thread, killed mid-work at exit",
                    self._scoped(receiver),
                )
            )
        elif attr == "result" and _timeout_arg(node, 0) is not None:
            submitted = (
                isinstance(receiver, ast.Call) and self.kind_of_value(receiver) == "future"
            ) or kind == "future"
            if submitted:
                self.report(
                    node,
                    "BND003",
                    "worker thread used as a timeout: submit(...).result(timeout) returns with "
                    "the thread still running (and `with ThreadPoolExecutor()` waits for it)",
                )
        # BND007: disabling/forcing a breaker
        elif (attr in _BREAKER_FORCERS or attr in _LIB_BREAKER_FORCERS) and not self.is_test:
            text = _dotted(receiver) or ""
            lib = kind == "breaker:lib"
            if (attr in _BREAKER_FORCERS and (_BREAKERISH.search(text) or lib)) or (
                attr in _LIB_BREAKER_FORCERS and lib
            ):
                self.report(
                    node,
                    "BND007",
                    f"{text}.{attr}() overrides the circuit breaker outside tests",
                )
        # BND009: loop.create_task(...) handled in _check_dropped_task
        # BND005: requests.Session().get(...) in one expression
        if (
            isinstance(receiver, ast.Call)
            and attr in _REQUESTS_VERBS
            and self._in_async()
            and self.kind_of_value(receiver) == "sync_client:requests.Session"
        ):
            self.report(
                node, "BND005", f"requests.Session.{attr}() is blocking HTTP inside async def"
            )
        # BND005: methods of sync clients made elsewhere
        if self._in_async():
            root = _root_name(func)
            if root is not None:
                base: ast.expr = func.value
                while isinstance(base, ast.Attribute) and not (
                    isinstance(base.value, ast.Name) and base.value.id == "self"
                ):
                    base = base.value
                bkind = self.kind_of(base) if isinstance(base, ast.Name | ast.Attribute) else None
                if bkind is not None and bkind.startswith("sync_client:"):
                    what = bkind.partition(":")[2]
                    local = isinstance(base, ast.Name) and base.id in frame.kinds
                    if what == "requests.Session":
                        if attr in _REQUESTS_VERBS:
                            self.report(
                                node,
                                "BND005",
                                f"requests.Session.{attr}() is blocking HTTP inside async def",
                            )
                    elif not local and (what != "httpx.Client" or attr in _REQUESTS_VERBS):
                        self.report(
                            node,
                            "BND005",
                            f"call on a synchronous {what} client inside async def blocks the "
                            "event loop",
                        )
        # BND001 bookkeeping: tasks.append(coro(...)) in a loop
        if (
            attr in ("append", "add")
            and isinstance(receiver, ast.Name)
            and frame.loop_depth
            and len(node.args) == 1
            and isinstance(node.args[0], ast.Call)
        ):
            element = node.args[0]
            bounded_loop = frame.semguard_loops > 0 or (
                frame.pool_loops > 0 and self._workerish(element)
            )
            frame.collections[receiver.id] = (element, bounded_loop)
        # a self attribute grown after construction is input-sized, not fixed by the code
        if (
            attr in _GROWERS
            and isinstance(receiver, ast.Attribute)
            and isinstance(receiver.value, ast.Name)
            and receiver.value.id == "self"
            and self.classes
            and frame.name != "__init__"
        ):
            self.classes[-1].grown.add(receiver.attr)

    # --- rule helpers ----------------------------------------------------------------

    def _in_async(self) -> bool:
        return self.frames[-1].is_async

    def _check_gather(self, node: ast.Call, which: str) -> None:
        if which == "gather":
            exprs = [a.value for a in node.args if isinstance(a, ast.Starred)]
        else:
            exprs = node.args[:1]
            for kw in node.keywords:
                if kw.arg in ("fs", "aws"):
                    exprs = [kw.value]
        for expr in exprs:
            if isinstance(expr, ast.Name) and any(expr.id in f.cancelled for f in self.frames):
                continue  # awaiting tasks just cancelled: teardown, not fan-out
            element = self._unbounded_element(expr)
            if element is None or self._passes_limiter(element):
                continue
            callee = self._callee_name(element)
            self.gather_candidates.append((node, which, callee, self._self_collection(expr)))
            return

    def _unbounded_element(self, expr: ast.expr) -> ast.Call | None:
        """The coroutine-making call of a non-constant-size collection, if unbounded."""
        if isinstance(expr, ast.ListComp | ast.GeneratorExp | ast.SetComp | ast.DictComp):
            elt = expr.value if isinstance(expr, ast.DictComp) else expr.elt
            workers = self._workerish(elt)
            if all(
                self._constant_size(g.iter, 0) or (workers and self._pool_range(g.iter))
                for g in expr.generators
            ):
                return None
            return elt if isinstance(elt, ast.Call) else None
        if (
            isinstance(expr, ast.Call)
            and isinstance(expr.func, ast.Attribute)
            and expr.func.attr == "values"
            and not expr.args
        ):
            return self._unbounded_element(expr.func.value)  # asyncio.wait(tasks.values())
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
            if expr.func.id == "map" and len(expr.args) == 2:
                if self._constant_size(expr.args[1], 0):
                    return None
                return ast.Call(func=expr.args[0], args=[], keywords=[])
            return None
        if isinstance(expr, ast.Name):
            for frame in reversed(self.frames):
                entry = frame.collections.get(expr.id)
                if entry is not None:
                    value, guarded = entry
                    if guarded:
                        return None
                    if isinstance(value, ast.Call):
                        return value
                    return self._unbounded_element(value)
            return None
        if isinstance(expr, ast.List | ast.Tuple):
            for elt in expr.elts:
                if isinstance(elt, ast.Starred):
                    found = self._unbounded_element(elt.value)
                    if found is not None:
                        return found
        return None

    def _constant_size(self, node: ast.expr, depth: int) -> bool:
        """True if the iterable's size is fixed in the source, not by the input.

        ``range(3)``, ``range(N)`` with ``N = 100`` assigned once, ``(a, b)``, a string, a
        comprehension over those, or a name only ever assigned such values.
        """
        if _is_constant_size(node):
            return True
        if depth > 4:
            return False
        if isinstance(node, ast.ListComp | ast.GeneratorExp | ast.SetComp):
            return all(self._constant_size(g.iter, depth + 1) for g in node.generators)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            if node.func.id == "range":
                return all(self._constant_int(a, depth + 1) for a in node.args)
            if node.func.id in ("enumerate", "reversed", "sorted", "list", "tuple", "zip"):
                return bool(node.args) and all(self._constant_size(a, depth + 1) for a in node.args)
        if isinstance(node, ast.Name):
            values = self._assignments(node.id)
            return bool(values) and all(self._constant_size(v, depth + 1) for v in values)
        return False

    def _pool_range(self, node: ast.expr) -> bool:
        """``range(workers)``: sized by configured concurrency (a pool if items are workers)."""
        return (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "range"
            and bool(node.args)
            and all(
                isinstance(a, ast.Name | ast.Attribute) and _POOL_SIZE.search(_dotted(a) or "")
                for a in node.args
            )
        )

    def _workerish(self, element: ast.expr) -> bool:
        """A coroutine that loops over shared work: ``worker(queue)``, ``self._consume()``."""
        if not isinstance(element, ast.Call):
            return False
        call = element
        if call.args and isinstance(call.args[0], ast.Call):
            call = call.args[0]  # create_task(worker(q))
        name = self._callee_name(call) or ""
        if _WORKERISH.search(name):
            return True
        values = [*call.args, *(kw.value for kw in call.keywords)]
        return any(
            isinstance(v, ast.Name | ast.Attribute) and _QUEUEISH.search(_dotted(v) or "")
            for v in values
        )

    def _self_collection(self, expr: ast.expr) -> tuple[_Class, str] | None:
        """The class and attribute when `expr` iterates only over ``self.attr``."""
        if not isinstance(expr, ast.ListComp | ast.GeneratorExp | ast.SetComp) or not self.classes:
            return None
        attrs = set()
        for gen in expr.generators:
            it = gen.iter
            if (
                isinstance(it, ast.Call)
                and isinstance(it.func, ast.Attribute)
                and not it.args
                and it.func.attr in ("values", "items", "keys")
            ):
                it = it.func.value
            if (
                isinstance(it, ast.Attribute)
                and isinstance(it.value, ast.Name)
                and it.value.id == "self"
            ):
                attrs.add(it.attr)
            elif not self._constant_size(it, 0):
                return None
        return (self.classes[-1], attrs.pop()) if len(attrs) == 1 else None

    def _constant_int(self, node: ast.expr, depth: int) -> bool:
        if isinstance(node, ast.Constant):
            return isinstance(node.value, int)
        if isinstance(node, ast.UnaryOp | ast.BinOp):
            return all(
                self._constant_int(c, depth + 1)
                for c in ast.iter_child_nodes(node)
                if isinstance(c, ast.expr)
            )
        if isinstance(node, ast.Name) and depth <= 4:
            values = self._assignments(node.id)
            return bool(values) and all(self._constant_int(v, depth + 1) for v in values)
        return False

    def _assignments(self, name: str) -> list[ast.expr]:
        for frame in reversed(self.frames):
            values = frame.assigned.get(name)
            if values is not None:
                return values
        return []

    def _callee_name(self, call: ast.Call) -> str | None:
        # unwrap create_task(coro(...)) / ensure_future / loop.create_task / tg.create_task
        func = call.func
        if call.args and isinstance(call.args[0], ast.Call):
            q = self.qualname(func)
            if q in _TASK_FACTORIES or (
                isinstance(func, ast.Attribute) and func.attr in ("create_task", "spawn")
            ):
                call = call.args[0]
                func = call.func
        if isinstance(func, ast.Name):
            return func.id
        if isinstance(func, ast.Attribute):
            return func.attr
        return None

    def _passes_limiter(self, call: ast.Call) -> bool:
        """``fetch(u, sem)`` / ``fetch(u, limiter=bh)``: the callee is handed its bound."""
        inner = call
        if call.args and isinstance(call.args[0], ast.Call):
            inner = call.args[0]  # create_task(fetch(u, sem))
        values = [*inner.args, *(kw.value for kw in inner.keywords)]
        return any(isinstance(v, ast.Name | ast.Attribute) and self._is_semish(v) for v in values)

    def _holds_semaphore(self, body: list[ast.stmt]) -> bool:
        for stmt in body:
            if isinstance(stmt, ast.AsyncWith):
                for item in stmt.items:
                    if self._is_semish(item.context_expr):
                        return True
            elif self._acquires_semaphore([stmt]):
                return True
        return False

    def _acquires_semaphore(self, body: list[ast.stmt]) -> bool:
        for stmt in body:
            if (
                isinstance(stmt, ast.Expr)
                and isinstance(stmt.value, ast.Await)
                and isinstance(stmt.value.value, ast.Call)
                and isinstance(stmt.value.value.func, ast.Attribute)
                and stmt.value.value.func.attr == "acquire"
                and self._is_semish(stmt.value.value.func.value)
            ):
                return True
        return False

    def _is_semish(self, expr: ast.expr) -> bool:
        if isinstance(expr, ast.Call):  # async with limiter(...) / bulkhead("x")
            expr = expr.func
        if not isinstance(expr, ast.Name | ast.Attribute):
            return False
        if self.kind_of(expr) == "bound":
            return True
        q = self.qualname(expr)
        if q is not None and q in _BOUNDED_CTORS:
            return True
        return bool(_SEMISH.search(_dotted(expr) or ""))

    def _check_connect(self, node: ast.Call, q: str, frame: _Frame) -> None:
        if len(self.frames) == 1 or _STARTUP_NAME.search(frame.name) or id(node) in self.lifetime:
            return
        if frame.loop_depth:
            frame.connects.append((node, f"{q}() in a loop: a new database connection per item"))
        else:
            frame.connects.append(
                (node, f"{q}() in {frame.name}(): a new database connection per operation")
            )

    def _check_dropped_task(self, call: ast.Call) -> None:
        func = call.func
        q = self.qualname(func)
        if q in _TASK_FACTORIES:
            self.report(
                call,
                "BND009",
                f"result of {q}() dropped: the task can be garbage-collected mid-flight",
            )
        elif isinstance(func, ast.Attribute) and func.attr == "create_task":
            receiver = func.value
            loopish = False
            if isinstance(receiver, ast.Call):
                loopish = self.qualname(receiver.func) in (
                    "asyncio.get_running_loop",
                    "asyncio.get_event_loop",
                )
            elif isinstance(receiver, ast.Name | ast.Attribute):
                text = _dotted(receiver) or ""
                loopish = self.kind_of(receiver) == "loop" or text.rsplit(".", 1)[-1] in (
                    "loop",
                    "_loop",
                )
            if loopish:
                self.report(
                    call,
                    "BND009",
                    "result of loop.create_task() dropped: the task can be garbage-collected "
                    "mid-flight",
                )

    def _resource(self, call: ast.Call) -> str | None:
        q = self.qualname(call.func)
        return _ASYNC_RESOURCES.get(q) if q is not None else None

    def _track_resource(self, target: ast.expr, call: ast.Call, what: str) -> None:
        self.managed.add(id(call))
        frame = self.frame
        if isinstance(target, ast.Name):
            if len(self.frames) == 1 or target.id in frame.globals:
                return  # a module-level singleton lives as long as the process
            if _ENTRY_POINT.match(frame.name):
                return  # created once per process by its entry point
            frame.pending[target.id] = (call, what)
            frame.closed.pop(target.id, None)
            frame.escaped.discard(target.id)
            return
        text = _dotted(target)
        if text is None:
            return  # stored in a container: owned by whoever holds it
        if text.startswith("self.") and self.classes:
            self.classes[-1].pending[text[5:]] = (call, what)
        else:
            self.module_pending[text] = (call, what)

    def _scoped(self, node: ast.expr, text: str | None = None) -> tuple[object, str] | None:
        """`node`'s dotted name with the scope it lives in: the function, class or module."""
        text = text or _dotted(node)
        if text is None:
            return None
        if (text == "self" or text.startswith("self.")) and self.classes:
            return (self.classes[-1], text)
        return (self.frame, text)

    def _note_join(self, receiver: ast.expr, frame: _Frame) -> None:
        self.joined.add(self._scoped(receiver))
        if isinstance(receiver, ast.Name) and receiver.id in frame.aliases:
            # t = self._thread; t.join()
            self.joined.add(self._scoped(receiver, frame.aliases[receiver.id]))

    def _note_close(self, receiver: ast.expr, frame: _Frame) -> None:
        text = _dotted(receiver)
        if text is None:
            return
        if isinstance(receiver, ast.Name) and receiver.id in frame.aliases:
            text = frame.aliases[receiver.id]  # client, self._client = self._client, None
        if isinstance(receiver, ast.Name) and receiver.id in frame.pending:
            in_finally = frame.finally_depth > 0
            frame.closed[receiver.id] = frame.closed.get(receiver.id, False) or in_finally
            return
        if text.startswith("self.") and self.classes:
            self.classes[-1].closed.add(text[5:])
        self.module_closed.add(text)

    def _settle_function(self, frame: _Frame) -> None:
        if not frame.is_generator:
            # a generator (an async context manager) holds its connection for its lifetime
            for node, message in frame.connects:
                self.report(node, "BND002", message)
        for name, (call, what) in frame.pending.items():
            if name in frame.escaped:
                continue
            closed = frame.closed.get(name)
            if closed is None:
                self.report(
                    call,
                    "BND006",
                    f"{what} bound to {name!r} is never closed: its connections leak",
                )
            elif not closed and not frame.is_generator:
                self.report(
                    call,
                    "BND006",
                    f"{what} bound to {name!r} is closed only on the success path: use "
                    "`async with` or close it in `finally`",
                )

    def _check_retry_loop(
        self, loop: ast.For | ast.AsyncFor | ast.While, node: ast.Try | ast.TryStar
    ) -> None:
        # a retry loop leaves on success (return/break), or counts attempts over a range;
        # a worker or polling loop (`while True: try: get() except Empty: sleep`) does not
        direct = any(stmt is node for stmt in loop.body)
        retrying = self._exits_on_success(node) or (
            direct
            and any(
                isinstance(stmt, ast.Return | ast.Break)
                for stmt in loop.body[loop.body.index(node) + 1 :]
            )
        )
        counted = (
            isinstance(loop, ast.For | ast.AsyncFor)
            and isinstance(loop.iter, ast.Call)
            and isinstance(loop.iter.func, ast.Name)
            and loop.iter.func.id == "range"
        )
        frame = self.frame
        if len(self.frames) == 1 or _POLL_NAME.search(frame.name):
            return  # a readiness or status poll, or a one-off script: not a retry storm
        sleeps: list[ast.Call] = []
        for handler in node.handlers:
            # a reconnect loop (`while True: try: serve() except ConnectionError: sleep`)
            # reconnects every client at once after a server restart
            if retrying or counted or _catches_disconnect(handler):
                sleeps.extend(self._sleeps_in(handler.body))
        if direct and retrying:
            sleeps.extend(self._sleeps_in([stmt for stmt in loop.body if stmt is not node]))
        for call in sleeps:
            delay = call.args[0] if call.args else None
            for kw in call.keywords:
                if kw.arg in ("delay", "seconds", "secs"):
                    delay = kw.value
            if delay is not None and self._deterministic(delay, set(), self._assignments):
                self.report(
                    call,
                    "BND008",
                    "retry loop sleeps a deterministic delay: clients retry in lock-step "
                    "(add jitter)",
                )

    def _exits_on_success(self, node: ast.Try | ast.TryStar) -> bool:
        for stmt in (*node.body, *node.orelse):
            for sub in ast.walk(stmt):
                if isinstance(sub, ast.Return | ast.Break):
                    return True
        return False

    def _sleeps_in(self, body: list[ast.stmt]) -> list[ast.Call]:
        found: list[ast.Call] = []
        stack: list[ast.AST] = list(body)
        while stack:
            node = stack.pop()
            if isinstance(
                node,
                ast.FunctionDef
                | ast.AsyncFunctionDef
                | ast.Lambda
                | ast.ClassDef
                | ast.For
                | ast.While
                | ast.AsyncFor
                | ast.Try,
            ):
                continue
            if isinstance(node, ast.Call) and self.qualname(node.func) in _SLEEPS:
                found.append(node)
            stack.extend(ast.iter_child_nodes(node))
        return found

    def _deterministic(
        self, expr: ast.expr, seen: set[str], assigned: Callable[[str], list[ast.expr]]
    ) -> bool:
        """True if the delay has no randomness and nothing we cannot see into.

        `assigned` gives the values a name was assigned where `expr` is evaluated.
        """
        for sub in ast.walk(expr):
            if isinstance(sub, ast.Call):
                func = sub.func
                q = self.qualname(func)
                if q is not None:
                    if q.startswith(_RANDOM_MODULES) or q == "random":
                        return False
                    if q.startswith("math.") or q in _PURE_QUALIFIED:
                        continue
                if _RANDOMISH.search(_dotted(func) or ""):
                    return False
                if isinstance(func, ast.Name) and func.id in _PURE_CALLS:
                    continue
                helper = self._helper(func)
                if helper is not None and self._returns_deterministic(helper):
                    continue  # await asyncio.sleep(self._backoff(attempt))
                return False  # a call we cannot see into: give it the benefit of the doubt
            if isinstance(sub, ast.Subscript):
                return False  # e.g. a header value: the server chose the delay
            if isinstance(sub, ast.Name | ast.Attribute):
                text = _dotted(sub) or ""
                if _RANDOMISH.search(text) or _SERVER_DELAY.search(text):
                    return False
                if isinstance(sub, ast.Name) and sub.id not in seen:
                    seen.add(sub.id)
                    if not all(self._deterministic(v, seen, assigned) for v in assigned(sub.id)):
                        return False
        return True

    def _helper(self, func: ast.expr) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        """The module function or method that ``name(...)``/``self.name(...)`` calls."""
        if isinstance(func, ast.Name):
            return self.functions.get(func.id)
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id in ("self", "cls")
        ):
            return self.functions.get(func.attr)
        return None

    def _returns_deterministic(self, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
        """True if every value `fn` returns is a deterministic expression of its inputs."""
        known = self.helper_results.get(fn)
        if known is not None:
            return known
        self.helper_results[fn] = False  # recursion: give it the benefit of the doubt
        local: dict[str, list[ast.expr]] = {}
        returns: list[ast.expr] = []
        for sub in ast.walk(fn):
            if isinstance(sub, ast.Return) and sub.value is not None:
                returns.append(sub.value)
            elif isinstance(sub, ast.Assign | ast.AnnAssign | ast.AugAssign) and sub.value:
                for target in sub.targets if isinstance(sub, ast.Assign) else [sub.target]:
                    if isinstance(target, ast.Name):
                        local.setdefault(target.id, []).append(sub.value)
        result = bool(returns) and all(
            self._deterministic(r, set(), lambda name: local.get(name, [])) for r in returns
        )
        self.helper_results[fn] = result
        return result

    # --- end of module ---------------------------------------------------------------

    def finish(self) -> None:
        for node, message, bound in self.daemons:
            if bound is None or bound not in self.joined:
                self.report(node, "BND003", message)
        for node, which, callee, fixed in self.gather_candidates:
            if callee is not None and (callee in self.sem_guarded or callee in _TEARDOWN):
                continue
            if fixed is not None and fixed[1] not in fixed[0].grown:
                continue  # self._conditions: a collection fixed when the object was built
            self.report(
                node,
                "BND001",
                f"asyncio.{which}() over a collection of unknown size: every item runs at once "
                "(no bound in sight)",
            )
        closed_tails = {text.rsplit(".", 1)[-1] for text in self.module_closed}
        for name, (call, what) in self.module_pending.items():
            if name not in self.module_closed and not ("." not in name and name in closed_tails):
                self.report(
                    call,
                    "BND006",
                    f"{what} bound to {name!r} is never closed: its connections leak",
                )
        if not self.is_test and self.breaker_protected:
            twins: dict[str, str] = {}
            for protected in self.breaker_protected:
                for pattern in _TWIN_PATTERNS:
                    twin = pattern.format(protected)
                    if twin in self.defined_functions and twin not in self.breaker_protected:
                        twins[twin] = protected
            for node, name, caller in self.twin_calls:
                protected_name = twins.get(name)
                if protected_name is not None and caller != protected_name:
                    self.report(
                        node,
                        "BND007",
                        f"{name}() is the unprotected twin of breaker-guarded "
                        f"{protected_name}(): the call bypasses the circuit breaker",
                    )


def _line_suppressions(source: bytes) -> dict[int, set[str]]:
    result: dict[int, set[str]] = {}
    text = source.decode("utf-8", "replace")
    for lineno, line in enumerate(text.splitlines(), 1):
        if "bounded:" not in line:
            continue
        match = _SUPPRESS.search(line)
        if match is None:
            continue
        codes = match.group(1)
        if codes is None:
            result[lineno] = {_ALL}
        else:
            result[lineno] = {c.strip().upper() for c in codes.split(",") if c.strip()}
    return result


def _char_column(lines: list[str], line: int, byte_col: int) -> int:
    """ast columns count UTF-8 bytes; report characters, 1-based."""
    if 0 < line <= len(lines):
        text = lines[line - 1]
        if not text.isascii():
            return len(text.encode("utf-8")[:byte_col].decode("utf-8", "replace")) + 1
    return byte_col + 1


def check_source(source: bytes | str, path: str, *, is_test: bool | None = None) -> list[Finding]:
    """Every finding in one module's source (BND000 if it does not parse), sorted by place."""
    data = source.encode("utf-8") if isinstance(source, str) else source
    if is_test is None:
        is_test = _is_test_path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(data, filename=path)
    except SyntaxError as exc:
        line = exc.lineno or 1
        col = exc.offset or 1
        return [Finding(path, line, max(col, 1), "BND000", f"syntax error: {exc.msg}")]
    except ValueError as exc:  # e.g. null bytes
        return [Finding(path, 1, 1, "BND000", f"cannot parse: {exc}")]
    except (RecursionError, MemoryError):
        return [Finding(path, 1, 1, "BND000", "too deeply nested to parse")]
    checker = _Checker(path, is_test)
    checker.index(tree)
    try:
        checker.generic(tree)
    except RecursionError:
        # generated code (a 3,000-term expression) nests deeper than the default limit
        checker = _Checker(path, is_test)
        checker.index(tree)
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 100_000))
        try:
            checker.generic(tree)
        except RecursionError:
            return [Finding(path, 1, 1, "BND000", "too deeply nested to check")]
        finally:
            sys.setrecursionlimit(limit)
    checker.finish()
    if not checker.findings:
        return []
    suppressions = _line_suppressions(data) if b"bounded:" in data else {}
    lines = data.decode("utf-8", "replace").splitlines()
    seen: set[tuple[int, int, str]] = set()
    findings: list[Finding] = []
    for line, col, code, message in sorted(checker.findings):
        key = (line, col, code)
        if key in seen:
            continue
        seen.add(key)
        codes = suppressions.get(line)
        if codes is not None and (code in codes or _ALL in codes):
            continue
        findings.append(Finding(path, line, _char_column(lines, line, col), code, message))
    return findings
