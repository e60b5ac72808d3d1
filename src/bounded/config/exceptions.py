"""Exception names in a configuration: built-in short names or any import path.

`retries.<name>.on`, `breakers.<name>.failure_on` and `breakers.<name>.ignore` take a
list of names. A short name (``RateLimited``, ``TransportError``, ...) stands for the
exceptions listed in `SHORT_NAMES`; anything with a dot is an import path
(``openai.RateLimitError``, ``httpx2.TransportError``, ``builtins.OSError``) that must
name an exception class.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable

__all__ = ["SHORT_NAMES", "resolve_exceptions"]

# Short name -> import paths it stands for; paths of packages that are not installed
# are skipped (a short name needs at least one to import).
SHORT_NAMES: dict[str, tuple[str, ...]] = {
    "Exception": ("builtins.Exception",),
    "TransportError": ("httpx2.TransportError",),
    "TimeoutError": ("builtins.TimeoutError",),
    "ConnectionError": (
        "builtins.ConnectionError",
        "asyncpg.PostgresConnectionError",
        "asyncpg.ConnectionDoesNotExistError",
    ),
    "RetryableHTTPError": ("bounded.http.RetryableHTTPError",),
    "HTTPStatusError": ("bounded.http.HTTPStatusError",),
    "Rejected": ("bounded.errors.Rejected",),
    "RateLimited": ("bounded.errors.RateLimited",),
    "CircuitOpen": ("bounded.errors.CircuitOpen",),
    "PoolExhausted": ("bounded.errors.PoolExhausted",),
    "BulkheadFull": ("bounded.errors.BulkheadFull",),
}


def _import(path: str) -> type[BaseException]:
    """The exception class at `path` (``module.Class`` or ``module.Outer.Inner``)."""
    parts = path.split(".")
    if not all(p.isidentifier() for p in parts) or len(parts) < 2:
        raise ValueError(f"{path!r} is not an import path (module.ExceptionClass)")
    # The longest importable module prefix, then attributes.
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            obj: object = importlib.import_module(module_name)
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            raise ValueError(f"cannot import {path!r}: {module_name} has no {attr!r}") from None
        if isinstance(obj, type) and issubclass(obj, BaseException):
            return obj
        raise ValueError(f"{path!r} is not an exception class")
    raise ValueError(f"cannot import {path!r}: no module {parts[0]!r} is installed")


def _resolve_one(name: str) -> tuple[type[BaseException], ...]:
    if "." in name:
        return (_import(name),)
    paths = SHORT_NAMES.get(name)
    if paths is None:
        # Not echoed: a value that fails validation may be something pasted by mistake.
        close = difflib.get_close_matches(name, list(SHORT_NAMES), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"must be a short name ({', '.join(SHORT_NAMES)}) or an import path "
            f"such as 'openai.RateLimitError', got a string of {len(name)} characters{hint}"
        )
    found: list[type[BaseException]] = []
    for path in paths:
        try:
            found.append(_import(path))
        except ValueError:
            continue
    if not found:
        raise ValueError(f"{name!r} needs one of {', '.join(paths)}, and none is installed")
    return tuple(found)


def resolve_exceptions(names: Iterable[str]) -> tuple[type[BaseException], ...]:
    """The exception classes `names` stand for, without duplicates; ValueError if one
    cannot be resolved (the message names it)."""
    out: list[type[BaseException]] = []
    for name in names:
        out += _resolve_one(name)
    return tuple(dict.fromkeys(out))
