"""What goes into the connector machine and what comes out of it (the way h11 keeps _events.py).

The machine (station/core/connector.py) does no I/O. Everything it learns
arrives as an *event*; everything it wants done leaves as an *action*, in the
order it must be done. The shell (station/core/charger.py) feeds events in
from the reader thread, the poll loop, the meter loop and the backend, and
carries the actions out: it is the only one that touches the contactor, the
journal, the meter, the display and the backend.

A step that takes time (authorize at the backend, read the meter, write the
journal) is an action whose answer comes back as an event, so the ordering
rules of the charging cycle are visible in the machine and testable:

    Tapped ─► JournalOpen ─► Journaled(OPEN) ─► Authorize ─► Authorized
          ─► ReadMeter(BEGIN) ─► MeterRead ─► JournalActivate ─► Journaled(ACTIVATE)
          ─► SetContactor(True)                               (journal before power)
    stop  ─► SetContactor(False) ─► ReadMeter(STOP) ─► MeterRead
          ─► JournalStop ─► Journaled(STOP) ─► Finishing       (power off first)

Two kinds of action are answers to the one who posted the event rather than
work for the shell: `Reply` (what a backend's request returns) and
`LookupParent` (post the same event again with the tag's group filled in).

CarState and TxFact are shared values (station/core/model.py): a pilot board reports the
one, a backend is told the other. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import Field, field
from datetime import datetime
from enum import Enum
from typing import Any, ClassVar, dataclass_transform

from station.core.faults import ContactorVerdict
from station.core.model import (
    AuthResult,
    CarState,
    DeliveryResult,
    Fault,
    MeterReading,
    OutboxItem,
    Session,
    StatusReport,
    TxFact,
)
from station.core.presenter import View


class Purpose(str, Enum):
    """Why the machine asked for a meter reading (its answer says so too)."""

    AUTHORIZE = "authorize"  # the tap's reading, journaled with the tap
    BEGIN = "begin"  # the session's start
    STOP = "stop"  # the stop: exact, the contactor is open


class Step(str, Enum):
    """Journal writes whose outcome the machine waits for."""

    OPEN = "open"  # the tap, before the backend is asked
    ACTIVATE = "activate"  # the session and its START, before the contactor closes
    STOP = "stop"  # the stop and its STOP (kept in memory when the journal cannot take it)
    PROBE = "probe"  # can the journal be written again?


@dataclass_transform(eq_default=True, field_specifiers=(field,))
class Record:
    """An immutable value with named fields, compared by value: a frozen dataclass, made by hand.

    The machine has some forty kinds of event and action; as frozen dataclasses their generated
    methods cost about half a MiB of the station's memory (a budget, docs/benchmarks.md), so they
    share one `__init__`, `__eq__` and `__repr__` here instead. Type checkers see dataclasses."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._fields = tuple(name for name in cls.__dict__.get("__annotations__", {}) if not name.startswith("_"))
        defaults = {name: cls.__dict__[name] for name in cls._fields if name in cls.__dict__}
        for name in defaults:
            delattr(cls, name)
        if defaults:
            cls._defaults = defaults

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(self._fields):
            raise TypeError(f"{type(self).__name__} takes {len(self._fields)} values, not {len(args)}")
        values = dict(zip(self._fields, args, strict=False))
        for name, value in kwargs.items():
            if name not in self._fields or name in values:
                raise TypeError(f"{type(self).__name__}: unexpected or repeated {name!r}")
            values[name] = value
        for name in self._fields:
            if name not in values:
                if name not in self._defaults:
                    raise TypeError(f"{type(self).__name__}: {name!r} missing")
                default = self._defaults[name]
                values[name] = default.default_factory() if isinstance(default, Field) else default  # type: ignore[operator]
            object.__setattr__(self, name, values[name])

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(getattr(self, f) == getattr(other, f) for f in self._fields)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{f}={getattr(self, f)!r}' for f in self._fields)})"

    def replaced(self, **changes: Any) -> Any:
        """A copy with some fields changed (dataclasses.replace)."""
        return type(self)(**{**{f: getattr(self, f) for f in self._fields}, **changes})


class Event(Record):
    """Base of everything the machine is told."""


class Action(Record):
    """Base of everything the machine asks for."""


# ---------------------------------------------------------------------------------------- events
class Started(Event):
    """The shell is up: the persisted availability, the car as the sensors see it now, and
    why the journal cannot be written (None: it can)."""

    available: bool = True
    car: CarState = CarState.UNKNOWN
    storage: Fault | None = None


class Tapped(Event):
    """A card at the reader (the tag as the backend writes it). Posted again with
    `looked_up=True` and the tag's `parent` when the machine asked for it (LookupParent)."""

    tag: str
    parent: str | None = None
    looked_up: bool = False


class CarChanged(Event):
    car: CarState


class StopPressed(Event):
    """The stop button (a rising edge)."""


class ContactorChecked(Event):
    """A new verdict of the contactor watch (command against auxiliary contact)."""

    verdict: ContactorVerdict
    followed: bool = False  # the contact had followed the current command once


class FaultChanged(Event):
    """A part reports a fault of its own (`fault` None: it is gone): the meter, the reader."""

    source: str
    fault: Fault | None


class MeterSampled(Event):
    """The meter loop's periodic reading (None: it failed)."""

    reading: MeterReading | None


class MeterRead(Event):
    """The answer to ReadMeter."""

    purpose: Purpose
    reading: MeterReading | None


class Authorized(Event):
    """The answer to Authorize (the backend's, or the offline policy's)."""

    result: AuthResult


class Journaled(Event):
    """The outcome of a journal write. `fault` says why it failed (then `session` is, for a
    STOP, the session as it ended, kept in memory until the journal takes it)."""

    step: Step
    session: Session | None = None
    fault: Fault | None = None


class Tick(Event):
    """Time passed: look at the timers (Preparing, Finishing, reservation, journal probe)."""


class Continued(Event):
    """The answer to Continue: the loop has turned once."""


class BackendLink(Event):
    online: bool


class Delivered(Event):
    item: OutboxItem
    result: DeliveryResult


class RemoteStart(Event):
    tag: str
    connector_id: int | None = None
    parent: str | None = None
    looked_up: bool = False


class RemoteStop(Event):
    backend_session_id: str


class StopRequested(Event):
    """Stop the running session with an OCPP reason (DeAuthorized, UnlockCommand, Reboot...)."""

    reason: str


class Reset(Event):
    hard: bool


class SetAvailable(Event):
    available: bool


class Reserve(Event):
    reservation_id: int
    id_tag: str
    parent_id: str | None
    expiry: datetime
    now: datetime | None  # the wall clock now (None: not known yet)


class CancelReservation(Event):
    reservation_id: int


class PowerLimit(Event):
    watts: float | None


class CurrentLimit(Event):
    amps: float | None


class CableLimit(Event):
    """The cable's rating as the charge controller reads its proximity pilot (None: none known)."""

    amps: float | None


class Tune(Event):
    values: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------- actions
class SetContactor(Action):
    closed: bool


class SetCurrent(Action):
    """The current the car may draw (A per phase; 0: none), for the charge controller to offer.
    Without a charge controller a no-op. It is 0 whenever the contactor is commanded open, and
    comes before that command: the pilot stops the car first."""

    amps: float


class ReadMeter(Action):
    purpose: Purpose
    tries: int = 2
    full: bool = True


class Authorize(Action):
    tag: str
    session: Session


class LookupParent(Action):
    """Answer to the poster: find the tag's group, then post the same event again with it."""

    tag: str


class JournalOpen(Action):
    tag: str
    reading: MeterReading
    reservation_id: int | None


class JournalActivate(Action):
    session: Session
    reading: MeterReading
    result: AuthResult
    start_delivered: bool  # the backend's authorize already opened the session (MCSP START)


class JournalStop(Action):
    session: Session
    wh: int
    phases: tuple[int, ...]
    estimated: bool
    reason: str
    id_tag: str | None
    at: str  # the stop's time, kept if the journal has to take it later


class JournalEnd(Action):
    """A tap that did not become a session: 'refused' or 'aborted', with why."""

    session: Session
    state: str
    reason: str


class JournalSample(Action):
    session: Session
    wh: int


class JournalFault(Action):
    source: str
    fault: Fault | None  # None: cleared
    wh: int | None


class JournalProbe(Action):
    """Try the journal again (reopen it, write what waits in memory); answered by Journaled(PROBE)."""


class Remember(Action):
    """A setting that survives a restart."""

    key: str
    value: Any


class Show(Action):
    """What the driver should see now (the presenter turns it into LCD lines and LEDs)."""

    view: View


class Notice(Action):
    """A transient screen over the state's screen (a refusal also blinks red)."""

    key: str
    fields: dict[str, Any] = field(default_factory=dict)


class Note(Action):
    """A line for the recent events (the simulator's view, the status page)."""

    text: str


class ReportStatus(Action):
    report: StatusReport


class Announce(Action):
    """A transaction moment, for a backend whose transactions start or end there (OCPP 2.0.1)."""

    fact: TxFact
    session: Session | None


class WakeDelivery(Action):
    """Something was queued in the journal (or the link came up): deliver now."""


class Continue(Action):
    """Post Continued once the loop has turned (so that a backend's reply leaves first)."""


class Exit(Action):
    """A reset: end the process for systemd to restart it, after delivering what is queued
    when the backend is reachable (`drain`)."""

    kind: str  # "soft" or "hard"
    drain: bool


class Reply(Action):
    """Answer to the poster: what the backend's request returns."""

    value: Any
