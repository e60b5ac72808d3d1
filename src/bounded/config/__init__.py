"""Configuration of a `ConcurrencyManager`: schema, loader and CLI (`bounded config ...`)."""

from __future__ import annotations

from bounded.config.loader import ConfigErrors, effective_dict, load_dict, load_file
from bounded.config.models import BoundedConfig

__all__ = ["BoundedConfig", "ConfigErrors", "effective_dict", "load_dict", "load_file"]
