"""BND004: asyncio.get_event_loop() where no loop may be running, and removed loop= arguments."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bounded.audit.core import Rule
from bounded.audit.local_work import own_nodes
from bounded.audit.model import Function, ModuleModel, ProjectFacts
from bounded.audit.names import is_self_attr

if TYPE_CHECKING:
    from bounded.audit.model import CallHook, MethodHook


@dataclass(slots=True)
class _State:
    defaults: set[int] = field(default_factory=set)  # ids of calls in module-level defaults


RULE = Rule(
    "BND004",
    "get-event-loop",
    "asyncio.get_event_loop() where no loop runs (module level, a sync function that drives "
    "the loop itself or is called from module level), and loop= arguments removed in "
    "Python 3.10.",
    "use `asyncio.get_running_loop()` where a loop runs and `asyncio.run(main())` at the top",
)
# asyncio APIs whose loop= parameter was removed in 3.10 (Task, Future, ensure_future keep it)
_LOOP_ARG_REMOVED = tuple(
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


def is_policy_get_event_loop(m: ModuleModel, func: ast.Attribute) -> bool:
    """``policy.get_event_loop()`` on an event-loop policy."""
    receiver = func.value
    return m.kind_of_value(receiver) == "policy" or m.kind_of(receiver) == "policy"


def _report(m: ModuleModel, node: ast.Call, what: str) -> None:
    if m.in_async:
        return  # the running loop: BND010
    if m.legacy:
        return  # code for the Pythons on which get_event_loop() still makes the loop
    if len(m.scopes) == 1:
        where = "at module level"
        if id(node) in m.state(_State).defaults:
            where = "as a default argument value (evaluated once, when the def runs at import)"
        message = f"{what} {where}: no loop is running (use asyncio.run(main()))"
        m.report(node, RULE.code, message)
        return
    message = (
        f"{what} outside a coroutine: with no running loop it creates a stray loop "
        "(RuntimeError on Python 3.14); use asyncio.get_running_loop() or asyncio.run()"
    )
    scope = m.scope
    if _warning_made_error(m, node) or _new_loop_on_error(m, node):
        return  # the no-loop case raises and the code makes its own loop: none is stray
    if _loop_set_before(m, node):
        return  # set_event_loop(loop) ran first, here or in the enclosing function
    if _after_run_refused(m, node):
        return  # asyncio.run() refused because a loop runs: it is that loop
    if _after_no_running_loop(m, node):
        m.report(
            node,
            RULE.code,
            f"{what} where the try above found no running loop: it creates a stray loop "
            "that nothing runs (RuntimeError on Python 3.14); use asyncio.run() or "
            "new_event_loop() and run it",
        )
        return
    init = scope.name == "__init__" and bool(m.classes)
    name = m.classes[-1].name if init else scope.name
    if _expects_no_running_loop(m, node):
        # a sync helper (or an __init__) that the run calls only from coroutines sees a loop;
        # a plain function is called by its bare name, a method (or class) on any object too
        method = init or bool(m.classes and scope.node in m.classes[-1].node.body)
        m.defer(node, RULE.code, message, _unless_only_called_from_coroutines(name, method))
    # Elsewhere (a callback, a constructor, a utility, a helper that only asks whether a
    # loop runs) the code may well run on a loop: silent, however the run calls it.


def _loop_set_before(m: ModuleModel, node: ast.Call) -> bool:
    """``loop = asyncio.new_event_loop(); asyncio.set_event_loop(loop)`` before the call,
    in its function or in one it is nested in (a handler factory that sets the loop up,
    then returns the handler that gets it): the thread has its loop, so
    ``get_event_loop()`` returns it on every Python, and none is stray."""
    for scope in m.scopes[1:]:
        fn = scope.node
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if any(
            isinstance(sub, ast.Call)
            and sub.lineno < node.lineno
            and m.qualname(sub.func) == "asyncio.set_event_loop"
            and sub.args
            and not (isinstance(sub.args[0], ast.Constant) and sub.args[0].value is None)
            for sub in own_nodes(fn.body)
        ):
            return True
    return False


def _expects_no_running_loop(m: ModuleModel, node: ast.Call) -> bool:
    """The function drives the loop it gets (``run_until_complete``/``run_forever``), or
    stores it on ``self`` where a method of its class drives it: the code itself expects
    to run without one."""
    enclosing = m.scope.node
    if enclosing is None:
        return False
    names: set[str] = set()
    attrs: set[str] = set()
    for sub in ast.walk(enclosing):
        if isinstance(sub, ast.Assign) and (
            sub.value is node or (isinstance(sub.value, ast.BoolOp) and node in sub.value.values)
        ):  # loop = get_event_loop(), self._loop = loop or get_event_loop()
            for target in sub.targets:
                if isinstance(target, ast.Name):
                    names.add(target.id)
                elif isinstance(target, ast.Attribute) and is_self_attr(target):
                    attrs.add(target.attr)
    if any(
        receiver is node or (isinstance(receiver, ast.Name) and receiver.id in names)
        for receiver in _driven(enclosing, refused=True)
    ):
        return True
    return bool(attrs and m.classes) and any(
        isinstance(receiver, ast.Attribute) and is_self_attr(receiver) and receiver.attr in attrs
        for receiver in _driven(m.classes[-1].node)
    )


def _driven(tree: ast.AST, *, refused: bool = False) -> Iterator[ast.expr]:
    """The receivers of ``run_until_complete``/``run_forever`` calls in `tree`, and with
    `refused` of ``if loop.is_running(): raise ...`` too: code that refuses a running loop
    expects to be called where none runs."""
    for sub in ast.walk(tree):
        if (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Attribute)
            and sub.func.attr in _DRIVES
        ):
            yield sub.func.value
        elif refused and isinstance(sub, ast.If) and isinstance(sub.body[-1], ast.Raise):
            test = sub.test
            if (
                isinstance(test, ast.Call)
                and isinstance(test.func, ast.Attribute)
                and test.func.attr == "is_running"
            ):
                yield test.func.value


def _warning_made_error(m: ModuleModel, node: ast.Call) -> bool:
    """The call is inside ``with warnings.catch_warnings():`` that turns warnings into
    errors (``warnings.simplefilter("error", ...)``): the no-loop case raises instead of
    creating a loop, and the code handles it."""
    enclosing = m.scope.node
    if enclosing is None:
        return False
    for sub in ast.walk(enclosing):
        if not isinstance(sub, ast.With) or not (
            sub.lineno <= node.lineno <= (sub.end_lineno or sub.lineno)
        ):
            continue
        if not any(
            isinstance(item.context_expr, ast.Call)
            and m.qualname(item.context_expr.func) == "warnings.catch_warnings"
            for item in sub.items
        ):
            continue
        for stmt in ast.walk(sub):
            if (
                isinstance(stmt, ast.Call)
                and m.qualname(stmt.func) in ("warnings.simplefilter", "warnings.filterwarnings")
                and stmt.args
                and isinstance(stmt.args[0], ast.Constant)
                and stmt.args[0].value == "error"
            ):
                return True
    return False


_DRIVES = frozenset({"run_until_complete", "run_forever"})


def _new_loop_on_error(m: ModuleModel, node: ast.Call) -> bool:
    """The call is in a ``try`` whose ``except RuntimeError`` makes a new loop: the
    Python 3.14 case is handled and the loop the code runs is its own."""
    enclosing = m.scope.node
    if enclosing is None:
        return False
    for sub in ast.walk(enclosing):
        if not isinstance(sub, ast.Try) or not any(
            stmt.lineno <= node.lineno <= (stmt.end_lineno or stmt.lineno) for stmt in sub.body
        ):
            continue
        for handler in sub.handlers:
            caught = handler.type
            names = caught.elts if isinstance(caught, ast.Tuple) else [caught]
            if any(isinstance(n, ast.Name) and n.id == "RuntimeError" for n in names) and any(
                isinstance(call, ast.Call) and m.qualname(call.func) == "asyncio.new_event_loop"
                for call in ast.walk(handler)
            ):
                return True
    return False


def _after_run_refused(m: ModuleModel, node: ast.Call) -> bool:
    """The call is in the ``except RuntimeError`` handler of a ``try`` that calls
    ``asyncio.run()``: reached only when a loop is running, so it gets that loop."""
    return _in_runtime_error_handler(m, node, frozenset({"asyncio.run"})) is not None


# Calls that raise RuntimeError when no loop is running in the thread.
_NEED_RUNNING_LOOP = frozenset(
    {"asyncio.get_running_loop", "asyncio.create_task", "asyncio.current_task"}
)


def _after_no_running_loop(m: ModuleModel, node: ast.Call) -> bool:
    """The call is in the ``except RuntimeError`` handler of a ``try`` whose body asks
    for the running loop (``asyncio.create_task(...)``, ``asyncio.get_running_loop()``),
    and the handler schedules work on the loop it gets (``loop.create_task(...)``): reached
    only when none runs, it hands the work to a loop nothing runs. A handler that returns
    the loop (a ``loop`` property) leaves it to a caller that may run it."""
    handler = _in_runtime_error_handler(m, node, _NEED_RUNNING_LOOP)
    return handler is not None and _schedules_on(handler, node)


def _in_runtime_error_handler(
    m: ModuleModel, node: ast.Call, tried: frozenset[str]
) -> ast.ExceptHandler | None:
    """The ``except RuntimeError`` handler `node` is in, of a ``try`` whose body calls one
    of `tried`; None if there is none."""
    enclosing = m.scope.node
    if enclosing is None:
        return None
    for sub in ast.walk(enclosing):
        if not isinstance(sub, ast.Try) or not any(
            isinstance(call, ast.Call) and m.qualname(call.func) in tried
            for stmt in sub.body
            for call in ast.walk(stmt)
        ):
            continue
        for handler in sub.handlers:
            caught = handler.type
            names = caught.elts if isinstance(caught, ast.Tuple) else [caught]
            if any(isinstance(n, ast.Name) and n.id == "RuntimeError" for n in names) and any(
                stmt.lineno <= node.lineno <= (stmt.end_lineno or stmt.lineno)
                for stmt in handler.body
            ):
                return handler
    return None


_SCHEDULES = frozenset({"create_task", "call_soon", "call_later", "call_at"})


def _schedules_on(handler: ast.ExceptHandler, node: ast.Call) -> bool:
    """`handler` schedules work on the loop `node` returns (``loop = get_event_loop()``
    then ``loop.create_task(...)``, or ``get_event_loop().call_soon(...)``)."""
    names = {
        target.id
        for sub in ast.walk(handler)
        if isinstance(sub, ast.Assign) and sub.value is node
        for target in sub.targets
        if isinstance(target, ast.Name)
    }
    return any(
        isinstance(sub, ast.Call)
        and isinstance(sub.func, ast.Attribute)
        and sub.func.attr in _SCHEDULES
        and (
            sub.func.value is node
            or (isinstance(sub.func.value, ast.Name) and sub.func.value.id in names)
        )
        for sub in ast.walk(handler)
    )


def _unless_only_called_from_coroutines(name: str, method: bool) -> Callable[[ProjectFacts], bool]:
    def keep(facts: ProjectFacts) -> bool:
        where = facts.callers.get(name, 0)
        if method:
            where |= facts.callers.get("." + name, 0)
        return where != 1

    return keep


def _get_event_loop(m: ModuleModel, node: ast.Call, q: str) -> None:
    _report(m, node, "asyncio.get_event_loop()")


def _loop_argument(m: ModuleModel, node: ast.Call, q: str) -> None:
    if any(kw.arg == "loop" for kw in node.keywords) and not m.legacy:
        m.report(node, RULE.code, f"loop= argument to {q}() (removed in Python 3.10)")


def _policy(m: ModuleModel, node: ast.Call, func: ast.Attribute) -> None:
    if is_policy_get_event_loop(m, func):
        _report(m, node, "policy.get_event_loop()")


def function(m: ModuleModel, node: Function) -> None:
    """Note the calls in a module-level def's default values: they run at import."""
    if len(m.scopes) != 1:
        return  # a nested def's defaults run with the function around it
    args = node.args
    for default in (*args.defaults, *args.kw_defaults):
        if default is not None and not isinstance(default, ast.Constant | ast.Name):
            m.state(_State).defaults.update(
                id(sub) for sub in ast.walk(default) if isinstance(sub, ast.Call)
            )


CALLS: dict[str, CallHook] = dict.fromkeys(_LOOP_ARG_REMOVED, _loop_argument)
CALLS["asyncio.get_event_loop"] = _get_event_loop
METHODS: dict[str, MethodHook] = {"get_event_loop": _policy}
