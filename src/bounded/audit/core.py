"""What every part of `bounded audit` shares: a rule's metadata, a finding, a fix's edit."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Edit", "Finding", "Rule"]


@dataclass(frozen=True, slots=True)
class Rule:
    """A check: its code, a short name, what it finds and the one-line fix printed with it.

    A rule that is not `default` runs only when selected (``--select BND010``) and is
    reported at SARIF level ``note``: style (BND010), or the opt-in tier of the default
    rule named by `parent`, whose check finds its places on weaker evidence of the same
    fault (an injected callable, a sub-second pause...).
    """

    code: str
    name: str
    summary: str
    fix: str
    default: bool = True
    parent: str | None = None

    @property
    def slug(self) -> str:
        """``bnd001_unbounded_gather``: the name its module, fixture and docs page share."""
        return f"{self.code.lower()}_{self.name.replace('-', '_')}"


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace the source between two (1-based line, 0-based UTF-8 byte column) places."""

    line: int
    column: int
    end_line: int
    end_column: int
    text: str


@dataclass(frozen=True, slots=True)
class Finding:
    """One reported place: 1-based line and column, rule code and message.

    `edit` is set when ``--fix`` can rewrite the place safely.
    """

    path: str
    line: int
    column: int
    code: str
    message: str
    edit: Edit | None = None

    @property
    def fix(self) -> str:
        """The one-line `bounded` fix for this finding's rule."""
        from bounded.audit.rules import RULES

        return RULES[self.code].fix
