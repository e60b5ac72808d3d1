"""Loading, interpolation, overrides, validation messages and cross-checks."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from bounded.config import ConfigErrors, effective_dict, load_dict, load_file
from bounded.config.loader import parse_yaml, redact_url
from bounded.data import data_text
from bounded.errors import ConfigError


def problems(data: Any, env: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigErrors) as info:
        load_dict(data, env=env or {})
    return {p.path: p.message for p in info.value.problems}


def test_empty_config_gets_every_default() -> None:
    config = load_dict({}, env={})
    assert config.alert_threshold == 0.8
    assert config.strict is False
    assert config.defaults.bulkhead.limit == 10
    assert config.monitoring.prometheus is None


def test_example_file_has_the_remediation_plan_defaults() -> None:
    config = load_dict(parse_yaml(data_text("bounded.yaml")), env={})
    assert config.defaults.bulkhead.limit == 10
    assert config.bulkheads["stress_test"].limit == 5
    assert config.bulkheads["api_calls"].limit == 20
    rag = config.databases["rag"]
    assert (rag.min_size, rag.max_size) == (5, 20)
    assert (config.rate_limits["openai"].rate, config.rate_limits["openai"].per) == (60, 60)
    assert (config.rate_limits["anthropic"].rate, config.rate_limits["anthropic"].per) == (50, 60)
    assert config.defaults.timeout == 30
    assert config.policies["openai_call"].timeout == 60
    assert rag.acquire_timeout == 10
    assert rag.statement_timeout == 10
    assert config.policies["rag_query"].timeout == 10
    assert config.alert_threshold == 0.8


def test_message_has_dotted_path_bound_and_value() -> None:
    found = problems({"bulkheads": {"llm": {"limit": 0}}})
    assert found == {"bulkheads.llm.limit": "must be >= 1, got 0"}
    with pytest.raises(ConfigErrors) as info:
        load_dict({"bulkheads": {"llm": {"limit": 0}}}, env={})
    assert str(info.value).startswith("bulkheads.llm.limit: must be >= 1, got 0")
    assert isinstance(info.value, ConfigError)
    assert info.value.path == "bulkheads.llm.limit"


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        {
            "bulkheads": {"llm": {"limit": 0, "max_qeue": 3}},
            "rate_limits": {"x": {"rate": "abc", "algorithm": "leaky"}},
            "alert_threshold": 1.5,
            "monitoring": {"prometheus": {"prot": 9464}},
        }
    )
    assert found["bulkheads.llm.limit"] == "must be >= 1, got 0"
    assert found["bulkheads.llm.max_qeue"] == "unknown key 'max_qeue'; did you mean 'max_queue'?"
    assert found["rate_limits.x.rate"] == "must be a number, got a string of 3 characters"
    assert "must be one of 'gcra' or 'sliding_window'" in found["rate_limits.x.algorithm"]
    assert found["alert_threshold"] == "must be <= 1, got 1.5"
    assert found["monitoring.prometheus.prot"] == "unknown key 'prot'; did you mean 'port'?"
    assert len(found) == 6


def test_unknown_section_and_nested_default_keys_suggest() -> None:
    found = problems({"bulkhead": {}, "defaults": {"bulkhed": {"limit": 3}}})
    assert found["bulkhead"] == "unknown key 'bulkhead'; did you mean 'bulkheads'?"
    assert found["defaults.bulkhed"] == "unknown key 'bulkhed'; did you mean 'bulkhead'?"


def test_unknown_key_without_close_match_lists_allowed() -> None:
    found = problems({"breakers": {"x": {"zzz": 1}}})
    assert found["breakers.x.zzz"].startswith("unknown key 'zzz' (allowed: failure_rate,")


def test_rate_shorthand() -> None:
    config = load_dict({"rate_limits": {"a": "60/min", "b": "100/10s", "c": "5/hour"}}, env={})
    assert (config.rate_limits["a"].rate, config.rate_limits["a"].per) == (60, 60)
    assert (config.rate_limits["b"].rate, config.rate_limits["b"].per) == (100, 10)
    assert config.rate_limits["c"].per == 3600
    found = problems({"rate_limits": {"a": "60 per minute"}})
    assert "rate shorthand must look like '60/min'" in found["rate_limits.a"]


def test_interpolation_with_default_and_from_environment() -> None:
    data = {
        "bulkheads": {"llm": {"limit": "${LLM_LIMIT:-7}"}},
        "http_clients": {"x": {"base_url": "http://${HOST}:8080/v1"}},
    }
    config = load_dict(data, env={"HOST": "example.test"})
    assert config.bulkheads["llm"].limit == 7
    assert config.http_clients["x"].base_url == "http://example.test:8080/v1"
    config = load_dict(data, env={"HOST": "h", "LLM_LIMIT": "12"})
    assert config.bulkheads["llm"].limit == 12


def test_unset_variable_without_default_names_path_and_variable() -> None:
    found = problems({"databases": {"rag": {"dsn": "${RAG_DSN}"}}})
    assert found["databases.rag.dsn"].startswith("environment variable RAG_DSN is not set")


def test_dollar_escape_keeps_literal() -> None:
    config = load_dict({"http_clients": {"x": {"headers": {"X-T": "$${NOT}"}}}}, env={})
    assert config.http_clients["x"].headers["X-T"] == "${NOT}"


def test_env_override_is_typed_and_case_insensitive() -> None:
    env = {
        "BOUNDED_BULKHEADS__LLM__LIMIT": "20",
        "BOUNDED_ALERT_THRESHOLD": "0.9",
        "BOUNDED_STRICT": "true",
        "BOUNDED_MONITORING__PROMETHEUS__PORT": "9999",
        "BOUNDED_RATE_LIMITS__OPENAI": "120/min",
        "BOUNDED_UNRELATED": "ignored",  # not an override: a lone BOUNDED_X with no section
    }
    data = {"bulkheads": {"LLM": {"limit": 3, "max_wait": 5}}, "rate_limits": {"openai": None}}
    config = load_dict(data, env=env)
    assert config.bulkheads["LLM"].limit == 20
    assert config.bulkheads["LLM"].max_wait == 5
    assert config.alert_threshold == 0.9
    assert config.strict is True
    assert config.monitoring.prometheus is not None
    assert config.monitoring.prometheus.port == 9999
    assert config.rate_limits["openai"].rate == 120


def test_env_override_that_is_invalid_is_reported_with_its_path() -> None:
    found = problems({"bulkheads": {"llm": None}}, env={"BOUNDED_BULKHEADS__LLM__LIMIT": "lots"})
    assert found == {
        "bulkheads.llm.limit": (
            "must be an integer, got a string of 4 characters "
            "(set by BOUNDED_BULKHEADS__LLM__LIMIT)"
        )
    }
    found = problems({}, env={"BOUNDED_BULKHEDS__LLM__LIMIT": "3"})
    assert found["BOUNDED_BULKHEDS__LLM__LIMIT"] == (
        "unknown section 'bulkheds'; did you mean 'bulkheads'?"
    )


def test_strict_flag_and_backend() -> None:
    assert load_dict({"strict": True}, env={}).strict
    backend = load_dict({"backend": {"type": "redis", "url": "redis://x"}}, env={}).backend
    assert (backend.type, backend.on_error, backend.prefix) == ("redis", "fail_open", "bounded:")
    assert "url is required" in problems({"backend": {"type": "redis"}})["backend"]


def test_cross_check_policy_references() -> None:
    found = problems(
        {
            "bulkheads": {"llm": {}},
            "policies": {"p": {"bulkhead": "llmm", "retry": "nope", "timeout": 60, "deadline": 30}},
        }
    )
    assert found["policies.p.bulkhead"] == (
        "no bulkhead named 'llmm' in bulkheads; did you mean 'llm'?"
    )
    assert found["policies.p.retry"] == "no retry named 'nope' in retries"
    assert "timeout 60 s is longer than the policy deadline 30 s" in found["policies.p.timeout"]


def test_cross_check_database_capacity() -> None:
    found = problems(
        {
            "databases": {"rag": {"dsn": "postgresql://x@h/db", "max_size": 20}},
            "bulkheads": {
                "a": {"limit": 15, "database": "rag"},
                "b": {"limit": 10, "database": "rag"},
                "c": {"database": "ragg"},
            },
        }
    )
    assert found["databases.rag.max_size"] == (
        "the bulkheads bound to this database (a=15, b=10) allow 25 concurrent holders, "
        "more than max_size 20"
    )
    assert found["bulkheads.c.database"] == (
        "no database named 'ragg' in databases; did you mean 'rag'?"
    )


def test_cross_check_min_size_and_backoff() -> None:
    found = problems(
        {
            "databases": {"d": {"min_size": 9, "max_size": 5}},
            "retries": {"r": {"backoff": {"initial": 10, "max": 1}}},
        }
    )
    assert found["databases.d.min_size"] == "must be <= max_size (5), got 9"
    assert found["retries.r.backoff.initial"] == "must be <= backoff.max (1), got 10"


def test_yaml_key_on_is_a_string_and_unknown_exception_rejected() -> None:
    data = parse_yaml("retries:\n  r:\n    on: [TimeoutError, Oops]\n")
    found = problems(data)
    assert "retries.r.on[1]" in found
    assert found["retries.r.on[1]"].endswith("got a string of 4 characters")


def test_yaml_is_loaded_safely() -> None:
    with pytest.raises(ConfigErrors, match="invalid YAML"):
        parse_yaml("a: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigErrors, match="line 2"):
        parse_yaml("a: 1\n b: [\n")


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    file = tmp_path / "b.yaml"
    file.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigErrors, match="must be a mapping"):
        load_file(file, env={})
    with pytest.raises(ConfigErrors, match="cannot read"):
        load_file(tmp_path / "missing.yaml", env={})


def test_empty_entries_mean_defaults(tmp_path: Path) -> None:
    file = tmp_path / "b.yaml"
    file.write_text("bulkheads:\n  llm:\n  db: {limit: 3}\nbreakers:\n")
    config = load_file(file, env={})
    assert config.bulkheads["llm"].limit == 10
    assert config.bulkheads["db"].limit == 3


def test_secrets_never_in_messages() -> None:
    found = problems({"databases": {"d": {"dsn": 12345678}}})
    assert "12345678" not in found["databases.d.dsn"]
    assert "redacted" in found["databases.d.dsn"]


def test_effective_dict_redacts_secrets() -> None:
    config = load_dict(
        {
            "databases": {"d": {"dsn": "postgresql://app:hunter2@db.example/x"}},
            "http_clients": {
                "o": {
                    "headers": {"Authorization": "Bearer sk-abc", "X-Api-Key": "k", "Accept": "a"}
                }
            },
            "backend": {"url": "redis://:pw@h:6379/0"},
        },
        env={},
    )
    shown = effective_dict(config)
    text = repr(shown)
    for secret in ("hunter2", "sk-abc", "'k'", ":pw@"):
        assert secret not in text
    assert shown["databases"]["d"]["dsn"] == "postgresql://app:***@db.example/x"
    assert shown["http_clients"]["o"]["headers"]["Accept"] == "a"
    assert shown["defaults"]["bulkhead"]["limit"] == 10


def test_redact_url_keyword_form() -> None:
    assert redact_url("host=h password=s3cret user=u") == "host=h password=*** user=u"
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"


def test_config_errors_pickle_round_trip() -> None:
    with pytest.raises(ConfigErrors) as info:
        load_dict({"bulkheads": {"a": {"limit": 0}}, "strict": "maybe"}, env={})
    copy = pickle.loads(pickle.dumps(info.value))
    assert str(copy) == str(info.value)
    assert [p.path for p in copy.problems] == [p.path for p in info.value.problems]


def test_cross_checks_still_run_when_other_entries_are_invalid() -> None:
    found = problems(
        {
            "bulkheads": {"llm": {"limit": 0}, "db": {"limit": 5}},
            "policies": {"p": {"bulkhead": "nope"}, "q": {"bulkhead": "llm"}},
        }
    )
    assert found == {
        "bulkheads.llm.limit": "must be >= 1, got 0",
        "policies.p.bulkhead": "no bulkhead named 'nope' in bulkheads",
    }


def test_small_pool_without_min_size_is_valid() -> None:
    config = load_dict({"databases": {"d": {"max_size": 3}}}, env={})
    assert (config.databases["d"].min_size, config.databases["d"].max_size) == (3, 3)


def test_breaker_windows_the_breaker_would_refuse_fail_at_load() -> None:
    found = problems({"breakers": {"b": {"window": 10**15}, "t": {"window_seconds": 5e8}}})
    assert found["breakers.b.window"].startswith("must be <= 1000000")
    assert found["breakers.t.window_seconds"].startswith("must be <= 86400")
