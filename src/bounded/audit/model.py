"""The semantic model: one pass over a module that records what the rules read.

The pass keeps imports (names resolve to their import path: ``import asyncio as aio`` then
``aio.gather`` is ``asyncio.gather``), scopes with their bindings (what a name or
``self.attr`` was bound to: a thread, a loop, a breaker, a semaphore...), assignments,
collections built in loops, the async resources each scope or class creates and who
closes, joins or takes them over. Rules are small functions (one module each, under
`bounded.audit.rules`) that the pass calls at the nodes they registered for, and at the end
of each scope, class, module and run. Nothing is imported or executed.

Facts that other modules of the same run need (a base class that closes an attribute, a
function that holds a semaphore, a backoff helper) are collected in :class:`ProjectFacts`;
findings that depend on them are :class:`Deferred` until the whole run has been read.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from bounded.audit.core import Edit
from bounded.audit.names import (
    assign_targets,
    candidate_calls,
    class_name,
    constructed_class,
    dotted,
    flag_switch,
    is_constant_size,
    is_self_attr,
    own_callee,
    returned_calls,
    string_switch,
)

__all__ = [
    "ASYNC_RESOURCES",
    "ClassScope",
    "Deferred",
    "Hooks",
    "ModuleModel",
    "ProjectFacts",
    "Scope",
]

T = TypeVar("T")

# Async clients and pools that hold connections until closed.
ASYNC_RESOURCES: dict[str, str] = {
    "httpx.AsyncClient": "httpx.AsyncClient",
    "httpx2.AsyncClient": "httpx2.AsyncClient",
    "aiohttp.ClientSession": "aiohttp.ClientSession",
    "curl_cffi.requests.AsyncSession": "curl_cffi AsyncSession",
    "curl_cffi.AsyncSession": "curl_cffi AsyncSession",
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
# HTTP libraries a package may re-export from a shim of its own (`from ._httpx import httpx`)
_HTTP_MODULES = frozenset({"httpx", "httpx2", "aiohttp"})
# A client built over a passed http client or connection pool owns no connections of its own.
_BORROWED_POOL = frozenset({"http_client", "session", "client_session", "connection_pool"})
# ... and so does one built over a transport it is handed (httpx's `transport=`).
_SHARED_TRANSPORT = frozenset({"transport"})


def resource_of(m: ModuleModel, call: ast.Call, *, per_call: bool = False) -> str | None:
    """What async resource `call` creates (``httpx.AsyncClient(...)``), None if none.

    A client class of an imported library the table does not know (``ollama.AsyncClient``,
    ``genai.Client``) counts where it is built per operation: in a coroutine, or in a
    factory (`per_call`); a client kept for a process's life may not need closing.
    """
    q = m.qualname(call.func)
    if q is None:
        return _started_driver(m, call)
    if any(kw.arg in _BORROWED_POOL and not _none_by_default(m, kw.value) for kw in call.keywords):
        return None  # AsyncOpenAI(http_client=shared): the shared client owns the pool
    if any(kw.arg in _SHARED_TRANSPORT and _made_elsewhere(m, kw.value) for kw in call.keywords):
        return None  # AsyncClient(transport=_shared): the shared transport owns the pool
    if q in ASYNC_RESOURCES:
        return ASYNC_RESOURCES[q]
    if (
        (per_call or m.scope.is_async)
        and _LIBRARY_CLIENT.fullmatch(q)
        and not q.startswith(_SIGNERS)
    ):
        return q
    return None


# Context managers whose ``.start()`` launches a driver process that ``.stop()`` ends.
_DRIVERS = frozenset(
    {
        "playwright.async_api.async_playwright",
        "playwright.sync_api.sync_playwright",
        "patchright.async_api.async_playwright",
        "patchright.sync_api.sync_playwright",
    }
)


def _started_driver(m: ModuleModel, call: ast.Call) -> str | None:
    """``async_playwright().start()``: a Playwright driver process, running until
    ``stop()``."""
    func = call.func
    if (
        isinstance(func, ast.Attribute)
        and func.attr == "start"
        and isinstance(func.value, ast.Call)
        and m.qualname(func.value.func) in _DRIVERS
    ):
        return "Playwright driver"
    return None


# What a network client in the tables above may build that holds no connection pool: a
# local or in-process store, a driver connection, a compute object.
_NOT_POOLED = frozenset(
    {
        "http.client",
        "psycopg2",
        "psycopg",
        "Selenium webdriver",
        "chromadb",
        "lancedb",
        "llama.cpp",
        "password hasher",
        "asyncpg pool",
        "aiomysql pool",
        "aiopg pool",
    }
)


def pooled_client(q: str) -> str | None:
    """The HTTP or SDK client, with a connection pool of its own, that calling `q` builds
    (``openai.AsyncOpenAI``, ``requests.Session``, an imported library's ``module.Client``);
    None for anything else."""
    what = ASYNC_RESOURCES.get(q) or SYNC_CLIENTS.get(q)
    if what is None and _LIBRARY_CLIENT.fullmatch(q):
        what = q
    return None if what in _NOT_POOLED else what


# Decorators that make a function return one object per arguments, not one per call.
_CACHED = re.compile(r"cache|memo|once|singleton", re.IGNORECASE)


def cached(fn: Function) -> bool:
    """`fn` is decorated with a cache (``@lru_cache(maxsize=8)``, ``@cache``): it returns
    one object per set of arguments, not a new one per call."""
    return any(
        _CACHED.search(dotted(d.func if isinstance(d, ast.Call) else d) or "")
        for d in fn.decorator_list
    )


def _none_by_default(m: ModuleModel, value: ast.expr) -> bool:
    """`value` is a parameter of the function being walked that defaults to None
    (``http_client: httpx.AsyncClient | None = None``): unless a caller hands one in, the
    client builds its own pool."""
    if not isinstance(value, ast.Name) or m.scope.assigned.get(value.id):
        return False
    default = param_default(m.scope.node, value.id)
    return isinstance(default, ast.Constant) and default.value is None


def _made_elsewhere(m: ModuleModel, value: ast.expr) -> bool:
    """A transport the call is handed, not one built for it in this function: an
    attribute (``self._transport``), a name this function does not assign (a
    module-level transport, or a caller's), or what a getter returns
    (``get_transport(config)``: the getter keeps it; ``httpx.AsyncHTTPTransport()`` is
    built in place)."""
    if isinstance(value, ast.Attribute):
        return True
    if isinstance(value, ast.Call):
        name = callee_name(value) or ""
        return name.lstrip("_").startswith("get_") and not name.endswith("Transport")
    return isinstance(value, ast.Name) and not m.scope.assigned.get(value.id)


# `module.Client`, `module.AsyncClient` (an imported library's client class)
_LIBRARY_CLIENT = re.compile(r"[a-z_][\w]*(?:\.[a-z_]\w*)*\.(?:Async)?Client")
# Libraries whose `Client` only signs requests (oauthlib's OAuth 1 and 2 clients): no
# connection, socket or pool to close.
_SIGNERS = ("oauthlib.",)


# Names of functions worth following as client factories (`self.get_client()`).
_FACTORYISH = re.compile(r"client|session|pool|connection", re.IGNORECASE)
# Sync clients: a binding of kind "sync_client:<what>".
SYNC_CLIENTS: dict[str, str] = {
    "requests.Session": "requests.Session",
    "requests.sessions.Session": "requests.Session",
    "httpx.Client": "httpx.Client",
    "httpx2.Client": "httpx2.Client",
    "openai.OpenAI": "OpenAI",
    "openai.Client": "OpenAI",
    "openai.AzureOpenAI": "AzureOpenAI",
    "anthropic.Anthropic": "Anthropic",
    "anthropic.Client": "Anthropic",
    "anthropic.AnthropicBedrock": "AnthropicBedrock",
    "anthropic.AnthropicVertex": "AnthropicVertex",
    # LLM SDKs' sync clients, each with an async twin (AsyncClient, client.aio)
    "cohere.Client": "Cohere",
    "cohere.ClientV2": "Cohere",
    "google.genai.Client": "google-genai",
    "ollama.Client": "Ollama",
    "groq.Groq": "Groq",
    "mistralai.Mistral": "Mistral",
    # the standard library's HTTP connections (their requests and responses block)
    "http.client.HTTPSConnection": "http.client",
    "http.client.HTTPConnection": "http.client",
    # supabase's sync client (its async one is create_async_client / AsyncClient)
    "supabase.create_client": "supabase",
    "supabase.client.create_client": "supabase",
    "supabase.Client": "supabase",
    "supabase.SyncClient": "supabase",
    "psycopg2.connect": "psycopg2",
    "psycopg.connect": "psycopg",
    # database, search and vector-store clients whose async twins are other names
    # (AsyncQdrantClient, AsyncMongoClient or motor, AsyncElasticsearch, redis.asyncio,
    # AsyncGraphDatabase, AsyncMilvusClient)
    "qdrant_client.QdrantClient": "QdrantClient",
    "pymongo.MongoClient": "pymongo",
    "elasticsearch.Elasticsearch": "Elasticsearch",
    "redis.Redis": "redis",
    "redis.StrictRedis": "redis",
    "redis.from_url": "redis",
    "neo4j.GraphDatabase.driver": "neo4j",
    "pymilvus.MilvusClient": "Milvus",
    # web search and LLM SDKs with only a sync client
    "duckduckgo_search.DDGS": "DDGS",
    "ddgs.DDGS": "DDGS",
    "zhipuai.ZhipuAI": "ZhipuAI",
    # libraries that only do their I/O or heavy compute synchronously
    "selenium.webdriver.Chrome": "Selenium webdriver",
    "selenium.webdriver.Firefox": "Selenium webdriver",
    "selenium.webdriver.Edge": "Selenium webdriver",
    "selenium.webdriver.Safari": "Selenium webdriver",
    "selenium.webdriver.Remote": "Selenium webdriver",
    "undetected_chromedriver.Chrome": "Selenium webdriver",
    "chromadb.Client": "chromadb",
    "chromadb.PersistentClient": "chromadb",
    "chromadb.HttpClient": "chromadb",
    "chromadb.CloudClient": "chromadb",
    "lancedb.connect": "lancedb",
    "llama_cpp.Llama": "llama.cpp",
    "llama_cpp.Llama.from_pretrained": "llama.cpp",
    # password hashers: deliberately slow (tens to hundreds of ms of CPU per hash)
    "pwdlib.PasswordHash": "password hasher",
    "pwdlib.PasswordHash.recommended": "password hasher",
    "passlib.context.CryptContext": "password hasher",
    "argon2.PasswordHasher": "password hasher",
}
# Packages whose objects only block (their async surfaces are other names, with "async"
# in them: chromadb.AsyncHttpClient, lancedb.connect_async): an object annotated with one of
# their types is a sync client ("sync_obj:<what>").
_SYNC_PACKAGES = {
    "chromadb": "chromadb",
    "lancedb": "lancedb",
    "selenium": "Selenium webdriver",
    "undetected_chromedriver": "Selenium webdriver",
    "llama_cpp": "llama.cpp",
}
_TEST_CASES = frozenset(
    {
        "unittest.TestCase",
        "unittest.IsolatedAsyncioTestCase",
        "unittest.case.TestCase",
        "unittest.async_case.IsolatedAsyncioTestCase",
    }
)
# Calls that wait for a child process to exit.
CHILD_PROCESS_CALLS = {
    "subprocess.run": "subprocess.run() blocks until the child exits",
    "subprocess.call": "subprocess.call() blocks until the child exits",
    "subprocess.check_call": "subprocess.check_call() blocks until the child exits",
    "subprocess.check_output": "subprocess.check_output() blocks until the child exits",
    "os.system": "os.system() blocks until the command exits",
}
# Methods of a `subprocess.Popen` (kind "process") that wait for the child to exit.
PROCESS_WAITS = frozenset({"wait", "communicate"})
BREAKER_CTORS = {
    "bounded.CircuitBreaker": "bounded",
    "bounded.breaker.CircuitBreaker": "bounded",
    "aiobreaker.CircuitBreaker": "lib",
    "pybreaker.CircuitBreaker": "lib",
}
BOUNDED_CTORS = frozenset(
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
_SIMPLE_KINDS = {
    "threading.Thread": "thread",
    "threading.Timer": "thread",
    "concurrent.futures.ThreadPoolExecutor": "executor",
    "concurrent.futures.thread.ThreadPoolExecutor": "executor",
    "subprocess.Popen": "process",
    "asyncio.get_running_loop": "loop",
    "asyncio.get_event_loop": "loop",
    "asyncio.new_event_loop": "loop",
    "asyncio.get_event_loop_policy": "policy",
    # async servers and clients whose start_background_task returns an asyncio task
    "socketio.AsyncServer": "spawner",
    "socketio.AsyncClient": "spawner",
    "engineio.AsyncServer": "spawner",
    "engineio.AsyncClient": "spawner",
}
CLOSERS = frozenset({"aclose", "close", "__aexit__", "terminate", "disconnect", "shutdown", "stop"})
LIFECYCLE = CLOSERS | {"__exit__", "__del__", "cleanup", "dispose", "close_all"}
# Calls that take ownership of a resource passed to them.
_OWNERS = frozenset(
    {"enter_async_context", "enter_context", "aclosing", "closing", "push_async_callback"}
)
_SEMISH = re.compile(r"sem|limit|bulkhead|throttl|capacity|(?:^|[._])bh$", re.IGNORECASE)
# A program's entry point: what it creates lives until the process exits.
_ENTRY_POINT = re.compile(
    r"_?(a?main|cli|entry_?point|run_(app|server|forever)|create_app)$", re.IGNORECASE
)
# Methods that grow a collection after construction.
_GROWERS = frozenset({"append", "add", "extend", "insert", "update", "setdefault", "appendleft"})

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


Loop = ast.For | ast.AsyncFor | ast.While
Function = ast.FunctionDef | ast.AsyncFunctionDef
Resource = tuple[ast.Call, str]  # the creating call and what it is


class Scope:
    """A function (or the module) being walked, and what its names are bound to."""

    __slots__ = (
        "aliases",
        "assigned",
        "awaits",
        "cancelled",
        "closed",
        "collections",
        "escaped",
        "finally_depth",
        "globals",
        "guarded_loops",
        "is_async",
        "is_generator",
        "kinds",
        "legacy_tail",
        "loop_depth",
        "name",
        "node",
        "params",
        "pending",
        "pool_loops",
        "rebound",
        "returned",
        "returns_task",
        "stopping",
        "stored",
        "switched",
        "wrappers",
    )

    def __init__(self, name: str, is_async: bool, node: ast.AST | None = None) -> None:
        self.name = name
        self.node = node
        self.is_async = is_async
        self.is_generator = False
        self.awaits = False  # the body awaits (await, async for, async with)
        # every return is create_task(...) (None: no return): its caller must keep the task
        self.returns_task: bool | None = None
        self.returned: list[ast.expr] = []  # the values its return statements return
        self.loop_depth = 0
        self.finally_depth = 0
        # what follows ``if NEW_PYTHON: return ...`` runs on older Pythons only
        self.legacy_tail = 0
        # enclosing `if`s that pick a mode by a string (``provider == "s3"``,
        # ``url.startswith("s3://")``): their bodies run for one configuration only
        self.switched = 0
        self.guarded_loops = 0  # enclosing loops that acquire a bound or have a fixed size
        self.pool_loops = 0  # enclosing `for _ in range(workers)` loops
        self.stopping = False  # an event was set: a shutdown path
        self.params: frozenset[str] = frozenset()
        self.globals: set[str] = set()
        # name -> kind ("thread", "executor", "future", "process", "loop", "policy", "bound",
        # "spawner", "executor:<Class>"/"future:<Class>" of a class that may be a thread pool,
        # "breaker:<lib>", "sync_client:<what>" built here, "sync_obj:<what>" obtained,
        # "sync_iter:<what>" a blocking iterator)
        self.kinds: dict[str, str] = {}
        self.assigned: dict[str, list[ast.expr]] = {}  # name -> every value assigned to it
        self.aliases: dict[str, str] = {}  # name -> the dotted name it was read from
        # name -> (a comprehension, False, None), or (element, bounded, the loop's iterable)
        # for items appended in a loop
        self.collections: dict[str, tuple[ast.expr, bool, ast.expr | None]] = {}
        self.cancelled: set[str] = set()  # collections whose tasks were cancelled here
        self.pending: dict[str, Resource] = {}  # resources bound to local names
        # name -> earlier resources bound to it, neither closed nor handed on when it was
        # bound again (``if a: c = A() else: c = B()``): they share the name's fate
        self.rebound: dict[str, list[Resource]] = {}
        self.closed: dict[str, bool] = {}  # name -> closed inside a finally block
        self.escaped: set[str] = set()  # local resources returned or handed to an owner
        self.stored: dict[str, list[str]] = {}  # local resource -> self attributes it is on
        # name -> local resources passed to the call whose result it holds
        # (``result = from_openai(client)``): returning the name hands them over
        self.wrappers: dict[str, set[str]] = {}


class ClassScope:
    """A class being walked: what its methods store on ``self`` and what they close."""

    __slots__ = (
        "bases",
        "built",
        "closed",
        "grown",
        "kinds",
        "lifecycle",
        "modules",
        "name",
        "node",
        "pending",
        "rebound",
    )

    def __init__(self, node: ast.ClassDef) -> None:
        self.node = node
        self.name = node.name
        self.bases = tuple(b for b in (dotted(base) for base in node.bases) if b is not None)
        self.kinds: dict[str, str] = {}  # self attribute -> kind
        self.pending: dict[str, Resource] = {}  # self attribute -> the resource stored there
        # self attribute -> earlier resources one method stored there before the pending one
        # (``match api: case "a": self.c = A() case "b": self.c = B()``): they share its fate
        self.rebound: dict[str, list[Resource]] = {}
        self.closed: set[str] = set()  # self attributes some method closes
        self.grown: set[str] = set()  # self attributes grown outside __init__
        self.built: dict[str, str] = {}  # self attribute -> the class it was built from
        # self attribute -> the imported name stored there (``import pymysql;
        # self.pymysql = pymysql`` in ``__init__``, an optional dependency imported late)
        self.modules: dict[str, str] = {}
        # the class defines a close/aclose/__aexit__-style method: it manages its resources
        self.lifecycle = any(
            isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name in LIFECYCLE
            for item in node.body
        )


@dataclass(slots=True)
class ProjectFacts:
    """What the modules of one run tell about each other (looked up by simple name)."""

    # class name -> (base names, attributes it closes, has a close-style method), per definition
    classes: dict[str, list[tuple[tuple[str, ...], frozenset[str], bool]]] = field(
        default_factory=dict
    )
    guarded: set[str] = field(default_factory=set)  # functions that hold a semaphore
    defined: set[str] = field(default_factory=set)  # every function and method name
    # function (or class) name -> where it is called from: bit 1 a coroutine, bit 2
    # elsewhere, bit 4 module level (where no loop runs); a bare-name or self/cls call is
    # keyed by the name, a method call on any other object by "." + name
    callers: dict[str, int] = field(default_factory=dict)
    helpers: dict[str, bool] = field(default_factory=dict)  # backoff helper -> deterministic
    # generator name -> whether every definition yields only a counter (an attempt number)
    counters: dict[str, bool] = field(default_factory=dict)
    # method name -> how the run defines it: bit 1 a sync def that blocks (sync HTTP,
    # time.sleep), bit 2 an async def, bit 4 a sync def that does not block, bit 8 a sync
    # def that only waits for a child process
    blocking: dict[str, int] = field(default_factory=dict)
    # class name -> its methods -> how the definition blocks (1, 8 as above; 0 not)
    methods: dict[str, dict[str, int]] = field(default_factory=dict)
    # method name -> whether every definition of it is a sync def that calls its first
    # parameter with the rest (``def _call(self, fn, *args, **kwargs): return fn(*args)``)
    forwards: dict[str, bool] = field(default_factory=dict)
    # module-level function name -> the modules (paths without ".py") whose definition of
    # it is sync code that blocks
    blocking_functions: dict[str, set[str]] = field(default_factory=dict)
    # a sync def that blocks by no call it makes directly, as (module path, class name or
    # "", name) -> what it calls that may block: ("f", module, name) a function of the run,
    # ("m", class, name) a method of a known class, ("a", "", name) a method of an object
    # of unknown class; the run settles which of them block through these calls
    callees: dict[tuple[str, str, str], set[tuple[str, str, str]]] = field(default_factory=dict)
    settled: bool = False  # `callees` has been folded into the blocking facts above
    # (class name, method name) with a definition that is async or only waits for a child
    # process: a chain through another definition does not make the method block
    not_blocking: set[tuple[str, str]] = field(default_factory=set)
    # coroutine function name -> whether any definition of it awaits (False: they only compute)
    awaits: dict[str, bool] = field(default_factory=dict)
    # private function name -> the positions and keywords its callers pass data for
    fed: dict[str, set[int | str]] = field(default_factory=dict)
    # function name -> whether every definition of it returns a task it just created
    spawns: dict[str, bool] = field(default_factory=dict)
    # classes whose join(timeout) waits on threads for at most that long: Thread subclasses
    # and wrappers whose own join hands its timeout to their threads' join
    timed_joins: set[str] = field(default_factory=set)
    # async context manager name -> what it enters before it yields: "" an MCP
    # ``ClientSession``, else the names of other such managers it enters (settled per run)
    session_openers: dict[str, set[str]] = field(default_factory=dict)
    # coroutine name -> the functions of the run whose results it returns ("": a listing
    # read's result, or what it computed from one)
    listings: dict[str, set[str]] = field(default_factory=dict)
    # class name -> its attributes bound to a tuple of exception classes one of which is a
    # lost connection (``ERRORS_ALLOW_RETRY = (ConnectionError, TimeoutError)``)
    connection_errors: dict[str, set[str]] = field(default_factory=dict)

    def ever_built(self, class_name: str) -> bool:
        """The run calls `class_name` or a subclass of it it defines (``raise
        QuotaError(...)`` builds a ``RateLimitError`` when QuotaError derives from it)."""
        callers = self.callers  # keyed ".QuotaError" when built as ``errors.QuotaError(...)``
        return any(
            (name in callers or "." + name in callers) and class_name in self.lineage(name)
            for name in (class_name, *self.classes)
        )

    def lineage(self, class_name: str) -> Iterator[str]:
        """`class_name` and its bases in the run, each once (by simple name)."""
        seen: set[str] = set()
        stack = [class_name]
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            yield name
            for bases, _, _ in self.classes.get(name, ()):
                stack.extend(base.rsplit(".", 1)[-1] for base in bases)

    def closes(self, class_name: str, attr: str) -> bool:
        """True if `class_name` or one of its bases in the run closes ``self.<attr>``."""
        return any(
            attr in closed
            for name in self.lineage(class_name)
            for _, closed, _ in self.classes.get(name, ())
        )

    def names_connection_error(self, class_name: str, attr: str) -> bool:
        """True if `class_name` or one of its bases in the run binds `attr` to a tuple of
        exception classes that names a lost connection."""
        return any(
            attr in self.connection_errors.get(name, ()) for name in self.lineage(class_name)
        )

    def returns_listing(self, name: str, seen: set[str] | None = None) -> bool:
        """True if coroutine `name` returns a listing read's result, itself or through
        another coroutine of the run."""
        seen = set() if seen is None else seen
        seen.add(name)
        reads = self.listings.get(name, set())
        return "" in reads or any(self.returns_listing(other, seen) for other in reads - seen)

    def method_blocks(self, class_name: str, name: str, seen: set[str] | None = None) -> int:
        """How method `name` of `class_name`, or else of the first base in the run that
        defines it, blocks (bits 1 and 8 of `blocking`; 0 for a class the run does not
        define)."""
        seen = set() if seen is None else seen
        if class_name in seen:
            return 0
        seen.add(class_name)
        defined = self.methods.get(class_name, {})
        if name in defined:
            return defined[name]
        for bases, _, _ in self.classes.get(class_name, ()):
            for base in bases:
                how = self.method_blocks(base.rsplit(".", 1)[-1], name, seen)
                if how:
                    return how
        return 0

    def derives_from(self, class_name: str, base: str, seen: set[str] | None = None) -> bool:
        """True if `class_name` has a base named `base` in the run, directly or through
        its bases."""
        seen = set() if seen is None else seen
        if class_name in seen:
            return False
        seen.add(class_name)
        return any(
            name == base or self.derives_from(name, base, seen)
            for bases, _, _ in self.classes.get(class_name, ())
            for name in (b.rsplit(".", 1)[-1] for b in bases)
        )

    def manages_lifecycle(self, class_name: str, seen: set[str] | None = None) -> bool:
        """True if `class_name` or one of its bases in the run has a close-style method."""
        seen = set() if seen is None else seen
        if class_name in seen:
            return False
        seen.add(class_name)
        return any(
            lifecycle
            or any(self.manages_lifecycle(base.rsplit(".", 1)[-1], seen) for base in bases)
            for bases, _, lifecycle in self.classes.get(class_name, ())
        )


@dataclass(frozen=True, slots=True)
class Deferred:
    """A finding reported only if `keep` says so once the whole run is known."""

    line: int
    column: int
    code: str
    message: str
    keep: Callable[[ProjectFacts], bool]


CallHook = Callable[["ModuleModel", ast.Call, str], None]
MethodHook = Callable[["ModuleModel", ast.Call, ast.Attribute], None]
NodeHook = Callable[["ModuleModel", ast.Call], None]
DroppedHook = Callable[["ModuleModel", ast.Call, ast.stmt | None], None]
AssignHook = Callable[["ModuleModel", ast.Assign | ast.AnnAssign, list[ast.expr], ast.expr], None]
LoopHook = Callable[["ModuleModel", Loop, list[ast.Try | ast.TryStar]], None]
WithHook = Callable[["ModuleModel", ast.AsyncWith], None]
FunctionHook = Callable[["ModuleModel", Function], None]
ScopeHook = Callable[["ModuleModel", Scope], None]
ClassHook = Callable[["ModuleModel", ClassScope], None]
ModuleHook = Callable[["ModuleModel"], None]


@dataclass(slots=True)
class Hooks:
    """Where the rules plug into the pass (built once from the rule modules)."""

    calls: dict[str, list[CallHook]] = field(default_factory=dict)  # by qualified name
    methods: dict[str, list[MethodHook]] = field(default_factory=dict)  # by attribute
    every_call: list[NodeHook] = field(default_factory=list)
    async_method_call: list[MethodHook] = field(default_factory=list)
    # a call whose result is unused, and the statement it is (None inside an expression)
    dropped_call: list[DroppedHook] = field(default_factory=list)
    assign: list[AssignHook] = field(default_factory=list)
    loop: list[LoopHook] = field(default_factory=list)
    async_with: list[WithHook] = field(default_factory=list)
    function: list[FunctionHook] = field(default_factory=list)
    scope_end: list[ScopeHook] = field(default_factory=list)
    class_end: list[ClassHook] = field(default_factory=list)
    module_end: list[ModuleHook] = field(default_factory=list)


class ModuleModel:
    """Walks one module once, keeping the semantic model and calling the rules' hooks."""

    def __init__(self, path: str, is_test: bool, hooks: Hooks, source: bytes = b"") -> None:
        self.path = path
        self.source = source
        self._lines: list[bytes] | None = None
        self._marks_unreachable = b"unreachable]" in source  # mypy's ignore code, anywhere
        self.is_test = is_test
        self.test_classes: set[str] = set()  # classes of this module deriving from a TestCase
        self._test_depth = 0  # inside such a class
        self.hooks = hooks
        self.imports: dict[str, str] = {}
        self.imports_threading = False
        self.module = Scope("<module>", False)
        self.scopes: list[Scope] = [self.module]
        self.classes: list[ClassScope] = []
        self.findings: list[tuple[int, int, str, str, Edit | None]] = []
        self.deferred: list[Deferred] = []
        self.facts = ProjectFacts()
        # module functions and methods by name, indexed before the walk
        self.functions: dict[str, Function] = {}
        # every definition of each name, with its class ("" for a module function)
        self.definitions: dict[str, list[tuple[str, Function]]] = {}
        # the module's top-level classes: their base names and the lines they span
        self.class_bases: dict[str, tuple[str, ...]] = {}
        self.class_spans: list[tuple[str, int, int]] = []
        self.guarded: set[str] = set()  # functions whose body holds a semaphore
        self.managed: set[int] = set()  # ids of resource-creating calls that are owned
        self.awaited: set[int] = set()  # ids of awaited expressions (and `async with` items)
        # ids of calls handed to a scheduler (``create_task(x.wait())``): coroutines
        self.scheduled: set[int] = set()
        self.lifetime: set[int] = set()  # calls whose result is stored on an object
        self.call_targets: dict[int, tuple[object, str] | None] = {}  # id(call) -> target
        self.module_closed: set[str] = set()  # dotted names closed anywhere in the module
        self.module_pending: dict[str, Resource] = {}  # resources stored on other objects
        self.joined: set[tuple[object, str] | None] = set()  # (scope, name) joined
        # enclosing loops: (loop, its scope, try statements directly inside it)
        self.loops: list[tuple[Loop, Scope, list[ast.Try | ast.TryStar]]] = []
        self.legacy = 0  # inside `if sys.version_info < (3, x)`: code for older Pythons
        # line spans of branches that never run (`if True: ... else: <dead>`): no finding
        self.dead: list[tuple[int, int]] = []
        # has `if __name__ == "__main__":`, or runs its loop at module level: a script run
        # by hand
        self.is_script = False
        self.main_block: tuple[int, int] | None = None  # the lines of that `if` block
        # a module of a command-line tool (under ``cli/``, or ``cli.py``): a command runs
        # once per process, for one user
        parts = path.replace("\\", "/").split("/")
        self.in_cli = "cli" in parts[:-1] or parts[-1] == "cli.py"
        self._states: dict[type, object] = {}
        self._factories: dict[str, str | None] = {}
        self._mentions: dict[bytes, bool] = {}

    # --- running ---------------------------------------------------------------------

    def run(self, tree: ast.Module) -> None:
        """Index the module's functions, walk it once, then run the end-of-module hooks."""
        if _unreachable(self.path, tree):
            self.dead.append((1, tree.body[-1].end_lineno or tree.body[-1].lineno))
        for stmt in tree.body:
            if isinstance(stmt, ast.If) and _is_main_guard(stmt.test):
                self.is_script = True
                self.main_block = (stmt.lineno, stmt.end_lineno or stmt.lineno)
            elif _runs_a_loop(stmt):
                self.is_script = True  # drives its loop on import: run by hand as well
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                self.functions[stmt.name] = stmt
                self.definitions.setdefault(stmt.name, []).append(("", stmt))
            elif isinstance(stmt, ast.ClassDef):
                self.class_bases[stmt.name] = tuple(
                    name.rsplit(".", 1)[-1] for b in stmt.bases if (name := dotted(b))
                )
                self.class_spans.append((stmt.name, stmt.lineno, stmt.end_lineno or stmt.lineno))
                for item in stmt.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        self.functions.setdefault(item.name, item)
                        self.definitions.setdefault(item.name, []).append((stmt.name, item))
        self.generic(tree)
        for hook in self.hooks.module_end:
            hook(self)
        self.facts.guarded |= self.guarded

    def factory_result(self, call: ast.Call) -> str | None:
        """What `call` builds when it calls this module's client factory, else None.

        A factory is a function or method named like a client, session, pool or
        connection whose ``return`` builds a new async resource each time
        (``def get_client(self): return AsyncOpenAI(...)``), not a cached attribute.
        """
        if call.args or call.keywords:
            return None
        func = call.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if not _FACTORYISH.search(name):
            return None
        if name not in self._factories:
            fn = self.functions.get(name)
            what = None
            if fn is not None and not cached(fn):
                what = next(
                    (r for c in returned_calls(fn) if (r := resource_of(self, c, per_call=True))),
                    None,
                )
            self._factories[name] = what
        return self._factories[name]

    def in_package(self, package: str) -> bool:
        """This module's file lies inside a folder named `package` (``lightrag`` for
        ``.../lightrag/llm/hf.py``): the package's own code."""
        return f"/{package}/" in "/" + self.path.replace("\\", "/")

    def called_function(self, func: ast.expr) -> Function | None:
        """The module function or method that ``name(...)``, ``self.name(...)`` or
        ``cls.name(...)`` calls."""
        name = own_callee(func)
        return None if name is None else self.functions.get(name)

    def function_named(self, name: str) -> Function | None:
        """The module function or method `name`, else a function of that name nested in
        the scope being walked (``async def check(p): ...`` then ``check(p)``)."""
        fn = self.functions.get(name)
        enclosing = self.scope.node
        if fn is None and enclosing is not None:
            fn = next(
                (
                    sub
                    for sub in ast.walk(enclosing)
                    if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef) and sub.name == name
                ),
                None,
            )
        return fn

    def line(self, lineno: int) -> bytes:
        """Line `lineno` (1-based) of the source, without its line break (for fixes)."""
        if self._lines is None:
            self._lines = self.source.splitlines()
        return self._lines[lineno - 1] if 0 < lineno <= len(self._lines) else b""

    def mentions(self, text: bytes) -> bool:
        """The module's source contains `text` (looked up once per module): a cheap test
        before a rule walks the tree for what `text` names."""
        found = self._mentions.get(text)
        if found is None:
            found = self._mentions[text] = text in self.source
        return found

    def state(self, kind: type[T]) -> T:
        """A rule's own per-module state (created on first use)."""
        value = self._states.get(kind)
        if value is None:
            value = self._states[kind] = kind()
        return cast(T, value)

    @property
    def in_test(self) -> bool:
        """Test code (a test module, or a unittest ``TestCase`` class): not production."""
        return self.is_test or self._test_depth > 0

    def report(self, node: ast.AST, code: str, message: str, edit: Edit | None = None) -> None:
        """Report `node` now (never in test code: a test harness's fault pages nobody, nor
        in a branch that never runs)."""
        if self.in_test or self._never_runs(node):
            return
        self.findings.append(
            (getattr(node, "lineno", 1), getattr(node, "col_offset", 0), code, message, edit)
        )

    def defer(
        self, node: ast.AST, code: str, message: str, keep: Callable[[ProjectFacts], bool]
    ) -> None:
        """Report `node` at the end of the run if `keep(facts)` is true then (not in tests,
        nor in a branch that never runs)."""
        if self.in_test or self._never_runs(node):
            return
        self.deferred.append(
            Deferred(
                getattr(node, "lineno", 1), getattr(node, "col_offset", 0), code, message, keep
            )
        )

    def _never_runs(self, node: ast.AST) -> bool:
        line = getattr(node, "lineno", 0)
        return any(start <= line <= end for start, end in self.dead)

    # --- walking ---------------------------------------------------------------------

    def visit(self, node: ast.AST) -> None:
        handler = _DISPATCH.get(type(node))
        if handler is not None:
            handler(self, node)
        elif type(node) not in _LEAVES:
            self.generic(node)

    def generic(self, node: ast.AST) -> None:
        dispatch = _DISPATCH
        generic = self.generic
        leaves = _LEAVES
        fields = _CHILD_FIELDS.get(type(node))
        if fields is None:
            fields = _child_fields(type(node))
        for name in fields:
            value = getattr(node, name, None)
            if value is None:
                continue
            if type(value) is list:
                for item in value:
                    kind = type(item)
                    if kind in leaves:
                        continue
                    handler = dispatch.get(kind)
                    if handler is not None:
                        handler(self, item)
                    else:
                        generic(item)
            else:
                kind = type(value)
                if kind in leaves:
                    continue
                handler = dispatch.get(kind)
                if handler is not None:
                    handler(self, value)
                else:
                    generic(value)

    def visit_all(self, nodes: Iterable[ast.AST]) -> None:
        dispatch = _DISPATCH
        leaves = _LEAVES
        for node in nodes:  # visit(node), inlined: this is the pass's hottest loop
            kind = type(node)
            handler = dispatch.get(kind)
            if handler is not None:
                handler(self, node)
            elif kind not in leaves:
                self.generic(node)

    # --- names and bindings ----------------------------------------------------------

    @property
    def scope(self) -> Scope:
        """The innermost function (or the module)."""
        return self.scopes[-1]

    @property
    def in_async(self) -> bool:
        """True directly inside ``async def`` (not in a nested def or lambda)."""
        return self.scopes[-1].is_async

    def qualname(self, node: ast.expr) -> str | None:
        """The import-qualified name of a Name/Attribute chain, or None if not imported."""
        if isinstance(node, ast.Name):
            return self.imports.get(node.id)
        attrs: list[str] = []
        while isinstance(node, ast.Attribute):
            attrs.append(node.attr)
            node = node.value
            if isinstance(node, ast.Subscript) and class_name(node.value):
                node = node.value  # a generic class: AsyncConnection[Any].connect
        if not isinstance(node, ast.Name):
            return None
        base = self.imports.get(node.id)
        if base is None and node.id == "self" and attrs and self.classes:
            base = self.classes[-1].modules.get(attrs.pop())  # self.pymysql.connect
        if base is None:
            return None
        attrs.append(base)
        return ".".join(reversed(attrs))

    def kind_of(self, node: ast.expr) -> str | None:
        """What a name or ``self.attr`` was bound to, if the pass saw it."""
        if isinstance(node, ast.Name):
            for scope in reversed(self.scopes):
                kind = scope.kinds.get(node.id)
                if kind is not None:
                    return kind
            return None
        if is_self_attr(node) and self.classes:
            return self.classes[-1].kinds.get(cast(ast.Attribute, node).attr)
        return None

    def kind_of_value(self, value: ast.expr) -> str | None:
        """The kind of binding `value` makes (``threading.Thread(...)`` -> "thread")."""
        if isinstance(value, ast.Await):
            value = value.value
        if not isinstance(value, ast.Call):
            return None
        func = value.func
        if isinstance(func, ast.Attribute) and func.attr == "submit":
            pool = self.kind_of(func.value) or ""
            if pool == "executor":
                return "future"
            if pool.startswith("executor:"):
                return "future:" + pool[9:]  # from a pool of a class the run may define
        q = self.qualname(func)
        if q is None:
            return self._built_or_returned_kind(value) or _executor_of_class(func)
        kind = _SIMPLE_KINDS.get(q)
        if kind is not None:
            return kind
        if q in SYNC_CLIENTS:
            if q == "psycopg2.connect" and _asynchronous_psycopg2(value, self.scope.node):
                return None  # polled by the caller (aiopg): nothing it does blocks
            return "sync_client:" + SYNC_CLIENTS[q]
        library = _library_object(q)
        if library is not None:
            return library
        if q in BREAKER_CTORS:
            return "breaker:" + BREAKER_CTORS[q]
        if q in BOUNDED_CTORS:
            return "bound"
        return None if q.startswith("concurrent.") else _executor_of_class(func)

    def annotation_kind(self, annotation: ast.expr) -> str | None:
        """The kind an annotation promises: a blocking library's type (``chromadb.Collection``)."""
        if not isinstance(annotation, ast.Name | ast.Attribute):
            return None
        q = self.qualname(annotation)
        if q in BOUNDED_CTORS:
            return "bound"  # gate: asyncio.Semaphore handed in by the caller
        if q is None or "async" in q.lower():
            return None
        package = q.partition(".")[0]
        what = _SYNC_PACKAGES.get(package)
        if what is not None:
            # the library's own modules annotate with its types: they are not its clients
            return None if self.in_package(package) else "sync_obj:" + what
        return _library_object(q)

    def _built_or_returned_kind(self, call: ast.Call) -> str | None:
        """What a call of this module's function returns (its return annotation), a sync
        client's ``stream=True`` iterator, or what ``cls.from_pretrained()`` builds when
        `cls` is a parameter defaulting to a transformers class (``AutoModelForCausalLM``)."""
        func = call.func
        name = func.id if isinstance(func, ast.Name) else None
        if isinstance(func, ast.Attribute):
            receiver = func.value
            if any(
                kw.arg == "stream" and isinstance(kw.value, ast.Constant) and kw.value.value is True
                for kw in call.keywords
            ) and isinstance(receiver, ast.Name | ast.Attribute):
                # a sync client's stream: each step of iterating it blocks
                kind = self.kind_of(receiver) or ""
                if kind.startswith(("sync_client:", "sync_obj:")):
                    return "sync_iter:" + kind.partition(":")[2]
            if isinstance(receiver, ast.Name) and receiver.id == "self":
                name = func.attr
            elif (
                func.attr == "from_pretrained"
                and isinstance(receiver, ast.Name)
                and receiver.id in self.scope.params
            ):
                default = param_default(self.scope.node, receiver.id)
                q = self.qualname(default) if default is not None else None
                return _library_object(f"{q}.from_pretrained") if q else None
        if name is None:
            return None
        fn = self.functions.get(name)
        if fn is None or fn.returns is None:
            return None
        return self.annotation_kind(fn.returns)

    def bind_kind(self, target: ast.expr, kind: str) -> None:
        if isinstance(target, ast.Name):
            self.scope.kinds[target.id] = kind
        elif is_self_attr(target) and self.classes:
            self.classes[-1].kinds[cast(ast.Attribute, target).attr] = kind

    def assignments(self, name: str) -> list[ast.expr]:
        """Every value assigned to `name` in the innermost scope that assigns it."""
        for scope in reversed(self.scopes):
            values = scope.assigned.get(name)
            if values is not None:
                return values
        return []

    def scoped(self, node: ast.expr, text: str | None = None) -> tuple[object, str] | None:
        """`node`'s dotted name with the scope it lives in: the class for ``self.x``."""
        text = text or dotted(node)
        if text is None:
            return None
        if (text == "self" or text.startswith("self.")) and self.classes:
            return (self.classes[-1], text)
        return (self.scope, text)

    def is_semish(self, expr: ast.expr) -> bool:
        """A semaphore, limiter or bulkhead (by binding, constructor or name)."""
        if isinstance(expr, ast.Call):  # async with limiter(...) / bulkhead("x")
            expr = expr.func
        if not isinstance(expr, ast.Name | ast.Attribute):
            return False
        if self.kind_of(expr) == "bound":
            return True
        q = self.qualname(expr)
        if q is not None and q in BOUNDED_CTORS:
            return True
        return bool(_SEMISH.search(dotted(expr) or ""))

    def acquires_bound(self, body: list[ast.stmt]) -> bool:
        """``await sem.acquire()`` as a statement of `body`."""
        for stmt in body:
            if (
                isinstance(stmt, ast.Expr)
                and isinstance(stmt.value, ast.Await)
                and isinstance(stmt.value.value, ast.Call)
                and isinstance(stmt.value.value.func, ast.Attribute)
                and stmt.value.value.func.attr == "acquire"
                and self.is_semish(stmt.value.value.func.value)
            ):
                return True
        return False

    def _holds_bound(self, body: list[ast.stmt]) -> bool:
        """A semaphore held by `body`, also inside its ``if``/``try``/``with`` blocks.

        ``if self._sem: async with self._sem: ...`` counts: a bound the caller
        configures is a bound in sight. Loops and nested functions are not entered.
        """
        for stmt in body:
            if isinstance(stmt, ast.Expr):
                if self.acquires_bound([stmt]):
                    return True
            elif isinstance(stmt, ast.If):
                if self._holds_bound(stmt.body) or self._holds_bound(stmt.orelse):
                    return True
            elif isinstance(stmt, ast.With | ast.AsyncWith | ast.Try | ast.TryStar):
                if isinstance(stmt, ast.AsyncWith) and any(
                    self.is_semish(item.context_expr) for item in stmt.items
                ):
                    return True
                if self._holds_bound(stmt.body):
                    return True
        return False

    def constant_size(self, node: ast.expr, depth: int = 0) -> bool:
        """True if the iterable's size is fixed in the source, not by the input.

        ``range(3)``, ``range(N)`` with ``N = 100`` assigned once, ``(a, b)``, a string, a
        comprehension over those, or a name only ever assigned such values.
        """
        if is_constant_size(node):
            return True
        if depth > 4:
            return False
        if isinstance(node, ast.ListComp | ast.GeneratorExp | ast.SetComp):
            return all(self.constant_size(g.iter, depth + 1) for g in node.generators)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            if node.func.id == "range":
                return all(self.constant_int(a, depth + 1) for a in node.args)
            if node.func.id in ("enumerate", "reversed", "sorted", "list", "tuple", "zip"):
                return bool(node.args) and all(self.constant_size(a, depth + 1) for a in node.args)
        if isinstance(node, ast.Name):
            values = self.assignments(node.id)
            return bool(values) and all(self.constant_size(v, depth + 1) for v in values)
        return False

    def constant_int(self, node: ast.expr, depth: int = 0) -> bool:
        """An int fixed in the source (a literal, arithmetic on them, a name bound to one)."""
        if isinstance(node, ast.Constant):
            return isinstance(node.value, int)
        if isinstance(node, ast.UnaryOp | ast.BinOp):
            return all(
                self.constant_int(c, depth + 1)
                for c in ast.iter_child_nodes(node)
                if isinstance(c, ast.expr)
            )
        if isinstance(node, ast.Name) and depth <= 4:
            values = self.assignments(node.id)
            return bool(values) and all(self.constant_int(v, depth + 1) for v in values)
        return False

    def constant_seconds(self, node: ast.expr) -> float | None:
        """The number `node` always is: a literal, a module constant assigned once
        (``PAUSE = 0.5``), or a class constant no method rebinds (``RETRY_DELAY = 0.5`` read
        as ``self.RETRY_DELAY``); None for anything that may vary."""
        value = self._literal(node)
        if (
            isinstance(value, ast.Constant)
            and isinstance(value.value, int | float)
            and not isinstance(value.value, bool)
        ):
            return float(value.value)
        return None

    def _literal(self, node: ast.expr) -> ast.expr | None:
        if isinstance(node, ast.Constant):
            return node
        if isinstance(node, ast.Name):
            if any(node.id in scope.assigned for scope in self.scopes[1:]):
                return None  # a local: it may grow after this line
            values = self.scopes[0].assigned.get(node.id, [])
            return values[0] if len(values) == 1 and isinstance(values[0], ast.Constant) else None
        if not (
            isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and self.classes
        ):
            return None
        cls = self.classes[-1]
        if node.value.id not in ("self", "cls", cls.name):
            return None
        found: ast.expr | None = None
        for stmt in cls.node.body:
            if isinstance(stmt, ast.Assign | ast.AnnAssign) and isinstance(
                stmt.value, ast.Constant
            ):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                if any(isinstance(t, ast.Name) and t.id == node.attr for t in targets):
                    found = stmt.value
        if found is None:
            return None
        rebound = any(
            isinstance(sub, ast.Attribute)
            and isinstance(sub.ctx, ast.Store)
            and sub.attr == node.attr
            and is_self_attr(sub)
            for sub in ast.walk(cls.node)
        )
        return None if rebound else found

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
        for alias in node.names:
            if alias.name in _HTTP_MODULES and (node.level or node.module not in _HTTP_MODULES):
                # a package's shim that picks one HTTP library and re-exports it
                # (`from langsmith._httpx import httpx`): the name is that library
                self.imports[alias.asname or alias.name] = alias.name
        if node.level or not node.module:
            return
        for alias in node.names:
            if alias.name != "*" and alias.name not in _HTTP_MODULES:
                self.imports[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        if node.module == "threading":
            self.imports_threading = True

    # --- scopes ----------------------------------------------------------------------

    def visit_FunctionDef(self, node: Function) -> None:
        self.visit_all(node.decorator_list)
        for hook in self.hooks.function:
            hook(self, node)
        self.visit(node.args)
        if node.returns is not None:
            self.visit(node.returns)
        self.facts.defined.add(node.name)
        if self._holds_bound(node.body) or any(self.is_semish(d) for d in node.decorator_list):
            self.guarded.add(node.name)
        scope = Scope(node.name, isinstance(node, ast.AsyncFunctionDef), node)
        args = node.args
        scope.params = frozenset(
            a.arg
            for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg)
            if a is not None
        )
        for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs):
            if arg.annotation is not None:
                kind = self.annotation_kind(arg.annotation)
                if kind is not None:
                    scope.kinds[arg.arg] = kind
        self.scopes.append(scope)
        self.visit_all(node.body)
        self.legacy -= scope.legacy_tail
        for end_hook in self.hooks.scope_end:
            end_hook(self, scope)  # the scope is still the innermost: its names resolve
        self.scopes.pop()
        if scope.is_async:
            self.facts.awaits[node.name] = self.facts.awaits.get(node.name, False) or scope.awaits
        spawns = self.facts.spawns
        spawns[node.name] = spawns.get(node.name, True) and scope.returns_task is True

    def visit_Lambda(self, node: ast.Lambda) -> None:
        if isinstance(node.body, ast.Call):
            self.managed.add(id(node.body))  # a factory: whoever calls it owns the result
        self.visit(node.args)
        self.scopes.append(Scope("<lambda>", False, node))
        self.visit(node.body)
        self.scopes.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.visit_all(node.decorator_list)
        self.visit_all(node.bases)
        self.visit_all(node.keywords)
        cls = ClassScope(node)
        test = any(
            self.qualname(base) in _TEST_CASES
            or (isinstance(base, ast.Name) and base.id in self.test_classes)
            for base in node.bases
        )
        if test:
            self.test_classes.add(node.name)
        self._test_depth += test
        for item in node.body:  # fields and properties annotated with a blocking library's type
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                kind = self.annotation_kind(item.annotation)
                if kind is not None:
                    cls.kinds[item.target.id] = kind
            elif (
                isinstance(item, ast.FunctionDef)
                and item.returns is not None
                and any(dotted(d) == "property" for d in item.decorator_list)
            ):
                kind = self.annotation_kind(item.returns)
                if kind is not None:
                    cls.kinds[item.name] = kind
        self.classes.append(cls)
        self.visit_all(node.body)
        self.classes.pop()
        self.facts.classes.setdefault(cls.name, []).append(
            (cls.bases, frozenset(cls.closed), cls.lifecycle)
        )
        for hook in self.hooks.class_end:
            hook(self, cls)
        self._test_depth -= test

    def visit_Loop(self, node: Loop) -> None:
        scope = self.scope
        if isinstance(node, ast.AsyncFor):
            scope.awaits = True
        is_for = not isinstance(node, ast.While)
        if isinstance(node, ast.While):
            self.visit(node.test)
        else:
            self.visit(node.target)
            self.visit(node.iter)
            self._record_assignment(node.target, node.iter)
            if isinstance(node.iter, ast.Name) and _cancels(node.body, node.target):
                scope.cancelled.add(node.iter.id)  # for t in tasks: t.cancel()
        guarded = self.acquires_bound(node.body) or (
            is_for and self.constant_size(cast(ast.For, node).iter)
        )
        pool = is_for and is_pool_range(cast(ast.For, node).iter)
        scope.loop_depth += 1
        scope.guarded_loops += guarded
        scope.pool_loops += pool
        tries: list[ast.Try | ast.TryStar] = []
        self.loops.append((node, scope, tries))
        self.visit_all(node.body)
        self.loops.pop()
        for hook in self.hooks.loop:
            hook(self, node, tries)
        scope.guarded_loops -= guarded
        scope.pool_loops -= pool
        scope.loop_depth -= 1
        self.visit_all(node.orelse)

    def visit_Comp(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
    ) -> None:
        scope = self.scope
        scope.loop_depth += 1
        self.generic(node)
        scope.loop_depth -= 1

    def visit_Try(self, node: ast.Try | ast.TryStar) -> None:
        if node.handlers and self.loops and self.loops[-1][1] is self.scope:
            self.loops[-1][2].append(node)
        self.visit_all(node.body)
        self.visit_all(node.handlers)
        self.visit_all(node.orelse)
        scope = self.scope
        scope.finally_depth += 1
        self.visit_all(node.finalbody)
        scope.finally_depth -= 1

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        if isinstance(node, ast.AsyncWith):
            self.scope.awaits = True
            for with_hook in self.hooks.async_with:
                with_hook(self, node)
        for item in node.items:
            expr = item.context_expr
            inner = expr.value if isinstance(expr, ast.Await) else expr
            if isinstance(node, ast.AsyncWith):
                # `async with session.request(...)`: its __aenter__ is awaited; what it
                # calls makes an async context manager, no sync code that blocks
                self.awaited.add(id(inner))
            # `async with (shared if shared is not None else AsyncClient()) as c:` closes
            # whichever branch it got
            for call in candidate_calls(inner):
                self.managed.add(id(call))
            if isinstance(inner, ast.Call):
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
        targets = assign_targets(node)
        if value is None:
            self.visit(targets[0])
            return
        for hook in self.hooks.assign:
            hook(self, node, targets, value)
        inner = value.value if isinstance(value, ast.Await) else value
        for target in targets:
            self._record_assignment(target, value)
            self._record_alias(target, value)
            if (
                isinstance(target, ast.Subscript)
                and is_self_attr(target.value)
                and self.classes
                and self.scope.name != "__init__"
            ):  # self._subscriptions[sid] = service: the collection grows at run time
                self.classes[-1].grown.add(cast(ast.Attribute, target.value).attr)
        if len(targets) == 1:
            target = targets[0]
            if isinstance(inner, ast.Call):
                self.call_targets[id(inner)] = self.scoped(target)
                if isinstance(target, ast.Attribute):
                    self.lifetime.add(id(inner))  # self.conn = await connect(...)
                    built = constructed_class(inner)
                    if built is not None and is_self_attr(target) and self.classes:
                        self.classes[-1].built[target.attr] = built
            elif (
                isinstance(inner, ast.Name | ast.Attribute)
                and isinstance(target, ast.Attribute)
                and is_self_attr(target)
                and self.classes
                and (imported := self.qualname(inner)) is not None
            ):
                self.classes[-1].modules[target.attr] = imported
            kind = self.kind_of_value(value)
            if kind is None and isinstance(node, ast.AnnAssign):
                kind = self.annotation_kind(node.annotation)
            if kind is None and isinstance(value, ast.Name) and is_self_attr(target):
                # self.embedding = embedding, a parameter annotated `embedding: Embeddings`:
                # the object keeps the blocking library's object it was handed
                handed = self.scope.kinds.get(value.id, "")
                kind = handed if handed.startswith(("sync_obj:", "sync_client:")) else None
            if kind is not None:
                self.bind_kind(target, kind)
            elif isinstance(target, ast.Name):
                self.scope.kinds.pop(target.id, None)
            for call in candidate_calls(inner):
                what = resource_of(self, call) or self.factory_result(call)
                if what is not None:
                    self._track_resource(target, call, what)
            if isinstance(target, ast.Name):
                if isinstance(value, ast.ListComp | ast.GeneratorExp | ast.SetComp | ast.DictComp):
                    self.scope.collections[target.id] = (value, False, None)
                else:
                    self.scope.collections.pop(target.id, None)
                if isinstance(value, ast.Call):  # an awaited call's result is its response
                    wrapped = self._wrapped_resources(value)
                    if wrapped:
                        self.scope.wrappers[target.id] = wrapped
            elif (
                isinstance(value, ast.Name)
                and value.id in self.scope.pending
                and is_self_attr(target)
                and self.classes
            ):
                # client = AsyncClient(); self._client = client: the class must close it
                attr = cast(ast.Attribute, target).attr
                self.classes[-1].pending[attr] = self.scope.pending[value.id]
                self.scope.escaped.add(value.id)
                self.scope.stored.setdefault(value.id, []).append(attr)
                if value.id in self.scope.closed:
                    self.classes[-1].closed.add(attr)  # closed, or handed to an exit stack
            else:
                self._mark_escaped(value)  # storing a local resource on an object hands it over
        if isinstance(value, ast.Dict | ast.List | ast.Tuple | ast.Set):
            # args = {"client": client}: handed on with the container
            for elt in value.values if isinstance(value, ast.Dict) else value.elts:
                if elt is not None:
                    self._mark_escaped(elt)
        self.visit(value)
        self.visit_all(targets)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._record_assignment(node.target, node.value)
        value = node.value
        if (
            isinstance(node.target, ast.Name)
            and isinstance(node.op, ast.Add)
            and isinstance(value, ast.ListComp | ast.GeneratorExp | ast.SetComp)
        ):
            # tasks += [create_task(f(x)) for x in xs]: what grows the collection sizes it
            self.scope.collections[node.target.id] = (value, False, None)
        self.visit(node.value)
        self.visit(node.target)

    def _record_assignment(self, target: ast.expr, value: ast.expr) -> None:
        if isinstance(target, ast.Name):
            self.scope.assigned.setdefault(target.id, []).append(value)
        elif isinstance(target, ast.Tuple | ast.List):
            for elt in target.elts:
                self._record_assignment(elt, value)

    def _record_alias(self, target: ast.expr, value: ast.expr) -> None:
        if isinstance(target, ast.Name):
            if isinstance(value, ast.Attribute):
                text = dotted(value)
                if text is not None:
                    self.scope.aliases[target.id] = text
        elif (
            isinstance(target, ast.Tuple)
            and isinstance(value, ast.Tuple)
            and len(target.elts) == len(value.elts)
        ):
            for t, v in zip(target.elts, value.elts, strict=True):
                self._record_alias(t, v)

    def visit_Expr(self, node: ast.Expr) -> None:
        value = node.value
        call = value
        statement: ast.stmt | None = node
        if isinstance(value, ast.ListComp | ast.SetComp):
            call = value.elt  # [create_task(f(x)) for x in xs] as a statement
            statement = None
        if isinstance(call, ast.Call):
            for hook in self.hooks.dropped_call:
                hook(self, call, statement)
        self.visit(value)

    def visit_Await(self, node: ast.Await) -> None:
        self.scope.awaits = True
        value: ast.expr = node.value
        # await session.request(...).send(): the chain builds what is awaited
        while True:
            self.awaited.add(id(value))
            if not (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Attribute)
                and isinstance(value.func.value, ast.Call)
            ):
                break
            value = value.func.value
        self.visit(node.value)

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        test = node.test
        if isinstance(test, ast.Name):
            # IS_PY310 = sys.version_info >= (3, 10) at module level, tested here
            test = self._module_constant(test)
        old = _legacy_branch(test)  # True: the body is for older Pythons; False: orelse
        taken = self._constant_test(node.test)
        dead = node.orelse if taken is True else node.body if taken is False else []
        for branch in (node.body, node.orelse) if self._marks_unreachable else ():
            if branch and _MARKED_UNREACHABLE.search(self.line(branch[0].lineno)):
                dead = branch  # the project's type checker proved the branch never runs
        if dead:
            self.dead.append((dead[0].lineno, dead[-1].end_lineno or dead[-1].lineno))
        switch = string_switch(node.test) or flag_switch(node.test, self.scope.node)
        scope = self.scope
        scope.switched += switch
        self.legacy += old is True
        self.visit_all(node.body)
        self.legacy -= old is True
        self.legacy += old is False
        self.visit_all(node.orelse)
        self.legacy -= old is False
        scope.switched -= switch
        if (
            old is False
            and not node.orelse
            and isinstance(node.body[-1], ast.Return | ast.Raise)
            and len(self.scopes) > 1
        ):
            self.legacy += 1  # the rest of the function is the else branch
            scope.legacy_tail += 1

    def _constant_test(self, test: ast.expr) -> bool | None:
        """The value of a test fixed in the source: ``True``/``False``, or a private module
        constant set once to one (``_IS_SYNC = False``, as code generated for a sync and an
        async copy has), maybe negated; None when it may vary."""
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            inner = self._constant_test(test.operand)
            return None if inner is None else not inner
        if isinstance(test, ast.Name) and test.id.startswith("_") and test.id.isupper():
            test = self._module_constant(test)
        if isinstance(test, ast.Constant) and isinstance(test.value, bool):
            return test.value
        return None

    def _module_constant(self, name: ast.Name) -> ast.expr:
        """The value a module-level name is assigned once, else the name itself."""
        values = self.scopes[0].assigned.get(name.id, [])
        return values[0] if len(values) == 1 else name

    def visit_Attribute(self, node: ast.Attribute) -> None:
        value = node.value
        while type(value) is ast.Attribute:  # a.b.c: only the chain's root has children
            value = value.value
        self.visit(value)

    def visit_Global(self, node: ast.Global) -> None:
        self.scope.globals.update(node.names)

    def visit_Return(self, node: ast.Return) -> None:
        value = node.value
        task = isinstance(value, ast.Call) and (
            self.qualname(value.func) in TASK_FACTORIES
            or (isinstance(value.func, ast.Attribute) and value.func.attr == "create_task")
        )
        self.scope.returns_task = task and self.scope.returns_task is not False
        if node.value is not None:
            self.scope.returned.append(node.value)
            self._hand_over(node.value)
            self.visit(node.value)

    def visit_Yield(self, node: ast.Yield | ast.YieldFrom) -> None:
        self.scope.is_generator = True
        if node.value is not None:
            self._hand_over(node.value)
            self.visit(node.value)

    def _hand_over(self, value: ast.expr) -> None:
        inner = value.value if isinstance(value, ast.Await) else value
        if isinstance(inner, ast.Call):
            self.managed.add(id(inner))
            # return wrap(client): the returned wrapper owns the client (an awaited call
            # returns its response: `return await send(client, payload)` hands nothing over)
            if inner is value:
                self.scope.escaped.update(self._wrapped_resources(inner))
        elif isinstance(inner, ast.Name) and inner.id in self.scope.wrappers:
            self.scope.escaped.update(self.scope.wrappers[inner.id])
        elif isinstance(inner, ast.Tuple | ast.List):
            for elt in inner.elts:
                self._hand_over(elt)
        self._mark_escaped(inner)

    def _wrapped_resources(self, call: ast.Call) -> set[str]:
        """Local resources passed to `call` as arguments."""
        pending = self.scope.pending
        values = [*call.args, *(kw.value for kw in call.keywords)]
        return {v.id for v in values if isinstance(v, ast.Name) and v.id in pending}

    def _mark_escaped(self, node: ast.expr) -> None:
        if isinstance(node, ast.Name) and node.id in self.scope.pending:
            self.scope.escaped.add(node.id)

    # --- calls -----------------------------------------------------------------------

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        scope = self.scope
        hooks = self.hooks
        q = self.qualname(func)
        if q is not None:
            for call_hook in hooks.calls.get(q, ()):
                call_hook(self, node, q)
        for node_hook in hooks.every_call:
            node_hook(self, node)
        callee = ""
        if isinstance(func, ast.Attribute):
            callee = func.attr
            self._note_method_call(node, func, scope)
            for method_hook in hooks.methods.get(func.attr, ()):
                method_hook(self, node, func)
            if scope.is_async:
                for method_hook in hooks.async_method_call:
                    method_hook(self, node, func)
        elif isinstance(func, ast.Name):
            callee = func.id
        if callee in _SCHEDULERS:
            self.scheduled.update(id(arg) for arg in node.args if isinstance(arg, ast.Call))
        callers = self.facts.callers
        where = 1 if scope.is_async else 6 if len(self.scopes) == 1 else 2
        key = callee
        if isinstance(func, ast.Attribute) and not (
            isinstance(func.value, ast.Name) and func.value.id in ("self", "cls")
        ):
            key = "." + callee  # another object's method: not a call of a plain function
        callers[key] = callers.get(key, 0) | where
        # ownership: a call argument is owned by the callee; a constructor (`Owner(client)`)
        # or an exit stack takes a local resource over
        owner = callee in _OWNERS or callee[:1].isupper() or callee == "__init__"
        keywords = [kw.value for kw in node.keywords]
        for value in (*node.args, *keywords):
            inner = value.value if isinstance(value, ast.Await | ast.Starred) else value
            if isinstance(inner, ast.BoolOp | ast.IfExp):
                # Manager(session or ClientSession()): whichever is passed is handed over
                options = (
                    inner.values if isinstance(inner, ast.BoolOp) else [inner.body, inner.orelse]
                )
                self.managed.update(id(o) for o in options if isinstance(o, ast.Call))
            if isinstance(inner, ast.Call):
                self.managed.add(id(inner))
            elif isinstance(inner, ast.Name) and inner.id in scope.pending:
                # Owner(client), super().__init__(client), make(client=client): taken over
                if owner or any(inner is k for k in keywords):
                    scope.escaped.add(inner.id)
                if callee in _OWNERS:
                    # stack.push_async_callback(close, client): the exit stack closes it, and
                    # so what the attributes it is stored on hold
                    scope.closed.setdefault(inner.id, True)
                    if self.classes:
                        self.classes[-1].closed.update(scope.stored.get(inner.id, ()))
            elif isinstance(inner, ast.Attribute) and inner.attr in CLOSERS:
                # stack.push_async_callback(client.aclose), atexit.register(pool.close)
                self._note_close(inner.value, scope)
        self.visit(func)
        self.visit_all(node.args)
        self.visit_all(keywords)

    def _note_method_call(self, node: ast.Call, func: ast.Attribute, scope: Scope) -> None:
        attr = func.attr
        receiver = func.value
        if attr in CLOSERS:
            self._note_close(receiver, scope)
        elif attr == "join":
            self.joined.add(self.scoped(receiver))
            if isinstance(receiver, ast.Name) and receiver.id in scope.aliases:
                # t = self._thread; t.join()
                self.joined.add(self.scoped(receiver, scope.aliases[receiver.id]))
        elif attr == "set" and not node.args:
            scope.stopping = True  # stop_event.set(): a shutdown path
        elif attr in ("append", "add") and len(node.args) == 1:
            element = node.args[0]
            if (
                isinstance(receiver, ast.Name)
                and scope.loop_depth
                and isinstance(element, ast.Call)
            ):
                # tasks.append(coro(...)) in a loop: a collection of one item per iteration
                bounded_loop = scope.guarded_loops > 0 or (
                    scope.pool_loops > 0 and is_workerish(self, element)
                )
                loop = self.loops[-1][0] if self.loops and self.loops[-1][1] is scope else None
                source = loop.iter if isinstance(loop, ast.For | ast.AsyncFor) else None
                if isinstance(loop, ast.AsyncFor) and isinstance(source, ast.Call):
                    # `async for doc in find_all()` reads what `for doc in await ...` would
                    source = ast.copy_location(ast.Await(value=source), source)
                scope.collections[receiver.id] = (element, bounded_loop, source)
        if (
            attr in _GROWERS
            and is_self_attr(receiver)
            and self.classes
            and scope.name != "__init__"
        ):
            self.classes[-1].grown.add(cast(ast.Attribute, receiver).attr)

    # --- resources -------------------------------------------------------------------

    def _track_resource(self, target: ast.expr, call: ast.Call, what: str) -> None:
        self.managed.add(id(call))
        scope = self.scope
        if isinstance(target, ast.Name):
            if len(self.scopes) == 1 or target.id in scope.globals:
                return  # a module-level singleton lives as long as the process
            if _ENTRY_POINT.match(scope.name):
                return  # created once per process by its entry point
            earlier = scope.pending.get(target.id)
            if earlier is not None and not (
                target.id in scope.closed or target.id in scope.escaped
            ):
                scope.rebound.setdefault(target.id, []).append(earlier)
            else:
                scope.rebound.pop(target.id, None)
            scope.pending[target.id] = (call, what)
            scope.closed.pop(target.id, None)
            scope.escaped.discard(target.id)
            return
        text = dotted(target)
        if text is None:
            return  # stored in a container: owned by whoever holds it
        if text.startswith("cls."):
            return  # on the class: shared by every instance for the process's life
        if text.startswith("self.") and self.classes:
            cls, attr = self.classes[-1], text[5:]
            earlier = cls.pending.get(attr)
            method = scope.node
            if (
                earlier is not None
                and isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef)
                and method.lineno <= earlier[0].lineno <= (method.end_lineno or 0)
            ):
                cls.rebound.setdefault(attr, []).append(earlier)
            cls.pending[attr] = (call, what)
        else:
            self.module_pending[text] = (call, what)

    def _note_close(self, receiver: ast.expr, scope: Scope) -> None:
        if isinstance(receiver, ast.Call) and self.classes:
            # self.get_client().__aexit__(...): the getter returns self._client
            receiver = _getter_returns(self.classes[-1].node, receiver) or receiver
        if (
            isinstance(receiver, ast.Attribute)
            and isinstance(receiver.value, ast.Name)
            and receiver.value.id in scope.pending
        ):
            receiver = receiver.value  # client._client.aclose(): the client's own transport
        text = dotted(receiver)
        if text is None:
            return
        if isinstance(receiver, ast.Name) and receiver.id in scope.aliases:
            text = scope.aliases[receiver.id]  # client, self._client = self._client, None
        if isinstance(receiver, ast.Name) and receiver.id in scope.pending:
            in_finally = scope.finally_depth > 0
            scope.closed[receiver.id] = scope.closed.get(receiver.id, False) or in_finally
            return
        if text.startswith("self.") and self.classes:
            self.classes[-1].closed.add(text[5:])
        self.module_closed.add(text)


def _getter_returns(cls: ast.ClassDef, call: ast.Call) -> ast.expr | None:
    """The ``self.x`` that every ``return`` of the class's method `call` makes, for a call
    ``self.method()`` with no arguments (a lazy getter of a client it stores)."""
    func = call.func
    if call.args or call.keywords or not is_self_attr(func):
        return None
    name = cast(ast.Attribute, func).attr
    method = next(
        (
            item
            for item in cls.body
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name == name
        ),
        None,
    )
    if method is None:
        return None
    returns = [sub.value for sub in ast.walk(method) if isinstance(sub, ast.Return)]
    first = returns[0] if returns else None
    if first is None or not is_self_attr(first):
        return None
    text = dotted(first)
    return first if all(v is not None and dotted(v) == text for v in returns) else None


# Handlers by node type: plain functions, so that a model holds no reference to itself
# (a cycle would keep each module's whole tree alive until the cyclic collector ran).
_DISPATCH: dict[type, Callable[[ModuleModel, Any], None]] = {
    ast.Import: ModuleModel.visit_Import,
    ast.ImportFrom: ModuleModel.visit_ImportFrom,
    ast.FunctionDef: ModuleModel.visit_FunctionDef,
    ast.AsyncFunctionDef: ModuleModel.visit_FunctionDef,
    ast.Lambda: ModuleModel.visit_Lambda,
    ast.ClassDef: ModuleModel.visit_ClassDef,
    ast.For: ModuleModel.visit_Loop,
    ast.AsyncFor: ModuleModel.visit_Loop,
    ast.While: ModuleModel.visit_Loop,
    ast.ListComp: ModuleModel.visit_Comp,
    ast.SetComp: ModuleModel.visit_Comp,
    ast.GeneratorExp: ModuleModel.visit_Comp,
    ast.DictComp: ModuleModel.visit_Comp,
    ast.Try: ModuleModel.visit_Try,
    ast.TryStar: ModuleModel.visit_Try,
    ast.With: ModuleModel.visit_With,
    ast.AsyncWith: ModuleModel.visit_With,
    ast.Assign: ModuleModel.visit_Assign,
    ast.AnnAssign: ModuleModel.visit_Assign,
    ast.AugAssign: ModuleModel.visit_AugAssign,
    ast.Expr: ModuleModel.visit_Expr,
    ast.Return: ModuleModel.visit_Return,
    ast.Yield: ModuleModel.visit_Yield,
    ast.YieldFrom: ModuleModel.visit_Yield,
    ast.Call: ModuleModel.visit_Call,
    ast.Await: ModuleModel.visit_Await,
    ast.Global: ModuleModel.visit_Global,
    ast.Attribute: ModuleModel.visit_Attribute,
    ast.If: ModuleModel.visit_If,
}


# --- worker pools ----------------------------------------------------------------------

_POOL_SIZE = re.compile(r"worker|concurren|parallel|limit|max_|pool", re.IGNORECASE)
# N copies of one coroutine that pull from a shared queue: a worker pool, bounded by N.
_WORKERISH = re.compile(
    r"worker|consum|loop|runner|drain|serve|listen|poll|reader|writer|pump", re.IGNORECASE
)
_QUEUEISH = re.compile(r"queue|(?:^|[._])q$|chan|inbox|jobs", re.IGNORECASE)
TASK_FACTORIES = frozenset({"asyncio.create_task", "asyncio.ensure_future"})
# Calls that take a coroutine to run (a task factory, a task group's or a project's
# background-task helper, a wait with a timeout): what is handed to them is awaitable.
_SCHEDULERS = frozenset(
    {
        "create_task",
        "ensure_future",
        "create",
        "spawn",
        "start_soon",
        "run_coroutine_threadsafe",
        "gather",
        "wait_for",
        "shield",
    }
)


def is_pool_range(node: ast.expr) -> bool:
    """``range(workers)``: sized by configured concurrency (a pool if the items are workers)."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "range"
        and bool(node.args)
        and all(
            isinstance(a, ast.Name | ast.Attribute) and bool(_POOL_SIZE.search(dotted(a) or ""))
            for a in node.args
        )
    )


def coroutine_call(m: ModuleModel, call: ast.Call) -> ast.Call:
    """The coroutine call inside ``create_task(coro(...))`` and friends, else `call`."""
    func = call.func
    if call.args and isinstance(call.args[0], ast.Call):
        q = m.qualname(func)
        if q in TASK_FACTORIES or (
            isinstance(func, ast.Attribute) and func.attr in ("create_task", "spawn")
        ):
            return call.args[0]
    return call


def callee_name(call: ast.Call) -> str | None:
    """``f`` for ``f(...)`` and ``obj.f(...)``."""
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def is_workerish(m: ModuleModel, element: ast.expr) -> bool:
    """A coroutine that loops over shared work: ``worker(queue)``, ``self._consume()``."""
    if not isinstance(element, ast.Call):
        return False
    call = coroutine_call(m, element)
    if _WORKERISH.search(callee_name(call) or ""):
        return True
    values = [*call.args, *(kw.value for kw in call.keywords)]
    return any(
        isinstance(v, ast.Name | ast.Attribute) and bool(_QUEUEISH.search(dotted(v) or ""))
        for v in values
    )


# LangChain's sync methods that have an ``a``-prefixed async twin on the same object
LANGCHAIN_TWINS = frozenset(
    {"embed_query", "embed_documents", "invoke", "batch", "get_relevant_documents"}
)


# boto3's clients and resources (or the annotation of one): every request is sync HTTP.
_BOTO3_CLIENTS = frozenset({"boto3.client", "boto3.resource", "botocore.client.BaseClient"})


def _library_object(q: str) -> str | None:
    """The kind of an object a known library builds: a boto3 client, a transformers model
    loaded with ``from_pretrained`` or its token streamer, or a LangChain class (embeddings,
    runnables; not a prompt template or an output parser, which work in memory)."""
    if q in _BOTO3_CLIENTS:
        return "sync_obj:boto3"
    root = q.partition(".")[0]
    last = q.rpartition(".")[2]
    if root == "transformers":
        if last == "TextIteratorStreamer":
            return "sync_iter:transformers"
        if q.endswith(".from_pretrained") and "Model" in q:
            return "sync_obj:transformers"
    elif (
        root.startswith("langchain") and last[:1].isupper() and not last.endswith(_LOCAL_LANGCHAIN)
    ):
        return "sync_obj:LangChain"
    return None


# LangChain classes whose ``invoke`` only formats or parses in memory: prompt templates,
# output parsers, messages.
_LOCAL_LANGCHAIN = ("PromptTemplate", "Prompt", "OutputParser", "Parser", "Message", "Placeholder")


def _executor_of_class(func: ast.expr) -> str | None:
    """``executor:<Class>`` for an instance of a class named like an executor
    (``ContextThreadPoolExecutor(...)``): whether it is a thread pool, the run's class
    definitions tell (:meth:`ProjectFacts.derives_from`)."""
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return "executor:" + name if name.endswith("Executor") and name[:1].isupper() else None


def param_default(node: ast.AST | None, name: str) -> ast.expr | None:
    """The default value of parameter `name` of function `node`, if any."""
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    defaulted = positional[len(positional) - len(args.defaults) :]
    for arg, default in zip(defaulted, args.defaults, strict=True):
        if arg.arg == name:
            return default
    for arg, kw_default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        if arg.arg == name:
            return kw_default
    return None


# Module-level statements that only define: running such a file does nothing.
_DEFINES = (
    ast.Import,
    ast.ImportFrom,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Assign,
    ast.AnnAssign,
    ast.Expr,
    ast.Try,
    ast.If,
)


def _unreachable(path: str, tree: ast.Module) -> bool:
    """A module no import can name (``client.backup.py``: its stem is no identifier) that
    only defines things: a shipped copy whose code never runs."""
    stem = path.replace("\\", "/").rpartition("/")[2].removesuffix(".py")
    return (
        bool(tree.body)
        and not stem.isidentifier()
        and all(
            isinstance(stmt, _DEFINES)
            and not (isinstance(stmt, ast.Expr) and not isinstance(stmt.value, ast.Constant))
            and not (isinstance(stmt, ast.If) and _is_main_guard(stmt.test))
            and not any(
                isinstance(sub, ast.Call) and callee_name(sub) in _RUNNERS for sub in ast.walk(stmt)
            )
            for stmt in tree.body
        )
    )


_RUNNERS = frozenset({"run", "run_until_complete", "run_forever", "main"})
# mypy's verdict, silenced where it holds: ``x = f()  # type: ignore[unreachable]``
_MARKED_UNREACHABLE = re.compile(rb"#\s*type:\s*ignore\[[^\]]*\bunreachable\b")


def _is_main_guard(test: ast.expr) -> bool:
    """``__name__ == "__main__"``."""
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


def _asynchronous_psycopg2(call: ast.Call, enclosing: ast.AST | None) -> bool:
    """``psycopg2.connect(dsn, async_=True)``, or ``**kwargs`` where the enclosing function
    sets ``kwargs["async_"]``: a connection in asynchronous mode, which never blocks."""
    for kw in call.keywords:
        if kw.arg in ("async_", "async"):
            return not (isinstance(kw.value, ast.Constant) and not kw.value.value)
    mappings = {
        kw.value.id for kw in call.keywords if kw.arg is None and isinstance(kw.value, ast.Name)
    }
    return (
        bool(mappings)
        and enclosing is not None
        and any(
            isinstance(target, ast.Subscript)
            and isinstance(target.value, ast.Name)
            and target.value.id in mappings
            and isinstance(target.slice, ast.Constant)
            and target.slice.value in ("async_", "async")
            for sub in ast.walk(enclosing)
            if isinstance(sub, ast.Assign)
            for target in sub.targets
        )
    )


def _runs_a_loop(stmt: ast.stmt) -> bool:
    """A module-level ``asyncio.run(main())`` or ``loop.run_until_complete(main())``."""
    value = stmt.value if isinstance(stmt, ast.Expr) else None
    if not isinstance(value, ast.Call) or not isinstance(value.func, ast.Attribute):
        return False
    func = value.func
    return func.attr == "run_until_complete" or (
        func.attr == "run" and dotted(func.value) in ("asyncio", "anyio", "uvloop", "trio")
    )


def _version_info(left: ast.expr) -> ast.expr:
    """``sys.version_info`` of ``sys.version_info[:2]`` (also ``[0:2]``), else `left`."""
    if (
        isinstance(left, ast.Subscript)
        and isinstance(left.slice, ast.Slice)
        and left.slice.step is None
        and (
            left.slice.lower is None
            or (isinstance(left.slice.lower, ast.Constant) and left.slice.lower.value == 0)
        )
    ):
        return left.value
    return left


def _legacy_branch(test: ast.expr) -> bool | None:
    """For ``sys.version_info < (3, x)`` (or ``sys.version_info[:2] < (3, x)``) True (the
    body is legacy), for ``>=`` False (the else branch is), else None."""
    if (
        isinstance(test, ast.Compare)
        and len(test.ops) == 1
        and dotted(_version_info(test.left)) in ("sys.version_info", "version_info")
    ):
        if isinstance(test.ops[0], ast.Lt | ast.LtE):
            return True
        if isinstance(test.ops[0], ast.Gt | ast.GtE):
            return False
    return None


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
