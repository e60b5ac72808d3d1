"""The `bounded` command line."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="bounded",
    help="Concurrency control and resilience for asyncio services.",
    no_args_is_help=True,
    add_completion=False,
)

# Subcommands: each module defines `register(app)`; add one line per module here.
from bounded.commands.config import register as _register_config  # noqa: E402

_register_config(app)
from bounded.audit.cli import register as _register_audit  # noqa: E402

_register_audit(app)
from bounded.mockllm.cli import register as _register_mock_llm  # noqa: E402

_register_mock_llm(app)
from bounded.demo import register as _register_demo  # noqa: E402

_register_demo(app)


def main() -> None:
    """Entry point of the `bounded` console script."""
    app()
