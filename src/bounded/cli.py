"""The `bounded` command line."""

from __future__ import annotations

import typer

from bounded import demo
from bounded.commands import audit, config, mock_llm, stress

app = typer.Typer(
    name="bounded",
    help="Concurrency control and resilience for asyncio services.",
    no_args_is_help=True,
    add_completion=False,
)

for command in (config, audit, mock_llm, demo, stress):
    command.register(app)


def main() -> None:
    """Entry point of the `bounded` console script."""
    app()
