"""BND010: asyncio.get_event_loop() inside a coroutine (style: it returns the running loop)."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from bounded.audit.core import Edit, Rule
from bounded.audit.model import ModuleModel
from bounded.audit.rules.bnd004_get_event_loop import is_policy_get_event_loop

if TYPE_CHECKING:
    from bounded.audit.model import CallHook, MethodHook

RULE = Rule(
    "BND010",
    "get-event-loop-in-coroutine",
    "asyncio.get_event_loop() inside a coroutine: it returns the running loop, so it works, "
    "but reads as if a loop could be created (style; off by default, fixable).",
    "use `asyncio.get_running_loop()` (`bounded audit --select BND010 --fix` rewrites it)",
    default=False,
)


def _get_event_loop(m: ModuleModel, node: ast.Call, q: str) -> None:
    if not m.in_async:
        return  # BND004
    func = node.func
    edit = None
    if isinstance(func, ast.Attribute) and func.end_lineno is not None:
        # asyncio.get_event_loop -> asyncio.get_running_loop: the attribute name is the last
        # token of the expression, so its place is known exactly
        end = func.end_col_offset or 0
        start = end - len(func.attr)
        edit = Edit(func.end_lineno, start, func.end_lineno, end, "get_running_loop")
    m.report(
        node,
        RULE.code,
        "asyncio.get_event_loop() in a coroutine returns the running loop: use "
        "asyncio.get_running_loop()",
        edit,
    )


def _policy(m: ModuleModel, node: ast.Call, func: ast.Attribute) -> None:
    if m.in_async and is_policy_get_event_loop(m, func):
        m.report(
            node,
            RULE.code,
            "policy.get_event_loop() in a coroutine: use asyncio.get_running_loop()",
        )


CALLS: dict[str, CallHook] = {"asyncio.get_event_loop": _get_event_loop}
METHODS: dict[str, MethodHook] = {"get_event_loop": _policy}
