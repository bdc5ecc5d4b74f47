"""Contactor, inputs and LEDs on the emulated RPi.GPIO."""

from __future__ import annotations

import threading
import time

import pytest

from station.core.faults import ContactorVerdict, ContactorWatch
from station.core.ports import Contactor, Inputs, LedPattern, Leds
from station.hardware.contactor import GpioContactor
from station.hardware.gpio import load_gpio
from station.hardware.inputs import GpioInputs
from station.hardware.leds import PATTERNS, GpioLeds, NullLeds

RELAY, AUX, EV, STOP = 17, 23, 22, 27
G, Y, R = 5, 6, 13


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def blink_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "leds-blink"]


# --- contactor ---------------------------------------------------------------------------


@pytest.mark.parametrize("active_low", [False, True])
def test_contactor_starts_open_without_a_glitch(fake_gpio, active_low):
    c = GpioContactor(fake_gpio, RELAY, active_low=active_low)
    assert isinstance(c, Contactor)
    open_level = 1 if active_low else 0
    # Every level the pin ever had is the open level: it never closed for an instant.
    assert [lvl for _, pin, lvl in fake_gpio.history if pin == RELAY] == [open_level]
    assert fake_gpio.is_output(RELAY) and not c.closed
    c.set(True)
    assert fake_gpio.level(RELAY) == 1 - open_level and c.closed
    c.set(False)
    assert fake_gpio.level(RELAY) == open_level and not c.closed
    c.close()
    assert fake_gpio.cleanup_calls == []


def judged(c: GpioContactor, commanded: bool) -> ContactorVerdict:
    """What the core's contactor watch makes of the auxiliary contact now (no settle time)."""
    watch = ContactorWatch(settle_s=0.0)
    watch.observe(commanded, c.feedback(), 0.0)
    return watch.verdict


def test_contactor_without_feedback(fake_gpio):
    c = GpioContactor(fake_gpio, RELAY, active_low=False)
    c.set(True)
    assert c.feedback() is None
    assert judged(c, True) is ContactorVerdict.OK and judged(c, False) is ContactorVerdict.OK


def test_contactor_feedback_active_low(fake_gpio):
    c = GpioContactor(fake_gpio, RELAY, active_low=False, feedback_pin=AUX, feedback_active_low=True)
    # Nothing drives the aux pin: the pull-up makes it read "open", not float.
    assert c.feedback() is False
    assert judged(c, False) is ContactorVerdict.OK
    c.set(True)
    assert judged(c, True) is ContactorVerdict.DROPPED
    fake_gpio.drive(AUX, 0)  # the aux contact closes to ground
    assert c.feedback() is True and judged(c, True) is ContactorVerdict.OK
    c.set(False)
    assert judged(c, False) is ContactorVerdict.WELDED  # still closed after opening
    fake_gpio.drive(AUX, 1)
    assert judged(c, False) is ContactorVerdict.OK


def test_contactor_feedback_active_high(fake_gpio):
    c = GpioContactor(fake_gpio, RELAY, active_low=True, feedback_pin=AUX, feedback_active_low=False)
    assert c.feedback() is False  # pull-down
    fake_gpio.drive(AUX, 1)
    assert c.feedback() is True


def test_emulated_world_follows_the_relay(fake_gpio):
    """The way the simulator wires the aux contact: it follows the relay output."""
    c = GpioContactor(fake_gpio, RELAY, active_low=True, feedback_pin=AUX, feedback_active_low=True)
    fake_gpio.on_output(lambda pin, level: pin == RELAY and fake_gpio.drive(AUX, level))  # closed = low = aux low
    c.set(True)
    assert judged(c, True) is ContactorVerdict.OK and c.feedback() is True
    c.set(False)
    assert judged(c, False) is ContactorVerdict.OK and c.feedback() is False


# --- inputs --------------------------------------------------------------------------------


def test_absent_inputs_read_none(fake_gpio):
    inputs = GpioInputs(fake_gpio, None, True, None, True)
    assert isinstance(inputs, Inputs)
    assert inputs.ev_connected() is None and inputs.stop_pressed() is None


def test_ev_connected_active_low_and_high(fake_gpio):
    low = GpioInputs(fake_gpio, ev_connected_pin=EV, ev_active_low=True)
    assert low.ev_connected() is False  # pulled up: nothing connected
    fake_gpio.drive(EV, 0)
    assert low.ev_connected() is True
    fake_gpio.reset()
    fake_gpio.setmode(fake_gpio.BCM)
    high = GpioInputs(fake_gpio, ev_connected_pin=EV, ev_active_low=False)
    assert high.ev_connected() is False  # pulled down
    fake_gpio.drive(EV, 1)
    assert high.ev_connected() is True


def test_stop_button_held_and_short_press_latched(fake_gpio):
    inputs = GpioInputs(fake_gpio, stop_pin=STOP, stop_active_low=True)
    assert inputs.stop_pressed() is False
    fake_gpio.drive(STOP, 0, at=10.0)
    assert inputs.stop_pressed() is True  # held
    fake_gpio.drive(STOP, 1, at=10.3)
    assert inputs.stop_pressed() is False  # released, the press was already seen
    fake_gpio.drive(STOP, 0, at=11.0)
    fake_gpio.drive(STOP, 1, at=11.03)  # a 30 ms press between two polls
    assert inputs.stop_pressed() is True
    assert inputs.stop_pressed() is False
    inputs.close()


def test_stop_button_active_high(fake_gpio):
    inputs = GpioInputs(fake_gpio, stop_pin=STOP, stop_active_low=False)
    assert inputs.stop_pressed() is False
    fake_gpio.drive(STOP, 1)
    assert inputs.stop_pressed() is True


# --- LEDs ------------------------------------------------------------------------------------

STEADY_GYR = {
    LedPattern.OFF: (0, 0, 0),
    LedPattern.AVAILABLE: (1, 0, 0),
    LedPattern.SUSPENDED: (1, 1, 0),
    LedPattern.UNAVAILABLE: (0, 1, 0),
    LedPattern.FAULT: (0, 0, 1),
}


def levels(gpio) -> tuple[int, int, int]:
    return gpio.level(G), gpio.level(Y), gpio.level(R)


@pytest.mark.parametrize("active_low", [False, True])
def test_steady_patterns(fake_gpio, active_low):
    leds = GpioLeds(fake_gpio, "gyr", G, Y, R, active_low)
    assert isinstance(leds, Leds)
    off = 1 if active_low else 0
    assert levels(fake_gpio) == (off, off, off)
    for pattern, lit in STEADY_GYR.items():
        leds.show(pattern)
        assert levels(fake_gpio) == tuple(x ^ off for x in lit), pattern
        assert not leds.blinking
    assert blink_threads() == []


def test_rgb_mixes_yellow_from_red_and_green(fake_gpio):
    leds = GpioLeds(fake_gpio, "rgb", G, Y, R, False)  # Y is the blue channel here
    leds.show(LedPattern.UNAVAILABLE)
    assert levels(fake_gpio) == (1, 0, 1)  # yellow = red + green, blue off
    leds.show(LedPattern.SUSPENDED)
    assert levels(fake_gpio) == (1, 1, 0)  # cyan, distinct from yellow
    leds.show(LedPattern.FAULT)
    assert levels(fake_gpio) == (0, 0, 1)
    leds.show(LedPattern.BUSY)  # yellow blinking
    assert wait_for(lambda: levels(fake_gpio) == (0, 0, 0))
    assert wait_for(lambda: levels(fake_gpio) == (1, 0, 1))
    leds.close()
    assert levels(fake_gpio) == (0, 0, 0)


def test_blinking_thread_lives_only_while_blinking(fake_gpio):
    leds = GpioLeds(fake_gpio, "gyr", G, Y, R, False)
    assert blink_threads() == []
    leds.show(LedPattern.BUSY)
    assert leds.blinking and len(blink_threads()) == 1
    assert fake_gpio.level(Y) == 1  # the first frame at once
    # It blinks: yellow goes off and on again.
    assert wait_for(lambda: sum(1 for _, pin, lvl in fake_gpio.history if pin == Y and lvl == 1) >= 2)
    assert fake_gpio.level(G) == 0 and fake_gpio.level(R) == 0

    leds.show(LedPattern.CHARGING)  # blinking to blinking: the same thread carries on
    assert len(blink_threads()) == 1
    assert wait_for(lambda: fake_gpio.level(G) == 1 and fake_gpio.level(Y) == 0)

    leds.show(LedPattern.AVAILABLE)  # steady: the thread ends
    assert not leds.blinking
    assert wait_for(lambda: blink_threads() == [])
    assert levels(fake_gpio) == (1, 0, 0)
    changes = len(fake_gpio.history)
    time.sleep(0.3)
    assert len(fake_gpio.history) == changes  # idle: nothing toggles any more

    leds.show(LedPattern.REFUSED)
    assert leds.blinking and fake_gpio.level(R) == 1
    leds.close()
    assert wait_for(lambda: blink_threads() == []) and levels(fake_gpio) == (0, 0, 0)


def test_every_pattern_is_defined():
    assert set(PATTERNS) == set(LedPattern)
    blinking = {p for p, frames in PATTERNS.items() if len(frames) > 1}
    assert blinking == {LedPattern.BUSY, LedPattern.CHARGING, LedPattern.REFUSED}


def test_null_leds():
    leds = NullLeds()
    leds.show(LedPattern.CHARGING)
    assert leds.pattern is LedPattern.CHARGING
    leds.close()


def test_bad_led_kind(fake_gpio):
    with pytest.raises(ValueError):
        GpioLeds(fake_gpio, "none", G, Y, R, False)


# --- load_gpio -------------------------------------------------------------------------------


def test_load_gpio_sim_returns_the_fake_in_bcm_mode(fake_gpio):
    fake_gpio.reset()
    gpio = load_gpio("sim")
    assert gpio is fake_gpio
    assert gpio.getmode() == gpio.BCM
    assert load_gpio("sim") is gpio  # BCM already set: tolerated


def test_load_gpio_refuses_board_mode_and_bad_modes(fake_gpio):
    fake_gpio.reset()
    fake_gpio.setmode(fake_gpio.BOARD)
    from station.errors import HardwareError

    with pytest.raises(HardwareError):
        load_gpio("sim")
    with pytest.raises(ValueError):
        load_gpio("raspberry")
