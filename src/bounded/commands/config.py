"""`bounded init`, `bounded config check|show`, `bounded grafana`, `bounded alert-rules`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bounded.data import data_text

if TYPE_CHECKING:
    from bounded.config import BoundedConfig

__all__ = ["register"]


config_app = typer.Typer(
    name="config",
    help="Validate a configuration file or show its effective values.",
    no_args_is_help=True,
)

FileArg = Annotated[
    Path, typer.Argument(help="The YAML configuration file.", dir_okay=False, show_default=False)
]


def _load_or_exit(file: Path) -> BoundedConfig:
    """Load FILE, or list every problem by its dotted path and exit 1."""
    from bounded.config import ConfigErrors, load_file  # pydantic: only when needed

    try:
        return load_file(file)
    except ConfigErrors as exc:
        typer.echo(f"{file}: {len(exc.problems)} problem(s)", err=True)
        for problem in exc.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(1) from None


@config_app.command("check")
def check(file: FileArg) -> None:
    """Validate FILE; exit 1 listing every problem by its dotted path."""
    config = _load_or_exit(file)
    sections = ("bulkheads", "rate_limits", "providers", "breakers", "retries", "policies")
    counts = ", ".join(
        f"{len(getattr(config, section))} {section}" for section in (*sections, "databases")
    )
    typer.echo(f"{file}: OK ({counts})")


@config_app.command("show")
def show(
    file: FileArg,
    output: Annotated[str, typer.Option("--format", "-f", help="yaml or json.")] = "yaml",
) -> None:
    """Print the effective configuration: defaults, interpolation and overrides applied."""
    import yaml

    from bounded.config import effective_dict

    data = effective_dict(_load_or_exit(file))
    if output == "json":
        typer.echo(json.dumps(data, indent=2))
    elif output == "yaml":
        typer.echo(yaml.safe_dump(data, sort_keys=False).rstrip())
    else:
        raise typer.BadParameter("must be yaml or json", param_hint="--format")


def init(
    path: Annotated[Path, typer.Argument(help="Where to write the file.")] = Path("bounded.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write the example configuration (the remediation plan's defaults)."""
    if path.exists() and not force:
        typer.echo(f"{path} already exists (use --force to overwrite)", err=True)
        raise typer.Exit(1)
    path.write_text(data_text("bounded.yaml"), encoding="utf-8")
    typer.echo(f"wrote {path}")


def grafana() -> None:
    """Print the Grafana dashboard (JSON) for the `bounded_*` metrics."""
    typer.echo(data_text("grafana-dashboard.json").rstrip())


def alert_rules() -> None:
    """Print the Prometheus alert rules (YAML) for the `bounded_*` metrics."""
    typer.echo(data_text("alert-rules.yml").rstrip())


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `bounded` CLI."""
    app.command("init")(init)
    app.add_typer(config_app, name="config")
    app.command("grafana")(grafana)
    app.command("alert-rules")(alert_rules)
