"""BND001: asyncio.gather/wait/as_completed over an input-sized collection, no bound in sight."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from bounded.audit.core import Rule
from bounded.audit.local_work import own_nodes
from bounded.audit.model import (
    TASK_FACTORIES,
    ClassScope,
    ModuleModel,
    ProjectFacts,
    Scope,
    callee_name,
    coroutine_call,
    is_pool_range,
    is_workerish,
)
from bounded.audit.names import assign_targets, dotted, is_self_attr, own_callee
from bounded.audit.rules.bnd011_injected_fan_out import RULE as INJECTED
from bounded.audit.rules.bnd015_unproven_fan_out import RULE as UNPROVEN

if TYPE_CHECKING:
    from bounded.audit.model import CallHook

RULE = Rule(
    "BND001",
    "unbounded-gather",
    "asyncio.gather/wait/as_completed over a collection whose size is not a constant, "
    "with no concurrency bound in sight.",
    "use `await bounded.gather(*aws, limit=N)` or `await bounded.map(fn, items, limit=N)`",
)
_GATHER_LIKE = {
    "asyncio.gather": "gather",
    "asyncio.wait": "wait",
    "asyncio.as_completed": "as_completed",
}
# Releasing N resources at once puts no load on a dependency: not a fan-out.
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
        # waiting for what already runs (children, events, tasks) adds no load either
        "wait",
        "join",
    }
)


# Notifying observers (callback handlers, listeners) is not a fan-out of work.
_OBSERVER_CALL = re.compile(r"^_?a?(on_|notify|emit|handle_event)", re.IGNORECASE)
# Collections fixed by the code or its configuration, not by the input: guardrails,
# strategies, handlers, steps, configured servers or deployments, and the tool calls of one
# model response (parallel tool calls, a handful by the model's choice).
_CONFIGURED = re.compile(
    r"guardrail|condition|strateg|handler|callback|listener|hook|middleware|plugin|step"
    r"|processor|pipeline|stage"
    r"|member|subscri|server|retriev|deployment|model_list|tool|function_call|fcc|approval",
    re.IGNORECASE,
)
# The parts of one message or one model response: a chat message's attachments, the UI
# elements of one update, a response's content or tool calls, the sub-questions one query
# is split into; the subgraphs of the program's own graph and the storages or backends of
# one instance. The producer (a chat platform, the model's output, the graph or instance
# definition) caps them at a handful.
_ONE_MESSAGE = re.compile(
    r"(?:^|[._])(?:attachments?|elements?|sub_?questions?|sub_?quer(?:y|ies)|sub_?graphs?"
    r"|subpregels?|storages|backends)$"
    r"|(?:response|completion|reply|message|msg)\.(?:content|parts|tool_calls|attachments"
    r"|files|choices)$",
    re.IGNORECASE,
)


# Awaited reads that return a listing (every key of a pattern, a sorted set's range, the
# rows of a query, a directory), not one record: their size is the stored data's.
_LISTING = re.compile(
    r"^_?a?(?:keys|scan\w*|[zl]range\w*|smembers|hkeys|hgetall|hvals|mget|list\w*|fetch\w*"
    r"|find\w*|query\w*|search\w*|select\w*|all\w*|get_all\w*|get_many|read_all\w*|execute"
    r"|iterdir|glob|rglob|listdir|scandir|walk)$",
    re.IGNORECASE,
)
# The listing reads whose name says "many" even where a helper returns them.
_ROWS = re.compile(
    r"^_?a?(?:keys|scan\w*|[zl]range\w*|smembers|hkeys|hvals|mget|list\w*"
    r"|(?:\w+_)?all(?:_\w+)?|\w+_many)$",
    re.IGNORECASE,
)
# Listings of one schema's parts (a collection's indexes, a table's columns or fields): the
# schema sizes them, not the data stored under it.
_SCHEMA_PARTS = re.compile(r"(?:^|_)(?:indexes|fields|columns)$", re.IGNORECASE)


def _capped(m: ModuleModel, read: ast.Call) -> bool:
    """The read caps its results: a limit keyword on the call (``query(q, top_k=20)``) or
    on the query object it is handed (``q = VectorRangeQuery(..., num_results=n)`` then
    ``query(q)``)."""
    if any(kw.arg in _RESULT_LIMITS for kw in read.keywords):
        return True
    return any(
        isinstance(built, ast.Call) and any(kw.arg in _RESULT_LIMITS for kw in built.keywords)
        for arg in read.args
        if isinstance(arg, ast.Name)
        for built in m.assignments(arg.id)
    )


# Keywords that cap how many results a read returns (a vector search's top_k, a page).
_RESULT_LIMITS = frozenset(
    {
        "top_k",
        "k",
        "limit",
        "n_results",
        "num_results",
        "max_results",
        "page_size",
        "per_page",
        "first",
        "size",
    }
)
_KEYED_LOOKUP = re.compile(r"^_?a?(?:get|read|load|fetch_one|find_one)(?:_|$)", re.IGNORECASE)
_LISTING_CALLS = frozenset({"os.listdir", "os.scandir", "os.walk", "glob.glob", "glob.iglob"})
_LISTING_METHODS = frozenset({"glob", "rglob", "iterdir", "readlines", "splitlines", "split"})
# Per-item work that stays in memory: a put on a local queue, a future's result.
_IN_MEMORY = frozenset({"put", "put_nowait", "set_result", "set_exception"})


@dataclass(slots=True)
class _Candidate:
    node: ast.Call
    which: str  # gather, wait or as_completed; create_task: one task per item of a loop
    callee: str | None  # the per-item coroutine's function or method name
    fixed: tuple[ClassScope, str] | None  # the class and self attribute iterated
    injected: str | None  # "" certainly injected, a name: unless the run defines it
    # the size is a computed range(n) or what a listing read returned, and the item is not
    # in-memory work
    strong: bool
    resolvable: bool  # the callee is a function or self method: the run may define it
    # or it does if a caller in the module passes data for a private function's parameter:
    # (function, position among its non-self parameters, parameter name)
    via: list[tuple[str, int, str]] = field(default_factory=list)
    # or if one of these awaited functions of the run returns a listing read's result
    reads: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _State:
    candidates: list[_Candidate] = field(default_factory=list)


def _check(m: ModuleModel, node: ast.Call, q: str) -> None:
    which = _GATHER_LIKE[q]
    if which == "gather":
        exprs = [a.value for a in node.args if isinstance(a, ast.Starred)]
    else:
        exprs = node.args[:1]
        for kw in node.keywords:
            if kw.arg in ("fs", "aws"):
                exprs = [kw.value]
    if which == "as_completed" and _first_success_race(m, node):
        return
    for expr in exprs:
        if isinstance(expr, ast.Name) and any(expr.id in s.cancelled for s in m.scopes):
            continue  # awaiting tasks just cancelled: teardown, not fan-out
        if isinstance(expr, ast.Name) and _gathered_in_batches(m, node, expr.id):
            continue
        element = _unbounded_element(m, expr)
        if element is None or _passes_limiter(m, element):
            continue
        if _wraps_running(m, element):
            continue  # shield(fut) of futures already started: this call starts nothing
        call = coroutine_call(m, element)
        callee = callee_name(call)
        if callee == "run_in_executor" or _executor_bound(m, callee):
            continue  # the executor's worker count bounds it
        via: list[tuple[str, int, str]] = []
        in_memory = callee in _IN_MEMORY or _hands_in(m, call)
        sources = _sources(m, expr)
        for it in sources:
            _data_sized(m, it, via=via)  # a private helper's parameters a caller may feed
        reads: list[str] = []
        strong = not in_memory and any(
            _data_sized(m, it, params=False, helpers=reads) for it in sources
        )
        resolvable = isinstance(call.func, ast.Name) or is_self_attr(call.func)
        m.state(_State).candidates.append(
            _Candidate(
                node,
                which,
                callee,
                _self_collection(m, expr),
                _injected(m, call),
                strong,
                resolvable,
                [] if in_memory else via,
                reads,  # empty when in memory: the any() above did not run
            )
        )
        return


def _first_success_race(m: ModuleModel, node: ast.Call) -> bool:
    """``for attempt in as_completed(tasks): try: return await attempt``: the loop returns
    the first result that succeeds, a race between alternatives (fallback addresses, hedged
    requests), not work done for every item."""
    for loop in ast.walk(m.scope.node or node):
        if not (
            isinstance(loop, ast.For) and loop.iter is node and isinstance(loop.target, ast.Name)
        ):
            continue
        name = loop.target.id
        return any(
            isinstance(sub, ast.Return)
            and isinstance(sub.value, ast.Await)
            and isinstance(sub.value.value, ast.Name)
            and sub.value.value.id == name
            for sub in own_nodes(loop.body)
        )
    return False


def _gathered_in_batches(m: ModuleModel, node: ast.Call, name: str) -> bool:
    """``for c in chunks: tasks.append(...); if len(tasks) >= 128: await gather(*tasks);
    tasks = []``: the loop gathers each batch once it reaches a size the code sets."""
    if not m.loops or m.loops[-1][1] is not m.scope:
        return False
    for sub in ast.walk(m.loops[-1][0]):
        if (
            isinstance(sub, ast.If)
            and _measures(sub.test, name)
            and any(inner is node for stmt in sub.body for inner in ast.walk(stmt))
        ):
            return True
    return False


def _measures(test: ast.expr, name: str) -> bool:
    """``len(name) == N`` / ``>= N`` / ``> N`` with N a literal or a named size."""
    return (
        isinstance(test, ast.Compare)
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq | ast.GtE | ast.Gt)
        and isinstance(test.comparators[0], ast.Constant | ast.Name | ast.Attribute)
        and isinstance(test.left, ast.Call)
        and isinstance(test.left.func, ast.Name)
        and test.left.func.id == "len"
        and len(test.left.args) == 1
        and isinstance(test.left.args[0], ast.Name)
        and test.left.args[0].id == name
    )


def every_call(m: ModuleModel, node: ast.Call) -> None:
    """Note which arguments of a call to a private function are data (for any module)."""
    func = node.func
    name = (
        func.id
        if isinstance(func, ast.Name)
        else func.attr
        if isinstance(func, ast.Attribute) and is_self_attr(func)
        else ""
    )
    if not name.startswith("_") or name.startswith("__") or not m.scopes[-1].is_async:
        return
    found = m.facts.fed.setdefault(name, set())
    for i, arg in enumerate(node.args):
        if not isinstance(arg, ast.Starred) and _data_sized(m, arg, params=False):
            found.add(i)
    for kw in node.keywords:
        if kw.arg is not None and _data_sized(m, kw.value, params=False):
            found.add(kw.arg)


CALLS: dict[str, CallHook] = dict.fromkeys(_GATHER_LIKE, _check)


def dropped_call(m: ModuleModel, call: ast.Call, statement: ast.stmt | None) -> None:
    """A task started per item of a loop over what a listing read returned (the rows of a
    query), dropped or kept only in a set on ``self`` or the module: nothing gathers it, so
    nothing bounds how many run at once (a gather of a local list is checked at the gather)."""
    if statement is None or not m.loops:
        return
    spawn = call
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr in ("add", "append") and call.args:
        kept = func.value
        if not (
            is_self_attr(kept)
            or (isinstance(kept, ast.Name) and not any(kept.id in s.assigned for s in m.scopes[1:]))
        ):
            return  # a local collection: gathered or not, the gather is checked
        if not isinstance(call.args[0], ast.Call):
            return
        spawn = call.args[0]
    if m.qualname(spawn.func) not in TASK_FACTORIES:
        return
    loop, loop_scope, _ = m.loops[-1]
    if loop_scope is not m.scope or isinstance(loop, ast.While) or m.scope.guarded_loops:
        return
    reads: list[str] = []
    strong = _data_sized(m, loop.iter, params=False, helpers=reads)
    if not (strong or reads):
        return
    coro = coroutine_call(m, spawn)
    m.state(_State).candidates.append(
        _Candidate(
            spawn,
            "create_task",
            callee_name(coro),
            None,
            None,
            strong,
            isinstance(coro.func, ast.Name) or is_self_attr(coro.func),
            [],
            reads,
        )
    )


def _unbounded_element(m: ModuleModel, expr: ast.expr) -> ast.Call | None:
    """The coroutine-making call of a non-constant-size collection, if unbounded."""
    if isinstance(expr, ast.ListComp | ast.GeneratorExp | ast.SetComp | ast.DictComp):
        elt = expr.value if isinstance(expr, ast.DictComp) else expr.elt
        workers = is_workerish(m, elt)
        if all(
            m.constant_size(g.iter)
            or (workers and is_pool_range(g.iter))
            or _fixed_by_code(m, g.iter)
            for g in expr.generators
        ):
            return None
        return elt if isinstance(elt, ast.Call) else None
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute):
        if expr.func.attr == "values" and not expr.args:
            return _unbounded_element(m, expr.func.value)  # asyncio.wait(tasks.values())
        return None
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
        if expr.func.id == "map" and len(expr.args) == 2:
            if m.constant_size(expr.args[1]):
                return None
            return ast.Call(func=expr.args[0], args=[], keywords=[])
        return None
    if isinstance(expr, ast.Name):
        for scope in reversed(m.scopes):
            entry = scope.collections.get(expr.id)
            if entry is not None:
                value, guarded, source = entry
                if guarded or (source is not None and _fixed_by_code(m, source)):
                    return None
                if isinstance(value, ast.Call):
                    return value
                return _unbounded_element(m, value)
        return None
    if isinstance(expr, ast.List | ast.Tuple):
        for elt in expr.elts:
            if isinstance(elt, ast.Starred):
                found = _unbounded_element(m, elt.value)
                if found is not None:
                    return found
    return None


def _sources(m: ModuleModel, expr: ast.expr, depth: int = 0) -> list[ast.expr]:
    """The iterables a gathered collection is built over (its comprehension's, its
    building loop's, ``map``'s)."""
    if depth > 4:
        return []
    if isinstance(expr, ast.ListComp | ast.GeneratorExp | ast.SetComp | ast.DictComp):
        return [g.iter for g in expr.generators]
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute):
        if expr.func.attr == "values" and not expr.args:
            return _sources(m, expr.func.value, depth + 1)
        return []
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
        return [expr.args[1]] if expr.func.id == "map" and len(expr.args) == 2 else []
    if isinstance(expr, ast.Name):
        for scope in reversed(m.scopes):
            entry = scope.collections.get(expr.id)
            if entry is not None:
                value, _, source = entry
                if source is not None:
                    return [source]
                return _sources(m, value, depth + 1)
        return []
    if isinstance(expr, ast.List | ast.Tuple):
        return [
            it
            for elt in expr.elts
            if isinstance(elt, ast.Starred)
            for it in _sources(m, elt.value, depth + 1)
        ]
    return []


def _data_sized(
    m: ModuleModel,
    node: ast.expr,
    depth: int = 0,
    via: list[tuple[str, int, str]] | None = None,
    params: bool = True,
    helpers: list[str] | None = None,
) -> bool:
    """Positive evidence that `node`'s size comes from data, not code: a parameter (the
    caller's list), ``range(n)`` of a computed ``n``, an awaited listing read (keys, rows,
    a scan), a directory listing, or what is derived from those. A collection on ``self``,
    an attribute of a parameter (the parts of one object) or a lookup keyed by one id is
    not such evidence. A private function's parameter is data if a caller in the module
    passes data for it: `via` collects those parameters, settled at the module's end.
    Without `params`, only the strongest evidence counts (a computed ``range(n)`` or what
    a listing read returned): a parameter is not followed, unless the body replaces it.
    `helpers` collects the awaited functions of the run whose result would be data if they
    return a listing read's result (settled at the end of the run)."""
    if depth > 10:  # a listing read's rows through a helper's return, a gather and two names
        return False
    if isinstance(node, ast.Await):
        value = node.value
        if not isinstance(value, ast.Call):
            return False
        # a listing read, or an awaited transformation of data (``await serialize(records)``);
        # a keyed lookup (``get_info(task_id)``) reads the parts of one record
        name = callee_name(value) or ""
        if _SCHEMA_PARTS.search(name):
            return False  # await client.list_indexes(collection): one schema's parts
        if helpers is not None and _own(value):
            helpers.append(name)  # the project's own read: a listing if its body says so
        if _capped(m, value):
            return False  # query(q, top_k=20): at most the limit the call asks for
        if isinstance(value.func, ast.Attribute) and _package_files(m, value.func.value):
            return False  # async for f in Path(__file__).parent.rglob("*"): shipped files
        if _LISTING.match(name):
            return True
        return not _KEYED_LOOKUP.match(name) and any(
            _data_sized(m, a, depth + 1, via, params, helpers) for a in value.args
        )
    if isinstance(node, ast.Starred):
        return _data_sized(m, node.value, depth + 1, via, params, helpers)
    if isinstance(node, ast.Call):
        func = node.func
        if m.qualname(func) in _LISTING_CALLS:
            return True
        if isinstance(func, ast.Name) and func.id == "range":
            # a stepped range counts batches the code sized (``range(0, len(xs), size)``);
            # ``range(self.num_samples)`` counts what the object was configured with
            return (
                len(node.args) < 3
                and not _window_walked(m, node.args)
                and not all(
                    m.constant_int(a)
                    or _set_at_construction(m, a)
                    or _configured(m, a)
                    or _batch_count(m, a)
                    or _refused_past_limit(m, a)
                    for a in node.args
                )
            )
        if isinstance(func, ast.Attribute):
            if func.attr in _LISTING_METHODS:
                return not _package_files(m, func.value)
            if func.attr in ("values", "items", "keys", "copy") and not node.args:
                return _data_sized(m, func.value, depth + 1, via, params, helpers)
        # a transformation of data (chunks of the caller's text, a progress wrapper)
        return any(_data_sized(m, a, depth + 1, via, params, helpers) for a in node.args)
    if isinstance(node, ast.Name):
        if node.id in ("self", "cls"):
            return False
        if any(node.id in s.params for s in m.scopes):
            if params and _entry_point_param(m, node.id, via):
                return True
            # a parameter the body replaces (``if not names: names = await list_names()``)
            owner = next(s for s in reversed(m.scopes) if node.id in s.params)
            return any(
                _data_sized(m, v, depth + 1, via, params, helpers)
                for v in owner.assigned.get(node.id, ())
            )
        return any(
            _data_sized(m, v, depth + 1, via, params, helpers) for v in m.assignments(node.id)
        )
    if isinstance(node, ast.Attribute | ast.Subscript):
        base = node.value
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
            return False
        if _field_name(node) in _LISTED_FIELDS and _awaited_reply(m, base):
            return True  # (await disco.get_items(jid))["items"]: the peer's listing
        return (
            isinstance(base, ast.Name)
            and not any(base.id in s.params for s in m.scopes)
            and _data_sized(m, base, depth + 1, via, params, helpers)
        ) or (
            isinstance(base, ast.Await | ast.Call)
            and _data_sized(m, base, depth + 1, via, params, helpers)
        )
    if isinstance(node, ast.ListComp | ast.GeneratorExp | ast.SetComp):
        return any(_data_sized(m, g.iter, depth + 1, via, params, helpers) for g in node.generators)
    if isinstance(node, ast.BinOp):
        return _data_sized(m, node.left, depth + 1, via, params, helpers) or _data_sized(
            m, node.right, depth + 1, via, params
        )
    if isinstance(node, ast.BoolOp):
        return any(_data_sized(m, v, depth + 1, via, params, helpers) for v in node.values)
    if isinstance(node, ast.IfExp):
        return _data_sized(m, node.body, depth + 1, via, params, helpers) or _data_sized(
            m, node.orelse, depth + 1, via, params
        )
    return False


_LIMIT = re.compile(r"max|limit|cap", re.IGNORECASE)


def _refused_past_limit(m: ModuleModel, node: ast.expr) -> bool:
    """A count the function refuses past a configured maximum (``if self._pool_size + n >
    self.maxsize: raise PoolError(...)``): at most that many, whoever asks."""
    fn = m.scope.node
    if not isinstance(node, ast.Name) or fn is None:
        return False
    return any(
        isinstance(sub, ast.If)
        and isinstance(sub.body[-1], ast.Raise | ast.Return)
        and any(
            isinstance(test, ast.Compare)
            and isinstance(test.ops[0], ast.Gt | ast.GtE)
            and any(isinstance(n, ast.Name) and n.id == node.id for n in ast.walk(test.left))
            and any(
                _LIMIT.search(dotted(x) or "")
                for x in ast.walk(test.comparators[0])
                if isinstance(x, ast.Name | ast.Attribute)
            )
            for test in ast.walk(sub.test)
        )
        for sub in ast.walk(fn)
    )


def _window_walked(m: ModuleModel, bounds: list[ast.expr]) -> bool:
    """``for start, stop in zip(edges, edges[1:]): gather(*[... for i in range(start,
    stop)])``: both bounds are what an enclosing loop walks, so each round gathers one
    window and the windows run one after another."""
    names = {b.id for b in bounds if isinstance(b, ast.Name)}
    return len(bounds) == 2 == len(names) and any(
        isinstance(loop, ast.For | ast.AsyncFor)
        and isinstance(loop.target, ast.Tuple)
        and names <= {t.id for t in loop.target.elts if isinstance(t, ast.Name)}
        for loop, _, _ in m.loops
    )


def _batch_count(m: ModuleModel, node: ast.expr, depth: int = 0) -> bool:
    """``math.ceil(n / size)`` or ``n // size``, directly or through a name assigned only
    that: how many batches of a size the code sets, one per item of the fan-out."""
    if isinstance(node, ast.Call) and m.qualname(node.func) == "math.ceil" and node.args:
        node = node.args[0]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div | ast.FloorDiv):
        return True
    if isinstance(node, ast.Name) and depth < 3:
        values = m.assignments(node.id)
        return bool(values) and all(_batch_count(m, v, depth + 1) for v in values)
    return False


def _set_at_construction(m: ModuleModel, node: ast.expr) -> bool:
    """``self.num_samples`` that the class assigns only in ``__init__``: a setting fixed
    when the object is built, not a size read from the input."""
    if not (is_self_attr(node) and m.classes):
        return False
    attr = cast(ast.Attribute, node).attr
    assigned_in_init = False
    for fn in m.classes[-1].node.body:
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for sub in ast.walk(fn):
            if not isinstance(sub, ast.Assign | ast.AugAssign | ast.AnnAssign):
                continue
            targets = assign_targets(sub)
            if any(is_self_attr(t) and cast(ast.Attribute, t).attr == attr for t in targets):
                if fn.name != "__init__":
                    return False
                assigned_in_init = True
    return assigned_in_init


def _package_files(m: ModuleModel, node: ast.expr, depth: int = 0) -> bool:
    """A folder of the package's own files (``Path(__file__).parent / "pictures"``, also
    through names): what it lists ships with the code, it is not the input."""
    if depth > 4:
        return False
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            if sub.id == "__file__":
                return True
            values = m.assignments(sub.id)
            if values and all(_package_files(m, v, depth + 1) for v in values):
                return True
    return False


_ENVIRONMENT = frozenset({"os.environ.get", "os.getenv"})


def _configured(m: ModuleModel, node: ast.expr, depth: int = 0) -> bool:
    """A count the operator sets, not the input: read from the environment
    (``int(os.environ.get("SAMPLES", "3"))``), through module names and ``int``/``max``/
    ``min`` of it and literals (``range(max(SAMPLES, 1))``)."""
    if depth > 4:
        return False
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int | str)
    if isinstance(node, ast.Subscript):
        return m.qualname(node.value) == "os.environ"
    if isinstance(node, ast.Name):
        values = m.assignments(node.id)
        return bool(values) and all(_configured(m, v, depth + 1) for v in values)
    if not isinstance(node, ast.Call):
        return False
    if m.qualname(node.func) in _ENVIRONMENT:
        return True
    return (
        isinstance(node.func, ast.Name)
        and node.func.id in ("int", "max", "min")
        and bool(node.args)
        and all(_configured(m, a, depth + 1) for a in node.args)
        and any(not isinstance(a, ast.Constant) for a in node.args)
    )


# A reply's field that holds the listing a request asked for (disco#items, a page of rows).
_LISTED_FIELDS = frozenset({"items", "rows", "results", "records", "entries"})


def _field_name(node: ast.Attribute | ast.Subscript) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    key = node.slice
    return key.value if isinstance(key, ast.Constant) and isinstance(key.value, str) else None


def _awaited_reply(m: ModuleModel, node: ast.expr) -> bool:
    """`node` is (a part of) what an awaited request returned in this function: ``await
    x.get_items(...)``, or a local name bound to it, through keys and attributes."""
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    if isinstance(node, ast.Name) and not any(node.id in s.params for s in m.scopes):
        values = m.assignments(node.id)
        return bool(values) and all(
            isinstance(v, ast.Await) and isinstance(v.value, ast.Call) for v in values
        )
    return isinstance(node, ast.Await) and isinstance(node.value, ast.Call)


def scope_end(m: ModuleModel, scope: Scope) -> None:
    """Tell the run whether this coroutine returns what a listing read returned (rows it
    awaited, or what it computed from them), here or through another such function."""
    if not scope.is_async or not scope.returned:
        return
    reads: list[str] = []
    direct = False
    for value in scope.returned:
        # the run's coroutines whose results it returns (their bodies decide, not their
        # names: a `_find_config_file()` of the project returns one file)
        _data_sized(m, value, params=False, helpers=reads)
        direct = direct or _rows_read(m, value)
    if direct or reads:
        m.facts.listings.setdefault(scope.name, set()).update([""] if direct else reads)


def _own(call: ast.Call) -> bool:
    """A call of a function or ``self``/``cls`` method the run may define."""
    return own_callee(call.func) is not None


def _rows_read(m: ModuleModel, value: ast.expr) -> bool:
    """What an awaited read of another object that is a listing by its name returned
    (``return await conn.fetch_all(sql)``, directly or through a name), or a comprehension
    over rows it awaited (``[r["name"] for r in await query.run()]``). A bare ``find`` or
    ``fetch`` is not enough here (``RobotsTxtFile.find(url)`` returns one file)."""
    values = m.assignments(value.id) if isinstance(value, ast.Name) else [value]
    for v in values:
        if isinstance(v, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp) and any(
            g.is_async or isinstance(g.iter, ast.Await) for g in v.generators
        ):
            return True
        call = v.value if isinstance(v, ast.Await) else None
        if not isinstance(call, ast.Call) or _own(call):
            continue
        name = callee_name(call) or ""
        if _ROWS.match(name) and not _SCHEMA_PARTS.search(name):
            return True
    return False


def _entry_point_param(m: ModuleModel, name: str, via: list[tuple[str, int, str]] | None) -> bool:
    """`name` is a parameter of a public function or method not nested in another: the
    caller's data. A nested function's parameter (a tool handed to a model, a local
    helper) is sized by the code around it; a private function's is noted in `via`."""
    functions = [s for s in m.scopes if isinstance(s.node, ast.FunctionDef | ast.AsyncFunctionDef)]
    if not functions or name not in functions[0].params:
        return False
    if any(name in s.params for s in functions[1:]):
        return False
    owner = functions[0]
    if not owner.name.startswith("_") or owner.name.startswith("__"):
        return True
    if via is not None:
        fn = cast(ast.FunctionDef, owner.node)
        positional = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args)]
        if positional and positional[0] in ("self", "cls"):
            positional = positional[1:]
        position = positional.index(name) if name in positional else -1
        via.append((owner.name, position, name))
    return False


def _hands_in(m: ModuleModel, call: ast.Call) -> bool:
    """``ensure_future(aw)`` of an awaitable handed in: it wraps work the caller made."""
    func = call.func
    q = m.qualname(func)
    return (
        q in TASK_FACTORIES
        or (isinstance(func, ast.Attribute) and func.attr in ("create_task", "ensure_future"))
    ) and not (call.args and isinstance(call.args[0], ast.Call))


def _wraps_running(m: ModuleModel, element: ast.Call) -> bool:
    """``asyncio.shield(fut)`` over futures the code was handed, already running (the
    gather adds a wait, not work)."""
    return (
        m.qualname(element.func) == "asyncio.shield"
        and bool(element.args)
        and isinstance(element.args[0], ast.Name | ast.Attribute | ast.Subscript)
    )


# Awaitables that run on an executor's threads (the default one for DNS and to_thread).
_ON_EXECUTOR = frozenset({"run_in_executor", "getaddrinfo", "getnameinfo", "to_thread"})


def _executor_bound(m: ModuleModel, callee: str | None) -> bool:
    """The callee (a function of this module, or one nested where the fan-out is) awaits
    only work on an executor (``loop.getaddrinfo``, ``asyncio.to_thread``): its workers
    bound the fan-out."""
    fn = m.function_named(callee) if callee is not None else None
    if not isinstance(fn, ast.AsyncFunctionDef):
        return False
    awaited = [sub.value for sub in ast.walk(fn) if isinstance(sub, ast.Await)]
    for value in awaited:
        if (
            isinstance(value, ast.Call)
            and m.qualname(value.func) == "asyncio.wait_for"
            and value.args
        ):
            value = value.args[0]
        if not isinstance(value, ast.Call) or callee_name(value) not in _ON_EXECUTOR:
            return False
    return bool(awaited)


def _injected(m: ModuleModel, call: ast.Call) -> str | None:
    """Whether `call` runs a callable the code was handed rather than one it defines.

    ``""`` for a parameter (``fn(item)``), the attribute name for ``self.attr(item)`` that
    this module defines no method for (injected unless another module of the run defines
    it), None for a function or method the code names.
    """
    return _injected_callable(m, call.func)


def _injected_callable(m: ModuleModel, func: ast.expr, depth: int = 0) -> str | None:
    if isinstance(func, ast.Name):
        name = func.id
        if name in ("self", "cls"):
            return None
        if any(name in scope.params for scope in m.scopes):
            return ""
        # a local alias (``embed = self.embedding_func``) of an injected callable
        values = m.assignments(name) if depth < 3 else []
        found = [_injected_callable(m, v, depth + 1) for v in values]
        return found[0] if found and all(f is not None for f in found) else None
    if (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id in ("self", "cls")
        and func.attr not in m.functions
    ):
        return func.attr
    return None


def _fixed_by_code(m: ModuleModel, iterable: ast.expr) -> bool:
    """An iterable whose size the code or its producer fixes, not the input.

    Named like a configured collection (``self._guardrails``, ``handlers``) or like the
    parts of one message (``attachments``, ``response.content``), or a parameter
    defaulted to a literal (``domains = domains or ["Page", "DOM"]``).
    """
    while isinstance(iterable, ast.Call):  # enumerate(x), x.values(), list(x)
        if isinstance(iterable.func, ast.Attribute) and not iterable.args:
            iterable = iterable.func.value
        elif iterable.args:
            iterable = iterable.args[0]
        else:
            return False
    if _a_slice(iterable) or (
        isinstance(iterable, ast.Name)
        and (values := m.assignments(iterable.id))
        and all(_a_slice(v) for v in values)
    ):
        return True  # keys[i : i + batch]: the slice bounds the batch
    name = dotted(iterable) or ""
    if _CONFIGURED.search(name) or _ONE_MESSAGE.search(name):
        return True
    return isinstance(iterable, ast.Name) and (
        _defaulted_to_literal(m, iterable.id) or _constant_keys(m, iterable.id)
    )


def _a_slice(node: ast.expr) -> bool:
    """``xs[a:b]`` with an upper bound."""
    return (
        isinstance(node, ast.Subscript)
        and isinstance(node.slice, ast.Slice)
        and node.slice.upper is not None
    )


def _constant_keys(m: ModuleModel, name: str) -> bool:
    """A dict filled only under literal keys (``tasks["feed"] = ...``): a small fixed fan-out."""
    values = m.assignments(name)
    if not values or not all(
        isinstance(v, ast.Dict) and all(isinstance(k, ast.Constant) for k in v.keys) for v in values
    ):
        return False
    scope = m.scopes[-1].node
    for node in ast.walk(scope) if scope is not None else ():
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
            if dotted(node.value) == name and not isinstance(node.slice, ast.Constant):
                return False
        elif isinstance(node, ast.Attribute) and dotted(node.value) == name:
            if node.attr in ("update", "setdefault", "__setitem__", "__ior__"):
                return False
        elif isinstance(node, ast.AugAssign) and dotted(node.target) == name:
            return False  # tasks |= other
    return True


def _defaulted_to_literal(m: ModuleModel, name: str) -> bool:
    """Every assignment of `name` is ``name or [<items>]``: the literal is the expected set."""
    values = m.assignments(name)
    return bool(values) and all(
        isinstance(v, ast.BoolOp)
        and isinstance(v.op, ast.Or)
        and len(v.values) == 2
        and isinstance(v.values[0], ast.Name)
        and v.values[0].id == name
        and _a_literal_set(m, v.values[1])
        for v in values
    )


def _a_literal_set(m: ModuleModel, node: ast.expr) -> bool:
    """A non-empty literal collection, or a name bound only to constant-size values."""
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return bool(node.elts) and m.constant_size(node)
    return isinstance(node, ast.Name) and m.constant_size(node)


def _passes_limiter(m: ModuleModel, call: ast.Call) -> bool:
    """``fetch(u, sem)`` / ``fetch(u, limiter=bh)``: the callee is handed its bound."""
    inner = call.args[0] if call.args and isinstance(call.args[0], ast.Call) else call
    values = [*inner.args, *(kw.value for kw in inner.keywords)]
    return any(isinstance(v, ast.Name | ast.Attribute) and m.is_semish(v) for v in values)


def _self_collection(m: ModuleModel, expr: ast.expr) -> tuple[ClassScope, str] | None:
    """The class and attribute when `expr` iterates only over ``self.attr``."""
    if isinstance(expr, ast.Name):  # steps = [s.run() for s in self.steps]; gather(*steps)
        for scope in reversed(m.scopes):
            entry = scope.collections.get(expr.id)
            if entry is not None:
                expr = entry[0]
                break
    if not isinstance(expr, ast.ListComp | ast.GeneratorExp | ast.SetComp) or not m.classes:
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
        if is_self_attr(it):
            attrs.add(dotted(it))
        elif not m.constant_size(it):
            return None
    if len(attrs) != 1:
        return None
    return m.classes[-1], (attrs.pop() or "")[5:]


def _reaches_guarded(m: ModuleModel, callee: str, line: int) -> bool:
    """The per-item function holds a semaphore, or only delegates to one that does: each
    function on the way awaits one thing, a call of the module's own functions or of the
    methods of its class's family (bases and subclasses, an override included), or a
    call it hands a guarded function to: ``add_user`` -> ``add_route`` -> ``api_request``
    -> ``exponential_backoff(attempt)``, whose ``attempt`` holds ``self.semaphore``. A
    function that also awaits other I/O is not bounded by the semaphore of one of them."""
    if callee in m.guarded:
        return True
    owner = next((n for n, a, b in m.class_spans if a <= line <= b), "")
    family = {"", *_family(m, owner)} if owner else {""}
    seen: set[str] = set()
    todo = [callee]
    while todo and len(seen) < 20:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for cls, fn in m.definitions.get(name, ()):
            if cls not in family:
                continue
            awaited = [
                sub.value
                for sub in own_nodes(fn.body)
                if isinstance(sub, ast.Await) and isinstance(sub.value, ast.Call)
            ]
            if len(awaited) != 1:
                continue  # no I/O of its own to bound, or more than the one delegated
            call = awaited[0]
            if any(
                isinstance(arg, ast.Name) and arg.id in m.guarded
                for arg in (*call.args, *(kw.value for kw in call.keywords))
            ):
                return True  # hands on a guarded function (an attempt to retry)
            target = own_callee(call.func)
            if target is not None:
                if target in m.guarded:
                    return True
                todo.append(target)
    return False


def _family(m: ModuleModel, cls: str) -> set[str]:
    """`cls` with its bases and its subclasses among the module's classes: what
    ``self.name()`` in its methods may run (a sibling's override may not)."""
    family = {cls}
    up = [cls]
    while up:  # the bases, transitively
        for base in m.class_bases.get(up.pop(), ()):
            if base in m.class_bases and base not in family:
                family.add(base)
                up.append(base)
    down = {cls}
    grew = True
    while grew:  # the subclasses, transitively
        grew = False
        for name, bases in m.class_bases.items():
            if name not in down and down & set(bases):
                down.add(name)
                grew = True
    return family | down


def module_end(m: ModuleModel) -> None:
    for c in m.state(_State).candidates:
        node, which, callee, fixed, injected = c.node, c.which, c.callee, c.fixed, c.injected
        if callee is not None and (
            _reaches_guarded(m, callee, node.lineno)
            or callee in _TEARDOWN
            or _OBSERVER_CALL.match(callee)
            or _CONFIGURED.search(callee)
        ):
            continue
        if fixed is not None and fixed[1] not in fixed[0].grown:
            continue  # self._conditions: a collection fixed when the object was built
        message = (
            f"asyncio.{which}() over a collection of unknown size: every item runs at once "
            "(no bound in sight)"
        )
        weak = (
            f"asyncio.{which}() over a collection of unknown size: no bound in sight, but no "
            "evidence that the size comes from data or that each item does I/O"
        )
        if which == "create_task":
            spawned = (
                "a task per item of a listing read (rows of a query), started in a loop and "
                "never gathered: every item runs at once (no bound in sight)"
            )
            m.defer(node, RULE.code, spawned, _keep(c, None, evidence=True))
            continue
        if injected is not None and callee is not None:
            injected_message = (
                f"asyncio.{which}() over a collection of unknown size through an injected "
                f"callable ({callee}): no bound in sight here, one may be applied where it is "
                "built"
            )
            m.defer(node, INJECTED.code, injected_message, _keep(c, injected, defined=False))
            if not injected:
                continue
        # the callee may hold a semaphore, only compute, or be fed data in another module
        m.defer(node, RULE.code, message, _keep(c, injected, evidence=True))
        m.defer(node, UNPROVEN.code, weak, _keep(c, injected, evidence=False))


def _keep(
    c: _Candidate, method: str | None, *, defined: bool = True, evidence: bool | None = None
) -> Callable[[ProjectFacts], bool]:
    """Keep the finding unless the callee holds a semaphore; with `method`, only if the run
    defines (or, for BND011, does not define) a function of that name. With `evidence`,
    only if the run gives (BND001) or does not give (BND015) evidence of both halves: a
    data-sized collection (here, or a caller feeding a private helper's parameter) and a
    callee that awaits in some definition (not a coroutine that only computes)."""
    computes = c.callee if c.resolvable else None

    def keep(facts: ProjectFacts) -> bool:
        if c.callee is not None and c.callee in facts.guarded:
            return False
        if method and (method in facts.defined) != defined:
            return False
        if evidence is None:
            return True
        # only a computed range(n) or a listing read's result (here, or handed to a private
        # helper by a caller in the run) is the default's evidence: a caller's list is not
        data = (
            c.strong
            or any({position, param} & facts.fed.get(fn, set()) for fn, position, param in c.via)
            or any(facts.returns_listing(name) for name in c.reads)
        )
        io = computes is None or facts.awaits.get(computes, True)
        return (data and io) == evidence

    return keep
