"""``--fix`` and ``--diff``: apply the safe rewrites that findings carry (`Finding.edit`)."""

from __future__ import annotations

import ast
import difflib
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bounded.audit.core import Edit, Finding

__all__ = ["FixResult", "apply_edits", "fix_findings"]


def _offset(lines: list[bytes], line: int, column: int) -> int:
    return sum(len(text) for text in lines[: line - 1]) + column


def apply_edits(source: bytes, edits: list[Edit]) -> tuple[bytes, list[int]]:
    """`source` with `edits` applied, and the indexes of those applied.

    An edit that overlaps one applied before it is skipped (a second pass can apply it).
    """
    lines = source.splitlines(keepends=True)
    spans = sorted(
        (
            _offset(lines, e.line, e.column),
            _offset(lines, e.end_line, e.end_column),
            i,
        )
        for i, e in enumerate(edits)
    )
    out: list[bytes] = []
    position = 0
    applied: list[int] = []
    for start, end, i in spans:
        if start < position:
            continue  # overlaps an edit already applied
        out += [source[position:start], edits[i].text.encode("utf-8")]
        position = end
        applied.append(i)
    out.append(source[position:])
    return b"".join(out), applied


def _parses(source: bytes) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return True


@dataclass(slots=True)
class FixResult:
    """What a fix run changed: the fixed findings and, per file, its text before and after."""

    fixed: list[Finding]
    changes: dict[str, tuple[bytes, bytes]]

    def diff(self) -> str:
        """A unified diff of every change (``--diff``)."""
        parts: list[str] = []
        for path, (before, after) in sorted(self.changes.items()):
            parts.extend(
                difflib.unified_diff(
                    before.decode("utf-8", "replace").splitlines(keepends=True),
                    after.decode("utf-8", "replace").splitlines(keepends=True),
                    fromfile=f"a/{path}",
                    tofile=f"b/{path}",
                )
            )
        return "".join(parts)

    def write(self) -> None:
        """Write the fixed files (``--fix``)."""
        for path, (_, after) in self.changes.items():
            Path(path).write_bytes(after)


def fix_findings(findings: Iterable[Finding]) -> FixResult:
    """Apply the edits of `findings` file by file.

    A file whose result would not parse is left as it was (its findings stay unfixed).
    """
    by_path: dict[str, list[Finding]] = {}
    for finding in findings:
        if finding.edit is not None:
            by_path.setdefault(finding.path, []).append(finding)
    fixed: list[Finding] = []
    changes: dict[str, tuple[bytes, bytes]] = {}
    for path, found in by_path.items():
        before = Path(path).read_bytes()
        after, applied = apply_edits(before, [f.edit for f in found if f.edit is not None])
        if after == before or not _parses(after):
            continue
        fixed.extend(found[i] for i in applied)
        changes[path] = (before, after)
    return FixResult(fixed, changes)
