"""The charger: the shell around the connector machine (station/core/connector.py).

The machine decides; the shell does. It turns what happens into events for
the machine, and carries the machine's actions out, in the order given:

    reader thread ─► taps.TapInbox ──────────┐
    plug switch, stop button, aux contact ─► poller.Poller ──┤
    kWh meter (the meter loop here) ─────────┤──► Connector.handle(event) ──► actions
    charge controller ─► pilot.PilotLink ────┤
    backend requests ─► control.Control ─────┘                                 │
                                                                               ▼
    SetContactor ─► the contactor (nowhere else)       Journal* ─► journal.Journal ─► store
    SetCurrent ─► pilot.PilotLink ─► the charge controller (nowhere else)
    ReadMeter, Authorize ─► a task; its answer is posted back as an event
    Show, Notice ─► presenter (LCD, LEDs)       ReportStatus ─► status.StatusReporter ─► backend
    Announce ─► Backend.transaction_fact         WakeDelivery ─► the deliverer

Journal writes are synchronous (SQLite in this thread): their answers are
handed to the machine right after, in the same turn. A meter read and an
authorization take time: they run as supervised tasks and their answers come
back as events, so no loop ever waits on them. One event is handled at a
time; an event posted while one is handled waits its turn.

The car's state: with a charge controller (`controller.model`), the pilot
as the board reads it (pilot.py: the "pilot" loop posts the car, the cable's
rating and the board's faults, and writes the current the machine offers);
without one, today's sensors: the plug switch (A/B, or unknown without one)
and the meter's power above `charging.power_threshold_w` (C).

Liveness: the events, meter and poll loops are critical tasks of the
supervisor and beat while they run; the reader's thread beats too. If one
dies or hangs, the daemon opens the contactor and exits for systemd to
restart it. A tap is handled to its end (authorization included) before the
next one is taken.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from station.clock import Clock
from station.config import Config
from station.core import events as ev
from station.core.auth import TIMEOUT_S, Authorizer, OfflinePolicy
from station.core.connector import Connector
from station.core.faults import ContactorVerdict, FaultRegistry
from station.core.journal import Journal, storage_fault
from station.core.meterguard import MeterGuard
from station.core.model import (
    CarState,
    ControllerReading,
    DeliveryResult,
    Fault,
    MessageKind,
    MeterReading,
    OutboxItem,
    Session,
    StatusReport,
    car_from_sensors,
)
from station.core.pilot import PilotLink
from station.core.poller import Poller
from station.core.ports import Backend, Hardware
from station.core.presenter import Presenter, View
from station.core.reservations import Reservation
from station.core.rules import AVAILABLE_KEY, Settings
from station.core.sampler import MeterSampler
from station.core.states import State
from station.core.status import StatusReporter
from station.core.tags import format_uid
from station.core.taps import TapInbox
from station.errors import StorageError
from station.supervisor import Supervisor

if TYPE_CHECKING:  # types only: the composition root hands the instances in (no import cycle)
    from station.store import Store

log = logging.getLogger(__name__)

READER_DEADLINE_S = 10.0  # the reader thread polls every 0.1 s; a fault retry waits a few seconds
POLL_DEADLINE_S = 3.0  # the poll loop turns at least once a second and never waits on I/O
EVENTS_DEADLINE_S = 30.0  # a tap may take auth.TIMEOUT_S (15 s) plus meter reads to handle
METER_TRIES = 3  # reads tried at a stop
MAX_REQUESTS = 6  # Modbus requests in one full read, at the most (EM24-OLD: six; the SDM630: three)
RESET_DRAIN_S = 10.0  # a Reset waits this long for the session's stop to be delivered (link up)


class Charger:
    """One connector's shell: events in, the machine's actions out. Read it through the properties."""

    def __init__(self, config: Config, hardware: Hardware, store: Store, backend: Backend, clock: Clock,
                 supervisor: Supervisor | None = None, reopen: Callable[[], None] | None = None) -> None:
        self._config, self.hw, self._backend, self.clock = config, hardware, backend, clock
        self.name = config.station.name
        self.supervisor = supervisor or Supervisor(clock.monotonic)
        c = config.charging
        self._journal = Journal(store, clock, config.station.connector_id, reopen)
        guard = MeterGuard(config.meter.max_power_w or hardware.meter.max_power_w, config.meter.max_failures)
        self._sampler = MeterSampler(hardware.meter, guard, clock.monotonic)
        self._sampler.on_fault = self._meter_fault
        self._policy = OfflinePolicy(config.backend.offline_policy, config.backend.auth_cache_ttl_s,
                                    dict(config.backend.local.tags), store)
        self._authorizer = Authorizer(backend, self._policy)
        self.presenter = Presenter(hardware.display, hardware.leds, config.station.language, c.message_s,
                                   clock.monotonic)
        self.statuses = StatusReporter(backend)
        self.poller = Poller(hardware.inputs, hardware.contactor, c.contactor_settle_s, c.contactor_recover_s,
                             clock.monotonic, self)
        ctl = config.controller
        self.pilot = None if hardware.controller is None else PilotLink(
            hardware.controller, self.post, self._car_now, clock.monotonic, interval_s=float(ctl.poll_interval_s),
            max_failures=int(ctl.max_failures))
        self.machine = Connector(Settings(
            connection_timeout_s=float(c.connection_timeout_s), meter_interval_s=float(c.meter_interval_s),
            name=self.name, connector_id=config.station.connector_id, finishing_s=float(c.finishing_s),
            no_power_timeout_s=float(c.no_power_timeout_s), journal_interval_s=float(c.journal_interval_s),
            offline_policy=config.backend.offline_policy, max_current_a=float(ctl.max_current_a),
            min_current_a=float(ctl.min_current_a), phases=int(c.phases),
            plug_sensor=self.poller.plugged is not None or self.pilot is not None, current_control=self.pilot is not None,
            starts_session_in_authorize=backend.starts_session_in_authorize), clock.monotonic, clock.stamp)
        self._inbox = TapInbox(self._take)
        self.deliverer: Any = None  # set by the daemon (wake() is all the charger uses)
        self.exit_event = asyncio.Event()  # the daemon's: set at a backend-ordered reset
        self.exit_request: str | None = None  # "soft" / "hard" once a reset is under way
        self.recent: list[str] = []  # recent notable events for the terminal view
        self.taps = 0  # taps handled (the simulator waits on it)
        self._queue: deque[ev.Event] = deque()
        self._posting = False
        self._started = False
        self._handling = 0  # taps and requests being decided (a group being looked up)
        self._idle = asyncio.Event()
        self._idle.set()
        self._drawing = False  # the meter's power is above the threshold
        self._car = car_from_sensors(self.poller.plugged, False) if self.pilot is None else CarState.UNKNOWN
        self._currents: tuple[float, float] | None = None  # (offered, drawn) last told the backend
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ what the rest of the station reads
    @property
    def state(self) -> State:
        return self.machine.state

    @property
    def busy(self) -> bool:
        return self.machine.busy

    @property
    def pending(self) -> bool:
        return self.machine.pending

    @property
    def session(self) -> Session | None:
        return self.machine.session

    @property
    def reading(self) -> MeterReading | None:
        return self.machine.reading

    @property
    def online(self) -> bool:
        return self.machine.online

    @property
    def faults(self) -> FaultRegistry:
        return self.machine.faults

    @property
    def limit_w(self) -> float | None:
        return self.machine.limit_w

    @property
    def reservation(self) -> Reservation | None:
        return self.machine.reservation

    @property
    def limit_a(self) -> float | None:
        return self.machine.limit_a

    @property
    def offered_a(self) -> float | None:
        """What the machine offers the car (A per phase; 0 outside a session, paused or switched off)."""
        return self.machine.offered_a

    @property
    def pilot_reading(self) -> ControllerReading | None:
        """The charge controller's last reading (None without one, or before its first answer)."""
        return self.pilot.reading if self.pilot is not None else None

    @property
    def car(self) -> CarState:
        return self._car

    def status(self) -> StatusReport:
        return self.machine.status()

    def view(self) -> View:
        return self.machine.view()

    def events_idle(self) -> bool:
        """No tap waiting and none being handled (the simulator waits on it)."""
        return self._inbox.empty() and not self._handling and not self.machine.busy

    def note(self, text: str) -> None:
        self.recent.append(f"{time.strftime('%H:%M:%S')} {text}")
        del self.recent[:-20]

    # ------------------------------------------------------------------ events in
    def post(self, event: ev.Event) -> list[ev.Action]:
        """Hand an event to the machine and carry its actions out. Returns the answers meant for the
        poster (Reply, LookupParent). An event posted while another is handled waits its turn."""
        self._queue.append(event)
        if self._posting:
            return []
        answers: list[ev.Action] = []
        self._posting = True
        before = self.machine.state
        try:
            first = True
            while self._queue:
                for action in self.machine.handle(self._queue.popleft()):
                    if isinstance(action, (ev.Reply, ev.LookupParent)):
                        if first:
                            answers.append(action)
                    else:
                        self._do(action)
                first = False
        finally:
            self._posting = False
        if self.machine.state is not before:
            self.poller.kick()
        if self.machine.busy:
            self._idle.clear()
        else:
            self._idle.set()
        return answers

    async def submit(self, event: ev.Event) -> Any:
        """Post, looking up a tag's group when the machine asks for it; returns the machine's reply."""
        self._handling += 1
        try:
            answers = self.post(event)
            lookup = next((a for a in answers if isinstance(a, ev.LookupParent)), None)
            if lookup is not None:
                return await self.submit(event.replaced(parent=await self._parent_of(lookup.tag), looked_up=True))
            return next((a.value for a in answers if isinstance(a, ev.Reply)), None)
        finally:
            self._handling -= 1

    async def until_idle(self) -> None:
        """Until no operation (authorizing, starting, stopping) is in flight."""
        await self._idle.wait()

    async def _parent_of(self, tag: str) -> str | None:
        try:
            async with asyncio.timeout(TIMEOUT_S):
                return await self._backend.parent_of(tag)
        except Exception as exc:  # no group known: the card is treated as a card of its own
            log.warning("cannot learn the group of a tag: %s", exc or type(exc).__name__)
            return None

    def tap_tag(self, id_tag: str) -> None:
        """A tap by id tag (scenarios with UIDs no ISO 14443 card has)."""
        self._inbox.put_tag(id_tag)

    async def _take(self, kind: str, value: Any) -> None:
        """One item of the inbox (taps.py): a tap is handled to its end before the next."""
        if kind == "reader":
            self.post(ev.FaultChanged("reader", None if value is None else Fault("ReaderFailure", value)))
            return
        if kind == "tap":
            r = self._config.rfid
            value = format_uid(value, r.uid_case, r.uid_separator, r.uid_byte_order)
        try:
            await self.submit(ev.Tapped(value))
        finally:
            self.taps += 1
        await self.until_idle()

    # the poll loop's (poller.py)
    def plug_changed(self, plugged: bool | None) -> None:
        if self.pilot is None:  # with a charge controller the pilot says whether a car is plugged in
            self._car_now(car_from_sensors(plugged, self._drawing))

    def stop_pressed(self) -> None:
        self.post(ev.StopPressed())

    def contactor_checked(self, verdict: ContactorVerdict, followed: bool) -> None:
        self.post(ev.ContactorChecked(verdict, followed))

    def turned(self) -> None:
        self.post(ev.Tick())
        if self.presenter.expire():
            self.presenter.render(self.machine.view())

    def poll_interval(self, fast: float, due: float, idle: float) -> float:
        """Fast while power may be on or a car is being plugged in; until the next timer; else idle."""
        if self.machine.needs_fast_poll():
            return fast
        deadlines = [t for t in (self.machine.next_deadline(),
                                 self.presenter.notice.until if self.presenter.notice else None) if t is not None]
        if deadlines:
            return min(idle, max(due, min(deadlines) - self.clock.monotonic()))
        return idle

    def _car_now(self, car: CarState) -> None:
        if car is not self._car:
            self._car = car
            if self._started:  # before, Started carries it
                self.post(ev.CarChanged(car))

    def _meter_fault(self, text: str | None) -> None:
        self.post(ev.FaultChanged("meter", None if text is None else Fault("PowerMeterFailure", text)))

    # ------------------------------------------------------------------ actions out
    def _do(self, action: ev.Action) -> None:
        if isinstance(action, ev.SetContactor):
            self.hw.contactor.set(action.closed)  # the one place the contactor is commanded
            self.poller.kick()
        elif isinstance(action, ev.Show):
            self.presenter.render(action.view)
        elif isinstance(action, ev.Notice):
            self.presenter.show_notice(action.key, **action.fields)
        elif isinstance(action, ev.Note):
            self.note(action.text)
        elif isinstance(action, ev.ReportStatus):
            if self._started:
                self.statuses.report(action.report)
        elif isinstance(action, ev.ReadMeter):
            self.spawn(self._read(action), f"meter-{action.purpose.value}")
        elif isinstance(action, ev.Authorize):
            self.spawn(self._authorize(action), "authorize")
        elif isinstance(action, ev.WakeDelivery):
            self.wake_delivery()
        elif isinstance(action, ev.Announce):
            try:
                self._backend.transaction_fact(action.fact, action.session)
            except Exception:
                log.exception("the backend failed to take %s", action.fact.value)
        elif isinstance(action, ev.Continue):
            if self._loop is not None:
                self._loop.call_soon(self.post, ev.Continued())
        elif isinstance(action, ev.Exit):
            self.spawn(self._exit(action), "reset")
        elif isinstance(action, ev.SetCurrent):
            if self.pilot is None:
                log.debug("current offered: %.1f A (no charge controller fitted)", action.amps)
            else:
                self.pilot.want(action.amps)  # the one place the charge controller is told a current
                self._report_currents()
        else:
            self._record(action)

    def _record(self, action: ev.Action) -> None:
        """Journal actions; the answers the machine waits for are queued for it at once."""
        j = self._journal
        try:
            if isinstance(action, ev.JournalOpen):
                self._queue.append(ev.Journaled(ev.Step.OPEN, j.open(action.tag, action.reading, action.reservation_id)))
            elif isinstance(action, ev.JournalActivate):
                session = j.activate(action.session, action.reading, action.result, action.start_delivered)
                self._queue.append(ev.Journaled(ev.Step.ACTIVATE, session))
            elif isinstance(action, ev.JournalStop):
                a = action
                stopped, error = j.close(a.session, a.wh, a.phases, a.estimated, a.reason, a.id_tag, a.at)
                self._queue.append(ev.Journaled(ev.Step.STOP, stopped, storage_fault(error) if error else None))
            elif isinstance(action, ev.JournalProbe):
                j.probe()
                self._queue.append(ev.Journaled(ev.Step.PROBE))
            elif isinstance(action, ev.JournalEnd):
                j.end(action.session, action.state, action.reason)
            elif isinstance(action, ev.JournalSample):
                j.sample(action.session, action.wh)
            elif isinstance(action, ev.JournalFault):
                j.fault(action.source, action.fault, action.wh)
            elif isinstance(action, ev.Remember):
                j.remember(action.key, action.value)
            else:
                raise TypeError(f"no one carries out {action!r}")
        except StorageError as exc:
            step = {ev.JournalOpen: ev.Step.OPEN, ev.JournalActivate: ev.Step.ACTIVATE}.get(type(action), ev.Step.PROBE)
            self._queue.append(ev.Journaled(step, None, storage_fault(exc)))

    async def _read(self, action: ev.ReadMeter) -> None:
        reading = None
        try:
            reading = await self._sampler.read(tries=action.tries, full=action.full)
        except Exception:  # a bug below the sampler: the machine still gets its answer (no reading)
            log.exception("reading the meter failed")
        # Not when cancelled (the station stops, as at a power cut): a stop must not be journaled then.
        self.post(ev.MeterRead(action.purpose, reading))

    async def _authorize(self, action: ev.Authorize) -> None:
        self.post(ev.Authorized(await self._authorizer.ask(action.tag, action.session)))

    async def _exit(self, action: ev.Exit) -> None:
        # OCPP 1.6 §5.14: the StopTransaction goes out (and is answered) before the reboot when the
        # link is up; offline it waits in the journal as always.
        if action.drain:
            await self._drain(RESET_DRAIN_S)
        self.exit_request = action.kind
        self.exit_event.set()

    async def _drain(self, timeout: float) -> bool:
        """Wait until the outbox is empty (everything delivered), at most `timeout` seconds."""
        deadline = self.clock.monotonic() + timeout
        while self.clock.monotonic() < deadline:
            pending = self._journal.pending()
            if pending is None or pending == 0:
                return pending == 0
            self.wake_delivery()
            await asyncio.sleep(0.05)
        log.warning("outbox not drained within %.0f s; the rest is delivered after the restart", timeout)
        return False

    def wake_delivery(self) -> None:
        if self.deliverer is not None:
            self.deliverer.wake()

    def _report_currents(self) -> None:
        """The offered and the drawn current, to a backend that shares a site limit (MCSP), on changes."""
        r = self.machine.reading
        drawn = max(r.current_a) if r is not None and r.current_a and self.machine.session is not None else 0.0
        currents = (self.machine.offered_a or 0.0, drawn)
        if currents != self._currents:
            self._currents = currents
            try:
                self._backend.report_current(*currents)
            except Exception:
                log.exception("the backend failed to take the currents")

    # ------------------------------------------------------------------ what a backend hands in (control.py)
    def queue_message(self, session_id: int, kind: MessageKind, payload: dict[str, Any]) -> None:
        self._journal.queue(session_id, kind, payload)
        self.wake_delivery()

    def resend_held(self, session_id: int) -> int:
        n = self._journal.resend(session_id)
        self.wake_delivery()
        return n

    def on_delivery(self, item: OutboxItem, result: DeliveryResult) -> None:
        """A queued message was confirmed (the deliverer calls this)."""
        self.post(ev.Delivered(item, result))

    def backend_link(self, online: bool) -> None:
        self.post(ev.BackendLink(online))

    async def stop(self, reason: str) -> bool:
        """End the running session (the daemon's graceful stop: Reboot) and wait until it is recorded."""
        stopping = bool(next((a.value for a in self.post(ev.StopRequested(reason)) if isinstance(a, ev.Reply)), False))
        await self.until_idle()
        return stopping

    # ------------------------------------------------------------------ owning tasks, start-up, the loops
    def spawn(self, coro: Coroutine[Any, Any, Any], name: str, *, critical: bool = False,
              deadline_s: float | None = None) -> asyncio.Task[Any]:
        return self.supervisor.spawn(coro, name, critical=critical, deadline_s=deadline_s)

    def kick(self) -> None:
        self.poller.kick()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._inbox.bind(self._loop)
        storage = None
        try:
            self._journal.check_writable()
        except StorageError as exc:
            log.error("the journal cannot be written: %s; new sessions are refused until it can", exc)
            storage = storage_fault(exc)
        # A first reading before anything else: the fault journal, the power-loss close and the
        # first tap all want to know where the register stands.
        self.post(ev.MeterSampled(await self._sampler.read()))
        if self.hw.meter.map_warning:  # logged by the meter; the operator sees it in the recent events
            self.note(f"meter: {self.hw.meter.map_warning}")
        await self.poller.check_at_start(self._config.charging.contactor_settle_s)
        if self.pilot is not None:  # the car, the cable and the board's faults before anything starts
            await self.pilot.turn()
        await self.close_leftovers()
        self._started = True
        self.post(ev.Started(self._journal.setting(AVAILABLE_KEY, True) is not False, self._car, storage))
        if self.hw.reader is not None:
            self.hw.reader.start(self._inbox.tap_from_thread, self._inbox.fault_from_thread,
                                 lambda: self.supervisor.beat("reader"))
            self.supervisor.expect("reader", READER_DEADLINE_S, self.hw.reader.alive)
        m = self._config.meter
        # The loop's own read: one try, at most a few requests, each bounded by the meter timeout.
        meter_deadline = self._config.charging.meter_interval_s + MAX_REQUESTS * m.timeout_s + 5.0
        self.spawn(self._inbox.run(self.supervisor.checkpoint), "events", critical=True, deadline_s=EVENTS_DEADLINE_S)
        self.spawn(self._meter_loop(), "meter", critical=True, deadline_s=meter_deadline)
        self.spawn(self.poller.run(self.supervisor.checkpoint), "poll", critical=True, deadline_s=POLL_DEADLINE_S)
        if self.pilot is not None:
            ctl = self._config.controller
            # A turn: a write (two requests at most), the link's identification (three) and a poll (three),
            # each behind the meter's requests on a shared line, each bounded by a timeout.
            pilot_deadline = ctl.poll_interval_s + (8 + MAX_REQUESTS) * max(m.timeout_s, ctl.timeout_s) + 5.0
            self.spawn(self.pilot.run(self.supervisor.checkpoint), "pilot", critical=True, deadline_s=pilot_deadline)
        self.spawn(self.statuses.run(), "status")

    async def close_leftovers(self) -> None:
        """Close what a power cut (or a dead loop) left open: reason PowerLoss, stop reading read now."""
        leftovers = self._journal.leftovers()
        if not leftovers:
            return
        reading = await self._sampler.read(tries=METER_TRIES)  # now: the stop must be exact
        for text in self._journal.recover(leftovers, reading):
            self.note(text)
        self.wake_delivery()

    async def _meter_loop(self) -> None:
        threshold = self._config.charging.power_threshold_w
        while True:
            await self.supervisor.checkpoint("meter")
            await asyncio.sleep(self.machine.settings.meter_interval_s)
            if self.machine.busy:
                continue
            # Idle, energy and power are all anyone needs; in a session the backends want voltages,
            # currents and per-phase values (OCPP MeterValues), so read them all.
            reading = await self._sampler.read(tries=1, full=self.machine.session is not None)
            if reading is not None and self.pilot is None:  # with a controller the pilot tells
                self._drawing = (reading.power_w or 0.0) >= threshold
                self._car_now(car_from_sensors(self.poller.plugged, self._drawing))
            self.post(ev.MeterSampled(reading))
            if self.pilot is not None:
                self._report_currents()

    async def close(self) -> None:
        if self.hw.reader is not None:
            self.supervisor.forget("reader")
            self.hw.reader.stop()
