"""The emulated car: what it shows on the control pilot and how much it draws.

Theory of operation
-------------------
A car on a Type 2 plug is, to the charge controller, a resistor network on the
control pilot (IEC 61851-1): state A without a plug, B when connected, C when
it asks for current (D: asking, and needing ventilation), and a diode that the
controller checks. It draws what its on-board charger takes, but never more
than the pilot offers, on 1 or 3 phases. `Car` is that, without I/O and
without a clock of its own: the emulated board asks `pilot_state()` and
`draw_a(offered_a)`, and `charge(wh)` fills the battery with what the meter
counted, so a full battery stops asking (back to B), as a real car does.

Knobs for scenarios and tests: `plugged`, `phases`, `max_current_a` (the
on-board charger's limit per phase), `asleep` (connected, stays in B: does not
answer the offer until woken), `ventilation` (asks in state D), `diode_fault`
(no diode in the pilot circuit), the battery (`capacity_wh`, `stored_wh`;
`full`).
"""

from __future__ import annotations

from dataclasses import dataclass

from station.core.model import CarState

NOMINAL_V = 230.0


@dataclass
class Car:
    phases: int = 3
    max_current_a: float = 16.0  # the on-board charger's limit per phase
    capacity_wh: float = 60_000.0
    stored_wh: float = 30_000.0
    plugged: bool = False
    asleep: bool = False
    ventilation: bool = False
    diode_fault: bool = False

    def __post_init__(self) -> None:
        if self.phases not in (1, 3):
            raise ValueError(f"a car charges on 1 or 3 phases, not {self.phases}")
        if self.max_current_a < 0:
            raise ValueError("max_current_a must not be negative")

    @property
    def full(self) -> bool:
        return self.stored_wh >= self.capacity_wh

    @property
    def wants_current(self) -> bool:
        """Connected, awake, battery not full: it asks (C or D) once current is offered."""
        return self.plugged and not self.asleep and not self.full

    def pilot_state(self, offered_a: float) -> CarState:
        """What the controller sees on the pilot while it offers `offered_a` (0: no PWM)."""
        if not self.plugged:
            return CarState.A
        if offered_a <= 0 or not self.wants_current:
            return CarState.B
        return CarState.D if self.ventilation else CarState.C

    def draw_a(self, offered_a: float, closed: bool) -> float:
        """Amps per phase drawn with `offered_a` on the pilot and the contactor `closed`."""
        if not closed or self.pilot_state(offered_a) not in (CarState.C, CarState.D):
            return 0.0
        return min(offered_a, self.max_current_a)

    def power_w(self, amps: float, voltage_v: float = NOMINAL_V) -> float:
        return amps * self.phases * voltage_v

    def charge(self, wh: float) -> None:
        """The battery takes `wh` (what the meter counted)."""
        self.stored_wh = min(self.capacity_wh, self.stored_wh + max(0.0, wh))
