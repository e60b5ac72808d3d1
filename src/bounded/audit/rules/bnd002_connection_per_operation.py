"""BND002: a new database connection, HTTP client or MCP client session per operation
instead of a shared pool."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from bounded.audit.core import Rule
from bounded.audit.model import (
    Function,
    ModuleModel,
    ProjectFacts,
    Scope,
    cached,
    callee_name,
    pooled_client,
)
from bounded.audit.names import (
    assign_targets,
    candidate_calls,
    dotted,
    is_self_attr,
    own_callee,
    own_returns,
    returned_calls,
)

if TYPE_CHECKING:
    from bounded.audit.model import CallHook

RULE = Rule(
    "BND002",
    "connection-per-operation",
    "A new database connection, HTTP client or MCP session per operation instead of a shared pool.",
    "create one `bounded.DatabasePool` (or asyncpg.create_pool) or one HTTP client "
    "(`bounded.HttpClient`) at start-up and share it: `async with pool.connection() as "
    "conn`, `await client.get(...)`",
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
# creating or updating the schema is a start-up step too, and so is creating or deleting
# a lasting remote object (an index, a collection, an assistant: once in its life).
_STARTUP_NAME = re.compile(
    r"main|start|setup|set_up|init|lifespan|bootstrap|connect|migrat|open|aenter|create_app"
    r"|pool|warm|cli|prepare|probe|ping|reachable|ready|health|admin|schema"
    r"|(?:create|delete|drop)_(?:\w+_)?(?:index|collection|assistant|table|database)(?:es|s)?$",
    re.IGNORECASE,
)


@dataclass(slots=True)
class _State:
    by_scope: dict[Scope, list[tuple[ast.Call, str]]] = field(default_factory=dict)


def _connect(m: ModuleModel, node: ast.Call, q: str) -> None:
    scope = m.scope
    if (
        len(m.scopes) == 1
        or _STARTUP_NAME.search(scope.name)
        or id(node) in m.lifetime
        or m.is_script
    ):
        return  # at import, at start-up, stored on an object for its lifetime, or by hand
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
    _http_clients_end(m, scope)
    found = m.state(_State).by_scope.pop(scope, None)
    if found is None or scope.is_generator:
        return  # a generator (an async context manager) holds its connection for its lifetime
    if _pool_factory(m, scope):
        return
    for node, message in found:
        m.report(node, RULE.code, message)


_FACTORY_PARAMETER = re.compile(r"creator|factory|connect", re.IGNORECASE)


def _pool_factory(m: ModuleModel, scope: Scope) -> bool:
    """The function is handed to a pool as the way it opens each connection
    (``create_async_engine(url, async_creator=async_creator)``): the pool calls it once per
    pooled connection, not per operation."""
    parent = m.scopes[-2].node if len(m.scopes) > 2 else None
    return parent is not None and any(
        isinstance(sub, ast.Call)
        and any(
            kw.arg is not None
            and _FACTORY_PARAMETER.search(kw.arg)
            and isinstance(kw.value, ast.Name)
            and kw.value.id == scope.name
            for kw in sub.keywords
        )
        for sub in ast.walk(parent)
    )


# Async HTTP clients: each owns a connection pool, so one per call opens (and closes) a
# TCP + TLS connection per operation.
_HTTP_CLIENTS = (
    "aiohttp.ClientSession",
    "httpx.AsyncClient",
    "httpx2.AsyncClient",
    "curl_cffi.requests.AsyncSession",
    "curl_cffi.AsyncSession",
)
# A connector or transport handed in as a shared object (not built in the call): the
# client borrows a pool that outlives it.
_SHARED_POOL = frozenset({"connector", "transport", "http_client"})
# Calls that hold an HTTP connection open for as long as a session with a peer lasts (a
# websocket, a server-sent event stream): a client per such connection is not per request.
_LONG_LIVED = frozenset({"ws_connect", "websocket_connect", "aconnect_ws", "aconnect_sse"})
# Authentication and discovery run once per login, token lifetime or connection (an OAuth
# code exchange, device-flow polling, a token refresh or revocation, a JWKS or well-known
# metadata fetch, client registration), and a wait for a server to come up once at
# start-up. Checking a presented token (verify/validate/introspect_token) runs per
# request: not matched.
_ONCE_PER_LOGIN = re.compile(
    r"auth|login|logout|sign_?out|user_?info|jwks|discover|regist|well_known|wait_for"
    r"|(?:get|fetch|exchange|refresh|revoke|poll|request)\w*token|token\w*refresh",
    re.IGNORECASE,
)


@dataclass(slots=True)
class _Clients:
    # the clients each function being walked builds, and whether in a loop
    by_scope: dict[Scope, list[tuple[ast.Call, str, bool]]] = field(default_factory=dict)
    # the module's clients built per call: the call, its message, and whether the evidence
    # stands alone (built in a loop, or as the default of a client the caller may pass)
    per_call: list[tuple[ast.Call, str, bool]] = field(default_factory=list)
    # the functions those per-call clients are built in, and whether each is nested in another
    builders: list[tuple[Scope, str | None]] = field(default_factory=list)


def _http_client(m: ModuleModel, node: ast.Call, q: str) -> None:
    if not m.in_async or any(
        kw.arg in _SHARED_POOL and not isinstance(kw.value, ast.Call) for kw in node.keywords
    ):
        return
    _per_call_client(m, node, q)


def _per_call_client(m: ModuleModel, node: ast.Call, q: str) -> None:
    """Keep `node`, a call that builds a client, unless the function it is in runs once
    (start-up, login, a script or command line, an administrator's action, a throttled
    refresh) or stores the client on an object for the object's lifetime."""
    scope = m.scope
    if id(node) in m.lifetime or _silent_builder(m, node):
        return  # (self._session = ClientSession(): one per object)
    m.state(_Clients).by_scope.setdefault(scope, []).append((node, q, scope.loop_depth > 0))


def _silent_builder(m: ModuleModel, node: ast.Call) -> bool:
    """The function building a client runs once: start-up, login, a script or command
    line, an administrator's action, a throttled refresh."""
    scope = m.scope
    return bool(
        m.is_script
        or _STARTUP_NAME.search(scope.name)
        or _ONCE_PER_LOGIN.search(scope.name)
        or _login_provider(m)
        or m.in_cli
        or _admin_only(scope.node)
        or _throttled(m, scope.node, node)
    )


_OAUTH = re.compile(r"oauth", re.IGNORECASE)


# Checks of a presented token: run on every request, whatever class they are in.
_PER_REQUEST_CHECK = re.compile(r"verify|validate|introspect", re.IGNORECASE)


def _login_provider(m: ModuleModel) -> bool:
    """The function is a method of an OAuth client or provider class (its name or a base's
    names OAuth: ``GitHubOAuth2(BaseOAuth2)``, ``GitHubOAuthProvider(OAuthProvider)``), or
    a function of a module in an OAuth package: its token exchange and its profile, e-mail
    or group fetches run once per login. A check of a presented token
    (``validate_token``) runs per request and is not one."""
    if _PER_REQUEST_CHECK.search(m.scope.name):
        return False
    if m.classes:
        return any(_OAUTH.search(name) for name in (m.classes[-1].name, *m.classes[-1].bases))
    # a module of an OAuth package (``connection/oauth/providers.py``): its functions
    # exchange codes, refresh or revoke tokens and fetch profiles, once per login. Only
    # the module's own folder counts: a checkout under ``~/oauth-demo/`` is not one
    parts = m.path.replace("\\", "/").split("/")
    return len(parts) > 1 and _OAUTH.search(parts[-2]) is not None


_ADMIN = re.compile(r"admin", re.IGNORECASE)


def _admin_only(fn: ast.AST | None) -> bool:
    """An endpoint only an administrator may call (a parameter defaulted to
    ``Depends(get_admin_user)`` or ``Security(...)`` of an admin check): a management
    action, run by hand, not an operation under load."""
    if not isinstance(fn, ast.AsyncFunctionDef):
        return False
    defaults = [*fn.args.defaults, *(d for d in fn.args.kw_defaults if d is not None)]
    return any(
        isinstance(d, ast.Call)
        and callee_name(d) in ("Depends", "Security")
        and d.args
        and _ADMIN.search(dotted(d.args[0]) or "") is not None
        for d in defaults
    )


# Clocks: a difference of their readings is the time elapsed since a stored one.
_CLOCKS = frozenset(
    {
        "time.time",
        "time.monotonic",
        "datetime.datetime.now",
        "datetime.datetime.utcnow",
        "os.path.getmtime",
    }
)


def _throttled(m: ModuleModel, fn: ast.AST | None, node: ast.Call) -> bool:
    """The client is built under a check of the time elapsed since the last run (``if
    now - self._last_update < EXPIRY: return`` before it, or ``if time.time() -
    getmtime(cache) > 60:`` around it): a rate-limited refresh, not one per operation."""
    if fn is None:
        return False
    readings = {
        target.id
        for sub in ast.walk(fn)
        if isinstance(sub, ast.Assign) and _reads_clock(m, sub.value)
        for target in sub.targets
        if isinstance(target, ast.Name)
    }

    def elapsed(test: ast.expr) -> bool:
        return any(
            isinstance(sub, ast.BinOp)
            and isinstance(sub.op, ast.Sub)
            and any(
                _reads_clock(m, side) or (isinstance(side, ast.Name) and side.id in readings)
                for side in (sub.left, sub.right)
            )
            for sub in ast.walk(test)
        )

    end = node.end_lineno or node.lineno
    return any(
        isinstance(sub, ast.If)
        and (
            (sub.lineno <= node.lineno and end <= (sub.end_lineno or sub.lineno))
            or (
                (sub.end_lineno or sub.lineno) < node.lineno
                and isinstance(sub.body[-1], ast.Return)
            )
        )
        and elapsed(sub.test)
        for sub in ast.walk(fn)
    )


def _reads_clock(m: ModuleModel, value: ast.expr) -> bool:
    return isinstance(value, ast.Call) and m.qualname(value.func) in _CLOCKS


CALLS.update(dict.fromkeys(_HTTP_CLIENTS, _http_client))


def _one_shot_request(m: ModuleModel, node: ast.Call, q: str) -> None:
    """``async with aiohttp.request(method, url) as resp``: aiohttp opens a session of its
    own for the one request and closes it after: a new connection pool per call, whatever
    the response is bound to. The same silent functions as for a client built in place."""
    scope = m.scope
    if not m.in_async or _silent_builder(m, node):
        return
    where = "in a loop" if scope.loop_depth else f"in {scope.name}()"
    per = "item" if scope.loop_depth else "call"
    state = m.state(_Clients)
    message = f"{q}() {where}: a new HTTP session and connection pool per {per}"
    state.per_call.append((node, message, scope.loop_depth > 0))
    state.builders.append((scope, m.scopes[-2].name if len(m.scopes) > 2 else None))


CALLS.update(dict.fromkeys(("aiohttp.request", "aiohttp.client.request"), _one_shot_request))


# Sync and async SDK clients that each build a connection pool (and resolve credentials).
_SDK_CLIENTS = (
    "boto3.client",
    "boto3.resource",
    "openai.OpenAI",
    "openai.AsyncOpenAI",
    "openai.Client",
    "openai.AsyncClient",
    "anthropic.Anthropic",
    "anthropic.AsyncAnthropic",
    "sqlalchemy.create_engine",
    "sqlalchemy.ext.asyncio.create_async_engine",
    "weaviate.connect_to_weaviate_cloud",
    "weaviate.connect_to_local",
    "weaviate.connect_to_custom",
)
# The method an agent framework's tool runs once per tool call (LangChain's and CrewAI's
# BaseTool): whatever it builds and drops is built again on every call.
_TOOL_CALL = frozenset({"_run", "_arun"})


def _tool_client(m: ModuleModel, node: ast.Call, q: str) -> None:
    if m.scope.name in _TOOL_CALL and m.classes and id(node) not in m.lifetime:
        m.report(
            node,
            RULE.code,
            f"{q}() in {m.scope.name}(): a new client and connection pool per tool call",
        )


# LLM SDKs' async clients: each wraps an httpx.AsyncClient of its own (unless handed one),
# so one built per call is an HTTP client per call.
_ASYNC_SDK_CLIENTS = frozenset(
    {
        "openai.AsyncOpenAI",
        "openai.AsyncAzureOpenAI",
        "openai.AsyncClient",
        "anthropic.AsyncAnthropic",
    }
)


def _sdk_client(m: ModuleModel, node: ast.Call, q: str) -> None:
    if m.scope.name in _TOOL_CALL:
        _tool_client(m, node, q)
    elif q in _ASYNC_SDK_CLIENTS:
        _http_client(m, node, q)


CALLS.update(dict.fromkeys((*_SDK_CLIENTS, *_ASYNC_SDK_CLIENTS), _sdk_client))


@dataclass(slots=True)
class _Factories:
    # the module's functions, by id, and the clients each builds anew per call
    built: dict[int, tuple[str, ...]] = field(default_factory=dict)


def every_call(m: ModuleModel, node: ast.Call) -> None:
    """A call of the module's own client factory (``client = self.load_model()`` where
    ``load_model`` returns ``AsyncOpenAI(...)``, itself or through a builder it hands the
    client class to): a new client, and its connection pool, per operation."""
    fn = m.called_function(node.func)
    if fn is None or fn is m.scope.node:
        return
    built = _factory_builds(m, fn)
    if built:
        _per_call_client(m, node, f"{' or '.join(built)} from {dotted(node.func)}")


def _factory_builds(m: ModuleModel, fn: Function) -> tuple[str, ...]:
    """The clients the module's function `fn` may build anew on every call and return;
    none if it returns none (or keeps what it builds)."""
    cache = m.state(_Factories).built
    if id(fn) in cache:
        return cache[id(fn)]
    cache[id(fn)] = ()  # a factory that calls itself builds nothing more
    returns = returned_calls(fn)
    built: list[str] = []
    for call in returns:
        built.extend(w for w in _builds(m, fn, call) if w not in built)
    if built and (cached(fn) or _stores_on_object(fn) or _memoizes(m, returns)):
        built = []
    cache[id(fn)] = tuple(built)
    return cache[id(fn)]


def _stores_on_object(fn: Function) -> bool:
    """`fn` stores on the object in some branch (``if self._aclient is None:
    self._aclient = AsyncOpenAI()``): it keeps one client per object, even when an option
    (``reuse_client=False``) makes it return a fresh one; the default reuses it."""
    return any(
        isinstance(sub, ast.Assign | ast.AnnAssign | ast.AugAssign)
        and any(is_self_attr(t) for t in assign_targets(sub))
        for sub in ast.walk(fn)
    )


def _memoizes(m: ModuleModel, returns: list[ast.Call]) -> bool:
    """One of the calls a function returns the result of is what a helper keeps for it: a
    call handed a builder of a client (``return util.per_thread("session", lambda:
    requests.Session())``): one client per thread or key, even when an option makes the
    function build a fresh one."""
    return any(
        isinstance(arg, ast.Lambda)
        and any(
            (q := m.qualname(built.func)) is not None and pooled_client(q) is not None
            for built in candidate_calls(arg.body)
        )
        for call in returns
        for arg in (*call.args, *(kw.value for kw in call.keywords))
    )


def _builds(m: ModuleModel, fn: Function, call: ast.Call) -> list[str]:
    """The clients `call`, returned by `fn`, may build: a client class called
    (``AsyncOpenAI(...)``), another factory of the module, or a builder of the module that
    calls the client class it is handed (``self._build_client(AsyncOpenAI)``)."""
    q = m.qualname(call.func)
    if q is not None and not any(kw.arg in _SHARED_POOL for kw in call.keywords):
        what = pooled_client(q)
        if what is not None:
            return [what]
    builder = m.called_function(call.func)
    if builder is None or builder is fn:
        return []
    handed = [
        what
        for arg in (*call.args, *(kw.value for kw in call.keywords))
        for ref in ((arg.body, arg.orelse) if isinstance(arg, ast.IfExp) else (arg,))
        if isinstance(ref, ast.Name | ast.Attribute)
        and (named := m.qualname(ref)) is not None
        and (what := pooled_client(named)) is not None
    ]
    if handed and _calls_parameter(builder):
        return handed
    return list(_factory_builds(m, builder))


def _calls_parameter(fn: Function) -> bool:
    """`fn` returns the result of calling one of its parameters (``return cls(**kw)``)."""
    params = {a.arg for a in (*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs)}
    return any(
        isinstance(call.func, ast.Name) and call.func.id in params
        for value in own_returns(fn)
        for call in candidate_calls(value)
    )


def _http_clients_end(m: ModuleModel, scope: Scope) -> None:
    """Keep the clients `scope` builds and drops (closed or not) by the end of the call."""
    state = m.state(_Clients)
    clients = state.by_scope.pop(scope, None)
    fn = scope.node
    if clients is None or fn is None:
        return
    parents: dict[int, ast.AST] = {}
    stack: list[ast.AST] = [fn]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Call) and callee_name(node) in _LONG_LIVED:
            return
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, _NESTED):
                parents[id(child)] = node
                stack.append(child)
    for call, q, in_loop in clients:
        binding = _binding(call, parents)
        if binding is None:
            continue  # returned, passed on or stored: whoever gets it decides its lifetime
        name, defaulted = binding
        if name and _kept(fn, name):
            continue
        # session = passed_in if passed_in else ClientSession(): the default path
        defaulted = defaulted or any(
            call not in candidate_calls(value) for value in scope.assigned.get(name, ())
        )
        if in_loop:
            message = f"{q}() in a loop: a new HTTP connection pool per item"
        elif defaulted:
            message = (
                f"{q}() in {scope.name}() when no client is passed in: a new HTTP "
                "connection pool per call"
            )
        else:
            message = f"{q}() in {scope.name}(): a new HTTP connection pool per call"
        state.per_call.append((call, message, in_loop or defaulted))
        state.builders.append((scope, m.scopes[-2].name if len(m.scopes) > 2 else None))


_NESTED = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef


def _binding(call: ast.Call, parents: dict[int, ast.AST]) -> tuple[str, bool] | None:
    """The local name `call`'s client is bound to ("" for a temporary:
    ``ClientSession().get(url)``), and whether it is the default of an alternative
    (``session or ClientSession()``); None if it goes anywhere else."""
    child: ast.AST = call
    parent = parents.get(id(call))
    defaulted = False
    while isinstance(parent, ast.Await | ast.BoolOp | ast.IfExp):
        defaulted = defaulted or not isinstance(parent, ast.Await)
        child, parent = parent, parents.get(id(parent))
    if isinstance(parent, ast.withitem):
        target = parent.optional_vars
        return (target.id if isinstance(target, ast.Name) else "", defaulted)
    if isinstance(parent, ast.Assign) and len(parent.targets) == 1:
        target = parent.targets[0]
        return (target.id, defaulted) if isinstance(target, ast.Name) else None
    if isinstance(parent, ast.Attribute) and parent.value is child:
        return ("", defaulted)
    return None


def _kept(fn: ast.AST, name: str) -> bool:
    """The client `name` outlives the call: returned, yielded, stored on an object or in
    a container, or handed to a constructor or an exit stack."""
    for sub in ast.walk(fn):
        if isinstance(sub, ast.Return | ast.Yield) and _mentions(sub.value, name):
            return True
        if (
            isinstance(sub, ast.Assign)
            and _mentions(sub.value, name)
            and not all(isinstance(t, ast.Name) for t in sub.targets)
        ):
            return True
        if isinstance(sub, ast.Call):
            callee = callee_name(sub) or ""
            if (callee[:1].isupper() or callee in _TAKE_OVER) and any(
                _mentions(arg, name) for arg in (*sub.args, *(kw.value for kw in sub.keywords))
            ):
                return True
    return False


_TAKE_OVER = frozenset({"enter_async_context", "push_async_callback"})


def _mentions(node: ast.AST | None, name: str) -> bool:
    if isinstance(node, ast.Tuple | ast.List):
        return any(_mentions(e, name) for e in node.elts)
    return isinstance(node, ast.Name) and node.id == name


def _report_http_clients(m: ModuleModel) -> None:
    """A client per call is reported where the evidence stands alone (in a loop, or the
    default of an injectable client), or where the module builds one per call in two or
    more places: it has no shared client, so each of its operations pays a connection. A
    lone per-call client is more often a once-per-lifetime step (a price table fetched and
    cached, a call hung up at its end)."""
    state = m.state(_Clients)
    per_call = state.per_call
    if len(per_call) == 1 and not per_call[0][2] and _request_path(m, state.builders[0]):
        call, message, _ = per_call[0]
        m.report(call, RULE.code, message)  # the module's request path: every call pays
        return
    for call, message, alone in per_call:
        if alone or len(per_call) > 1:
            m.report(call, RULE.code, message)


# A method that makes one HTTP request for its caller (a requester's ``async_http_request``,
# a client's ``_request`` or ``send_request``): every operation goes through it.
_REQUEST_METHOD = re.compile(r"^_*(?:async_|a)?(?:http_|do_|make_|send_)?request$", re.IGNORECASE)


# The methods an agent framework calls once per model call, retrieval or tool call
# (LangChain's LLMs, chat models, retrievers and tools; LlamaIndex's LLMs and retrievers):
# whatever client they build and drop is built again on every operation.
_OPERATION_HOOKS = frozenset(
    {
        "_acall",
        "_agenerate",
        "_astream",
        "_aget_relevant_documents",
        "_arun",
        "_aretrieve",
        "acomplete",
        "achat",
        "astream_complete",
        "astream_chat",
    }
)


def _request_path(m: ModuleModel, builder: tuple[Scope, str | None]) -> bool:
    """The function that builds the lone client is the module's shared path for an
    operation, not a once-per-lifetime step: a web endpoint (``@routes.view("/proxy")``),
    or it is named as the request method itself
    (``async_http_request``, ``_request``), or is the attempt nested in one (``async def
    async_http_request(...): async def _make_request(): ...`` retried by tenacity), or two
    or more other functions of the module call it (``self.request(...)`` from ``get()``
    and ``post()``), it uses the client outside any loop (not one session for a batch or
    for its retries), keeps nothing on the object (not a fetch that fills a cache) and
    fetches no authentication or discovery address (``client.get(self._jwks_url)``: once
    per key rotation)."""
    scope, enclosing = builder
    fn, name = scope.node, scope.name
    if fn is None or (enclosing is not None and not _REQUEST_METHOD.match(enclosing)):
        return False  # a nested function: its name may be another's
    if _web_route(fn):
        return True  # a web endpoint: whatever it builds, it builds per request it serves
    for sub in ast.walk(fn):
        if isinstance(sub, ast.For | ast.AsyncFor | ast.While) or (
            isinstance(sub, ast.Assign | ast.AugAssign | ast.AnnAssign)
            and any(is_self_attr(t) for t in assign_targets(sub))
        ):
            return False
        if (
            isinstance(sub, ast.Call)
            and sub.args
            and isinstance(sub.func, ast.Attribute)
            and sub.func.attr in _REQUESTS
            and _ONCE_PER_LOGIN.search(ast.unparse(sub.args[0]))
        ):
            return False
    if enclosing is not None or _REQUEST_METHOD.match(name) or name in _OPERATION_HOOKS:
        return True  # the transport's own request method, or a framework's per-call hook
    callers = 0
    for caller, other in m.functions.items():
        if caller != name and any(
            isinstance(sub, ast.Call) and own_callee(sub.func) == name for sub in ast.walk(other)
        ):
            callers += 1
            if callers == 2:
                return True
    return False


_REQUESTS = frozenset({"get", "post", "put", "patch", "delete", "request", "stream"})
# Decorators that register a function as a web endpoint (``@routes.view(path)``,
# ``@app.get(path)``, ``@router.post(path)``): it runs once per request it serves.
_ROUTES = frozenset({"get", "post", "put", "patch", "delete", "view", "route", "api_route"})


def _web_route(fn: ast.AST) -> bool:
    """`fn` is registered as a web endpoint with a path (``@routes.view("/proxy/{id}")``)."""
    return isinstance(fn, ast.AsyncFunctionDef) and any(
        isinstance(d, ast.Call)
        and isinstance(d.func, ast.Attribute)
        and d.func.attr in _ROUTES
        and bool(d.args)
        and isinstance(d.args[0], ast.Constant)
        and isinstance(d.args[0].value, str)
        and d.args[0].value.startswith("/")
        for d in fn.decorator_list
    )


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


def function(m: ModuleModel, node: Function) -> None:
    """Tell the run what an async context manager enters before it yields: an MCP
    ``ClientSession`` (``""``), or other context managers of the run by name (a
    ``create_session`` that dispatches to ``_create_stdio_session``)."""
    if not isinstance(node, ast.AsyncFunctionDef) or not any(
        (dotted(d) or "").endswith("asynccontextmanager") for d in node.decorator_list
    ):
        return
    entered: set[str] = set()
    for block in ast.walk(node):
        if not isinstance(block, ast.AsyncWith) or not any(
            isinstance(sub, ast.Yield) for sub in ast.walk(block)
        ):
            continue
        for item in block.items:
            call = item.context_expr
            if isinstance(call, ast.Call):
                q = m.qualname(call.func)
                entered.add("" if q in _MCP_SESSIONS else callee_name(call) or "")
    entered.discard(node.name)
    if entered:
        m.facts.session_openers.setdefault(node.name, set()).update(entered)


def _opens_session(facts: ProjectFacts, name: str, seen: frozenset[str] = frozenset()) -> bool:
    """The run's async context manager `name` yields an MCP session it entered, directly
    or through another one."""
    entered = facts.session_openers.get(name, set())
    return "" in entered or any(
        callee not in seen and _opens_session(facts, callee, seen | {name})
        for callee in entered
        if callee
    )


_ONE_SESSION = (
    "a new MCP client session (for a stdio server, a new server process) for one "
    "operation: a connection per operation"
)


def module_end(m: ModuleModel) -> None:
    _report_http_clients(m)
    for call, function in m.state(_Sessions).single_use:
        if function is not None and any(isinstance(sub, ast.Yield) for sub in ast.walk(function)):
            continue  # a generator holds its session for its lifetime
        if m.qualname(call.func) in _MCP_SESSIONS:
            m.report(call, RULE.code, _ONE_SESSION)
            continue
        name = callee_name(call)
        if name:
            m.defer(call, RULE.code, _ONE_SESSION, partial(_opens_session, name=name))
