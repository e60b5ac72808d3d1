"""BND009: a task whose reference is dropped (create_task/ensure_future as a statement).

Fixable where the intent is clear: when the module (or the class) already keeps its tasks
in a set (``task.add_done_callback(X.discard)``), the dropped call is rewritten to keep
its task in that set the same way.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from bounded.audit.core import Edit, Rule
from bounded.audit.local_work import own_nodes
from bounded.audit.model import TASK_FACTORIES, ClassScope, ModuleModel, ProjectFacts, Scope
from bounded.audit.names import call_argument, dotted, is_self_attr

if TYPE_CHECKING:
    from bounded.audit.model import CallHook, MethodHook

RULE = Rule(
    "BND009",
    "dropped-task",
    "asyncio.create_task/ensure_future whose result is dropped: the task can be "
    "garbage-collected mid-flight and its exception is lost.",
    "keep a reference: `tm.spawn(coro)` on a `bounded.TaskManager`, or store and await the task",
)
# Calls that run a callback later and drop whatever it returns.
_CALLBACK_REGISTRARS = (
    "add_done_callback",
    "call_soon",
    "call_soon_threadsafe",
    "call_later",
    "call_at",
    "add_signal_handler",
    "add_reader",
    "add_writer",
)
# Event emitters' handler registration: the emitter calls the handler and drops its result.
_HANDLER_REGISTRARS = (
    "on",
    "once",
    "add_listener",
    "addListener",
    "add_event_listener",
    "addEventListener",
)
# Emitters that schedule and keep the future a handler returns (pyee's AsyncIOEventEmitter,
# which Playwright's objects are): a module using one may rely on that.
_KEEPING_EMITTERS = ("pyee.asyncio", "pyee.AsyncIOEventEmitter", "playwright")
_LOOP_GETTERS = ("asyncio.get_running_loop", "asyncio.get_event_loop")
_LOOP_GETTER_NAMES = frozenset(name.rpartition(".")[2] for name in _LOOP_GETTERS)
# Library methods that return the asyncio task they start: python-socketio's and
# python-engineio's async server and client (their sync twins return a thread).
_SPAWNER_METHODS = frozenset({"start_background_task"})


@dataclass(slots=True)
class _State:
    # the dropped call, its statement, the class it is in (if any), the message
    dropped: list[tuple[ast.Call, ast.stmt | None, ClassScope | None, Scope, str]] = field(
        default_factory=list
    )
    module_sets: set[str] = field(default_factory=set)  # X in add_done_callback(X.discard)
    class_sets: dict[ClassScope, str] = field(default_factory=dict)  # self.X likewise


def dropped_call(m: ModuleModel, call: ast.Call, statement: ast.stmt | None) -> None:
    func = call.func
    if (
        isinstance(func, ast.Attribute)
        and func.attr == "add_done_callback"
        and isinstance(func.value, ast.Call)
        and _creates_task(m, func.value)
    ):
        # create_task(...).add_done_callback(cb): the callback does not keep the task alive
        dropped_call(m, func.value, None)
        return
    q = m.qualname(func)
    if q in TASK_FACTORIES:
        message = f"result of {q}() dropped: the task can be garbage-collected mid-flight"
    elif (
        q == "asyncio.run_coroutine_threadsafe"
        and statement is not None
        and not _hands_to_queue(call)
        and not _signals_at_once(m, call)
    ):
        # the future reads the task's exception when it copies its state, so a failure is
        # neither raised nor logged: no rewrite, as a task set would not surface it
        message = (
            "result of asyncio.run_coroutine_threadsafe() dropped: the loop holds the task only "
            "weakly and nothing reads the future, so the task can be garbage-collected "
            "mid-flight and its exception is lost without a trace (keep the future and add a "
            "done callback that logs `future.exception()`)"
        )
        statement = None
    elif isinstance(func, ast.Attribute) and func.attr == "create_task" and _loopish(m, func):
        message = (
            "result of loop.create_task() dropped: the task can be garbage-collected mid-flight"
        )
    elif (
        statement is not None
        and isinstance(func, ast.Attribute)
        and func.attr in _SPAWNER_METHODS
        and not is_self_attr(func)
        and (m.kind_of(func.value) == "spawner" or m.in_async)
    ):
        # sio.start_background_task(fn): an async server's (by its binding, or called from a
        # coroutine, where a sync server's thread would make no sense) returns a task
        message = (
            f"result of {func.attr}() dropped: the async server returns the asyncio task it "
            "started, which can be garbage-collected mid-flight"
        )
    elif statement is not None and isinstance(func, ast.Name | ast.Attribute):
        # a helper that returns the task it created (``self._schedule_event(coro)``)
        name = func.id if isinstance(func, ast.Name) else func.attr
        if isinstance(func, ast.Name) or is_self_attr(func):
            message = (
                f"result of {name}() dropped: it returns the task it created, which can be "
                "garbage-collected mid-flight"
            )
            m.defer(call, RULE.code, message, _returns_task(name))
        return
    else:
        return
    _drop(m, call, statement, message)


def _hands_to_queue(call: ast.Call) -> bool:
    """``run_coroutine_threadsafe(queue.put(item), loop)``: a thread handing an item to the
    loop. An asyncio queue's ``put`` raises nothing, and a put waiting for room is held
    by the queue itself, so the dropped future loses nothing."""
    coro = call_argument(call, 0, "coro")
    return (
        isinstance(coro, ast.Call)
        and isinstance(coro.func, ast.Attribute)
        and coro.func.attr == "put"
    )


# Calls on an event or a future that neither wait nor raise (``set_result`` raises only on
# a future already done, which the code must test first).
_SIGNALS = frozenset({"done", "cancelled", "set", "cancel"})
_RESOLVES = frozenset({"set_result", "set_exception"})


def _signals_at_once(m: ModuleModel, call: ast.Call) -> bool:
    """``run_coroutine_threadsafe(_set_close_event(), loop)`` where ``async def
    _set_close_event(): if not fut.done(): fut.set_result(None)`` is defined here: the
    coroutine awaits nothing, so it runs to its end in its first step (nothing can collect
    it mid-flight), and it only sets an event or resolves a future it found pending, so it
    raises nothing for the dropped future to lose."""
    coro = call_argument(call, 0, "coro")
    if not (isinstance(coro, ast.Call) and isinstance(coro.func, ast.Name)):
        return False
    fn = m.function_named(coro.func.id)
    if not isinstance(fn, ast.AsyncFunctionDef):
        return False
    own = list(own_nodes(fn.body))
    if any(isinstance(sub, ast.Await | ast.AsyncFor | ast.AsyncWith | ast.Raise) for sub in own):
        return False
    guarded = {
        id(inner)
        for sub in own
        if isinstance(sub, ast.If)
        and any(isinstance(t, ast.Attribute) and t.attr == "done" for t in ast.walk(sub.test))
        for inner in ast.walk(sub)
    }
    calls = [sub for sub in own if isinstance(sub, ast.Call)]
    return bool(calls) and all(
        isinstance(c.func, ast.Attribute)
        and (c.func.attr in _SIGNALS or (c.func.attr in _RESOLVES and id(c) in guarded))
        for c in calls
    )


def _drop(m: ModuleModel, call: ast.Call, statement: ast.stmt | None, message: str) -> None:
    """Keep `call` as a dropped task, reported (and fixed where it can be) at the end."""
    cls = m.classes[-1] if m.classes else None
    m.state(_State).dropped.append((call, statement, cls, m.scope, message))


def _returns_task(name: str) -> Callable[[ProjectFacts], bool]:
    def keep(facts: ProjectFacts) -> bool:
        return facts.spawns.get(name, False)

    return keep


# Registrars that call a function later with the arguments given.
_SCHEDULERS = frozenset({"call_soon", "call_soon_threadsafe", "call_later", "call_at"})


def _names_task_factory(m: ModuleModel, arg: ast.expr) -> bool:
    """``asyncio.create_task`` or ``loop.create_task``: a task factory (the function of a
    call, or a function handed to a scheduler)."""
    return m.qualname(arg) in TASK_FACTORIES or (
        isinstance(arg, ast.Attribute) and arg.attr == "create_task" and _loopish(m, arg)
    )


def _loopish(m: ModuleModel, func: ast.Attribute) -> bool:
    receiver = func.value
    if isinstance(receiver, ast.Call):
        # asyncio's getters, or a project's wrapper of the same name (`helpers.get_running_loop()`)
        name = m.qualname(receiver.func) or dotted(receiver.func) or ""
        return name.rpartition(".")[2] in _LOOP_GETTER_NAMES
    if isinstance(receiver, ast.Name | ast.Attribute):
        tail = (dotted(receiver) or "").rsplit(".", 1)[-1]
        return (
            m.kind_of(receiver) == "loop"
            or tail in ("loop", "_loop")
            or (isinstance(receiver, ast.Name) and _bound_to_loop(m, receiver.id))
        )
    return False


def _bound_to_loop(m: ModuleModel, name: str) -> bool:
    """`name` was assigned the running loop somewhere in its scope, even if a
    ``None`` fallback was assigned too (``try: x = get_running_loop() except: x = None``)."""
    return any(
        m.kind_of_value(value) == "loop"
        for value in m.assignments(name)
        if not (isinstance(value, ast.Constant) and value.value is None)
    )


def assign(
    m: ModuleModel, node: ast.Assign | ast.AnnAssign, targets: list[ast.expr], value: ast.expr
) -> None:
    if len(targets) != 1 or not isinstance(targets[0], ast.Name):
        return
    name = targets[0].id
    if isinstance(value, ast.ListComp | ast.SetComp) and isinstance(value.elt, ast.Call):
        # _ = [asyncio.create_task(...) for ...]: the list of tasks is dropped whole
        if _creates_task(m, value.elt) and (name == "_" or _never_read(m, name)):
            dropped_call(m, value.elt, None)
        return
    if not isinstance(value, ast.Call):
        return
    if name == "_" or (_creates_task(m, value) and _never_read(m, name)):
        dropped_call(m, value, None)  # _ = asyncio.create_task(...), or an unused local


def _creates_task(m: ModuleModel, call: ast.Call) -> bool:
    return _names_task_factory(m, call.func)


def _never_read(m: ModuleModel, name: str) -> bool:
    """`name` is a local of the current function (or, declared ``nonlocal``, of the
    function around it) that nothing reads."""
    scopes = [scope.node for scope in m.scopes[1:]]
    for depth in range(len(scopes) - 1, -1, -1):
        fn = scopes[depth]
        if fn is None:
            return False
        declared = False
        receivers: set[int] = set()  # uses of the task that keep nothing alive
        for sub in ast.walk(fn):
            receivers.update(_not_kept_by(m, sub))
            if (
                isinstance(sub, ast.Name)
                and sub.id == name
                and not isinstance(sub.ctx, ast.Store)
                and id(sub) not in receivers
            ):
                return False
            if isinstance(sub, ast.Global) and name in sub.names:
                return False
            if isinstance(sub, ast.Nonlocal) and name in sub.names and sub in _body_of(fn):
                declared = True
        if not declared:
            return True
    return False


# Methods of a task that keep no reference to it: a callback, a name, a tag.
_TAGGING_METHODS = frozenset({"add_done_callback", "set_name"})


def _not_kept_by(m: ModuleModel, node: ast.AST) -> list[int]:
    """The ids of the names `node` uses without keeping what they hold:
    ``task.add_done_callback(cb)``, ``task.attr = x``, ``setattr(task, "tag", x)``, and
    ``asyncio.run_coroutine_threadsafe(task, loop)``, which takes only a coroutine (a task
    raises TypeError at once and is left running unreferenced)."""
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and (node.attr in _TAGGING_METHODS or isinstance(node.ctx, ast.Store))
    ):
        return [id(node.value)]
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Name):
        func = node.func
        if (isinstance(func, ast.Name) and func.id == "setattr") or m.qualname(
            func
        ) == "asyncio.run_coroutine_threadsafe":
            return [id(node.args[0])]
    return []


def _body_of(fn: ast.AST) -> list[ast.stmt]:
    """The statements of `fn` itself, not of the functions nested in it."""
    found: list[ast.stmt] = []
    stack = list(getattr(fn, "body", []))
    while stack:
        stmt = stack.pop()
        found.append(stmt)
        if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            stack.extend(
                child for child in ast.iter_child_nodes(stmt) if isinstance(child, ast.stmt)
            )
    return found


def _callback(m: ModuleModel, node: ast.Call, func: ast.Attribute) -> None:
    handler = func.attr in _HANDLER_REGISTRARS
    for arg in node.args:
        if func.attr in _SCHEDULERS and _names_task_factory(m, arg):
            # loop.call_later(delay, loop.create_task, coro): the loop drops the task
            message = (
                f"{func.attr}() runs {dotted(arg)}() and drops the task it returns: the task "
                "can be garbage-collected mid-flight"
            )
            _drop(m, node, None, message)
            return
        if isinstance(arg, ast.Lambda) and isinstance(arg.body, ast.Call):
            # fut.add_done_callback(lambda _: create_task(...)), emitter.on("x", lambda e: ...)
            if handler and _keeping_emitter(m):
                return
            dropped_call(m, arg.body, None)
    if func.attr != "add_done_callback" or len(node.args) != 1:
        return
    # task.add_done_callback(X.discard): X is where this module keeps its tasks
    arg = node.args[0]
    if isinstance(arg, ast.Attribute) and arg.attr == "discard":
        state = m.state(_State)
        if isinstance(arg.value, ast.Name):
            state.module_sets.add(arg.value.id)
        elif is_self_attr(arg.value) and m.classes:
            state.class_sets[m.classes[-1]] = cast(ast.Attribute, arg.value).attr


def _keeping_emitter(m: ModuleModel) -> bool:
    """The module imports an emitter that keeps the futures its handlers return."""
    return any(q.startswith(_KEEPING_EMITTERS) for q in m.imports.values())


_FIRST = frozenset({"FIRST_COMPLETED", "FIRST_EXCEPTION"})


def _wait_returns_early(m: ModuleModel, node: ast.Call, q: str) -> None:
    """``await asyncio.wait([recv, asyncio.create_task(stop.wait())],
    return_when=FIRST_COMPLETED)``: a task made inside the call, or bound to a name the
    function never settles, is left pending when another finishes first (or at the
    timeout), unless the caller handles the pending set the wait returns."""
    options = {kw.arg: kw.value for kw in node.keywords}
    when = dotted(options["return_when"]) if "return_when" in options else None
    timeout = options.get("timeout")
    early = (when or "").rpartition(".")[2] in _FIRST or not (
        timeout is None or (isinstance(timeout, ast.Constant) and timeout.value is None)
    )
    if not early or not node.args or m.in_cli or _handles_pending(m, node):
        return  # (a command-line tool's pending task ends with its process)
    message = (
        f"task handed to {q}() and never cancelled or awaited: when the wait returns early "
        "(first completed, or the timeout) it is left pending (cancel the returned pending "
        "set)"
    )
    for sub in ast.walk(node.args[0]):
        if isinstance(sub, ast.Call) and _creates_task(m, sub) and not _sleeps(m, sub):
            m.report(sub, RULE.code, message)
        elif isinstance(sub, ast.Name):
            for value in _left_pending(m, sub.id, node):
                m.report(value, RULE.code, message)


def _handles_pending(m: ModuleModel, call: ast.Call) -> bool:
    """The function binds the wait's result and reads the pending set it names
    (``done, pending = await asyncio.wait(...)`` then ``for t in pending: t.cancel()``)."""
    fn = m.scope.node
    if fn is None:
        return False
    for stmt in ast.walk(fn):
        if not (
            isinstance(stmt, ast.Assign)
            and isinstance(stmt.value, ast.Await)
            and stmt.value.value is call
        ):
            continue
        target = stmt.targets[0]
        if not isinstance(target, ast.Tuple) or len(target.elts) != 2:
            return True  # the whole result is kept: the caller may cancel what is pending
        pending = target.elts[1]
        return isinstance(pending, ast.Name) and any(
            isinstance(sub, ast.Name) and sub.id == pending.id and isinstance(sub.ctx, ast.Load)
            for sub in ast.walk(fn)
        )
    return False


def _sleeps(m: ModuleModel, task: ast.Call) -> bool:
    """``create_task(asyncio.sleep(1))``, or a coroutine of the module that only sleeps and
    returns a constant (``async def timeout(t): await asyncio.sleep(t); return "timeout"``,
    called as ``timeout(t)``, ``self.timeout(t)`` or ``Queue.timeout(t)``): a timer task
    that ends by itself and cannot fail."""
    coro = task.args[0] if task.args else None
    if not isinstance(coro, ast.Call):
        return False
    if m.qualname(coro.func) == "asyncio.sleep":
        return True
    func = coro.func
    fn = m.called_function(func)
    if (  # ``Queue.timeout(t)`` inside class Queue
        fn is None
        and isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and any(c.name == func.value.id for c in m.classes)
    ):
        fn = m.functions.get(func.attr)
    return isinstance(fn, ast.AsyncFunctionDef) and all(
        (
            isinstance(stmt, ast.Expr)
            and (
                isinstance(stmt.value, ast.Constant)
                or (
                    isinstance(stmt.value, ast.Await)
                    and isinstance(stmt.value.value, ast.Call)
                    and m.qualname(stmt.value.value.func) == "asyncio.sleep"
                )
            )
        )
        or (
            isinstance(stmt, ast.Return)
            and (stmt.value is None or isinstance(stmt.value, ast.Constant))
        )
        for stmt in fn.body
    )


# What reads a task without settling it: ``task in done``, ``task.done()``, ``.result()``.
_READS = _TAGGING_METHODS | {"done", "result", "exception", "cancelled", "get_name"}


def _left_pending(m: ModuleModel, name: str, wait: ast.Call) -> list[ast.Call]:
    """The ``name = asyncio.create_task(...)`` calls (not of a sleep) of the function that
    binds `name`, when that function neither cancels, awaits nor hands on the task: only
    the wait's list and reads such as ``task in done`` use it."""
    scope = next((sc for sc in reversed(m.scopes) if name in sc.assigned), None)
    if scope is None or scope.node is None or scope is m.scopes[0]:
        return []
    fn = scope.node
    made = [
        value
        for value in scope.assigned[name]
        if isinstance(value, ast.Call) and _creates_task(m, value) and not _sleeps(m, value)
    ]
    if not made:
        return []
    listed = {id(sub) for sub in ast.walk(wait.args[0])}
    for parent in ast.walk(fn):
        for child in ast.iter_child_nodes(parent):
            if (
                not (
                    isinstance(child, ast.Name)
                    and child.id == name
                    and isinstance(child.ctx, ast.Load)
                )
                or id(child) in listed
            ):
                continue
            reads = (
                isinstance(parent, ast.Compare)
                and child is parent.left
                and all(isinstance(op, ast.In | ast.NotIn) for op in parent.ops)
            ) or (isinstance(parent, ast.Attribute) and parent.attr in _READS)
            if not reads:
                return []  # awaited, cancelled, returned or handed on
    return made


CALLS: dict[str, CallHook] = {"asyncio.wait": _wait_returns_early}
METHODS: dict[str, MethodHook] = dict.fromkeys(
    (*_CALLBACK_REGISTRARS, *_HANDLER_REGISTRARS), _callback
)


def module_end(m: ModuleModel) -> None:
    state = m.state(_State)
    module_sets = {name for name in state.module_sets if name in m.module.assigned}
    for call, statement, cls, scope, message in state.dropped:
        keeper = None
        if cls is not None and cls in state.class_sets:
            keeper = f"self.{state.class_sets[cls]}"
        elif len(module_sets) == 1:
            keeper = next(iter(module_sets))
        edit = None
        if keeper is not None and statement is not None:
            edit = _keep_in(m, statement, call, scope, keeper)
        m.report(call, RULE.code, message, edit)


def _keep_in(
    m: ModuleModel, statement: ast.stmt, call: ast.Call, scope: Scope, keeper: str
) -> Edit | None:
    """Rewrite the statement to keep the task in the module's (or instance's) task set.

    Only a statement alone on its lines inside a function is rewritten, with a name the
    function does not use yet; anything else keeps its message-only fix.
    """
    end_line, end_col = statement.end_lineno, statement.end_col_offset
    if scope.node is None or isinstance(scope.node, ast.Lambda) or end_line is None:
        return None
    first = m.line(statement.lineno)
    last = m.line(end_line)
    indent = first[: statement.col_offset]
    if indent.strip() or last[end_col or 0 :].strip()[:1] not in (b"", b"#"):
        return None  # shares its line with other code (`if x: create_task(...)`, `a; b`)
    used = {n.id for n in ast.walk(scope.node) if isinstance(n, ast.Name)} | scope.params
    name = next(
        candidate
        for candidate in ("task", *(f"task_{i}" for i in range(1, 100)), "")
        if candidate not in used
    )
    if not name:
        return None
    lines = [m.line(n) for n in range(statement.lineno, end_line + 1)]
    lines[-1] = lines[-1][: end_col or 0]
    lines[0] = lines[0][statement.col_offset :]
    newline = "\r\n" if b"\r\n" in m.source else "\n"
    text = newline.encode().join(lines).decode("utf-8")
    pad = indent.decode("utf-8")
    replacement = (
        f"{name} = {text}{newline}{pad}{keeper}.add({name}){newline}"
        f"{pad}{name}.add_done_callback({keeper}.discard)"
    )
    return Edit(statement.lineno, statement.col_offset, end_line, end_col or 0, replacement)
