"""The poll loop: the EV input, the stop button, the contactor's auxiliary contact, the timers.

One loop, at the rate the moment calls for: every 50 ms while a session runs,
the contactor is closed, a command is settling or a car is being plugged in
(IEC 61851-1 wants power off within 100 ms when the EV asks); four times a
second while a timer is due; once a second when the station is idle with its
contactor open (idle CPU is a budget). A state change or a contactor command
kicks it at once, so a change is never a second old before it is looked at.

Each turn it reads the inputs and acts on the car side of the cycle (plugged
in, unplugged, plugged in again, the Preparing and Finishing timers), feeds
the contactor watch (faults.ContactorWatch) and turns its verdicts into
faults, and ends a session that a fault has made unsafe.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from station.core.faults import DROPPED_FAULT, NOT_CLOSED_FAULT, WELDED_FAULT, ContactorVerdict, ContactorWatch
from station.core.states import IN_SESSION, State

if TYPE_CHECKING:
    from station.core.charger import Charger

log = logging.getLogger(__name__)

FAST_S = 0.05
DUE_S = 0.25
IDLE_S = 1.0


class Poller:
    def __init__(self, charger: Charger, settle_s: float, recover_s: float) -> None:
        self.charger = charger
        inputs = charger.hw.inputs
        self.ev: bool | None = inputs.ev_connected()  # None: no EV-connected input wired
        self.stop_btn: bool | None = inputs.stop_pressed()
        self.watch = ContactorWatch(settle_s, recover_s)
        self._now = asyncio.Event()

    def kick(self) -> None:
        """Poll now (a state change or a contactor command: the next second is not soon enough)."""
        self._now.set()

    def interval(self) -> float:
        c = self.charger
        settling = c.hw.contactor.closed or self.watch.verdict is not ContactorVerdict.OK
        if settling or c.needs_fast_poll():
            return FAST_S
        if c.timer_due():
            return DUE_S
        return IDLE_S

    async def run(self) -> None:
        while True:
            await self.charger.supervisor.checkpoint("poll")
            self._now.clear()
            try:
                async with asyncio.timeout(self.interval()):
                    await self._now.wait()
            except TimeoutError:
                pass
            await self.read_inputs()
            self.watch_contactor()
            self.charger.end_session_on_fault()
            self.timers()

    async def read_inputs(self) -> None:
        inputs = self.charger.hw.inputs
        ev, btn = inputs.ev_connected(), inputs.stop_pressed()
        if ev != self.ev:
            self.ev = ev
            await self.on_plug(bool(ev))
        if btn and not self.stop_btn:
            await self.charger.on_stop_button()
        self.stop_btn = btn

    # ------------------------------------------------------------------ the car side
    async def on_plug(self, plugged: bool) -> None:
        c = self.charger
        c.note("plugged" if plugged else "unplugged")
        if plugged:
            if c.waiting is not None and not c.busy:
                session, result = c.waiting
                await c.begin_session(session, result)
            elif c.state in IN_SESSION and c.unplugged:
                self._replugged()
            elif c.state is State.RESERVED:
                pass  # stays Reserved (OCPP 1.6 §5.13): only the reserved tag may start here
            elif c.may_plug():
                c.plug()
                c.prep_deadline = c.clock.monotonic() + c.settings["connection_timeout_s"]
            return
        if c.state in IN_SESSION:
            if c.settings["stop_on_ev_disconnect"]:
                await c.stop("EVDisconnected")
            else:
                # StopTransactionOnEVSideDisconnect = false: the session goes on without power
                # until the car is back (OCPP 1.6: "energy transfer is allowed again").
                c.unplugged = True
                c.hw.contactor.set(False)
                if c.state is not State.SUSPENDED_EV and c.may_idle():
                    c.idle()
        elif c.state is State.PREPARING and not c.busy:
            c.cancel_waiting("EVDisconnected")
            if c.state is State.PREPARING:
                c.abandon()
        elif c.state is State.FINISHING:
            self.after_finishing()

    def _replugged(self) -> None:
        c = self.charger
        c.unplugged = False
        if c.state is State.SUSPENDED_EVSE or c.limit_w == 0:
            return  # the station's own pause goes on; resume() closes it
        c.hw.contactor.set(True)
        self.kick()
        c.restart_no_power_grace()  # the car gets the full no-power grace again
        log.info("session %d: car plugged in again; power on", c.session.id if c.session else -1)

    def after_finishing(self) -> None:
        """Finishing ends when the car is unplugged (or, without an EV input, after finishing_s)."""
        c = self.charger
        if c.state is not State.FINISHING:
            return
        if self.ev:
            return  # until unplugged
        if c.scheduled_unavailable and c.may_disable():
            # Straight to Unavailable: an Available in between would be reported and be false.
            c.scheduled_unavailable = False
            c.reservation = None
            c.disable()
            return
        c.release()

    def timers(self) -> None:
        """Timers that need no precision: Preparing timeout, Finishing, notices, reservations."""
        c = self.charger
        now = c.clock.monotonic()
        if c.prep_deadline is not None and now > c.prep_deadline and c.state is State.PREPARING and not c.busy:
            c.prep_deadline = None
            c.cancel_waiting("ConnectionTimeout")
            if c.state is State.PREPARING and c.may_abandon():
                c.abandon()
        if c.state is State.FINISHING and c.finishing_until is not None and now > c.finishing_until:
            self.after_finishing()
        if c.presenter.expire():
            c.render()
        if c.reservation is not None and c.reservation.expired(now):
            log.info("reservation %s expired", c.reservation.id)
            c.end_reservation()

    def watch_contactor(self) -> None:
        c = self.charger
        verdict = self.watch.observe(c.hw.contactor.closed, c.hw.contactor.feedback(), c.clock.monotonic())
        if verdict is ContactorVerdict.WELDED:
            log.critical("contactor welded: the auxiliary contact reads closed while commanded open")
            c.set_fault("contactor", WELDED_FAULT)
        elif verdict is ContactorVerdict.DROPPED:
            fault = DROPPED_FAULT if self.watch.followed else NOT_CLOSED_FAULT
            log.critical("%s", fault.text)
            c.set_fault("contactor", fault)
        elif verdict is ContactorVerdict.OK:
            log.warning("contactor: the auxiliary contact agrees again")
            c.clear_fault("contactor")

    async def check_at_start(self, settle_s: float) -> None:
        """The contactor is commanded open at start; a contact that says closed gets its settle
        time once, then the station starts Faulted (no session may start on a welded contactor)."""
        contactor = self.charger.hw.contactor
        self.watch_contactor()
        if contactor.feedback() not in (None, contactor.closed):
            await asyncio.sleep(settle_s)
            self.watch_contactor()
