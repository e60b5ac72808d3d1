"""The navigator's shared pieces: validation, prompts, the corpus and the demo's schedule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bounded.demo import FULL, QUICK, Profile, classify, schedule
from bounded.errors import BulkheadFull, CircuitOpen, RateLimited
from bounded.navigator import corpus
from bounded.navigator import workflow as wf


def test_normalise_collapses_whitespace() -> None:
    assert wf.normalise("  Is my  MRI\ncovered? ", 3) == wf.Request("Is my MRI covered?", 3)


@pytest.mark.parametrize(
    ("question", "n", "message"),
    [
        ("", 3, "empty"),
        ("   ", 3, "empty"),
        ("x" * 2_001, 3, "at most"),
        ("ok", 2, r"\[3, 12\]"),
        ("ok", 13, r"\[3, 12\]"),
        ("ok", True, "int"),
        (None, 3, "string"),
    ],
)
def test_normalise_rejects(question: object, n: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        wf.normalise(question, n)  # type: ignore[arg-type]


@given(st.integers(3, 12), st.text(min_size=1).filter(str.strip))
def test_one_subquestion_per_aspect(n: int, question: str) -> None:
    request = wf.normalise(question, n)
    subs = wf.subquestions(request, "claims")
    assert len(subs) == n == len(set(subs))
    assert all(request.question in s for s in subs)


def test_category_is_stable() -> None:
    assert wf.category_of("some reply") == wf.category_of("some reply")
    assert {wf.category_of(str(i)) for i in range(100)} == set(wf.CATEGORIES)


def test_corpus_is_deterministic() -> None:
    a, b = corpus.generate(50, seed=1), corpus.generate(50, seed=1)
    assert a == b
    assert a != corpus.generate(50, seed=2)
    assert [c.id for c in a] == list(range(1, 51))


def test_vector_literal() -> None:
    assert wf.vector_literal([0.5, -1.0]) == "[0.500000,-1.000000]"


@given(st.floats(0.5, 5), st.floats(0.5, 5), st.floats(0.5, 20))
def test_schedule_is_open_and_phased(steady: float, spike: float, sustainable: float) -> None:
    profile = Profile(steady_seconds=steady, spike_seconds=spike, drain_seconds=1)
    starts = schedule(profile, sustainable)
    offsets = [o for o, _ in starts]
    assert offsets == sorted(offsets)
    assert all(o < steady for o, p in starts if p == "steady")
    assert all(steady <= o < steady + spike for o, p in starts if p == "spike")
    spike_count = sum(p == "spike" for _, p in starts)
    assert abs(spike_count - spike * sustainable * profile.spike_load) <= 1


def test_profiles() -> None:
    assert QUICK.steady_seconds + QUICK.spike_seconds < FULL.steady_seconds + FULL.spike_seconds
    assert FULL.spike_load == 10


class _StatusError(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(f"status {status_code}")
        self.status_code = status_code


def _wrapped(inner: BaseException) -> Exception:
    """As an SDK raises a transport's exception: a new error with the cause attached."""
    try:
        raise inner
    except BaseException as exc:
        try:
            raise ConnectionError("Connection error.") from exc
        except ConnectionError as outer:
            return outer


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (RateLimited("admission", retry_after=0.2), "shed with retry_after"),
        (BulkheadFull("workflows", retry_after=None), "shed with retry_after"),
        (_wrapped(RateLimited("llm", retry_after=1.0)), "shed with retry_after"),
        (CircuitOpen("classifier", retry_after=3.0), "breaker open"),
        (_StatusError(429), "provider 429"),
        (_StatusError(529), "provider overloaded (5xx)"),
        (TimeoutError("deadline"), "timeout"),
        (Exception("sorry, too many clients already"), "too many clients"),
        (ConnectionResetError(), "connection error"),
        (KeyError("x"), None),
    ],
)
def test_classify(exc: BaseException, kind: str | None) -> None:
    assert classify(exc) == kind
