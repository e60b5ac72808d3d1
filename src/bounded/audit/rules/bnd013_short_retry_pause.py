"""BND013: a retry loop that pauses a constant literal under one second (opt-in).

Reported by BND008's check (`bnd008_retry_without_jitter`), which finds the retry loops:
a sub-second constant pause is how code polls for local state (a server it just started,
an index it just created) or idles after an error in an in-process loop, so on its own it
is weak evidence of a retry storm against a shared dependency.
"""

from __future__ import annotations

from bounded.audit.core import Rule

RULE = Rule(
    "BND013",
    "short-retry-pause",
    "A retry loop that pauses a constant under one second between attempts, no jitter "
    "(opt-in: off by default, SARIF level note).",
    "if it retries a shared dependency, use `bounded.Retry(on=..., "
    "backoff=bounded.Backoff(jitter='full'))`",
    default=False,
    parent="BND008",
)
