"""The charger: one connector's life, the model behind the state table in states.py.

It turns hardware events (taps, the plug, the stop button, the contactor's
auxiliary contact, meter samples) into transitions of the table, and owns the
session: authorize, journal, contactor, meter, stop. It talks to ports
(station.core.ports), the store and a backend, never to a hardware or protocol
library. Its helpers, each small and tested on its own:

    taps.py          taps and reader faults from the reader's thread, one at a time; what a tap means
    poller.py        the EV input, the stop button, the contactor watch, the timers
    auth.py          asking the backend, and the offline policy when it cannot answer
    journal.py       every journal write of a session or a fault, in its order
    sampler.py       meter reads through the plausibility guard
    faults.py        the fault registry and the contactor watch
    presenter.py     what the LCD and LEDs show (from a View of the charger)
    reservations.py  who may start at a reserved connector
    status.py        status reports to the backend, once each, in order
    control.py       what a backend may ask (StationControl), on top of this class

Ordering rules that make "nothing lost" true:
* a tap is journaled (state 'authorizing') before the backend is asked;
* a session is journaled 'active' with its START queued before the
  contactor closes;
* at the end the contactor opens first (safety), then the meter is read
  (exact, since no more energy flows), then the stop and its STOP message
  are journaled in one transaction, and only then shown and delivered.

Liveness: the loops here are critical tasks of the supervisor (events, meter,
poll) and beat while they run; the RFID reader's thread beats too. If one dies
or hangs, the daemon opens the contactor and exits for systemd to restart it.

All methods run on the asyncio loop; the RFID worker thread only posts taps
into the inbox (taps.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from transitions import Machine

from station import privacy
from station.clock import Clock
from station.config import Config
from station.core.auth import Authorizer, OfflinePolicy
from station.core.faults import FaultRegistry
from station.core.journal import Journal
from station.core.meterguard import MeterGuard
from station.core.model import AuthResult, AuthStatus, DeliveryResult, Fault, MeterReading, OutboxItem, Session, StatusReport
from station.core.poller import Poller
from station.core.ports import Backend, Hardware
from station.core.presenter import Presenter, View
from station.core.reservations import Reservation
from station.core.sampler import MeterSampler
from station.core.states import IN_SESSION, TRANSITIONS, State
from station.core.status import StatusReporter
from station.core.taps import TapInbox
from station.core.triggers import Triggers
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


class Charger(Triggers):
    """One connector. Its `state` and triggers (tap(), begin(), ...) come from states.TRANSITIONS."""

    def __init__(self, config: Config, hardware: Hardware, store: Store, backend: Backend, clock: Clock,
                 supervisor: Supervisor | None = None) -> None:
        self.config = config
        self.name = config.station.name
        self.connector_id = config.station.connector_id
        self.hw = hardware
        self.journal = Journal(store, clock, config.station.connector_id)
        self.backend = backend
        self.clock = clock
        self.supervisor = supervisor or Supervisor(clock.monotonic)
        c = config.charging
        self.settings: dict[str, Any] = {
            "connection_timeout_s": float(c.connection_timeout_s),
            "stop_on_ev_disconnect": True,
            "meter_interval_s": float(c.meter_interval_s),
        }
        guard = MeterGuard(config.meter.max_power_w or hardware.meter.max_power_w, config.meter.max_failures)
        self.sampler = MeterSampler(hardware.meter, guard, clock.monotonic)
        self.sampler.on_fault = self._on_meter_fault
        self.policy = OfflinePolicy(config.backend.offline_policy, config.backend.auth_cache_ttl_s,
                                    dict(config.backend.local.tags), store)
        self.authorizer = Authorizer(backend, self.policy)
        self.faults = FaultRegistry()
        self.presenter = Presenter(hardware.display, hardware.leds, config.station.language, c.message_s,
                                   clock.monotonic)
        self.statuses = StatusReporter(backend)
        self.machine = Machine(model=self, states=State, transitions=TRANSITIONS, initial=State.AVAILABLE,
                               auto_transitions=False, after_state_change="_after_state_change",
                               model_override=True)
        self.session: Session | None = None
        self.reservation: Reservation | None = None
        self.limit_w: float | None = None
        self.online = False
        self.exit_request: str | None = None  # "soft" / "hard" reset asked by a backend
        self.exit_event = asyncio.Event()
        self.deliverer: Any = None  # set by the daemon (wake() is all the charger uses)
        self.scheduled_unavailable = False
        self.recent: list[str] = []  # recent notable events for the terminal view
        self.taps = 0  # taps handled (the simulator waits on it)
        self.inbox = TapInbox(self)
        self._busy = False  # authorizing, starting or stopping
        self.waiting: tuple[Session, AuthResult] | None = None  # accepted, waiting for the plug
        self.prep_deadline: float | None = None  # Preparing falls back to Available after this
        self.unplugged = False  # in a session: the car was unplugged (StopTransactionOnEVSideDisconnect off)
        self._session_drew = False
        self._session_mono = 0.0
        self._last_journal = 0.0
        self.finishing_until: float | None = None  # Finishing shown until (without an EV input)
        self._last_stopped: Session | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.poller = Poller(self, c.contactor_settle_s, c.contactor_recover_s)

    # ------------------------------------------------------------------ conditions of the table
    def ev_plugged(self) -> bool:
        return bool(self.poller.ev)

    def reserved(self) -> bool:
        return self.reservation is not None

    @property
    def has_ev_input(self) -> bool:
        return self.poller.ev is not None

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def pending(self) -> bool:
        """A card was accepted and the station waits for the plug."""
        return self.waiting is not None

    @property
    def reading(self) -> MeterReading | None:
        return self.sampler.reading

    def restart_no_power_grace(self) -> None:
        """The car gets the full no-power grace again (after a pause the station ordered)."""
        self._session_mono = self.clock.monotonic()

    def persist_available(self, available: bool) -> None:
        """ChangeAvailability survives a restart (OCPP 1.6)."""
        self.journal.remember("core.available", available)

    # ------------------------------------------------------------------ owning tasks
    def spawn(self, coro: Coroutine[Any, Any, Any], name: str, *, critical: bool = False,
              deadline_s: float | None = None) -> asyncio.Task[Any]:
        return self.supervisor.spawn(coro, name, critical=critical, deadline_s=deadline_s)

    def beat(self, name: str) -> None:
        self.supervisor.beat(name)

    # ------------------------------------------------------------------ start-up
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.inbox.bind(self._loop)
        try:
            self.journal.check_writable()
        except StorageError as exc:
            self.set_fault("storage", Fault("OtherError", str(exc), "Storage"))
        # A first reading before anything else: the fault journal, the power-loss close and
        # the first tap all want to know where the register stands.
        await self.sampler.read()
        if self.hw.meter.map_warning:  # logged by the meter; the operator sees it in the recent events
            self.note(f"meter: {self.hw.meter.map_warning}")
        await self.poller.check_at_start(self.config.charging.contactor_settle_s)
        await self.close_leftovers()
        if self.journal.setting("core.available", True) is False and self.state is not State.FAULTED:
            self.disable()
        if self.hw.reader is not None:
            self.hw.reader.start(self.inbox.tap_from_thread, self.inbox.fault_from_thread,
                                 lambda: self.supervisor.beat("reader"))
            self.supervisor.expect("reader", READER_DEADLINE_S, self.hw.reader.alive)
        m = self.config.meter
        # The loop's own read: one try, at most a few requests, each bounded by the meter timeout.
        meter_deadline = self.settings["meter_interval_s"] + MAX_REQUESTS * m.timeout_s + 5.0
        self.spawn(self.inbox.run(), "events", critical=True, deadline_s=EVENTS_DEADLINE_S)
        self.spawn(self._meter_loop(), "meter", critical=True, deadline_s=meter_deadline)
        self.spawn(self.poller.run(), "poll", critical=True, deadline_s=POLL_DEADLINE_S)
        self.spawn(self.statuses.run(), "status")
        self._after_state_change()

    async def close_leftovers(self) -> None:
        """Close what a power cut (or a dead loop) left open: reason PowerLoss, stop reading read now."""
        leftovers = self.journal.leftovers()
        if not leftovers:
            return
        reading = await self.sampler.read(tries=METER_TRIES)  # now: the stop must be exact
        for text in self.journal.recover(leftovers, reading):
            self.note(text)
        self.wake_delivery()

    # ------------------------------------------------------------------ taps (taps.py calls)
    def tap_tag(self, id_tag: str) -> None:
        """A tap by id tag (scenarios with UIDs no ISO 14443 card has)."""
        self.inbox.put_tag(id_tag)

    def events_idle(self) -> bool:
        """No tap waiting and none being handled (the simulator waits on it)."""
        return self.inbox.empty() and not self._busy

    # ------------------------------------------------------------------ authorization and start
    async def authorize(self, tag: str, remote: bool = False) -> None:
        """A tap (or a RemoteStart, already authorized) in Available, Reserved or Preparing."""
        self._busy = True
        try:
            self.tap()  # -> Preparing
            self.render()
            if self.faults.blocking():
                self._refuse(None, "faulted")
                return
            reading = self.sampler.fresh_idle(self.hw.contactor.closed, self.settings["meter_interval_s"]) \
                or await self.sampler.read(full=False)
            if reading is None:
                self._refuse(None, "meter_fault")
                return
            try:
                session = self.journal.open(tag, reading, self.reservation.id if self.reservation else None)
            except StorageError as exc:
                log.error("refusing %s: %s", _mask(tag), exc)
                self.set_fault("storage", Fault("OtherError", str(exc), "Storage"), blocking=False)
                self._refuse(None, "storage_refused")
                return
            result = AuthResult(AuthStatus.ACCEPTED) if remote else await self.authorizer.ask(tag, session)
            if not result.accepted:
                reason = result.status.value + (f": {result.message}" if result.message else "")
                if result.reason:
                    reason += f" ({result.reason})"
                log.info("tap %s refused: %s", _mask(tag), reason)
                self.journal.refuse(session, reason)
                self._refuse(result, "offline" if result.offline else "refused")
                return
            if self.has_ev_input and not self.poller.ev:
                self.waiting = (session, result)
                self.prep_deadline = self.clock.monotonic() + self.settings["connection_timeout_s"]
                self.render()
                return
            await self.begin_session(session, result)
        finally:
            self._busy = False
            self.render()

    def _refuse(self, result: AuthResult | None, key: str) -> None:
        if result is not None:
            text = result.status.value + (f" ({result.reason})" if result.reason else "")
            self.note(f"refused: {result.message or text}")
            fields: dict[str, Any] = {"message": result.message, "status": result.status.value}
            if key == "offline":
                fields = {"cached": self.policy.policy != "refuse"}
        else:
            self.note(f"refused: {key.replace('_', ' ')}")
            fields = {"reason": self.fault_reason()} if key == "faulted" else {}
        self.notice(key, **fields)
        if self.state is State.PREPARING:
            self.abandon()

    def cancel_waiting(self, why: str) -> None:
        if self.waiting is None:
            return
        session, _ = self.waiting
        self.waiting = None
        self.prep_deadline = None
        self.journal.abort(session, why)
        if self.state is State.PREPARING:
            self.abandon()

    async def begin_session(self, session: Session, result: AuthResult) -> None:
        self.waiting = None
        self.prep_deadline = None
        if self.faults.blocking():  # e.g. the contactor welded while the car was being plugged in
            self.journal.abort(session, "fault")
            self._refuse(None, "faulted")
            return
        reading = await self.sampler.read()
        if reading is None:
            self.journal.abort(session, "meter")
            self._refuse(None, "meter_fault")
            return
        try:
            session = self.journal.activate(session, reading, result)
        except StorageError as exc:
            log.error("cannot journal the session start: %s", exc)
            self.set_fault("storage", Fault("OtherError", str(exc), "Storage"), blocking=False)
            self._refuse(None, "storage_refused")
            return
        self.session = session
        self.reservation = None
        self._session_drew = False
        self.unplugged = False
        self._session_mono = self._last_journal = self.clock.monotonic()
        self.wake_delivery()
        if self.limit_w == 0:
            self.begin()
            self.pause()
        else:
            self.hw.contactor.set(True)
            self.begin()
        log.info("session %d started for %s at %d Wh", session.id, _mask(session.id_tag), reading.energy_wh)
        self.note(f"session {session.id} started at {reading.energy_wh} Wh")

    # ------------------------------------------------------------------ stop
    async def stop(self, reason: str, id_tag: str | None = None) -> Session | None:
        """End the running session. Contactor first, then the exact reading, then the journal.

        `id_tag` is the card that asked for the stop, when a card did (it may be another card
        of the same group than the one that started: OCPP StopTransaction names it)."""
        session = self.session
        if session is None:
            return None
        self._busy = True
        try:
            self.hw.contactor.set(False)
            reading = await self.sampler.read(tries=METER_TRIES)
            if reading is not None:
                wh, phases, estimated = reading.energy_wh, reading.energy_phase_wh, False
            else:
                last = self.sampler.last_good()
                wh = last.energy_wh if last is not None else session.meter_start_wh
                phases, estimated = (), True
            wh = max(wh, session.meter_start_wh)
            session = await self.journal.close(session, wh, phases, estimated, reason, id_tag, self._storage_failed)
            self.session = None
            self.end()
            if self.faults.blocking():
                self.fault()  # the session is closed; now the station shows why it cannot go on
            self.finishing_until = self.clock.monotonic() + self.config.charging.finishing_s
            self.wake_delivery()
            log.info("session %d stopped (%s) at %d Wh: %s Wh", session.id, reason, wh, session.energy_wh)
            self.note(f"session {session.id} stopped ({reason}): {session.energy_wh} Wh")
            self._last_stopped = session
            return session
        finally:
            self._busy = False
            self.render()

    # ------------------------------------------------------------------ meter
    async def _meter_loop(self) -> None:
        while True:
            await self.supervisor.checkpoint("meter")
            await asyncio.sleep(self.settings["meter_interval_s"])
            if self._busy:
                continue
            # Idle, energy and power are all anyone needs; in a session the backends want
            # voltages, currents and per-phase values (OCPP MeterValues), so read them all.
            reading = await self.sampler.read(tries=1, full=self.session is not None)
            if reading is None or self.session is None or self._busy:
                continue
            before = self.state
            self._follow_power(reading)
            now = self.clock.monotonic()
            # Every journal_interval_s, and at every state change (Charging <-> SuspendedEV): a car
            # that stopped drawing leaves its final reading, for a PowerLoss with a dead meter.
            if self.state is not before or now - self._last_journal >= self.config.charging.journal_interval_s:
                self._last_journal = now
                self.journal.sample(self.session, reading.energy_wh)
            self.render()

    def _follow_power(self, reading: MeterReading) -> None:
        threshold = self.config.charging.power_threshold_w
        drawing = (reading.power_w or 0.0) >= threshold
        if drawing:
            self._session_drew = True
        if self.state is State.SUSPENDED_EV and drawing:
            self.draw()
        elif self.state is State.CHARGING and not drawing:
            self.idle()
        timeout = self.config.charging.no_power_timeout_s
        if (timeout and not self._session_drew and self.session is not None
                and self.state is State.SUSPENDED_EV  # not while the station itself pauses it
                and reading.energy_wh == self.session.meter_start_wh
                and self.clock.monotonic() - self._session_mono > timeout):
            log.info("session %d: no power drawn for %.0f s; ending it", self.session.id, timeout)
            self.notice("no_power_timeout")
            self.spawn(self.stop("Other"), "stop")

    def _on_meter_fault(self, text: str | None) -> None:
        if text is None:
            self.clear_fault("meter")
        else:
            self.set_fault("meter", Fault("PowerMeterFailure", text))

    # ------------------------------------------------------------------ inputs and timers (poller.py calls)
    def needs_fast_poll(self) -> bool:
        """Anything that may need power off within 100 ms, or a car being plugged in."""
        return self.session is not None or self._busy or self.state is State.PREPARING

    def timer_due(self) -> bool:
        return (self.prep_deadline is not None or self.presenter.notice is not None or self.reservation is not None
                or self.state is State.FINISHING)

    def kick(self) -> None:
        self.poller.kick()

    def on_stop_button(self) -> None:
        """The stop button (latched by an edge callback, so a short press is not lost)."""
        if self.state in IN_SESSION:
            self.stop_soon("Local")

    def end_session_on_fault(self) -> None:
        """A session cannot go on with a faulty meter or contactor: end it (then Faulted)."""
        if self.session is not None and ("contactor" in self.faults or "meter" in self.faults):
            self.stop_soon("Other")

    def stop_soon(self, reason: str) -> None:
        """Stop in a task of its own: the poll loop, which asks, must never wait for the meter
        reads and the journal of a stop (it watches the contactor meanwhile)."""
        if self.session is None or self._busy:
            return
        self._busy = True  # until the stop task runs: one stop only

        async def go() -> None:
            self._busy = False
            await self.stop(reason)
        self.spawn(go(), "stop")

    def begin_soon(self) -> None:
        """The car is plugged in after the card was accepted: start, in a task of its own."""
        if self.waiting is None or self._busy:
            return
        session, result = self.waiting
        self._busy = True

        async def go() -> None:
            self._busy = False
            await self.begin_session(session, result)
        self.spawn(go(), "begin")

    def end_reservation(self) -> None:
        """A reservation expires or is cancelled: a car already plugged in now waits for a card."""
        self.reservation = None
        if self.state is State.RESERVED:
            self.unhold()
            if self.poller.ev and self.may_plug():
                self.plug()

    # ------------------------------------------------------------------ faults
    def on_reader_fault(self, text: str | None) -> None:
        if text is None:
            self.clear_fault("reader")
        else:
            log.error("reader fault: %s", text)
            self.set_fault("reader", Fault("ReaderFailure", text))

    def set_fault(self, source: str, fault: Fault, blocking: bool = True) -> None:
        """Record a fault. A blocking one takes the connector to Faulted (a session is ended
        first, by the poll loop); a storage fault only refuses new sessions."""
        if not self.faults.set(source, fault):
            return
        self.note(f"fault: {fault.text}")
        self._journal_fault(source, fault)
        if blocking and self.session is None and self.may_fault():
            self.fault()
        else:
            self._report_status()
            self.render()

    def clear_fault(self, source: str) -> None:
        if not self.faults.clear(source):
            return
        self.note(f"fault cleared: {source}")
        self._journal_fault(source, None)
        if not self.faults.blocking() and self.state is State.FAULTED:
            self.recover()
            if self.journal.setting("core.available", True) is False:
                self.disable()
        else:
            self._report_status()
            self.render()

    def _journal_fault(self, source: str, fault: Fault | None) -> None:
        """Faults are journaled with the meter's reading: a welded contactor lets energy flow with
        no session, and the journal must say how much (raised_wh to cleared_wh)."""
        self.journal.fault(source, fault, self.sampler.reading.energy_wh if self.sampler.reading else None)

    def _storage_failed(self, exc: StorageError) -> None:
        self.set_fault("storage", Fault("OtherError", str(exc), "Storage"), blocking=False)

    def fault_reason(self) -> str:
        fault = self.faults.first()
        return (fault.vendor or fault.code) if fault else ""

    # ------------------------------------------------------------------ what the driver and the backend see
    def view(self) -> View:
        energy = power = None
        if self.session is not None and self.sampler.reading is not None:
            energy = self.sampler.reading.energy_wh - self.session.meter_start_wh
            power = self.sampler.reading.power_w
        finished = self._last_stopped.energy_wh if self._last_stopped is not None else None
        return View(self.state, self.name, self.online, self._busy, self.waiting is not None, energy, power,
                    finished, self.faults.first())

    def _after_state_change(self) -> None:
        self.kick()
        if self.state is State.PREPARING and not self._busy and self.waiting is None:
            self.prep_deadline = self.prep_deadline or self.clock.monotonic() + self.settings["connection_timeout_s"]
        self.render()
        self._report_status()

    def render(self) -> None:
        self.presenter.render(self.view())

    def notice(self, key: str, **fields: Any) -> None:
        """Show a transient screen (a refusal also blinks red) over the state's screen."""
        fields.setdefault("offline", not self.online)
        self.presenter.show_notice(key, **fields)
        self.render()

    def status(self) -> StatusReport:
        fault = self.faults.first()
        return StatusReport(self.connector_id, self.state,
                            fault.code if fault else "NoError", fault.text[:50] if fault else None,
                            fault.vendor if fault else None, self.clock.stamp())

    def _report_status(self) -> None:
        if self._loop is not None:
            self.statuses.report(self.status())

    def note(self, text: str) -> None:
        self.recent.append(f"{time.strftime('%H:%M:%S')} {text}")
        del self.recent[:-20]

    def wake_delivery(self) -> None:
        if self.deliverer is not None:
            self.deliverer.wake()

    def on_delivery(self, item: OutboxItem, result: DeliveryResult) -> None:
        """A queued message was confirmed (the deliverer calls this)."""
        if (result.backend_session_id is not None and self.session is not None
                and self.session.id == item.session_id):
            self.session.backend_session_id = result.backend_session_id  # RemoteStop names it
        self.note(f"delivered {item.kind.value} of session {item.session_id}")

    def backend_link(self, online: bool) -> None:
        if online != self.online:
            self.online = online
            self.note("backend online" if online else "backend offline")
            self.render()
            if online:
                self.wake_delivery()

    async def close(self) -> None:
        if self.hw.reader is not None:
            self.supervisor.forget("reader")
            self.hw.reader.stop()


def _mask(tag: str) -> str:
    """Id tags are personal data: log only enough to tell them apart (station.privacy)."""
    return privacy.tag(tag)
