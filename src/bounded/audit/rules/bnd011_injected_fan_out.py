"""BND011: an input-sized fan-out whose per-item coroutine comes from an injected callable.

Reported by BND001's check (`bnd001_unbounded_gather`), which finds the fan-outs: when each
item runs a callable the code received (a parameter, or an attribute holding a function
rather than a method the run defines, such as ``self.embedding_func``), the bound may be
applied where the callable was built (a wrapper that holds a limiter), out of sight of a
static check. Weaker evidence than BND001, so off by default.
"""

from __future__ import annotations

from bounded.audit.core import Rule

RULE = Rule(
    "BND011",
    "injected-fan-out",
    "asyncio.gather/wait/as_completed over an input-sized collection whose per-item "
    "coroutine comes from an injected callable, with no bound in sight (opt-in: off by "
    "default, SARIF level note).",
    "if the callable is not already limited where it is built, use "
    "`await bounded.map(fn, items, limit=N)`",
    default=False,
    parent="BND001",
)
