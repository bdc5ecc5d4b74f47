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

Two libraries provide this API on a Pi, and they fail differently. Every Pi
runs rpi-lgpio (scripts/install-pi), so the simulator emulates it by default
(`emulate("rpi-lgpio")`, config `sim.gpio_library`):

* its errors from below come from lgpio as `lgpio.error`, a plain Exception
  subclass and not RuntimeError (here: `error`, the class of the emulated
  lgpio, station.emulated.fakelgpio), raised where rpi-lgpio 0.6 lets them
  through: `setmode()` when the gpiochip does not open (`fail_chip_open()`,
  "can not open gpiochip"), `setup()` of a line another consumer holds
  (`hold(pin)`, "GPIO busy"), `add_event_detect()` when the edge request is
  refused (`fail_edge_detection()`, "GPIO busy");
* its debounce is lgpio's: an edge is reported once no other edge of the
  requested kind followed within `bouncetime` (and, for BOTH, only if it
  differs from the last one reported), `bouncetime` after it; RPi.GPIO's
  instead calls back at the first edge and ignores edges for `bouncetime`
  after each call. With a bouncetime, pending lgpio reports are delivered by
  a timer, or by `settle()` when a test set the clock (`set_clock`).

Under "RPi.GPIO" two processes may share a pin (no busy lines) and a failing
chip shows up as RPi.GPIO's RuntimeError at the first `setup()`.

Constants are those of RPi.GPIO 0.7.1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from station.emulated.fakelgpio import error

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
LIBRARIES = ("RPi.GPIO", "rpi-lgpio")


@dataclass
class _Detect:
    """Edge detection on one pin: the requested edge, the bouncetime and the debounce state."""

    edge: int
    callbacks: list[Callable[[int], None]]
    bounce_s: float | None = None
    last_call: float | None = None  # RPi.GPIO: time of the last callback
    pending: tuple[float, int] | None = None  # rpi-lgpio: (time, level) of the edge not yet reported
    reported: int | None = None  # rpi-lgpio: the last level reported


_callbacks: dict[int, _Detect] = {}
_edge_fails = False
_chip_fails = False
_held: set[int] = set()
_library = "RPi.GPIO"
_clock: Callable[[], float] = time.monotonic
_manual_clock = False
history: list[tuple[float, int, int]] = []
cleanup_calls: list[object] = []
_listeners: list[Callable[[int, int], None]] = []


def reset() -> None:
    """Forget every pin (between tests); back to RPi.GPIO's behaviour and the real clock."""
    global _mode, _edge_fails, _chip_fails, _library, _clock, _manual_clock
    with _lock:
        _mode = None
        _edge_fails = _chip_fails = False
        _library, _clock, _manual_clock = "RPi.GPIO", time.monotonic, False
        _held.clear()
        _direction.clear()
        _driven.clear()
        _outside.clear()
        _pull.clear()
        _callbacks.clear()
        history.clear()
        cleanup_calls.clear()
        _listeners.clear()


def emulate(library: str) -> None:
    """Behave as "RPi.GPIO" (0.7.1) or "rpi-lgpio" (0.6 on lgpio) where the two differ."""
    global _library
    if library not in LIBRARIES:
        raise ValueError(f"the emulated GPIO library is one of {LIBRARIES}, not {library!r}")
    _library = library


def library() -> str:
    return _library


def set_clock(clock: Callable[[], float]) -> None:
    """Take time from `clock` (seconds); pending lgpio reports then wait for `settle()`."""
    global _clock, _manual_clock
    _clock, _manual_clock = clock, True


def fail_edge_detection(fail: bool = True) -> None:
    """Make `add_event_detect` fail as on kernels without edge detection support (RPi.GPIO) or
    as a refused edge request does under rpi-lgpio."""
    global _edge_fails
    _edge_fails = fail


def fail_chip_open(fail: bool = True) -> None:
    """The GPIO chip cannot be opened (no /dev/gpiochip access; RPi.GPIO: no /dev/mem)."""
    global _chip_fails
    _chip_fails = fail


def hold(pin: int, held: bool = True) -> None:
    """Another consumer (the kernel's SPI or I2C, a second process) holds the line."""
    with _lock:
        (_held.add if held else _held.discard)(pin)


def setwarnings(flag: bool) -> None:
    pass


def setmode(mode: int) -> None:
    global _mode
    with _lock:
        if _mode is not None and mode != _mode:
            raise ValueError("A different mode has already been set!")
        if mode not in (BOARD, BCM):
            raise ValueError("An invalid mode was passed to setmode()")
        if _chip_fails and _library == "rpi-lgpio":
            raise error("can not open gpiochip")  # gpiochip_open, first thing rpi-lgpio's setmode does
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
            if _chip_fails:  # only RPi.GPIO gets here with a failing chip (rpi-lgpio failed in setmode)
                raise RuntimeError("No access to /dev/mem.  Try running as root!")
            if gpio in _held and _library == "rpi-lgpio":
                raise error("GPIO busy")  # gpio_claim_input/output: the kernel refuses a second consumer
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
            if _library == "rpi-lgpio":
                raise error("GPIO busy")  # lgpio.gpio_claim_alert raises before rpi-lgpio checks
            raise RuntimeError("Failed to add edge detection")
        _callbacks[gpio] = _Detect(edge, [callback] if callback else [],
                                   None if bouncetime is None else bouncetime / 1000, reported=_input_level(gpio))


def add_event_callback(channel: int, callback: Callable[[int], None]) -> None:
    if not callable(callback):
        raise TypeError("Parameter must be callable")
    with _lock:
        gpio = _gpio(channel)
        if _direction.get(gpio) != IN:
            raise RuntimeError("You must setup() the GPIO channel as an input first")
        if gpio not in _callbacks:
            raise RuntimeError("Add event detection using add_event_detect first before adding a callback")
        _callbacks[gpio].callbacks.append(callback)


def remove_event_detect(channel: int) -> None:
    with _lock:
        _callbacks.pop(_gpio(channel), None)


def gpio_function(channel: int) -> int:
    with _lock:
        return _direction.get(_gpio(channel), IN)


# --- handles for tests, the scenario runner and the terminal view (BCM numbers) ------------


def drive(pin: int, level: int | bool, at: float | None = None) -> None:
    """The outside world sets the level of a pin (a switch, a contact) at time `at` (default: now);
    edges reach callbacks as the emulated library delivers them (see the module docstring)."""
    level = int(bool(level))
    with _lock:
        now = _clock() if at is None else at
        old = _input_level(pin) if _direction.get(pin) == IN else _outside.get(pin)
        _outside[pin] = level
        detect = _callbacks.get(pin) if _direction.get(pin) == IN else None
        calls: list[Callable[[int], None]] = []
        if detect is not None and old != level and _wanted(detect.edge, level):
            calls = _edge(pin, detect, level, now)
        channel = _channel(pin)
    for cb in calls:
        cb(channel)


def _wanted(edge: int, level: int) -> bool:
    return edge == BOTH or (edge == RISING and bool(level)) or (edge == FALLING and not level)


def _edge(pin: int, d: _Detect, level: int, now: float) -> list[Callable[[int], None]]:
    """The callbacks an edge causes now (called with the lock held)."""
    if d.bounce_s is None:
        return list(d.callbacks)
    if _library == "RPi.GPIO":  # event_gpio.c: call at once, then ignore edges for bouncetime
        if d.last_call is not None and now - d.last_call <= d.bounce_s:
            return []
        d.last_call = now
        return list(d.callbacks)
    calls = _due(d, now)  # lgpio: the pending edge is reported if it stayed alone long enough
    d.pending = (now, level)
    if not _manual_clock:
        timer = threading.Timer(d.bounce_s + 0.002, settle)
        timer.daemon = True
        timer.start()
    return calls


def _due(d: _Detect, now: float) -> list[Callable[[int], None]]:
    if d.pending is None or d.bounce_s is None or now - d.pending[0] <= d.bounce_s:
        return []
    level = d.pending[1]
    d.pending = None
    if d.edge == BOTH and d.reported == level:
        return []
    d.reported = level
    return list(d.callbacks)


def settle(now: float | None = None) -> None:
    """Deliver the lgpio reports that are due by `now` (its alert thread does this every few ms)."""
    with _lock:
        t = _clock() if now is None else now
        due = [(_channel(pin), cb) for pin, d in list(_callbacks.items()) for cb in _due(d, t)]
    for channel, cb in due:
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
