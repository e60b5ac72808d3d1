"""Positive evidence that a retried attempt does only work inside this process.

A retry storm needs a shared dependency: many clients retrying one server together. An
attempt that only touches local files, only waits for work it handed to its own
executor, only queries the page of a browser it drives (a DOM read, a click) or only
parses text has none, so its fixed pause herds nobody. Anything this module cannot show
to be local (a call it does not know, an await of anything else) is not evidence.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator

from bounded.audit.model import Function, ModuleModel, callee_name
from bounded.audit.names import assign_targets, caught_types, dotted

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
# What bad content raises (a parser's errors, a value refused): not the network's.
_CONTENT_ERRORS = frozenset({"ValueError", "JSONDecodeError", "UnicodeDecodeError"})
# Awaitables that run a callable on an executor's thread in this process.
_ON_EXECUTOR = frozenset({"run_in_executor", "to_thread"})


def is_local_attempt(m: ModuleModel, node: ast.Try | ast.TryStar) -> bool:
    """The ``try`` only works on local files (catching file errors, or any error when every
    call is plainly a file's), only waits for work it hands to an executor (or for futures
    the code makes itself), only queries a local browser's page, or only takes the next
    client of a listening socket."""
    own = list(own_nodes(node.body))  # walked once, for all four kinds of evidence
    return (
        _file_work(m, node, own)
        or _parse_work(node, own)
        or _executor_work(m, node, own)
        or _page_work(m, own)
        or _accepts(own)
    )


_ACCEPTS = frozenset({"accept", "sock_accept"})


def _accepts(own: list[ast.AST]) -> bool:
    """``try: conn, addr = await loop.sock_accept(sock)``: a listener taking its next
    client. A pause after its error (out of descriptors) herds no one: clients connect
    when they will."""
    calls = [sub for sub in own if isinstance(sub, ast.Call)]
    return bool(calls) and all(
        isinstance(c.func, ast.Attribute) and c.func.attr in _ACCEPTS for c in calls
    )


def is_local_call(m: ModuleModel, call: ast.expr) -> bool:
    """An (awaited) call that does work inside this process or its browser: a file
    operation or a query of a browser page."""
    return isinstance(call, ast.Call) and (
        _file_call(m, call) or is_page_query(m, m.scope.node, call)
    )


def _file_work(m: ModuleModel, node: ast.Try | ast.TryStar, own: list[ast.AST]) -> bool:
    """``try: path.write_text(...); tmp.replace(path) except OSError: ...``, or ``try: with
    open(lock, "w") as f: f.write(...) except Exception: ...``, the exceptions it raises
    itself aside (a status file read until it says ready); `own`: the body's nodes."""
    if not node.handlers:
        return False
    if any(isinstance(sub, ast.Await) for sub in own):
        return False
    calls = [sub for sub in own if isinstance(sub, ast.Call)]
    if not all(_catches_file_errors(h) for h in node.handlers):
        opened = _opened_files(own)
        raised = {id(sub.exc) for sub in own if isinstance(sub, ast.Raise)}
        return bool(calls) and all(_plain_file_call(m, c, opened) or id(c) in raised for c in calls)
    return any(_file_call(m, c) for c in calls) and all(
        _file_call(m, c) or _string_call(c) for c in calls
    )


def _parse_work(node: ast.Try | ast.TryStar, own: list[ast.AST]) -> bool:
    """``try: project = orjson.loads(content) except orjson.JSONDecodeError: ...``: the
    attempt awaits nothing and its handlers catch only what bad content raises, so the
    failure it goes round again for is in this process, not a dependency's outage."""
    return (
        bool(node.handlers)
        and not any(isinstance(sub, ast.Await) for sub in own)
        and all(_catches(h, _CONTENT_ERRORS) for h in node.handlers)
    )


def _opened_files(own: list[ast.AST]) -> set[str]:
    """The names ``with open(...) as f`` binds among the nodes `own`, and the lines read
    from them (``for line in f``)."""
    opened = {
        item.optional_vars.id
        for sub in own
        if isinstance(sub, ast.With)
        for item in sub.items
        if isinstance(item.optional_vars, ast.Name)
        and isinstance(item.context_expr, ast.Call)
        and isinstance(item.context_expr.func, ast.Name)
        and item.context_expr.func.id == "open"
    }
    return opened | {
        sub.target.id
        for sub in own
        if isinstance(sub, ast.For)
        and isinstance(sub.target, ast.Name)
        and isinstance(sub.iter, ast.Name)
        and sub.iter.id in opened
    }


def _plain_file_call(m: ModuleModel, call: ast.Call, opened: set[str]) -> bool:
    """Builtin ``open``, an ``os``/``shutil``/``pathlib`` function, or a method of a file
    the attempt opened: a call no other object could stand behind."""
    func = call.func
    if isinstance(func, ast.Name):
        return func.id == "open"
    q = m.qualname(func)
    if q is not None:
        return q.startswith(_FILE_MODULES)
    return isinstance(func, ast.Attribute) and dotted(func.value) in opened


def _catches_file_errors(handler: ast.ExceptHandler) -> bool:
    return _catches(handler, _FILE_ERRORS)


def _catches(handler: ast.ExceptHandler, errors: frozenset[str]) -> bool:
    """The handler names what it catches, and each of those is one of `errors` (by its
    last name: ``orjson.JSONDecodeError`` is a ``JSONDecodeError``)."""
    names = caught_types(handler)
    return bool(names) and all((dotted(n) or "").rsplit(".", 1)[-1] in errors for n in names)


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


def _executor_work(m: ModuleModel, node: ast.Try | ast.TryStar, own: list[ast.AST]) -> bool:
    """Every await of the ``try`` is on work handed to an executor (``await
    asyncio.wait_for(loop.run_in_executor(self._executor, job.run), t)``, also through a
    name), or on a method of this module whose every await is on a future it made."""
    fn = m.scope.node
    if fn is None:
        return False
    awaits = [sub.value for sub in own if isinstance(sub, ast.Await)]
    if not awaits or not any(_submits_to_executor(m, value) for value in _assigned_in(node)):
        return False
    # only now walk the whole enclosing function for the names bound to such work
    submitted = _names_bound_to(fn, lambda value: _submits_to_executor(m, value))
    return all(_waits_on(m, a, submitted) for a in awaits)


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
    inner = [sub.value for sub in own_nodes(method.body) if isinstance(sub, ast.Await)]
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
        for target in assign_targets(sub)
        if isinstance(target, ast.Name)
    }


def own_nodes(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """The nodes of `body`, not of the functions or classes nested in it."""
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


# JavaScript that reads or drives the page's own document, and JavaScript that reaches a
# server from it (then the query is remote work after all).
_DOM = re.compile(
    r"\b(?:document|window|localStorage|sessionStorage|navigator)\.[A-Za-z_$]"
    r"|querySelector|getElementBy|getBoundingClientRect"
)
_REMOTE_JS = re.compile(r"\bfetch\s*\(|XMLHttpRequest|WebSocket|\.submit\s*\(|location\.\w+\s*=")
# Methods of a page that load a document from a server: not a query of the local page.
_NAVIGATION = frozenset(
    {"get", "goto", "navigate", "reload", "go_back", "go_forward", "open", "fetch", "request"}
)
_PAUSES = frozenset({"asyncio.sleep", "trio.sleep", "anyio.sleep"})


def is_page_query(m: ModuleModel, fn: ast.AST | None, call: ast.expr) -> bool:
    """``page.evaluate("document.title")``, a call on an object `fn` so queries
    (``page.select(...)``, ``page.mouse_click(x, y)``) or on an element such a call
    returned, or a helper of this module whose every await is one: a question to the
    page of a browser this process drives, not a request to a server."""
    return _page_query(m, fn, call, set())


def _page_query(m: ModuleModel, fn: ast.AST | None, call: ast.expr, seen: set[str]) -> bool:
    if not isinstance(call, ast.Call):
        return False
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr in _NAVIGATION:
        return False
    scripts = [_script(arg) for arg in call.args]
    if any(s is not None and _REMOTE_JS.search(s) for s in scripts):
        return False
    if isinstance(func, ast.Attribute) and (
        any(s is not None and _DOM.search(s) for s in scripts)
        or (fn is not None and dotted(func.value) in _pages_of(m, fn))
    ):
        return True
    helper = m.called_function(func)
    if helper is None or helper.name in seen:
        return False
    seen.add(helper.name)
    awaits = [
        sub.value
        for sub in own_nodes(helper.body)
        if isinstance(sub, ast.Await) and not _is_pause(m, sub.value)
    ]
    return bool(awaits) and all(_page_query(m, helper, a, seen) for a in awaits)


def _script(arg: ast.expr) -> str | None:
    """The text of a string (the literal parts of an f-string) passed as JavaScript."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr):
        return "".join(
            v.value for v in arg.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
        )
    return None


class _Pages:
    __slots__ = ("by_function",)

    def __init__(self) -> None:
        self.by_function: dict[int, frozenset[str]] = {}


def _pages_of(m: ModuleModel, fn: ast.AST) -> frozenset[str]:
    """The objects `fn` runs page JavaScript on, and the elements it got from them."""
    known = m.state(_Pages).by_function
    found = known.get(id(fn))
    if found is not None:
        return found
    pages = {
        dotted(sub.func.value)
        for sub in ast.walk(fn)
        if isinstance(sub, ast.Call)
        and isinstance(sub.func, ast.Attribute)
        and sub.func.attr not in _NAVIGATION
        and any((s := _script(a)) is not None and _DOM.search(s) for a in sub.args)
    }
    pages.discard(None)
    elements = {
        target.id
        for sub in ast.walk(fn)
        if isinstance(sub, ast.Assign)
        and isinstance(sub.value, ast.Await)
        and isinstance(sub.value.value, ast.Call)
        and isinstance(sub.value.value.func, ast.Attribute)
        and dotted(sub.value.value.func.value) in pages
        for target in sub.targets
        if isinstance(target, ast.Name)
    }
    found = frozenset(str(p) for p in pages) | elements
    known[id(fn)] = found
    return found


def _is_pause(m: ModuleModel, value: ast.expr) -> bool:
    return isinstance(value, ast.Call) and m.qualname(value.func) in _PAUSES


def _page_work(m: ModuleModel, own: list[ast.AST]) -> bool:
    """Every await of the ``try`` (but its pauses) queries a local browser's page (`own`:
    the nodes of its body)."""
    fn = m.scope.node
    if any(isinstance(sub, ast.AsyncWith | ast.AsyncFor) for sub in own):
        return False
    awaits = [sub.value for sub in own if isinstance(sub, ast.Await)]
    queries = [a for a in awaits if not _is_pause(m, a)]
    return bool(queries) and all(is_page_query(m, fn, a) for a in queries)


# Calls that only parse or rebuild text: string methods, and the json codec.
_TEXT_FUNCTIONS = frozenset({"json.loads", "json.dumps"})


def is_local_function(m: ModuleModel, fn: Function) -> bool:
    """A synchronous function whose every call parses or rebuilds text (``return
    Decoder(strict=False).decode(output)``): retrying it retries local work."""
    if not isinstance(fn, ast.FunctionDef):
        return False
    own = list(own_nodes(fn.body))
    if any(isinstance(sub, ast.Await | ast.Yield | ast.YieldFrom) for sub in own):
        return False
    calls = [sub for sub in own if isinstance(sub, ast.Call)]
    # a class built only to call a text method on (``Decoder(...).decode(text)``)
    receivers = {
        id(c.func.value) for c in calls if _string_call(c) and isinstance(c.func, ast.Attribute)
    }
    return bool(calls) and all(
        _string_call(c)
        or m.qualname(c.func) in _TEXT_FUNCTIONS
        or (id(c) in receivers and (callee_name(c) or "")[:1].isupper())
        for c in calls
    )
