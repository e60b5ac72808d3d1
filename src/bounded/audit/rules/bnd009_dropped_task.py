"""BND009: a task whose reference is dropped (create_task/ensure_future as a statement)."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from bounded.audit.core import Rule
from bounded.audit.model import TASK_FACTORIES, ModuleModel
from bounded.audit.names import dotted

if TYPE_CHECKING:
    from bounded.audit.model import MethodHook

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
_LOOP_GETTERS = ("asyncio.get_running_loop", "asyncio.get_event_loop")


def dropped_call(m: ModuleModel, call: ast.Call) -> None:
    func = call.func
    q = m.qualname(func)
    if q in TASK_FACTORIES:
        m.report(
            call,
            RULE.code,
            f"result of {q}() dropped: the task can be garbage-collected mid-flight",
        )
        return
    if not (isinstance(func, ast.Attribute) and func.attr == "create_task"):
        return
    receiver = func.value
    if isinstance(receiver, ast.Call):
        loopish = m.qualname(receiver.func) in _LOOP_GETTERS
    elif isinstance(receiver, ast.Name | ast.Attribute):
        tail = (dotted(receiver) or "").rsplit(".", 1)[-1]
        loopish = m.kind_of(receiver) == "loop" or tail in ("loop", "_loop")
    else:
        loopish = False
    if loopish:
        m.report(
            call,
            RULE.code,
            "result of loop.create_task() dropped: the task can be garbage-collected mid-flight",
        )


def assign(
    m: ModuleModel, node: ast.Assign | ast.AnnAssign, targets: list[ast.expr], value: ast.expr
) -> None:
    if (
        len(targets) == 1
        and isinstance(targets[0], ast.Name)
        and targets[0].id == "_"
        and isinstance(value, ast.Call)
    ):
        dropped_call(m, value)  # _ = asyncio.create_task(...)


def _callback(m: ModuleModel, node: ast.Call, func: ast.Attribute) -> None:
    for arg in node.args:
        if isinstance(arg, ast.Lambda) and isinstance(arg.body, ast.Call):
            dropped_call(m, arg.body)  # fut.add_done_callback(lambda _: create_task(...))


METHODS: dict[str, MethodHook] = dict.fromkeys(_CALLBACK_REGISTRARS, _callback)
