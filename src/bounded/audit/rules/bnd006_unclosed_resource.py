"""BND006: an async client or pool that nothing closes (no ``async with``, close, or owner)."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from bounded.audit.core import Rule
from bounded.audit.model import (
    ASYNC_RESOURCES,
    CLOSERS,
    LIFECYCLE,
    ClassScope,
    Function,
    ModuleModel,
    ProjectFacts,
    Scope,
    resource_of,
)
from bounded.audit.names import candidate_calls, dotted, is_self_attr, own_returns

if TYPE_CHECKING:
    from bounded.audit.model import CallHook, MethodHook

RULE = Rule(
    "BND006",
    "unclosed-resource",
    "An async client or pool created without `async with`, try/finally close, or an "
    "owner that closes it.",
    "use `async with` (or `bounded.HttpClient`/`bounded.DatabasePool` owned by a "
    "ConcurrencyManager), or close it in `finally`",
)


def _created(m: ModuleModel, node: ast.Call, q: str) -> None:
    # bound to a name or attribute, returned, passed on or entered: the model tracks it
    what = resource_of(m, node)
    if what is not None and id(node) not in m.managed:
        m.report(
            node, RULE.code, f"{what} created without `async with` or a close: its connections leak"
        )


CALLS: dict[str, CallHook] = dict.fromkeys(ASYNC_RESOURCES, _created)


def _entered_by_hand(m: ModuleModel, node: ast.Call, func: ast.Attribute) -> None:
    """``await self.client.messages.stream(...).__aenter__()`` on a client the module
    tracks: the manager is dropped, so its ``__aexit__`` (which closes the response) can
    never run; the connection is freed only if the stream is read to its end."""
    manager = func.value
    if id(node) not in m.awaited or not (
        isinstance(manager, ast.Call) and isinstance(manager.func, ast.Attribute)
    ):
        return
    base = manager.func.value
    while isinstance(base, ast.Attribute) and not is_self_attr(base):
        base = base.value
    if not (
        (isinstance(base, ast.Name) and base.id in m.scope.pending)
        or (
            is_self_attr(base)
            and m.classes
            and cast(ast.Attribute, base).attr in m.classes[-1].pending
        )
    ):
        return
    fn = m.scope.node
    if fn is None or any(
        isinstance(sub, ast.Attribute) and sub.attr == "__aexit__" for sub in ast.walk(fn)
    ):
        return
    m.report(
        manager,
        RULE.code,
        f"{dotted(manager.func)}() entered by hand with `__aenter__()` and the manager dropped: "
        "its `__aexit__` never runs, so the response is closed only if read to the end; use "
        "`async with`",
    )


METHODS: dict[str, MethodHook] = {"__aenter__": _entered_by_hand}


def dropped_call(m: ModuleModel, call: ast.Call, statement: ast.stmt | None) -> None:
    """A client built and dropped at once (a warm-up) sent no request: it holds no connection."""
    if statement is not None and resource_of(m, call) is not None:
        m.managed.add(id(call))


def every_call(m: ModuleModel, node: ast.Call) -> None:
    """A method called on a factory's fresh result that nothing keeps, so nothing closes."""
    base = node.func
    while isinstance(base, ast.Attribute):
        base = base.value
    if base is node.func or not isinstance(base, ast.Call):
        return
    what = m.factory_result(base)
    if what is not None:
        m.report(
            base,
            RULE.code,
            f"{dotted(base.func) or 'the factory'}() builds a new {what} on every call and this "
            "call never closes it: a connection pool per operation",
        )


# An imported client or session class the table does not know (``HttpxAiohttpClient``).
_CLIENT_CLASS = re.compile(r"[A-Z]\w*(?:Client|Session)")
# Where an await is caught or leaves the function's own flow.
_GUARDED = (ast.Try, ast.TryStar, ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def function(m: ModuleModel, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
    """``client = LibClient() if given is None else given`` ... awaits ... ``await
    client.aclose()``: the function closes a client of a class the table does not know,
    which says it must be closed, but only at the end of its normal path, so an exception
    in the awaits before the close leaks it."""
    if not isinstance(fn, ast.AsyncFunctionDef):
        return
    body = fn.body
    for i, stmt in enumerate(body):
        if not (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
        ):
            continue
        name = stmt.targets[0].id
        call = next((c for c in candidate_calls(stmt.value) if _unknown_client(m, c)), None)
        if call is None:
            continue
        end = next((j for j in range(i + 1, len(body)) if _closes(body[j], name)), None)
        if (
            end is not None
            and any(_awaits_unguarded(s) for s in body[i + 1 : end])
            and not _kept_or_guarded(body[i + 1 :], name)
        ):
            m.report(
                call,
                RULE.code,
                f"{dotted(call.func)} bound to {name!r} is closed only on the success path: "
                "use `async with` or close it in `finally`",
            )


def _unknown_client(m: ModuleModel, call: ast.Call) -> bool:
    q = m.qualname(call.func)
    return (
        q is not None
        and _CLIENT_CLASS.fullmatch(q.rpartition(".")[2]) is not None
        and resource_of(m, call) is None
        and m.factory_result(call) is None
    )


def _closes(stmt: ast.stmt, name: str) -> bool:
    """``[await] name.aclose()``, or that alone under an ``if``, as a plain statement."""
    if isinstance(stmt, ast.If) and len(stmt.body) == 1 and not stmt.orelse:
        stmt = stmt.body[0]
    if not isinstance(stmt, ast.Expr):
        return False
    call = stmt.value.value if isinstance(stmt.value, ast.Await) else stmt.value
    return (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr in ("aclose", "close")
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id == name
    )


def _awaits_unguarded(stmt: ast.stmt) -> bool:
    """An await (``async for``/``async with``) in `stmt` outside any ``try`` and any
    nested function: one that can raise past the close."""
    stack: list[ast.AST] = [stmt]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Await | ast.AsyncFor | ast.AsyncWith):
            return True
        if not isinstance(node, _GUARDED):
            stack.extend(ast.iter_child_nodes(node))
    return False


def _kept_or_guarded(body: list[ast.stmt], name: str) -> bool:
    """The name is returned, yielded, stored on an object, entered, or closed in a
    ``finally``: someone else owns it, or the close is already guarded."""
    for stmt in body:
        for node in ast.walk(stmt):
            value: ast.expr | None = None
            if isinstance(node, ast.Return | ast.Yield | ast.YieldFrom) or (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Attribute | ast.Subscript) for t in node.targets)
            ):
                value = node.value
            elif isinstance(node, ast.withitem):
                value = node.context_expr
            elif isinstance(node, ast.Try | ast.TryStar) and any(
                _closes(s, name) for s in node.finalbody
            ):
                return True
            elts = value.elts if isinstance(value, ast.Tuple | ast.List | ast.Set) else [value]
            if any(isinstance(e, ast.Name) and e.id == name for e in elts):
                return True
    return False


def scope_end(m: ModuleModel, scope: Scope) -> None:
    for name, last in scope.pending.items():
        if name in scope.escaped:
            continue
        closed = scope.closed.get(name)
        for call, what in [*scope.rebound.get(name, ()), last]:
            if closed is None:
                m.report(
                    call,
                    RULE.code,
                    f"{what} bound to {name!r} is never closed: its connections leak",
                )
            elif not closed and not scope.is_generator:
                m.report(
                    call,
                    RULE.code,
                    f"{what} bound to {name!r} is closed only on the success path: use "
                    "`async with` or close it in `finally`",
                )


# ``Redis.from_url(...)``, ``module.Redis(...)``: a client built through a name the
# imports do not resolve (a module chosen at run time).
_REBUILT_CLIENT = re.compile(r"(?:^|\.)(?:from_url|(?:Strict)?Redis|Valkey)$")


class _Rebuilt:
    __slots__ = ("by_class",)

    def __init__(self) -> None:
        # class node -> (method, attribute, the call that builds the client, what)
        self.by_class: dict[ast.ClassDef, list[tuple[Function, str, ast.Call, str]]] = {}


def assign(
    m: ModuleModel, node: ast.Assign | ast.AnnAssign, targets: list[ast.expr], value: ast.expr
) -> None:
    """``self.redis = Redis.from_url(...)`` in a method other than ``__init__``: remembered
    for `class_end`, which asks whether a retry loop calls the method again. Also
    ``path = tempfile.mkstemp(...)[1]``: the open descriptor is dropped."""
    if _drops_descriptor(m, value):
        m.report(
            value,
            RULE.code,
            "tempfile.mkstemp()[1] keeps the path and drops the open file descriptor "
            "mkstemp returned: one descriptor leaks per call (close it with os.close, or "
            "use NamedTemporaryFile(delete=False))",
        )
        return
    target = targets[0]
    if not (
        len(targets) == 1
        and isinstance(target, ast.Attribute)
        and is_self_attr(target)
        and isinstance(value, ast.Call)
        and m.classes
        and m.scope.name != "__init__"
    ):
        return
    method = m.scope.node
    cls = m.classes[-1]
    if not (isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef) and method in cls.node.body):
        return
    what = resource_of(m, value, per_call=True)
    if what is None and _REBUILT_CLIENT.search(dotted(value.func) or ""):
        what = f"{dotted(value.func)}() client"
    if what is not None:
        m.state(_Rebuilt).by_class.setdefault(cls.node, []).append(
            (method, target.attr, value, what)
        )


def _drops_descriptor(m: ModuleModel, value: ast.expr) -> bool:
    """``tempfile.mkstemp(...)[1]``: the path of a file whose descriptor nothing keeps."""
    return (
        isinstance(value, ast.Subscript)
        and isinstance(value.slice, ast.Constant)
        and value.slice.value == 1
        and isinstance(value.value, ast.Call)
        and m.qualname(value.value.func) == "tempfile.mkstemp"
    )


def _report_rebuilt(m: ModuleModel, cls: ClassScope) -> None:
    """A method that builds ``self.x`` again without closing the one there, called from a
    loop of a coroutine (a reconnect): every reconnect leaks the previous client."""
    rebuilt = m.state(_Rebuilt).by_class.pop(cls.node, None)
    if not rebuilt:
        return
    methods = [
        item for item in cls.node.body if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    for method, attr, call, what in rebuilt:
        if _closes_attr(method, attr) or _tests_attr(method, attr):
            continue  # closes the old one first, or builds it only when there is none
        callers = [
            caller
            for caller in methods
            if isinstance(caller, ast.AsyncFunctionDef)
            and caller is not method
            and _calls_in_loop(caller, method.name)
        ]
        if callers and not any(_closes_attr(caller, attr) for caller in callers):
            m.report(
                call,
                RULE.code,
                f"{what} re-created on self.{attr} by {method.name}(), which a loop calls "
                "again, without closing the previous one: each reconnect leaks its connections",
            )


def _closes_attr(fn: Function, attr: str) -> bool:
    return any(
        isinstance(sub, ast.Call)
        and isinstance(sub.func, ast.Attribute)
        and sub.func.attr in CLOSERS
        and is_self_attr(sub.func.value)
        and getattr(sub.func.value, "attr", None) == attr
        for sub in ast.walk(fn)
    )


def _tests_attr(fn: Function, attr: str) -> bool:
    """An ``if``/``while`` on ``self.<attr>`` (``if self.redis is None:``): built lazily."""
    return any(
        isinstance(sub, ast.If | ast.While | ast.IfExp)
        and any(
            isinstance(n, ast.Attribute) and n.attr == attr and is_self_attr(n)
            for n in ast.walk(sub.test)
        )
        for sub in ast.walk(fn)
    )


def _calls_in_loop(fn: Function, name: str) -> bool:
    """`fn` calls ``self.<name>()`` inside one of its loops."""
    return any(
        isinstance(loop, ast.For | ast.AsyncFor | ast.While)
        and any(
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Attribute)
            and sub.func.attr == name
            and is_self_attr(sub.func)
            for stmt in loop.body
            for sub in ast.walk(stmt)
        )
        for loop in ast.walk(fn)
    )


def class_end(m: ModuleModel, cls: ClassScope) -> None:
    """A class with a close-style method (its own or a base's) must close what it stores.

    A class with no lifecycle at all is a long-lived holder (a provider, a settings object);
    whether it leaks depends on how often it is built, which the code does not say.
    """
    _report_rebuilt(m, cls)
    _report_fresh_properties(m, cls)
    touched: set[str] | None = None
    aliases: dict[str, str] | None = None
    for attr, (call, what) in cls.pending.items():
        if attr in cls.closed:
            continue
        if aliases is None:
            aliases = _property_aliases(cls)
        if any(stored == attr and prop in cls.closed for prop, stored in aliases.items()):
            continue  # closed through a property that returns it
        if touched is None:
            touched = _read_on_close(cls)
        if attr in touched:
            continue  # the close path hands it on (a helper, a loop over the clients)
        if _built_and_returned(cls, attr):
            continue  # a factory method: each call builds a new one for its caller to close
        if _has_setter(cls.node, attr):
            continue  # self.session = ... runs the property's setter: stored where it says
        for each, each_what in [*cls.rebound.get(attr, ()), (call, what)]:
            message = (
                f"{each_what} stored on self.{attr} but the class never closes it "
                f"(its close method does not call self.{attr}.aclose()/close())"
            )
            if not cls.bases:
                if cls.lifecycle:
                    m.report(each, RULE.code, message)
            else:
                m.defer(each, RULE.code, message, _unless_a_base_closes(cls, attr))


def _report_fresh_properties(m: ModuleModel, cls: ClassScope) -> None:
    """``@property def client(self): return AsyncClient(...)`` whose class calls through it
    (``await self.client.chat(...)``): every access builds a new client that nothing keeps,
    so nothing can close it."""
    body = cls.node.body
    for prop in body:
        if not isinstance(prop, ast.FunctionDef) or not any(
            dotted(d) == "property" for d in prop.decorator_list
        ):
            continue
        statements = [s for s in prop.body if not _is_docstring(s)]
        if len(statements) != 1 or not isinstance(statements[0], ast.Return):
            continue  # anything else may cache the client (``if self._c is None: ...``)
        built = statements[0].value
        if not isinstance(built, ast.Call):
            continue
        what = resource_of(m, built, per_call=True)
        if what is None:
            continue
        use = _call_through(body, prop.name)
        if use is not None:
            m.report(
                built,
                RULE.code,
                f"the {prop.name} property builds a new {what} on every access and "
                f"self.{prop.name}.{use}() never closes it: a connection pool per operation",
            )


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)


def _call_through(body: list[ast.stmt], attr: str) -> str | None:
    """The first method called on ``self.<attr>`` inline in the class's methods
    (``self.client.chat.completions.create`` gives "chat.completions.create"), else None."""
    prefix = f"self.{attr}."
    for fn in body:
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) or fn.name == attr:
            continue
        for sub in ast.walk(fn):
            if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute):
                name = dotted(sub.func) or ""
                if name.startswith(prefix):
                    return name[len(prefix) :]
    return None


def _has_setter(cls: ast.ClassDef, attr: str) -> bool:
    """The class defines `attr` as a property with a setter (``@session.setter``): storing
    on it hands the value to the setter (a lease the class closes), not to an attribute."""
    return any(
        isinstance(item, ast.FunctionDef)
        and item.name == attr
        and any(dotted(d) == f"{attr}.setter" for d in item.decorator_list)
        for item in cls.body
    )


def _built_and_returned(cls: ClassScope, attr: str) -> bool:
    """A method builds ``self.<attr>`` on every call (not behind an ``if``) and returns it."""
    for item in cls.node.body:
        if not isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        builds = any(
            isinstance(stmt, ast.Assign)
            and isinstance(stmt.value, ast.Call)
            and any(is_self_attr(t) and getattr(t, "attr", None) == attr for t in stmt.targets)
            for stmt in item.body
        )
        returns = any(
            isinstance(stmt, ast.Return)
            and stmt.value is not None
            and is_self_attr(stmt.value)
            and getattr(stmt.value, "attr", None) == attr
            for stmt in item.body
        )
        if builds and returns:
            return True
    return False


def _property_aliases(cls: ClassScope) -> dict[str, str]:
    """The class's properties that return a ``self`` attribute (``@property def
    websession(self): ... return self._websession``): closing ``self.websession`` closes
    ``self._websession``."""
    aliases: dict[str, str] = {}
    for item in cls.node.body:
        if isinstance(item, ast.FunctionDef) and any(
            isinstance(d, ast.Name) and d.id == "property" for d in item.decorator_list
        ):
            returned = [r for r in own_returns(item) if is_self_attr(r)]
            if len(returned) == 1 and isinstance(returned[0], ast.Attribute):
                aliases[item.name] = returned[0].attr
    return aliases


def _read_on_close(cls: ClassScope) -> set[str]:
    """The ``self`` attributes the class's close-style methods hand on: passed to a call
    (``await close_all([self._a])``) or iterated (``for c in (self._a, self._b)``), also
    through a local name taken first (``client = self._client; self._client = None;
    await self._close_client(client)``). Comparing one or setting it to None is not
    handing it on. The close path takes in the class's own methods it calls
    (``async def __aexit__(...): await self._disconnect()``)."""
    methods = {
        item.name: item
        for item in cls.node.body
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    path = [fn for name, fn in methods.items() if name in LIFECYCLE]
    for fn in path:  # grows as it goes: the helpers the close path calls, once each
        path.extend(
            helper
            for sub in ast.walk(fn)
            if isinstance(sub, ast.Call)
            and is_self_attr(sub.func)
            and isinstance(sub.func, ast.Attribute)
            and (helper := methods.get(sub.func.attr)) is not None
            and helper not in path
        )
    found: set[str] = set()
    for item in path:
        taken = {
            target.id: sub.value.attr
            for sub in ast.walk(item)
            if isinstance(sub, ast.Assign)
            and is_self_attr(sub.value)
            and isinstance(sub.value, ast.Attribute)
            for target in sub.targets
            if isinstance(target, ast.Name)
        }
        for sub in ast.walk(item):
            handed: list[ast.expr] = []
            if isinstance(sub, ast.Call):
                handed = [*sub.args, *(kw.value for kw in sub.keywords)]
            elif isinstance(sub, ast.For | ast.AsyncFor):
                handed = [sub.iter]
            for value in handed:
                elts = value.elts if isinstance(value, ast.List | ast.Tuple | ast.Set) else [value]
                found.update(
                    e.attr for e in elts if is_self_attr(e) and isinstance(e, ast.Attribute)
                )
                found.update(taken[e.id] for e in elts if isinstance(e, ast.Name) and e.id in taken)
    return found


def _unless_a_base_closes(cls: ClassScope, attr: str) -> Callable[[ProjectFacts], bool]:
    name, bases = cls.name, cls.bases

    def keep(facts: ProjectFacts) -> bool:
        # a base class anywhere in the run that closes the attribute owns it
        tails = [base.rsplit(".", 1)[-1] for base in bases]
        if any(facts.closes(tail, attr) for tail in tails):
            return False
        return facts.manages_lifecycle(name)

    return keep


def module_end(m: ModuleModel) -> None:
    closed_tails = {text.rsplit(".", 1)[-1] for text in m.module_closed}
    for name, (call, what) in m.module_pending.items():
        if name in m.module_closed or ("." not in name and name in closed_tails):
            continue
        m.report(call, RULE.code, f"{what} bound to {name!r} is never closed: its connections leak")
