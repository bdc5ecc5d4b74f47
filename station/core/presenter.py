"""What the driver sees: the LCD text and the LEDs, from a snapshot of the charger.

The charger describes itself in a `View` (state, busy, session energy, the
fault, the link) and calls `render(view)`; the presenter decides the screen
key and the LED pattern. A notice ("Card refused", "Other card", ...) is a
screen that overrides the state's screen for `message_s`; a refusal notice
also overrides the LEDs (red), and keeps doing so when the state changes
under it (a refused tap goes Preparing -> Available at once: the red LED
must outlive that change, not be painted over by the state's green).

The texts themselves are station.core.messages (one pure function per
screen); this module only chooses. Time comes from the injected monotonic
function, so notice expiry is testable without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from station.core import messages
from station.core.model import Fault
from station.core.ports import Display, LedPattern, Leds
from station.core.states import State

LED_BY_STATE = {
    State.AVAILABLE: LedPattern.AVAILABLE, State.PREPARING: LedPattern.BUSY, State.CHARGING: LedPattern.CHARGING,
    State.SUSPENDED_EV: LedPattern.SUSPENDED, State.SUSPENDED_EVSE: LedPattern.SUSPENDED,
    State.FINISHING: LedPattern.BUSY, State.RESERVED: LedPattern.UNAVAILABLE,
    State.UNAVAILABLE: LedPattern.UNAVAILABLE, State.FAULTED: LedPattern.FAULT,
}

# Notices that tell the driver "no": the red LED blinks with them.
REFUSALS = frozenset({"refused", "other_card", "storage_refused", "meter_fault", "offline", "reserved",
                      "unavailable", "faulted"})

_STATE_SCREENS = {
    State.AVAILABLE: "available", State.CHARGING: "charging", State.SUSPENDED_EV: "suspended_ev",
    State.SUSPENDED_EVSE: "suspended_evse", State.RESERVED: "reserved", State.UNAVAILABLE: "unavailable",
}


# States whose screen a fault that only refuses new sessions (the journal) replaces.
_REFUSING_SHOWN = (State.AVAILABLE, State.RESERVED, State.PREPARING)


def led_for(view: View) -> LedPattern:
    """The LEDs of the state, unless the station stops (busy) or refuses new sessions (fault)."""
    if view.stopping:
        return LedPattern.BUSY
    if view.refusing is not None and view.state in _REFUSING_SHOWN and not view.busy and not view.pending:
        return LedPattern.FAULT
    return LED_BY_STATE[view.state]


@dataclass(frozen=True)
class View:
    """The charger as the driver should see it, at one moment."""

    state: State
    name: str = ""
    online: bool = True
    busy: bool = False  # authorizing, starting or stopping
    pending: bool = False  # accepted, waiting for the plug
    energy_wh: int | None = None  # of the running session
    power_w: float | None = None
    finished_wh: int | None = None  # of the session just ended (Finishing)
    fault: Fault | None = None
    stopping: bool = False  # the contactor is open and the stop is being recorded: not charging
    refusing: Fault | None = None  # why new sessions are refused though the connector works (the journal)


@dataclass
class Notice:
    key: str
    lines: list[str]
    until: float
    led: LedPattern | None = None
    fields: dict[str, Any] = field(default_factory=dict)


def screen_for(view: View) -> tuple[str, dict[str, Any]]:
    """Which screen the state calls for, and its fields."""
    fields: dict[str, Any] = {"name": view.name, "offline": not view.online}
    if view.energy_wh is not None:
        fields["energy_wh"] = max(0, view.energy_wh)
        fields["power_w"] = view.power_w or 0.0
    s = view.state
    if view.stopping:  # the contactor is open: what the station did, not what the journal has yet
        fields["energy_wh"] = max(0, view.energy_wh or 0)
        return "finishing", fields
    if view.refusing is not None and s in _REFUSING_SHOWN and not view.busy and not view.pending:
        fields["reason"] = view.refusing.vendor or view.refusing.code
        return "storage_fault", fields
    if s is State.PREPARING:
        if view.busy:
            return "authorizing", fields
        return ("plug_in" if view.pending else "tap_card"), fields
    if s is State.FINISHING:
        fields["energy_wh"] = view.finished_wh or 0
        return "finishing", fields
    if s is State.FAULTED:
        fault = view.fault
        fields["reason"] = (fault.vendor or fault.code) if fault else ""
        return "faulted", fields
    return _STATE_SCREENS[s], fields


class Presenter:
    def __init__(self, display: Display, leds: Leds, lang: str, message_s: float,
                 monotonic: Callable[[], float]) -> None:
        self.display, self.leds, self.lang = display, leds, lang
        self.message_s = message_s
        self._now = monotonic
        self.notice: Notice | None = None
        self.lines: list[str] = []
        self.led: LedPattern | None = None

    def show_notice(self, key: str, **fields: Any) -> None:
        """A transient screen; the caller renders next (the notice wins over the state's screen)."""
        lines = messages.screen(key, self.lang, self.display.cols, self.display.rows, **fields)
        led = LedPattern.REFUSED if key in REFUSALS else None
        self.notice = Notice(key, lines, self._now() + self.message_s, led, fields)

    def expire(self) -> bool:
        """Drop a notice whose time is up; True when the screen must be redrawn."""
        if self.notice is not None and self._now() >= self.notice.until:
            self.notice = None
            return True
        return False

    def render(self, view: View) -> None:
        self.expire()
        if self.notice is not None:
            lines = self.notice.lines
        else:
            key, fields = screen_for(view)
            lines = messages.screen(key, self.lang, self.display.cols, self.display.rows, **fields)
        led = self.notice.led if self.notice is not None and self.notice.led is not None else led_for(view)
        if lines != self.lines:
            self.lines = lines
            self.display.show(lines)
        if led is not self.led:
            self.led = led
            self.leds.show(led)
