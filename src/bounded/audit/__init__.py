"""`bounded audit`: a static check for the FM-043 concurrency patterns (codes BND000-BND009).

Files are parsed with :mod:`ast`; nothing is imported or executed::

    from bounded.audit import audit
    report = audit(["src"])
    for finding in report.findings:
        print(finding.path, finding.line, finding.code, finding.message)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bounded.audit.config import AuditConfig, find_pyproject, iter_python_files, load_config
from bounded.audit.engine import Finding, check_source
from bounded.audit.rules import RULES, Rule, expand_codes

__all__ = [
    "RULES",
    "AuditConfig",
    "AuditError",
    "AuditReport",
    "Finding",
    "Rule",
    "audit",
    "check_source",
    "expand_codes",
]


@dataclass(frozen=True, slots=True)
class AuditError:
    """A file that could not be read (a file that does not parse is a BND000 finding)."""

    path: str
    message: str


@dataclass(slots=True)
class AuditReport:
    """The findings of one run, the number of files checked and the files that failed."""

    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    errors: list[AuditError] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when clean, 1 when there are findings or unreadable files."""
        return 1 if self.findings or self.errors else 0


def audit(
    paths: Iterable[str | os.PathLike[str]],
    *,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    config: AuditConfig | None = None,
    use_config: bool = True,
) -> AuditReport:
    """Check every Python file under `paths`; `select`/`ignore` take codes or prefixes.

    Settings come from `config`, else (when `use_config`) from the nearest pyproject.toml's
    ``[tool.bounded.audit]``. `select` replaces the configured selection; `ignore` adds to it.
    Raises ValueError for an unknown code and ConfigError for a bad configuration.
    """
    path_list = [Path(p) for p in paths]
    if config is None:
        pyproject = (
            find_pyproject(path_list[0] if path_list else Path.cwd()) if use_config else None
        )
        config = load_config(pyproject)
    if select is not None:
        config.select = expand_codes(list(select))
    if ignore is not None:
        config.ignore = config.ignore | expand_codes(list(ignore))
    codes = config.codes
    report = AuditReport()
    for path in iter_python_files(path_list, config):
        name = str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            report.errors.append(AuditError(name, f"cannot read: {exc.strerror or exc}"))
            continue
        report.files += 1
        try:
            findings = check_source(data, name)
        except Exception as exc:  # a checker bug must not end the run
            report.errors.append(AuditError(name, f"internal error: {type(exc).__name__}: {exc}"))
            continue
        for finding in findings:
            if finding.code in codes:
                report.findings.append(finding)
    return report
