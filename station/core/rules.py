"""The connector machine's settings and the pure rules it applies (station/core/connector.py).

Each function here answers one question from values alone, so the machine
stays one screenful per decision and each rule can be read (and tested) on
its own: how much current the car may have, whether a limit pauses the
charge, on how many phases the car draws, what a stop is billed at when the
meter is silent, what a backend's ChangeAvailability gets. Nothing here holds
state or does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from station.core.model import MeterReading, Session
from station.core.states import IN_SESSION, State
from station.core.tags import normalize_tag

MIN_CURRENT_A = 6.0  # IEC 61851-1: a car may not be offered less; below it the charge pauses
VOLTS = 230.0  # nominal, per phase: watts to amps (as OCPP smart charging converts)
PHASE_A = 1.0  # a phase that carries at least this much current is one the car draws on
PROBE_S = 5.0  # a journal that failed is tried again this often
# Faults that end a running session: the contactor, the meter, the car's pilot (E, F), the charge
# controller's fault bits ("pilot": residual current, diode, ventilation...) and the controller
# itself (not answering, or not set up).
SESSION_ENDING = ("contactor", "meter", "car", "pilot", "controller")
DEAUTHORIZING = ("Local", "Remote", "DeAuthorized")  # stop reasons that end the driver's authorization
AVAILABLE_KEY = "core.available"  # the persisted ChangeAvailability


@dataclass
class Settings:
    """What the machine needs to know of the station. The first three a backend may change (tune)."""

    connection_timeout_s: float = 60.0  # Preparing falls back after this (OCPP ConnectionTimeOut)
    stop_on_ev_disconnect: bool = True  # OCPP StopTransactionOnEVSideDisconnect
    meter_interval_s: float = 1.0
    name: str = ""
    connector_id: int = 1
    finishing_s: float = 5.0
    no_power_timeout_s: float = 600.0
    journal_interval_s: float = 60.0
    offline_policy: str = "refuse"
    max_current_a: float = 16.0  # the installation's, per phase (controller.max_current_a)
    min_current_a: float = MIN_CURRENT_A  # with a charge controller, less pauses (controller.min_current_a)
    phases: int = 3  # charging.phases: a limit in watts is spread over these until the meter tells
    plug_sensor: bool = False  # the car's presence is known (plug switch or pilot)
    current_control: bool = False  # a charge controller sets the car's current (else only the contactor)
    starts_session_in_authorize: bool = False  # the backend's authorize is its START (MCSP)

    TUNABLE = ("connection_timeout_s", "stop_on_ev_disconnect", "meter_interval_s")

    def tune(self, key: str, value: object) -> None:
        if key not in self.TUNABLE:
            raise KeyError(f"unknown setting {key}")
        current = getattr(self, key)
        setattr(self, key, type(current)(value))


def same_tag(a: str, b: str) -> bool:
    return normalize_tag(a) == normalize_tag(b)


def wanted_current(s: Settings, limit_w: float | None, limit_a: float | None, phases: int | None = None,
                   cable_a: float | None = None) -> float:
    """The installation's maximum, lowered by the limits and the cable's rating (proximity pilot).
    A limit in watts is spread over the `phases` the car draws on (the meter's word; `s.phases`
    where it cannot tell) at the nominal voltage."""
    amps = s.max_current_a
    if limit_a is not None:
        amps = min(amps, limit_a)
    if limit_w is not None:
        amps = min(amps, limit_w / (VOLTS * max(1, phases or s.phases)))
    if cable_a is not None:
        amps = min(amps, cable_a)
    return max(0.0, amps)


def paused_by_limit(s: Settings, limit_w: float | None, limit_a: float | None, phases: int | None = None,
                    cable_a: float | None = None) -> bool:
    """With a charge controller, below the least current a pilot may offer (controller.min_current_a);
    with only a contactor (which cannot honour anything between), at zero only."""
    if s.current_control:
        return wanted_current(s, limit_w, limit_a, phases, cable_a) < s.min_current_a
    return limit_w == 0 or limit_a == 0


def phases_drawn(reading: MeterReading | None) -> int | None:
    """The phases the car draws on, as the meter sees them: a one-phase meter always 1; else the
    phases carrying at least PHASE_A, or None while no current flows or the meter has no
    per-phase currents (then it cannot tell)."""
    if reading is None or not reading.current_a:
        return None
    if len(reading.current_a) == 1:
        return 1
    n = sum(1 for a in reading.current_a if a >= PHASE_A)
    return n or None


def stop_reading(reading: MeterReading | None, last: MeterReading | None,
                 session: Session) -> tuple[int, tuple[int, ...], bool]:
    """What a stop is billed at: the reading taken with the contactor open; when the meter does not
    answer, the last good one, marked estimated; never below the session's start."""
    if reading is not None:
        wh, phases, estimated = reading.energy_wh, reading.energy_phase_wh, False
    else:
        wh = last.energy_wh if last is not None else session.meter_start_wh
        phases, estimated = (), True
    return max(wh, session.meter_start_wh), phases, estimated


def availability(state: State, in_use: bool, available: bool) -> str:
    """ChangeAvailability's answer: Accepted, or Scheduled when a session (or a card being
    authorized or waiting for the plug) has the connector; Rejected when it cannot be disabled."""
    if available or state is State.UNAVAILABLE:
        return "Accepted"
    if state in IN_SESSION or in_use:
        return "Scheduled"
    return "Accepted" if state in (State.AVAILABLE, State.RESERVED, State.PREPARING, State.FINISHING,
                                   State.FAULTED) else "Rejected"


def remote_start_allowed(state: State, connector_id: int | None, own_id: int, in_use: bool, faulted: bool) -> bool:
    """A RemoteStartTransaction may start a session now (before the reservation's rule)."""
    return (connector_id in (None, own_id) and not in_use and not faulted
            and state in (State.AVAILABLE, State.PREPARING, State.RESERVED))
