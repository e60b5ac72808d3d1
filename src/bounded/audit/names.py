"""Small pure helpers over `ast` nodes that the model and the rules share."""

from __future__ import annotations

import ast

__all__ = [
    "assign_targets",
    "candidate_calls",
    "caught_types",
    "class_name",
    "constructed_class",
    "dotted",
    "flag_switch",
    "is_constant_size",
    "is_self_attr",
    "own_callee",
    "root_name",
    "string_switch",
    "timeout_arg",
]


def dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    if isinstance(node, ast.Name):
        return node.id
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def root_name(node: ast.expr) -> str | None:
    """The name a chain of attributes, calls and subscripts starts from."""
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def is_self_attr(node: ast.expr) -> bool:
    """``self.attr``."""
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    )


def class_name(node: ast.expr) -> str | None:
    """``Server`` for ``Server`` or ``pkg.Server``: the class a name chain names, by the
    capitalised spelling classes have; None for any other name or value."""
    last = (dotted(node) or "").rpartition(".")[2]
    return last if last[:1].isupper() else None


def constructed_class(call: ast.expr) -> str | None:
    """``Server`` for ``Server(...)`` or ``pkg.Server(...)``: the class a call builds; None
    for any other call or value."""
    return class_name(call.func) if isinstance(call, ast.Call) else None


def candidate_calls(value: ast.expr) -> list[ast.Call]:
    """Calls whose result `value` may be: ``c``, ``await c``, ``x or c``, ``c if t else d``,
    and ``await c.__aenter__()`` (a session entered by hand is the session)."""
    if isinstance(value, ast.Await):
        value = value.value
    if (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Attribute)
        and value.func.attr == "__aenter__"
        and isinstance(value.func.value, ast.Call)
    ):
        value = value.func.value
    if isinstance(value, ast.Call):
        return [value]
    if isinstance(value, ast.BoolOp):
        return [c for v in value.values for c in candidate_calls(v)]
    if isinstance(value, ast.IfExp):
        return candidate_calls(value.body) + candidate_calls(value.orelse)
    return []


def is_constant_size(node: ast.expr) -> bool:
    """True for iterables whose size is fixed in the source: range(3), (a, b), "abc"."""
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return not any(isinstance(e, ast.Starred) for e in node.elts)
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str | bytes)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "range"
        and not node.keywords
    ):
        return all(isinstance(a, ast.Constant) and isinstance(a.value, int) for a in node.args)
    return False


def call_argument(call: ast.Call, position: int, keyword: str) -> ast.expr | None:
    """The argument `call` gives the parameter at `position` named `keyword`, if any."""
    value = call.args[position] if len(call.args) > position else None
    for kw in call.keywords:
        if kw.arg == keyword:
            value = kw.value
    return value


def timeout_arg(call: ast.Call, position: int) -> ast.expr | None:
    """The call's timeout (keyword or positional), None when absent or ``None``."""
    value = call_argument(call, position, "timeout")
    if isinstance(value, ast.Constant) and value.value is None:
        return None
    return value


def string_switch(test: ast.expr) -> bool:
    """The test compares with a string constant (``mode == "async"``, ``"claude" in model``,
    ``url.startswith("s3://")``, alone or under ``and``/``or``/``not``): the branches pick a
    configuration, a provider or a mode."""
    if isinstance(test, ast.BoolOp):
        return any(string_switch(value) for value in test.values)
    if isinstance(test, ast.UnaryOp):
        return string_switch(test.operand)
    if isinstance(test, ast.Compare):
        return any(
            isinstance(operand, ast.Constant) and isinstance(operand.value, str)
            for operand in (test.left, *test.comparators)
        )
    return (
        isinstance(test, ast.Call)
        and isinstance(test.func, ast.Attribute)
        and test.func.attr in ("startswith", "endswith")
        and any(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in test.args)
    )


def own_callee(func: ast.expr) -> str | None:
    """The name ``name(...)``, ``self.name(...)`` or ``cls.name(...)`` calls: a function
    or method the module may define; None for any other callee."""
    if isinstance(func, ast.Name):
        return func.id
    if (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id in ("self", "cls")
    ):
        return func.attr
    return None


def assign_targets(node: ast.Assign | ast.AugAssign | ast.AnnAssign) -> list[ast.expr]:
    """What an assignment statement binds."""
    return node.targets if isinstance(node, ast.Assign) else [node.target]


def flag_switch(test: ast.expr, function: ast.AST | None) -> bool:
    """The test reads a flag `function` takes off by default (``if refresh and stale:``
    with ``refresh: bool`` or ``refresh=False``): the branch runs only for the callers that
    turn it on."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return any(flag_switch(value, function) for value in test.values)
    if not isinstance(test, ast.Name) or not isinstance(
        function, ast.FunctionDef | ast.AsyncFunctionDef
    ):
        return False
    args = function.args
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    pairs = [
        *zip(positional, [*defaults, *args.defaults], strict=True),
        *zip(args.kwonlyargs, args.kw_defaults, strict=True),
    ]
    for param, default in pairs:
        if param.arg != test.id:
            continue
        annotated = isinstance(param.annotation, ast.Name) and param.annotation.id == "bool"
        if isinstance(default, ast.Constant) and isinstance(default.value, bool):
            return default.value is False
        return annotated and default is None
    return False


def caught_types(handler: ast.ExceptHandler) -> list[ast.expr]:
    """The exception expressions an ``except`` clause names (none for a bare ``except:``)."""
    kind = handler.type
    return kind.elts if isinstance(kind, ast.Tuple) else [kind] if kind is not None else []


def statement_blocks(
    body: list[ast.stmt], nested: tuple[type[ast.AST], ...]
) -> list[list[ast.stmt]]:
    """`body` and the statement lists nested in it (branches, handlers), not those inside
    a statement of a `nested` kind."""
    blocks = [body]
    stack: list[ast.stmt] = list(body)
    while stack:
        stmt = stack.pop()
        if isinstance(stmt, nested):
            continue
        for name in ("body", "orelse", "finalbody"):
            inner = getattr(stmt, name, None)
            if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                blocks.append(inner)
                stack.extend(inner)
        for handler in getattr(stmt, "handlers", ()):
            blocks.append(handler.body)
            stack.extend(handler.body)
    return blocks


_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def own_returns(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.expr]:
    """The values `fn`'s own ``return`` statements return (not a nested function's)."""
    return [
        stmt.value
        for block in statement_blocks(fn.body, _DEFINITIONS)
        for stmt in block
        if isinstance(stmt, ast.Return) and stmt.value is not None
    ]


def returned_calls(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.Call]:
    """Calls whose result `fn` may return: returned directly (``return Client()``) or
    through a local name it was bound to (``client = Client(); ...; return client``), unless
    the name is a global (``global _client``) or is also stored in a container or on an
    object (``cache[key] = client``): then what it returns is kept, not new on every call."""
    bound: dict[str, list[ast.expr]] = {}
    stored: set[str] = set()
    for block in statement_blocks(fn.body, _DEFINITIONS):
        for stmt in block:
            if isinstance(stmt, ast.Global | ast.Nonlocal):
                stored.update(stmt.names)
            if not isinstance(stmt, ast.Assign | ast.AnnAssign) or stmt.value is None:
                continue
            targets = assign_targets(stmt)
            if len(targets) == 1 and isinstance(targets[0], ast.Name):
                bound.setdefault(targets[0].id, []).append(stmt.value)
            elif isinstance(stmt.value, ast.Name):
                stored.add(stmt.value.id)
    calls: list[ast.Call] = []
    for value in own_returns(fn):
        if isinstance(value, ast.Name):
            values = [] if value.id in stored else bound.get(value.id, [])
        else:
            values = [value]
        calls.extend(c for v in values for c in candidate_calls(v))
    return calls
