"""The `bounded` command line."""

from __future__ import annotations

from typing import Annotated

import typer

from bounded import demo
from bounded.commands import CommandGroup, audit, config, mock_llm

app = typer.Typer(
    name="bounded",
    cls=CommandGroup,
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


for command in (config, audit, mock_llm, demo):
    command.register(app)


def main() -> None:
    """Entry point of the `bounded` console script and of `python -m bounded`."""
    app(prog_name="bounded")
