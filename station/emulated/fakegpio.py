"""An emulated `RPi.GPIO` module: the same API, pins held in memory, as strict as the real one.

Installed in `sys.modules` as `RPi.GPIO` by station.emulated.install, so the
mfrc522 library and our own adapters run unchanged. Like gpiozero's mock pin
factory it has handles for tests and demos: `drive(pin, level)` plays the
outside world on an input, `level(pin)` reads what an output drives, and
`history` lists every output change as (monotonic time, pin, level).

Strictness. The checks, their order, exception types and messages are those
of RPi.GPIO 0.7.1 (source/py_gpio.c, common.c, event_gpio.c), so that code
which works here does not fail on a Pi:

* `setup()`: an invalid direction, a pull resistor on an output ("pull_up_down
  parameter is not valid for outputs"), `initial` on an input ("initial
  parameter is not valid for inputs") or an invalid pull are ValueErrors; then
  every channel needs a numbering mode (RuntimeError "Please set pin numbering
  mode ...") and must exist (ValueError "The channel sent is invalid on a
  Raspberry Pi": BCM 0-53, BOARD the 40-pin header's GPIO pins);
* `output()` on a channel not set up as an output, `input()` on one not set up,
  `add_event_detect()` on a channel that is not an input, twice on the same
  channel ("Conflicting edge detection already enabled"), with a bounce time
  <= 0 or a wrong edge: the real errors;
* `cleanup()` returns the channels to inputs without pull and removes their
  edge detection; without an argument it also forgets the numbering mode. An
  output released this way drives nothing any more: `level()` then returns the
  outside world's level (None if nobody drives it) and `is_output()` is False.

`fail_edge_detection(True)` makes every later `add_event_detect()` fail with
RuntimeError("Failed to add edge detection"), as it does with RPi.GPIO on
kernels without the sysfs GPIO interface: the code's polling fallback runs.

Constants are those of RPi.GPIO 0.7.1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

BOARD = 10
BCM = 11
OUT = 0
IN = 1
HIGH = 1
LOW = 0
PUD_OFF = 20
PUD_DOWN = 21
PUD_UP = 22
RISING = 31
FALLING = 32
BOTH = 33
VERSION = "0.7.1-station-sim"
RPI_INFO = {"P1_REVISION": 3, "TYPE": "emulated", "PROCESSOR": "emulated"}

# BOARD pin -> BCM GPIO on the 40-pin header (RPi.GPIO's pin_to_gpio_rev3); -1: power/ground
_BOARD_TO_BCM = (-1, -1, -1, 2, -1, 3, -1, 4, 14, -1, 15, 17, 18, 27, -1, 22, 23, -1, 24, 10, -1, 9, 25, 11, 8,
                 -1, 7, -1, -1, 5, -1, 6, 12, 13, -1, 19, 16, 26, 20, -1, 21)

_lock = threading.RLock()
_mode: int | None = None
_direction: dict[int, int] = {}  # BCM gpio -> IN / OUT, for channels set up by this program
_driven: dict[int, int] = {}  # outputs: the level driven
_outside: dict[int, int] = {}  # the outside world's level on a pin (drive())
_pull: dict[int, int] = {}
_callbacks: dict[int, tuple[int, list[Callable[[int], None]]]] = {}
_edge_fails = False
history: list[tuple[float, int, int]] = []
cleanup_calls: list[object] = []
_listeners: list[Callable[[int, int], None]] = []


def reset() -> None:
    """Forget every pin (between tests)."""
    global _mode, _edge_fails
    with _lock:
        _mode = None
        _edge_fails = False
        _direction.clear()
        _driven.clear()
        _outside.clear()
        _pull.clear()
        _callbacks.clear()
        history.clear()
        cleanup_calls.clear()
        _listeners.clear()


def fail_edge_detection(fail: bool = True) -> None:
    """Make `add_event_detect` fail as on kernels without edge detection support."""
    global _edge_fails
    _edge_fails = fail


def setwarnings(flag: bool) -> None:
    pass


def setmode(mode: int) -> None:
    global _mode
    with _lock:
        if _mode is not None and mode != _mode:
            raise ValueError("A different mode has already been set!")
        if mode not in (BOARD, BCM):
            raise ValueError("An invalid mode was passed to setmode()")
        _mode = mode


def getmode() -> int | None:
    return _mode


def _gpio(channel: int) -> int:
    """The BCM number of a channel in the current mode, with RPi.GPIO's checks."""
    if _mode not in (BOARD, BCM):
        raise RuntimeError("Please set pin numbering mode using GPIO.setmode(GPIO.BOARD) or GPIO.setmode(GPIO.BCM)")
    if not isinstance(channel, int) or isinstance(channel, bool):
        raise ValueError("Channel must be an integer")
    if _mode == BCM:
        if not 0 <= channel <= 53:
            raise ValueError("The channel sent is invalid on a Raspberry Pi")
        return channel
    if not 1 <= channel <= 40 or _BOARD_TO_BCM[channel] == -1:
        raise ValueError("The channel sent is invalid on a Raspberry Pi")
    return _BOARD_TO_BCM[channel]


def _channel(gpio: int) -> int:
    """The channel number in the current mode for a BCM gpio (callbacks get channels)."""
    if _mode == BOARD and gpio in _BOARD_TO_BCM:
        return _BOARD_TO_BCM.index(gpio)
    return gpio


def _channels(channel: int | Sequence[int]) -> list[int]:
    if isinstance(channel, (list, tuple)):
        return list(channel)
    if isinstance(channel, int) and not isinstance(channel, bool):
        return [channel]
    raise ValueError("Channel must be an integer or list/tuple of integers")


def setup(channel: int | Sequence[int], direction: int, pull_up_down: int = PUD_OFF, initial: int | None = None) -> None:
    pins = _channels(channel)
    if direction not in (IN, OUT):
        raise ValueError("An invalid direction was passed to setup()")
    if direction == OUT and pull_up_down != PUD_OFF:
        raise ValueError("pull_up_down parameter is not valid for outputs")
    if direction == IN and initial is not None:
        raise ValueError("initial parameter is not valid for inputs")
    if pull_up_down not in (PUD_OFF, PUD_DOWN, PUD_UP):
        raise ValueError("Invalid value for pull_up_down - should be either PUD_OFF, PUD_UP or PUD_DOWN")
    for ch in pins:
        with _lock:
            gpio = _gpio(ch)
            _pull[gpio] = pull_up_down
            if direction == OUT:
                # RPi.GPIO writes `initial` (0 or 1) before switching to output; without it the
                # output latch keeps its last value (low after reset, as here).
                level = _driven.get(gpio, LOW) if initial is None else int(bool(initial))
                _direction[gpio] = OUT
                _set(gpio, level, force=gpio not in _driven)
            else:
                _release(gpio)
                _direction[gpio] = IN


def _set(gpio: int, level: int, force: bool = False) -> None:
    changed = force or _driven.get(gpio) != level
    _driven[gpio] = level
    if changed:
        history.append((time.monotonic(), gpio, level))
        for listener in list(_listeners):
            listener(gpio, level)


def _release(gpio: int) -> None:
    """An output becomes an input: it drives nothing any more; listeners hear of it."""
    if gpio in _driven:
        del _driven[gpio]
        _direction[gpio] = IN
        for listener in list(_listeners):
            listener(gpio, _outside.get(gpio, LOW))


def output(channel: int | Sequence[int], value: int | bool | Sequence[int | bool]) -> None:
    pins = _channels(channel)
    if isinstance(value, (list, tuple)):
        if not isinstance(channel, (list, tuple)) or len(value) != len(pins):
            raise RuntimeError("Number of channels != number of values")
        values = list(value)
    else:
        values = [value] * len(pins)
    for ch, val in zip(pins, values, strict=True):
        with _lock:
            gpio = _gpio(ch)
            if _direction.get(gpio) != OUT:
                raise RuntimeError("The GPIO channel has not been set up as an OUTPUT")
            _set(gpio, int(bool(val)))


def input(channel: int) -> int:
    with _lock:
        gpio = _gpio(channel)
        if gpio not in _direction:
            raise RuntimeError("You must setup() the GPIO channel first")
        if _direction[gpio] == OUT:
            return _driven.get(gpio, LOW)
        return _input_level(gpio)


def _input_level(gpio: int) -> int:
    if gpio in _outside:
        return _outside[gpio]
    return HIGH if _pull.get(gpio) == PUD_UP else LOW  # an unconnected input floats to its pull


def cleanup(channel: int | Sequence[int] | None = None) -> None:
    """Channels back to inputs without pull, edge detection removed (all: mode forgotten too).

    Recorded in `cleanup_calls`, so tests can prove that nobody released every pin.
    """
    global _mode
    with _lock:
        cleanup_calls.append(channel)
        if channel is None:
            gpios = list(_direction)
        else:
            if _mode is None:  # RPi.GPIO returns at once without a mode: nothing was set up
                return
            gpios = [_gpio(ch) for ch in _channels(channel)]
        for gpio in gpios:
            _callbacks.pop(gpio, None)
            if gpio in _direction:
                _release(gpio)
                _pull[gpio] = PUD_OFF
                del _direction[gpio]
        if channel is None:
            _mode = None


def _check_edge_args(channel: int, edge: int, bouncetime: int | None) -> int:
    gpio = _gpio(channel)
    if _direction.get(gpio) != IN:
        raise RuntimeError("You must setup() the GPIO channel as an input first")
    if edge not in (RISING, FALLING, BOTH):
        raise ValueError("The edge must be set to RISING, FALLING or BOTH")
    if bouncetime is not None and bouncetime <= 0:
        raise ValueError("Bouncetime must be greater than 0")
    return gpio


def add_event_detect(channel: int, edge: int, callback: Callable[[int], None] | None = None,
                     bouncetime: int | None = None) -> None:
    if callback is not None and not callable(callback):
        raise TypeError("Parameter must be callable")
    with _lock:
        gpio = _check_edge_args(channel, edge, bouncetime)
        if gpio in _callbacks:
            raise RuntimeError("Conflicting edge detection already enabled for this GPIO channel")
        if _edge_fails:
            raise RuntimeError("Failed to add edge detection")
        _callbacks[gpio] = (edge, [callback] if callback else [])


def add_event_callback(channel: int, callback: Callable[[int], None]) -> None:
    if not callable(callback):
        raise TypeError("Parameter must be callable")
    with _lock:
        gpio = _gpio(channel)
        if _direction.get(gpio) != IN:
            raise RuntimeError("You must setup() the GPIO channel as an input first")
        if gpio not in _callbacks:
            raise RuntimeError("Add event detection using add_event_detect first before adding a callback")
        _callbacks[gpio][1].append(callback)


def remove_event_detect(channel: int) -> None:
    with _lock:
        _callbacks.pop(_gpio(channel), None)


def gpio_function(channel: int) -> int:
    with _lock:
        return _direction.get(_gpio(channel), IN)


# --- handles for tests, the scenario runner and the terminal view (BCM numbers) ------------


def drive(pin: int, level: int | bool) -> None:
    """The outside world sets the level of a pin (a switch, a contact); edges reach callbacks."""
    level = int(bool(level))
    with _lock:
        old = _input_level(pin) if _direction.get(pin) == IN else _outside.get(pin)
        _outside[pin] = level
        edge_cb = _callbacks.get(pin) if _direction.get(pin) == IN else None
        channel = _channel(pin)
    if edge_cb and old != level:
        edge, cbs = edge_cb
        if edge == BOTH or (edge == RISING and level) or (edge == FALLING and not level):
            for cb in list(cbs):
                cb(channel)


def level(pin: int) -> int | None:
    """What a pin carries: an output's driven level, else the outside world's (None: nobody)."""
    with _lock:
        if pin in _driven:
            return _driven[pin]
        return _outside.get(pin)


def is_output(pin: int) -> bool:
    return _direction.get(pin) == OUT


def has_edge_detection(pin: int) -> bool:
    return pin in _callbacks


def on_output(listener: Callable[[int, int], None]) -> None:
    """Call listener(pin, level) on every change of an output, and when an output is released
    to an input (then `is_output(pin)` is already False): the emulated world follows the contactor."""
    _listeners.append(listener)
