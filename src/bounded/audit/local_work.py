"""Positive evidence that a retried attempt does only work inside this process.

A retry storm needs a shared dependency: many clients retrying one server together. An
attempt that only touches local files, or only waits for work it handed to its own
executor, has none, so its fixed pause herds nobody. Anything this module cannot show to
be local (a call it does not know, an await of anything else) is not evidence.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator

from bounded.audit.model import ModuleModel, callee_name
from bounded.audit.names import dotted

# Path and file operations (pathlib, builtin open, os, shutil) and the string work around
# them; methods here that other objects also have (replace, split) are local on those too.
_FILE_METHODS = frozenset(
    {
        "read_text",
        "write_text",
        "read_bytes",
        "write_bytes",
        "with_suffix",
        "with_name",
        "exists",
        "is_file",
        "is_dir",
        "mkdir",
        "unlink",
        "touch",
        "rename",
        "replace",
        "stat",
    }
)
_STRING_METHODS = frozenset(
    {"strip", "rstrip", "lstrip", "split", "splitlines", "join", "encode", "decode"}
)
_FILE_MODULES = ("os.", "shutil.", "pathlib.")
_LOCAL_BUILTINS = frozenset({"open", "len", "str"})
# The OSError family that file operations raise, not the network's (ConnectionError,
# TimeoutError): a handler catching only these expects a file to be busy or missing.
_FILE_ERRORS = frozenset(
    {
        "IOError",
        "OSError",
        "FileNotFoundError",
        "FileExistsError",
        "PermissionError",
        "IsADirectoryError",
        "NotADirectoryError",
    }
)
# Awaitables that run a callable on an executor's thread in this process.
_ON_EXECUTOR = frozenset({"run_in_executor", "to_thread"})


def is_local_attempt(m: ModuleModel, node: ast.Try | ast.TryStar) -> bool:
    """The ``try`` only works on local files (catching file errors), or only waits for
    work it hands to an executor (or for futures the code makes itself)."""
    return _file_work(m, node) or _executor_work(m, node)


def _file_work(m: ModuleModel, node: ast.Try | ast.TryStar) -> bool:
    """``try: path.write_text(...); tmp.replace(path) except OSError: ...``."""
    if not node.handlers or not all(_catches_file_errors(h) for h in node.handlers):
        return False
    calls = [sub for sub in _own_nodes(node.body) if isinstance(sub, ast.Call)]
    if any(isinstance(sub, ast.Await) for sub in _own_nodes(node.body)):
        return False
    return any(_file_call(m, c) for c in calls) and all(
        _file_call(m, c) or _string_call(c) for c in calls
    )


def _catches_file_errors(handler: ast.ExceptHandler) -> bool:
    kind = handler.type
    names = kind.elts if isinstance(kind, ast.Tuple) else [kind] if kind is not None else []
    return bool(names) and all(dotted(n) in _FILE_ERRORS for n in names)


def _file_call(m: ModuleModel, call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Name) and func.id in _LOCAL_BUILTINS:
        return True
    q = m.qualname(func)
    if q is not None:
        return q.startswith(_FILE_MODULES)
    return isinstance(func, ast.Attribute) and func.attr in _FILE_METHODS


def _string_call(call: ast.Call) -> bool:
    return isinstance(call.func, ast.Attribute) and call.func.attr in _STRING_METHODS


def _executor_work(m: ModuleModel, node: ast.Try | ast.TryStar) -> bool:
    """Every await of the ``try`` is on work handed to an executor (``await
    asyncio.wait_for(loop.run_in_executor(self._executor, job.run), t)``, also through a
    name), or on a method of this module whose every await is on a future it made."""
    fn = m.scope.node
    if fn is None:
        return False

    def submits(value: ast.expr) -> bool:
        return _submits_to_executor(m, value)

    submitted = _names_bound_to(fn, submits)
    awaits = [sub.value for sub in _own_nodes(node.body) if isinstance(sub, ast.Await)]
    return (
        bool(awaits)
        and any(submits(value) for value in _assigned_in(node))
        and all(_waits_on(m, a, submitted) for a in awaits)
    )


def _waits_on(m: ModuleModel, awaited: ast.expr, local: set[str]) -> bool:
    if (
        isinstance(awaited, ast.Call)
        and m.qualname(awaited.func) in ("asyncio.wait_for", "asyncio.shield")
        and awaited.args
    ):
        awaited = awaited.args[0]
    if isinstance(awaited, ast.Name):
        return awaited.id in local
    if _submits_to_executor(m, awaited):
        return True
    if not (
        isinstance(awaited, ast.Call)
        and isinstance(awaited.func, ast.Attribute)
        and isinstance(awaited.func.value, ast.Name)
        and awaited.func.value.id == "self"
    ):
        return False
    method = m.functions.get(awaited.func.attr)
    if method is None:
        return False
    futures = _names_bound_to(method, _makes_future)
    inner = [sub.value for sub in _own_nodes(method.body) if isinstance(sub, ast.Await)]
    return bool(inner) and all(isinstance(a, ast.Name) and a.id in futures for a in inner)


def _submits_to_executor(m: ModuleModel, value: ast.expr) -> bool:
    """``loop.run_in_executor(pool, fn, ...)`` or ``asyncio.to_thread(fn, ...)`` of a
    callable of the project (not a library's function, such as ``requests.get``)."""
    if not isinstance(value, ast.Call):
        return False
    name = callee_name(value)
    if name not in _ON_EXECUTOR:
        return False
    position = 1 if name == "run_in_executor" else 0
    work = value.args[position] if len(value.args) > position else None
    return isinstance(work, ast.Name | ast.Attribute) and m.qualname(work) is None


def _makes_future(value: ast.expr) -> bool:
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Attribute)
        and value.func.attr == "create_future"
    )


def _assigned_in(node: ast.AST) -> Iterator[ast.expr]:
    """Every value assigned or awaited in `node`, the awaited value unwrapped."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Assign):
            yield sub.value
        elif isinstance(sub, ast.Await):
            yield sub.value
            if isinstance(sub.value, ast.Call):
                yield from sub.value.args


def _names_bound_to(tree: ast.AST, test: Callable[[ast.expr], bool]) -> set[str]:
    """The names `tree` assigns a value that passes `test`."""
    return {
        target.id
        for sub in ast.walk(tree)
        if isinstance(sub, ast.Assign | ast.AnnAssign) and sub.value and test(sub.value)
        for target in (sub.targets if isinstance(sub, ast.Assign) else [sub.target])
        if isinstance(target, ast.Name)
    }


def _own_nodes(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """The nodes of `body`, not of the functions or classes nested in it."""
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))
