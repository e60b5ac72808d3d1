"""BND012: a blocking child process (``subprocess.run``, ``os.system``) inside ``async def``.

Opt-in: the call stalls the loop for as long as the child runs, but whether that is a
fault depends on what else shares the loop at that moment (a set-up step before serving,
a one-off tool), which the code does not say.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from bounded.audit.core import Rule
from bounded.audit.model import ModuleModel
from bounded.audit.rules.bnd005_blocking_call_in_async import cli_command

if TYPE_CHECKING:
    from bounded.audit.model import CallHook

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
_CHILD_PROCESS = {
    "subprocess.run": "subprocess.run() blocks until the child exits",
    "subprocess.call": "subprocess.call() blocks until the child exits",
    "subprocess.check_call": "subprocess.check_call() blocks until the child exits",
    "subprocess.check_output": "subprocess.check_output() blocks until the child exits",
    "os.system": "os.system() blocks until the command exits",
}


def _child_process(m: ModuleModel, node: ast.Call, q: str) -> None:
    if m.in_async and not cli_command(m):
        m.report(node, RULE.code, _CHILD_PROCESS[q] + " inside async def")


CALLS: dict[str, CallHook] = dict.fromkeys(_CHILD_PROCESS, _child_process)
