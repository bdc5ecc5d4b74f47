"""An emulated `RPi.GPIO` module: the same API, pins held in memory.

Installed in `sys.modules` as `RPi.GPIO` by station.sim.install, so the
mfrc522 library and our own adapters run unchanged. Like gpiozero's mock pin
factory it has handles for tests and demos: `drive(pin, level)` plays the
outside world on an input, `level(pin)` reads what an output drives, and
`history` lists every output change as (monotonic time, pin, level).

Constants are those of RPi.GPIO 0.7.1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

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

_lock = threading.RLock()
_mode: int | None = None
_direction: dict[int, int] = {}
_levels: dict[int, int] = {}  # outputs: driven level; inputs: the outside world's level
_pull: dict[int, int] = {}
_callbacks: dict[int, tuple[int, list[Callable[[int], None]]]] = {}
history: list[tuple[float, int, int]] = []
cleanup_calls: list[object] = []
_listeners: list[Callable[[int, int], None]] = []


def reset() -> None:
    """Forget every pin (between tests)."""
    global _mode
    with _lock:
        _mode = None
        _direction.clear()
        _levels.clear()
        _pull.clear()
        _callbacks.clear()
        history.clear()
        cleanup_calls.clear()
        _listeners.clear()


def setwarnings(flag: bool) -> None:
    pass


def setmode(mode: int) -> None:
    global _mode
    if mode not in (BOARD, BCM):
        raise ValueError("An invalid mode was passed to setmode()")
    with _lock:
        if _mode is not None and _mode != mode:
            raise ValueError("A different mode has already been set!")
        _mode = mode


def getmode() -> int | None:
    return _mode


def setup(channel: int | list[int], direction: int, pull_up_down: int = PUD_OFF, initial: int | None = None) -> None:
    if _mode is None:
        raise RuntimeError("Please set pin numbering mode using GPIO.setmode(GPIO.BOARD) or GPIO.setmode(GPIO.BCM)")
    for pin in channel if isinstance(channel, (list, tuple)) else [channel]:
        with _lock:
            _direction[pin] = direction
            _pull[pin] = pull_up_down
            if direction == OUT:
                _set(pin, LOW if initial is None else int(bool(initial)))
            elif pin not in _levels:
                # An unconnected input floats to its pull.
                _levels[pin] = HIGH if pull_up_down == PUD_UP else LOW


def _set(pin: int, level: int) -> None:
    changed = _levels.get(pin) != level
    _levels[pin] = level
    if changed:
        history.append((time.monotonic(), pin, level))
        for listener in list(_listeners):
            listener(pin, level)


def output(channel: int | list[int], value: int | bool | list) -> None:
    pins = channel if isinstance(channel, (list, tuple)) else [channel]
    values = value if isinstance(value, (list, tuple)) else [value] * len(pins)
    for pin, val in zip(pins, values):
        with _lock:
            if _direction.get(pin) != OUT:
                raise RuntimeError("The GPIO channel has not been set up as an OUTPUT")
            _set(pin, int(bool(val)))


def input(channel: int) -> int:
    with _lock:
        if channel not in _direction:
            raise RuntimeError("You must setup() the GPIO channel first")
        return _levels.get(channel, LOW)


def cleanup(channel: int | list[int] | None = None) -> None:
    """Recorded, so tests can prove that nobody released every pin."""
    with _lock:
        cleanup_calls.append(channel)
        pins = list(_direction) if channel is None else (channel if isinstance(channel, (list, tuple)) else [channel])
        for pin in pins:
            _direction.pop(pin, None)
            if pin in _levels:
                _set(pin, LOW)


def add_event_detect(channel: int, edge: int, callback: Callable[[int], None] | None = None, bouncetime: int | None = None) -> None:
    with _lock:
        _callbacks[channel] = (edge, [callback] if callback else [])


def add_event_callback(channel: int, callback: Callable[[int], None]) -> None:
    with _lock:
        _callbacks.setdefault(channel, (BOTH, []))[1].append(callback)


def remove_event_detect(channel: int) -> None:
    with _lock:
        _callbacks.pop(channel, None)


def gpio_function(channel: int) -> int:
    return _direction.get(channel, IN)


# --- handles for tests, the scenario runner and the terminal view --------------------


def drive(pin: int, level: int | bool) -> None:
    """The outside world sets the level of an input pin (a switch, a contact)."""
    level = int(bool(level))
    with _lock:
        old = _levels.get(pin)
        _levels[pin] = level
        edge_cb = _callbacks.get(pin)
    if edge_cb and old != level:
        edge, cbs = edge_cb
        if edge == BOTH or (edge == RISING and level) or (edge == FALLING and not level):
            for cb in cbs:
                cb(pin)


def level(pin: int) -> int | None:
    """The level on a pin (what an output drives), None if never set up."""
    with _lock:
        return _levels.get(pin)


def is_output(pin: int) -> bool:
    return _direction.get(pin) == OUT


def on_output(listener: Callable[[int, int], None]) -> None:
    """Call listener(pin, level) on every change of an output (the emulated world follows the contactor)."""
    _listeners.append(listener)
