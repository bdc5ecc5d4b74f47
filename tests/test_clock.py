"""The station's clock alone (station/clock.py), on an injected machine: a system clock that NTP or
an operator steps, a monotonic clock that only runs, and the kernel's "synchronized" flag. No sleeping.

Expected values come from the machine's own bookkeeping (`true` runs with the monotonic clock and
is never stepped), not from the clock under test.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from station.clock import (
    BUILD_FLOOR,
    MONO_PREFIX,
    kernel_synchronized,
    parse_iso,
    parse_mono,
    resolution_of,
    system_clock_policy,
)
from tests.support.machine import DAY, TRUE_START, Machine, at


def off(a: datetime | None, b: datetime) -> float:
    assert a is not None
    return abs((a - b).total_seconds())


# ---------------------------------------------------------------- a backend's time, then NTP steps
@pytest.mark.parametrize("ntp_step", [3 * DAY, -3600.0])
def test_a_step_after_the_backends_correction_does_not_count_twice(ntp_step):
    m = Machine(wall_error=-ntp_step)  # fake-hwclock: the system clock is off by what NTP will step
    clock = m.clock()
    assert not clock.trusted
    clock.set(at(m))
    assert off(clock.now(), m.true()) < 0.01
    m.run(600)
    m.step(ntp_step)  # NTP steps the system clock to the truth; the kernel still says unsynchronized
    m.run(600)
    assert off(clock.now(), m.true()) < 0.01, "the correction counted twice"
    m.synced = True  # ... and now synchronized: the clock switches to it, the same time
    m.run(10)
    assert off(clock.now(), m.true()) < 0.01
    assert clock.source == "system"


def test_a_step_of_an_unsynchronized_system_clock_is_not_followed_once_the_backend_told_the_time(caplog):
    m = Machine()
    clock = m.clock()
    clock.set(at(m))
    m.run(60)
    with caplog.at_level(logging.WARNING, logger="station.clock"):
        m.step(-3600)
        m.run(1)
        assert off(clock.now(), m.true()) < 0.01
        clock.stamp()
        clock.now()
    steps = [r.getMessage() for r in caplog.records if "stepped" in r.getMessage()]
    assert len(steps) == 1 and "-3600.0 s" in steps[0], steps  # logged once, with its size


def test_a_slow_slew_is_not_a_step(caplog):
    m = Machine(synced=True)
    clock = m.clock()
    with caplog.at_level(logging.WARNING, logger="station.clock"):
        for _ in range(100):  # 500 ppm over 100 readings an hour apart: 1.8 s each
            m.run(3600)
            m.step(3600 * 0.0005)
            clock.now()
    assert clock.steps == 0 and not [r for r in caplog.records if "stepped" in r.getMessage()]


# ---------------------------------------------------------------- what counts as synchronized
def test_a_days_old_fake_hwclock_time_is_not_trusted_without_ntp_or_a_backend():
    m = Machine(wall_error=-5 * DAY)  # after 2026-01-01, but days old
    clock = m.clock()
    assert not clock.trusted and clock.now() is None
    stamp = clock.stamp()
    assert stamp.startswith(MONO_PREFIX)
    boot, mono, carried = parse_mono(stamp)
    assert (boot, mono) == ("boot1", 500.0)
    assert carried is not None and off(parse_iso(carried), m.true() - timedelta(days=5)) < 0.01  # the estimate


def test_a_synchronized_system_clock_is_the_time_and_steps_with_ntp():
    m = Machine(synced=True)
    clock = m.clock()
    assert clock.trusted and clock.source == "system"
    m.run(10)
    m.step(-7200)  # an operator's `date -s`; the kernel still vouches for it: followed, and logged
    m.run(0.5)
    assert off(clock.now(), m.true() - timedelta(hours=2)) < 0.01
    assert clock.steps == 1


def test_a_backends_time_does_not_move_a_synchronized_system_clock(caplog):
    m = Machine(synced=True)
    clock = m.clock()
    with caplog.at_level(logging.WARNING, logger="station.clock"):
        assert clock.set(at(m, 3600)) == 0.0
    assert off(clock.now(), m.true()) < 0.01
    assert any("away from the synchronized system clock" in r.getMessage() for r in caplog.records)


def test_the_kernel_is_asked_rarely():
    m = Machine(synced=True)
    clock = m.clock()
    for _ in range(1000):
        clock.stamp()
        m.run(0.001)
    assert m.kernel_reads <= 2


def test_the_kernels_state_can_be_read_here():
    # This container's kernel is not NTP-disciplined; on a Pi with timesyncd it says True. Either
    # way the call works and answers a plain bool (a failure would answer False, too).
    assert kernel_synchronized() in (True, False)
    assert system_clock_policy("trusted")() is True and system_clock_policy("untrusted")() is False
    assert system_clock_policy("ntp") is kernel_synchronized
    with pytest.raises(ValueError):
        system_clock_policy("gps")


def test_a_time_before_the_build_floor_is_refused_from_a_backend_and_from_a_trusted_system_clock():
    m = Machine(wall_error=-(TRUE_START - datetime(1970, 1, 2, tzinfo=UTC)).total_seconds(), synced=True)
    clock = m.clock()
    assert not clock.trusted  # "synchronized" to 1970: no
    with pytest.raises(ValueError):
        clock.set("1970-01-01T00:00:42Z")
    assert clock.stamp().startswith(MONO_PREFIX) and ESTIMATE_FREE(clock.stamp())


def ESTIMATE_FREE(stamp: str) -> bool:  # noqa: N802 - a 1970 estimate is not carried
    return parse_mono(stamp)[2] is None


# ---------------------------------------------------------------- one-second resolution
def test_a_time_without_fraction_corrects_only_outside_what_it_allows():
    assert resolution_of("2026-05-04T12:00:00Z") == 1.0 and resolution_of("2026-05-04T12:00:00.123Z") == 0.001
    m = Machine()
    clock = m.clock()
    m.mono += 0.7  # the true time is 12:00:00.7; the server writes 12:00:00
    assert clock.set("2026-05-04T12:00:00Z", round_trip_s=0.05) == 0.0  # the system clock's estimate fits
    assert clock.trusted and off(clock.now(), m.true()) < 0.01
    for frac in (0.1, 0.5, 0.9, 0.99):  # heartbeats: the header is always up to 1 s behind; no jitter
        m.mono += 1.0 - (m.mono % 1.0) + frac
        whole = m.true().replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert clock.set(whole, round_trip_s=0.02) == 0.0
    assert off(clock.now(), m.true()) < 0.01


def test_a_time_without_fraction_corrects_to_the_nearest_time_it_allows():
    m = Machine()
    clock = m.clock()
    clock.set(at(m))
    m.run(100)
    now = clock.now()
    assert now is not None
    later = (now + timedelta(seconds=10)).replace(microsecond=0)
    correction = clock.set(later.strftime("%Y-%m-%dT%H:%M:%SZ"), round_trip_s=0.1)
    assert 8.9 < correction <= 10.0
    assert clock.now() == later  # the earliest time the header allows: the smallest correction


def test_a_first_time_outside_the_estimate_takes_the_middle_of_what_it_allows():
    m = Machine(wall_error=-DAY)
    clock = m.clock()
    clock.set(m.true().replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ"), round_trip_s=0.2)
    assert off(clock.now(), m.true()) <= 1.2


# ---------------------------------------------------------------- order
def test_stamps_never_go_back_when_a_correction_does():
    m = Machine()
    clock = m.clock()
    clock.set(at(m))
    stamps = []
    for i in range(20):
        m.run(0.3)
        if i == 10:
            assert clock.set(at(m, -5.0)) < 0  # a backend's clock 5 s behind: corrected back
        stamps.append(clock.stamp())
    assert stamps == sorted(stamps)
    assert clock.last_hold_s > 0  # the last ones were held at the last stamp before the correction


def test_hold_keeps_later_stamps_after_a_time():
    m = Machine(synced=True)
    clock = m.clock()
    clock.hold(at(m, 60))
    assert clock.stamp() == at(m, 60) and clock.last_hold_s == pytest.approx(60, abs=0.01)


# ---------------------------------------------------------------- monotonic stamps
def test_monotonic_stamps_resolve_exactly_once_the_clock_is_known_in_the_same_boot():
    m = Machine(wall_error=-3 * DAY)
    clock = m.clock()
    early = clock.stamp()
    event_time = m.true()
    m.run(1800)
    m.step(3 * DAY)  # NTP steps, not yet synchronized: the estimate jumps; the stamp's reference does not
    assert clock.resolve(early) is None
    assert off(parse_iso(clock.estimate_of(early) or ""), event_time) < 0.01  # this boot: on today's estimate
    clock.set(at(m))
    assert off(parse_iso(clock.resolve(early) or ""), event_time) < 0.01
    other = m.clock(boot="boot2")
    assert other.resolve(early) is None  # another boot: the monotonic clock restarted
    assert other.estimate_of(early) == parse_mono(early)[2]  # ... shown as the estimate it carries
    assert clock.resolve("mono:abc:12.5") is None and clock.estimate_of("mono:abc:12.5") is None  # old format
    assert clock.resolve("2026-05-04T12:00:00.000Z") == "2026-05-04T12:00:00.000Z"


def test_the_build_floor_is_still_2026():
    assert BUILD_FLOOR == datetime(2026, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------- the simulator
def test_the_simulator_counts_the_host_clock_as_synchronized_unless_told(tmp_path):
    from station.errors import ScenarioError
    from station.sim import scenario
    from station.sim.demo import simulation_config

    assert simulation_config(None, str(tmp_path)).station.system_clock == "trusted"
    told = tmp_path / "told.toml"
    told.write_text('[station]\nsystem_clock = "ntp"\n')
    assert simulation_config(str(told), str(tmp_path)).station.system_clock == "ntp"  # the file says
    assert simulation_config(str(told), str(tmp_path), system_clock="untrusted").station.system_clock == "untrusted"
    steps = {"step": [{"action": "wait", "seconds": 0}]}
    assert scenario.parse({**steps, "system_clock": "untrusted"}).system_clock == "untrusted"
    assert scenario.parse(steps).system_clock is None
    with pytest.raises(ScenarioError, match="system_clock"):
        scenario.parse({**steps, "system_clock": "gps"})
