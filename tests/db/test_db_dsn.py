"""DSN redaction, parsing and the ssl="auto" decision (no server needed)."""

from __future__ import annotations

import ssl

import pytest

from bounded.db import redact_dsn
from bounded.db.dsn import is_local_host, parse_dsn, resolve_ssl, scrub

SECRET = "pa55-W0rd"


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://u:secret@h/db", "postgresql://u:***@h/db"),
        (
            "postgres://u:secret@h:5433/db?sslmode=require",
            "postgres://u:***@h:5433/db?sslmode=require",
        ),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://h/db", "postgresql://h/db"),
        ("postgresql://u:@/db?host=/tmp/x", "postgresql://u:@/db?host=/tmp/x"),
        ("postgresql://u:s%40cr%2Ft@h/db", "postgresql://u:***@h/db"),
        # unencoded reserved characters: still all masked, never half of the password
        ("postgresql://u:se@cr/et@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:sec/ret@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:sec?ret@h/db?x=1", "postgresql://u:***@h/db?x=1"),
        ("postgresql://u:secr#et@h/db", "postgresql://u:***@h/db"),
        ("postgresql://h:5432/db?user=a@b", "postgresql://h:5432/db?user=a@b"),
        ("postgresql://u:secret@h1:5432,[::1]:5433/db", "postgresql://u:***@h1:5432,[::1]:5433/db"),
        ("postgresql://h/db?user=u&password=secret", "postgresql://h/db?user=u&password=***"),
        ("postgresql://h/db?password=secret&user=u", "postgresql://h/db?password=***&user=u"),
        ("postgresql://h/db?sslpassword=secret", "postgresql://h/db?sslpassword=***"),
        ("host=h user=u password=secret dbname=db", "host=h user=u password=*** dbname=db"),
        ("host=h password = secret", "host=h password = ***"),
        ("host=h password='sec ret' dbname=db", "host=h password=*** dbname=db"),
        (r"host=h password='it\'s secret' dbname=db", "host=h password=*** dbname=db"),
        ("PASSWORD=secret host=h", "PASSWORD=*** host=h"),
        ("", ""),
    ],
)
def test_redact_dsn(dsn: str, expected: str) -> None:
    redacted = redact_dsn(dsn)
    assert redacted == expected
    assert "secret" not in redacted
    assert "sec ret" not in redacted


def test_parse_url_collects_every_spelling_of_the_secret() -> None:
    parsed = parse_dsn("postgresql://u:p%40ss@db.example.com:5432/app?sslpassword=k3y")
    assert parsed.hosts == ("db.example.com",)
    assert "p@ss" in parsed.secrets
    assert "p%40ss" in parsed.secrets
    assert "k3y" in parsed.secrets
    assert "p@ss" not in repr(parsed)
    assert parsed.dsn is not None


def test_parse_url_accepts_at_signs_in_the_query() -> None:
    assert parse_dsn("postgresql://h:5432/db?user=a@b").hosts == ("h",)


def test_parse_url_hosts() -> None:
    assert parse_dsn("postgresql://u@h1:5432,h2:5433/db").hosts == ("h1", "h2")
    assert parse_dsn("postgresql://u@[::1]:5432/db").hosts == ("::1",)
    assert parse_dsn("postgresql://u@/db?host=/var/run/postgresql").hosts == (
        "/var/run/postgresql",
    )
    assert parse_dsn("postgresql://u@%2Ftmp%2Fsock/db").hosts == ("/tmp/sock",)
    assert parse_dsn("postgresql:///db").hosts == ()
    assert parse_dsn("postgresql://h/db?sslmode=disable").has_sslmode


def test_parse_key_value_dsn_into_asyncpg_arguments() -> None:
    parsed = parse_dsn(
        "host=h1,h2 port=5432,5433 user=u password='a b' dbname=app "
        "sslmode=require application_name=x connect_timeout=3"
    )
    assert parsed.dsn is None
    assert parsed.kwargs == {
        "host": ["h1", "h2"],
        "port": [5432, 5433],
        "user": "u",
        "password": "a b",
        "database": "app",
        "ssl": "require",
        "timeout": 3.0,
        "server_settings": {"application_name": "x"},
    }
    assert parsed.has_sslmode
    assert "a b" in parsed.secrets


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://u:{SECRET}@x/y@h/db",  # '@' and '/' in the password, unencoded
        f"postgresql://u:{SECRET}?x@h/db",
        f"postgresql://u:{SECRET}#x@h/db",
        f"postgresql://u:{SECRET}/x@h/db",
        f"mysql://u:{SECRET}@h/db",
        f"host=h password={SECRET} bogus_key=1",
        f"host=h password={SECRET} ===",
    ],
)
def test_parse_errors_never_quote_the_password(dsn: str) -> None:
    with pytest.raises(ValueError, match="dsn") as info:
        parse_dsn(dsn)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.9.8.7", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("/var/run/postgresql", True),
        ("@abstract", True),
        ("10.0.0.1", False),
        ("192.168.1.10", False),
        ("db.example.com", False),
        ("localhost.example.com", False),
        ("::2", False),
    ],
)
def test_is_local_host(host: str, local: bool) -> None:
    assert is_local_host(host) is local


def _verified(value: object) -> bool:
    return (
        isinstance(value, ssl.SSLContext)
        and value.verify_mode == ssl.CERT_REQUIRED
        and value.check_hostname
    )


@pytest.fixture
def no_pg_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGSSLMODE", raising=False)
    monkeypatch.delenv("PGHOST", raising=False)


@pytest.mark.usefixtures("no_pg_env")
@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u@127.0.0.1/db",
        "postgresql://u@localhost:5432/db",
        "postgresql://u@[::1]:5432/db",
        "postgresql://u@/db?host=/var/run/postgresql",
        "postgresql:///db",
        "postgresql://u@127.0.0.1,localhost/db",
        "host=/tmp dbname=db",
        "dbname=db",
    ],
)
def test_ssl_auto_is_off_for_loopback_and_sockets(dsn: str) -> None:
    assert resolve_ssl("auto", parse_dsn(dsn)) is False


@pytest.mark.usefixtures("no_pg_env")
@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u@db.example.com/db",
        "postgresql://u@10.1.2.3:5432/db",
        "postgresql://u@127.0.0.1,db.example.com/db",  # one remote host is enough
        "host=db.example.com dbname=db",
    ],
)
def test_ssl_auto_is_verified_tls_elsewhere(dsn: str) -> None:
    assert _verified(resolve_ssl("auto", parse_dsn(dsn)))


@pytest.mark.usefixtures("no_pg_env")
def test_ssl_auto_follows_pghost_when_the_dsn_names_no_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PGHOST", "db.example.com")
    assert _verified(resolve_ssl("auto", parse_dsn("postgresql:///db")))
    monkeypatch.setenv("PGHOST", "/run/postgresql")
    assert resolve_ssl("auto", parse_dsn("postgresql:///db")) is False


@pytest.mark.usefixtures("no_pg_env")
def test_explicit_sslmode_wins_over_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (
        resolve_ssl("auto", parse_dsn("postgresql://u@db.example.com/db?sslmode=disable")) is None
    )
    monkeypatch.setenv("PGSSLMODE", "require")
    assert resolve_ssl("auto", parse_dsn("postgresql://u@127.0.0.1/db")) is None


@pytest.mark.usefixtures("no_pg_env")
def test_ssl_overrides() -> None:
    local = parse_dsn("postgresql://u@127.0.0.1/db")
    remote = parse_dsn("postgresql://u@db.example.com/db")
    assert _verified(resolve_ssl(True, local))
    assert resolve_ssl(False, remote) is False
    context = ssl.create_default_context()
    assert resolve_ssl(context, remote) is context
    assert resolve_ssl("require", local) == "require"
    with pytest.raises(ValueError, match="ssl"):
        resolve_ssl("sometimes", local)
    with pytest.raises(ValueError, match="ssl"):
        resolve_ssl(1, local)  # type: ignore[arg-type]


def test_scrub() -> None:
    assert scrub("database 'hunter2' does not exist", ("hunter2",)) == (
        "database '***' does not exist"
    )
    assert scrub("nothing here", ("hunter2", "")) == "nothing here"
