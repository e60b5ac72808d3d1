"""The `bounded` subcommands. Each module adds its commands with `register(app)` and
imports what a command needs inside the command, so starting the CLI stays fast.

`CommandGroup` is the one place where a command that needs a missing extra becomes one
line naming the extra and its install command, and exit status 2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from bounded._extras import MissingExtra, extra_providing

if TYPE_CHECKING:
    from typer._click import Context  # typer's own click, what TyperGroup.invoke takes

__all__ = ["CommandGroup"]


def _missing_extra(exc: BaseException, command: str) -> MissingExtra | None:
    """The extra `exc` (or an exception it was raised from) says is missing, if any."""
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


class CommandGroup(TyperGroup):
    """The `bounded` command group: a command that needs an extra that is not installed
    exits 2 with one line (``bounded mock-llm needs the 'server' extra: pip install
    "bounded[server]"``), never a traceback."""

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except Exception as exc:
            missing = _missing_extra(exc, f"{ctx.command_path} {ctx.invoked_subcommand}")
            if missing is None:
                raise
            typer.echo(str(missing), err=True)
            raise typer.Exit(2) from None
