"""What the connector machine holds, and how the rest of the station reads it.

The machine is station/core/connector.py: every decision, every transition of
the state table. This module holds what it decides *about* (the session, the
card waiting for the plug, the reservation, the car, the limits, the faults,
the timers) and the read side: the queries the shell, the status page and the
tests use, the View the driver sees, the status a backend is sent. Nothing
here decides; nothing here does I/O. The split is by length and by kind, the
way h11 keeps its state apart from its connection: decisions in one module,
the state they work on declared in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transitions import Machine

from station.core import events as ev
from station.core.events import Action, CarState, TxFact
from station.core.faults import FaultRegistry
from station.core.model import AuthResult, MeterReading, Session, StatusReport
from station.core.presenter import View
from station.core.reservations import Reservation
from station.core.rules import Settings
from station.core.states import TRANSITIONS, State
from station.core.triggers import Triggers


@dataclass
class Op:
    """The operation in flight, and what it has gathered so far."""

    kind: str  # authorizing | starting | stopping
    tag: str = ""
    remote: bool = False
    session: Session | None = None
    result: AuthResult | None = None
    from_backend: bool = False  # the result is the backend's own answer (not remote, not offline)
    reason: str = ""
    id_tag: str | None = None


class ConnectorState(Triggers):
    """The connector's variables and its read side; `Connector` (connector.py) decides."""

    HANDLERS: dict[type, str] = {}  # event class -> the name of its handler method (connector.py)

    def __init__(self, settings: Settings, monotonic: Callable[[], float], stamp: Callable[[], str]) -> None:
        self.settings = settings
        self._now, self._stamp = monotonic, stamp
        self.faults = FaultRegistry()
        self._machine = Machine(model=self, states=State, transitions=TRANSITIONS, initial=State.AVAILABLE,
                                auto_transitions=False, after_state_change="_after_state_change",
                                model_override=True)
        self._out: list[Action] = []
        self._op: Op | None = None
        self._session: Session | None = None
        self._waiting: Op | None = None  # accepted, waiting for the plug
        self._reservation: Reservation | None = None
        self._car = CarState.UNKNOWN
        self._contactor = False  # as commanded
        self._reading: MeterReading | None = None  # the last one the meter guard accepted
        self._online = False
        self._available = True  # as a backend set it (persisted)
        self._scheduled_unavailable = False
        self._limit_w: float | None = None
        self._limit_a: float | None = None
        self._offered_a: float | None = None
        self._cable_a: float | None = None  # the cable's rating (a charge controller's proximity pilot)
        self._phases_seen: int | None = None  # the phases the meter saw the car draw on (None: not yet)
        self._prep_deadline: float | None = None  # Preparing falls back to Available after this
        self._finishing_until: float | None = None  # Finishing shown until (without a plug sensor)
        self._probe_due = 0.0
        self._unplugged = False  # in a session: unplugged, StopTransactionOnEVSideDisconnect off
        self._drew = False  # this session's car has drawn power
        self._session_mono = 0.0  # the no-power grace starts here
        self._last_journal = 0.0
        self._journal_state: State | None = None
        self._last_stopped: Session | None = None
        self._exit: tuple[str, str] | None = None  # a reset (kind, stop reason) waits for the session's stop
        self._prev_state = State.AVAILABLE
        self._shown: View | None = None

    # ------------------------------------------------------------------ what others may read
    @property
    def busy(self) -> bool:
        """Authorizing, starting or stopping."""
        return self._op is not None

    @property
    def pending(self) -> bool:
        """A card was accepted and the station waits for the plug."""
        return self._waiting is not None

    @property
    def session(self) -> Session | None:
        return self._session

    @property
    def reading(self) -> MeterReading | None:
        return self._reading

    @property
    def online(self) -> bool:
        return self._online

    @property
    def car(self) -> CarState:
        return self._car

    @property
    def reservation(self) -> Reservation | None:
        """The reservation held at this connector (OCPP ReserveNow), if any."""
        return self._reservation

    @property
    def limit_w(self) -> float | None:
        return self._limit_w

    @property
    def limit_a(self) -> float | None:
        return self._limit_a

    @property
    def offered_a(self) -> float | None:
        """The current offered to the car (0 outside a session, paused or with the contactor open)."""
        return self._offered_a

    def needs_fast_poll(self) -> bool:
        """Anything that may need power off within 100 ms, or a car being plugged in."""
        return self._session is not None or self._op is not None or self.state is State.PREPARING

    def next_deadline(self) -> float | None:
        """The earliest timer (monotonic): the shell posts a Tick at or after it."""
        due = [t for t in (self._prep_deadline, self._finishing_until if self.state is State.FINISHING else None,
                           self._reservation.expires_mono if self._reservation else None,
                           self._probe_due if "storage" in self.faults else None) if t is not None]
        return min(due) if due else None

    def fault_reason(self) -> str:
        fault = self.faults.first()
        return (fault.vendor or fault.code) if fault else ""

    def status(self) -> StatusReport:
        fault = self.faults.first()
        return StatusReport(self.settings.connector_id, self.state, fault.code if fault else "NoError",
                            fault.text[:50] if fault else None, fault.vendor if fault else None, self._stamp())

    def view(self) -> View:
        energy = power = None
        if self._session is not None and self._reading is not None:
            energy = self._reading.energy_wh - self._session.meter_start_wh
            power = self._reading.power_w
        stopping = self._op is not None and self._op.kind == "stopping"
        finished = self._last_stopped.energy_wh if self._last_stopped is not None else None
        return View(self.state, self.settings.name, self._online, self.busy, self.pending, energy,
                    None if stopping else power, finished, self.faults.first(), stopping, self.faults.get("storage"))

    # the conditions of the table
    def ev_plugged(self) -> bool:
        """A car is plugged in, as a sensor says (without one, nothing is known)."""
        return self.settings.plug_sensor and self._car.plugged

    def reserved(self) -> bool:
        return self._reservation is not None

    # ------------------------------------------------------------------ the one entry
    def handle(self, event: ev.Event) -> list[Action]:
        """Take one event; return what to do, in order."""
        self._out = []
        getattr(self, self.HANDLERS[type(event)])(event)
        self._settle()
        view = self.view()
        if view != self._shown or any(isinstance(a, ev.Notice) for a in self._out):  # a notice is drawn over it
            self._shown = view
            self._emit(ev.Show(view))
        out, self._out = self._out, []
        return out

    def _settle(self) -> None:
        """Rules that hold after every event (connector.py)."""

    def _emit(self, action: Action) -> None:
        self._out.append(action)

    def _note(self, text: str) -> None:
        self._emit(ev.Note(text))

    def _notice(self, key: str, **values: Any) -> None:
        values.setdefault("offline", not self._online)
        self._emit(ev.Notice(key, values))

    def _announce(self, fact: TxFact, session: Session | None = None) -> None:
        self._emit(ev.Announce(fact, session or self._session))
