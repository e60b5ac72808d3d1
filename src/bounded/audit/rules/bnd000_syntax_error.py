"""BND000: the file could not be read or parsed, so it was not checked (reported by the engine)."""

from __future__ import annotations

from bounded.audit.core import Rule

RULE = Rule(
    "BND000",
    "syntax-error",
    "The file could not be parsed (or is not a regular file, or is too large), so it was not "
    "checked.",
    "fix the syntax error (the file is skipped until then)",
)
