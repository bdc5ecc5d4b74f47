"""The GPIO adapters under the real rpi-lgpio 0.6 (its PyPI wheel, unmodified) on the emulated lgpio.

rpi-lgpio is what every Pi runs here (scripts/install-pi). Its failures from
below are lgpio's own `lgpio.error`, not RuntimeError; it refuses the old-style
revision codes of the first boards at import; and lgpio, not the kernel,
debounces edges. The code under test (station/hardware/gpio.py, inputs.py,
contactor.py, leds.py) is judged here by what the real library does, and the
emulated RPi.GPIO's "rpi-lgpio" behaviour (used by the simulator) is checked
against the same library, so the simulator cannot drift from it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from rpi_lgpio_support import real_rpi_lgpio, write_revision

from station.emulated import fakegpio, fakelgpio
from station.errors import HardwareError
from station.hardware.contactor import GpioContactor
from station.hardware.gpio import gpio_errors, load_gpio, new_style_code
from station.hardware.inputs import STOP_BOUNCE_MS, GpioInputs
from station.hardware.leds import GpioLeds

PI3 = 0xA02082  # new-style: Pi 3 Model B 1.2, Sony UK
PI1_BPLUS = 0x0010  # old-style: Pi 1 Model B+ 1.2, Sony UK
STOP, EV, RELAY = 27, 22, 17
MS = 1_000_000  # ns


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.setenv("RPI_LGPIO_REVISION", "unset-by-the-test")
    monkeypatch.delenv("RPI_LGPIO_REVISION")  # and whatever load_gpio sets is undone afterwards


@pytest.fixture
def pi3(tmp_path, clean_env):
    """rpi-lgpio on a Pi 3, loaded through the station's own load_gpio."""
    with real_rpi_lgpio(write_revision(tmp_path / "revision", PI3)):
        yield load_gpio("pi", revision_path=tmp_path / "revision")


# -- errors from below: lgpio.error ---------------------------------------------------------------


def test_lgpio_error_is_no_runtime_error(pi3):
    """The premise: what rpi-lgpio lets through is not what RPi.GPIO raises."""
    fakelgpio.hold(5)
    with pytest.raises(Exception) as exc:
        pi3.setup(5, pi3.OUT, initial=0)
    assert type(exc.value) is fakelgpio.error and not isinstance(exc.value, RuntimeError)
    assert str(exc.value) == "'GPIO busy'"
    assert fakelgpio.error in gpio_errors()


def test_stop_button_falls_back_to_polling_when_lgpio_refuses_edges(pi3, caplog):
    fakelgpio.fail_alerts()
    with caplog.at_level(logging.WARNING):
        inputs = GpioInputs(pi3, stop_pin=STOP, stop_active_low=True)
    assert not inputs.edge_detection
    assert "no edge detection (GPIO busy); read by polling only" in caplog.text
    assert inputs.stop_pressed() is False
    fakelgpio.drive(STOP, 0)
    assert inputs.stop_pressed() is True  # held: polling sees it
    fakelgpio.drive(STOP, 1)
    inputs.close()


def test_a_chip_that_does_not_open_is_a_clear_hardware_error(tmp_path, clean_env):
    with real_rpi_lgpio(write_revision(tmp_path / "revision", PI3)):
        fakelgpio.fail_chip_open()
        with pytest.raises(HardwareError, match="cannot open the GPIO chip: can not open gpiochip; .*gpio group"):
            load_gpio("pi", revision_path=tmp_path / "revision")


def test_a_busy_relay_pin_names_pin_and_role(pi3):
    fakelgpio.hold(RELAY)
    with pytest.raises(HardwareError, match=r"BCM 17 \(contactor relay\) cannot be set up: GPIO busy; another"):
        GpioContactor(pi3, RELAY)


def test_busy_inputs_and_leds_name_their_pin(pi3):
    fakelgpio.hold(EV)
    with pytest.raises(HardwareError, match=r"BCM 22 \(EV-connected input\)"):
        GpioInputs(pi3, ev_connected_pin=EV)
    fakelgpio.hold(6)
    with pytest.raises(HardwareError, match=r"BCM 6 \(yellow LED\)"):
        GpioLeds(pi3, "gyr", 5, 6, 13)


def test_off_a_pi_the_error_says_so(tmp_path, clean_env):
    with real_rpi_lgpio(None), pytest.raises(HardwareError, match="can only be run on a Raspberry Pi"):
        load_gpio("pi", revision_path=tmp_path / "no-such-file")


# -- the first boards: old-style revision codes ----------------------------------------------------


def test_rpi_lgpio_alone_refuses_a_pi_1_b_plus(tmp_path, clean_env):
    """The finding, with the library alone: a Pi 1 B+ reports 0010 and rpi-lgpio will not load."""
    with real_rpi_lgpio(write_revision(tmp_path / "revision", PI1_BPLUS)), \
            pytest.raises(NotImplementedError, match="old-style revision codes"):
        import RPi.GPIO  # noqa: F401


def test_the_station_runs_rpi_lgpio_on_a_pi_1_b_plus(tmp_path, clean_env, caplog):
    rev = write_revision(tmp_path / "revision", PI1_BPLUS)
    with real_rpi_lgpio(rev), caplog.at_level(logging.INFO):
        gpio = load_gpio("pi", revision_path=rev)
        assert gpio.RPI_INFO["TYPE"] == "Model B+" and gpio.RPI_INFO["PROCESSOR"] == "BCM2835"
        assert gpio.RPI_INFO["RAM"] == "512M" and gpio.RPI_INFO["MANUFACTURER"] == "Sony UK"
        contactor = GpioContactor(gpio, RELAY)  # and it drives pins
        contactor.set(True)
        assert fakelgpio.gpio_read(gpio._chip, RELAY) == 1
    assert os.environ["RPI_LGPIO_REVISION"] == "900032"
    assert "board revision 0010 (old-style code: Raspberry Pi 1 Model B+ 1.2)" in caplog.text


@pytest.mark.parametrize(("old", "new"), [(0x0002, 0x810010), (0x0004, 0x800012), (0x000E, 0x900012),
                                          (0x0010, 0x900032), (0x0012, 0x800021), (0x0013, 0x920032)])
def test_new_style_codes_of_old_boards(old, new):
    # Written from the Raspberry Pi documentation's two tables (rpi-lgpio's docs: 0004 = 800012).
    assert new_style_code(old) == new


def test_an_installer_setting_wins(tmp_path, clean_env, monkeypatch):
    monkeypatch.setenv("RPI_LGPIO_REVISION", "900032")
    rev = write_revision(tmp_path / "revision", 0x0013)
    with real_rpi_lgpio(rev):
        load_gpio("pi", revision_path=rev)
    assert os.environ["RPI_LGPIO_REVISION"] == "900032"


# -- debounce: lgpio's rules, the stop button's presses --------------------------------------------


def press(pin: int, start_ms: int, length_ms: float, bounce_ms: tuple[float, ...] = ()) -> None:
    """A press of `length_ms` from `start_ms`; `bounce_ms` are extra open/close flickers after each edge."""
    t = start_ms * MS
    fakelgpio.drive(pin, 0, t)
    for b in bounce_ms:
        fakelgpio.drive(pin, 1, t + int(b * MS))
        fakelgpio.drive(pin, 0, t + int((b + 0.5) * MS))
    end = t + int(length_ms * MS)
    fakelgpio.drive(pin, 1, end)
    for b in bounce_ms:
        fakelgpio.drive(pin, 0, end + int(b * MS))
        fakelgpio.drive(pin, 1, end + int((b + 0.5) * MS))
    fakelgpio.settle(end + 200 * MS)


@pytest.mark.parametrize("length_ms", [5, 10, 30, 49, 120])
@pytest.mark.parametrize("bounce", [(), (1.0, 2.5, 4.0)])
def test_short_presses_are_never_lost(pi3, length_ms, bounce):
    """What a real button gives: a few ms of bounce on both edges around a press of tens of ms
    (a quick jab) or more. Each is latched once, whatever its length."""
    inputs = GpioInputs(pi3, stop_pin=STOP, stop_active_low=True)
    assert inputs.edge_detection
    press(STOP, 1000, length_ms, bounce)
    assert inputs.stop_pressed() is True  # released by now: only the latch can tell
    assert inputs.stop_pressed() is False
    press(STOP, 2000, length_ms, bounce)
    assert inputs.stop_pressed() is True
    inputs.close()


def test_the_latch_comes_the_bounce_time_after_the_press(pi3):
    inputs = GpioInputs(pi3, stop_pin=STOP, stop_active_low=True)
    fakelgpio.drive(STOP, 0, 1000 * MS)
    fakelgpio.drive(STOP, 1, 1030 * MS)
    fakelgpio.settle(1000 * MS + STOP_BOUNCE_MS * MS)
    assert fakelgpio.reports == []  # exactly the bounce time: not yet
    fakelgpio.settle(1001 * MS + STOP_BOUNCE_MS * MS)
    assert fakelgpio.reports == [(STOP, 0, 1000 * MS + STOP_BOUNCE_MS * MS)]
    inputs.close()


def test_lgpio_drops_short_pulses_only_when_both_edges_are_requested(pi3):
    """Where "presses shorter than the bounce time are dropped" is true: with BOTH edges (rule 3),
    which the stop button does not request."""
    pi3.setup(STOP, pi3.IN, pull_up_down=pi3.PUD_UP)
    got: list[int] = []
    pi3.add_event_detect(STOP, pi3.BOTH, callback=got.append, bouncetime=50)
    press(STOP, 1000, 30)
    assert got == []
    press(STOP, 2000, 80)
    assert got == [STOP, STOP]  # pressed, released


# -- the emulated RPi.GPIO behaves as the real rpi-lgpio ---------------------------------------------


def _both(tmp_path: Path, action) -> tuple[object, object]:
    """What `action(gpio)` gives (its result or its exception) under rpi-lgpio and under the
    emulated RPi.GPIO in its rpi-lgpio behaviour."""
    def run(gpio) -> object:
        try:
            return action(gpio)
        except Exception as exc:  # noqa: BLE001 - the comparison is the point
            return (type(exc), str(exc))

    with real_rpi_lgpio(write_revision(tmp_path / "revision", PI3)):
        import RPi.GPIO as real
        real_result = run(real)
    fakegpio.reset()
    fakegpio.emulate("rpi-lgpio")
    fake_result = run(fakegpio)
    fakegpio.reset()
    return real_result, fake_result


def test_emulated_chip_failure_matches(tmp_path):
    def act(gpio):
        (fakelgpio.fail_chip_open if gpio is not fakegpio else fakegpio.fail_chip_open)()
        gpio.setmode(gpio.BCM)
    real, fake = _both(tmp_path, act)
    assert real == fake == (fakelgpio.error, "'can not open gpiochip'")


def test_emulated_busy_line_matches(tmp_path):
    def act(gpio):
        (fakelgpio.hold if gpio is not fakegpio else fakegpio.hold)(STOP)
        gpio.setmode(gpio.BCM)
        gpio.setup(STOP, gpio.IN, pull_up_down=gpio.PUD_UP)
    real, fake = _both(tmp_path, act)
    assert real == fake == (fakelgpio.error, "'GPIO busy'")


def test_emulated_refused_edges_match(tmp_path):
    def act(gpio):
        (fakelgpio.fail_alerts if gpio is not fakegpio else fakegpio.fail_edge_detection)()
        gpio.setmode(gpio.BCM)
        gpio.setup(STOP, gpio.IN, pull_up_down=gpio.PUD_UP)
        gpio.add_event_detect(STOP, gpio.FALLING, bouncetime=10)
    real, fake = _both(tmp_path, act)
    assert real == fake == (fakelgpio.error, "'GPIO busy'")


@pytest.mark.parametrize(("edge", "bounce_ms", "pulses", "expected"), [
    # (press start, length) in ms; expected: when the callbacks ran (the next look of the alert
    # thread after an edge became due, here just before the next edge or at the end)
    ("FALLING", 50, [(1000, 30), (1100, 20)], [1100, 10_000]),  # two short presses 100 ms apart
    ("FALLING", 50, [(1000, 30), (1040, 30)], [10_000]),  # a second press 40 ms after: merged
    ("FALLING", 10, [(1000, 5), (1006, 5), (1500, 200)], [1500, 1700]),  # a double jab: one report
    ("BOTH", 50, [(1000, 30), (1200, 80)], [1280, 10_000]),  # the 30 ms pulse is dropped
    ("RISING", 20, [(1000, 10), (1015, 10), (1300, 40)], [1300, 10_000]),
])
def test_emulated_debounce_matches(tmp_path, edge, bounce_ms, pulses, expected):
    def act(gpio):
        real = gpio is not fakegpio
        if not real:
            fakegpio.set_clock(lambda: 0.0)
        gpio.setmode(gpio.BCM)
        gpio.setup(STOP, gpio.IN, pull_up_down=gpio.PUD_UP)
        got: list[float] = []
        clock = {"t": 0}
        gpio.add_event_detect(STOP, getattr(gpio, edge), callback=lambda ch: got.append(clock["t"]),
                              bouncetime=bounce_ms)
        events = [(start, 0) for start, _ in pulses] + [(start + length, 1) for start, length in pulses]
        for t_ms, level in sorted(events):
            clock["t"] = t_ms
            if real:
                fakelgpio.settle(t_ms * MS - 1)  # the alert thread looked just before this edge
                fakelgpio.drive(STOP, level, t_ms * MS)
            else:
                fakegpio.settle(t_ms / 1000 - 1e-9)
                fakegpio.drive(STOP, level, at=t_ms / 1000)
        clock["t"] = 10_000
        (fakelgpio.settle(10_000 * MS) if real else fakegpio.settle(10.0))
        return got
    real, fake = _both(tmp_path, act)
    assert real == fake == expected
