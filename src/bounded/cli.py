"""The `bounded` command line."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bounded import demo
from bounded.commands import audit, config, exit_on_missing_extra, mock_llm, stress

app = typer.Typer(
    name="bounded",
    help="Concurrency control and resilience for asyncio services.",
    no_args_is_help=True,
    add_completion=False,
    # Help texts are plain text: rich markup would eat "[tool.bounded.audit]" and the like.
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from bounded import __version__

        typer.echo(f"bounded {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    pass


for command in (config, audit, mock_llm, demo, stress):
    command.register(app)


def main() -> None:
    """Entry point of the `bounded` console script and of `python -m bounded`."""
    # The root has no option that takes a value, so the first word is the command.
    command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), "")
    with exit_on_missing_extra(f"bounded {command}"):
        app(prog_name="bounded")
