"""`config_check`: run `bounded config check` on a file written from text or bytes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from bounded.cli import app

ConfigCheck = Callable[[str | bytes], Result]


@pytest.fixture
def config_check(tmp_path: Path) -> ConfigCheck:
    """Write the content to bounded.yaml and return the result of `config check` on it."""

    def check(content: str | bytes) -> Result:
        file = tmp_path / "bounded.yaml"
        if isinstance(content, bytes):
            file.write_bytes(content)
        else:
            file.write_text(content)
        return CliRunner().invoke(app, ["config", "check", str(file)])

    return check
