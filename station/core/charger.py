"""The charger: the model behind the state machine in states.py.

It owns one connector's life: taps, authorization, the session journal, the
contactor, the meter samples, faults, and what the LCD and LEDs show. It
talks to ports (station.core.ports), the store and a backend, never to a
hardware or protocol library.

Ordering rules that make "nothing lost" true:
* a tap is journaled (state 'authorizing') before the backend is asked;
* a session is journaled 'active' with its START queued before the
  contactor closes;
* at the end the contactor opens first (safety), then the meter is read
  (exact, since no more energy flows), then the stop and its STOP message
  are journaled in one transaction, and only then shown and delivered.

All methods run on the asyncio loop; the RFID worker thread only posts
taps into `self._events`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Coroutine
from typing import Any

from transitions import Machine

from station import privacy
from station.clock import Clock
from station.config import Config
from station.core import messages
from station.core.auth import OfflinePolicy
from station.core.meterguard import MeterGuard
from station.core.model import AuthResult, AuthStatus, DeliveryResult, Fault, MeterReading, OutboxItem, Session, StatusReport
from station.core.ports import Backend, Hardware, LedPattern
from station.core.states import IN_SESSION, TRANSITIONS, State
from station.core.tags import format_uid, normalize_tag
from station.errors import BackendOffline, MeterError, StorageError
from station.store import Store
from station.supervisor import Supervisor

log = logging.getLogger(__name__)

INPUT_POLL_S = 0.05  # IEC 61851-1 wants power off within 100 ms of the EV asking
AUTH_TIMEOUT_S = 15.0
RESET_DRAIN_S = 10.0  # a Reset waits this long for the session's stop to be delivered

LED_BY_STATE = {
    State.AVAILABLE: LedPattern.AVAILABLE, State.PREPARING: LedPattern.BUSY, State.CHARGING: LedPattern.CHARGING,
    State.SUSPENDED_EV: LedPattern.SUSPENDED, State.SUSPENDED_EVSE: LedPattern.SUSPENDED,
    State.FINISHING: LedPattern.BUSY, State.RESERVED: LedPattern.UNAVAILABLE,
    State.UNAVAILABLE: LedPattern.UNAVAILABLE, State.FAULTED: LedPattern.FAULT,
}


class Charger:
    """Implements station.core.ports.StationControl."""

    def __init__(self, config: Config, hardware: Hardware, store: Store, backend: Backend, clock: Clock,
                 supervisor: Supervisor | None = None) -> None:
        self.supervisor = supervisor or Supervisor()
        self.config = config
        self.name = config.station.name
        self.connector_id = config.station.connector_id
        self.hw = hardware
        self.store = store
        self.backend = backend
        self.clock = clock
        self.lang = config.station.language
        c = config.charging
        self.settings = {
            "connection_timeout_s": float(c.connection_timeout_s),
            "stop_on_ev_disconnect": True,
            "meter_interval_s": float(c.meter_interval_s),
        }
        self.guard = MeterGuard(config.meter.max_power_w or hardware.meter.max_power_w, config.meter.max_failures)
        self.policy = OfflinePolicy(config.backend.offline_policy, config.backend.auth_cache_ttl_s,
                                    dict(config.backend.local.tags), store)
        self.machine = Machine(model=self, states=State, transitions=TRANSITIONS, initial=State.AVAILABLE,
                               auto_transitions=False, after_state_change="_after_state_change")
        self.session: Session | None = None
        self.reading: MeterReading | None = None
        self.faults: dict[str, Fault] = {}  # by source: meter, reader, contactor, storage
        self.reservation: dict | None = None
        self.limit_w: float | None = None
        self.online = False
        self.exit_request: str | None = None  # "soft" / "hard" reset asked by a backend
        self.exit_event = asyncio.Event()
        self.deliverer = None  # set by the daemon
        self._events: asyncio.Queue = asyncio.Queue()
        self._busy = False  # authorizing, starting or stopping
        self._pending: tuple[Session, AuthResult] | None = None  # accepted, waiting for the plug
        self._prep_deadline: float | None = None
        self._notice: tuple[str, list[str], float] | None = None
        self._ev = hardware.inputs.ev_connected()
        self._stop_btn = hardware.inputs.stop_pressed()
        self._scheduled_unavailable = False
        self._session_drew = False
        self._session_mono = 0.0
        self._last_journal = 0.0
        self._finishing_until: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.tasks: list[asyncio.Task] = []
        self.recent: list[str] = []  # recent notable events for the terminal view
        self.taps = 0  # taps handled (the simulator waits on it)
        self._statuses: asyncio.Queue[StatusReport] = asyncio.Queue()
        self._last_report: tuple = ()

    # ------------------------------------------------------------------ conditions for the table
    def ev_plugged(self) -> bool:
        return bool(self._ev)

    def reserved(self) -> bool:
        return self.reservation is not None

    @property
    def has_ev_input(self) -> bool:
        return self._ev is not None

    # ------------------------------------------------------------------ start-up
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            self.store.check_writable()
        except StorageError as exc:
            self._set_fault("storage", "OtherError", str(exc), vendor="Storage")
        await self.close_leftovers()
        if self.store_get("core.available", True) is False and self.state is not State.FAULTED:
            self.disable()
        if self.hw.reader is not None:
            self.hw.reader.start(self._tap_from_thread, self._reader_fault_from_thread)
        self.tasks = [asyncio.create_task(coro, name=name) for name, coro in (
            ("events", self._event_loop()), ("meter", self._meter_loop()), ("inputs", self._input_loop()),
            ("ticker", self._ticker()), ("status", self._status_loop()),
        )]
        self._after_state_change()

    def store_get(self, key: str, default):
        try:
            return self.store.get_json(key, default)
        except StorageError:
            return default

    async def close_leftovers(self) -> None:
        """Close what a power cut left open: stop reason PowerLoss, stop reading read now."""
        try:
            leftovers = self.store.sessions(("active", "authorizing"))
        except StorageError as exc:
            log.error("cannot read the journal at start: %s", exc)
            return
        if not leftovers:
            return
        reading = await self._fresh_reading(tries=3)
        for s in leftovers:
            if s.state == "authorizing":
                self.store.finish_authorization(s.id, "aborted", "PowerLoss")
                continue
            if reading is not None:
                wh, phases, estimated = reading.energy_wh, reading.energy_phase_wh, False
            else:
                wh, phases, estimated = s.extra.get("last_wh") or s.meter_start_wh, (), True
            if wh < s.meter_start_wh:  # never bill negative energy: a replaced meter, say
                log.error("session %d: meter %d Wh is below its start %d Wh; stopping at start", s.id, wh, s.meter_start_wh)
                wh, estimated = s.meter_start_wh, True
            self.store.stop(s.id, wh, self.clock.stamp(), "PowerLoss", phases, estimated, {"reason": "PowerLoss"})
            log.warning("session %d of %s closed after power loss at %d Wh%s", s.id, _mask(s.id_tag), wh,
                        " (last stored reading)" if estimated else "")
            self._note(f"session {s.id} closed: PowerLoss")
        self._wake_delivery()

    # ------------------------------------------------------------------ thread bridges
    def _tap_from_thread(self, uid: bytes) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._events.put_nowait, ("tap", uid))

    def _reader_fault_from_thread(self, text: str | None) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._events.put_nowait, ("reader", text))

    def tap_tag(self, id_tag: str) -> None:
        """A tap by id tag (scenarios with UIDs no ISO 14443 card has)."""
        self._events.put_nowait(("tag", id_tag))

    # ------------------------------------------------------------------ the event loop
    async def _event_loop(self) -> None:
        while True:
            kind, value = await self._events.get()
            try:
                if kind == "tap":
                    await self._on_tag(self._format(value))
                elif kind == "tag":
                    await self._on_tag(value)
                elif kind == "reader":
                    self._on_reader_fault(value)
            except Exception:
                log.exception("handling %s failed", kind)

    def _format(self, uid: bytes) -> str:
        r = self.config.rfid
        return format_uid(uid, r.uid_case, r.uid_separator, r.uid_byte_order)

    async def _on_tag(self, tag: str) -> None:
        log.info("tap %s in %s", _mask(tag), self.state.value)
        self._note(f"tap {tag}")
        try:
            await self._handle_tag(tag)
        finally:
            self.taps += 1

    async def _handle_tag(self, tag: str) -> None:
        if self._busy:
            return
        if self.state in IN_SESSION:
            assert self.session is not None
            if await self._may_stop(tag):
                await self._stop("Local", id_tag=tag)
            else:
                self._show_notice("other_card")
            return
        if self._pending is not None:
            session, _ = self._pending
            if normalize_tag(tag) == normalize_tag(session.id_tag):
                self._cancel_pending("cancelled")
            return
        if self.state in (State.UNAVAILABLE, State.FAULTED):
            self._show_notice("unavailable" if self.state is State.UNAVAILABLE else "faulted")
            return
        if self.state is State.FINISHING:
            return
        if self.state is State.RESERVED and not await self._matches_reservation(tag):
            self._show_notice("reserved")
            return
        await self._authorize(tag)

    async def _may_stop(self, tag: str) -> bool:
        s = self.session
        if normalize_tag(tag) == normalize_tag(s.id_tag):
            return True
        if s.parent_id:
            parent = await self.backend.parent_of(tag)
            return parent is not None and normalize_tag(parent) == normalize_tag(s.parent_id)
        return False

    async def _matches_reservation(self, tag: str) -> bool:
        r = self.reservation
        if normalize_tag(tag) == normalize_tag(r["id_tag"]):
            return True
        if r.get("parent_id"):
            parent = await self.backend.parent_of(tag)
            return parent is not None and normalize_tag(parent) == normalize_tag(r["parent_id"])
        return False

    # ------------------------------------------------------------------ authorization and start
    async def _authorize(self, tag: str, remote: bool = False) -> None:
        self._busy = True
        try:
            self.tap()  # -> Preparing
            self._render()
            reading = self._idle_reading() or await self._fresh_reading(full=False)
            if reading is None:
                self._refuse(None, "meter_fault")
                return
            try:
                session = self.store.create_session(uuid.uuid4().hex, self.connector_id, tag, reading.energy_wh,
                                                    reading.energy_phase_wh,
                                                    self.reservation["id"] if self.reservation else None)
            except StorageError as exc:
                log.error("refusing %s: %s", _mask(tag), exc)
                self._set_fault("storage", "OtherError", str(exc), vendor="Storage", fault_state=False)
                self._refuse(None, "storage_refused")
                return
            if remote:
                result = AuthResult(AuthStatus.ACCEPTED)
            else:
                result = await self._ask_backend(tag, session)
            if not result.accepted:
                self._safe(self.store.finish_authorization, session.id, "refused",
                           f"{result.status.value}: {result.message}" if result.message else result.status.value)
                self._refuse(result, "refused")
                return
            if self.has_ev_input and not self._ev:
                self._pending = (session, result)
                self._prep_deadline = time.monotonic() + self.settings["connection_timeout_s"]
                self._render()
                return
            await self._begin(session, result)
        finally:
            self._busy = False
            self._render()

    async def _ask_backend(self, tag: str, session: Session) -> AuthResult:
        try:
            result = await asyncio.wait_for(self.backend.authorize(tag, session), AUTH_TIMEOUT_S)
        except (TimeoutError, BackendOffline) as exc:
            log.info("backend unreachable (%s): offline policy %s", exc or "timeout", self.policy.policy)
            return self.policy.decide(tag)
        except Exception:
            log.exception("backend failed to authorize; offline policy applies")
            return self.policy.decide(tag)
        self.policy.remember(tag, result)
        return result

    def _refuse(self, result: AuthResult | None, key: str) -> None:
        text = result.message if result is not None else None
        self._note(f"refused: {text or key}")
        self._show_notice(key, message=text)
        if self.state is State.PREPARING:
            self.abandon()

    def _cancel_pending(self, why: str) -> None:
        if self._pending is None:
            return
        session, _ = self._pending
        self._pending = None
        self._prep_deadline = None
        self._safe(self.store.finish_authorization, session.id, "aborted", why)
        if self.state is State.PREPARING:
            self.abandon()

    async def _begin(self, session: Session, result: AuthResult) -> None:
        self._pending = None
        self._prep_deadline = None
        reading = await self._fresh_reading()
        if reading is None:
            self._safe(self.store.finish_authorization, session.id, "aborted", "meter")
            self._refuse(None, "meter_fault")
            return
        started_at = self.clock.stamp()
        payload = {"id_tag": session.id_tag, "meter_start_wh": reading.energy_wh, "timestamp": started_at,
                   "reservation_id": session.reservation_id}
        try:
            session = self.store.activate(session.id, reading.energy_wh, started_at, reading.energy_phase_wh,
                                          result.backend_session_id, result.parent_id, result.offline, payload,
                                          start_delivered=result.backend_session_id is not None)
        except StorageError as exc:
            log.error("cannot journal the session start: %s", exc)
            self._set_fault("storage", "OtherError", str(exc), vendor="Storage", fault_state=False)
            self._refuse(None, "storage_refused")
            return
        self.session = session
        self.reservation = None
        self._session_drew = False
        self._session_mono = self._last_journal = time.monotonic()
        self._wake_delivery()
        if self.limit_w == 0:
            self.begin()
            self.pause()
        else:
            self.hw.contactor.set(True)
            self.begin()
            asyncio.get_running_loop().call_later(self.config.charging.contactor_settle_s, self._check_contactor, True)
        log.info("session %d started for %s at %d Wh", session.id, _mask(session.id_tag), reading.energy_wh)
        self._note(f"session {session.id} started at {reading.energy_wh} Wh")

    # ------------------------------------------------------------------ stop
    async def _stop(self, reason: str, id_tag: str | None = None) -> Session | None:
        """End the running session. Contactor first, then the exact reading, then the journal.

        `id_tag` is the card that asked for the stop, when a card did (it may be another card
        of the same group than the one that started: OCPP StopTransaction names it)."""
        session = self.session
        if session is None:
            return None
        self._busy = True
        try:
            self.hw.contactor.set(False)
            reading = await self._fresh_reading(tries=3)
            if reading is not None:
                wh, phases, estimated = reading.energy_wh, reading.energy_phase_wh, False
            else:
                last = self.guard.last
                wh = last.energy_wh if last is not None else session.meter_start_wh
                phases, estimated = (), True
            wh = max(wh, session.meter_start_wh)
            stopped_at = self.clock.stamp()
            while True:
                try:
                    payload = {"reason": reason} if id_tag is None else {"reason": reason, "id_tag": id_tag}
                    session = self.store.stop(session.id, wh, stopped_at, reason, phases, estimated, payload)
                    break
                except StorageError as exc:
                    # The contactor is open; the stop must still be recorded before anything else.
                    self._set_fault("storage", "OtherError", str(exc), vendor="Storage", fault_state=False)
                    log.critical("cannot journal the stop of session %d (%d Wh): %s; retrying", session.id, wh, exc)
                    await asyncio.sleep(2.0)
            self.session = None
            self.end()
            if any(source != "storage" for source in self.faults):
                self.fault()  # the session is closed; now the station shows why it cannot go on
            self._finishing_until = time.monotonic() + self.config.charging.finishing_s
            self._wake_delivery()
            log.info("session %d stopped (%s) at %d Wh: %d Wh", session.id, reason, wh, session.energy_wh)
            self._note(f"session {session.id} stopped ({reason}): {session.energy_wh} Wh")
            asyncio.get_running_loop().call_later(self.config.charging.contactor_settle_s, self._check_contactor, False)
            self._last_stopped = session
            return session
        finally:
            self._busy = False
            self._render()

    def _after_finishing(self) -> None:
        if self.state is not State.FINISHING:
            return
        if self.has_ev_input and self._ev:
            return  # until unplugged
        if self._scheduled_unavailable and self.may_disable():
            # Straight to Unavailable: an Available in between would be reported and be false.
            self._scheduled_unavailable = False
            self.reservation = None
            self.disable()
            return
        self.release()

    # ------------------------------------------------------------------ contactor check
    def _check_contactor(self, expected: bool) -> None:
        fb = self.hw.contactor.feedback()
        if fb is None or fb == expected or self.hw.contactor.closed != expected:
            if fb is not None and fb == expected and "contactor" in self.faults:
                self._clear_fault("contactor")
            return
        text = "contactor did not close" if expected else "contactor welded (closed after opening)"
        log.error("%s", text)
        self._set_fault("contactor", "OtherError", text, vendor="ContactorFeedback")
        if expected and self.session is not None:
            self.spawn(self._stop("Other"), "stop")

    # ------------------------------------------------------------------ meter
    async def _fresh_reading(self, tries: int = 2, full: bool = True) -> MeterReading | None:
        """Read the meter now. `full=False` asks only for energy and power (the model's core
        plan: one or two short requests, a third of the bus time of a full SDM630 read)."""
        for _ in range(tries):
            try:
                reading = await self.hw.meter.read(full)
            except MeterError as exc:
                self._meter_failed(exc)
                continue
            accepted = self.guard.accept(reading)
            if accepted is not None:
                self._meter_ok(accepted)
                return accepted
        return None

    def _idle_reading(self) -> MeterReading | None:
        """The last reading, when it is still the register's value: taken within the last
        sampling interval with the contactor open (no energy flows through an open contactor).
        Spares the tap a bus round trip; the session's start is read afresh anyway."""
        r = self.reading
        if r is None or self.hw.contactor.closed or "meter" in self.faults:
            return None
        if time.monotonic() - r.taken_at > 1.5 * self.settings["meter_interval_s"]:
            return None
        return r

    def _meter_failed(self, exc: Exception) -> None:
        if self.guard.failed(exc) and "meter" not in self.faults:
            log.error("meter fault: %s", exc)
            self._set_fault("meter", "PowerMeterFailure", str(exc))

    def _meter_ok(self, reading: MeterReading) -> None:
        self.reading = reading
        if "meter" in self.faults:
            self._clear_fault("meter")

    async def _meter_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings["meter_interval_s"])
            if self._busy:
                continue
            # Idle, energy and power are all anyone needs; in a session the backends want
            # voltages, currents and per-phase values (OCPP MeterValues), so read them all.
            reading = await self._fresh_reading(tries=1, full=self.session is not None)
            if reading is None or self.session is None or self._busy:
                continue
            before = self.state
            self._follow_power(reading)
            now = time.monotonic()
            # Every journal_interval_s, and at every state change (Charging <-> SuspendedEV): a car
            # that stopped drawing leaves its final reading, for a PowerLoss with a dead meter.
            if self.state is not before or now - self._last_journal >= self.config.charging.journal_interval_s:
                self._last_journal = now
                self._safe(self.store.record_meter, self.session.id, reading.energy_wh, self.clock.stamp())
            self._render()

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
                and time.monotonic() - self._session_mono > timeout):
            log.info("session %d: no power drawn for %.0f s; ending it", self.session.id, timeout)
            self._show_notice("no_power_timeout")
            self.spawn(self._stop("Other"), "stop")

    # ------------------------------------------------------------------ inputs and timers
    async def _input_loop(self) -> None:
        if self._ev is None and self._stop_btn is None:
            return
        while True:
            await asyncio.sleep(INPUT_POLL_S)
            ev = self.hw.inputs.ev_connected()
            btn = self.hw.inputs.stop_pressed()
            if ev != self._ev:
                self._ev = ev
                await self._on_plug(bool(ev))
            if btn and not self._stop_btn and self.state in IN_SESSION and not self._busy:
                await self._stop("Local")
            self._stop_btn = btn

    async def _on_plug(self, plugged: bool) -> None:
        self._note("plugged" if plugged else "unplugged")
        if plugged:
            if self._pending is not None and not self._busy:
                session, result = self._pending
                await self._begin(session, result)
            elif self.state is State.RESERVED:
                pass  # stays Reserved (OCPP 1.6 §5.13): only the reserved tag may start here
            elif self.may_plug():
                self.plug()
                self._prep_deadline = time.monotonic() + self.settings["connection_timeout_s"]
            return
        if self.state in IN_SESSION:
            if self.settings["stop_on_ev_disconnect"]:
                await self._stop("EVDisconnected")
            else:
                self.hw.contactor.set(False)
                if self.state is not State.SUSPENDED_EV and self.may_idle():
                    self.idle()
        elif self.state is State.PREPARING and not self._busy:
            self._cancel_pending("EVDisconnected")
            if self.state is State.PREPARING:
                self.abandon()
        elif self.state is State.FINISHING:
            self._after_finishing()

    async def _ticker(self) -> None:
        """Timers that need no precision: Preparing timeout, Finishing, notices, reservations."""
        while True:
            # Four times a second while something is due, once a second otherwise (idle CPU).
            due = (self._prep_deadline is not None or self._notice is not None or self.reservation is not None
                   or self.state is State.FINISHING)
            await asyncio.sleep(0.25 if due else 1.0)
            now = time.monotonic()
            if self._prep_deadline is not None and now > self._prep_deadline and self.state is State.PREPARING and not self._busy:
                self._prep_deadline = None
                self._cancel_pending("ConnectionTimeout")
                if self.state is State.PREPARING and self.may_abandon():
                    self.abandon()
            if self.state is State.FINISHING and self._finishing_until is not None and now > self._finishing_until:
                self._after_finishing()
            if self._notice is not None and now > self._notice[2]:
                self._notice = None
                self._render()
            if self.reservation is not None and now > self.reservation["expires_mono"]:
                log.info("reservation %s expired", self.reservation["id"])
                self._end_reservation()

    # ------------------------------------------------------------------ faults
    def _on_reader_fault(self, text: str | None) -> None:
        if text is None:
            self._clear_fault("reader")
        else:
            log.error("reader fault: %s", text)
            self._set_fault("reader", "ReaderFailure", text)

    def _set_fault(self, source: str, code: str, text: str, vendor: str | None = None, fault_state: bool = True) -> None:
        self.faults[source] = Fault(code, text, vendor)
        self._note(f"fault: {text}")
        if source == "meter" and self.session is not None and not self._busy:
            self.spawn(self._stop("Other"), "stop")
        elif fault_state and self.may_fault():
            self.fault()
        else:
            self._report_status()
            self._render()

    def _clear_fault(self, source: str) -> None:
        if self.faults.pop(source, None) is None:
            return
        self._note(f"fault cleared: {source}")
        if not any(source != "storage" for source in self.faults) and self.state is State.FAULTED:
            self.recover()
            if self.store_get("core.available", True) is False:
                self.disable()
        else:
            self._report_status()
            self._render()

    # ------------------------------------------------------------------ reporting
    def _after_state_change(self) -> None:
        if self.state is State.PREPARING and not self._busy and self._pending is None:
            self._prep_deadline = self._prep_deadline or time.monotonic() + self.settings["connection_timeout_s"]
        self.hw.leds.show(LED_BY_STATE[self.state])
        self._render()
        self._report_status()

    def status(self) -> StatusReport:
        fault = next(iter(self.faults.values()), None)
        return StatusReport(self.connector_id, self.state,
                            fault.code if fault else "NoError", fault.text[:50] if fault else None,
                            fault.vendor if fault else None, self.clock.stamp())

    def _report_status(self) -> None:
        if self._loop is None:
            return
        report = self.status()
        key = (report.status, report.error_code, report.info, report.vendor_error_code)
        if key != self._last_report:
            self._last_report = key
            self._statuses.put_nowait(report)

    async def _status_loop(self) -> None:
        """Status changes leave one at a time, in the order they happened."""
        while True:
            report = await self._statuses.get()
            try:
                await self.backend.send_status(report)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # best effort: the backend re-sends the current one on reconnect
                log.debug("status not sent: %s", exc)

    def _show_notice(self, key: str, message: str | None = None) -> None:
        lines = messages.screen(key, self.lang, self.hw.display.cols, self.hw.display.rows, message=message)
        self._notice = (key, lines, time.monotonic() + self.config.charging.message_s)
        if key in ("refused", "other_card", "storage_refused", "meter_fault"):
            self.hw.leds.show(LedPattern.REFUSED)
            asyncio.get_running_loop().call_later(self.config.charging.message_s,
                                                  lambda: self.hw.leds.show(LED_BY_STATE[self.state]))
        self._render()

    def screen_key(self) -> tuple[str, dict]:
        """Which screen to show now, and its fields."""
        s = self.state
        fields: dict = {"name": self.name, "offline": not self.online}
        if self.session is not None and self.reading is not None:
            fields["energy_wh"] = max(0, self.reading.energy_wh - self.session.meter_start_wh)
            fields["power_w"] = self.reading.power_w or 0.0
        if s is State.PREPARING:
            if self._busy:
                return "authorizing", fields
            return ("plug_in" if self._pending is not None else "tap_card"), fields
        if s is State.FINISHING:
            last = getattr(self, "_last_stopped", None)
            fields["energy_wh"] = last.energy_wh if last is not None else 0
            return "finishing", fields
        if s is State.FAULTED:
            fault = next(iter(self.faults.values()), None)
            fields["reason"] = fault.vendor or fault.code if fault else ""
            return "faulted", fields
        return {
            State.AVAILABLE: "available", State.CHARGING: "charging", State.SUSPENDED_EV: "suspended_ev",
            State.SUSPENDED_EVSE: "suspended_evse", State.RESERVED: "reserved", State.UNAVAILABLE: "unavailable",
        }[s], fields

    def _render(self) -> None:
        if self._notice is not None:
            lines = self._notice[1]
        else:
            key, fields = self.screen_key()
            lines = messages.screen(key, self.lang, self.hw.display.cols, self.hw.display.rows, **fields)
        self.hw.display.show(lines)

    def _note(self, text: str) -> None:
        self.recent.append(f"{time.strftime('%H:%M:%S')} {text}")
        del self.recent[:-20]

    def _wake_delivery(self) -> None:
        if self.deliverer is not None:
            self.deliverer.wake()

    def _safe(self, fn, *args) -> None:
        try:
            fn(*args)
        except StorageError as exc:
            log.error("%s", exc)

    def on_delivery(self, item: OutboxItem, result: DeliveryResult) -> None:
        """A queued message was confirmed (the deliverer calls this)."""
        if (result.backend_session_id is not None and self.session is not None
                and self.session.id == item.session_id):
            self.session.backend_session_id = result.backend_session_id  # RemoteStop names it
        self._note(f"delivered {item.kind.value} of session {item.session_id}")

    def wake_delivery(self) -> None:
        """A backend queued a message itself (e.g. OCPP meter values): deliver now."""
        self._wake_delivery()

    # ------------------------------------------------------------------ StationControl
    def current_session(self) -> Session | None:
        return self.session

    def last_reading(self) -> MeterReading | None:
        return self.reading

    def meter_measurands(self) -> frozenset[str]:
        return self.hw.meter.measurands

    @property
    def meter_model(self) -> str:
        return self.hw.meter.model

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str, *, critical: bool = False,
              deadline_s: float | None = None) -> asyncio.Task[Any]:
        return self.supervisor.spawn(coro, name, critical=critical, deadline_s=deadline_s)

    def beat(self, name: str) -> None:
        self.supervisor.beat(name)

    async def remote_start(self, id_tag: str, connector_id: int | None = None) -> bool:
        if connector_id not in (None, self.connector_id) or self._busy:
            return False
        if self.state not in (State.AVAILABLE, State.PREPARING, State.RESERVED) or self._pending is not None:
            return False
        if self.state is State.RESERVED and not await self._matches_reservation(id_tag):
            return False
        self.spawn(self._authorize(id_tag, remote=True), "remote-start")
        return True

    async def remote_stop(self, backend_session_id: str) -> bool:
        if self.session is None or str(self.session.backend_session_id) != str(backend_session_id):
            return False
        self.spawn(self._stop("Remote"), "remote-stop")
        return True

    async def stop_session(self, reason: str) -> bool:
        if self.session is None:
            return False
        await self._stop(reason)
        return True

    async def reset(self, hard: bool) -> bool:
        kind = "hard" if hard else "soft"
        log.warning("%s reset requested by the backend", kind)

        async def go() -> None:
            await asyncio.sleep(0.2)  # let the backend send its reply first
            if self.session is not None:
                await self._stop("HardReset" if hard else "SoftReset")
                # OCPP 1.6 §5.14: the StopTransaction goes out (and is answered) before the reboot
                # when the link is up; offline it waits in the journal as always.
                if self.online:
                    await self._drain(RESET_DRAIN_S)
            self.exit_request = kind
            self.exit_event.set()
        self.spawn(go(), "reset")
        return True

    async def _drain(self, timeout: float) -> bool:
        """Wait until the outbox is empty (everything delivered), at most `timeout` seconds."""
        deadline = self.clock.monotonic() + timeout
        while self.clock.monotonic() < deadline:
            try:
                if self.store.pending_messages() == 0:
                    return True
            except StorageError:
                return False
            self._wake_delivery()
            await asyncio.sleep(0.05)
        log.warning("outbox not drained within %.0f s; the rest is delivered after the restart", timeout)
        return False

    async def set_available(self, available: bool) -> str:
        self._safe(self.store.put_json, "core.available", available)
        if available:
            self._scheduled_unavailable = False
            if self.state is State.UNAVAILABLE:
                self.enable()
            return "Accepted"
        if self.state in IN_SESSION or self._busy or self._pending is not None:
            self._scheduled_unavailable = True
            return "Scheduled"
        if self.state is State.UNAVAILABLE:
            return "Accepted"
        if self.may_disable():
            self.reservation = None
            self.disable()
            return "Accepted"
        return "Rejected"

    async def unlock(self) -> str:
        """No connector lock on this hardware (a fixed cable): there is nothing to unlock, in a
        session or not, and a session goes on (OCPP 1.6 UnlockConnector: NotSupported)."""
        return "NotSupported"

    async def reserve(self, reservation_id: int, id_tag: str, parent_id: str | None, expiry: str) -> str:
        if self.state is State.FAULTED:
            return "Faulted"
        if self.state is State.UNAVAILABLE:
            return "Unavailable"
        if self.reservation is not None and self.reservation["id"] != reservation_id:
            return "Occupied"
        if self.state not in (State.AVAILABLE, State.RESERVED) or self._busy:
            return "Occupied"
        from station.clock import parse_iso
        now = self.clock.now()
        remaining = (parse_iso(expiry) - now).total_seconds() if now else 0.0
        if remaining <= 0:
            return "Rejected"
        self.reservation = {"id": reservation_id, "id_tag": id_tag, "parent_id": parent_id,
                            "expires_mono": time.monotonic() + remaining}
        if self.state is State.AVAILABLE:
            self.hold()
        return "Accepted"

    async def cancel_reservation(self, reservation_id: int) -> bool:
        if self.reservation is None or self.reservation["id"] != reservation_id:
            return False
        self._end_reservation()
        return True

    def _end_reservation(self) -> None:
        """A reservation expires or is cancelled: a car already plugged in now waits for a card."""
        self.reservation = None
        if self.state is State.RESERVED:
            self.unhold()
            if self._ev and self.may_plug():
                self.plug()

    def set_clock(self, utc: str) -> None:
        try:
            delta = self.clock.set(utc)
        except ValueError as exc:
            log.warning("%s", exc)
            return
        if abs(delta) > 2:
            log.info("clock corrected by %.1f s from the backend", delta)

    def tune(self, **values: object) -> None:
        for key, value in values.items():
            if key not in self.settings:
                raise KeyError(f"unknown setting {key}")
            self.settings[key] = type(self.settings[key])(value)

    def set_power_limit(self, watts: float | None) -> None:
        self.limit_w = watts
        if watts == 0 and self.state in (State.CHARGING, State.SUSPENDED_EV):
            self.hw.contactor.set(False)
            self.pause()
        elif watts != 0 and self.state is State.SUSPENDED_EVSE:
            self.hw.contactor.set(True)
            self._session_mono = time.monotonic()  # the car gets the full no-power grace again
            self.resume()

    def notice(self, text: str) -> None:
        log.info("backend: %s", text)
        self._note(f"backend: {text}")

    def backend_link(self, online: bool) -> None:
        if online != self.online:
            self.online = online
            self._note("backend online" if online else "backend offline")
            self._render()
            if online:
                self._wake_delivery()

    async def close(self) -> None:
        if self.hw.reader is not None:
            self.hw.reader.stop()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _mask(tag: str) -> str:
    """Id tags are personal data: log only enough to tell them apart (station.privacy)."""
    return privacy.tag(tag)

