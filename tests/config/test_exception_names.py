"""Exception names in YAML: short names and import paths, checked when the file loads."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

import bounded
from bounded import ConcurrencyManager
from bounded.config.exceptions import resolve_exceptions
from bounded.config.loader import ConfigErrors, load_dict, parse_yaml


def problems(data: Any) -> dict[str, str]:
    with pytest.raises(ConfigErrors) as info:
        load_dict(data, env={})
    return {p.path: p.message for p in info.value.problems}


def test_short_names_and_import_paths_resolve() -> None:
    assert resolve_exceptions(["RateLimited", "builtins.KeyError"]) == (
        bounded.RateLimited,
        KeyError,
    )
    assert httpx2.TransportError in resolve_exceptions(["TransportError"])
    assert resolve_exceptions(["http.client.HTTPException"])[0].__name__ == "HTTPException"


@pytest.mark.parametrize(
    ("yaml", "path", "message"),
    [
        ("retries:\n  r:\n    on: [nosuchpkg.Error]\n", "retries.r.on[0]", "nosuchpkg"),
        (
            "breakers:\n  b:\n    failure_on: [Exception, builtins.NoSuchError]\n",
            "breakers.b.failure_on[1]",
            "builtins has no 'NoSuchError'",
        ),
        ("breakers:\n  b:\n    ignore: [json.dumps]\n", "breakers.b.ignore[0]", "not an exception"),
    ],
)
def test_an_unimportable_name_is_a_config_error_at_its_dotted_path(
    yaml: str, path: str, message: str
) -> None:
    found = problems(parse_yaml(yaml))
    assert path in found
    assert message in found[path]


async def test_breaker_failure_on_and_ignore_from_yaml() -> None:
    manager = ConcurrencyManager.from_dict(
        parse_yaml(
            "breakers:\n"
            "  llm:\n"
            "    minimum_calls: 1\n"
            "    failure_on: [builtins.OSError, RateLimited]\n"
            "    ignore: [builtins.FileNotFoundError]\n"
        ),
        env={},
    )
    cb = manager.breaker("llm")
    assert cb.failure_on == (OSError, bounded.RateLimited)
    assert cb.ignore == (FileNotFoundError,)

    async def missing() -> None:
        raise FileNotFoundError("x")

    with pytest.raises(FileNotFoundError):
        await cb.call(missing)
    assert cb.state == "closed"


async def test_default_breaker_ignores_rate_limits_and_a_reload_changes_the_lists() -> None:
    manager = ConcurrencyManager.from_dict({"breakers": {"llm": {"minimum_calls": 1}}}, env={})
    cb = manager.breaker("llm")

    async def limited() -> None:
        raise bounded.RateLimited("openai", 2.0)

    for _ in range(5):
        with pytest.raises(bounded.RateLimited):
            await cb.call(limited)
    assert cb.state == "closed"
    assert await manager.reload(
        {"breakers": {"llm": {"minimum_calls": 1, "failure_on": ["RateLimited"]}}}
    )
    assert cb.failure_on == (bounded.RateLimited,)
    with pytest.raises(bounded.RateLimited):
        await cb.call(limited)
    assert cb.state == "open"
