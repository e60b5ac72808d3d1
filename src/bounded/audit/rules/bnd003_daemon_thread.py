"""BND003: threads used as timeouts (join/result with a timeout, a deadline around work sent
to a thread); the daemon threads nobody joins go to BND014 (opt-in)."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from bounded.audit.core import Rule
from bounded.audit.local_work import own_nodes
from bounded.audit.model import TASK_FACTORIES, ClassScope, ModuleModel, ProjectFacts
from bounded.audit.names import dotted, is_self_attr, timeout_arg
from bounded.audit.rules.bnd014_background_daemon_thread import RULE as BACKGROUND

if TYPE_CHECKING:
    from bounded.audit.model import CallHook, MethodHook

RULE = Rule(
    "BND003",
    "daemon-thread",
    "A thread used as a timeout: started, then join(timeout)/result(timeout) or a deadline "
    "around run_in_executor/to_thread, and the caller goes on while the work may still run.",
    "use `await bounded.to_thread(fn, ...)` with `asyncio.timeout(...)`, or a "
    "non-daemon thread that is joined",
)
# A shutdown path may bound its wait for a thread it told to stop.
_TEARDOWN_NAME = re.compile(
    r"stop|close|shutdown|exit|__del__|join|terminate|cleanup|dispose|teardown|quit|finali"
    r"|disconnect",
    re.IGNORECASE,
)


@dataclass(slots=True)
class _State:
    # node, message, the (scope, name) the thread is bound to, and for a thread started
    # in a function: its name, and whether the thread is a background one (its target
    # runs a loop, or it runs on or for a shutdown path)
    daemons: list[tuple[ast.AST, str, tuple[object, str] | None, str | None, bool]] = field(
        default_factory=list
    )
    at_import: set[str] = field(default_factory=set)  # functions called at module level
    # (scope, name) -> the class it was bound to an instance of (``self._bg = _BgThreads()``)
    instances: dict[tuple[object, str] | None, str] = field(default_factory=dict)
    # join(timeout) calls on objects not known to be threads, with what they are bound to
    joins: list[tuple[ast.Call, tuple[object, str] | None]] = field(default_factory=list)
    # class node id -> the self flags its while loops test, with the value that ends them
    stop_flags: dict[int, dict[str, bool]] = field(default_factory=dict)


def _thread(m: ModuleModel, node: ast.Call, q: str) -> None:
    for kw in node.keywords:
        if kw.arg == "daemon" and isinstance(kw.value, ast.Constant) and kw.value.value is True:
            message = f"{q}(daemon=True): killed mid-work at exit, never joined"
            starter = m.scope.name if len(m.scopes) > 1 else None
            background = _target_loops(m, node) or _on_shutdown(m, node)
            m.state(_State).daemons.append(
                (node, message, m.call_targets.get(id(node)), starter, background)
            )


def _tearing_down(m: ModuleModel) -> bool:
    """A shutdown path (a ``stop``/``close``-style function, or one that set an event to
    tell its threads to stop): it may bound its wait for the threads it stops."""
    scope = m.scope
    return scope.stopping or _TEARDOWN_NAME.search(scope.name) is not None


def _on_shutdown(m: ModuleModel, node: ast.Call | None) -> bool:
    """The thread is started on a shutdown path or its target is one (``provider.shutdown``):
    a daemon there is meant not to hold up the exit it serves."""
    if len(m.scopes) > 1 and _TEARDOWN_NAME.search(m.scope.name):
        return True
    target = (
        None
        if node is None
        else next((kw.value for kw in node.keywords if kw.arg == "target"), None)
    )
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
    return bool(name) and _TEARDOWN_NAME.search(name) is not None


def _target_loops(m: ModuleModel, node: ast.Call) -> bool:
    """The thread's target (a function of this module) runs a loop: a background service."""
    target = next((kw.value for kw in node.keywords if kw.arg == "target"), None)
    fn = None
    if isinstance(target, ast.Name):
        fn = m.function_named(target.id)
    elif target is not None and is_self_attr(target) and isinstance(target, ast.Attribute):
        fn = m.functions.get(target.attr)
    if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
        return False
    return any(
        isinstance(sub, ast.While)
        or (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Attribute)
            and sub.func.attr == "run_forever"
        )
        for sub in ast.walk(fn)
    )


def every_call(m: ModuleModel, node: ast.Call) -> None:
    """Remember the functions called at import (a thread they start lives once per process)."""
    if len(m.scopes) == 1 and isinstance(node.func, ast.Name):
        m.state(_State).at_import.add(node.func.id)


def assign(
    m: ModuleModel, node: ast.Assign | ast.AnnAssign, targets: list[ast.expr], value: ast.expr
) -> None:
    built = _class_built(value)
    if _stops_a_loop(m, targets, value):
        m.scope.stopping = True
    for target in targets:
        if built is not None:
            m.state(_State).instances[m.scoped(target)] = built
        if (
            isinstance(target, ast.Attribute)
            and target.attr == "daemon"
            and isinstance(value, ast.Constant)
            and value.value is True
            and (m.imports_threading or m.kind_of(target.value) == "thread")
        ):
            message = "daemon thread: it is killed mid-work at interpreter exit and never joined"
            background = _on_shutdown(m, None)
            m.state(_State).daemons.append(
                (node, message, m.scoped(target.value), None, background)
            )


def _stops_a_loop(m: ModuleModel, targets: list[ast.expr], value: ast.expr) -> bool:
    """``self._stop = True`` where a ``while not self._stop`` loop of the class (or
    ``self._running = False`` for ``while self._running``) is the thread's: a stop flag, so
    the function is a shutdown path."""
    if not (
        m.classes
        and len(targets) == 1
        and is_self_attr(targets[0])
        and isinstance(value, ast.Constant)
        and isinstance(value.value, bool)
    ):
        return False
    cls = m.classes[-1].node
    flags = m.state(_State).stop_flags
    stops = flags.get(id(cls))
    if stops is None:
        stops = flags[id(cls)] = _loop_flags(cls)
    return stops.get(cast(ast.Attribute, targets[0]).attr) is value.value


def _loop_flags(cls: ast.ClassDef) -> dict[str, bool]:
    """The ``self`` flags the class's ``while`` loops test (alone or in an ``and``), with
    the value that ends the loop: True for ``while not self._stop``."""
    stops: dict[str, bool] = {}
    for loop in ast.walk(cls):
        if not isinstance(loop, ast.While):
            continue
        test = loop.test
        and_ = isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And)
        for term in cast(ast.BoolOp, test).values if and_ else [test]:
            negated = isinstance(term, ast.UnaryOp) and isinstance(term.op, ast.Not)
            flag = cast(ast.UnaryOp, term).operand if negated else term
            if is_self_attr(flag):
                stops.setdefault(cast(ast.Attribute, flag).attr, negated)
    return stops


def _class_built(value: ast.expr) -> str | None:
    """The class name of ``Name(...)``/``mod.Name(...)`` (capitalised, maybe private)."""
    func = value.func if isinstance(value, ast.Call) else None
    name = (
        func.id
        if isinstance(func, ast.Name)
        else func.attr
        if isinstance(func, ast.Attribute)
        else ""
    )
    return name if name.lstrip("_")[:1].isupper() else None


def _join(m: ModuleModel, node: ast.Call, func: ast.Attribute) -> None:
    if timeout_arg(node, 0) is None:
        return
    if _tearing_down(m):
        return
    thread = dotted(func.value)
    if thread is not None and (
        _paces_until_end(m, thread)
        or _ends_it_on_timeout(m, node, thread)
        or _ended_before_join(m, node, thread)
        or _after_stop_event(m, node)
    ):
        return
    if m.kind_of(func.value) == "thread":
        m.report(node, RULE.code, _TIMEOUT_JOIN)
        return
    # maybe an instance of a Thread subclass, or of a wrapper whose join(timeout) joins
    # threads: a later method may build it, so it is settled at the module's end
    m.state(_State).joins.append((node, m.scoped(func.value)))


def _paces_until_end(m: ModuleModel, thread: str) -> bool:
    """``while True: t.join(interval); if not t.is_alive(): break; ping()``: a loop that
    runs until the thread ends, so each join(timeout) is a pause, not a deadline on work."""
    loop = m.loops[-1][0] if m.loops and m.loops[-1][1] is m.scope else None
    if not isinstance(loop, ast.While):
        return False
    if _alive_test(loop.test, thread) is True:
        return True  # while t.is_alive(): t.join(1)
    if not (isinstance(loop.test, ast.Constant) and loop.test.value):
        return False  # a deadline or a count may end the loop with the thread running
    return any(
        isinstance(sub, ast.If)
        and _alive_test(sub.test, thread) is False
        and isinstance(sub.body[-1], ast.Break | ast.Return)
        for stmt in loop.body
        for sub in ast.walk(stmt)
    )


def _alive_test(test: ast.expr, thread: str) -> bool | None:
    """True for ``thread.is_alive()``, False for ``not thread.is_alive()``, else None."""
    negated = isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not)
    call = cast(ast.UnaryOp, test).operand if negated else test
    if (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "is_alive"
        and dotted(call.func.value) == thread
    ):
        return not negated
    return None


def _ends_it_on_timeout(m: ModuleModel, node: ast.Call, thread: str) -> bool:
    """``t.join(timeout); if t.is_alive(): ...; self.close_socket()``: when the join times
    out, the code closes what the thread reads from or sets its stop, which ends it: a
    bounded shutdown, not a thread left running."""
    fn = m.scope.node
    if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
        return False
    rest = _after(fn.body, node) or []
    for i, stmt in enumerate(rest):
        if not isinstance(stmt, ast.If):
            continue
        alive = _alive_test(stmt.test, thread)
        if alive is None:
            continue
        timed_out = stmt.body if alive else stmt.orelse
        leaves = bool(timed_out) and isinstance(timed_out[-1], ast.Raise | ast.Return)
        path = timed_out if leaves else [*timed_out, *rest[i + 1 :]]
        return any(_ends_thread(m, sub, thread) for s in path for sub in ast.walk(s))
    return False


def _ended_before_join(m: ModuleModel, node: ast.Call, thread: str) -> bool:
    """``t.start(); ...; sock.close(); t.join(5)``: between the start and the join the code
    closes what the thread works on (or sets its stop), so the join waits a grace period
    for a thread that is ending, not for work that goes on. The object's own thread
    (``self._reader``), started by another method, has run since before this one began."""
    fn = m.scope.node
    if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
        return False
    started = 0  # the line of the thread's last start before the join
    ended: list[int] = []  # the lines of what ends its work before the join
    for sub in own_nodes(fn.body):
        if not isinstance(sub, ast.Call | ast.Assign) or sub.lineno >= node.lineno:
            continue
        if (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Attribute)
            and sub.func.attr == "start"
            and dotted(sub.func.value) == thread
        ):
            started = max(started, sub.lineno)
        elif _ends_thread(m, sub, thread):
            ended.append(sub.lineno)
    return (bool(started) or thread.startswith("self.")) and any(line > started for line in ended)


def _after_stop_event(m: ModuleModel, node: ast.Call) -> bool:
    """``while not stop.is_set(): ... Thread(target=work, args=(stop, ...)).start() ...``
    then ``t.join(10)``: the join follows a loop that ends only once the stop event handed
    to the threads is set, so it waits a grace period for threads told to stop."""
    fn = m.scope.node
    if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
        return False
    events = {
        event
        for sub in own_nodes(fn.body)
        if isinstance(sub, ast.While)
        and (sub.end_lineno or sub.lineno) < node.lineno
        and isinstance(sub.test, ast.UnaryOp)
        and isinstance(sub.test.op, ast.Not)
        and isinstance(call := sub.test.operand, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "is_set"
        and (event := dotted(call.func.value)) is not None
    }
    return bool(events) and any(
        isinstance(sub, ast.Call)
        and m.qualname(sub.func) == "threading.Thread"
        and any(
            dotted(arg) in events
            for kw in sub.keywords
            if kw.arg == "args" and isinstance(kw.value, ast.Tuple | ast.List)
            for arg in kw.value.elts
        )
        for sub in own_nodes(fn.body)
    )


def _after(block: list[ast.stmt], node: ast.Call) -> list[ast.stmt] | None:
    """The statements that run after the one of `block` (or of a block nested in it) that
    holds `node`, innermost first; None if no statement holds it."""
    for i, stmt in enumerate(block):
        if not stmt.lineno <= node.lineno <= (stmt.end_lineno or stmt.lineno):
            continue
        inner = [
            *(getattr(stmt, name, ()) for name in ("body", "orelse", "finalbody")),
            *(handler.body for handler in getattr(stmt, "handlers", ())),
        ]
        for nested in inner:
            found = _after(nested, node)
            if found is not None:
                return [*found, *block[i + 1 :]]
        return block[i + 1 :]
    return None


def _ends_thread(m: ModuleModel, node: ast.AST, thread: str) -> bool:
    """A call that closes or stops something other than the thread (``self.sock.close()``,
    ``self._stop.set()``), or a stop flag its loop reads (``self._stop = True``): what ends
    the thread's work."""
    if isinstance(node, ast.Assign):
        return _stops_a_loop(m, node.targets, node.value)
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return False
    func = node.func
    receiver = dotted(func.value) or ""
    if receiver == thread or func.attr == "join":
        return False
    name = receiver if func.attr == "set" else func.attr
    return _TEARDOWN_NAME.search(name) is not None


_TIMEOUT_JOIN = "thread used as a timeout: join(timeout) returns with the thread still running"


def _timed_join(cls: str) -> Callable[[ProjectFacts], bool]:
    return lambda facts: cls in facts.timed_joins


def class_end(m: ModuleModel, cls: ClassScope) -> None:
    """Tell the run which classes' ``join(timeout)`` waits on threads for that long."""
    if any(base.rsplit(".", 1)[-1] == "Thread" for base in cls.bases) or _forwards_timeout(cls):
        m.facts.timed_joins.add(cls.name)


def _forwards_timeout(cls: ClassScope) -> bool:
    """The class's own ``join`` hands its timeout parameter to a join of what it holds
    (``def join(self, timeout): self.loop.join(timeout=timeout)``), not a separator."""
    for item in cls.node.body:
        if not isinstance(item, ast.FunctionDef) or item.name != "join":
            continue
        params = {a.arg for a in (*item.args.args[1:], *item.args.kwonlyargs)}
        for sub in ast.walk(item):
            if (
                isinstance(sub, ast.Call)
                and isinstance(sub.func, ast.Attribute)
                and sub.func.attr == "join"
                and is_self_attr(sub.func.value)
            ):
                timeout = timeout_arg(sub, 0)
                if (
                    isinstance(timeout, ast.Name)
                    and timeout.id in params
                    and "timeout" in timeout.id.lower()  # not str.join(sep)
                ):
                    return True
    return False


def _set_daemon(m: ModuleModel, node: ast.Call, func: ast.Attribute) -> None:
    if m.kind_of(func.value) == "thread":
        message = "setDaemon(True): daemon thread, killed mid-work at exit"
        m.state(_State).daemons.append((node, message, m.scoped(func.value), None, False))


_TIMEOUT_RESULT = (
    "worker thread used as a timeout: submit(...).result(timeout) returns with the "
    "thread still running (and `with ThreadPoolExecutor()` waits for it)"
)


def _result(m: ModuleModel, node: ast.Call, func: ast.Attribute) -> None:
    if timeout_arg(node, 0) is None:
        return
    receiver = func.value
    if _stopped_around(m, node, _handed_to_worker(m, receiver)):
        return
    kind = m.kind_of_value(receiver) or m.kind_of(receiver) or ""
    if kind == "future":
        m.report(node, RULE.code, _TIMEOUT_RESULT)
    elif kind.startswith("future:"):
        # from a pool of a class the run defines: a ThreadPoolExecutor subclass or not
        m.defer(node, RULE.code, _TIMEOUT_RESULT, _thread_pool(kind[7:]))


def _thread_pool(cls: str) -> Callable[[ProjectFacts], bool]:
    return lambda facts: facts.derives_from(cls, "ThreadPoolExecutor")


def _wait_for(m: ModuleModel, node: ast.Call, q: str) -> None:
    """``asyncio.wait_for(loop.run_in_executor(...), t)``: the timeout cancels the future,
    not the thread. The work may be bound first (``task = run_in_executor(...)``), wrapped
    in a task, or in a local coroutine that only awaits it."""
    work = node.args[0] if node.args else None
    if timeout_arg(node, 1) is None or work is None or _tearing_down(m):
        return
    what = _thread_work(m, work, 5)
    if (
        what is not None
        and not (isinstance(work, ast.Name) and _tracked(m, work.id))
        and not _stopped_on_timeout(m, node, work)
    ):
        m.report(
            node,
            RULE.code,
            f"thread used as a timeout: wait_for({what}(...)) gives up at the timeout with "
            "the thread still running",
        )


# Methods that end the work of the object a thread waits on or reads from (a process, a
# server, a session or socket, a stop event).
_STOPS = frozenset({"terminate", "kill", "stop", "close", "set"})


def _stopped_on_timeout(m: ModuleModel, node: ast.Call, work: ast.expr) -> bool:
    """``try: await wait_for(run_in_executor(None, process.join), t) except TimeoutError:
    process.terminate()``: the timeout ends the work the thread waits on, so the thread
    returns too."""
    if not isinstance(work, ast.Call):
        return False
    # run_in_executor(executor, process.join), to_thread(process.join)
    position = (
        1 if isinstance(work.func, ast.Attribute) and work.func.attr == "run_in_executor" else 0
    )
    waited = work.args[position] if len(work.args) > position else None
    owner = dotted(waited.value) if isinstance(waited, ast.Attribute) else None
    return owner is not None and _stopped_around(m, node, {owner})


def _handed_to_worker(m: ModuleModel, future: ast.expr) -> set[str]:
    """The objects handed with the work to the ``submit(fn, session, ...)`` call that made
    `future` (called in place or bound to a name first)."""
    made = [future] if isinstance(future, ast.Call) else []
    if isinstance(future, ast.Name):
        made = [v for v in m.assignments(future.id) if isinstance(v, ast.Call)]
    return {
        name
        for call in made
        if isinstance(call.func, ast.Attribute) and call.func.attr == "submit"
        for arg in (*call.args[1:], *(kw.value for kw in call.keywords))
        if (name := dotted(arg)) is not None
    }


def _stopped_around(m: ModuleModel, node: ast.Call, owners: set[str]) -> bool:
    """A ``try`` around the wait `node` ends, in a handler or its ``finally``, the work of
    one of `owners` (``process.terminate()``, ``session.close()`` of the session the worker
    reads from): when the wait times out the worker returns too, and is not left running."""
    if not owners:
        return False
    for sub in ast.walk(m.scope.node or ast.Pass()):
        if not isinstance(sub, ast.Try) or not any(
            stmt.lineno <= node.lineno <= (stmt.end_lineno or stmt.lineno) for stmt in sub.body
        ):
            continue
        for part in (*sub.handlers, *sub.finalbody):
            for call in ast.walk(part):
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr in _STOPS
                    and dotted(call.func.value) in owners
                ):
                    return True
    return False


def _tracked(m: ModuleModel, name: str) -> bool:
    """The function keeps the future it timed out on (``self.stuck = task``) or checks
    whether it finished (``task.done()``): the still-running work is not forgotten."""
    for sub in ast.walk(m.scope.node or ast.Pass()):
        if (
            isinstance(sub, ast.Assign)
            and isinstance(sub.value, ast.Name)
            and sub.value.id == name
            and any(isinstance(t, ast.Attribute | ast.Subscript) for t in sub.targets)
        ):
            return True
        if (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Attribute)
            and sub.func.attr == "done"
            and isinstance(sub.func.value, ast.Name)
            and sub.func.value.id == name
        ):
            return True
    return False


def _thread_work(m: ModuleModel, work: ast.expr, depth: int) -> str | None:
    """ "asyncio.to_thread" or "run_in_executor" when awaiting `work` waits on a thread:
    the call itself, a name this function bound only to one, a task wrapping one, or a
    call of a coroutine function whose one statement (maybe in a ``try``) awaits one."""
    if depth == 0:
        return None
    if isinstance(work, ast.Name):
        values = [
            v
            for v in m.assignments(work.id)
            if not (isinstance(v, ast.Constant) and v.value is None)
        ]
        found = {_thread_work(m, v, depth - 1) for v in values}
        return found.pop() if len(found) == 1 and None not in found else None
    if isinstance(work, ast.Await):
        return _thread_work(m, work.value, depth - 1)
    if not isinstance(work, ast.Call):
        return None
    func = work.func
    q = m.qualname(func)
    if q == "asyncio.to_thread":
        return q
    if isinstance(func, ast.Attribute) and func.attr == "run_in_executor":
        return "run_in_executor"
    if q in TASK_FACTORIES or (isinstance(func, ast.Attribute) and func.attr == "create_task"):
        return _thread_work(m, work.args[0], depth - 1) if work.args else None
    fn = m.function_named(func.id) if isinstance(func, ast.Name) else None
    body = fn.body if isinstance(fn, ast.AsyncFunctionDef) else []
    if len(body) == 1 and isinstance(body[0], ast.Try):
        body = body[0].body  # try: await asyncio.to_thread(input) except ...: pass
    if len(body) == 1:
        stmt = body[0]
        value = stmt.value if isinstance(stmt, ast.Expr | ast.Return) else None
        if isinstance(value, ast.Await):
            return _thread_work(m, value.value, depth - 1)
    return None


def _as_completed(m: ModuleModel, node: ast.Call, q: str) -> None:
    """``with ThreadPoolExecutor() as pool: ... as_completed(futures, timeout=t)``: the
    timeout leaves the pool's threads running, and the ``with`` then waits for them."""
    if timeout_arg(node, 1) is None or _tearing_down(m) or m.scope.node is None:
        return
    for sub in ast.walk(m.scope.node):
        if (
            isinstance(sub, ast.With)
            and sub.lineno < node.lineno <= (sub.end_lineno or sub.lineno)
            and any(m.kind_of_value(item.context_expr) == "executor" for item in sub.items)
        ):
            m.report(
                node,
                RULE.code,
                "worker threads used as a timeout: as_completed(..., timeout) gives up with the "
                "threads still running (and the `with` waits for them)",
            )
            return


def _run_sync(m: ModuleModel, node: ast.Call, q: str) -> None:
    """``anyio.to_thread.run_sync(fn, abandon_on_cancel=True)`` under ``anyio.fail_after``
    or ``move_on_after``: the deadline abandons the thread, which runs on."""
    if not any(
        kw.arg in ("abandon_on_cancel", "cancellable")
        and isinstance(kw.value, ast.Constant)
        and kw.value.value is True
        for kw in node.keywords
    ):
        return
    enclosing = m.scope.node
    if enclosing is None or _tearing_down(m):
        return
    for sub in ast.walk(enclosing):
        if (
            isinstance(sub, ast.With | ast.AsyncWith)
            and sub.lineno <= node.lineno <= (sub.end_lineno or sub.lineno)
            and any(
                isinstance(item.context_expr, ast.Call)
                and m.qualname(item.context_expr.func) in _ANYIO_DEADLINES
                for item in sub.items
            )
        ):
            m.report(
                node,
                RULE.code,
                "thread used as a timeout: the deadline abandons to_thread.run_sync(..., "
                "abandon_on_cancel=True) with the thread still running",
            )
            return


_ANYIO_DEADLINES = frozenset({"anyio.fail_after", "anyio.move_on_after"})


CALLS: dict[str, CallHook] = {
    "threading.Thread": _thread,
    "threading.Timer": _thread,
    "asyncio.wait_for": _wait_for,
    "concurrent.futures.as_completed": _as_completed,
    "anyio.to_thread.run_sync": _run_sync,
}


METHODS: dict[str, MethodHook] = {"join": _join, "setDaemon": _set_daemon, "result": _result}


def module_end(m: ModuleModel) -> None:
    # A daemon thread nothing joins is weaker evidence than a timeout that abandons work:
    # whether dying at exit loses anything (a console's reader, a flusher) the code rarely
    # says, so every such thread is the opt-in BND014.
    state = m.state(_State)
    for call, bound in state.joins:
        cls = state.instances.get(bound)
        if cls is not None:
            m.defer(call, RULE.code, _TIMEOUT_JOIN, _timed_join(cls))
    for node, message, bound, starter, loops in state.daemons:
        if bound is not None and bound in m.joined:
            continue
        if _joined_in_a_loop(m, node):
            continue
        if loops or (starter is not None and starter in state.at_import):
            message += " (a long-lived background thread)"
        m.report(node, BACKGROUND.code, message)


def _joined_in_a_loop(m: ModuleModel, node: ast.AST) -> bool:
    """The function that builds the thread joins every thread of a collection
    (``for t in threads: t.join(...)``): the owner waits for them."""
    lineno = getattr(node, "lineno", 0)
    for fn in m.functions.values():
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) or not (
            fn.lineno <= lineno <= (fn.end_lineno or fn.lineno)
        ):
            continue
        for loop in ast.walk(fn):
            if isinstance(loop, ast.For) and isinstance(loop.target, ast.Name):
                var = loop.target.id
                if any(
                    isinstance(sub, ast.Call)
                    and isinstance(sub.func, ast.Attribute)
                    and sub.func.attr == "join"
                    and isinstance(sub.func.value, ast.Name)
                    and sub.func.value.id == var
                    for stmt in loop.body
                    for sub in ast.walk(stmt)
                ):
                    return True
    return False
