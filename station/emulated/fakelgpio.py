"""An emulated `lgpio` module: the Python binding of the lg library, as far as rpi-lgpio 0.6 uses it.

rpi-lgpio (the RPi.GPIO API every Pi runs here) is a thin layer over lgpio,
and most of what goes wrong on a Pi comes from below it: lgpio raises its own
`lgpio.error` (a plain Exception subclass, not RuntimeError) when the chip
does not open or a line is busy, and lgpio, not the kernel, debounces edges.
This module models that layer, so that the real rpi-lgpio code runs on it in
tests (tests/hardware/rpi_lgpio_support.py loads the unmodified rpi-lgpio 0.6 wheel on
top of it), and station.emulated.fakegpio can raise the very same error class
in the simulator.

Modelled from lgpio 0.2.2.0 (sdist: lgpio_extra.py, src/lgGpio.c,
src/lgPthAlerts.c, src/lgErr.c):

* every call that fails raises `error(error_text(code))` (`_u2i` with
  `exceptions = True`); `str()` of it is the repr of the text, e.g.
  `'GPIO busy'` with the quotes;
* `gpiochip_open` fails with "can not open gpiochip" (`fail_chip_open()`);
  claiming a line another consumer holds (the kernel's SPI chip selects, a
  second station process: `hold(gpio)`) fails with "GPIO busy", and so does
  an edge request the kernel refuses (`fail_alerts()`); reading a line
  nobody claimed fails with "GPIO not allocated";
* `gpio_get_mode` returns the kernel's line flags (bit 1 output, bits 5-7 the
  bias, bit 16 input, bits 17-18 the requested edges) plus this process's
  claim mode shifted by 8 (input 0x100, output 0x200, alert 0x400);
* alerts: the kernel queues only the requested edges (a line claimed for
  falling edges never reports a rising one). With a debounce time an edge is
  reported once no other queued edge followed it within that time, stamped
  `debounce` after it; with both edges requested it must also differ from
  the last reported level (lgPthAlerts.c `xDebWatEvt`, rules 1-3). Without
  debounce every edge is reported at once.

Time is the emulator's own (`clock`, nanoseconds, `time.monotonic_ns` unless
a test sets it). The world drives a line with `drive(gpio, level)`; the
alert thread's periodic look at pending edges is `settle()`, which the real
library does every few milliseconds; callbacks run in the caller's thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

SET_ACTIVE_LOW, SET_OPEN_DRAIN, SET_OPEN_SOURCE = 4, 8, 16
SET_PULL_UP, SET_PULL_DOWN, SET_PULL_NONE = 32, 64, 128
SET_BIAS_PULL_UP, SET_BIAS_PULL_DOWN, SET_BIAS_DISABLE = SET_PULL_UP, SET_PULL_DOWN, SET_PULL_NONE
RISING_EDGE, FALLING_EDGE, BOTH_EDGES = 1, 2, 3
TIMEOUT = 2  # the level a watchdog report carries

OKAY = 0
BAD_HANDLE = -5
CANNOT_OPEN_CHIP = -78
GPIO_BUSY = -79
GPIO_NOT_ALLOCATED = -80
BAD_GPIO_NUMBER = -75  # lgpio.h LG_BAD_GPIO_NUMBER
_TEXTS = {
    BAD_HANDLE: "unknown handle",
    CANNOT_OPEN_CHIP: "can not open gpiochip",
    GPIO_BUSY: "GPIO busy",
    GPIO_NOT_ALLOCATED: "GPIO not allocated",
    BAD_GPIO_NUMBER: "bad gpio number",
}

# lgGpioGetMode: kernel line flags (xMakeStatus) | claim mode << 8
_IS_KERNEL, _IS_OUTPUT, _IS_INPUT = 1, 2, 1 << 16
_IS_RISING, _IS_FALLING = 1 << 17, 1 << 18
_MODE_INPUT, _MODE_OUTPUT, _MODE_ALERT = 1, 2, 4

LINES = 54


class error(Exception):  # noqa: N801 - the binding's own name: `lgpio.error`
    """lgpio's exception (lgpio_extra.py): a plain Exception; str() is the repr of the text."""

    def __init__(self, value: str) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return repr(self.value)


def error_text(code: int) -> str:
    return _TEXTS.get(code, f"unknown error {code}")


def _fail(code: int) -> error:
    return error(error_text(code))


@dataclass
class _Line:
    mode: int = 0  # this process's claim: 0 none, _MODE_*
    flags: int = 0  # SET_* line flags of the claim (bias, active low)
    edges: int = 0  # RISING_EDGE | FALLING_EDGE requested
    written: int = 0  # what an output drives
    debounce_ns: int = 0
    # xDebWatEvt state
    last_evt_ts: int = 0
    last_evt_lv: int = 0
    last_rpt_lv: int = 0
    debounced: bool = True


@dataclass
class _Callback:
    gpio: int
    func: Callable[[int, int, int, int], None]
    active: bool = True

    def cancel(self) -> None:
        self.active = False
        with _lock:
            if self in _callbacks:
                _callbacks.remove(self)


@dataclass
class _Chip:
    number: int
    lines: dict[int, _Line] = field(default_factory=dict)


_lock = threading.RLock()
clock: Callable[[], int] = time.monotonic_ns
_chip: _Chip | None = None
_chip_fails = False
_alerts_fail = False
_held: set[int] = set()  # lines another consumer (the kernel, another process) holds
_outside: dict[int, int] = {}  # the world's level on each line
_callbacks: list[_Callback] = []
reports: list[tuple[int, int, int]] = []  # (gpio, level, timestamp_ns) of every alert delivered


def reset() -> None:
    """Forget everything (between tests)."""
    global _chip, _chip_fails, _alerts_fail, clock
    with _lock:
        _chip, _chip_fails, _alerts_fail, clock = None, False, False, time.monotonic_ns
        _held.clear()
        _outside.clear()
        _callbacks.clear()
        reports.clear()


def fail_chip_open(fail: bool = True) -> None:
    """Make gpiochip_open fail as it does without /dev/gpiochipN access."""
    global _chip_fails
    _chip_fails = fail


def fail_alerts(fail: bool = True) -> None:
    """The kernel refuses edge requests ("GPIO busy" from gpio_claim_alert), inputs still work."""
    global _alerts_fail
    _alerts_fail = fail


def hold(gpio: int, held: bool = True) -> None:
    """Another consumer holds the line (claims by this process then fail with "GPIO busy")."""
    with _lock:
        (_held.add if held else _held.discard)(gpio)


# --- the binding's functions (the subset rpi-lgpio 0.6 calls) --------------------------------


def _line(handle: int, gpio: int) -> _Line:
    if _chip is None or handle != _chip.number << 16:
        raise _fail(BAD_HANDLE)
    if not 0 <= gpio < LINES:
        raise _fail(BAD_GPIO_NUMBER)
    return _chip.lines.setdefault(gpio, _Line())


def gpiochip_open(gpiochip: int) -> int:
    global _chip
    with _lock:
        if _chip_fails:
            raise _fail(CANNOT_OPEN_CHIP)
        if _chip is None or _chip.number != gpiochip:
            _chip = _Chip(gpiochip)
        return gpiochip << 16


def gpiochip_close(handle: int) -> int:
    global _chip
    with _lock:
        _line(handle, 0)
        _chip = None
        return OKAY


def gpio_get_chip_info(handle: int) -> list:
    with _lock:
        _line(handle, 0)
        return [OKAY, LINES, "gpiochip0", "pinctrl-emulated"]


def gpio_get_mode(handle: int, gpio: int) -> int:
    with _lock:
        line = _line(handle, gpio)
        flags = _IS_KERNEL if (line.mode or gpio in _held) else 0
        if line.mode == _MODE_OUTPUT:
            flags |= _IS_OUTPUT
        elif line.mode:
            flags |= _IS_INPUT
        flags |= line.flags & (SET_PULL_UP | SET_PULL_DOWN | SET_PULL_NONE | SET_ACTIVE_LOW)
        if line.edges & RISING_EDGE:
            flags |= _IS_RISING
        if line.edges & FALLING_EDGE:
            flags |= _IS_FALLING
        return flags | (line.mode << 8)


def _claim(handle: int, gpio: int, mode: int, flags: int, edges: int = 0) -> _Line:
    line = _line(handle, gpio)
    if gpio in _held:
        raise _fail(GPIO_BUSY)
    line.mode, line.flags, line.edges = mode, flags, edges
    if mode != _MODE_ALERT:
        line.debounce_ns = 0
    return line


def gpio_claim_input(handle: int, gpio: int, lFlags: int = 0) -> int:  # noqa: N803 - the binding's names
    with _lock:
        _claim(handle, gpio, _MODE_INPUT, lFlags)
        return OKAY


def gpio_claim_output(handle: int, gpio: int, level: int = 0, lFlags: int = 0) -> int:  # noqa: N803
    with _lock:
        line = _claim(handle, gpio, _MODE_OUTPUT, lFlags)
        line.written = 1 if level else 0
        return OKAY


def gpio_claim_alert(handle: int, gpio: int, eFlags: int, lFlags: int = 0,  # noqa: N803
                     notify_handle: int | None = None) -> int:
    with _lock:
        if _alerts_fail:
            raise _fail(GPIO_BUSY)
        line = _claim(handle, gpio, _MODE_ALERT, lFlags, eFlags & BOTH_EDGES)
        level = _level(gpio, line)
        line.last_evt_lv = line.last_rpt_lv = level
        line.last_evt_ts, line.debounced = clock(), True
        return OKAY


def gpio_free(handle: int, gpio: int) -> int:
    with _lock:
        line = _line(handle, gpio)
        line.mode, line.edges, line.debounce_ns = 0, 0, 0
        return OKAY


def _level(gpio: int, line: _Line) -> int:
    if line.mode == _MODE_OUTPUT:
        return line.written
    if gpio in _outside:
        return _outside[gpio]
    return 1 if line.flags & SET_PULL_UP else 0


def gpio_read(handle: int, gpio: int) -> int:
    with _lock:
        line = _line(handle, gpio)
        if not line.mode:
            raise _fail(GPIO_NOT_ALLOCATED)
        return _level(gpio, line)


def gpio_write(handle: int, gpio: int, level: int) -> int:
    with _lock:
        line = _line(handle, gpio)
        if not line.mode:
            raise _fail(GPIO_NOT_ALLOCATED)
        line.written = 1 if level else 0
        return OKAY


def gpio_set_debounce_micros(handle: int, gpio: int, debounce_micros: int) -> int:
    with _lock:
        _line(handle, gpio).debounce_ns = int(debounce_micros) * 1000
        return OKAY


def tx_pwm(handle: int, gpio: int, frequency: float, duty: float, offset: int = 0, cycles: int = 0) -> int:
    return OKAY


def callback(handle: int, gpio: int, edge: int = RISING_EDGE,
             func: Callable[[int, int, int, int], None] | None = None) -> _Callback:
    with _lock:
        _line(handle, gpio)
        cb = _Callback(gpio, func or (lambda *args: None))
        _callbacks.append(cb)
        return cb


# --- the outside world and the alert thread ---------------------------------------------------


def drive(gpio: int, level: int | bool, at_ns: int | None = None) -> None:
    """The world sets a line's level at `at_ns` (default: now); alerts follow lgpio's rules."""
    level = 1 if level else 0
    with _lock:
        now = clock() if at_ns is None else at_ns
        old = _outside.get(gpio)
        line = _chip.lines.get(gpio) if _chip is not None else None
        if old is None and line is not None and line.mode:
            old = _level(gpio, line)
        _outside[gpio] = level
        if line is None or line.mode != _MODE_ALERT or old == level:
            return
        wanted = RISING_EDGE if level else FALLING_EDGE
        if not line.edges & wanted:
            return  # the kernel queues only the requested edges
        out = _debounce_check(gpio, line, now)
        line.last_evt_ts, line.last_evt_lv, line.debounced = now, level, False
        if not line.debounce_ns:
            out.append((gpio, level, now))
            line.last_rpt_lv = level
    _deliver(out)


def settle(now_ns: int | None = None) -> None:
    """The alert thread's look at pending edges (lgpio does this every few ms)."""
    with _lock:
        now = clock() if now_ns is None else now_ns
        out: list[tuple[int, int, int]] = []
        if _chip is not None:
            for gpio, line in _chip.lines.items():
                if line.mode == _MODE_ALERT:
                    out += _debounce_check(gpio, line, now)
    _deliver(out)


def _debounce_check(gpio: int, line: _Line, ts: int) -> list[tuple[int, int, int]]:
    """xDebWatEvt's debounce half: report the pending edge once it was stable long enough."""
    if not line.debounce_ns or line.debounced or ts - line.last_evt_ts <= line.debounce_ns:
        return []
    if line.edges == BOTH_EDGES and line.last_rpt_lv == line.last_evt_lv:
        return []
    line.debounced, line.last_rpt_lv = True, line.last_evt_lv
    return [(gpio, line.last_evt_lv, line.last_evt_ts + line.debounce_ns)]


def _deliver(out: list[tuple[int, int, int]]) -> None:
    for gpio, level, ts in out:
        reports.append((gpio, level, ts))
        chip = _chip.number if _chip is not None else 0
        for cb in [c for c in _callbacks if c.gpio == gpio and c.active]:
            cb.func(chip, gpio, level, ts)
