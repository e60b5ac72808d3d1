"""Parsing of OpenAI and Anthropic rate-limit headers."""

from __future__ import annotations

import datetime as dt
import logging

import httpx2
import pytest

from bounded.llm import parse_duration, parse_rate_limit_headers, parse_rfc3339_delay


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("12ms", 0.012),
        ("1h2m3.5s", 3723.5),
        ("0s", 0.0),
        ("1s", 1.0),
        ("20.5s", 20.5),
        ("1m30.25s", 90.25),
        ("250us", 0.00025),
        ("7", 7.0),
        (" 2s ", 2.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "s", "6x", "1m-2s", "-1s", "abc", "1h 2m", "inf", "nan", "-3"]
)
def test_malformed_durations(text: str) -> None:
    assert parse_duration(text) is None


def test_rfc3339() -> None:
    now = 1_800_000_000.0
    when = dt.datetime.fromtimestamp(now + 12.5, tz=dt.UTC)
    assert parse_rfc3339_delay(when.isoformat().replace("+00:00", "Z"), now=now) == pytest.approx(
        12.5
    )
    assert parse_rfc3339_delay(when.isoformat(), now=now + 100) == 0.0
    assert parse_rfc3339_delay("2026-01-01T00:00:00", now=now) is None  # no offset
    assert parse_rfc3339_delay("tomorrow", now=now) is None


def test_openai_headers() -> None:
    headers = httpx2.Headers(
        {
            "x-ratelimit-limit-requests": "60",
            "X-RateLimit-Remaining-Requests": "59",
            "x-ratelimit-reset-requests": "1s",
            "x-ratelimit-remaining-tokens": "149984",
            "x-ratelimit-reset-tokens": "6m0s",
        }
    )
    assert parse_rate_limit_headers(headers) == {
        "requests": (59.0, 1.0),
        "tokens": (149984.0, 360.0),
    }


def test_anthropic_headers() -> None:
    now = 1_800_000_000.0
    reset = dt.datetime.fromtimestamp(now + 30, tz=dt.UTC).isoformat().replace("+00:00", "Z")
    headers = {
        f"anthropic-ratelimit-{kind}-{part}": value
        for kind in ("requests", "tokens", "input-tokens", "output-tokens")
        for part, value in (("remaining", "40"), ("reset", reset), ("limit", "50"))
    }
    info = parse_rate_limit_headers(headers, now=now)
    assert set(info) == {"requests", "tokens", "input_tokens", "output_tokens"}
    assert all(v == (40.0, pytest.approx(30.0)) for v in info.values())


def test_malformed_headers_are_ignored_with_a_debug_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="bounded.llm.headers")
    headers = {
        "x-ratelimit-remaining-requests": "many",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-remaining-tokens": "100",
        "x-ratelimit-reset-tokens": "soon",
        "anthropic-ratelimit-requests-remaining": "-1",
        "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:00Z",
        "anthropic-ratelimit-input-tokens-remaining": "5",
        "anthropic-ratelimit-input-tokens-reset": "not a date",
        "anthropic-ratelimit-output-tokens-remaining": "5",  # reset missing: skipped
    }
    assert parse_rate_limit_headers(headers) == {}
    assert caplog.text.count("ignoring malformed") == 4
