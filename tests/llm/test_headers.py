"""Parsing of OpenAI and Anthropic rate-limit headers."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bounded.llm import (
    ProviderLimits,
    parse_duration,
    parse_rate_limit_headers,
    parse_rfc3339_delay,
)
from bounded.llm.headers import MAX_RESET


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


# -- absurd values (issue 8 item 8) -------------------------------------------------------

NINES = "9" * 400


def test_a_duration_that_overflows_is_malformed() -> None:
    assert parse_duration(f"{NINES}s") is None
    assert parse_duration(f"{NINES}h1s") is None
    assert parse_duration(NINES) is None


def test_non_finite_values_are_skipped_not_raised() -> None:
    headers = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": f"{NINES}s",
        "x-ratelimit-remaining-tokens": NINES,
        "x-ratelimit-reset-tokens": "1s",
    }
    assert parse_rate_limit_headers(headers) == {}


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-ratelimit-reset-requests", "1000000000h"),
        ("anthropic-ratelimit-requests-reset", "9999-12-31T23:59:59Z"),
    ],
)
def test_far_resets_are_capped(header: str, value: str) -> None:
    remaining = header.replace("reset", "remaining")
    assert parse_rate_limit_headers({header: value, remaining: "0"}) == {
        "requests": (0.0, MAX_RESET)
    }
    assert parse_rate_limit_headers({header: value, remaining: "0"}, max_reset=30.0) == {
        "requests": (0.0, 30.0)
    }


def test_max_reset_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_reset"):
        parse_rate_limit_headers({}, max_reset=0)
    with pytest.raises(ValueError, match="max_reset"):
        parse_rate_limit_headers({}, max_reset=math.inf)


def test_out_of_range_timestamps_are_malformed() -> None:
    assert parse_rfc3339_delay("0001-01-01T00:00:00+14:00", now=0.0) == 0.0
    assert parse_rfc3339_delay("9999-12-31T23:59:59-14:00", now=0.0) == pytest.approx(
        2.534e11, 1e-3
    )


header_text = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"[0-9]{1,400}(\.[0-9]{0,5})?(h|m|s|ms)?", fullmatch=True),
    st.from_regex(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})",
        fullmatch=True,
    ),
    st.sampled_from(["inf", "nan", "-0", "1e400", "1e-400", "0x10", "١٢"]),
)


@given(remaining=header_text, reset=header_text, prefix=st.sampled_from(["x", "anthropic"]))
def test_any_header_values_give_finite_bounded_pairs_or_nothing(
    remaining: str, reset: str, prefix: str
) -> None:
    if prefix == "x":
        headers = {"x-ratelimit-remaining-requests": remaining, "x-ratelimit-reset-requests": reset}
    else:
        headers = {
            "anthropic-ratelimit-requests-remaining": remaining,
            "anthropic-ratelimit-requests-reset": reset,
        }
    for left, after in parse_rate_limit_headers(headers, max_reset=60.0).values():
        assert math.isfinite(left)
        assert left >= 0
        assert 0 <= after <= 60.0


@pytest.mark.looptime
@pytest.mark.parametrize(
    "headers",
    [
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": f"{NINES}s"},
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1000000000h"},
        {
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": "9999-12-31T23:59:59Z",
        },
    ],
)
async def test_provider_limits_never_raise_and_never_stall_past_the_window(
    headers: dict[str, str],
) -> None:
    limits = ProviderLimits(rpm=60, name="absurd")
    loop = asyncio.get_running_loop()
    start = loop.time()
    limits.update_from_headers(headers)  # a successful response: must not raise
    assert limits.requests is not None
    await limits.requests.acquire()
    assert loop.time() - start <= 60.0 + 1.0
