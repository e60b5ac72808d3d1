"""The `bounded` subcommands. Each module adds its commands with `register(app)` and
imports what a command needs inside the command, so starting the CLI stays fast.

`exit_on_missing_extra` is the one place where a command that needs an extra that is not
installed becomes one line naming the extra and its install command, and exit status 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from bounded._extras import MissingExtra, extra_providing

__all__ = ["exit_on_missing_extra"]


def _missing_extra(exc: BaseException, command: str) -> MissingExtra | None:
    """The extra that `exc`, or an exception it was raised from, says is missing."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, MissingExtra):
            return cause
        if isinstance(cause, ModuleNotFoundError):
            extra = extra_providing(cause.name or "")
            if extra is not None:
                return MissingExtra(command, extra, cause.name)
        cause = cause.__cause__
    return None


@contextmanager
def exit_on_missing_extra(command: str) -> Iterator[None]:
    """Turn an error caused by a missing extra inside the block into one line on stderr
    (``bounded mock-llm needs the 'server' extra: pip install "bounded[server]"``) and
    exit status 2; other errors pass through unchanged."""
    try:
        yield
    except Exception as exc:
        missing = _missing_extra(exc, command)
        if missing is None:
            raise
        typer.echo(str(missing), err=True)
        raise SystemExit(2) from None
