"""OCPP 2.0.1 transactions: each journaled transaction point as at most one TransactionEvent.

Theory of operation
-------------------
txpoints.py journals the *points* of a transaction in the core's outbox as
they happen (the EV connected, the driver authorized, the power path closed,
the energy flowing, the authorization ended, the EV gone). When the deliverer
hands a point to transactions.py, `TxEvents.event()` turns it into at most one
TransactionEvent (Started, Updated or Ended), given what was sent before for
that transaction (`state`, kept on the session in the journal). Deciding at
delivery rather than at the point keeps the journal simple and the messages
exact: the outbox holds facts, and a point delivered twice (a kill after the
send) becomes the same message with the same seqNo, because the message and
the state are journaled together before the send (transactions.py).

The core's own outbox items are points too: START is "authorized and power
path closed" (E01.FR.05), STOP is "the session ended" with its reason.

Start points (E01): EVConnected (E01.FR.02; before a card the transaction is
the early record of early.py, tied to the session at the authorization),
Authorized (E01.FR.03), PowerPathClosed (E01.FR.05, the default),
EnergyTransfer (E01.FR.06). Stop points (E06): EVConnected (E06.FR.02),
Authorized (E06.FR.03/04), PowerPathClosed (E06.FR.06), EnergyTransfer
(E06.FR.07). The configuration a transaction starts with is kept for it to
its end.

What each message carries follows Part 2 §E 1.5: evse only in the first
event after the EV connected (E01.FR.16), idToken once when authorized
(E03.FR.01) and once when authorization ends (E07.FR.02), reservationId and
remoteStartId in the first event after authorization (E03.FR.03, F02.FR.01),
chargingState whenever it changes (E01.FR.18), stoppedReason in Ended
(E06.FR.08), meterValue Transaction.Begin in Started (E01.FR.09) and
TxEndedMeasurands in Ended (E06.FR.11: the start and end registers and the
samples kept every TxEndedInterval).

The state of a transaction (keys): id (the transactionId), seq (the next
seqNo), start/stop (its TxStartPoint/TxStopPoint), at (the last point's
time), started, ended, token, remote, evse_sent, charging (the last
chargingState sent), plugged (the EV connected), away (gone, the transaction
suspended: E10), power_path (closed once), stop_reason (the authorization
ended, the transaction waits for the EV to leave).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from station.clock import parse_iso
from station.core.model import MessageKind, OutboxItem, Session

from . import metering

if TYPE_CHECKING:
    from .devmodel import DeviceModel

EVSE = {"id": 1}
EVSE_CONNECTOR = {"id": 1, "connectorId": 1}
_PLUG_WITH_TAP_S = 5.0  # no plug sensor: a power path closed this soon after the authorization had its EV already
ENDING = frozenset({"Authorized", "PowerPathClosed", "EnergyTransfer"})  # stop points any stop of the session meets
EV_ENDING = frozenset({"EVConnected", "PowerPathClosed", "EnergyTransfer"})  # stop points the EV leaving meets


class Point(str, Enum):
    EV_CONNECTED = "ev_connected"  # the EV connected (a transaction of the EVSE runs or waits for it)
    AUTHORIZED = "authorized"  # an idToken was accepted for the EVSE
    POWER_PATH_CLOSED = "start"  # authorized and the EV connected: the contactor closes (the core's START)
    ENERGY_TRANSFER = "energy"  # the charging state changed: Charging, SuspendedEV, SuspendedEVSE
    METER = "meter"  # a sample of TxUpdatedMeasurands / AlignedDataCtrlr.Measurands
    TRIGGER = "trigger"  # TriggerMessage TransactionEvent
    DEAUTHORIZED = "deauthorized"  # the central system refused the idToken; energy stops, the transaction goes on
    STOPPED = "stop"  # the session ended: the power path opened (the core's STOP, with its reason)
    EV_DISCONNECTED = "ev_disconnected"  # the EV left (during a transaction: E10; after its stop: E06.FR.02)
    CANCELLED = "cancelled"  # an authorization ended before its EV came (EVConnectionTimeOut, the card again)
    TIMEOUT = "timeout"  # the same, as journaled by earlier versions (always EVConnectionTimeOut)
    POWER_LOSS = "power_loss"  # the station restarted with the transaction open and its session over


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
# why a waiting authorization ended (the journal's reason of the aborted session) -> (reason, triggerReason)
_CANCELS = {"ConnectionTimeout": ("Timeout", "EVConnectTimeout"), "cancelled": ("Local", "StopAuthorized"),
            "PowerLoss": ("PowerLoss", "AbnormalCondition"), "EVDisconnected": ("EVDisconnected", "EVCommunicationLost")}


class EventHost(Protocol):
    """What building the events needs of the version."""

    devmodel: DeviceModel

    def token_of(self, id_tag: str) -> dict[str, Any]:
        """The IdTokenType of an id the station journaled (the type it was presented with)."""

    def is_master_pass(self, id_tag: str) -> bool:
        """The id's group is AuthCtrlr.MasterPassGroupId (C16)."""

    def take_remote_start(self, session: Session) -> dict[str, Any] | None:
        """The RequestStartTransaction that started this session ({remoteStartId, idToken}), once."""

    def samples(self, session: Session) -> list[dict[str, Any]]:
        """The MeterValues kept for the transaction's end (TxEndedInterval), in time order."""

    def resolve(self, stamp: str | None) -> str: ...


Handler = Callable[["TxEvents", Session, dict[str, Any], dict[str, Any]], "dict[str, Any] | None"]


class TxEvents:
    _HANDLERS: ClassVar[dict[Point, Handler]]

    def __init__(self, host: EventHost) -> None:
        self.b = host

    def config(self) -> dict[str, list[str]]:
        dm = self.b.devmodel
        return {"start": dm.list("TxCtrlr", "TxStartPoint"), "stop": dm.list("TxCtrlr", "TxStopPoint")}

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
            config = self.config()
            state["start"] = facts.get("start", config["start"])
            state["stop"] = facts.get("stop", config["stop"])
        state["at"] = at
        if state.get("ended"):
            return None
        return self._HANDLERS[point](self, session, facts, state)

    # -- one method per point ---------------------------------------------------------------------------
    def _ev_connected(self, session: Session, facts: dict[str, Any], state: dict[str, Any]) -> dict[str, Any] | None:
        state["plugged"] = True
        if state.get("started"):
            away = state.pop("away", False)
            if not away and state.get("evse_sent"):
                return None  # connected and said so already
            event = self._updated(state, "CablePluggedIn", "EVConnected")  # E10: back, the energy may flow again
            if not state.get("evse_sent"):
                event["evse"], state["evse_sent"] = EVSE_CONNECTOR, True  # E01.FR.16
            return event
        if "EVConnected" not in state["start"] or "token" not in state:
            return None  # before a card: early.py's record is this transaction
        remote = self._remote(session, state)  # E01.FR.02: authorized first, the EV now
        return self._started(session, state, "RemoteStart" if remote else "CablePluggedIn", "EVConnected",
                             evse=EVSE_CONNECTOR, begin=facts.get("meter"))

    def _authorized(self, session: Session, facts: dict[str, Any], state: dict[str, Any]) -> dict[str, Any] | None:
        state["token"] = facts["id_token"]
        if state.get("started"):  # started when the EV connected
            remote = self._remote(session, state)
            if remote is not None:
                state["token"] = remote["idToken"]  # as the central system gave it (C05)
            event = self._updated(state, "RemoteStart" if remote else "Authorized")
            event["idToken"] = state["token"]  # E03.FR.01
            if remote is not None:
                event["transactionInfo"]["remoteStartId"] = remote["remoteStartId"]  # F02.FR.01
            if session.reservation_id is not None:
                event["reservationId"] = session.reservation_id  # E03.FR.03
            return event
        if "Authorized" not in state["start"]:
            return None
        remote = self._remote(session, state)
        if remote is not None:
            state["token"] = remote["idToken"]  # as the central system gave it (C05)
        # E01.FR.03: the transaction starts with the authorization. Was the EV there already?
        plugged = facts.get("plugged")
        if plugged is None:  # no plug sensor: by the time the power path closed
            plugged = session.state in ("active", "stopped") and _within(self.b.resolve(session.started_at),
                                                                         self.b.resolve(state["at"]))
        state["plugged"] = bool(plugged)
        return self._started(session, state, "RemoteStart" if remote is not None else "Authorized",
                             "EVConnected" if plugged else "Idle", evse=EVSE_CONNECTOR if plugged else EVSE,
                             begin=facts.get("meter"))

    def _power_path_closed(self, session: Session, facts: dict[str, Any], state: dict[str, Any]) -> dict[str, Any] | None:
        state["power_path"] = True
        remote = self._remote(session, state)
        if remote is not None:
            state.setdefault("token", remote["idToken"])
        state.setdefault("token", self.b.token_of(session.id_tag))
        if state.get("started"):  # started by the authorization or the EV: is the EV's connection said?
            if state.get("plugged") and state.get("evse_sent"):
                return None
            state["plugged"] = True
            event = self._updated(state, "CablePluggedIn", "EVConnected")
            if not state.get("evse_sent"):
                event["evse"], state["evse_sent"] = EVSE_CONNECTOR, True  # E01.FR.16
            return event
        if not set(state["start"]) & {"Authorized", "PowerPathClosed", "EVConnected"}:
            return None  # EnergyTransfer: the transaction starts when energy flows
        state["plugged"] = True
        begin = metering.energy_value(session.meter_start_wh, self.b.resolve(session.started_at), "Transaction.Begin",
                                      session.start_phase_wh)
        trigger = "RemoteStart" if state.get("remote") else "Authorized"
        return self._started(session, state, trigger, "EVConnected", evse=EVSE_CONNECTOR, begin=begin)

    def _energy(self, session: Session, facts: dict[str, Any], state: dict[str, Any]) -> dict[str, Any] | None:
        charging = facts["state"]
        if not state.get("started"):
            if "EnergyTransfer" in state["start"] and charging == "Charging" and state.get("power_path"):
                begin = metering.energy_value(session.meter_start_wh, self.b.resolve(state["at"]), "Transaction.Begin")
                return self._started(session, state, "ChargingStateChanged", "Charging", evse=EVSE_CONNECTOR,
                                     begin=begin)
            return None
        if charging == state.get("charging") or state.get("away"):
            return None  # the same, or the EV is gone (Idle until it is back)
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
        gone = reason == "EVDisconnected" or bool(state.get("away"))
        token = None
        if reason == "Local":  # E07.FR.02: the idToken that ended the authorization
            stopper = facts.get("id_tag") or session.id_tag
            token = self.b.token_of(stopper)
            if self.b.is_master_pass(stopper):
                reason = "MasterPass"  # C16.FR.02
        ends = bool(set(state["stop"]) & ENDING) or gone or reason not in ("Local", "Remote", "DeAuthorized", "MasterPass")
        if not ends:  # F03.FR.02, E06: EVConnected only: the transaction goes on until the EV leaves
            state["stop_reason"] = reason
            event = self._updated(state, trigger, "EVConnected")
        else:
            event = self._ended(session, state, trigger, reason, "Idle" if gone else "EVConnected")
        if token is not None:
            event["idToken"] = token
        return event

    def _ev_disconnected(self, session: Session, facts: dict[str, Any], state: dict[str, Any]) -> dict[str, Any] | None:
        if not state.get("started"):
            return None
        if facts.get("suspend"):  # E10.FR.01: StopTxOnEVSideDisconnect false: suspended until the EV is back
            if state.get("away"):
                return None
            state["away"], state["plugged"] = True, False
            return self._updated(state, "EVCommunicationLost", "Idle")
        state["plugged"] = False
        if "stop_reason" in state:  # E06.FR.02: stopped before, and the EV left: the transaction ends
            return self._ended(session, state, "EVCommunicationLost", state["stop_reason"], "Idle")
        if facts.get("over"):  # its session ended without a stop (no power ever flowed): the EV left
            return self._ended(session, state, "EVCommunicationLost", "EVDisconnected", "Idle")
        return None  # the session runs: its STOP (EVDisconnected) ends the transaction

    def _cancelled(self, session: Session, facts: dict[str, Any], state: dict[str, Any]) -> dict[str, Any] | None:
        if not state.get("started") or state.get("power_path"):
            return None
        reason, trigger = _CANCELS.get(facts.get("reason") or "ConnectionTimeout", ("DeAuthorized", "Deauthorized"))
        event = self._ended(session, state, trigger, reason, "Idle" if not state.get("plugged") else "EVConnected")
        if reason == "Local":  # E07.FR.02: the card that ended it
            event["idToken"] = self.b.token_of(session.id_tag)
        return event  # E03.FR.05 (EVConnectionTimeOut), E06.FR.03 (the card again)

    def _power_loss(self, session: Session, facts: dict[str, Any], state: dict[str, Any]) -> dict[str, Any] | None:
        if not state.get("started"):
            return None
        return self._ended(session, state, "AbnormalCondition", "PowerLoss", None)  # E07.FR.06

    # -- building messages ------------------------------------------------------------------------------
    def _remote(self, session: Session, state: dict[str, Any]) -> dict[str, Any] | None:
        """The RequestStartTransaction of this session, taken once (F02.FR.01)."""
        remote = self.b.take_remote_start(session)
        if remote is not None:
            state["remote"] = remote
        return remote

    def _started(self, session: Session, state: dict[str, Any], trigger: str, charging: str, *,
                 evse: dict[str, Any], begin: dict[str, Any] | None) -> dict[str, Any]:
        state["started"] = True
        event = self._event("Started", state, trigger, charging)
        event["evse"] = evse
        state["evse_sent"] = "connectorId" in evse
        if "token" in state:
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

    def build(self, kind: str, state: dict[str, Any], trigger: str, charging: str | None) -> dict[str, Any]:
        """A bare event (early.py builds the events of a transaction that has no session yet)."""
        if kind == "Started":
            state["started"] = True
        elif kind == "Ended":
            state["ended"] = True
        return self._event(kind, state, trigger, charging)

    def _updated(self, state: dict[str, Any], trigger: str, charging: str | None = None) -> dict[str, Any]:
        return self._event("Updated", state, trigger, charging)

    def _ended(self, session: Session, state: dict[str, Any], trigger: str, reason: str,
               charging: str | None) -> dict[str, Any]:
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
        the journal holds for the start and the end; the kept samples between). A session that never
        started (no power path) has no registers: its transaction carried no energy."""
        dm = self.b.devmodel
        if not dm.bool("SampledDataCtrlr", "Enabled") or session.started_at is None:
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


TxEvents._HANDLERS = {
    Point.EV_CONNECTED: TxEvents._ev_connected, Point.AUTHORIZED: TxEvents._authorized,
    Point.POWER_PATH_CLOSED: TxEvents._power_path_closed, Point.ENERGY_TRANSFER: TxEvents._energy,
    Point.METER: TxEvents._meter, Point.TRIGGER: TxEvents._trigger, Point.DEAUTHORIZED: TxEvents._deauthorized,
    Point.STOPPED: TxEvents._stopped, Point.EV_DISCONNECTED: TxEvents._ev_disconnected,
    Point.CANCELLED: TxEvents._cancelled, Point.TIMEOUT: TxEvents._cancelled, Point.POWER_LOSS: TxEvents._power_loss,
}


def _within(a: str | None, b: str | None) -> bool:
    try:
        return a is not None and b is not None and abs((parse_iso(a) - parse_iso(b)).total_seconds()) <= _PLUG_WITH_TAP_S
    except ValueError:
        return False
