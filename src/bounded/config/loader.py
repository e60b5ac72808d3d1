"""Load, interpolate, override and validate a `bounded` configuration.

The pipeline, in order: YAML (safe loader only) -> `BOUNDED_<SECTION>__<NAME>__<KEY>`
environment overrides -> `${VAR}` / `${VAR:-default}` interpolation -> pydantic
validation -> cross-checks. Every problem found is collected, and one `ConfigErrors`
lists them all, each with its dotted path.
"""

from __future__ import annotations

import difflib
import errno
import math
import os
import re
import stat
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import BaseModel, ValidationError
from yaml.composer import ComposerError

from bounded.config.models import BoundedConfig, DatabaseConfig, RateLimitConfig, parse_rate
from bounded.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "ConfigErrors",
    "effective_dict",
    "load_dict",
    "load_file",
    "load_text",
    "parse_yaml",
    "read_config",
    "read_config_bytes",
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


#: Largest configuration file read, in bytes.
MAX_FILE_BYTES = 1024 * 1024
#: Most YAML nodes a document may hold once every alias is expanded: far above any real
#: configuration, far below what makes an alias bomb ("billion laughs") hurt.
MAX_NODES = 10_000
#: Deepest nesting of YAML collections (the composer recurses once per level).
MAX_DEPTH = 64


class _Loader(yaml.SafeLoader):
    """SafeLoader where only true/false are booleans, so a key named `on` stays a string.

    It also refuses, while composing and before anything is constructed or copied, a
    document that would expand to more than `MAX_NODES` nodes (aliases count as the
    nodes they stand for), a recursive alias, and nesting deeper than `MAX_DEPTH`.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._expanded: dict[int, int] = {}  # id(node) -> node count with aliases expanded
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if id(node) not in self._expanded:
                raise ComposerError(None, None, "recursive alias (refers to itself)", mark)
            return node
        if self._depth >= MAX_DEPTH:
            raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        size = 1
        if isinstance(node, yaml.SequenceNode):
            size += sum(self._expanded[id(child)] for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            size += sum(self._expanded[id(k)] + self._expanded[id(v)] for k, v in node.value)
        if size > MAX_NODES:
            raise ComposerError(
                None,
                None,
                f"the document expands to more than {MAX_NODES:,} nodes (aliases "
                "expanded); refusing it (an alias bomb?)",
                mark,
            )
        self._expanded[id(node)] = size
        return node


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _safe_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader


def _decode(data: bytes, source: str) -> str:
    if len(data) > MAX_FILE_BYTES:
        message = f"larger than {MAX_FILE_BYTES // 1024} KiB; not a configuration file?"
        raise ConfigErrors([ConfigError("", message)], source)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at line {line}); save it as UTF-8"
        raise ConfigErrors([ConfigError("", message)], source) from None


def parse_yaml(text: str | bytes, source: str = "<string>") -> Any:
    """Parse YAML with the bounded safe loader; every problem becomes a `ConfigErrors`.

    Bytes are decoded as UTF-8 (a BOM is allowed). Syntax errors, text that is not
    UTF-8, documents over `MAX_FILE_BYTES`, alias bombs and deep nesting are refused.
    """
    if isinstance(text, bytes):
        text = _decode(text, source)
    try:
        return _safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigErrors([ConfigError("", f"invalid YAML{where}: {problem}")], source) from None


def read_config_bytes(path: str | os.PathLike[str]) -> bytes:
    """The first `MAX_FILE_BYTES` + 1 bytes of a regular file; OSError if it cannot be read.

    A FIFO or device is refused at once rather than read (a FIFO would block forever).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except ValueError as exc:  # e.g. a NUL byte in the path
        raise OSError(errno.EINVAL, str(exc)) from None
    with open(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return file.read(MAX_FILE_BYTES + 1)


def load_file(
    path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
) -> BoundedConfig:
    """Read and validate a YAML configuration file; raise `ConfigErrors` listing every problem."""
    return load_text(read_config(path), env=env, source=str(path))


def read_config(path: str | os.PathLike[str]) -> bytes:
    """`read_config_bytes`, with any `OSError` as a `ConfigErrors` naming the file."""
    try:
        return read_config_bytes(path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigErrors([ConfigError("", f"cannot read {Path(path)}: {reason}")]) from None


def load_text(
    text: str | bytes, *, env: Mapping[str, str] | None = None, source: str = "<string>"
) -> BoundedConfig:
    """Parse (see `parse_yaml`) and validate a configuration's text or bytes."""
    return load_dict(parse_yaml(text, source), env=env, source=source)


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
    overrides = _apply_env_overrides(raw, environ, problems)
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
        raise ConfigErrors(_unique(_name_overrides(problems, overrides)), source)
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


# The sections that map names to entries (bulkheads, rate_limits, ...).
_DICT_SECTIONS = tuple(
    name
    for name, field in BoundedConfig.model_fields.items()
    if typing.get_origin(field.annotation) is dict
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
) -> dict[str, str]:
    """Apply every override to `raw`; return {dotted path: variable} of those applied.

    An override naming an entry the file does not declare (`BOUNDED_BULKHEADS__LLMM__...`
    when the file has `llm`) is an error naming the variable, in strict mode or not: a
    typo would otherwise create a new entry silently and leave the intended one as it was.
    """
    sections = set(BoundedConfig.model_fields)
    declared = {
        section: {_norm(name) for name in raw[section]}
        for section in _DICT_SECTIONS
        if isinstance(raw.get(section), dict)
    }
    applied: dict[str, str] = {}
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
        if section in _DICT_SECTIONS and len(parts) > 1:
            names = declared.get(section, set())
            name = _norm(parts[1])
            if name not in names:
                hint = _did_you_mean(name, names)
                problems.append(
                    ConfigError(
                        var,
                        f"overrides {section}.{name}, which the file does not declare{hint} "
                        f"(to add it, declare it in the file: an empty `{name}:` under "
                        f"`{section}:` is enough)",
                    )
                )
                continue
        value = _parse_env_value(environ[var])
        node: dict[str, Any] = raw
        path: list[str] = []
        for i, part in enumerate(parts):
            key = _match_key(node, part)
            path.append(key)
            if i == len(parts) - 1:
                node[key] = value
                applied[".".join(path)] = var
                break
            child = _as_mapping(node.get(key), path)
            if child is None:
                where = ".".join(path)
                problems.append(
                    ConfigError(var, f"sets a key inside {where}, which is not a mapping")
                )
                break
            node[key] = child
            node = child
    return applied


def _as_mapping(value: Any, path: list[str]) -> dict[str, Any] | None:
    """`value` as a mapping to set an override's key in, or None if it is something else.

    A missing or empty entry becomes one; a rate shorthand (``"60/min"``) is expanded, so
    that overriding its `rate` keeps its `per`.
    """
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    is_rate_limit = (len(path) == 2 and path[0] == "rate_limits") or path == [
        "defaults",
        "rate_limit",
    ]
    if is_rate_limit and isinstance(value, str):
        try:
            rate, per = parse_rate(value)
        except ValueError:
            return None
        return {"rate": rate, "per": per}
    return None


def _name_overrides(problems: list[ConfigError], applied: dict[str, str]) -> list[ConfigError]:
    """Problems at or under a path set by an override, with the variable named."""
    named = []
    for problem in problems:
        for path, var in applied.items():
            if problem.path == path or problem.path.startswith((f"{path}.", f"{path}[")):
                problem = ConfigError(problem.path, f"{problem.message} (set by {var})")
                break
        named.append(problem)
    return named


def _match_key(node: dict[str, Any], part: str) -> str:
    wanted = _norm(part)
    for key in node:
        if _norm(key) == wanted:
            return key
    return wanted


def _parse_env_value(text: str) -> Any:
    # YAML-parse for typing ("20" -> 20, "true" -> True, "[a, b]" -> list); keep text otherwise.
    try:
        return _safe_load(text)
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
            # Not echoed: what sits between the braces may be a pasted secret.
            problems.append(
                ConfigError(
                    path,
                    f"invalid variable name in ${{...}} ({len(name)} characters; a name is "
                    "letters, digits and _, not starting with a digit)",
                )
            )
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
    """What a message may say about a value that failed validation.

    Strings are never echoed (a value in the wrong place may be a pasted key): only
    their kind and length. Short numbers, booleans and null are, as they help most.
    """
    if _is_secret_path(path):
        return "<redacted>"
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int | float):
        text = _num(value)
        return text if len(text) <= 10 else f"a number of {len(text)} characters"
    if isinstance(value, str):
        return f"a string of {len(value)} characters" if value else "an empty string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


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
        expected = ctx.get("expected", "")
        hint = ""
        if isinstance(value, str):
            hint = _did_you_mean(value, re.findall(r"'([^']*)'", str(expected)))
        return f"must be one of {expected}{got}{hint}"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    return f"{msg}{got}"


# -- cross-checks ------------------------------------------------------------------------

#: Shortest `monitoring.interval`: the monitor checks every resource each time.
MIN_MONITOR_INTERVAL = 0.01


def _uncomputable_rate(rl: RateLimitConfig) -> tuple[str, str] | None:
    """(field, why) if a limiter with these numbers cannot compute its schedule, else None.

    Each value may be valid alone while `per / rate` (the time between two units)
    overflows to infinity or underflows to zero, and a limiter would wait forever or spin.
    """
    interval = rl.per / rl.rate
    if not (math.isfinite(interval) and interval > 0 and rl.rate / rl.per > 0):
        return "rate", (
            f"rate {rl.rate:g} per {rl.per:g} s cannot be computed: the time between two "
            f"units (per / rate) is {interval:g} s; it must be finite and > 0"
        )
    if not math.isfinite(rl.burst * interval):
        return "burst", (
            f"burst {rl.burst:g} at one unit every {interval:g} s cannot be computed "
            "(burst * per / rate is not finite)"
        )
    return None


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
        ("provider", "providers", "provider"),
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
    rate_limits = [(f"rate_limits.{name}", rl) for name, rl in config.rate_limits.items()]
    if config.defaults.rate_limit is not None:
        rate_limits.append(("defaults.rate_limit", config.defaults.rate_limit))
    for path, rl in rate_limits:
        uncomputable = _uncomputable_rate(rl)
        if uncomputable is not None:
            field, message = uncomputable
            problems.append(ConfigError(f"{path}.{field}", message))
    if config.monitoring.interval < MIN_MONITOR_INTERVAL:
        problems.append(
            ConfigError(
                "monitoring.interval",
                f"must be >= {MIN_MONITOR_INTERVAL:g} s (a shorter one keeps the event loop "
                f"busy), got {config.monitoring.interval:g}",
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
    """`url` (or DSN) with its password and credential-looking query values as ``***``.

    User and host stay visible; ``?key=``, ``?api_key=``, ``?token=``, ``?sig=`` and the
    like are masked (see `bounded.db.dsn.redact_query`).
    """
    from bounded.db.dsn import redact_dsn  # imported here: bounded.db imports asyncpg

    return redact_dsn(url)


def _redact(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, key) for v in value]
    if isinstance(value, str):
        if _SECRET_KEYS.search(key):
            return "***"
        if key in {"dsn", "url", "base_url"} or "://" in value:
            return redact_url(value)
    return value


def effective_dict(config: BoundedConfig) -> dict[str, Any]:
    """The configuration with every default filled in and secrets redacted (for display)."""
    return typing.cast(dict[str, Any], _redact(config.model_dump(mode="json")))
