"""Files shipped with bounded: the example configuration, Grafana dashboard, alert rules."""

from __future__ import annotations

from importlib import resources

__all__ = ["data_text"]


def data_text(name: str) -> str:
    """The text of a file shipped in `bounded/data/` (example config, dashboard, rules)."""
    return (resources.files("bounded") / "data" / name).read_text(encoding="utf-8")
