"""PostgreSQL DSNs: redaction, parsing into asyncpg arguments and the ``ssl="auto"`` decision."""

from __future__ import annotations

import ipaddress
import os
import re
import ssl as ssl_module
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ParsedDsn",
    "SslSetting",
    "parse_dsn",
    "redact_dsn",
    "redact_query",
    "resolve_ssl",
    "scrub",
]

SslSetting = Literal["auto"] | bool | ssl_module.SSLContext | str

_MASK = "***"
# libpq sslmode values asyncpg understands; accepted as an explicit `ssl=` setting too.
SSL_MODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})

_QUERY_PARAM = re.compile(r"([?&#;])([^=&#;]*)=([^&#;]*)")
# Query parameter names that carry credentials: `password`, `sslpassword`, `client_secret`,
# `access_token`, `api_key`, `apiKey`, `X-Amz-Signature`; the short `key`, `sig`, `pwd` and
# `auth` only alone or after a separator (`x-goog-key`, but not `sslkey`, a file path).
_CREDENTIAL_NAME = re.compile(
    r"(?i)password|passwd|secret|token|api[_-]?key|signature|credential"
    r"|(?:^|[_.-])(?:key|sig|pwd|auth)$"
)
_KV_SECRET = re.compile(r"(?i)\b((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)")
_KV_PAIR = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)")


def _is_url(dsn: str) -> bool:
    return "://" in dsn


_HOSTLIST = re.compile(
    r"^(?:\[[^\]]*\]|[^:,@\[]*)(?::\d*)?(?:,(?:\[[^\]]*\]|[^:,@\[]*)(?::\d*)?)*$"
)


def _first(text: str, chars: str) -> int:
    """Index of the first of `chars` in `text`, or len(text)."""
    positions = [p for p in (text.find(c) for c in chars) if p != -1]
    return min(positions, default=len(text))


def _split_url(dsn: str) -> tuple[str, str, str, str, bool]:
    """Split a URL DSN into (scheme, userinfo, hostspec, rest, malformed).

    `malformed` flags a password holding an unencoded reserved character (``@ / ? #``):
    then the userinfo is taken to run to the last ``@``, so that all of the password is
    treated as the password (and masked) instead of leaking into the host, path or query.
    """
    scheme, _, tail = dsn.partition("://")
    end = _first(tail, "/?#")
    authority, rest = tail[:end], tail[end:]
    path = rest[: _first(rest, "?#")]
    malformed = "@" in path or (
        "@" in rest and "@" not in authority and not _HOSTLIST.match(authority)
    )
    if malformed:
        at = tail.rfind("@")
        userinfo, after = tail[:at], tail[at + 1 :]
        cut = _first(after, "/?#")
        return scheme, userinfo, after[:cut], after[cut:], True
    at = authority.rfind("@")
    if at == -1:
        return scheme, "", authority, rest, False
    return scheme, authority[:at], authority[at + 1 :], rest, "@" in authority[:at]


def redact_dsn(dsn: str) -> str:
    """Return `dsn` with every password replaced by ``***``.

    Handles URLs and URL DSNs (``postgresql://user:secret@host/db``, ``?password=``,
    ``?sslpassword=`` and every credential-looking query parameter, see `redact_query`)
    and libpq key/value DSNs (``host=h password=secret``).
    """
    if not dsn:
        return dsn
    if _is_url(dsn):
        scheme, userinfo, hostspec, rest, _ = _split_url(dsn)
        if userinfo:
            user, colon, password = userinfo.partition(":")
            if colon and password:
                userinfo = f"{user}:{_MASK}"
            userinfo += "@"
        return redact_query(f"{scheme}://{userinfo}{hostspec}{rest}")
    return _KV_SECRET.sub(rf"\g<1>{_MASK}", dsn)


def _mask_credential(match: re.Match[str]) -> str:
    sep, name, value = match.groups()
    if value and _CREDENTIAL_NAME.search(urllib.parse.unquote(name)):
        return f"{sep}{name}={_MASK}"
    return match.group(0)


def redact_query(url: str) -> str:
    """Return `url` with the values of credential-looking query parameters (``key``,
    ``api_key``, ``token``, ``access_token``, ``secret``, ``signature``, ``sig``,
    ``password``, ...) replaced by ``***``; names and other parameters stay visible."""
    return _QUERY_PARAM.sub(_mask_credential, url)


@dataclass(frozen=True, slots=True)
class ParsedDsn:
    """What the pool needs to know about a DSN: asyncpg arguments and where it points."""

    dsn: str | None  # passed to asyncpg as is (URL form), else None
    kwargs: dict[str, Any] = field(default_factory=dict)  # from a key/value DSN
    hosts: tuple[str, ...] = ()  # empty: asyncpg's defaults (local sockets, then localhost)
    has_sslmode: bool = False
    secrets: tuple[str, ...] = ()  # password spellings to scrub from error messages

    def __repr__(self) -> str:
        return f"ParsedDsn(hosts={self.hosts!r}, has_sslmode={self.has_sslmode!r})"


def _unquote_kv(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _split_hostlist(spec: str, *, unquote: bool) -> tuple[str, ...]:
    hosts: list[str] = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        if unquote:
            item = urllib.parse.unquote(item)
        if item.startswith("["):  # [ipv6]:port
            item = item[1 : item.find("]")] if "]" in item else item[1:]
        elif not item.startswith("/") and item.count(":") == 1:
            item = item.partition(":")[0]
        if item:
            hosts.append(item)
    return tuple(hosts)


def _secret_variants(password: str) -> tuple[str, ...]:
    if not password:
        return ()
    variants = {password, urllib.parse.unquote(password), urllib.parse.quote(password, safe="")}
    return tuple(sorted((v for v in variants if v), key=len, reverse=True))


# libpq key -> asyncpg connect() keyword
_KV_KEYS = {
    "host": "host",
    "port": "port",
    "user": "user",
    "password": "password",
    "dbname": "database",
    "passfile": "passfile",
    "sslmode": "ssl",
    "connect_timeout": "timeout",
    "target_session_attrs": "target_session_attrs",
}


def _parse_kv(dsn: str) -> ParsedDsn:
    kwargs: dict[str, Any] = {}
    server_settings: dict[str, str] = {}
    pos = 0
    text = dsn.strip()
    while pos < len(text):
        match = _KV_PAIR.match(text, pos)
        if match is None or match.end() == pos:
            raise ValueError("dsn: not a postgresql:// URL nor a libpq key=value string")
        key, value = match.group(1).lower(), _unquote_kv(match.group(2))
        pos = match.end()
        if key in _KV_KEYS:
            kwargs[_KV_KEYS[key]] = value
        elif key in {"application_name", "options"}:
            server_settings[key] = value
        else:
            raise ValueError(f"dsn: unsupported key {key!r} in key=value DSN")
    if "port" in kwargs:
        kwargs["port"] = [int(p) for p in str(kwargs["port"]).split(",")]
    if "timeout" in kwargs:
        kwargs["timeout"] = float(kwargs["timeout"])
    hosts: tuple[str, ...] = ()
    if "host" in kwargs:
        hosts = _split_hostlist(str(kwargs["host"]), unquote=False)
        kwargs["host"] = list(hosts) if len(hosts) > 1 else (hosts[0] if hosts else None)
        if kwargs["host"] is None:
            del kwargs["host"]
    if server_settings:
        kwargs["server_settings"] = server_settings
    return ParsedDsn(
        dsn=None,
        kwargs=kwargs,
        hosts=hosts,
        has_sslmode="ssl" in kwargs,
        secrets=_secret_variants(str(kwargs.get("password", ""))),
    )


def parse_dsn(dsn: str) -> ParsedDsn:
    """Parse a URL or key/value DSN; errors never quote the password."""
    if not _is_url(dsn):
        return _parse_kv(dsn)
    scheme, userinfo, hostspec, rest, malformed = _split_url(dsn)
    if scheme not in {"postgresql", "postgres"}:
        raise ValueError(f"dsn: scheme must be 'postgresql' or 'postgres', got {scheme!r}")
    password = userinfo.partition(":")[2]
    secrets = list(_secret_variants(password))
    query = rest.partition("?")[2].partition("#")[0]
    params = urllib.parse.parse_qs(query, keep_blank_values=True) if query else {}
    for key in ("password", "sslpassword"):
        for value in params.get(key, []):
            secrets.extend(_secret_variants(value))
    if malformed:
        raise ValueError(
            "dsn: the user or password holds a reserved character ('@', '/', '?' or '#'); "
            "percent-encode it"
        )
    hosts = _split_hostlist(hostspec, unquote=True)
    if not hosts and params.get("host"):
        hosts = _split_hostlist(params["host"][-1], unquote=False)
    return ParsedDsn(
        dsn=dsn,
        hosts=hosts,
        has_sslmode="sslmode" in params,
        secrets=tuple(sorted(set(secrets), key=len, reverse=True)),
    )


def is_local_host(host: str) -> bool:
    """True for a unix socket directory or a loopback name/address."""
    if host.startswith(("/", "@")):
        return True
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.partition("%")[0]).is_loopback
    except ValueError:
        return False


AsyncpgSsl = bool | ssl_module.SSLContext | str | None


def resolve_ssl(setting: SslSetting, parsed: ParsedDsn) -> AsyncpgSsl:
    """Turn the pool's ``ssl`` setting into asyncpg's ``ssl`` argument (None: let asyncpg decide).

    ``"auto"``: an ``sslmode`` in the DSN or ``PGSSLMODE`` wins; otherwise no TLS when every
    host is a loopback address or a unix socket, and verified TLS (system CA store, host
    name checked) for anything else.
    """
    if isinstance(setting, ssl_module.SSLContext):
        return setting
    if setting is True:
        return ssl_module.create_default_context()
    if setting is False:
        return False
    if not isinstance(setting, str):
        raise ValueError(
            f"ssl must be 'auto', a bool, an SSLContext or an sslmode, got {setting!r}"
        )
    if setting != "auto":
        if setting not in SSL_MODES:
            raise ValueError(
                f"ssl must be 'auto', a bool, an SSLContext or one of {sorted(SSL_MODES)}, "
                f"got {setting!r}"
            )
        return setting
    if parsed.has_sslmode or os.environ.get("PGSSLMODE"):
        return None
    hosts = parsed.hosts
    if not hosts:
        pghost = os.environ.get("PGHOST", "")
        hosts = _split_hostlist(pghost, unquote=False) if pghost else ()
    if all(is_local_host(h) for h in hosts):  # no host at all: local sockets, then localhost
        return False
    return ssl_module.create_default_context()


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Replace every occurrence of any secret in `text` by ``***``."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, _MASK)
    return text
