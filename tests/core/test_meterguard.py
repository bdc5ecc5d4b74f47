"""MeterGuard: plausibility (never down, never faster than the rating) and fault counting."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.core.meterguard import MeterGuard
from station.core.model import MeterReading
from station.errors import MeterError


def R(wh: int, t: float) -> MeterReading:
    return MeterReading(energy_wh=wh, taken_at=t)


def started(max_power_w=11_000.0, max_failures=3, wh=180_000, t=0.0, margin_wh=10) -> MeterGuard:
    g = MeterGuard(max_power_w, max_failures, margin_wh=margin_wh)
    assert g.accept(R(wh, t)) is None  # first reading: only a candidate
    assert g.accept(R(wh, t + 1)) is not None
    return g


def test_first_reading_needs_a_confirming_second():
    g = MeterGuard(11_000, 3)
    assert g.accept(R(1000, 0)) is None
    assert g.last is None
    r = g.accept(R(1002, 1))
    assert r is not None and g.last == r


def test_spike_180_5000_180_is_never_accepted(caplog):
    g = started(wh=180_000, t=0)
    with caplog.at_level(logging.WARNING, logger="station.meter"):
        assert g.accept(R(5_000_000, 2)) is None
    assert "jumped" in caplog.text
    ok = g.accept(R(180_001, 3))
    assert ok is not None and ok.energy_wh == 180_001
    accepted = [g.last.energy_wh]
    # a session from t=1 to now bills 1 Wh, not 4.8 MWh
    assert accepted[-1] - 180_000 == 1
    assert g.rejected == 1 and not g.faulted


def test_spike_as_the_very_first_reading_is_not_taken_as_reference():
    g = MeterGuard(11_000, 3)
    assert g.accept(R(5_000_000, 0)) is None  # spike first
    assert g.accept(R(180_000, 1)) is None  # disagrees: new candidate
    r = g.accept(R(180_001, 2))
    assert r is not None and r.energy_wh == 180_001


def test_decrease_rejected():
    g = started(wh=10_000)
    assert g.accept(R(9_999, 5)) is None
    assert g.last.energy_wh == 10_000


def test_jump_limit_is_power_times_time_plus_lag_and_margin():
    g = started(max_power_w=3600.0, wh=0, t=0)  # 3600 W = 1 Wh per second; last at t=1
    # 10 s later: 10 s + 2 s lag at 1 Wh/s + 10 Wh margin = 22 Wh
    assert g.accept(R(23, 11)) is None
    assert g.accept(R(22, 11)) is not None


def test_allowance_grows_with_time_since_last_accepted():
    g = started(max_power_w=3600.0, wh=0, t=0)
    assert g.accept(R(1000, 2)) is None  # 1 kWh in 1 s: no
    # an hour without answers while charging at 3.6 kW: 3.6 kWh is plausible
    assert g.accept(R(3600, 3601)) is not None


def test_fault_after_max_failures_and_cleared_when_it_answers():
    g = started(max_failures=3)
    assert g.failed(MeterError("timeout")) is False
    assert g.failed(MeterError("timeout")) is False
    assert g.failed(MeterError("timeout")) is True
    assert g.faulted and "timeout" in g.fault_text
    assert g.failed("again") is True  # stays faulted
    assert g.accept(R(180_000, 10)) is not None
    assert not g.faulted and g.failures == 0 and g.fault_text is None


def test_success_in_between_resets_the_count():
    g = started(max_failures=2)
    g.failed("x")
    g.accept(R(180_000, 5))
    assert g.failed("x") is False


def test_persistent_implausible_answers_end_in_a_fault():
    g = started(max_failures=3, wh=500_000)
    for t in (5, 6, 7):
        assert g.accept(R(0, t)) is None  # e.g. a replaced meter starting at 0
    assert g.faulted and "went down" in g.fault_text


def test_seed_from_a_known_value():
    g = MeterGuard(11_000, 3)
    g.seed(180_000, 0.0)
    assert g.accept(R(100, 1)) is None
    assert g.accept(R(180_002, 2)) is not None


def test_default_margin_accepts_one_step_of_the_coarsest_register():
    # EM24: 0.1 kWh steps. At 1 s polling a 100 Wh step must not be taken for a spike.
    g = MeterGuard(3 * 230 * 65, 3)
    g.accept(R(1_000_000, 0))
    g.accept(R(1_000_000, 1))
    assert g.accept(R(1_000_100, 2)) is not None


def test_bad_parameters():
    with pytest.raises(ValueError):
        MeterGuard(0, 3)
    with pytest.raises(ValueError):
        MeterGuard(1000, 0)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0.2, max_value=30.0),  # seconds between reads
            st.floats(min_value=0.0, max_value=1.0),  # fraction of max power drawn
            st.booleans(),  # spike instead of the true value
        ),
        min_size=1,
        max_size=40,
    )
)
def test_accepted_energy_never_decreases_and_never_exceeds_the_rating(steps):
    p_max = 22_000.0
    g = MeterGuard(p_max, max_failures=1000)
    t, true_wh = 0.0, 1_000_000
    g.accept(R(true_wh, t))
    g.accept(R(true_wh, t + 0.5))
    t += 0.5
    accepted = [g.last]
    for dt, frac, spike in steps:
        t += dt
        true_wh += int(p_max * frac * dt / 3600)
        shown = true_wh + 10_000_000 if spike else true_wh
        r = g.accept(R(shown, t))
        if spike:
            assert r is None
        else:
            assert r is not None  # a true value is always accepted
            accepted.append(r)
    for a, b in zip(accepted, accepted[1:], strict=False):
        assert b.energy_wh >= a.energy_wh
        assert b.energy_wh - a.energy_wh <= g.allowance_wh(b.taken_at - a.taken_at)
