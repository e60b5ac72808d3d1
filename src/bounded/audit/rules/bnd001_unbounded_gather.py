"""BND001: asyncio.gather/wait/as_completed over an input-sized collection, no bound in sight."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bounded.audit.core import Rule
from bounded.audit.model import (
    ClassScope,
    ModuleModel,
    ProjectFacts,
    callee_name,
    coroutine_call,
    is_pool_range,
    is_workerish,
)
from bounded.audit.names import dotted, is_self_attr
from bounded.audit.rules.bnd011_injected_fan_out import RULE as INJECTED

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


@dataclass(slots=True)
class _State:
    # the call, which API, the coroutine's callee, the class and self attribute iterated,
    # and whether the callee is injected ("" certainly, a name: unless the run defines it)
    candidates: list[
        tuple[ast.Call, str, str | None, tuple[ClassScope, str] | None, str | None]
    ] = field(default_factory=list)


def _check(m: ModuleModel, node: ast.Call, q: str) -> None:
    which = _GATHER_LIKE[q]
    if which == "gather":
        exprs = [a.value for a in node.args if isinstance(a, ast.Starred)]
    else:
        exprs = node.args[:1]
        for kw in node.keywords:
            if kw.arg in ("fs", "aws"):
                exprs = [kw.value]
    for expr in exprs:
        if isinstance(expr, ast.Name) and any(expr.id in s.cancelled for s in m.scopes):
            continue  # awaiting tasks just cancelled: teardown, not fan-out
        element = _unbounded_element(m, expr)
        if element is None or _passes_limiter(m, element):
            continue
        if _wraps_running(m, element):
            continue  # shield(fut) of futures already started: this call starts nothing
        call = coroutine_call(m, element)
        callee = callee_name(call)
        if callee == "run_in_executor" or _executor_bound(m, callee):
            continue  # the executor's worker count bounds it
        m.state(_State).candidates.append(
            (node, which, callee, _self_collection(m, expr), _injected(m, call))
        )
        return


CALLS: dict[str, CallHook] = dict.fromkeys(_GATHER_LIKE, _check)


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


def module_end(m: ModuleModel) -> None:
    for node, which, callee, fixed, injected in m.state(_State).candidates:
        if callee is not None and (
            callee in m.guarded
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
        if callee is None:
            m.report(node, RULE.code, message)
            continue
        # the callee may hold a semaphore in another module of the run
        if injected is None:
            m.defer(node, RULE.code, message, _unless_guarded(callee))
            continue
        weak = (
            f"asyncio.{which}() over a collection of unknown size through an injected "
            f"callable ({callee}): no bound in sight here, one may be applied where it is built"
        )
        m.defer(node, INJECTED.code, weak, _unless_guarded(callee, injected, defined=False))
        if injected:
            m.defer(node, RULE.code, message, _unless_guarded(callee, injected, defined=True))


def _unless_guarded(
    callee: str, method: str | None = None, *, defined: bool = True
) -> Callable[[ProjectFacts], bool]:
    """Keep the finding unless `callee` holds a semaphore; with `method`, only if the run
    defines (or, for BND011, does not define) a function of that name."""

    def keep(facts: ProjectFacts) -> bool:
        if callee in facts.guarded:
            return False
        return method is None or (method in facts.defined) == defined

    return keep
