"""The status LEDs: green/yellow/red, or one RGB LED on the same three pins.

Each `LedPattern` is a short list of frames (which colours are lit, for how
long); a steady pattern has one frame. Steady patterns are written once and
cost nothing afterwards. A blinking pattern runs a small timer thread that
sleeps on an Event between frames; the thread exists only while a blinking
pattern is shown and ends as soon as a steady one replaces it.

`kind = "rgb"`: the three pins are the red, green and blue channels (the
yellow pin is the blue channel). Yellow is red + green. SUSPENDED, on a
three-LED station green + yellow, is cyan (green + blue) on an RGB LED, so
it stays distinct from UNAVAILABLE (yellow).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import ModuleType

from station.core.ports import LedPattern
from station.hardware.gpio import setup_pin

GREEN, YELLOW, RED, BLUE = "green", "yellow", "red", "blue"


@dataclass(frozen=True)
class Frame:
    colours: frozenset[str]
    seconds: float


def _steady(*colours: str) -> tuple[Frame, ...]:
    return (Frame(frozenset(colours), 0.0),)


def _blink(on_s: float, off_s: float, *colours: str) -> tuple[Frame, ...]:
    return (Frame(frozenset(colours), on_s), Frame(frozenset(), off_s))


PATTERNS: dict[LedPattern, tuple[Frame, ...]] = {
    LedPattern.OFF: _steady(),
    LedPattern.AVAILABLE: _steady(GREEN),
    LedPattern.BUSY: _blink(0.25, 0.25, YELLOW),
    LedPattern.CHARGING: _blink(1.0, 1.0, GREEN),
    LedPattern.SUSPENDED: _steady(GREEN, YELLOW),
    LedPattern.REFUSED: _blink(0.15, 0.15, RED),
    LedPattern.UNAVAILABLE: _steady(YELLOW),
    LedPattern.FAULT: _steady(RED),
}


def _rgb(colours: frozenset[str]) -> frozenset[str]:
    """Channels of an RGB LED for the colours of a three-LED station."""
    if colours == {GREEN, YELLOW}:
        return frozenset({GREEN, BLUE})  # cyan: see the module docstring
    out = set(colours - {YELLOW})
    if YELLOW in colours:
        out |= {RED, GREEN}
    return frozenset(out)


class GpioLeds:
    """The `Leds` port on three BCM pins. `kind` is "gyr" or "rgb"."""

    def __init__(self, gpio: ModuleType, kind: str, green_pin: int, yellow_pin: int, red_pin: int,
                 active_low: bool = False) -> None:
        if kind not in ("gyr", "rgb"):
            raise ValueError(f"LED kind must be 'gyr' or 'rgb' (use NullLeds for none), got {kind!r}")
        self.gpio, self.kind, self.active_low = gpio, kind, active_low
        # For rgb, the "yellow" pin is the blue channel.
        self.pins = {GREEN: green_pin, RED: red_pin, (BLUE if kind == "rgb" else YELLOW): yellow_pin}
        self.pattern = LedPattern.OFF
        self.lit: frozenset[str] = frozenset()  # colours (channels for rgb) lit now
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._generation = 0
        for name, pin in self.pins.items():
            setup_pin(gpio, pin, f"{name} LED", gpio.OUT, initial=self._level(False))

    def _level(self, on: bool) -> int:
        return self.gpio.HIGH if on != self.active_low else self.gpio.LOW

    def _apply(self, colours: frozenset[str]) -> None:
        """Light exactly these colours (called with the lock held)."""
        channels = _rgb(colours) if self.kind == "rgb" else colours
        for name, pin in self.pins.items():
            self.gpio.output(pin, self._level(name in channels))
        self.lit = channels

    @property
    def blinking(self) -> bool:
        """Whether the blink thread is running."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def show(self, pattern: LedPattern) -> None:
        pattern = LedPattern(pattern)
        frames = PATTERNS[pattern]
        old: threading.Thread | None = None
        with self._lock:
            if pattern == self.pattern and (len(frames) == 1 or self.blinking):
                return
            self.pattern = pattern
            self._generation += 1
            if len(frames) == 1:
                self._apply(frames[0].colours)
                old, self._thread = self._thread, None
                self._wake.set()
            elif self._thread is None:
                self._apply(frames[0].colours)  # the first frame at once, not after a thread start
                self._thread = threading.Thread(target=self._run, name="leds-blink", daemon=True)
                self._thread.start()
            else:
                self._wake.set()  # the running thread takes the new pattern
        if old is not None and old is not threading.current_thread():
            old.join(timeout=2.0)

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            with self._lock:
                if self._thread is not me:
                    return  # a steady pattern (or a newer thread) took over
                frames, generation = PATTERNS[self.pattern], self._generation
                self._wake.clear()
            i = 0
            while True:
                with self._lock:
                    if self._generation != generation or self._thread is not me:
                        break
                    self._apply(frames[i].colours)
                if self._wake.wait(frames[i].seconds):
                    break  # the pattern changed: start over with the new one
                i = (i + 1) % len(frames)

    def close(self) -> None:
        """All off, blink thread ended."""
        self.show(LedPattern.OFF)


class NullLeds:
    """The `Leds` port for a station without LEDs; remembers the pattern for status and tests."""

    def __init__(self) -> None:
        self.pattern = LedPattern.OFF

    def show(self, pattern: LedPattern) -> None:
        self.pattern = LedPattern(pattern)

    def close(self) -> None:
        self.pattern = LedPattern.OFF
