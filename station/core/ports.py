"""The contracts: what the core needs from the hardware and from a backend, and what a
backend may ask of the station.

These are interfaces only. The core (station/core) talks to them, never to
RPi.GPIO, spidev, RPLCD, pymodbus, websockets or ocpp; the adapters in
station/hardware and station/backends implement them; the composition root
(station/daemon.py) plugs one into the other. Like EVerest's interface files,
they live apart from every module that provides or uses them.

Hardware
--------
Each port has one real adapter in station/hardware. In `hardware.mode =
"sim"` the *same* adapters run on top of the emulated chips in station/sim
(fake spidev, fake RPi.GPIO, fake SMBus, a Modbus RTU server), so a
simulated station exercises the real driver code.

Threading contract: `RfidReader.start` runs a worker thread and calls
`on_tap` from it; everything else is called from the asyncio loop and must
return quickly (GPIO and LCD writes are microseconds; the meter and the
charge controller are async).

Backends
--------
* Authorization is a direct call (`Backend.authorize`): the driver is waiting
  at the reader, so it is answered now or refused/allowed by the offline policy.
* Transaction messages (session start, stop, meter values) are never sent
  directly by the core. The core writes them to the durable outbox in the
  store (a backend's own, such as OCPP meter values, through
  `StationControl.queue_message`); one deliverer task (station.core.delivery)
  hands them to `Backend.deliver` in order and removes each only when the
  backend has confirmed it. When START is sent is the backend's
  `starts_session_in_authorize`. A backend raises BackendOffline to have the same message
  offered again later, so it must make repeated deliveries idempotent
  (MCSP: the station-generated Session-Key; OCPP: by the queue discipline).
* Status and other non-transaction messages are best effort: the current
  state is re-sent on every reconnect, so nothing needs to be queued for them.
* Incoming commands (remote start/stop, reset, availability, limits, ...)
  reach the core through `StationControl`, which the core implements.
* The moments of the charging cycle (car connected, authorized, power path
  closed, ...) reach the backend through `Backend.transaction_fact`.
* Every task a backend runs is started through `StationControl.spawn`, so the
  station's supervisor owns it: its failure is seen, and a critical loop that
  stops reporting progress (`StationControl.beat`) stops the watchdog.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from station.core.model import (
    AuthResult,
    ControllerReading,
    DeliveryResult,
    MessageKind,
    MeterReading,
    OutboxItem,
    Session,
    StatusReport,
    TxFact,
)

if TYPE_CHECKING:
    import asyncio

    from station.clock import Clock


@runtime_checkable
class Meter(Protocol):
    """A kWh meter. `read()` raises MeterError on timeout or a bad reply."""

    model: str
    max_power_w: float  # for the plausibility check of energy jumps
    measurands: frozenset[str]  # e.g. {"energy", "power", "voltage", "current", "energy_phase"}
    # After the first full read: why the total disagrees with the sum of the phases (a wrong
    # map or a wrong model configured), else None.
    map_warning: str | None

    async def read(self, full: bool = True) -> MeterReading:
        """`full=False`: energy and total power only (fewer registers on the bus)."""

    async def close(self) -> None: ...


@runtime_checkable
class RfidReader(Protocol):
    """A card reader. Debounced: a card held on the reader is one tap."""

    def start(self, on_tap: Callable[[bytes], None], on_fault: Callable[[str | None], None],
              on_beat: Callable[[], None] = lambda: None) -> None:
        """Start polling in a worker thread.

        `on_tap(uid)` is called once per tap with the raw UID bytes (byte 0
        first, BCC stripped). `on_fault(text)` reports a reader failure, and
        `on_fault(None)` its recovery. `on_beat()` after every poll or fault
        retry: the worker lives (the supervisor's deadline). All three are
        called from the worker thread.
        """

    def alive(self) -> bool:
        """The worker thread runs (False once it has died)."""

    def stop(self) -> None: ...


@runtime_checkable
class Contactor(Protocol):
    """The power contactor. `closed` is the commanded state."""

    closed: bool

    def set(self, closed: bool) -> None: ...

    def feedback(self) -> bool | None:
        """The auxiliary contact: True when the contactor is closed, None without one."""


@runtime_checkable
class ChargeController(Protocol):
    """A charge controller: the control-pilot board (IEC 61851-1) that tells the car how many
    amps per phase it may draw, and reports what the car does. Protocol-neutral: the adapter
    knows the board's registers, the core sees amps and `ControllerReading`s.

    `read()` and `set_current()` raise station.errors.ControllerError when the board does not
    answer or refuses. `set_current(amps)` offers at most `max_current_a` (the installation's
    rating, whatever is asked); a value below `min_current_a` (IEC 61851: 6 A is the least a
    pilot can signal) offers nothing, as 0 does: the car must stop drawing. It returns the amps
    actually set. Writing is done only in the board's volatile memory (RAM): an adapter never
    writes the board's EEPROM.

    `setup_problem` is None, or why the board's own settings are unsafe or wrong for the
    station (it would charge at full current after a restart of its own, Modbus control is
    off...), found at the first read; `station controller setup` fixes those.
    """

    model: str
    address: int
    min_current_a: float
    max_current_a: float
    firmware: str | None  # known after the first read
    setup_problem: str | None
    can_wake: bool  # wake() can interrupt the pilot to wake a sleeping car

    async def read(self) -> ControllerReading: ...

    async def set_current(self, amps: float) -> float:
        """Offer `amps` per phase (clamped as above); 0 = no charging. Returns what was set."""

    async def wake(self) -> bool:
        """Interrupt the pilot briefly to wake a car that fell asleep; False where the board cannot."""

    async def close(self) -> None: ...


@runtime_checkable
class Inputs(Protocol):
    """Optional digital inputs. Absent inputs read None."""

    def ev_connected(self) -> bool | None: ...

    def stop_pressed(self) -> bool | None: ...


class LedPattern(str, Enum):
    """What the LEDs show; the adapter maps each to pins and a blink rhythm."""

    OFF = "off"
    AVAILABLE = "available"  # green steady
    BUSY = "busy"  # yellow blinking: authorizing, finishing
    CHARGING = "charging"  # green blinking
    SUSPENDED = "suspended"  # green + yellow steady
    REFUSED = "refused"  # red blinking (short)
    UNAVAILABLE = "unavailable"  # yellow steady
    FAULT = "fault"  # red steady


@runtime_checkable
class Leds(Protocol):
    def show(self, pattern: LedPattern) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Display(Protocol):
    """A character display of `rows` x `cols`."""

    cols: int
    rows: int

    def show(self, lines: list[str]) -> None:
        """Replace the screen with these lines (cut or padded to the size)."""

    def close(self) -> None: ...


@dataclass
class Hardware:
    """The set of ports the daemon composes. Built by station.hardware.factory."""

    reader: RfidReader | None  # None: no reader fitted (rfid.enabled = false)
    contactor: Contactor
    inputs: Inputs
    leds: Leds
    display: Display
    meter: Meter
    closers: list[Callable[[], object]] = field(default_factory=list)
    # The control-pilot board, when one is fitted (controller.model); None: the plug switch
    # and the meter tell what the car does, as before.
    controller: ChargeController | None = None


class StationControl(Protocol):
    """What a backend may ask of the station (implemented by the core).

    This is all of it: a backend never reaches past this interface into the
    charger, its hardware or its store.
    """

    name: str
    clock: Clock  # the one clock of the station: journal and wire use the same time

    def status(self) -> StatusReport: ...

    def current_session(self) -> Session | None: ...

    def last_reading(self) -> MeterReading | None: ...

    def meter_measurands(self) -> frozenset[str]: ...

    def offered_current(self) -> float | None:
        """The current the charge controller offers the car now (A per phase, 0: none; OCPP
        Current.Offered), or None on a station without a charge controller."""

    @property
    def meter_model(self) -> str:
        """The configured meter model (OCPP BootNotification.meterType)."""

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str, *, critical: bool = False,
              deadline_s: float | None = None) -> asyncio.Task[Any]:
        """Run a task owned by the station's supervisor (never a bare create_task).

        A task that raises is logged with its name. A `critical` one is a loop
        the station cannot live without: if it ends, or (with `deadline_s`) goes
        longer than that without `beat(name)`, the station stops feeding the
        watchdog, opens the contactor and exits for systemd to restart it.
        """

    def beat(self, name: str) -> None:
        """A critical loop reports progress."""

    async def remote_start(self, id_tag: str, connector_id: int | None = None) -> bool: ...

    async def remote_stop(self, backend_session_id: str) -> bool: ...

    async def reset(self, hard: bool) -> bool: ...

    async def set_available(self, available: bool) -> str:
        """Returns "Accepted", "Rejected" or "Scheduled" (change after the session ends)."""

    async def unlock(self) -> str:
        """Returns "Unlocked", "UnlockFailed" or "NotSupported"."""

    async def stop_session(self, reason: str) -> bool:
        """Stop the running session with an OCPP Reason (e.g. "DeAuthorized", "UnlockCommand")."""

    async def reserve(self, reservation_id: int, id_tag: str, parent_id: str | None, expiry: str) -> str:
        """Returns "Accepted", "Faulted", "Occupied", "Rejected" or "Unavailable"."""

    async def cancel_reservation(self, reservation_id: int) -> bool: ...

    def set_clock(self, utc: str, round_trip_s: float = 0.0) -> float:
        """The backend tells the time (ISO 8601 UTC), read during a request that took `round_trip_s`:
        the Pi has no battery clock. Returns the correction applied (station/clock.py)."""

    def tune(self, **values: object) -> None:
        """Backend-controlled runtime settings, e.g. connection_timeout_s (OCPP ConnectionTimeOut),
        stop_on_ev_disconnect (StopTransactionOnEVSideDisconnect), meter_interval_s."""

    def set_power_limit(self, watts: float | None) -> None:
        """A limit of 0 pauses charging (SuspendedEVSE); None removes the limit."""

    def set_current_limit(self, amps: float | None) -> None:
        """The same in amps per phase (None removes it). With a charge controller the car is offered
        the lowest of the limits, the cable's rating and the installation's maximum
        (controller.max_current_a), and less than controller.min_current_a pauses; with only a
        contactor, 0 pauses. A limit in watts is spread over the phases the meter sees the car draw on."""

    def queue_message(self, session_id: int, kind: MessageKind, payload: dict[str, Any]) -> None:
        """Queue a transaction message of the backend's own (OCPP meter values, a 2.0.1 transaction
        point) in the journal's outbox, in order with the session's START and STOP, and wake the
        deliverer. A backend never writes the store itself. Raises StorageError when the journal
        cannot take it."""

    def resend_held(self, session_id: int) -> int:
        """Put a session's held messages (what the backend did not process in all its tries, station/held.py)
        back into the outbox, after an answer that came late after all, and wake the deliverer. Returns how
        many. Raises StorageError when the journal cannot take it."""

    def notice(self, text: str) -> None:
        """A line from the backend worth showing (LCD and log), e.g. 'offline'."""

    def backend_link(self, online: bool) -> None:
        """The backend reports its link state (for the LCD and status)."""


class Backend(abc.ABC):
    """A backend: local list, MCSP, evcs-serial or OCPP."""

    kind: str = "?"
    #: The backend tells the station the time and receives event times (MCSP with HEARTBEAT, OCPP):
    #: the deliverer waits for the clock before sending times stamped while it was unknown.
    tells_time: bool = True
    #: The moment START is sent. True: `authorize` is the START (MCSP, evcs-serial: the answer opens
    #: the session), so a session the backend itself accepted queues none; False: START goes through
    #: the outbox once the session is journaled (OCPP, local). Sessions accepted offline or started
    #: remotely queue their START either way.
    starts_session_in_authorize: bool = False
    #: The longest one `deliver` may take (its own timeouts, and waiting for its turn on the
    #: link); the deliverer cancels it after that and offers the message again later.
    delivery_timeout_s: float = 300.0

    def __init__(self) -> None:
        self.station: StationControl | None = None
        self._online = False

    @property
    def online(self) -> bool:
        return self._online

    def _set_online(self, online: bool) -> None:
        if online != self._online:
            self._online = online
            if self.station is not None:
                self.station.backend_link(online)

    async def start(self, station: StationControl) -> None:
        """Connect (in the background) and keep the link; return once started.

        Must not block on the network: the station charges offline too.
        """
        self.station = station

    async def close(self) -> None:  # noqa: B027 - optional: a backend without links has nothing to close
        """Close links and stop background tasks."""

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until the link is up (used for READY and in tests)."""
        return self.online

    @abc.abstractmethod
    async def authorize(self, id_tag: str, session: Session) -> AuthResult:
        """Is this tag allowed to charge? Raises BackendOffline when unreachable.

        `session` is the journal record in state "authorizing" (its key and
        meter_start_wh are set); a backend whose authorization opens a session
        (MCSP START) returns the backend's session id in the result.
        """

    @abc.abstractmethod
    async def deliver(self, item: OutboxItem, session: Session) -> DeliveryResult:
        """Deliver one queued transaction message; raise BackendOffline to retry later,
        RetryLater when the backend did not process it (a counted try), Undeliverable when it
        did not process it in all its tries (kept for the operator)."""

    def carriers(self) -> dict[str, Callable[[], asyncio.Task[Any]]]:
        """The backend's critical loops that only carry messages (its link), each with the function
        that starts it again: the supervisor restarts such a loop when it hangs or ends, instead of
        stopping the station (station/supervisor.py). Called after `start`."""
        return {}

    async def send_status(self, report: StatusReport) -> None:  # noqa: B027 - optional: the local backend has no one to tell
        """Best effort; the backend re-sends the current status on reconnect."""

    async def parent_of(self, id_tag: str) -> str | None:
        """The parent id tag (group) of a tag, if the backend knows one without asking the
        network first (OCPP: local list or cache, else Authorize). None: no group."""
        return None

    def report_current(self, offered_a: float, drawn_a: float) -> None:  # noqa: B027 - optional
        """What the charge controller offers and the car draws now (amps per phase), on stations with
        one, when either changes (MCSP's shared site limit, docs/mcsp.md 4.5). Must return at once."""

    def transaction_fact(self, fact: TxFact, session: Session | None) -> None:  # noqa: B027 - optional
        """A moment of the charging cycle, as it happens (OCPP 2.0.1 TxStartPoint/TxStopPoint): the
        car connected or left, the driver authorized or deauthorized, the power path closed or
        opened, energy began or stopped to flow. `session` is the journal's session when there is
        one (none yet at EVConnected before a card). Best effort and not journaled: a backend that
        must remember a fact queues its message through `StationControl.queue_message`. Must return
        at once (it runs inside the machine's turn)."""
