"""Load, interpolate, override and validate a `bounded` configuration.

The pipeline, in order: YAML (safe loader only) -> `BOUNDED_<SECTION>__<NAME>__<KEY>`
environment overrides -> `${VAR}` / `${VAR:-default}` interpolation -> pydantic
validation -> cross-checks. Every problem found is collected, and one `ConfigErrors`
lists them all, each with its dotted path.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Union
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, ValidationError

from bounded.config.models import BoundedConfig, DatabaseConfig
from bounded.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "ConfigErrors",
    "effective_dict",
    "load_dict",
    "load_file",
    "parse_yaml",
    "redact_url",
]

ENV_PREFIX = "BOUNDED_"

_SECRET_KEYS = re.compile(r"(password|passwd|secret|token|api[-_]?key|authorization|cookie)", re.I)
_VAR = re.compile(r"\$\$\{|\$\{([^}:]*)(?::-([^}]*))?\}")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ConfigErrors(ConfigError):
    """Several configuration problems at once; `problems` holds one `ConfigError` each."""

    def __init__(self, problems: list[ConfigError], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        if len(self.problems) == 1:
            only = self.problems[0]
            message = only.message + (f" ({source})" if source else "")
            super().__init__(only.path, message)
        else:
            lines = [f"{len(self.problems)} configuration problems{where}:"]
            lines += [f"  {problem}" for problem in self.problems]
            super().__init__("", "\n".join(lines))

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.problems, self.source))


class _Loader(yaml.SafeLoader):
    """SafeLoader where only true/false are booleans, so a key named `on` stays a string."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML with the safe loader; a syntax error becomes a `ConfigError`."""
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigErrors([ConfigError("", f"invalid YAML{where}: {problem}")], source) from None


def load_file(
    path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
) -> BoundedConfig:
    """Read and validate a YAML configuration file; raise `ConfigErrors` listing every problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigErrors([ConfigError("", f"cannot read {file}: {exc.strerror}")]) from None
    return load_dict(parse_yaml(text, str(file)), env=env, source=str(file))


def load_dict(
    data: Any, *, env: Mapping[str, str] | None = None, source: str | None = None
) -> BoundedConfig:
    """Validate an already parsed configuration (overrides and interpolation applied)."""
    environ = os.environ if env is None else env
    problems: list[ConfigError] = []
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigErrors(
            [ConfigError("", f"the configuration must be a mapping, got {type(data).__name__}")],
            source,
        )
    raw = _plain(data)
    _apply_env_overrides(raw, environ, problems)
    raw = _interpolate(raw, "", environ, problems)
    _fill_empty_entries(raw)
    config: BoundedConfig | None = None
    try:
        config = BoundedConfig.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        problems.extend(_convert(exc))
        # Cross-check what is valid, so one run reports every problem: drop the invalid
        # entries, and do not report references to them as missing.
        pruned, invalid = _prune(raw, errors)
        try:
            partial = BoundedConfig.model_validate(pruned)
        except ValidationError:
            pass
        else:
            problems.extend(cross_check(partial, invalid=invalid))
    if config is not None:
        problems.extend(cross_check(config))
    if problems:
        raise ConfigErrors(_unique(problems), source)
    assert config is not None
    return config


def _prune(raw: dict[str, Any], errors: Any) -> tuple[dict[str, Any], set[tuple[str, str]]]:
    pruned = dict(raw)
    invalid: set[tuple[str, str]] = set()
    for error in errors:
        loc = error["loc"]
        if not loc:
            continue
        section = str(loc[0])
        entries = pruned.get(section)
        if section in _DICT_SECTIONS and len(loc) > 1 and isinstance(entries, dict):
            name = str(loc[1])
            pruned[section] = {k: v for k, v in entries.items() if k != name}
            invalid.add((section, name))
        else:
            pruned.pop(section, None)
            invalid.add((section, "*"))
    return pruned, invalid


def _unique(problems: list[ConfigError]) -> list[ConfigError]:
    seen: set[tuple[str, str]] = set()
    out = []
    for problem in problems:
        key = (problem.path, problem.message)
        if key not in seen:
            seen.add(key)
            out.append(problem)
    return out


def _plain(value: Any) -> Any:
    """Deep copy into plain dicts/lists with string keys (YAML may give int keys)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


_DICT_SECTIONS = (
    "bulkheads",
    "rate_limits",
    "breakers",
    "retries",
    "policies",
    "databases",
    "http_clients",
)


def _fill_empty_entries(raw: dict[str, Any]) -> None:
    # `bulkheads: {llm: }` means "llm with every default".
    for section in _DICT_SECTIONS:
        entries = raw.get(section)
        if isinstance(entries, dict):
            for name, value in entries.items():
                if value is None:
                    entries[name] = {}
    for key in ("defaults", "backend", "monitoring", *_DICT_SECTIONS):
        if key in raw and raw[key] is None:
            raw[key] = {}


# -- environment overrides ---------------------------------------------------------------


def _norm(key: str) -> str:
    return key.lower().replace("-", "_")


def _apply_env_overrides(
    raw: dict[str, Any], environ: Mapping[str, str], problems: list[ConfigError]
) -> None:
    sections = set(BoundedConfig.model_fields)
    for var in sorted(environ):
        if not var.upper().startswith(ENV_PREFIX):
            continue
        parts = var[len(ENV_PREFIX) :].split("__")
        if not parts or any(not p for p in parts):
            if "__" in var:
                problems.append(ConfigError(var, "malformed override variable (empty part)"))
            continue
        section = _norm(parts[0])
        if section not in sections:
            if len(parts) > 1:  # looks like an override; a lone BOUNDED_FOO may be someone else's
                hint = _did_you_mean(section, sections)
                problems.append(ConfigError(var, f"unknown section {section!r}{hint}"))
            continue
        value = _parse_env_value(environ[var])
        node: dict[str, Any] = raw
        for i, part in enumerate(parts):
            key = _match_key(node, part)
            if i == len(parts) - 1:
                node[key] = value
                break
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child


def _match_key(node: dict[str, Any], part: str) -> str:
    wanted = _norm(part)
    for key in node:
        if _norm(key) == wanted:
            return key
    return wanted


def _parse_env_value(text: str) -> Any:
    # YAML-parse for typing ("20" -> 20, "true" -> True, "[a, b]" -> list); keep text otherwise.
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError:
        return text


# -- interpolation -----------------------------------------------------------------------


def _interpolate(
    value: Any, path: str, environ: Mapping[str, str], problems: list[ConfigError]
) -> Any:
    if isinstance(value, dict):
        return {
            k: _interpolate(v, f"{path}.{k}" if path else k, environ, problems)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", environ, problems) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        return _substitute(value, path, environ, problems)
    return value


def _substitute(
    text: str, path: str, environ: Mapping[str, str], problems: list[ConfigError]
) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if not _VAR_NAME.match(name):
            problems.append(ConfigError(path, f"invalid variable name in ${{{name}}}"))
            return ""
        found = environ.get(name)
        if found is not None and (found != "" or default is None):
            return found
        if default is not None:
            return default
        problems.append(
            ConfigError(
                path,
                f"environment variable {name} is not set (write ${{{name}:-default}} "
                "to give a default)",
            )
        )
        return ""

    return _VAR.sub(replace, text)


# -- pydantic errors -> ConfigError ------------------------------------------------------


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _is_secret_path(path: str) -> bool:
    last = path.rsplit(".", 1)[-1]
    return bool(_SECRET_KEYS.search(last)) or last in {"dsn", "url"} or ".headers." in path


def _show(value: Any, path: str) -> str:
    if _is_secret_path(path):
        return "<redacted>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fields_at(loc: tuple[int | str, ...]) -> list[str] | None:
    """Field names of the model found at `loc` in BoundedConfig, or None if not a model."""
    annotation: Any = BoundedConfig
    for part in loc:
        model = _model_of(annotation)
        if model is not None:
            if not isinstance(part, str) or part not in model.model_fields:
                return None
            annotation = model.model_fields[part].annotation
            continue
        args = _union_args(annotation)
        origin = typing.get_origin(annotation) or (
            dict if any(typing.get_origin(a) is dict for a in args) else None
        )
        if origin is dict:
            dict_type = next(
                (a for a in [annotation, *args] if typing.get_origin(a) is dict), annotation
            )
            annotation = typing.get_args(dict_type)[1]
            continue
        return None
    model = _model_of(annotation)
    return list(model.model_fields) if model is not None else None


def _union_args(annotation: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return typing.get_args(annotation)
    return ()


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *_union_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _convert(exc: ValidationError) -> Iterator[ConfigError]:
    for error in exc.errors():
        loc = tuple(error["loc"])
        kind = error["type"]
        ctx = error.get("ctx") or {}
        value = error.get("input")
        # Union/dict members add the type name to loc (e.g. "function-before[...]"); drop it.
        loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in _TYPE_TAGS)))
        path = _dotted(loc)
        if kind == "extra_forbidden":
            key = str(loc[-1])
            allowed = _fields_at(loc[:-1]) or []
            hint = _did_you_mean(key, allowed)
            if not hint and allowed:
                hint = f" (allowed: {', '.join(allowed)})"
            yield ConfigError(path, f"unknown key {key!r}{hint}")
            continue
        yield ConfigError(path, _message(kind, ctx, value, path, error["msg"]))


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "literal"}


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _message(kind: str, ctx: dict[str, Any], value: Any, path: str, msg: str) -> str:
    got = f", got {_show(value, path)}"
    if kind == "greater_than_equal":
        return f"must be >= {_num(ctx['ge'])}{got}"
    if kind == "greater_than":
        return f"must be > {_num(ctx['gt'])}{got}"
    if kind == "less_than_equal":
        return f"must be <= {_num(ctx['le'])}{got}"
    if kind == "less_than":
        return f"must be < {_num(ctx['lt'])}{got}"
    if kind == "missing":
        return "is required"
    if kind in {"int_type", "int_parsing", "int_from_float"}:
        return f"must be an integer{got}"
    if kind in {"float_type", "float_parsing", "finite_number"}:
        return f"must be a number{got}"
    if kind in {"bool_type", "bool_parsing"}:
        return f"must be true or false{got}"
    if kind in {"string_type"}:
        return f"must be a string{got}"
    if kind in {"dict_type", "model_type", "model_attributes_type"}:
        return f"must be a mapping{got}"
    if kind in {"list_type"}:
        return f"must be a list{got}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}{got}"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    return f"{msg}{got}"


# -- cross-checks ------------------------------------------------------------------------


def cross_check(
    config: BoundedConfig, *, invalid: set[tuple[str, str]] | None = None
) -> list[ConfigError]:
    """Problems that involve more than one field or section.

    `invalid`: `(section, name)` entries that failed validation (name ``*``: the whole
    section); references to them are not reported as missing.
    """
    problems: list[ConfigError] = []
    skip = invalid or set()

    def known(section: str, name: str) -> bool:
        return (section, name) in skip or (section, "*") in skip

    refs = (
        ("retry", "retries", "retry"),
        ("breaker", "breakers", "breaker"),
        ("rate_limit", "rate_limits", "rate limit"),
        ("bulkhead", "bulkheads", "bulkhead"),
    )
    for name, policy in config.policies.items():
        for field, section, label in refs:
            target = getattr(policy, field)
            if target is None:
                continue
            declared: dict[str, Any] = getattr(config, section)
            if target not in declared and not known(section, target):
                hint = _did_you_mean(target, declared)
                problems.append(
                    ConfigError(
                        f"policies.{name}.{field}",
                        f"no {label} named {target!r} in {section}{hint}",
                    )
                )
        timeout, deadline = policy.timeout, policy.deadline
        if timeout is not None and deadline is not None and timeout > deadline:
            problems.append(
                ConfigError(
                    f"policies.{name}.timeout",
                    f"the per-attempt timeout {timeout:g} s is longer than the "
                    f"policy deadline {deadline:g} s",
                )
            )
    for name, retry in config.retries.items():
        if retry.backoff.initial > retry.backoff.max:
            problems.append(
                ConfigError(
                    f"retries.{name}.backoff.initial",
                    f"must be <= backoff.max ({retry.backoff.max:g}), "
                    f"got {retry.backoff.initial:g}",
                )
            )
    databases: dict[str, DatabaseConfig] = dict(config.databases)
    for name, db in databases.items():
        if db.min_size > db.max_size:
            problems.append(
                ConfigError(
                    f"databases.{name}.min_size",
                    f"must be <= max_size ({db.max_size}), got {db.min_size}",
                )
            )
    bound: dict[str, list[tuple[str, int]]] = {}
    for name, bulkhead in config.bulkheads.items():
        if bulkhead.database is None:
            continue
        if bulkhead.database not in databases:
            if known("databases", bulkhead.database):
                continue
            hint = _did_you_mean(bulkhead.database, databases)
            problems.append(
                ConfigError(
                    f"bulkheads.{name}.database",
                    f"no database named {bulkhead.database!r} in databases{hint}",
                )
            )
            continue
        bound.setdefault(bulkhead.database, []).append((name, bulkhead.limit))
    for db_name, users in bound.items():
        total = sum(limit for _, limit in users)
        max_size = databases[db_name].max_size
        if total > max_size:
            listed = ", ".join(f"{n}={limit}" for n, limit in users)
            problems.append(
                ConfigError(
                    f"databases.{db_name}.max_size",
                    f"the bulkheads bound to this database ({listed}) allow {total} concurrent "
                    f"holders, more than max_size {max_size}",
                )
            )
    return problems


# -- effective configuration, redacted ---------------------------------------------------


def redact_url(url: str) -> str:
    """Replace the password of a URL/DSN with ``***`` (user and host stay visible)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<redacted>"
    if parts.password is None:
        return re.sub(r"(password=)[^&\s]*", r"\1***", url, flags=re.I)
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))


def _redact(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, key) for v in value]
    if isinstance(value, str):
        if _SECRET_KEYS.search(key):
            return "***"
        if key in {"dsn", "url", "base_url"}:
            return redact_url(value)
    return value


def effective_dict(config: BoundedConfig) -> dict[str, Any]:
    """The configuration with every default filled in and secrets redacted (for display)."""
    return typing.cast(dict[str, Any], _redact(config.model_dump(mode="json")))
