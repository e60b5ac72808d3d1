"""`bounded init`, `bounded config check|show`, `bounded grafana`, `bounded alert-rules`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bounded.cli import app
from bounded.data import data_text

runner = CliRunner()


def test_init_writes_the_example_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "bounded.yaml"
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_text() == data_text("bounded.yaml")
    target.write_text("strict: true\n")
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == 1
    assert target.read_text() == "strict: true\n"
    result = runner.invoke(app, ["init", str(target), "--force"])
    assert result.exit_code == 0
    assert target.read_text() == data_text("bounded.yaml")


def test_check_accepts_the_example(tmp_path: Path) -> None:
    target = tmp_path / "bounded.yaml"
    target.write_text(data_text("bounded.yaml"))
    result = runner.invoke(app, ["config", "check", str(target)])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output


def test_check_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    target = tmp_path / "bad.yaml"
    target.write_text(
        "bulkheads:\n  llm: {limit: 0}\n"
        "policies:\n  p: {bulkhead: nope}\n"
        "monitoring: {intervall: 2}\n"
    )
    result = runner.invoke(app, ["config", "check", str(target)])
    assert result.exit_code == 1
    assert "bulkheads.llm.limit: must be >= 1, got 0" in result.output
    assert "monitoring.intervall: unknown key 'intervall'; did you mean 'interval'?" in (
        result.output
    )


def test_check_reports_cross_check_problems(tmp_path: Path) -> None:
    target = tmp_path / "bad.yaml"
    target.write_text("policies:\n  p: {bulkhead: nope, timeout: 9, deadline: 3}\n")
    result = runner.invoke(app, ["config", "check", str(target)])
    assert result.exit_code == 1
    assert "policies.p.bulkhead: no bulkhead named 'nope'" in result.output
    assert "policies.p.timeout:" in result.output


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_show_prints_effective_config_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    target = tmp_path / "bounded.yaml"
    target.write_text("databases:\n  rag: {dsn: '${RAG_DSN}'}\nbulkheads:\n  llm: {limit: 3}\n")
    monkeypatch.setenv("RAG_DSN", "postgresql://app:hunter2@db.internal/rag")
    monkeypatch.setenv("BOUNDED_BULKHEADS__LLM__LIMIT", "42")
    result = runner.invoke(app, ["config", "show", str(target), "--format", fmt])
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    data = json.loads(result.output) if fmt == "json" else yaml.safe_load(result.output)
    assert data["bulkheads"]["llm"]["limit"] == 42
    assert data["databases"]["rag"]["dsn"] == "postgresql://app:***@db.internal/rag"
    assert data["databases"]["rag"]["max_size"] == 20
    assert data["defaults"]["timeout"] == 30


def test_grafana_and_alert_rules_print_package_data() -> None:
    result = runner.invoke(app, ["grafana"])
    assert result.exit_code == 0
    assert json.loads(result.output)["title"]
    result = runner.invoke(app, ["alert-rules"])
    assert result.exit_code == 0
    assert yaml.safe_load(result.output)["groups"]
