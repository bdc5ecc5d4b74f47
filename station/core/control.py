"""What a backend may ask of the station: `StationControl` (station/core/ports.py), on a Charger.

Protocol handlers stay thin, and so does this: each request becomes one
event for the connector machine (station/core/connector.py), which decides
(may a remote start happen now, is a reservation possible, when does
Unavailable take effect) and replies; the answer goes back to the backend.
Nothing here reads or changes the connector's state itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from station.clock import Clock, parse_iso
from station.core import events as ev
from station.core.charger import Charger
from station.core.model import MessageKind, MeterReading, Session, StatusReport

log = logging.getLogger(__name__)

REPLY_FIRST_S = 0.2  # a reset waits this long: the backend's reply leaves first


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

    def offered_current(self) -> float | None:
        if self.charger.pilot is None:
            return None
        return self.charger.offered_a or 0.0

    @property
    def meter_model(self) -> str:
        return self.charger.hw.meter.model

    # ------------------------------------------------------------------ tasks
    def spawn(self, coro: Coroutine[Any, Any, Any], name: str, *, critical: bool = False,
              deadline_s: float | None = None) -> asyncio.Task[Any]:
        return self.charger.spawn(coro, name, critical=critical, deadline_s=deadline_s)

    def beat(self, name: str) -> None:
        self.charger.supervisor.beat(name)

    # ------------------------------------------------------------------ sessions
    async def remote_start(self, id_tag: str, connector_id: int | None = None) -> bool:
        return bool(await self.charger.submit(ev.RemoteStart(id_tag, connector_id)))

    async def remote_stop(self, backend_session_id: str) -> bool:
        return bool(await self.charger.submit(ev.RemoteStop(str(backend_session_id))))

    async def stop_session(self, reason: str) -> bool:
        stopping = bool(await self.charger.submit(ev.StopRequested(reason)))
        await self.charger.until_idle()
        return stopping

    async def unlock(self) -> str:
        """No connector lock on this hardware (a fixed cable): there is nothing to unlock, in a
        session or not, and a session goes on (OCPP 1.6 UnlockConnector: NotSupported)."""
        return "NotSupported"

    def queue_message(self, session_id: int, kind: MessageKind, payload: dict[str, Any]) -> None:
        self.charger.queue_message(session_id, kind, payload)

    def resend_held(self, session_id: int) -> int:
        return self.charger.resend_held(session_id)

    # ------------------------------------------------------------------ the station
    async def reset(self, hard: bool) -> bool:
        async def go() -> None:
            await asyncio.sleep(REPLY_FIRST_S)
            self.charger.post(ev.Reset(hard))
        self.charger.spawn(go(), "reset")
        return True

    async def set_available(self, available: bool) -> str:
        return str(await self.charger.submit(ev.SetAvailable(available)))

    async def reserve(self, reservation_id: int, id_tag: str, parent_id: str | None, expiry: str) -> str:
        return str(await self.charger.submit(ev.Reserve(reservation_id, id_tag, parent_id, parse_iso(expiry),
                                                       self.clock.now())))

    async def cancel_reservation(self, reservation_id: int) -> bool:
        return bool(await self.charger.submit(ev.CancelReservation(reservation_id)))

    def set_clock(self, utc: str, round_trip_s: float = 0.0) -> float:
        """The backend's time: the clock takes it unless the system clock is synchronized or the
        station's time already fits it (station/clock.py logs what it did)."""
        try:
            return self.clock.set(utc, round_trip_s=round_trip_s)
        except ValueError as exc:
            log.warning("%s", exc)
            return 0.0

    def tune(self, **values: object) -> None:
        self.charger.post(ev.Tune(dict(values)))

    def set_power_limit(self, watts: float | None) -> None:
        self.charger.post(ev.PowerLimit(watts))

    def set_current_limit(self, amps: float | None) -> None:
        self.charger.post(ev.CurrentLimit(amps))

    def notice(self, text: str) -> None:
        log.info("backend: %s", text)
        self.charger.note(f"backend: {text}")

    def backend_link(self, online: bool) -> None:
        self.charger.backend_link(online)
