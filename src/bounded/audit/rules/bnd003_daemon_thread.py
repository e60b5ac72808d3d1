"""BND003: daemon threads nobody joins, and threads used as timeouts."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bounded.audit.core import Rule
from bounded.audit.model import ModuleModel
from bounded.audit.names import timeout_arg

if TYPE_CHECKING:
    from bounded.audit.model import CallHook, MethodHook

RULE = Rule(
    "BND003",
    "daemon-thread",
    "Daemon threads that nothing joins, or threads used as timeouts with join(timeout).",
    "use `await bounded.to_thread(fn, ...)` with `asyncio.timeout(...)`, or a "
    "non-daemon thread that is joined",
)
# A shutdown path may bound its wait for a thread it told to stop.
_TEARDOWN_NAME = re.compile(
    r"stop|close|shutdown|exit|__del__|join|terminate|cleanup|dispose|teardown|quit|finali",
    re.IGNORECASE,
)


@dataclass(slots=True)
class _State:
    # node, message, the (scope, name) the thread is bound to
    daemons: list[tuple[ast.AST, str, tuple[object, str] | None]] = field(default_factory=list)


def _thread(m: ModuleModel, node: ast.Call, q: str) -> None:
    for kw in node.keywords:
        if kw.arg == "daemon" and isinstance(kw.value, ast.Constant) and kw.value.value is True:
            message = f"{q}(daemon=True): killed mid-work at exit, never joined"
            m.state(_State).daemons.append((node, message, m.call_targets.get(id(node))))


CALLS: dict[str, CallHook] = {"threading.Thread": _thread, "threading.Timer": _thread}


def assign(
    m: ModuleModel, node: ast.Assign | ast.AnnAssign, targets: list[ast.expr], value: ast.expr
) -> None:
    for target in targets:
        if (
            isinstance(target, ast.Attribute)
            and target.attr == "daemon"
            and isinstance(value, ast.Constant)
            and value.value is True
            and (m.imports_threading or m.kind_of(target.value) == "thread")
        ):
            message = "daemon thread: it is killed mid-work at interpreter exit and never joined"
            m.state(_State).daemons.append((node, message, m.scoped(target.value)))


def _join(m: ModuleModel, node: ast.Call, func: ast.Attribute) -> None:
    if m.kind_of(func.value) != "thread" or timeout_arg(node, 0) is None:
        return
    scope = m.scope
    if scope.stopping or _TEARDOWN_NAME.search(scope.name):
        return  # a shutdown path that signalled the thread to stop bounds its wait
    m.report(
        node,
        RULE.code,
        "thread used as a timeout: join(timeout) returns with the thread still running",
    )


def _set_daemon(m: ModuleModel, node: ast.Call, func: ast.Attribute) -> None:
    if m.kind_of(func.value) == "thread":
        message = "setDaemon(True): daemon thread, killed mid-work at exit"
        m.state(_State).daemons.append((node, message, m.scoped(func.value)))


def _result(m: ModuleModel, node: ast.Call, func: ast.Attribute) -> None:
    if timeout_arg(node, 0) is None:
        return
    receiver = func.value
    if m.kind_of_value(receiver) == "future" or m.kind_of(receiver) == "future":
        m.report(
            node,
            RULE.code,
            "worker thread used as a timeout: submit(...).result(timeout) returns with the "
            "thread still running (and `with ThreadPoolExecutor()` waits for it)",
        )


METHODS: dict[str, MethodHook] = {"join": _join, "setDaemon": _set_daemon, "result": _result}


def module_end(m: ModuleModel) -> None:
    for node, message, bound in m.state(_State).daemons:
        if bound is None or bound not in m.joined:
            m.report(node, RULE.code, message)
