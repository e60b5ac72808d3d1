"""BND012: a blocking child process (``subprocess.run``, ``os.system``) inside ``async def``.

Opt-in: the call stalls the loop for as long as the child runs, but whether that is a
fault depends on what else shares the loop at that moment (a set-up step before serving,
a one-off tool), which the code does not say.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from bounded.audit.core import Rule
from bounded.audit.model import CHILD_PROCESS_CALLS, PROCESS_WAITS, ModuleModel
from bounded.audit.names import dotted
from bounded.audit.rules.bnd005_blocking_call_in_async import runs_alone

if TYPE_CHECKING:
    from bounded.audit.model import CallHook, MethodHook

RULE = Rule(
    "BND012",
    "subprocess-in-async",
    "A blocking child process inside `async def` stalls the event loop while it runs "
    "(opt-in: off by default, SARIF level note).",
    "use `await asyncio.create_subprocess_exec(...)` or "
    "`await bounded.to_thread(subprocess.run, ...)`",
    default=False,
    parent="BND005",
)


def _child_process(m: ModuleModel, node: ast.Call, q: str) -> None:
    if m.in_async and not runs_alone(m):
        m.report(node, RULE.code, CHILD_PROCESS_CALLS[q] + " inside async def")


def _process_wait(m: ModuleModel, node: ast.Call, func: ast.Attribute) -> None:
    """``proc.wait()`` / ``proc.communicate()`` of a ``subprocess.Popen``."""
    receiver = func.value
    if (
        m.in_async
        and (m.kind_of(receiver) == "process" or m.kind_of_value(receiver) == "process")
        and not runs_alone(m)
        and not _exited(m, node, receiver)
    ):
        m.report(
            node,
            RULE.code,
            f"Popen.{func.attr}() blocks until the child exits inside async def",
        )


CALLS: dict[str, CallHook] = dict.fromkeys(CHILD_PROCESS_CALLS, _child_process)
METHODS: dict[str, MethodHook] = dict.fromkeys(PROCESS_WAITS, _process_wait)


def _exited(m: ModuleModel, node: ast.Call, receiver: ast.expr) -> bool:
    """`node` is inside ``if proc.poll() is not None:``: the child has exited, so waiting
    for it (or reading what is left in its pipes) returns at once."""
    text = dotted(receiver)
    scope = m.scope.node
    if text is None or scope is None:
        return False
    for sub in ast.walk(scope):
        if (
            isinstance(sub, ast.If)
            and isinstance(sub.test, ast.Compare)
            and isinstance(sub.test.ops[0], ast.IsNot)
            and isinstance(sub.test.comparators[0], ast.Constant)
            and sub.test.comparators[0].value is None
            and isinstance(sub.test.left, ast.Call)
            and isinstance(sub.test.left.func, ast.Attribute)
            and sub.test.left.func.attr == "poll"
            and dotted(sub.test.left.func.value) == text
            and any(inner is node for stmt in sub.body for inner in ast.walk(stmt))
        ):
            return True
    return False
