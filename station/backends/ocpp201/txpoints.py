"""OCPP 2.0.1 transactions: the core's transaction facts in, transaction points into the journal.

Theory of operation
-------------------
The connector machine announces the moments a 2.0.1 transaction may start or
end at (TxStartPoint, TxStopPoint), each as it happens: the EV connected or
left, the driver authorized or deauthorized, the power path closed or
opened, the energy began or stopped to flow (`Backend.transaction_fact`,
station/core/model.py TxFact). `fact()` is the one input: it journals the
*point* each fact makes for the transaction of the EVSE in the core's outbox
(`StationControl.queue_message`), in the order they happen, and the deliverer
later hands the points to transactions.py, where txevents.py turns each into
at most one TransactionEvent. The core's own START and STOP outbox items are
the PowerPathClosed and "session ended" points.

Which transaction a fact belongs to: the running session's, else the
authorized session that waits for its EV, else the one that outlives its
session (TxStopPoint EVConnected: the card ended the session, the EV is still
there), else the one the EV started before anyone was authorized (early.py,
TxStartPoint EVConnected). An authorization while the EV's transaction runs
continues it: the new session's first point names it ("continues"), and
transactions.py gives the session that transaction's state. (After a stop the
connector stays Finishing, taking no card, until the EV leaves: a transaction
that outlives its session is never continued by another.)

The chargingState of a running transaction (E01.FR.18) is the connector's
status: `charging_state()` notes its changes from the status reports (a pause
by a limit, SuspendedEVSE, has no fact of its own), the energy facts note
theirs at once; both go through one filter, so each change is journaled once.

StopTxOnEVSideDisconnect false (E10): the machine keeps the session when the
EV leaves (its `stop_on_ev_disconnect`, which the version sets: false only
when no stop point of TxStopPoint is met by the EV leaving). The transaction
is suspended: Updated EVCommunicationLost / Idle, the connector reported
Available, and after EVConnectionTimeOut without the EV it is deauthorized
(E10.FR.02, a fixed cable: the session stops with reason Timeout).

After a restart (`recover()`, once per process) every transaction that was
open and whose session is over ends with PowerLoss (E07.FR.06): the journal
closes the active session itself (its STOP), and this closes the rest (an
authorization that waited for its EV, an EV-connected transaction).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from station.core.model import ConnectorStatus, MessageKind, Session, StatusReport, TxFact
from station.errors import StorageError

from . import metering
from .txevents import ENDING, EV_ENDING, Point, TxEvents

if TYPE_CHECKING:
    from station.core.ports import StationControl
    from station.store import Store

    from .devmodel import DeviceModel
    from .early import EarlyTx
    from .status import StatusReporter

log = logging.getLogger(__name__)

OPEN_KEY = "ocpp201.open"  # transactionId -> session id: Started and not Ended yet (transactions.py)
_CHARGING = {ConnectorStatus.CHARGING: "Charging", ConnectorStatus.SUSPENDED_EV: "SuspendedEV",
             ConnectorStatus.SUSPENDED_EVSE: "SuspendedEVSE"}


class TxHost(Protocol):
    """What the transaction points need of the version."""

    devmodel: DeviceModel
    events: TxEvents
    early: EarlyTx
    status: StatusReporter

    @property
    def control(self) -> StationControl: ...

    @property
    def store(self) -> Store: ...

    def token_of(self, id_tag: str) -> dict[str, Any]: ...

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...

    def scaled(self, seconds: float) -> float: ...


def stops_when_ev_leaves(devmodel: DeviceModel) -> bool:
    """The session ends when the EV leaves: StopTxOnEVSideDisconnect, or a stop point the EV leaving meets
    (E06.FR.02/06/07: EVConnected, PowerPathClosed, EnergyTransfer); else it is suspended (E10)."""
    return devmodel.bool("TxCtrlr", "StopTxOnEVSideDisconnect") or bool(
        set(devmodel.list("TxCtrlr", "TxStopPoint")) & EV_ENDING)


class TxPoints:
    _FACTS: ClassVar[dict[TxFact, Callable[[TxPoints, Session | None], None]]]

    def __init__(self, host: TxHost) -> None:
        self.b = host
        self._plugged: bool | None = None  # the EV, as the facts said (None: no fact yet, or no plug sensor)
        self._waiting: int | None = None  # an authorized session waiting for its power path
        self._before_power: int | None = None  # ... whose transaction may have started already
        self._lingering: int | None = None  # a stopped session whose transaction waits for the EV to leave
        self._charging: tuple[int, str] | None = None  # (session id, chargingState) last journaled
        self._away: int | None = None  # the session suspended while its EV is gone (E10)
        self._recovered = False

    # ================================================================ the output: one point into the journal
    def point(self, point: Point, session_id: int, **facts: Any) -> None:
        """Journal a transaction point (it becomes a TransactionEvent, or nothing, when delivered)."""
        payload = {"point": point.value, "pid": uuid.uuid4().hex[:16], "at": self.b.control.clock.stamp(),
                   **self.b.events.config(), **facts}
        try:
            self.b.control.queue_message(session_id, MessageKind.TX_EVENT, payload)
        except StorageError as exc:  # the journal refused: logged; the core's own START/STOP still carry the bill
            log.error("transaction point %s of session %d not journaled: %s", point.value, session_id, exc)

    # ================================================================ the input: the core's facts
    def fact(self, fact: TxFact, session: Session | None) -> None:
        try:
            self._FACTS[fact](self, session)
        except StorageError as exc:
            log.error("transaction fact %s not journaled: %s", fact.value, exc)

    def _begin_value(self) -> dict[str, Any] | None:
        reading = self.b.control.last_reading()
        if reading is None or not self.b.devmodel.bool("SampledDataCtrlr", "Enabled"):
            return None
        return metering.meter_value(reading, self.b.devmodel.list("SampledDataCtrlr", "TxStartedMeasurands"),
                                    "Transaction.Begin", self.b.control.clock.stamp(), self.b.control.offered_current())

    def _ev_connected(self, session: Session | None) -> None:
        self._plugged = True
        if session is not None:  # the running session: back after it was suspended (E10)?
            if self._away == session.id:
                self._away = None
                self.b.status.ev_away(False)
                self.point(Point.EV_CONNECTED, session.id)
        elif self._waiting is not None:  # authorized first: the EV now (E01.FR.02 / E03)
            self.point(Point.EV_CONNECTED, self._waiting, meter=self._begin_value())
        elif (self._lingering is None and self.b.early.current() is None
              and "EVConnected" in self.b.devmodel.list("TxCtrlr", "TxStartPoint")
              and self.b.control.status().status is ConnectorStatus.PREPARING):
            self.b.early.open(self._begin_value())  # E01.FR.02, before a card

    def _ev_disconnected(self, session: Session | None) -> None:
        self._plugged = False
        if session is not None:
            if not stops_when_ev_leaves(self.b.devmodel):  # E10.FR.01: suspended, not ended
                self._away = session.id
                self.point(Point.EV_DISCONNECTED, session.id, suspend=True)
                self.b.status.ev_away(True)
                self.b.spawn(self._away_timeout(session.id), "ocpp-ev-connection-timeout")
            return  # else the session stops (EVDisconnected): its STOP ends the transaction
        if self._lingering is not None:  # E06.FR.02: stopped by the card before, now the EV left
            self.point(Point.EV_DISCONNECTED, self._lingering)
            self._lingering = None
        elif (early := self.b.early.current()) is not None:
            self.b.early.end(early, "EVCommunicationLost", "EVDisconnected")  # never authorized
        elif self._before_power is not None:  # authorized, never charged (e.g. refused a start), the EV left
            self.point(Point.EV_DISCONNECTED, self._before_power, over=True)
            self._before_power = None

    def _authorized(self, session: Session | None) -> None:
        if session is None:
            return
        facts: dict[str, Any] = {}
        early = self.b.early.current()
        if early is not None:  # the EV started it: this session continues it
            self.b.early.tie(early, session.id)
            facts["continues"] = {"early": early["id"]}
        self.point(Point.AUTHORIZED, session.id, id_token=self.b.token_of(session.id_tag), meter=self._begin_value(),
                   plugged=self._plugged, **facts)
        self._waiting = session.id
        if facts or "Authorized" in self.b.devmodel.list("TxCtrlr", "TxStartPoint"):
            self._before_power = session.id

    def _deauthorized(self, session: Session | None) -> None:
        if session is None:
            return
        if session.state == "authorizing":  # an authorization ended before its power path (E03.FR.05)
            if self._before_power == session.id:
                try:
                    reason = self.b.store.session(session.id).stop_reason
                except StorageError:
                    reason = None
                self.point(Point.CANCELLED, session.id, reason=reason or "ConnectionTimeout")
            self._waiting = self._before_power = None
        elif not set(self.b.devmodel.list("TxCtrlr", "TxStopPoint")) & ENDING:
            self._lingering = session.id  # EVConnected only: the transaction outlives the session (E06.FR.02)

    def _power_path_closed(self, session: Session | None) -> None:
        if session is not None and self._waiting in (session.id, None):
            self._waiting = self._before_power = None  # the START is the point; the STOP will end it

    def _power_path_opened(self, session: Session | None) -> None:
        return None  # a stop's STOP, or a pause (its chargingState comes with the status)

    def _energy_started(self, session: Session | None) -> None:
        if session is not None and session.state == "active":
            self._charging_point(session, "Charging")  # E01.FR.06 (start point EnergyTransfer), E01.FR.18

    def _energy_stopped(self, session: Session | None) -> None:
        current = self.b.control.current_session()
        if session is None or current is None or current.id != session.id:
            return  # the session's stop: its STOP says it
        state = _CHARGING.get(self.b.control.status().status)
        if state is None:
            return
        self._charging_point(session, state)
        if (state == "SuspendedEV" and self._away is None
                and "EnergyTransfer" in self.b.devmodel.list("TxCtrlr", "TxStopPoint")):
            # E06.FR.07: the energy transfer stopped, and that ends the transaction here
            self.b.spawn(self.b.control.stop_session("StoppedByEV"), "ocpp-energy-transfer-stop")

    # ================================================================ chargingState from the status
    def charging_state(self, report: StatusReport) -> None:
        """A status report of the connector: the running transaction's chargingState, when it changed."""
        session = self.b.control.current_session()
        state = _CHARGING.get(report.status)
        if session is not None and session.state == "active" and state is not None:
            try:
                self._charging_point(session, state)
            except StorageError as exc:
                log.error("chargingState not journaled: %s", exc)

    def _charging_point(self, session: Session, state: str) -> None:
        if self._charging != (session.id, state):
            self._charging = (session.id, state)
            self.point(Point.ENERGY_TRANSFER, session.id, state=state)

    # ================================================================ E10: the EV gone, the transaction kept
    async def _away_timeout(self, session_id: int) -> None:
        """E10.FR.02 (a fixed cable): not back within EVConnectionTimeOut: deauthorized, the session ends."""
        await asyncio.sleep(self.b.scaled(self.b.devmodel.int("TxCtrlr", "EVConnectionTimeOut")))
        current = self.b.control.current_session()
        if self._away == session_id and current is not None and current.id == session_id:
            log.info("session %d: the EV did not come back within EVConnectionTimeOut; ending it", session_id)
            self._away = None
            self.b.status.ev_away(False)
            await self.b.control.stop_session("Timeout")

    def away(self) -> bool:
        return self._away is not None

    # ================================================================ after a restart
    def recover(self) -> None:
        """Once per process: what was open and whose session is over ends with PowerLoss (E07.FR.06)."""
        if self._recovered:
            return
        self._recovered = True
        store = self.b.store
        try:
            candidates = set(self.b.early.recover())
            candidates |= {int(i) for i in (store.get_json(OPEN_KEY, {}) or {}).values()}
            pending = [i for i in store.messages() if i.kind is MessageKind.TX_EVENT]
            candidates |= {i.session_id for i in pending}
            lost = {i.session_id for i in pending if i.payload.get("point") == Point.POWER_LOSS.value}
            for session_id in sorted(candidates - lost):
                session = store.find_session(session_id)
                if session is not None and session.state != "active":
                    self.point(Point.POWER_LOSS, session_id)
        except StorageError as exc:
            log.error("transactions open before the restart not closed: %s", exc)


TxPoints._FACTS = {
    TxFact.EV_CONNECTED: TxPoints._ev_connected, TxFact.EV_DISCONNECTED: TxPoints._ev_disconnected,
    TxFact.AUTHORIZED: TxPoints._authorized, TxFact.DEAUTHORIZED: TxPoints._deauthorized,
    TxFact.POWER_PATH_CLOSED: TxPoints._power_path_closed, TxFact.POWER_PATH_OPENED: TxPoints._power_path_opened,
    TxFact.ENERGY_TRANSFER_STARTED: TxPoints._energy_started, TxFact.ENERGY_TRANSFER_STOPPED: TxPoints._energy_stopped,
}
