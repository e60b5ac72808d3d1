"""Arrival-rate schedules and profiles: exact arrival times."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bounded.stress import PROFILES, Schedule, Segment, constant, profile, ramp, spike, step


def test_constant_arrivals_are_evenly_spaced() -> None:
    times = list(constant(100, 1.0).arrivals())
    assert len(times) == 100
    assert times == pytest.approx([i / 100 for i in range(100)], abs=1e-12)


def test_ramp_arrivals_follow_the_integrated_rate() -> None:
    # Rate 0 -> 20/s over 10 s: N(t) = t^2, so arrival k is at sqrt(k).
    times = list(ramp(0, 20, 10.0).arrivals())
    assert len(times) == 100
    assert times == pytest.approx([math.sqrt(k) for k in range(100)], abs=1e-9)


def test_ramp_down_arrivals() -> None:
    # Rate 20 -> 0/s over 10 s: N(t) = 20 t - t^2, arrival k where that equals k.
    times = list(ramp(20, 0, 10.0).arrivals())
    assert len(times) == 100
    assert times == pytest.approx([10 - math.sqrt(100 - k) for k in range(100)], abs=1e-9)


def test_step_holds_each_rate() -> None:
    times = list(step([10, 20], 1.0).arrivals())
    assert len(times) == 30
    assert times[:10] == pytest.approx([i / 10 for i in range(10)])
    assert times[10:] == pytest.approx([1 + i / 20 for i in range(20)])


def test_spike_is_ten_times_the_rate_in_the_middle_third() -> None:
    s = spike(10, 3.0)
    times = list(s.arrivals())
    counts = [sum(1 for t in times if k <= t < k + 1) for k in range(3)]
    assert counts == [10, 100, 10]
    assert [s.rate_at(0.5), s.rate_at(1.5), s.rate_at(3.5)] == [10, 100, 0]


def test_poisson_arrivals_are_seeded_and_near_the_rate() -> None:
    s = Schedule(constant(1000, 10.0).segments, poisson=True, seed=3)
    a, b = list(s.arrivals()), list(s.arrivals())
    assert a == b
    assert abs(len(a) - 10_000) < 4 * math.sqrt(10_000)
    assert a != list(Schedule(s.segments, poisson=True, seed=4).arrivals())


@given(
    st.lists(
        st.tuples(st.floats(0.1, 5), st.floats(0, 200, allow_subnormal=False), st.floats(0, 200)),
        min_size=1,
        max_size=4,
    )
)
def test_arrivals_increase_stay_inside_and_match_the_integral(
    parts: list[tuple[float, float, float]],
) -> None:
    s = Schedule(tuple(Segment(d, r0, r1) for d, r0, r1 in parts))
    times = list(s.arrivals())
    assert all(0 <= t < s.duration + 1e-9 for t in times)
    assert all(a <= b for a, b in itertools.pairwise(times))
    expected = sum((r0 + r1) / 2 * d for d, r0, r1 in parts)
    assert abs(len(times) - expected) <= len(parts) + 1


@pytest.mark.parametrize("name", list(PROFILES))
def test_profiles_finish_within_a_minute_and_scale_with_duration(name: str) -> None:
    p = profile(name)
    assert p.schedule.duration <= 60
    assert profile(name, duration=6).schedule.duration == pytest.approx(6)
    doubled = profile(name, duration=6, rate=PROFILES[name][0] * 2).schedule
    assert doubled.expected == pytest.approx(2 * profile(name, duration=6).schedule.expected, 0.02)


def test_profile_concurrency_caps() -> None:
    assert profile("light").max_in_flight == 100
    assert profile("medium").max_in_flight == 500
    assert profile("heavy").max_in_flight >= 1000


def test_bad_arguments_name_the_argument() -> None:
    with pytest.raises(ValueError, match="profile"):
        profile("huge")
    with pytest.raises(ValueError, match="rate"):
        constant(0, 1)
    with pytest.raises(ValueError, match="duration"):
        profile("light", duration=-1)
    with pytest.raises(ValueError, match="rates"):
        step([], 1)
