"""The emulated RPi.GPIO is as strict as RPi.GPIO 0.7.1: the same checks, exception types and
messages (source/py_gpio.c, common.c, event_gpio.c of the 0.7.1 sdist), so that code which
runs here does not fail on a Pi."""

from __future__ import annotations

import pytest

from station.emulated import fakegpio as GPIO
from station.hardware.inputs import GpioInputs


@pytest.fixture
def gpio():
    GPIO.reset()
    yield GPIO
    GPIO.reset()


def test_setup_needs_a_numbering_mode(gpio):
    with pytest.raises(RuntimeError, match=r"Please set pin numbering mode using GPIO.setmode\(GPIO.BOARD\)"):
        gpio.setup(17, gpio.OUT)
    assert gpio.getmode() is None


def test_mode_cannot_change_and_must_be_valid(gpio):
    with pytest.raises(ValueError, match="An invalid mode was passed to setmode"):
        gpio.setmode(12)
    gpio.setmode(gpio.BCM)
    gpio.setmode(gpio.BCM)  # the same mode again is fine
    with pytest.raises(ValueError, match="A different mode has already been set!"):
        gpio.setmode(gpio.BOARD)


@pytest.mark.parametrize(("mode", "bad", "good"), [
    ("BCM", [-1, 54, 99], [0, 27, 53]),
    ("BOARD", [0, 1, 2, 6, 9, 41], [3, 11, 40]),  # 1, 2, 6, 9: power and ground pins
])
def test_invalid_channels(gpio, mode, bad, good):
    gpio.setmode(getattr(gpio, mode))
    for ch in bad:
        with pytest.raises(ValueError, match="The channel sent is invalid on a Raspberry Pi"):
            gpio.setup(ch, gpio.IN)
    for ch in good:
        gpio.setup(ch, gpio.IN)


def test_board_numbers_map_to_bcm(gpio):
    gpio.setmode(gpio.BOARD)
    gpio.setup(11, gpio.OUT, initial=gpio.HIGH)  # header pin 11 is BCM 17
    assert gpio.level(17) == 1 and gpio.is_output(17)


def test_output_with_a_pull_resistor_and_input_with_initial_are_refused(gpio):
    gpio.setmode(gpio.BCM)
    with pytest.raises(ValueError, match="pull_up_down parameter is not valid for outputs"):
        gpio.setup(17, gpio.OUT, pull_up_down=gpio.PUD_UP)
    with pytest.raises(ValueError, match="initial parameter is not valid for inputs"):
        gpio.setup(27, gpio.IN, initial=gpio.LOW)
    with pytest.raises(ValueError, match="Invalid value for pull_up_down"):
        gpio.setup(27, gpio.IN, pull_up_down=3)
    with pytest.raises(ValueError, match="An invalid direction was passed to setup"):
        gpio.setup(27, 5)
    assert not gpio.is_output(17) and gpio.level(17) is None


def test_output_only_on_outputs_input_only_after_setup(gpio):
    gpio.setmode(gpio.BCM)
    with pytest.raises(RuntimeError, match="The GPIO channel has not been set up as an OUTPUT"):
        gpio.output(17, 1)
    gpio.setup(22, gpio.IN, pull_up_down=gpio.PUD_UP)
    with pytest.raises(RuntimeError, match="The GPIO channel has not been set up as an OUTPUT"):
        gpio.output(22, 1)
    with pytest.raises(RuntimeError, match="You must setup\\(\\) the GPIO channel first"):
        gpio.input(23)
    assert gpio.input(22) == 1  # floats to its pull-up
    gpio.setup(17, gpio.OUT)
    gpio.output(17, True)
    assert gpio.input(17) == 1  # an output reads back what it drives


def test_edge_detection_rules(gpio):
    gpio.setmode(gpio.BCM)
    gpio.setup(17, gpio.OUT)
    with pytest.raises(RuntimeError, match="You must setup\\(\\) the GPIO channel as an input first"):
        gpio.add_event_detect(17, gpio.FALLING)
    gpio.setup(27, gpio.IN, pull_up_down=gpio.PUD_UP)
    with pytest.raises(ValueError, match="The edge must be set to RISING, FALLING or BOTH"):
        gpio.add_event_detect(27, 5)
    with pytest.raises(ValueError, match="Bouncetime must be greater than 0"):
        gpio.add_event_detect(27, gpio.FALLING, bouncetime=0)
    with pytest.raises(RuntimeError, match="Add event detection using add_event_detect first"):
        gpio.add_event_callback(27, print)
    presses: list[int] = []
    gpio.add_event_detect(27, gpio.FALLING, callback=presses.append, bouncetime=50)
    with pytest.raises(RuntimeError, match="Conflicting edge detection already enabled"):
        gpio.add_event_detect(27, gpio.FALLING, callback=presses.append)
    gpio.drive(27, 0)
    gpio.drive(27, 1)
    assert presses == [27]
    gpio.remove_event_detect(27)
    gpio.add_event_detect(27, gpio.RISING)  # allowed again after removal


def test_edge_detection_can_fail_like_on_some_kernels(gpio):
    gpio.setmode(gpio.BCM)
    gpio.setup(27, gpio.IN, pull_up_down=gpio.PUD_UP)
    gpio.fail_edge_detection(True)
    with pytest.raises(RuntimeError, match="^Failed to add edge detection$"):
        gpio.add_event_detect(27, gpio.FALLING)
    assert not gpio.has_edge_detection(27)


def test_cleanup_makes_channels_inputs_and_forgets_the_mode(gpio):
    gpio.setmode(gpio.BCM)
    gpio.setup(17, gpio.OUT, initial=gpio.HIGH)
    gpio.setup(27, gpio.IN, pull_up_down=gpio.PUD_UP)
    gpio.add_event_detect(27, gpio.FALLING)
    heard: list[tuple[int, int]] = []
    gpio.on_output(lambda pin, level: heard.append((pin, level)))
    gpio.cleanup()
    assert gpio.getmode() is None  # the real cleanup() resets the numbering mode
    assert not gpio.is_output(17) and gpio.level(17) is None  # not driven low: released
    assert heard == [(17, 0)] and gpio.history[-1] == (gpio.history[-1][0], 17, 1)  # no low edge written
    assert not gpio.has_edge_detection(27)
    with pytest.raises(RuntimeError, match="Please set pin numbering mode"):
        gpio.input(27)
    assert gpio.cleanup_calls == [None]


def test_cleanup_of_one_channel_keeps_the_mode(gpio):
    gpio.setmode(gpio.BCM)
    gpio.setup(17, gpio.OUT, initial=gpio.HIGH)
    gpio.setup(5, gpio.OUT)
    gpio.cleanup(17)
    assert gpio.getmode() == gpio.BCM and not gpio.is_output(17) and gpio.is_output(5)
    with pytest.raises(RuntimeError, match="You must setup\\(\\) the GPIO channel first"):
        gpio.input(17)


def test_inputs_fall_back_to_polling_when_edge_detection_fails(gpio):
    gpio.setmode(gpio.BCM)
    gpio.fail_edge_detection(True)
    inputs = GpioInputs(gpio, stop_pin=27, stop_active_low=True)
    assert not inputs.edge_detection
    assert inputs.stop_pressed() is False
    gpio.drive(27, 0)  # held
    assert inputs.stop_pressed() is True
    gpio.drive(27, 1)
    assert inputs.stop_pressed() is False  # no latch without edge detection: polling only
    inputs.close()
