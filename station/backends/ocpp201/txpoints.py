"""OCPP 2.0.1 transactions: the transaction points in, TransactionEvents out. All the point logic is here.

Theory of operation
-------------------
A 2.0.1 transaction starts and ends at configured *points* (TxCtrlr.TxStartPoint
and TxStopPoint, E01 and E06): the driver authorized, the power path closed,
energy flowing, the EV connected or gone. The station journals each point of
a session in the core's outbox *as it happens* (`point()`, the one input);
the deliverer later hands the points to transactions.py in order, and
`event()` turns each into at most one TransactionEvent (Started, Updated or
Ended), given what was sent before for that transaction (`state`, kept on the
session in the journal). Deciding at delivery rather than at the point keeps
the journal simple and the messages exact: the outbox holds facts, and a
point delivered twice (a kill after the send) becomes the same message with
the same seqNo, because the message and the state are journaled together
before the send (transactions.py).

The core's own outbox items are points too: START is "authorized and power
path closed" (E01.FR.05), STOP is "authorization ended" with its reason. The
other points come from `point()`; until the core emits transaction points
itself (its new connector machine will, through one port method), the
version derives them from what the core gives today: `authorized()` from an
accepted authorization, `observe()` from the connector's status reports
(Charging / SuspendedEV / SuspendedEVSE for the energy transfer, Finishing to
Available for the EV leaving, Preparing to Available for an authorization the
EV never came to). Wiring the new machine means calling `point()` from that
port method and deleting `authorized()` and `observe()`.

Start points supported: Authorized (E01.FR.03), PowerPathClosed (E01.FR.05,
the default), EnergyTransfer (E01.FR.06). Stop points: EVConnected
(E06.FR.02), Authorized (E06.FR.03/04), PowerPathClosed (E06.FR.06),
EnergyTransfer (E06.FR.07). The configuration a transaction starts with is
kept for it to its end. The transactionId is the journal's session key (a
uuid4: unique across reboots, E01.FR.08).

What each message carries follows Part 2 §E 1.5: evse only in the first
event after the EV connected (E01.FR.16), idToken once when authorized
(E03.FR.01) and once when authorization ends (E07.FR.02), reservationId and
remoteStartId in the first event after authorization (E03.FR.03, F02.FR.01),
chargingState whenever it changes (E01.FR.18), stoppedReason in Ended
(E06.FR.08), meterValue Transaction.Begin in Started (E01.FR.09) and
TxEndedMeasurands in Ended (E06.FR.11: the start and end registers and the
samples kept every TxEndedInterval).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from station.clock import parse_iso
from station.core.model import ConnectorStatus, MessageKind, OutboxItem, Session, StatusReport
from station.errors import StorageError

from . import metering

if TYPE_CHECKING:
    from station.core.ports import StationControl

    from .devmodel import DeviceModel

log = logging.getLogger(__name__)

EVSE = {"id": 1}
EVSE_CONNECTOR = {"id": 1, "connectorId": 1}
_PLUG_WITH_TAP_S = 5.0  # a power path closed this soon after the authorization: the EV was there already


class Point(str, Enum):
    AUTHORIZED = "authorized"  # an idToken was accepted for the EVSE
    POWER_PATH_CLOSED = "start"  # authorized and the EV connected: the contactor closes (the core's START)
    ENERGY_TRANSFER = "energy"  # the charging state changed: Charging, SuspendedEV, SuspendedEVSE
    METER = "meter"  # a sample of TxUpdatedMeasurands / AlignedDataCtrlr.Measurands
    TRIGGER = "trigger"  # TriggerMessage TransactionEvent
    DEAUTHORIZED = "deauthorized"  # the central system refused the idToken; energy stops, the transaction goes on
    STOPPED = "stop"  # authorization ended, the power path opened (the core's STOP, with its reason)
    EV_DISCONNECTED = "ev_disconnected"  # the EV left after the stop
    TIMEOUT = "timeout"  # authorized, but the EV never came (EVConnectionTimeOut)


# the core's stop reason (OCPP 1.6 names) -> (2.0.1 ReasonEnumType, TriggerReasonEnumType)
_STOPS = {
    "Local": ("Local", "StopAuthorized"), "Remote": ("Remote", "RemoteStop"),
    "EVDisconnected": ("EVDisconnected", "EVCommunicationLost"), "DeAuthorized": ("DeAuthorized", "Deauthorized"),
    "HardReset": ("ImmediateReset", "ResetCommand"), "SoftReset": ("ImmediateReset", "ResetCommand"),
    "ImmediateReset": ("ImmediateReset", "ResetCommand"), "PowerLoss": ("PowerLoss", "AbnormalCondition"),
    "Reboot": ("Reboot", "AbnormalCondition"), "EmergencyStop": ("EmergencyStop", "AbnormalCondition"),
    "UnlockCommand": ("Other", "UnlockCommand"), "StoppedByEV": ("StoppedByEV", "ChargingStateChanged"),
    "MasterPass": ("MasterPass", "StopAuthorized"), "Timeout": ("Timeout", "EVConnectTimeout"),
}
_CHARGING = {ConnectorStatus.CHARGING: "Charging", ConnectorStatus.SUSPENDED_EV: "SuspendedEV",
             ConnectorStatus.SUSPENDED_EVSE: "SuspendedEVSE"}
_ENDING = {"Authorized", "PowerPathClosed", "EnergyTransfer"}  # stop points a stop of the session always meets


class TxHost(Protocol):
    """What the transaction points need of the version."""

    devmodel: DeviceModel

    @property
    def control(self) -> StationControl: ...

    def token_of(self, id_tag: str) -> dict[str, Any]:
        """The IdTokenType of an id the station journaled (the type it was presented with)."""

    def is_master_pass(self, id_tag: str) -> bool:
        """The id's group is AuthCtrlr.MasterPassGroupId (C16)."""

    def take_remote_start(self, session: Session) -> dict[str, Any] | None:
        """The RequestStartTransaction that started this session ({remoteStartId, idToken}), once."""

    def samples(self, session: Session) -> list[dict[str, Any]]:
        """The MeterValues kept for the transaction's end (TxEndedInterval), in time order."""

    def resolve(self, stamp: str | None) -> str: ...

    def authorizing_session(self, id_tag: str) -> Session | None:
        """The journal's session of `id_tag` that is authorized and waits for its EV ('authorizing'), if any."""


Handler = Callable[["TxPoints", Session, dict[str, Any], dict[str, Any]], "dict[str, Any] | None"]


class TxPoints:
    _HANDLERS: ClassVar[dict[Point, Handler]]

    def __init__(self, host: TxHost) -> None:
        self.b = host
        self._status: ConnectorStatus | None = None
        self._session: int | None = None  # the last session seen active
        self._charging: tuple[int, str] | None = None  # (session id, charging state) last journaled
        self._waiting: int | None = None  # a session authorized before its EV came

    # ================================================================ the input: one point of a session
    def point(self, point: Point, session_id: int, **facts: Any) -> None:
        """Journal a transaction point (it becomes a TransactionEvent, or nothing, when delivered)."""
        dm = self.b.devmodel
        payload = {"point": point.value, "at": self.b.control.clock.stamp(),
                   "start": dm.list("TxCtrlr", "TxStartPoint"), "stop": dm.list("TxCtrlr", "TxStopPoint"), **facts}
        try:
            self.b.control.queue_message(session_id, MessageKind.TX_EVENT, payload)
        except StorageError as exc:  # the journal refused: logged; the core's own START/STOP still carry the bill
            log.error("transaction point %s of session %d not journaled: %s", point.value, session_id, exc)

    # ================================================================ derived from today's core
    def authorized(self, session: Session, token: dict[str, Any], reading: Any) -> None:
        """An accepted authorization of a tap (the session is journaled, 'authorizing')."""
        dm = self.b.devmodel
        begin = None
        if reading is not None and dm.bool("SampledDataCtrlr", "Enabled"):
            begin = metering.meter_value(reading, dm.list("SampledDataCtrlr", "TxStartedMeasurands"),
                                         "Transaction.Begin", self.b.control.clock.stamp())
        self._waiting = session.id
        self.point(Point.AUTHORIZED, session.id, id_token=token, meter=begin)

    async def remote_authorized(self, token: dict[str, Any], timeout_s: float = 3.0) -> None:
        """A RequestStartTransaction the core took (E01.FR.03 with F01/F02): the authorization point of the
        session the core journals for it (found in the journal: the core does not hand it over today)."""
        control = self.b.control
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            active = control.current_session()
            session = active if active is not None and active.id_tag.upper() == token["idToken"].upper() \
                else self.b.authorizing_session(token["idToken"])
            if session is not None:
                self.authorized(session, token, control.last_reading())
                return
            await asyncio.sleep(0.02)
        log.warning("remote start: no session of the token in the journal within %.0f s", timeout_s)

    def observe(self, report: StatusReport) -> None:
        """A status report of the connector: the points it implies."""
        before, self._status = self._status, report.status
        session = self.b.control.current_session()
        active = session if session is not None and session.state == "active" else None
        if active is not None:
            self._session, self._waiting = active.id, None
            state = _CHARGING.get(report.status)
            if state is not None and self._charging != (active.id, state):
                self._charging = (active.id, state)
                self.point(Point.ENERGY_TRANSFER, active.id, state=state)
                stop = set(self.b.devmodel.list("TxCtrlr", "TxStopPoint"))
                if state == "SuspendedEV" and "EnergyTransfer" in stop and before is ConnectorStatus.CHARGING:
                    # E06.FR.07: the energy transfer stopped and that ends the transaction here
                    self.b.control.spawn(self.b.control.stop_session("StoppedByEV"), "ocpp-energy-transfer-stop")
            return
        if report.status in (ConnectorStatus.PREPARING, ConnectorStatus.FINISHING):
            return
        if self._waiting is not None and before is ConnectorStatus.PREPARING:
            waiting, self._waiting = self._waiting, None  # authorized, and the EV never came (E03.FR.05)
            self.point(Point.TIMEOUT, waiting)
        elif before is ConnectorStatus.FINISHING and self._session is not None:
            stop = set(self.b.devmodel.list("TxCtrlr", "TxStopPoint"))
            if "EVConnected" in stop and not stop & _ENDING:
                self.point(Point.EV_DISCONNECTED, self._session)  # E06.FR.02: the EV left

    # ================================================================ the output: a point as a TransactionEvent
    def event(self, item: OutboxItem, session: Session, state: dict[str, Any]) -> dict[str, Any] | None:
        """The TransactionEvent for one journaled point (without seqNo, offline and timestamp), or None when
        the point says nothing about the transaction. `state` (what was sent before) is updated in place."""
        facts = item.payload
        at: str | None
        if item.kind is MessageKind.START:
            point, at = Point.POWER_PATH_CLOSED, session.started_at
        elif item.kind is MessageKind.STOP:
            point, at = Point.STOPPED, session.stopped_at
        else:
            point, at = Point(facts["point"]), facts.get("at")
        if "start" not in state:  # the configuration the transaction lives by
            dm = self.b.devmodel
            state["start"] = facts.get("start", dm.list("TxCtrlr", "TxStartPoint"))
            state["stop"] = facts.get("stop", dm.list("TxCtrlr", "TxStopPoint"))
        state["at"] = at
        if state.get("ended"):
            return None
        return self._HANDLERS[point](self, session, facts, state)

    # -- one method per point (state: started, ended, token, evse, charging, stop_reason) ---------------
    def _authorized(self, session: Session, facts: dict[str, Any], state: dict[str, Any]) -> dict[str, Any] | None:
        state["token"] = facts["id_token"]
        if state.get("started") or "Authorized" not in state["start"]:
            return None
        remote = self.b.take_remote_start(session)
        if remote is not None:  # F02.FR.01: the remoteStartId in the first event; triggerReason RemoteStart
            state["remote"] = remote
        # E01.FR.03: the transaction starts with the authorization. Was the EV there already?
        plugged = session.state in ("active", "stopped") and _within(self.b.resolve(session.started_at),
                                                                     self.b.resolve(state["at"]))
        return self._started(session, state, "RemoteStart" if remote is not None else "Authorized",
                             "EVConnected" if plugged else "Idle", evse=EVSE_CONNECTOR if plugged else EVSE,
                             begin=facts.get("meter"))

    def _power_path_closed(self, session: Session, facts: dict[str, Any], state: dict[str, Any]) -> dict[str, Any] | None:
        state["power_path"] = True
        remote = self.b.take_remote_start(session)
        if remote is not None:
            state["remote"] = remote
            state.setdefault("token", remote["idToken"])
        state.setdefault("token", self.b.token_of(session.id_tag))
        if state.get("started"):  # started by the authorization: now the EV is connected (E01.FR.16)
            event = self._updated(state, "CablePluggedIn", "EVConnected")
            if not state.get("evse_sent"):
                event["evse"], state["evse_sent"] = EVSE_CONNECTOR, True
            return event
        if not set(state["start"]) & {"Authorized", "PowerPathClosed"}:
            return None  # EnergyTransfer: the transaction starts when energy flows
        begin = metering.energy_value(session.meter_start_wh, self.b.resolve(session.started_at), "Transaction.Begin",
                                      session.start_phase_wh)
        trigger = "RemoteStart" if remote is not None else "Authorized"
        return self._started(session, state, trigger, "EVConnected", evse=EVSE_CONNECTOR, begin=begin)

    def _energy(self, session: Session, facts: dict[str, Any], state: dict[str, Any]) -> dict[str, Any] | None:
        charging = facts["state"]
        if not state.get("started"):
            if "EnergyTransfer" in state["start"] and charging == "Charging" and state.get("power_path"):
                begin = metering.energy_value(session.meter_start_wh, self.b.resolve(state["at"]), "Transaction.Begin")
                return self._started(session, state, "ChargingStateChanged", "Charging", evse=EVSE_CONNECTOR,
                                     begin=begin)
            return None
        if charging == state.get("charging"):
            return None
        return self._updated(state, "ChargingStateChanged", charging)  # E01.FR.18

    def _meter(self, session: Session, facts: dict[str, Any], state: dict[str, Any]) -> dict[str, Any] | None:
        if not state.get("started") or not facts.get("meter"):
            return None
        trigger = "MeterValueClock" if facts.get("context") == "Sample.Clock" else "MeterValuePeriodic"
        event = self._updated(state, trigger)
        event["meterValue"] = [facts["meter"]]
        return event

    def _trigger(self, session: Session, facts: dict[str, Any], state: dict[str, Any]) -> dict[str, Any] | None:
        if not state.get("started"):
            return None
        event = self._updated(state, "Trigger")  # F06.FR.07: at least the chargingState, the latest values
        event["transactionInfo"]["chargingState"] = state.get("charging", "EVConnected")
        if facts.get("meter"):
            event["meterValue"] = [facts["meter"]]
        return event

    def _deauthorized(self, session: Session, facts: dict[str, Any], state: dict[str, Any]) -> dict[str, Any] | None:
        if not state.get("started"):
            return None
        return self._updated(state, "Deauthorized", "EVConnected")  # E05.FR.09, C15.FR.03

    def _stopped(self, session: Session, facts: dict[str, Any], state: dict[str, Any]) -> dict[str, Any] | None:
        if not state.get("started"):
            return None
        reason, trigger = _STOPS.get(facts.get("reason") or session.stop_reason or "Local", ("Other", "AbnormalCondition"))
        gone = reason == "EVDisconnected"
        token = None
        if reason == "Local":  # E07.FR.02: the idToken that ended the authorization
            stopper = facts.get("id_tag") or session.id_tag
            token = self.b.token_of(stopper)
            if self.b.is_master_pass(stopper):
                reason = "MasterPass"  # C16.FR.02
        ends = bool(set(state["stop"]) & _ENDING) or gone or reason not in ("Local", "Remote", "DeAuthorized", "MasterPass")
        if not ends:  # F03.FR.02, E06: EVConnected only: the transaction goes on until the EV leaves
            state["stop_reason"] = reason
            event = self._updated(state, trigger, "EVConnected")
        else:
            event = self._ended(session, state, trigger, reason, "Idle" if gone else "EVConnected")
        if token is not None:
            event["idToken"] = token
        return event

    def _ev_disconnected(self, session: Session, facts: dict[str, Any], state: dict[str, Any]) -> dict[str, Any] | None:
        if not state.get("started") or "stop_reason" not in state:
            return None  # not stopped yet: the core's STOP (EVDisconnected) ends it
        return self._ended(session, state, "EVCommunicationLost", state["stop_reason"], "Idle")

    def _timeout(self, session: Session, facts: dict[str, Any], state: dict[str, Any]) -> dict[str, Any] | None:
        if not state.get("started") or state.get("power_path"):
            return None
        return self._ended(session, state, "EVConnectTimeout", "Timeout", "Idle")  # E03.FR.05

    # -- building messages ------------------------------------------------------------------------------
    def _started(self, session: Session, state: dict[str, Any], trigger: str, charging: str, *,
                 evse: dict[str, Any], begin: dict[str, Any] | None) -> dict[str, Any]:
        state["started"] = True
        event = self._event("Started", state, trigger, charging)
        event["evse"] = evse
        state["evse_sent"] = "connectorId" in evse
        event["idToken"] = state["token"]
        if session.reservation_id is not None:
            event["reservationId"] = session.reservation_id  # E03.FR.03
        remote = state.get("remote")
        if remote is not None:
            event["transactionInfo"]["remoteStartId"] = remote["remoteStartId"]  # F02.FR.01
            if trigger != "Authorized":
                event["triggerReason"] = "RemoteStart"  # F02.FR.21
        if begin is not None and self.b.devmodel.bool("SampledDataCtrlr", "Enabled"):
            event["meterValue"] = [begin]  # E01.FR.09
        return event

    def _updated(self, state: dict[str, Any], trigger: str, charging: str | None = None) -> dict[str, Any]:
        return self._event("Updated", state, trigger, charging)

    def _ended(self, session: Session, state: dict[str, Any], trigger: str, reason: str, charging: str) -> dict[str, Any]:
        state["ended"] = True
        event = self._event("Ended", state, trigger, charging)
        event["transactionInfo"]["stoppedReason"] = reason  # E06.FR.08
        values = self._ended_values(session)
        if values:
            event["meterValue"] = values
        return event

    def _event(self, kind: str, state: dict[str, Any], trigger: str, charging: str | None) -> dict[str, Any]:
        info: dict[str, Any] = {"transactionId": state["id"]}
        if charging is not None and charging != state.get("charging"):
            info["chargingState"] = charging
            state["charging"] = charging
        elif charging is not None and trigger == "ChargingStateChanged":
            info["chargingState"] = charging  # a ChargingStateChanged event always says the state
        return {"eventType": kind, "triggerReason": trigger, "transactionInfo": info}

    def _ended_values(self, session: Session) -> list[dict[str, Any]]:
        """E06.FR.11: TxEndedMeasurands at the start, every TxEndedInterval, and at the end (the registers
        the journal holds for the start and the end; the kept samples between)."""
        dm = self.b.devmodel
        if not dm.bool("SampledDataCtrlr", "Enabled"):
            return []
        out: list[dict[str, Any]] = []
        begin_end = metering.ENERGY in dm.list("SampledDataCtrlr", "TxEndedMeasurands")
        if begin_end:
            out.append(metering.energy_value(session.meter_start_wh, self.b.resolve(session.started_at),
                                             "Transaction.Begin", session.start_phase_wh))
        out += self.b.samples(session)
        if begin_end and session.meter_stop_wh is not None:
            out.append(metering.energy_value(session.meter_stop_wh, self.b.resolve(session.stopped_at),
                                             "Transaction.End", session.stop_phase_wh))
        return out


TxPoints._HANDLERS = {
    Point.AUTHORIZED: TxPoints._authorized, Point.POWER_PATH_CLOSED: TxPoints._power_path_closed,
    Point.ENERGY_TRANSFER: TxPoints._energy, Point.METER: TxPoints._meter, Point.TRIGGER: TxPoints._trigger,
    Point.DEAUTHORIZED: TxPoints._deauthorized, Point.STOPPED: TxPoints._stopped,
    Point.EV_DISCONNECTED: TxPoints._ev_disconnected, Point.TIMEOUT: TxPoints._timeout,
}


def _within(a: str | None, b: str | None) -> bool:
    try:
        return a is not None and b is not None and abs((parse_iso(a) - parse_iso(b)).total_seconds()) <= _PLUG_WITH_TAP_S
    except ValueError:
        return False
