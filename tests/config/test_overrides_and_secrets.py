"""Environment overrides that name nothing, and values that must never be printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bounded.cli import app
from bounded.config import ConfigErrors, effective_dict, load_dict
from bounded.config.loader import redact_url
from bounded.manager import ConcurrencyManager

from .conftest import ConfigCheck

runner = CliRunner()

FILE = {"bulkheads": {"llm": {"limit": 10}}, "rate_limits": {"openai": "60/min"}}


def problems(data: object, env: dict[str, str]) -> dict[str, str]:
    with pytest.raises(ConfigErrors) as info:
        load_dict(data, env=env)
    return {p.path: p.message for p in info.value.problems}


# -- overrides (issue 9 item 7) ----------------------------------------------------------


@pytest.mark.parametrize("strict", [False, True])
def test_override_of_an_undeclared_name_is_an_error_naming_the_variable(strict: bool) -> None:
    """`BOUNDED_BULKHEADS__LLMM__LIMIT=33` (a typo) silently created a new bulkhead."""
    var = "BOUNDED_BULKHEADS__LLMM__LIMIT"
    found = problems({**FILE, "strict": strict}, env={var: "33"})
    assert list(found) == [var]
    assert found[var].startswith(
        "overrides bulkheads.llmm, which the file does not declare; did you mean 'llm'?"
    )
    assert "declare it in the file" in found[var]


def test_override_of_a_whole_undeclared_entry_is_an_error() -> None:
    found = problems(FILE, env={"BOUNDED_RATE_LIMITS__ANTHROPIC": "50/min"})
    assert "which the file does not declare" in found["BOUNDED_RATE_LIMITS__ANTHROPIC"]


def test_declared_names_match_case_insensitively_and_empty_entries_count() -> None:
    data = {"bulkheads": {"LLM": {"limit": 3}, "db": None}}
    env = {"BOUNDED_BULKHEADS__llm__LIMIT": "20", "BOUNDED_BULKHEADS__DB__LIMIT": "4"}
    config = load_dict(data, env=env)
    assert (config.bulkheads["LLM"].limit, config.bulkheads["db"].limit) == (20, 4)


def test_fixed_sections_need_no_declaration() -> None:
    env = {"BOUNDED_MONITORING__INTERVAL": "2", "BOUNDED_DEFAULTS__BULKHEAD__LIMIT": "7"}
    config = load_dict({}, env=env)
    assert (config.monitoring.interval, config.defaults.bulkhead.limit) == (2, 7)


def test_a_bad_override_value_names_the_variable_and_is_not_echoed() -> None:
    env = {
        "BOUNDED_BULKHEADS__LLM__LIMIT": "sk-live-0123456789abcdef",
        "BOUNDED_BULKHEADS__LLM__MAX_QEUE": "3",
        "BOUNDED_RATE_LIMITS__OPENAI": "lots/fortnight",
    }
    found = problems(FILE, env=env)
    assert found == {
        "bulkheads.llm.limit": "must be an integer, got a string of 24 characters "
        "(set by BOUNDED_BULKHEADS__LLM__LIMIT)",
        "bulkheads.llm.max_qeue": "unknown key 'max_qeue'; did you mean 'max_queue'? "
        "(set by BOUNDED_BULKHEADS__LLM__MAX_QEUE)",
        "rate_limits.openai": "rate shorthand must look like '60/min' or '100/10s' "
        "(set by BOUNDED_RATE_LIMITS__OPENAI)",
    }


def test_the_manager_refuses_a_typo_in_an_override(tmp_path: Path) -> None:
    path = tmp_path / "bounded.yaml"
    path.write_text("bulkheads:\n  llm: {limit: 10}\n")
    with pytest.raises(ConfigErrors, match="BOUNDED_BULKHEADS__LLMM__LIMIT"):
        ConcurrencyManager.from_file(path, env={"BOUNDED_BULKHEADS__LLMM__LIMIT": "33"})


# -- secrets (issue 8 item 13) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://user:pw@api.example.com/v1?key=qk-SECRET",
            "https://user:***@api.example.com/v1?key=***",
        ),
        (
            "https://x.example/v1?api-version=2024-06-01&api_key=S&apikey=S&token=S",
            "https://x.example/v1?api-version=2024-06-01&api_key=***&apikey=***&token=***",
        ),
        (
            "https://b.example/o?sv=2024&sig=S&X-Amz-Signature=S&X-Amz-Credential=S",
            "https://b.example/o?sv=2024&sig=***&X-Amz-Signature=***&X-Amz-Credential=***",
        ),
        (
            "https://a.example/cb?client_secret=S&accessToken=S&x-goog-api-key=S#access_token=S",
            "https://a.example/cb?client_secret=***&accessToken=***&x-goog-api-key=***"
            "#access_token=***",
        ),
        (
            "https://a.example/?password=S&pwd=S&auth=S",
            "https://a.example/?password=***&pwd=***&auth=***",
        ),
        # names that only look alike stay visible: a file path, a model parameter
        (
            "postgresql://h/db?sslkey=/etc/k.pem&monkey=1",
            "postgresql://h/db?sslkey=/etc/k.pem&monkey=1",
        ),
        ("https://a.example/?key=", "https://a.example/?key="),
    ],
)
def test_redact_url_masks_credential_query_parameters(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_config_show_masks_query_credentials(tmp_path: Path) -> None:
    """Issue 8 item 13: `?key=qk-SECRET` in a base_url was printed by `config show`."""
    target = tmp_path / "bounded.yaml"
    target.write_text(
        "http_clients:\n"
        "  gemini:\n"
        "    base_url: https://user:pw-SECRET@api.example.com/v1?key=qk-SECRET&alt=json\n"
        "backend:\n"
        "  url: redis://:rd-SECRET@cache:6379/0?token=tk-SECRET\n"
    )
    result = runner.invoke(app, ["config", "show", str(target), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "SECRET" not in result.output
    shown = json.loads(result.output)
    assert shown["http_clients"]["gemini"]["base_url"] == (
        "https://user:***@api.example.com/v1?key=***&alt=json"
    )


def test_effective_dict_masks_urls_under_any_key() -> None:
    config = load_dict(
        {"http_clients": {"x": {"headers": {"Referer": "https://a.example/?token=tk-SECRET"}}}},
        env={},
    )
    assert "tk-SECRET" not in repr(effective_dict(config))


def test_config_check_never_echoes_a_value_that_fails(config_check: ConfigCheck) -> None:
    pasted = "sk-live-0123456789abcdef"
    result = config_check(
        "rate_limits:\n"
        f"  openai: {{rate: {pasted}, algorithm: gcar}}\n"
        f"  other: '{pasted}'\n"
        "alert_threshold: 12345678901234567890\n"
        f"retries:\n  r: {{on: [{pasted}]}}\n"
    )
    assert result.exit_code == 1
    assert pasted not in result.output
    assert "12345678901234567890" not in result.output
    assert (
        "rate_limits.openai.algorithm: must be one of 'gcra' or 'sliding_window'" in result.output
    )
    assert "did you mean 'gcra'?" in result.output
    assert "alert_threshold: must be <= 1, got a number of 20 characters" in result.output
    assert "rate_limits.openai.rate: must be a number, got a string of 24 characters" in (
        result.output
    )


def test_overriding_the_rate_of_a_shorthand_keeps_its_period() -> None:
    """`openai: 60/min` plus `..._OPENAI__RATE=120` gave 120 per second, not per minute."""
    env = {"BOUNDED_RATE_LIMITS__OPENAI__RATE": "120"}
    rl = load_dict(FILE, env=env).rate_limits["openai"]
    assert (rl.rate, rl.per) == (120, 60)
    config = load_dict(
        {"defaults": {"rate_limit": "10/s"}}, env={"BOUNDED_DEFAULTS__RATE_LIMIT__BURST": "5"}
    )
    assert config.defaults.rate_limit is not None
    assert (config.defaults.rate_limit.rate, config.defaults.rate_limit.burst) == (10, 5)


def test_an_override_inside_a_value_that_is_not_a_mapping_is_an_error() -> None:
    var = "BOUNDED_RATE_LIMITS__OPENAI__RATE"
    found = problems({"rate_limits": {"openai": "garbage"}}, env={var: "120"})
    assert found[var] == "sets a key inside rate_limits.openai, which is not a mapping"
    assert "rate_limits.openai" in found  # the file's own problem is still reported


def test_an_invalid_variable_name_is_not_echoed() -> None:
    found = problems({"http_clients": {"x": {"base_url": "https://a/${sk-live-SECRET}"}}}, env={})
    assert "SECRET" not in found["http_clients.x.base_url"]
    assert found["http_clients.x.base_url"].startswith("invalid variable name in ${...}")
