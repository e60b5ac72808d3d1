"""The `bounded audit` command."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bounded.audit.fix import fix_findings
from bounded.audit.output import FORMATS, render

if TYPE_CHECKING:
    from bounded.audit import AuditReport

__all__ = ["register"]

_FIX_PASSES = 5


def _codes(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [token for token in value.replace(" ", ",").split(",") if token]


def audit_command(
    paths: Annotated[
        list[Path], typer.Argument(help="Files or directories to check.", show_default=False)
    ],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="Output format: text, json or sarif.")
    ] = "text",
    select: Annotated[
        str | None, typer.Option(help="Comma-separated codes or prefixes to report (e.g. BND001).")
    ] = None,
    ignore: Annotated[
        str | None, typer.Option(help="Comma-separated codes or prefixes not to report.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report to FILE.")
    ] = None,
    no_config: Annotated[
        bool, typer.Option("--no-config", help="Ignore [tool.bounded.audit] in pyproject.toml.")
    ] = False,
    fix: Annotated[
        bool, typer.Option("--fix", help="Apply the safe rewrites in place, then report the rest.")
    ] = False,
    diff: Annotated[
        bool,
        typer.Option("--diff", help="Print the safe rewrites as a unified diff; change nothing."),
    ] = False,
) -> None:
    """Find the FM-043 concurrency patterns (BND001-BND015) in Python code.

    Exit status: 0 when clean, 1 when there are findings (with --diff: when there is a
    change to make), 2 on usage errors.
    """
    from bounded import __version__
    from bounded.audit import audit
    from bounded.errors import ConfigError

    if fmt not in FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(FORMATS)}", param_hint="--format")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise typer.BadParameter(
            f"no such file or directory: {', '.join(missing)}", param_hint="PATH"
        )
    if fix and diff:
        raise typer.BadParameter("use one of --fix and --diff", param_hint="--fix/--diff")

    def run() -> AuditReport:
        return audit(paths, select=_codes(select), ignore=_codes(ignore), use_config=not no_config)

    try:
        report = run()
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--select/--ignore") from exc
    except ConfigError as exc:
        typer.echo(f"Error: configuration: {exc}", err=True)
        raise typer.Exit(2) from exc
    if diff:
        changes = fix_findings(report.findings)
        sys.stdout.write(changes.diff())
        raise typer.Exit(1 if changes.changes else 0)
    if fix:
        report = _fix(report, run)
    if output is not None:
        try:
            with output.open("w", encoding="utf-8") as stream:
                render(report, fmt, stream, version=__version__)
        except OSError as exc:
            typer.echo(f"Error: cannot write {output}: {exc.strerror or exc}", err=True)
            raise typer.Exit(2) from exc
    else:
        render(report, fmt, sys.stdout, version=__version__)
    raise typer.Exit(report.exit_code)


def _fix(report: AuditReport, run: Callable[[], AuditReport]) -> AuditReport:
    """Apply fixes until none is left (an edit that overlapped another waits a pass)."""
    fixed = 0
    files: set[str] = set()
    for _ in range(_FIX_PASSES):
        changes = fix_findings(report.findings)
        if not changes.changes:
            break
        changes.write()
        fixed += len(changes.fixed)
        files.update(changes.changes)
        report = run()
    if fixed:
        typer.echo(
            f"Fixed {fixed} finding{'s' if fixed != 1 else ''} in {len(files)} "
            f"file{'s' if len(files) != 1 else ''}.",
            err=True,
        )
    return report


def register(app: typer.Typer) -> None:
    """Add the `audit` command to the `bounded` CLI."""
    app.command("audit")(audit_command)
