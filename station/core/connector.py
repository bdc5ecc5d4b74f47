"""The connector machine: one connector's state and every decision about it, without I/O.

Rule 1 (h11's): everything that decides what the connector does lives here.
The machine owns the state of the charging cycle (states.TRANSITIONS, driven
by the `transitions` package), the running session, the card waiting for the
plug, the reservation, the limits, the faults, the timers and the link. It is
told what happened (`handle(event)`, station/core/events.py) and answers with
the actions to carry out, in order; it never waits, sleeps, reads or writes
anything itself. The shell (station/core/charger.py) feeds it and carries its
actions out, so the same decisions run on a Pi and in a test that posts
events one by one.

Ordering rules that make "nothing lost" true, as actions in sequence:
* a tap is journaled (JournalOpen, state 'authorizing') before the backend is
  asked (Authorize);
* a session is journaled 'active' with its START queued (JournalActivate)
  before the contactor closes (SetContactor(True));
* at the end the contactor opens first (SetContactor(False)), then the meter
  is read (ReadMeter(STOP): exact, nothing flows any more), then the stop and
  its STOP are journaled in one transaction (JournalStop), and only then is
  the session over (Finishing). What the driver sees follows what the station
  did: from the moment the contactor opens the LCD says the charge is over.
  A journal that cannot take the stop (full, read-only) does not hold the
  connector: the stop is kept in memory and written, with its own time and
  reason, when the journal can take it again; meanwhile new sessions are
  refused and the fault is shown and reported (docs/durability.md).

One operation runs at a time (`busy`: authorizing, starting or stopping);
what arrives meanwhile is remembered (the car, the limit) or ignored (a second
stop), never run alongside.

Time comes from the injected `monotonic` and `stamp` functions.
"""

from __future__ import annotations

import logging
from typing import Any

from station import privacy
from station.core import events as ev
from station.core import reservations, rules
from station.core.connector_state import Op
from station.core.events import Purpose, Step, TxFact
from station.core.faults import DROPPED_FAULT, NOT_CLOSED_FAULT, WELDED_FAULT, ContactorVerdict
from station.core.model import AuthResult, AuthStatus, Fault, Session
from station.core.offer import Offering
from station.core.rules import same_tag
from station.core.states import IN_SESSION, State

log = logging.getLogger(__name__)


class Connector(Offering):
    """One connector. `handle(event)` returns the actions to carry out, in order. The limits and
    the current offered to the car are decided in offer.py."""

    def _set_contactor(self, closed: bool) -> None:
        """Command the contactor; the current offered follows it: 0 before it opens (the pilot
        stops the car first), the car's current once it is closed."""
        if self._session is not None and closed != self._contactor:
            self._announce(TxFact.POWER_PATH_CLOSED if closed else TxFact.POWER_PATH_OPENED)
        self._contactor = closed
        if not closed:
            self._offer()
        self._emit(ev.SetContactor(closed))
        if closed:
            self._offer()

    def _settle(self) -> None:
        """Rules that hold after every event, whatever it was."""
        idle = self._op is None
        self._follow_car()  # Charging exactly while the car charges, whatever moved the state
        if self._session is not None and idle and any(s in self.faults for s in rules.SESSION_ENDING):
            self._stop("Other")  # a session cannot go on with a faulty meter or contactor
        elif self._exit is not None and idle:
            if self._session is not None:
                self._stop(self._exit[1])  # then, once it is journaled, the exit
            else:
                self._emit(ev.Exit(self._exit[0], drain=self._online))
                self._exit = None

    def _after_state_change(self) -> None:
        prev, self._prev_state = self._prev_state, self.state
        if self.state is State.PREPARING and self._op is None and self._waiting is None:
            self._prep_deadline = self._prep_deadline or self._now() + self.settings.connection_timeout_s
        if self.state is State.CHARGING and prev is not State.CHARGING:
            self._announce(TxFact.ENERGY_TRANSFER_STARTED)
        elif prev is State.CHARGING:
            self._announce(TxFact.ENERGY_TRANSFER_STOPPED, self._session or (self._op.session if self._op else None))
        self._emit(ev.ReportStatus(self.status()))

    def _on_started(self, e: ev.Started) -> None:
        self._car, self._available = e.car, e.available
        if e.storage is not None:
            self._storage_failed(e.storage)
        if not e.available and self.state is not State.FAULTED:
            self.disable()
        self._plugged_idle()  # a car already plugged in waits for a card
        self._apply_limit()
        self._emit(ev.ReportStatus(self.status()))

    # ------------------------------------------------------------------ taps: what a tap means now
    def _on_tapped(self, e: ev.Tapped) -> None:
        tag, looked_up = e.tag, e.looked_up
        if not looked_up:
            log.info("tap %s in %s", privacy.tag(tag), self.state.value)
            self._note(f"tap {tag}")
        if self._op is not None:
            return
        s, r = self._session, self._reservation
        if self.state in IN_SESSION and s is not None:  # the card that started, or one of its group, stops
            if s.parent_id and not same_tag(tag, s.id_tag) and not looked_up:
                self._emit(ev.LookupParent(tag))
            elif same_tag(tag, s.id_tag) or (s.parent_id and e.parent and same_tag(e.parent, s.parent_id)):
                self._stop("Local", id_tag=tag)
            else:
                self._notice("other_card")
        elif self._waiting is not None:  # accepted, waiting for the plug: the same card again cancels
            if self._waiting.session is not None and same_tag(tag, self._waiting.session.id_tag):
                self._cancel_waiting("cancelled")
        elif self.state is State.UNAVAILABLE:
            self._notice("unavailable")
        elif self.state is State.FAULTED:
            self._notice("faulted", reason=self.fault_reason())
        elif self.state is State.FINISHING:
            pass
        elif r is not None and r.needs_parent(tag) and not looked_up:
            self._emit(ev.LookupParent(tag))
        elif r is not None and not r.allows(tag, e.parent):
            self._notice("reserved")
        else:
            self._authorize(tag, remote=False)

    def _authorize(self, tag: str, remote: bool) -> None:
        self._op = Op("authorizing", tag=tag, remote=remote)
        self.tap()  # -> Preparing
        if self.faults.blocking():
            self._refuse(None, "faulted")
            return
        r = self._reading  # taken with the contactor open, recently: it is the register now
        if (r is not None and not self._contactor and "meter" not in self.faults
                and self._now() - r.taken_at <= 1.5 * self.settings.meter_interval_s):
            self._emit(ev.JournalOpen(tag, r, self._reservation.id if self._reservation else None))
        else:
            self._emit(ev.ReadMeter(Purpose.AUTHORIZE, tries=2, full=False))

    def _refuse(self, result: AuthResult | None, key: str) -> None:
        if result is not None:
            text = result.status.value + (f" ({result.reason})" if result.reason else "")
            self._note(f"refused: {result.message or text}")
            values: dict[str, Any] = {"message": result.message, "status": result.status.value}
            if key == "offline":
                values = {"cached": self.settings.offline_policy != "refuse"}
        else:
            self._note(f"refused: {key.replace('_', ' ')}")
            values = {"reason": self.fault_reason()} if key == "faulted" else {}
        self._notice(key, **values)
        if self.state is State.PREPARING:
            self.abandon()
        self._op = None

    def _cancel_waiting(self, why: str) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is None or waiting.session is None:
            return
        self._prep_deadline = None
        self._emit(ev.JournalEnd(waiting.session, "aborted", why))
        self._announce(TxFact.DEAUTHORIZED, waiting.session)  # the authorization ends unused (its reason: journaled)
        if self.state is State.PREPARING:
            self.abandon()

    def _on_authorized(self, e: ev.Authorized) -> None:
        if self._op is not None and self._op.kind == "authorizing" and self._op.session is not None:
            self._decide(self._op, e.result, from_backend=not e.result.offline)

    def _decide(self, op: Op, result: AuthResult, from_backend: bool) -> None:
        assert op.session is not None
        if not result.accepted:
            reason = result.status.value + (f": {result.message}" if result.message else "")
            reason += f" ({result.reason})" if result.reason else ""
            log.info("tap %s refused: %s", privacy.tag(op.tag), reason)
            self._emit(ev.JournalEnd(op.session, "refused", reason))
            self._refuse(result, "offline" if result.offline else "refused")
            return
        op.result, op.from_backend = result, from_backend
        self._announce(TxFact.AUTHORIZED, op.session)
        if self.settings.plug_sensor and not self.ev_plugged():
            self._waiting, self._op = op, None
            self._prep_deadline = self._now() + self.settings.connection_timeout_s
        else:
            self._begin(op)

    # ------------------------------------------------------------------ the session's start
    def _begin(self, op: Op) -> None:
        op.kind = "starting"
        self._op, self._waiting, self._prep_deadline = op, None, None
        if self.faults.blocking() and op.session is not None:  # e.g. welded while the car was plugged in
            self._emit(ev.JournalEnd(op.session, "aborted", "fault"))
            self._refuse(None, "faulted")
        else:
            self._emit(ev.ReadMeter(Purpose.BEGIN, tries=2, full=True))

    def _on_meter_read(self, e: ev.MeterRead) -> None:
        if e.reading is not None:
            self._reading = e.reading
        op = self._op
        if op is None or op.kind != _OP_OF[e.purpose]:
            return
        if e.purpose is Purpose.STOP:
            assert op.session is not None
            wh, phases, estimated = rules.stop_reading(e.reading, self._reading, op.session)
            self._emit(ev.JournalStop(op.session, wh, phases, estimated, op.reason, op.id_tag, self._stamp()))
        elif e.reading is None:
            if op.session is not None:
                self._emit(ev.JournalEnd(op.session, "aborted", "meter"))
            self._refuse(None, "meter_fault")
        elif e.purpose is Purpose.AUTHORIZE:
            self._emit(ev.JournalOpen(op.tag, e.reading, self._reservation.id if self._reservation else None))
        elif self.settings.plug_sensor and not self.ev_plugged() and op.session is not None:
            self._emit(ev.JournalEnd(op.session, "aborted", "EVDisconnected"))  # no power to an empty cable
            self._note("start cancelled: unplugged")
            if self.state is State.PREPARING:
                self.abandon()
            self._op = None
        elif op.session is not None and op.result is not None:
            delivered = self.settings.starts_session_in_authorize and op.from_backend  # START went with it
            self._emit(ev.JournalActivate(op.session, e.reading, op.result, start_delivered=delivered))

    def _on_journaled(self, e: ev.Journaled) -> None:
        if e.fault is not None:
            self._storage_failed(e.fault)
        elif "storage" in self.faults:  # evidence: the journal takes writes again
            log.warning("the journal takes writes again")
            self._clear_fault("storage")
        op = self._op
        if op is None or e.step is Step.PROBE or op.kind != _OP_OF_STEP[e.step]:
            return
        if e.session is None or (e.fault is not None and e.step is not Step.STOP):
            log.error("refusing %s: %s", privacy.tag(op.tag or "-"), e.fault.text if e.fault else "no session")
            self._refuse(None, "storage_refused")
        elif e.step is Step.OPEN:
            op.session = e.session
            if op.remote:
                self._decide(op, AuthResult(AuthStatus.ACCEPTED), from_backend=False)
            else:
                self._emit(ev.Authorize(op.tag, e.session))
        elif e.step is Step.ACTIVATE:
            self._started(e.session)
        else:
            self._stopped(e.session)

    def _started(self, session: Session) -> None:
        self._session, self._reservation = session, None
        self._drew = self._unplugged = False
        self._phases_seen = None  # this car's phases: the meter tells once it draws
        self._session_mono = self._last_journal = self._now()
        self._emit(ev.WakeDelivery())
        if self._paused():
            self.begin()
            self.pause()
        else:
            self._set_contactor(True)
            self.begin()
        self._journal_state, self._op = self.state, None
        self._apply_limit()
        self._follow_car()
        log.info("session %d started for %s at %d Wh", session.id, privacy.tag(session.id_tag), session.meter_start_wh)
        self._note(f"session {session.id} started at {session.meter_start_wh} Wh")

    # ------------------------------------------------------------------ the stop
    def _stop(self, reason: str, id_tag: str | None = None) -> bool:
        """End the running session: contactor first, then the exact reading, then the journal.

        `id_tag` is the card that asked, when a card did (it may be another card of the same group
        than the one that started: OCPP StopTransaction names it). One stop at a time."""
        if self._session is None or self._op is not None:
            return False
        self._op = Op("stopping", session=self._session, reason=reason, id_tag=id_tag)
        if reason in rules.DEAUTHORIZING:
            self._announce(TxFact.DEAUTHORIZED)
        self._set_contactor(False)
        self._emit(ev.ReadMeter(Purpose.STOP, tries=3, full=True))
        return True

    def _stopped(self, session: Session) -> None:
        """The stop is journaled (or kept in memory until the journal takes it): the session is over."""
        self._session = None
        self.end()
        if self.faults.blocking():
            self.fault()  # the session is closed; now the station shows why it cannot go on
        self._finishing_until = self._now() + self.settings.finishing_s
        self._emit(ev.WakeDelivery())
        log.info("session %d stopped (%s) at %s Wh: %s Wh", session.id, session.stop_reason, session.meter_stop_wh,
                 session.energy_wh)
        self._note(f"session {session.id} stopped ({session.stop_reason}): {session.energy_wh} Wh")
        self._last_stopped, self._op = session, None
        self._apply_limit()

    # ------------------------------------------------------------------ the meter
    def _on_meter_sampled(self, e: ev.MeterSampled) -> None:
        reading, s = e.reading, self._session
        if reading is not None:
            self._reading = reading
        if reading is None or s is None or self._op is not None:
            return
        self._note_phases(rules.phases_drawn(reading))
        now, timeout = self._now(), self.settings.no_power_timeout_s
        if (timeout and not self._drew and self.state is State.SUSPENDED_EV  # not while the station pauses it
                and reading.energy_wh == s.meter_start_wh and now - self._session_mono > timeout):
            log.info("session %d: no power drawn for %.0f s; ending it", s.id, timeout)
            self._notice("no_power_timeout")
            self._stop("Other")
        elif self.state is not self._journal_state or now - self._last_journal >= self.settings.journal_interval_s:
            # Every journal_interval_s, and at every state change (Charging <-> SuspendedEV): a car that
            # stopped drawing leaves its final reading, for a PowerLoss with a dead meter.
            self._last_journal, self._journal_state = now, self.state
            self._emit(ev.JournalSample(s, reading.energy_wh))

    # ------------------------------------------------------------------ the car
    def _on_car(self, e: ev.CarChanged) -> None:
        old, car = self._car, e.car
        self._car = car
        if car.error != old.error:
            self._fault_changed("car", Fault("OtherError", f"pilot state {car.value}", "PilotError") if car.error else None)
        if self.settings.plug_sensor and old.plugged != car.plugged and not (car.error or old.error):
            self._announce(TxFact.EV_CONNECTED if car.plugged else TxFact.EV_DISCONNECTED)
            self._note("plugged" if car.plugged else "unplugged")
            self._plugged() if car.plugged else self._unplugged_now()
        self._follow_car()

    def _plugged(self) -> None:
        if self._waiting is not None and self._op is None:
            self._begin(self._waiting)
        elif self.state in IN_SESSION and self._unplugged and self._op is None:
            self._unplugged = False
            if self.state is not State.SUSPENDED_EVSE and not self._paused():
                self._set_contactor(True)  # the station's own pause goes on; lifting the limit closes it
                self._session_mono = self._now()  # the car gets the full no-power grace again
                log.info("session %d: car plugged in again; power on", self._session.id if self._session else -1)
        elif self.state is State.RESERVED:
            pass  # stays Reserved (OCPP 1.6 §5.13): only the reserved tag may start here
        elif self.may_plug():
            self.plug()
            self._prep_deadline = self._now() + self.settings.connection_timeout_s

    def _plugged_idle(self) -> None:
        """Available with a car plugged in (at start, after a fault): Preparing, waiting for a card."""
        if self.state is State.AVAILABLE and self.ev_plugged() and self.may_plug():
            self.plug()

    def _unplugged_now(self) -> None:
        if self.state in IN_SESSION:
            if self.settings.stop_on_ev_disconnect:
                self._stop("EVDisconnected")
            elif self._op is None:
                # StopTransactionOnEVSideDisconnect = false: the session goes on without power until
                # the car is back (OCPP 1.6: "energy transfer is allowed again").
                self._unplugged = True
                self._set_contactor(False)
                if self.state is not State.SUSPENDED_EV and self.may_idle():
                    self.idle()
        elif self.state is State.PREPARING and self._op is None:
            self._cancel_waiting("EVDisconnected")
            if self.state is State.PREPARING:
                self.abandon()
        elif self.state is State.FINISHING:
            self._after_finishing()

    def _follow_car(self) -> None:
        """Charging while the car charges, SuspendedEV while it does not (never during an operation)."""
        if self._session is None or self._op is not None:
            return
        self._drew = self._drew or self._car.charging
        if self.state is State.SUSPENDED_EV and self._car.charging:
            self.draw()
        elif self.state is State.CHARGING and not self._car.charging:
            self.idle()

    def _on_stop_pressed(self, e: ev.StopPressed) -> None:
        if self.state in IN_SESSION:
            self._stop("Local")

    # ------------------------------------------------------------------ timers
    def _on_tick(self, e: ev.Tick) -> None:
        now = self._now()
        if (self._prep_deadline is not None and now > self._prep_deadline and self.state is State.PREPARING
                and self._op is None):
            self._prep_deadline = None
            self._cancel_waiting("ConnectionTimeout")
            if self.state is State.PREPARING and self.may_abandon():
                self.abandon()
        if self.state is State.FINISHING and self._finishing_until is not None and now > self._finishing_until:
            self._after_finishing()
        if self._reservation is not None and self._reservation.expired(now):
            log.info("reservation %s expired", self._reservation.id)
            self._end_reservation()
        if "storage" in self.faults and self._op is None and now >= self._probe_due:
            self._probe_due = now + rules.PROBE_S
            self._emit(ev.JournalProbe())

    def _after_finishing(self) -> None:
        """Finishing ends when the car is unplugged (or, without a plug sensor, after finishing_s)."""
        if self.state is not State.FINISHING or self.ev_plugged():
            return
        if self._scheduled_unavailable and self.may_disable():
            # Straight to Unavailable: an Available in between would be reported and be false.
            self._scheduled_unavailable, self._reservation = False, None
            self.disable()
        else:
            self.release()

    def _end_reservation(self) -> None:
        """A reservation expires or is cancelled: a car already plugged in now waits for a card."""
        self._reservation = None
        if self.state is State.RESERVED:
            self.unhold()
            if self.ev_plugged() and self.may_plug():
                self.plug()

    # ------------------------------------------------------------------ faults
    def _on_fault_changed(self, e: ev.FaultChanged) -> None:
        self._fault_changed(e.source, e.fault)

    def _fault_changed(self, source: str, fault: Fault | None) -> None:
        if fault is None:
            self._clear_fault(source)
            return
        if source == "reader":
            log.error("reader fault: %s", fault.text)
        self._set_fault(source, fault)

    def _on_contactor(self, e: ev.ContactorChecked) -> None:
        if e.verdict is ContactorVerdict.WELDED:
            log.critical("contactor welded: the auxiliary contact reads closed while commanded open")
            self._set_fault("contactor", WELDED_FAULT)
        elif e.verdict is ContactorVerdict.DROPPED:
            fault = DROPPED_FAULT if e.followed else NOT_CLOSED_FAULT
            log.critical("%s", fault.text)
            self._set_fault("contactor", fault)
        else:
            log.warning("contactor: the auxiliary contact agrees again")
            self._clear_fault("contactor")

    def _set_fault(self, source: str, fault: Fault) -> None:
        """Any fault but storage takes the connector to Faulted (a running session is ended first, by
        _settle); a storage fault only refuses new sessions. Journaled with the meter's register."""
        if not self.faults.set(source, fault):
            return
        self._note(f"fault: {fault.text}")
        self._emit(ev.JournalFault(source, fault, self._reading.energy_wh if self._reading else None))
        if source != "storage" and self._session is None and self.may_fault():
            self.fault()
        else:
            self._emit(ev.ReportStatus(self.status()))

    def _clear_fault(self, source: str) -> None:
        if not self.faults.clear(source):
            return
        self._note(f"fault cleared: {source}")
        self._emit(ev.JournalFault(source, None, self._reading.energy_wh if self._reading else None))
        if not self.faults.blocking() and self.state is State.FAULTED:
            self.recover()
            if not self._available:
                self.disable()
            self._plugged_idle()
        else:
            self._emit(ev.ReportStatus(self.status()))

    def _storage_failed(self, fault: Fault) -> None:
        self._probe_due = self._now() + rules.PROBE_S
        known = self.faults.get("storage")
        if known is None or known.vendor != fault.vendor:  # the same cause in other words is no news
            self._set_fault("storage", fault)

    # ------------------------------------------------------------------ the backend: link, deliveries, requests
    def _on_link(self, e: ev.BackendLink) -> None:
        if e.online != self._online:
            self._online = e.online
            self._note("backend online" if e.online else "backend offline")
            if e.online:
                self._emit(ev.WakeDelivery())

    def _on_delivered(self, e: ev.Delivered) -> None:
        bid, s = e.result.backend_session_id, self._session
        if bid is not None and s is not None and s.id == e.item.session_id:
            s.backend_session_id = bid  # RemoteStop names it
        self._note(f"delivered {e.item.kind.value} of session {e.item.session_id}")

    def _on_remote_start(self, e: ev.RemoteStart) -> None:
        ok = rules.remote_start_allowed(self.state, e.connector_id, self.settings.connector_id,
                                  self.busy or self.pending, bool(self.faults))  # a storage fault refuses too
        r = self._reservation
        if ok and r is not None and r.needs_parent(e.tag) and not e.looked_up:
            self._emit(ev.LookupParent(e.tag))
            return
        ok = ok and (r is None or r.allows(e.tag, e.parent))
        if ok:  # the connector is taken now; the start itself once the reply has left (Continue)
            self._op = Op("authorizing", tag=e.tag, remote=True)
            self._emit(ev.Continue())
        self._emit(ev.Reply(ok))

    def _on_continued(self, e: ev.Continued) -> None:
        op = self._op
        if op is not None and op.kind == "authorizing" and op.remote and op.session is None:
            self._op = None
            if self.may_tap():
                self._authorize(op.tag, remote=True)

    def _on_remote_stop(self, e: ev.RemoteStop) -> None:
        s = self._session
        self._emit(ev.Reply(s is not None and str(s.backend_session_id) == str(e.backend_session_id)
                            and self._stop("Remote")))

    def _on_stop_requested(self, e: ev.StopRequested) -> None:
        self._emit(ev.Reply(self._stop(e.reason)))

    def _on_reset(self, e: ev.Reset) -> None:
        kind = "hard" if e.hard else "soft"
        log.warning("%s reset requested by the backend", kind)
        self._exit = (kind, "HardReset" if e.hard else "SoftReset")  # _settle stops, then exits
        self._emit(ev.Reply(True))

    def _on_set_available(self, e: ev.SetAvailable) -> None:
        self._available = e.available
        self._emit(ev.Remember(rules.AVAILABLE_KEY, e.available))  # ChangeAvailability survives a restart
        answer = rules.availability(self.state, self.busy or self.pending, e.available)
        self._scheduled_unavailable = answer == "Scheduled"
        if e.available and self.state is State.UNAVAILABLE:
            self.enable()
        elif not e.available and answer == "Accepted" and self.state is not State.UNAVAILABLE:
            if self.may_disable():
                self._reservation = None
                self.disable()
            else:
                answer = "Rejected"
        self._emit(ev.Reply(answer))

    def _on_reserve(self, e: ev.Reserve) -> None:
        answer = reservations.answer(self.state, self.busy, self._reservation, e.reservation_id)
        made = None if answer else reservations.make(e.reservation_id, e.id_tag, e.parent_id, e.expiry, e.now,
                                                     self._now())
        if made is not None:
            self._reservation = made
            if self.state is State.AVAILABLE:
                self.hold()
        self._emit(ev.Reply(answer or ("Accepted" if made is not None else "Rejected")))

    def _on_cancel_reservation(self, e: ev.CancelReservation) -> None:
        ok = self._reservation is not None and self._reservation.id == e.reservation_id
        if ok:
            self._end_reservation()
        self._emit(ev.Reply(ok))

    def _on_tune(self, e: ev.Tune) -> None:
        for key, value in e.values.items():
            self.settings.tune(key, value)


_OP_OF = {Purpose.AUTHORIZE: "authorizing", Purpose.BEGIN: "starting", Purpose.STOP: "stopping"}
_OP_OF_STEP = {Step.OPEN: "authorizing", Step.ACTIVATE: "starting", Step.STOP: "stopping", Step.PROBE: ""}
Connector.HANDLERS = {
    ev.Started: "_on_started", ev.Tapped: "_on_tapped", ev.CarChanged: "_on_car", ev.StopPressed: "_on_stop_pressed",
    ev.ContactorChecked: "_on_contactor", ev.FaultChanged: "_on_fault_changed", ev.MeterSampled: "_on_meter_sampled",
    ev.MeterRead: "_on_meter_read", ev.Authorized: "_on_authorized", ev.Journaled: "_on_journaled",
    ev.Tick: "_on_tick", ev.Continued: "_on_continued", ev.BackendLink: "_on_link", ev.Delivered: "_on_delivered",
    ev.RemoteStart: "_on_remote_start", ev.RemoteStop: "_on_remote_stop", ev.StopRequested: "_on_stop_requested",
    ev.Reset: "_on_reset", ev.SetAvailable: "_on_set_available", ev.Reserve: "_on_reserve",
    ev.CancelReservation: "_on_cancel_reservation", ev.PowerLimit: "_on_power_limit",
    ev.CurrentLimit: "_on_current_limit", ev.CableLimit: "_on_cable", ev.Tune: "_on_tune",
}
