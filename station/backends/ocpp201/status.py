"""OCPP 2.0.1 connector status, availability of the station, its EVSE and its connector, reservation ends.

Status (G01): StatusNotification for connector 1 of EVSE 1 whenever its
ConnectorStatus changes (the core's states mapped: Available; Preparing,
Charging, SuspendedEV, SuspendedEVSE and Finishing are Occupied; Reserved;
Unavailable; Faulted). After every BootNotification Accepted the status is
sent (B01.FR.05); after a reconnection without a reboot it is sent when the
station was offline longer than OCPPCommCtrlr.OfflineThreshold, else only if
it changed meanwhile (B04.FR.01/02). While a suspended transaction waits for
its EV to come back (StopTxOnEVSideDisconnect false, E10) the connector is
reported Available, as Part 6 TC_E_26_CS has it; Occupied again when the EV is
back.

Availability (G03, G04): ChangeAvailability for the station (no evse), the
EVSE (evse.id 1) or the connector (evse.id 1, connectorId 1). Each level has
its own operative flag, kept in the journal ("ocpp201.availability", G03.FR.08,
G04.FR.09); the connector is usable only while all three are operative, and
that is what the core is told (it keeps it over restarts itself, B01.FR.07).
An Inoperative during a transaction is Scheduled (G03.FR.05, G04.FR.06); a
request for the state a level is in already is Accepted (G03.FR.03, G04.FR.04).

Reservations (H04, H01.FR.16/17): the core keeps the reservation and ends it;
when the connector leaves Reserved without the reservation being used or
cancelled, the central system is told: Expired once its time has passed,
Removed when the EVSE became Unavailable or Faulted. The core holds a
reservation in memory only, so it is also kept in the journal
("ocpp201.reservation") until it ends, and made again after a restart while
its time has not passed (B11.FR.05).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from station.clock import parse_iso
from station.core.model import ConnectorStatus, StatusReport

if TYPE_CHECKING:
    from station.backends.ocpp.host import LinkApi
    from station.core.ports import StationControl

    from .devmodel import DeviceModel

log = logging.getLogger(__name__)

STORE_KEY = "ocpp201.availability"
RESERVATION_KEY = "ocpp201.reservation"  # the reservation the core holds: made again after a restart
LEVELS = ("station", "evse", "connector")
_STATUS = {ConnectorStatus.AVAILABLE: "Available", ConnectorStatus.RESERVED: "Reserved",
           ConnectorStatus.UNAVAILABLE: "Unavailable", ConnectorStatus.FAULTED: "Faulted"}
_SESSION = (ConnectorStatus.CHARGING, ConnectorStatus.SUSPENDED_EV, ConnectorStatus.SUSPENDED_EVSE)


def connector_status(status: ConnectorStatus) -> str:
    """The core's state as a 2.0.1 ConnectorStatusEnumType (every state of a session or a plug is Occupied)."""
    return _STATUS.get(status, "Occupied")


class StatusHost(Protocol):
    devmodel: DeviceModel

    @property
    def control(self) -> StationControl: ...

    @property
    def link(self) -> LinkApi: ...

    @property
    def store(self) -> Any: ...

    def now(self) -> datetime: ...

    def resolve(self, stamp: str | None) -> str: ...

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...


class StatusReporter:
    def __init__(self, host: StatusHost) -> None:
        self.b = host
        saved = host.store.get_json(STORE_KEY, None) or {}
        self.operative = {level: bool(saved.get(level, True)) for level in LEVELS}
        self._sent: str | None = None  # the ConnectorStatus last sent
        self._booted = False  # sent once since this process started
        self._offline_since: float | None = None
        self._reservation: tuple[int, datetime | None] | None = None
        self._cancelled: set[int] = set()
        self._lock = asyncio.Lock()
        self._away = False  # a suspended transaction's EV is gone (E10)
        self._restore_due = False  # a kept reservation waits for the clock (restore)

    def shown(self, status: ConnectorStatus) -> str:
        """The ConnectorStatus the central system is told for the core's state."""
        if self._away and status in _SESSION:
            return "Available"  # E10: the EV left, the transaction waits for it (TC_E_26_CS)
        return connector_status(status)

    def ev_away(self, away: bool) -> None:
        """The running transaction's EV left (suspended) or came back: the connector's status changes."""
        if away != self._away:
            self._away = away
            self.b.spawn(self.changed(self.b.control.status()), "ocpp-status")

    # ================================================================ status
    def payload(self, report: StatusReport) -> dict[str, Any]:
        return {"timestamp": self.b.resolve(report.timestamp), "connectorStatus": self.shown(report.status),
                "evseId": 1, "connectorId": 1}

    async def send_now(self, report: StatusReport) -> None:
        async with self._lock:  # one at a time, so the last one sent is the last one known
            payload = self.payload(report)
            if await self.b.link.notify("StatusNotification", payload) is not None:
                self._sent = payload["connectorStatus"]

    async def registered(self, offline_s: float | None) -> None:
        """After BootNotification Accepted: B01.FR.05 after a boot, B04 after a reconnection."""
        if self._restore_due:
            await self.restore()  # the central system's time is the station's now
        report = self.b.control.status()
        threshold = self.b.devmodel.int("OCPPCommCtrlr", "OfflineThreshold")
        if not self._booted or offline_s is None or offline_s > threshold:
            self._booted = True
            await self.send_now(report)
        elif self._sent != self.shown(report.status):
            await self.send_now(report)

    async def changed(self, report: StatusReport) -> None:
        """The core reports a state change of the connector (G01)."""
        self._reservation_ended(report.status)
        if not self.b.link.accepted:
            return  # the current state is sent after the next BootNotification
        if report.status not in _SESSION:
            self._away = False  # the session is over
        if self.shown(report.status) != self._sent:
            await self.send_now(report)

    # ================================================================ availability (G03, G04)
    def usable(self) -> bool:
        return all(self.operative.values())

    async def change(self, operational: str, evse: dict[str, Any] | None) -> str:
        """ChangeAvailability: Accepted, Scheduled or Rejected."""
        if evse is None:
            level = "station"
        elif evse.get("id") != 1 or evse.get("connectorId") not in (None, 1):
            return "Rejected"
        else:
            level = "evse" if evse.get("connectorId") is None else "connector"
        operative = operational == "Operative"
        before = dict(self.operative)
        self.operative[level] = operative
        self.b.store.put_json(STORE_KEY, self.operative)
        answer = await self.b.control.set_available(self.usable())
        if answer == "Rejected":
            self.operative = before
            self.b.store.put_json(STORE_KEY, self.operative)
            return "Rejected"
        if answer == "Scheduled" and before[level] == operative:
            return "Accepted"  # already in that state at this level (G03.FR.03, G04.FR.04)
        return answer

    # ================================================================ reservations (H04)
    def reserved(self, reservation_id: int, expiry: str, id_tag: str, group: str | None) -> None:
        try:
            when = parse_iso(expiry)
        except ValueError:
            when = None
        self._reservation = (reservation_id, when)
        self._keep({"id": reservation_id, "expiry": expiry, "idTag": id_tag, "group": group})

    def cancelled(self, reservation_id: int) -> None:
        self._cancelled.add(reservation_id)
        self._keep(None)

    def _keep(self, reservation: dict[str, Any] | None) -> None:
        try:
            self.b.store.put_json(RESERVATION_KEY, reservation)
        except Exception as exc:  # the reservation itself stands; only a restart would lose it
            log.error("reservation not journaled: %s", exc)

    async def restore(self) -> None:
        """B11.FR.05: after a restart the EVSE is Reserved again while the reservation's time has not passed.
        Its time is a wall-clock time: while the station's clock is not known yet (no NTP), it waits for the
        next BootNotification's time (`registered`, before the status is sent)."""
        kept = self.b.store.get_json(RESERVATION_KEY, None)
        self._restore_due = False
        if not kept:
            return
        if self.b.control.clock.now() is None:
            self._restore_due = True
            return
        try:
            live = parse_iso(kept["expiry"]) > self.b.now()
        except (KeyError, ValueError):
            live = False
        status = await self.b.control.reserve(kept["id"], kept["idTag"], kept.get("group"), kept["expiry"]) \
            if live else "Expired"
        if status == "Accepted":
            self._reservation = (kept["id"], parse_iso(kept["expiry"]))
            log.info("reservation %s made again after the restart", kept["id"])
        else:
            log.info("reservation %s not made again after the restart: %s", kept["id"], status)
            self._keep(None)

    def _reservation_ended(self, status: ConnectorStatus) -> None:
        if self._reservation is None or status is ConnectorStatus.RESERVED:
            return
        reservation_id, expiry = self._reservation
        self._reservation = None
        self._keep(None)
        if reservation_id in self._cancelled or status not in (
                ConnectorStatus.AVAILABLE, ConnectorStatus.UNAVAILABLE, ConnectorStatus.FAULTED):
            self._cancelled.discard(reservation_id)
            return  # cancelled, or used (a session began with the reserved card)
        if status is ConnectorStatus.AVAILABLE and (expiry is None or self.b.now() >= expiry):
            update = "Expired"  # H04.FR.01
        elif status is ConnectorStatus.AVAILABLE:
            return  # a card of the reservation started and the session is already over: used
        else:
            update = "Removed"  # H01.FR.16/17
        payload = {"reservationId": reservation_id, "reservationUpdateStatus": update}
        self.b.spawn(self.b.link.notify("ReservationStatusUpdate", payload), "ocpp-reservation-update")
