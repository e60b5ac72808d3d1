"""BND015: a fan-out of unknown size without evidence that it is input-sized I/O (opt-in).

Reported by BND001's check (`bnd001_unbounded_gather`), which finds the fan-outs with no
bound in sight. BND001 reports one only with positive evidence of both halves of the fault:
the size comes from data (a parameter, ``range(n)`` of a computed ``n``, the result of a
listing read: keys, rows, a directory) and each item does I/O (a coroutine that awaits,
or a method of another object). Without that evidence (a collection on ``self``, the
parts of one object, a lookup keyed by one id, a put on an in-memory queue, a coroutine
that only computes, awaitables handed in) the place goes here: weaker evidence, off by
default.
"""

from __future__ import annotations

from bounded.audit.core import Rule

RULE = Rule(
    "BND015",
    "unproven-fan-out",
    "asyncio.gather/wait/as_completed over a collection of unknown size, with no bound in "
    "sight but no evidence that the size comes from data or that each item does I/O "
    "(opt-in: off by default, SARIF level note).",
    "if the collection can grow with the input, use `await bounded.gather(*aws, limit=N)`",
    default=False,
    parent="BND001",
)
