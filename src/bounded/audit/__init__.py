"""`bounded audit`: a static check for the FM-043 concurrency patterns (codes BND000-BND015).

Files are parsed with :mod:`ast`; nothing is imported or executed::

    from bounded.audit import audit
    report = audit(["src"])
    for finding in report.findings:
        print(finding.path, finding.line, finding.code, finding.message)
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bounded.audit.config import AuditConfig, find_pyproject, iter_python_files, load_config
from bounded.audit.core import Finding, Rule
from bounded.audit.engine import Project, check_source
from bounded.audit.rules import RULES, expand_codes

__all__ = [
    "MAX_FILE_BYTES",
    "RULES",
    "AuditConfig",
    "AuditError",
    "AuditReport",
    "Finding",
    "Project",
    "Rule",
    "audit",
    "check_source",
    "expand_codes",
    "read_source",
]


# Larger than any hand-written module; a bigger *.py is generated data, not code to review.
MAX_FILE_BYTES = 16 * 1024 * 1024
_FILE_KINDS = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def read_source(path: Path, limit: int = MAX_FILE_BYTES) -> bytes | str:
    """The bytes of regular file `path`, or why it was not read (never blocks on a FIFO).

    Raises OSError when the file cannot be opened or read.
    """
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((k for test, k in _FILE_KINDS if test(info.st_mode)), "not a regular file")
            return f"{kind}, not a regular file: not checked"
        too_big = f"larger than the {limit:,}-byte cap: not checked"
        if info.st_size > limit:
            return too_big
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(limit + 1)
        return too_big if len(data) > limit else data
    finally:
        os.close(fd)


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
        config.ignore = config.ignore | expand_codes(list(ignore), every=True)
    codes = config.codes
    report = AuditReport()
    project = Project(codes)
    for path in iter_python_files(path_list, config):
        name = str(path)
        try:
            data = read_source(path)
        except OSError as exc:
            report.errors.append(AuditError(name, f"cannot read: {exc.strerror or exc}"))
            continue
        report.files += 1
        if isinstance(data, str):
            if "BND000" in codes:
                report.findings.append(Finding(name, 1, 1, "BND000", data))
            continue
        try:
            report.findings.extend(project.check(data, name))
        except Exception as exc:  # a checker bug must not end the run
            report.errors.append(AuditError(name, f"internal error: {type(exc).__name__}: {exc}"))
    report.findings.extend(project.finish())
    report.findings.sort(key=lambda f: (f.path, f.line, f.column, f.code))
    return report
