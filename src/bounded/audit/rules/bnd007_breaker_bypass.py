"""BND007: a circuit breaker bypassed (the undecorated function called) or forced outside tests."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bounded.audit.core import Rule
from bounded.audit.model import Function, ModuleModel
from bounded.audit.names import dotted, root_name

if TYPE_CHECKING:
    from bounded.audit.model import MethodHook

RULE = Rule(
    "BND007",
    "breaker-bypass",
    "A circuit breaker bypassed (calling the unprotected function) or disabled/forced "
    "outside tests.",
    "call through the breaker (`await cb.call(fn, ...)` or the decorated function)",
)
_BREAKERISH = re.compile(r"breaker|circuit|(?:^|[._])cb$", re.IGNORECASE)
_FORCERS = frozenset({"disable", "force_open", "force_closed", "force_close"})
_LIB_FORCERS = frozenset({"open", "close", "half_open"})  # aiobreaker/pybreaker state changes
_TWIN_PATTERNS = (
    "_{}",
    "__{}",
    "{}_raw",
    "_{}_raw",
    "raw_{}",
    "_raw_{}",
    "{}_impl",
    "_{}_impl",
    "{}_unprotected",
    "_{}_unprotected",
    "{}_unwrapped",
    "{}_unsafe",
    "{}_direct",
)


@dataclass(slots=True)
class _State:
    protected: set[str] = field(default_factory=set)  # functions a breaker decorates
    defined: set[str] = field(default_factory=set)
    twin_calls: list[tuple[ast.Call, str, str]] = field(default_factory=list)


def function(m: ModuleModel, node: Function) -> None:
    state = m.state(_State)
    state.defined.add(node.name)
    for deco in node.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        kind = m.kind_of(target) if isinstance(target, ast.Name | ast.Attribute) else None
        if _BREAKERISH.search(dotted(target) or "") or (kind or "").startswith("breaker:"):
            state.protected.add(node.name)


def every_call(m: ModuleModel, node: ast.Call) -> None:
    func = node.func
    name = None
    if isinstance(func, ast.Attribute):
        if isinstance(func.value, ast.Name) and func.value.id in ("self", "cls"):
            name = func.attr
    elif isinstance(func, ast.Name):
        name = func.id
    if name is not None and (
        name[0] == "_" or "raw" in name or "impl" in name or "unprotected" in name
    ):
        m.state(_State).twin_calls.append((node, name, m.scope.name))


def _wrapped(m: ModuleModel, node: ast.Call, func: ast.Attribute) -> None:
    receiver = func.value
    root = root_name(receiver)
    # a wrapper calling what it wraps (self.__wrapped__, or the argument of the decorator
    # it is nested in) is the wrapper's own business, not a bypass
    own = (isinstance(receiver, ast.Name) and receiver.id in ("self", "cls")) or any(
        root in s.params for s in m.scopes[1:-1]
    )
    if not own:
        m.report(
            node,
            RULE.code,
            f"{dotted(func) or '...__wrapped__'}() calls the undecorated function, bypassing "
            "its decorators (a circuit breaker, if any)",
        )


def _forced(m: ModuleModel, node: ast.Call, func: ast.Attribute) -> None:
    attr = func.attr
    receiver = func.value
    text = dotted(receiver) or ""
    kind = m.kind_of(receiver) if isinstance(receiver, ast.Name | ast.Attribute) else None
    lib = kind == "breaker:lib"
    if (attr in _FORCERS and (_BREAKERISH.search(text) or lib)) or (attr in _LIB_FORCERS and lib):
        m.report(node, RULE.code, f"{text}.{attr}() overrides the circuit breaker outside tests")


METHODS: dict[str, MethodHook] = dict.fromkeys(_FORCERS | _LIB_FORCERS, _forced)
METHODS["__wrapped__"] = _wrapped


def module_end(m: ModuleModel) -> None:
    state = m.state(_State)
    if m.in_test or not state.protected:
        return
    twins: dict[str, str] = {}
    for protected in state.protected:
        for pattern in _TWIN_PATTERNS:
            twin = pattern.format(protected)
            if twin in state.defined and twin not in state.protected:
                twins[twin] = protected
    for node, name, caller in state.twin_calls:
        protected_name = twins.get(name)
        if protected_name is not None and caller != protected_name:
            m.report(
                node,
                RULE.code,
                f"{name}() is the unprotected twin of breaker-guarded {protected_name}(): the "
                "call bypasses the circuit breaker",
            )
