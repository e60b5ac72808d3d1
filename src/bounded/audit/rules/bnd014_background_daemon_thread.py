"""BND014: a long-lived background daemon thread that nothing joins (opt-in).

Reported by BND003's check (`bnd003_daemon_thread`), which finds the daemon threads: a
thread whose target runs a loop (a flusher, a reader, a watchdog) or that is started once
at import is a background service meant to live as long as the process, so dying with it
is usually the design; whether work is lost then (an unflushed buffer) the code rarely
says. Weaker evidence than a daemon thread started for one unit of work.
"""

from __future__ import annotations

from bounded.audit.core import Rule

RULE = Rule(
    "BND014",
    "background-daemon-thread",
    "A long-lived daemon thread (its target loops, or it is started at import) that nothing "
    "joins (opt-in: off by default, SARIF level note).",
    "stop it with a flag or event and join it on shutdown (an `atexit` handler or the "
    "owner's close method) if its last work must not be lost",
    default=False,
    parent="BND003",
)
