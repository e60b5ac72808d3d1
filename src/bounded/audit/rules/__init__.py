"""The rules `bounded audit` checks: one module per code, named like its docs page.

Each module defines ``RULE`` (code, name, summary, fix) and the hooks it needs on the
semantic model's pass (see `bounded.audit.model.Hooks`): ``CALLS`` (by qualified name),
``METHODS`` (by attribute), and any of the functions ``every_call``,
``async_method_call``, ``dropped_call``, ``assign``, ``loop``, ``async_with``, ``function``,
``scope_end``, ``class_end``, ``module_end``. An opt-in rule whose ``RULE.parent`` names a
default rule holds that rule's weaker evidence: the parent's check reports it, so the
parent's hooks run when either code is selected. The module, its fixture
(``tests/audit/fixtures``) and its page (``docs/rules``) share the name ``RULE.slug``, e.g.
``bnd001_unbounded_gather``.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType
from typing import Any

from bounded.audit.core import Rule
from bounded.audit.model import Hooks

__all__ = ["DEFAULT_CODES", "MODULES", "RULES", "Rule", "expand_codes", "hooks_for"]

MODULES: tuple[ModuleType, ...] = tuple(
    import_module(f"{__name__}.{name}")
    for name in (
        "bnd000_syntax_error",
        "bnd001_unbounded_gather",
        "bnd002_connection_per_operation",
        "bnd003_daemon_thread",
        "bnd004_get_event_loop",
        "bnd005_blocking_call_in_async",
        "bnd006_unclosed_resource",
        "bnd007_breaker_bypass",
        "bnd008_retry_without_jitter",
        "bnd009_dropped_task",
        "bnd010_get_event_loop_in_coroutine",
        "bnd011_injected_fan_out",
        "bnd012_subprocess_in_async",
        "bnd013_short_retry_pause",
        "bnd014_background_daemon_thread",
        "bnd015_unproven_fan_out",
    )
)
RULES: dict[str, Rule] = {module.RULE.code: module.RULE for module in MODULES}
DEFAULT_CODES: frozenset[str] = frozenset(code for code, rule in RULES.items() if rule.default)
_LIST_HOOKS = (
    "every_call",
    "async_method_call",
    "dropped_call",
    "assign",
    "loop",
    "async_with",
    "function",
    "scope_end",
    "class_end",
    "module_end",
)
_HOOKS: dict[frozenset[str], Hooks] = {}


def hooks_for(codes: frozenset[str]) -> Hooks:
    """The hooks of the rules in `codes` (only the selected rules run)."""
    hooks = _HOOKS.get(codes)
    if hooks is not None:
        return hooks
    hooks = Hooks()
    parents = {RULES[code].parent for code in codes if code in RULES}
    for module in MODULES:
        if module.RULE.code not in codes and module.RULE.code not in parents:
            continue
        table: dict[str, Any]
        for name, table in (("CALLS", hooks.calls), ("METHODS", hooks.methods)):
            for key, fn in getattr(module, name, {}).items():
                table.setdefault(key, []).append(fn)
        for name in _LIST_HOOKS:
            fn = getattr(module, name, None)
            if fn is not None:
                getattr(hooks, name).append(fn)
    _HOOKS[codes] = hooks
    return hooks


def expand_codes(tokens: list[str], *, every: bool = False) -> set[str]:
    """Codes named by `tokens`; ValueError if unknown.

    A token is a code, a prefix (``BND00``) or ``ALL``; prefixes and ``ALL`` expand to the
    rules that are on by default, a rule that is off by default must be named (with
    `every`, as for ``ignore``, they expand to every matching rule).
    """
    selected: set[str] = set()
    for raw in tokens:
        token = raw.strip().upper()
        if not token:
            continue
        if token in RULES:
            selected.add(token)  # a rule that is off by default runs when named
            continue
        matched = [code for code in RULES if token == "ALL" or code.startswith(token)]
        if not matched:
            raise ValueError(f"unknown rule code {raw.strip()!r} (known: {', '.join(RULES)})")
        selected.update(code for code in matched if every or RULES[code].default)
    return selected
