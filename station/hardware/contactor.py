"""The contactor: a GPIO output driving the relay, and an optional auxiliary contact; or none on GPIO.

The output is set up with its *open* level as the initial value, so the
relay never closes for an instant at start-up (RPi.GPIO writes the level
before switching the pin to output). `active_low` serves relay boards that
close when their input is pulled low.

The auxiliary contact, if wired, tells whether the contactor really
followed: `feedback()` reads it. Deciding that a disagreement is a fault
(did not close, dropped out, welded) belongs to the core: the contact watch
in station/core/faults.py compares command and contact on every poll.

With a charge controller the board's relay output switches the contactor
(docs/hardware.md 6.1), so a GPIO contactor is optional (`contactor.enabled =
false`): `BoardContactor` then stands for it, records the command and has no
auxiliary contact; the board stops the car and opens its relay itself when
the station offers 0 A.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import ModuleType

from station.hardware.gpio import setup_pin

log = logging.getLogger(__name__)


class GpioContactor:
    """The `Contactor` port on BCM `pin`, with an optional feedback input on `feedback_pin`."""

    def __init__(self, gpio: ModuleType, pin: int, active_low: bool = False,
                 feedback_pin: int | None = None, feedback_active_low: bool = True) -> None:
        self.gpio, self.pin, self.active_low = gpio, pin, active_low
        self.feedback_pin, self.feedback_active_low = feedback_pin, feedback_active_low
        self.closed = False
        # Called after each switch (the LCD refreshes soon after: the switching garbles it most).
        self.on_switch: Callable[[], None] | None = None
        setup_pin(gpio, pin, "contactor relay", gpio.OUT, initial=self._level(False))
        if feedback_pin is not None:
            # An aux contact that pulls low gets a pull-up, and the other way round,
            # so a broken wire reads "open" rather than floating.
            pull = gpio.PUD_UP if feedback_active_low else gpio.PUD_DOWN
            setup_pin(gpio, feedback_pin, "contactor auxiliary contact", gpio.IN, pull_up_down=pull)

    def _level(self, closed: bool) -> int:
        return self.gpio.HIGH if closed != self.active_low else self.gpio.LOW

    def set(self, closed: bool) -> None:
        self.gpio.output(self.pin, self._level(closed))
        switched, self.closed = closed != self.closed, closed
        if switched and self.on_switch is not None:
            try:
                self.on_switch()
            except Exception:  # noqa: BLE001 - a listener must never keep the contactor from switching
                log.exception("contactor switch listener failed")

    def feedback(self) -> bool | None:
        """True when the auxiliary contact reports the contactor closed; None without one."""
        if self.feedback_pin is None:
            return None
        level = self.gpio.input(self.feedback_pin)
        return (level == self.gpio.LOW) if self.feedback_active_low else (level == self.gpio.HIGH)

    def close(self) -> None:
        """Open the contactor (leave the pin driven: never cleanup())."""
        self.set(False)


class BoardContactor:
    """The `Contactor` port on a station whose charge controller switches the contactor (no GPIO
    contactor fitted): the command is recorded, nothing is driven, there is no auxiliary contact."""

    def __init__(self) -> None:
        self.closed = False
        self.on_switch: Callable[[], None] | None = None

    def set(self, closed: bool) -> None:
        self.closed = closed

    def feedback(self) -> bool | None:
        return None

    def close(self) -> None:
        self.set(False)
