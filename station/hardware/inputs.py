"""Optional digital inputs: "EV connected" and a stop push button.

Absent pins read None, so the core knows the difference between "no car"
and "cannot tell". Active-low inputs get the internal pull-up (a switch to
ground), active-high ones the pull-down.

The core polls. A press of the stop button shorter than the poll interval
would be lost, so the button also has an edge callback that latches the
press until the next `stop_pressed()`. Where edge detection is not
available (RPi.GPIO raises RuntimeError "Failed to add edge detection" on
kernels without the sysfs GPIO interface; under rpi-lgpio, lgpio refuses the
edge request with its own `lgpio.error`, e.g. "GPIO busy") polling alone
remains: a press is then seen if it lasts one poll interval (50 ms while a
session runs). `edge_detection` tells which of the two is at work.

Debounce (`STOP_BOUNCE_MS`). Only the pressing edge is requested, and the
two libraries debounce it differently. RPi.GPIO calls back at the first edge
and ignores edges for the bounce time after it. lgpio (under rpi-lgpio)
reports an edge once no other edge of the requested kind followed within the
bounce time, stamped that late; as the releasing edge is not requested, a
press of any length is reported, the bounce time after its last pressing
edge (lgpio 0.2.2, lgPthAlerts.c, rule 2). Either way no press is lost: the
bounce time only delays the latch (lgpio) or merges a contact's bounce
into one call (RPi.GPIO), and 10 ms covers a push button's bounce (a few ms)
while keeping the latch well inside one 50 ms poll. Neither filters a glitch:
a spike on a long button cable reads as a press (docs/hardware.md, 3).
"""

from __future__ import annotations

import logging
import threading
from types import ModuleType

from station.hardware.gpio import describe, gpio_errors, setup_pin

log = logging.getLogger(__name__)

STOP_BOUNCE_MS = 10


class GpioInputs:
    """The `Inputs` port."""

    def __init__(self, gpio: ModuleType, ev_connected_pin: int | None = None, ev_active_low: bool = True,
                 stop_pin: int | None = None, stop_active_low: bool = True) -> None:
        self.gpio = gpio
        self.ev_pin, self.ev_active_low = ev_connected_pin, ev_active_low
        self.stop_pin, self.stop_active_low = stop_pin, stop_active_low
        self._latched = threading.Event()
        self.edge_detection = False
        for pin, active_low, role in ((ev_connected_pin, ev_active_low, "EV-connected input"),
                                      (stop_pin, stop_active_low, "stop button")):
            if pin is not None:
                setup_pin(gpio, pin, role, gpio.IN, pull_up_down=gpio.PUD_UP if active_low else gpio.PUD_DOWN)
        if stop_pin is not None:
            edge = gpio.FALLING if stop_active_low else gpio.RISING
            try:
                gpio.add_event_detect(stop_pin, edge, callback=self._on_press, bouncetime=STOP_BOUNCE_MS)
                self.edge_detection = True
            except gpio_errors() as exc:  # RuntimeError/ValueError (RPi.GPIO), lgpio.error (rpi-lgpio)
                log.warning("stop button on BCM %d: no edge detection (%s); read by polling only",
                            stop_pin, describe(exc))

    def _active(self, pin: int, active_low: bool) -> bool:
        level = self.gpio.input(pin)
        return level == (self.gpio.LOW if active_low else self.gpio.HIGH)

    def _on_press(self, channel: int) -> None:
        self._latched.set()

    def ev_connected(self) -> bool | None:
        if self.ev_pin is None:
            return None
        return self._active(self.ev_pin, self.ev_active_low)

    def stop_pressed(self) -> bool | None:
        """True while the button is held, or once after a press seen since the last call."""
        if self.stop_pin is None:
            return None
        latched = self._latched.is_set()
        self._latched.clear()
        return self._active(self.stop_pin, self.stop_active_low) or latched

    def close(self) -> None:
        if self.stop_pin is not None and self.edge_detection:
            try:
                self.gpio.remove_event_detect(self.stop_pin)
            except gpio_errors():
                pass
