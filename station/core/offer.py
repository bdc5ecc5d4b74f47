"""The connector machine's limits and the current it offers the car: decisions, without I/O.

Part of the machine (station/core/connector.py builds on this class), kept in a
module of its own by length, the way connector_state.py holds its variables.
It answers one question after every event that can change it: how many amps
per phase may the car draw now, and must the station pause the charge?

    offered = the lowest of  controller.max_current_a (the installation's rating)
                             the amps limit (OCPP profile in A, the MCSP site cap)
                             the watts limit / (230 V x the phases the car draws on)
                             the cable's rating (the charge controller's proximity pilot)
              while a session runs with the contactor commanded closed, else 0

The phases are the meter's: those carrying current while the car draws (a
one-phase meter: one); until the meter has seen the car draw, `charging.phases`.
With a charge controller an offer below `controller.min_current_a` is a pause
(SuspendedEVSE: IEC 61851-1 has no pilot signal for less than 6 A); with only a
contactor, which cannot honour anything between, only a limit of 0 pauses.

The offer leaves as `SetCurrent` whenever it changes. It is 0 whenever the
contactor is commanded open, and that 0 is emitted before the command to open
(connector.py `_set_contactor`): at a stop, a pause, a fault or an unplug the
pilot tells the car to stop drawing first. Outside a session it is 0, so a car
plugged in without one is never offered current.
"""

from __future__ import annotations

from station.core import events as ev
from station.core import rules
from station.core.connector_state import ConnectorState
from station.core.states import State


class Offering(ConnectorState):
    """The limits and the offered current; `Connector` (connector.py) is the rest of the machine."""

    def _set_contactor(self, closed: bool) -> None:
        """Defined by the machine (connector.py)."""

    def _phases_now(self) -> int | None:
        return self._phases_seen

    def _paused(self) -> bool:
        return rules.paused_by_limit(self.settings, self._limit_w, self._limit_a, self._phases_now(), self._cable_a)

    def _on_power_limit(self, e: ev.PowerLimit) -> None:
        self._limit_w = e.watts
        self._apply_limit()

    def _on_current_limit(self, e: ev.CurrentLimit) -> None:
        self._limit_a = e.amps
        self._apply_limit()

    def _on_cable(self, e: ev.CableLimit) -> None:
        self._cable_a = e.amps
        self._apply_limit()

    def _note_phases(self, phases: int | None) -> None:
        """The meter saw the car draw on `phases` (None: it cannot tell now; the last word stands)."""
        if phases is not None and phases != self._phases_seen:
            self._phases_seen = phases
            if self._limit_w is not None:
                self._apply_limit()

    def _apply_limit(self) -> None:
        """Pause or resume the session for the limits, and offer the car its current."""
        pause = self._paused()
        if self._op is None:  # never during a stop: the contactor stays open
            if pause and self.state in (State.CHARGING, State.SUSPENDED_EV):
                self._set_contactor(False)
                self.pause()
            elif not pause and self.state is State.SUSPENDED_EVSE:
                if not self._unplugged:
                    self._set_contactor(True)
                self._session_mono = self._now()  # the car gets the full no-power grace again
                self.resume()
        self._offer()

    def _offer(self) -> None:
        """Emit SetCurrent when the current the car may draw changes (0 with the contactor open)."""
        on = self._session is not None and self._contactor and not self._paused()
        offered = rules.wanted_current(self.settings, self._limit_w, self._limit_a, self._phases_now(),
                                       self._cable_a) if on else 0.0
        if offered != self._offered_a:
            self._offered_a = offered
            self._emit(ev.SetCurrent(offered))
