"""What a backend may ask of the station: `StationControl` (station/core/ports.py), on a Charger.

Protocol handlers stay thin: a backend turns a request (OCPP RemoteStart,
MCSP's time, ...) into one call here and answers with what it returns. The
rules that decide (may a remote start happen now, is a reservation possible,
when does Unavailable take effect) live here, next to the charger whose state
they read, and nowhere in a backend.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from station.clock import Clock, parse_iso
from station.core import reservations
from station.core.charger import Charger
from station.core.model import MessageKind, MeterReading, Session, StatusReport
from station.core.states import IN_SESSION, State

log = logging.getLogger(__name__)

RESET_DRAIN_S = 10.0  # a Reset waits this long for the session's stop to be delivered (link up)


class Control:
    """Implements station.core.ports.StationControl for one charger."""

    def __init__(self, charger: Charger) -> None:
        self.charger = charger
        self.name: str = charger.name
        self.clock: Clock = charger.clock

    # ------------------------------------------------------------------ reading
    def status(self) -> StatusReport:
        return self.charger.status()

    def current_session(self) -> Session | None:
        return self.charger.session

    def last_reading(self) -> MeterReading | None:
        return self.charger.reading

    def meter_measurands(self) -> frozenset[str]:
        return self.charger.hw.meter.measurands

    @property
    def meter_model(self) -> str:
        return self.charger.hw.meter.model

    # ------------------------------------------------------------------ tasks
    def spawn(self, coro: Coroutine[Any, Any, Any], name: str, *, critical: bool = False,
              deadline_s: float | None = None) -> asyncio.Task[Any]:
        return self.charger.spawn(coro, name, critical=critical, deadline_s=deadline_s)

    def beat(self, name: str) -> None:
        self.charger.beat(name)

    # ------------------------------------------------------------------ sessions
    async def remote_start(self, id_tag: str, connector_id: int | None = None) -> bool:
        c = self.charger
        if connector_id not in (None, c.connector_id) or c.busy or c.pending:
            return False
        if c.state not in (State.AVAILABLE, State.PREPARING, State.RESERVED) or c.faults.blocking():
            return False
        if c.reservation is not None and not await c.reservation.admits(id_tag, c.backend.parent_of):
            return False
        c.spawn(c.authorize(id_tag, remote=True), "remote-start")
        return True

    async def remote_stop(self, backend_session_id: str) -> bool:
        c = self.charger
        if c.session is None or str(c.session.backend_session_id) != str(backend_session_id):
            return False
        c.spawn(c.stop("Remote"), "remote-stop")
        return True

    async def stop_session(self, reason: str) -> bool:
        if self.charger.session is None:
            return False
        await self.charger.stop(reason)
        return True

    async def unlock(self) -> str:
        """No connector lock on this hardware (a fixed cable): there is nothing to unlock, in a
        session or not, and a session goes on (OCPP 1.6 UnlockConnector: NotSupported)."""
        return "NotSupported"

    # ------------------------------------------------------------------ the station
    async def reset(self, hard: bool) -> bool:
        c = self.charger
        kind = "hard" if hard else "soft"
        log.warning("%s reset requested by the backend", kind)

        async def go() -> None:
            await asyncio.sleep(0.2)  # let the backend send its reply first
            if c.session is not None:
                await c.stop("HardReset" if hard else "SoftReset")
                # OCPP 1.6 §5.14: the StopTransaction goes out (and is answered) before the reboot
                # when the link is up; offline it waits in the journal as always.
                if c.online:
                    await self._drain(RESET_DRAIN_S)
            c.exit_request = kind
            c.exit_event.set()
        c.spawn(go(), "reset")
        return True

    async def _drain(self, timeout: float) -> bool:
        """Wait until the outbox is empty (everything delivered), at most `timeout` seconds."""
        c = self.charger
        deadline = c.clock.monotonic() + timeout
        while c.clock.monotonic() < deadline:
            pending = c.journal.pending()
            if pending is None or pending == 0:
                return pending == 0
            c.wake_delivery()
            await asyncio.sleep(0.05)
        log.warning("outbox not drained within %.0f s; the rest is delivered after the restart", timeout)
        return False

    async def set_available(self, available: bool) -> str:
        c = self.charger
        c.persist_available(available)
        if available:
            c.scheduled_unavailable = False
            if c.state is State.UNAVAILABLE:
                c.enable()
            return "Accepted"
        if c.state in IN_SESSION or c.busy or c.pending:
            c.scheduled_unavailable = True
            return "Scheduled"
        if c.state is State.UNAVAILABLE:
            return "Accepted"
        if c.may_disable():
            c.reservation = None
            c.disable()
            return "Accepted"
        return "Rejected"

    async def reserve(self, reservation_id: int, id_tag: str, parent_id: str | None, expiry: str) -> str:
        c = self.charger
        refusal = reservations.answer(c.state, c.busy, c.reservation, reservation_id)
        if refusal is not None:
            return refusal
        made = reservations.make(reservation_id, id_tag, parent_id, parse_iso(expiry), c.clock.now(),
                                 c.clock.monotonic())
        if made is None:
            return "Rejected"
        c.reservation = made
        if c.state is State.AVAILABLE:
            c.hold()
        return "Accepted"

    async def cancel_reservation(self, reservation_id: int) -> bool:
        c = self.charger
        if c.reservation is None or c.reservation.id != reservation_id:
            return False
        c.end_reservation()
        return True

    def set_clock(self, utc: str) -> None:
        try:
            delta = self.clock.set(utc)
        except ValueError as exc:
            log.warning("%s", exc)
            return
        if abs(delta) > 2:
            log.info("clock corrected by %.1f s from the backend", delta)

    def tune(self, **values: object) -> None:
        settings = self.charger.settings
        for key, value in values.items():
            if key not in settings:
                raise KeyError(f"unknown setting {key}")
            settings[key] = type(settings[key])(value)

    def set_power_limit(self, watts: float | None) -> None:
        c = self.charger
        c.limit_w = watts
        if watts == 0 and c.state in (State.CHARGING, State.SUSPENDED_EV):
            c.hw.contactor.set(False)
            c.pause()
        elif watts != 0 and c.state is State.SUSPENDED_EVSE:
            if not c.unplugged:
                c.hw.contactor.set(True)
            c.restart_no_power_grace()
            c.resume()

    def wake_delivery(self) -> None:
        """A backend queued a message itself (e.g. OCPP meter values): deliver now."""
        self.charger.wake_delivery()

    def queue_message(self, session_id: int, kind: MessageKind, payload: dict[str, Any]) -> None:
        """A backend's own transaction message, journaled in the outbox first, then delivered in order."""
        self.charger.journal.store.enqueue(kind, session_id, payload)
        self.charger.wake_delivery()

    def notice(self, text: str) -> None:
        log.info("backend: %s", text)
        self.charger.note(f"backend: {text}")

    def backend_link(self, online: bool) -> None:
        self.charger.backend_link(online)
