"""Check modules: parse, run the semantic model's pass with the selected rules, apply suppressions.

A run over several modules is a :class:`Project`: each module is checked as it is read,
and the findings that depend on other modules of the run (a base class that closes an
attribute, a function holding a semaphore, a backoff helper) are settled at the end.
"""

from __future__ import annotations

import ast
import gc
import re
import sys
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from bounded.audit.core import Finding
from bounded.audit.model import Deferred, ModuleModel, ProjectFacts
from bounded.audit.rules import DEFAULT_CODES, RULES, hooks_for

__all__ = ["Finding", "Project", "check_source"]

_SUPPRESS = re.compile(r"#\s*bounded:\s*ignore(?:\[([A-Za-z0-9_,\s]*)\])?")
_ALL = "*"


def _is_test_path(path: str) -> bool:
    parts = path.replace("\\", "/").split("/")
    name = parts[-1]
    return (
        not {"test", "tests", "testing"}.isdisjoint(parts[:-1])
        or name.startswith("test_")
        or name.endswith("_test.py")
        or name == "conftest.py"
    )


def _line_suppressions(source: bytes) -> dict[int, set[str]]:
    result: dict[int, set[str]] = {}
    text = source.decode("utf-8", "replace")
    for lineno, line in enumerate(text.splitlines(), 1):
        if "bounded:" not in line:
            continue
        match = _SUPPRESS.search(line)
        if match is None:
            continue
        codes = match.group(1)
        if codes is None:
            result[lineno] = {_ALL}
        else:
            result[lineno] = {c.strip().upper() for c in codes.split(",") if c.strip()}
    return result


def _char_column(lines: list[str], line: int, byte_col: int) -> int:
    """ast columns count UTF-8 bytes; report characters, 1-based."""
    if 0 < line <= len(lines):
        text = lines[line - 1]
        if not text.isascii():
            return len(text.encode("utf-8")[:byte_col].decode("utf-8", "replace")) + 1
    return byte_col + 1


def _parse(data: bytes, path: str) -> ast.Module | Finding:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(data, filename=path)
    except SyntaxError as exc:
        line = exc.lineno or 1
        col = exc.offset or 1
        return Finding(path, line, max(col, 1), "BND000", f"syntax error: {exc.msg}")
    except ValueError as exc:  # e.g. null bytes
        return Finding(path, 1, 1, "BND000", f"cannot parse: {exc}")
    except (RecursionError, MemoryError):
        return Finding(path, 1, 1, "BND000", "too deeply nested to parse")


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for one module's parse and pass.

    A module's tree and model are hundreds of thousands of small objects with no
    reference cycles, freed by reference counting; the collector's passes over them
    found nothing and took about a quarter of the run's time.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Project:
    """The modules of one run: check each as it comes, settle cross-module findings last."""

    def __init__(self, codes: Iterable[str] | None = None) -> None:
        self.codes = frozenset(DEFAULT_CODES if codes is None else codes) & frozenset(RULES)
        self.hooks = hooks_for(self.codes - {"BND000"})
        self.facts = ProjectFacts()
        self._deferred: list[tuple[str, list[str], Deferred]] = []

    def check(
        self, source: bytes | str, path: str, *, is_test: bool | None = None
    ) -> list[Finding]:
        """The findings of one module that need no other module; the rest wait for `finish`."""
        data = source.encode("utf-8") if isinstance(source, str) else source
        with _collector_paused():
            return self._check(data, path, _is_test_path(path) if is_test is None else is_test)

    def _check(self, data: bytes, path: str, is_test: bool) -> list[Finding]:
        tree = _parse(data, path)
        if isinstance(tree, Finding):
            return [tree] if "BND000" in self.codes else []
        model = ModuleModel(path, is_test, self.hooks, data)
        try:
            model.run(tree)
        except RecursionError:
            # generated code (a 3,000-term expression) nests deeper than the default limit
            model = ModuleModel(path, is_test, self.hooks, data)
            limit = sys.getrecursionlimit()
            sys.setrecursionlimit(max(limit, 100_000))
            try:
                model.run(tree)
            except RecursionError:
                return [Finding(path, 1, 1, "BND000", "too deeply nested to check")]
            finally:
                sys.setrecursionlimit(limit)
        self._merge(model.facts)
        if not model.findings and not model.deferred:
            return []
        suppressions = _line_suppressions(data) if b"bounded:" in data else {}
        lines = data.decode("utf-8", "replace").splitlines()

        def suppressed(line: int, code: str) -> bool:
            codes = suppressions.get(line)
            return codes is not None and (code in codes or _ALL in codes)

        seen: set[tuple[int, int, str]] = set()
        findings: list[Finding] = []
        for line, col, code, message, edit in sorted(model.findings, key=lambda f: f[:4]):
            key = (line, col, code)
            if code not in self.codes or key in seen or suppressed(line, code):
                continue
            seen.add(key)
            findings.append(
                Finding(path, line, _char_column(lines, line, col), code, message, edit)
            )
        for item in model.deferred:
            # two checks may defer the same place: `finish` keeps the first that holds
            key = (item.line, item.column, item.code)
            if item.code not in self.codes or key in seen or suppressed(item.line, item.code):
                continue
            line_text = lines[item.line - 1 : item.line]
            self._deferred.append((path, line_text, item))
        return findings

    def _merge(self, facts: ProjectFacts) -> None:
        for name, definitions in facts.classes.items():
            self.facts.classes.setdefault(name, []).extend(definitions)
        self.facts.guarded |= facts.guarded
        self.facts.defined |= facts.defined
        for name, where in facts.callers.items():
            self.facts.callers[name] = self.facts.callers.get(name, 0) | where
        for name, how in facts.blocking.items():
            self.facts.blocking[name] = self.facts.blocking.get(name, 0) | how
        for class_name, methods in facts.methods.items():
            known = self.facts.methods.setdefault(class_name, {})
            for name, how in methods.items():
                known[name] = known.get(name, how) & how
        for name, forwards in facts.forwards.items():
            self.facts.forwards[name] = self.facts.forwards.get(name, True) and forwards
        for name, modules in facts.blocking_functions.items():
            self.facts.blocking_functions.setdefault(name, set()).update(modules)
        for key, callees in facts.callees.items():
            self.facts.callees.setdefault(key, set()).update(callees)
        self.facts.not_blocking |= facts.not_blocking
        self.facts.settled = False
        for name, deterministic in facts.helpers.items():
            self.facts.helpers[name] = self.facts.helpers.get(name, True) and deterministic
        for name, counts in facts.counters.items():
            self.facts.counters[name] = self.facts.counters.get(name, True) and counts
        for name, awaits in facts.awaits.items():
            self.facts.awaits[name] = self.facts.awaits.get(name, False) or awaits
        for name, fed in facts.fed.items():
            self.facts.fed.setdefault(name, set()).update(fed)
        for name, spawns in facts.spawns.items():
            self.facts.spawns[name] = self.facts.spawns.get(name, True) and spawns
        self.facts.timed_joins |= facts.timed_joins
        for name, entered in facts.session_openers.items():
            self.facts.session_openers.setdefault(name, set()).update(entered)
        for name, reads in facts.listings.items():
            self.facts.listings.setdefault(name, set()).update(reads)
        for name, attrs in facts.connection_errors.items():
            self.facts.connection_errors.setdefault(name, set()).update(attrs)

    def finish(self) -> list[Finding]:
        """The findings that depended on the whole run, now that it has been read."""
        findings = []
        kept: set[tuple[str, int, int, str]] = set()
        for path, line_text, item in self._deferred:
            key = (path, item.line, item.column, item.code)
            if key not in kept and item.keep(self.facts):
                kept.add(key)
                column = _char_column(line_text, 1, item.column)
                findings.append(Finding(path, item.line, column, item.code, item.message))
        self._deferred.clear()
        return sorted(findings, key=lambda f: (f.path, f.line, f.column, f.code))


def check_source(
    source: bytes | str,
    path: str,
    *,
    is_test: bool | None = None,
    codes: Iterable[str] | None = None,
) -> list[Finding]:
    """Every finding in one module's source (BND000 if it does not parse), sorted by place.

    `codes` are the rules to run (default: those on by default).
    """
    project = Project(codes)
    findings = project.check(source, path, is_test=is_test) + project.finish()
    return sorted(findings, key=lambda f: (f.line, f.column, f.code))
