"""BND014: a daemon thread that nothing joins (opt-in).

Reported by BND003's check (`bnd003_daemon_thread`), which finds the daemon threads. A
daemon is often meant to die with the process (a console's input reader, a flusher, a
watchdog, a thread whose target loops or that is started once at import); whether work is
lost at exit the code rarely says. Weaker evidence than a thread used as a timeout
(BND003), which abandons work the caller started.
"""

from __future__ import annotations

from bounded.audit.core import Rule

RULE = Rule(
    "BND014",
    "background-daemon-thread",
    "A daemon thread that nothing joins: killed mid-work at exit (opt-in: off by default, "
    "SARIF level note).",
    "stop it with a flag or event and join it on shutdown (an `atexit` handler or the "
    "owner's close method) if its last work must not be lost",
    default=False,
    parent="BND003",
)
