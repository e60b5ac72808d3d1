"""`[tool.bounded.audit]` in pyproject.toml, and the walk that finds the files to check."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from bounded.audit.rules import DEFAULT_CODES, expand_codes
from bounded.errors import ConfigError

__all__ = ["DEFAULT_EXCLUDES", "AuditConfig", "find_pyproject", "iter_python_files", "load_config"]

DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".venv",
    "venv",
    ".env",
    "env",
    "build",
    "dist",
    ".git",
    ".hg",
    "__pycache__",
    "node_modules",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "*.egg-info",
)
_SECTION = "tool.bounded.audit"


@dataclass(slots=True)
class AuditConfig:
    """What to check: the selected codes and the exclude patterns (gitignore syntax)."""

    select: set[str] = field(default_factory=lambda: set(DEFAULT_CODES))
    ignore: set[str] = field(default_factory=set)
    exclude: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDES))
    extend_exclude: list[str] = field(default_factory=list)
    root: Path | None = None  # directory of the pyproject.toml the settings came from

    @property
    def codes(self) -> set[str]:
        """The codes that will be reported."""
        return self.select - self.ignore


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml at or above `start`."""
    here = start.resolve()
    if here.is_file():
        here = here.parent
    for directory in (here, *here.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _string_list(table: dict[str, object], key: str) -> list[str] | None:
    if key not in table:
        return None
    value = table[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{_SECTION}.{key}", "must be a list of strings")
    return list(value)


def load_config(pyproject: Path | None) -> AuditConfig:
    """Settings from `[tool.bounded.audit]` of `pyproject` (defaults if None or absent)."""
    config = AuditConfig()
    if pyproject is None:
        return config
    config.root = pyproject.parent
    try:
        with pyproject.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(pyproject), f"cannot read: {exc}") from exc
    table = data.get("tool", {}).get("bounded", {}).get("audit", {})
    if not isinstance(table, dict):
        raise ConfigError(_SECTION, "must be a table")
    known = {"select", "ignore", "exclude", "extend-exclude"}
    for key in table:
        if key not in known:
            raise ConfigError(
                f"{_SECTION}.{key}", f"unknown key (known: {', '.join(sorted(known))})"
            )
    for key in ("select", "ignore"):
        tokens = _string_list(table, key)
        if tokens is None:
            continue
        try:
            codes = expand_codes(tokens, every=key == "ignore")
        except ValueError as exc:
            raise ConfigError(f"{_SECTION}.{key}", str(exc)) from exc
        if key == "select":
            config.select = codes
        else:
            config.ignore = codes
    exclude = _string_list(table, "exclude")
    if exclude is not None:
        config.exclude = exclude
    extend = _string_list(table, "extend-exclude")
    if extend is not None:
        config.extend_exclude = extend
    return config


def _gitignore_lines(directory: Path) -> list[str]:
    try:
        return (directory / ".gitignore").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []


class _Excluder:
    """gitignore-style matching against several bases (the walk root, the config root)."""

    __slots__ = ("specs",)

    def __init__(self) -> None:
        self.specs: list[tuple[str, pathspec.GitIgnoreSpec]] = []

    def add(self, base: Path, lines: list[str]) -> None:
        if lines:
            spec = pathspec.GitIgnoreSpec.from_lines(lines)
            self.specs.append((os.path.abspath(base), spec))

    def excluded(self, path: str, is_dir: bool) -> bool:
        for base, spec in self.specs:
            if path == base or not path.startswith(base + os.sep):
                continue
            rel = os.path.relpath(path, base).replace(os.sep, "/")
            if spec.match_file(rel + "/" if is_dir else rel):
                return True
        return False


def iter_python_files(paths: list[Path], config: AuditConfig) -> Iterator[Path]:
    """Files to check: named files always, ``*.py`` under directories minus the excludes."""
    seen: set[str] = set()
    for path in paths:
        if not path.is_dir():  # a named FIFO or device too: the reader reports it
            key = os.path.abspath(path)
            if key not in seen:
                seen.add(key)
                yield path
            continue
        excluder = _Excluder()
        patterns = [*config.exclude, *config.extend_exclude]
        root = os.path.abspath(path)
        excluder.add(path, patterns)
        if config.root is not None and os.path.abspath(config.root) != root:
            project = _Excluder()
            project.add(config.root, patterns)
            project.add(config.root, _gitignore_lines(config.root))
            # a directory named on the command line is walked even if the project excludes
            # it (`bounded audit .venv/lib/.../httpx`); otherwise the project's rules apply
            if not project.excluded(root, True):
                excluder.specs.extend(project.specs)
        for dirpath, dirnames, filenames in os.walk(path):
            absdir = os.path.abspath(dirpath)
            if ".gitignore" in filenames:
                excluder.add(Path(absdir), _gitignore_lines(Path(absdir)))
            dirnames[:] = sorted(
                d for d in dirnames if not excluder.excluded(os.path.join(absdir, d), True)
            )
            for name in sorted(filenames):
                if not name.endswith(".py"):
                    continue
                full = os.path.join(absdir, name)
                if full in seen or excluder.excluded(full, False):
                    continue
                seen.add(full)
                yield Path(dirpath) / name
