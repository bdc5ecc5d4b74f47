"""OCPP 2.0.1 TransactionEvent delivery: from the journal's outbox, exactly once per seqNo, in order.

Theory of operation
-------------------
The deliverer hands the outbox's items to `deliver()` one at a time, in
order. Each item is a transaction point (txpoints.py); its TransactionEvent
is built once, numbered (seqNo: 0 for the first event of a transaction, +1
for each after it, E01.FR.07 and Part 2 §E 1.3.2.1) and written to the
journal together with the transaction's state *before* it is sent
(session extra "ocpp201": the state, and the event in flight). If the station
dies after the send, the same item is offered again after the restart and
the very same event goes out again (same seqNo, same content): the central
system sees a repeat, never a gap and never two events under one seqNo.

One `deliver` is one try: one CALL, bounded by the response timeout, the
same discipline as OCPP 1.6 (ocpp16/transactions.py). A TransactionEvent the
central system does not process (a CALLERROR, no answer, an answer off the
schema) is a failed try: RetryLater, so the deliverer counts it in the outbox
(the count survives a restart) and offers the same event again after
MessageAttemptInterval[TransactionEvent] x the tries so far (E13.FR.02/03),
up to MessageAttempts[TransactionEvent] tries. After the last it is *held*
(Undeliverable: out of the queue, kept with its reason for the operator,
`station sessions --resend` sends it again; station/held.py) and the next
message goes (E13.FR.04). Its event stays journaled on the session ("held":
the point's id -> the event), so a resend is the very same event, seqNo and
content. A lost link is not a try: the deliverer offers it again.

Later events of a transaction do not wait behind a held one, except behind
its Started: the central system has not taken the transaction, so everything
after it is held behind it at once (no tries spent on events of a transaction
it does not know, as the core holds a session's messages behind its held
START), and a resend sends them all in seqNo order. Behind an Updated the
rest goes on (E13.FR.04 "continue with the next"): the Ended carries the
registers the central system bills by (Transaction.Begin and End), so holding
it back would keep the transaction open there with no energy for as long as
nobody acts; the missing seqNo tells the central system an event is missing
(E01.FR.07), and the resend fills the gap with the same seqNo.

A late answer (the CALLRESULT after the timeout, rpc.Late) means the event was
processed after all: it is noted on the session ("processed"), so the next try
is confirmed without a send, and a held one goes back into the queue to be
confirmed so.

`offline` is true for an event whose point happened while the station was
not connected, and for one still queued when the connection was lost
(E04.FR.03, E11.FR.07): the point's time against the time the current
connection was accepted.

The answer's idTokenInfo goes to the authorization cache (C10.FR.05); one
that is not Accepted stops or suspends the transaction (E05, C15).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from station.backends.ocpp import retry
from station.backends.ocppj.rpc import CallFailed, Late
from station.clock import parse_iso
from station.core.model import HELD, DeliveryResult, MessageKind, OutboxItem, Session
from station.errors import BackendOffline, StorageError, Undeliverable

from .txevents import ENDING, Point, TxEvents
from .txpoints import OPEN_KEY, TxPoints

if TYPE_CHECKING:
    from datetime import datetime

    from station.backends.ocpp.host import LinkApi
    from station.backends.ocpp.limits import PowerLimit
    from station.core.ports import StationControl

    from .authz import Authorizer
    from .devmodel import DeviceModel
    from .early import EarlyTx

log = logging.getLogger(__name__)

STATE = "ocpp201"  # session extra: the transaction's state and its event in flight
IDS_KEY = "ocpp201.ids"  # transactionId -> session id, for transactions that began before their session


class DeliveryHost(Protocol):
    devmodel: DeviceModel
    auth: Authorizer
    points: TxPoints
    events: TxEvents
    early: EarlyTx
    limits: PowerLimit

    @property
    def control(self) -> StationControl: ...

    @property
    def link(self) -> LinkApi: ...

    @property
    def store(self) -> Any: ...

    def resolve(self, stamp: str | None) -> str: ...

    def scaled(self, seconds: float) -> float: ...

    def online_since(self) -> datetime | None: ...


def state_of(session: Session) -> dict[str, Any]:
    raw = session.extra.get(STATE)
    return dict(raw) if isinstance(raw, dict) else {}


def point_id(item: OutboxItem) -> str:
    """What names a point for good (a resend puts it at another place in the queue): its own id, else the
    core's START or STOP (one each per session), else (journaled by an earlier version) its place."""
    pid = item.payload.get("pid")
    if isinstance(pid, str):
        return pid
    if item.kind in (MessageKind.START, MessageKind.STOP) and not item.payload.get("extra_transaction"):
        return item.kind.value
    return f"seq:{item.seq}"


class Transactions:
    def __init__(self, host: DeliveryHost) -> None:
        self.b = host
        try:
            self._open: dict[str, int] = dict(host.store.get_json(OPEN_KEY, {}) or {})
        except (StorageError, TypeError, ValueError):
            self._open = {}

    async def deliver(self, item: OutboxItem, session: Session) -> DeliveryResult:
        if item.kind is MessageKind.METER_VALUES:  # queued while the central system spoke 1.6
            return DeliveryResult(rejected="OCPP 1.6 MeterValues; the central system now speaks 2.0.1")
        if not self.b.link.accepted:
            raise BackendOffline("not registered with the central system")
        state = state_of(session)
        continues = item.payload.get("continues") if item.kind is MessageKind.TX_EVENT else None
        if not state and session.backend_session_id not in (None, session.key):
            return DeliveryResult(rejected="started under OCPP 1.6; the central system now speaks 2.0.1")
        pid = point_id(item)
        inflight = state.get("inflight") or {}
        held = state.get("held") or {}
        if pid in (state.get("processed") or []):  # a late answer: processed after all
            self._settled(session, pid)
            return DeliveryResult(backend_session_id=state.get("id"))
        if inflight.get("id", inflight.get("item")) in (pid, item.seq):
            payload = inflight.get("payload")  # offered again after a restart: the same event
        elif pid in held:
            payload = held[pid]  # held after its tries, sent again by the operator: the same event
        else:
            if state.get("held_started"):  # the central system has not taken the transaction
                raise Undeliverable(f"behind its transaction's Started, held ({state['held_started']})")
            if not state and continues:
                state = self._continued(continues, session)
            payload = self._build(item, session, state, pid)
        self._own(state, session, payload)
        if isinstance(continues, dict) and "early" in continues and self.b.early.get(continues["early"]) is not None:
            self.b.early.drop(continues["early"])  # the session's now (its state journaled above)
        if payload is None:
            return DeliveryResult(backend_session_id=state.get("id") if state.get("started") else None)

        def late(answer: Late) -> None:
            self._late(session.id, pid, payload, answer)

        try:
            conf = await self.b.link.request("TransactionEvent", payload, on_late=late)
        except BackendOffline:
            raise  # the link is down: not a try
        except CallFailed as exc:
            self._failed_try(item, session, pid, payload, str(exc))
        if pid in held:
            self._settled(session, pid)
        self._after(payload, session)
        self._answered(payload, conf, session)
        return DeliveryResult(backend_session_id=state["id"])

    # ================================================================ tries (E13)
    def _failed_try(self, item: OutboxItem, session: Session, pid: str, payload: dict[str, Any],
                    problem: str) -> NoReturn:
        """Not processed: RetryLater after MessageAttemptInterval x tries so far, or, after MessageAttempts
        tries, Undeliverable (held; its event kept on the session for the resend)."""
        dm = self.b.devmodel
        attempts = dm.int("OCPPCommCtrlr", "MessageAttempts", "TransactionEvent")
        if retry.last_try(item, attempts):
            state = state_of(self.b.store.session(session.id))
            state["held"] = {**(state.get("held") or {}), pid: payload}
            if payload["eventType"] == "Started":
                state["held_started"] = f"seqNo {payload['seqNo']}"
            self.b.store.set_extra(session.id, **{STATE: state})
        retry.failed_try(f"TransactionEvent seqNo {payload['seqNo']}", item, f"session {session.id}: {problem}",
                         attempts=attempts,
                         interval_s=self.b.scaled(dm.int("OCPPCommCtrlr", "MessageAttemptInterval", "TransactionEvent")))

    def _settled(self, session: Session, pid: str) -> None:
        """A held or late-answered event is processed: nothing of it is left to send."""
        state = state_of(self.b.store.session(session.id))
        held = dict(state.get("held") or {})
        event = held.pop(pid, None)
        if event is not None and event["eventType"] == "Started":
            state.pop("held_started", None)
        state["held"] = held
        state["processed"] = [p for p in state.get("processed") or [] if p != pid]
        self.b.store.set_extra(session.id, **{STATE: state})

    def _late(self, session_id: int, pid: str, payload: dict[str, Any], answer: Late) -> None:
        """The answer to a try that had given up (rpc.Late): processed after all, unless a CALLERROR."""
        if answer.error is not None or answer.problem is not None:
            return
        try:
            session = self.b.store.session(session_id)
            state = state_of(session)
            if pid not in (state.get("processed") or []):
                state["processed"] = [*(state.get("processed") or []), pid]
                self.b.store.set_extra(session_id, **{STATE: state})
            log.warning("TransactionEvent seqNo %d of session %d answered late: processed", payload["seqNo"],
                        session_id)
            if isinstance(answer.payload, dict):
                self._answered(payload, answer.payload, session)
            if any(kind in (session.extra.get(HELD) or {}) for kind in (MessageKind.TX_EVENT.value,
                                                                        MessageKind.START.value,
                                                                        MessageKind.STOP.value)):
                self.b.control.resend_held(session_id)  # out again, to be confirmed without a send
        except StorageError as exc:
            log.error("a late TransactionEvent answer for session %d is not recorded: %s", session_id, exc)

    # ================================================================ which session a transaction lives on
    def _continued(self, continues: dict[str, Any], session: Session) -> dict[str, Any]:
        """The state of the transaction the EV started that this session continues (early.py), else {}."""
        early_id = continues.get("early")
        if early_id is None:
            return {}
        if self.b.early.pending(early_id):
            self.b.early.wake()  # its first events go first (early.py sends them)
            raise BackendOffline("the EV-connected transaction's first events are not sent yet")
        return self.b.early.adopt(early_id) or {}

    def _own(self, state: dict[str, Any], session: Session, payload: dict[str, Any] | None) -> None:
        """The journal's list of open transactions and their sessions (what a restart closes, txpoints.py)."""
        tx_id = state.get("id")
        if tx_id is None:
            return
        before = dict(self._open)
        if payload is not None and payload["eventType"] == "Ended":
            self._open.pop(tx_id, None)
        elif state.get("started") and not state.get("ended"):
            self._open[tx_id] = session.id
            if tx_id != session.key:
                self._remember(tx_id, session.id)
        if self._open != before:
            self.b.store.put_json(OPEN_KEY, self._open)

    def _remember(self, tx_id: str, session_id: int) -> None:
        ids = self.b.store.get_json(IDS_KEY, {}) or {}
        if ids.get(tx_id) != session_id:
            ids[tx_id] = session_id
            while len(ids) > 100:
                ids.pop(next(iter(ids)))
            self.b.store.put_json(IDS_KEY, ids)

    def transaction_id(self, session: Session) -> str:
        """The transactionId of the session's transaction (its key, unless it continues an earlier one)."""
        try:
            fresh = self.b.store.find_session(session.id) or session
        except StorageError:
            fresh = session
        state = state_of(fresh)
        if state.get("id"):
            return str(state["id"])
        tied = self.b.early.tied_to(session.id)
        return str(tied["id"]) if tied is not None else session.key

    def session_of(self, transaction_id: str) -> Session | None:
        session = self.b.store.session_by_key(transaction_id)
        if session is None:
            known = (self.b.store.get_json(IDS_KEY, {}) or {}).get(transaction_id)
            session = self.b.store.find_session(int(known)) if known is not None else None
        return session

    # ================================================================ building, journaling
    def _build(self, item: OutboxItem, session: Session, state: dict[str, Any], pid: str) -> dict[str, Any] | None:
        """The event for a new item, journaled with the state before it is sent (None: nothing to send)."""
        state.setdefault("id", session.key)
        state.setdefault("seq", 0)
        event = self.b.events.event(item, session, state)
        payload: dict[str, Any] | None = None
        if event is not None:
            at = state.get("at")
            payload = {**event, "timestamp": self.b.resolve(at), "seqNo": state["seq"]}
            if self._offline(at):
                payload["offline"] = True
            state["seq"] += 1
        state["inflight"] = {"id": pid, "payload": payload}
        self.b.store.set_extra(session.id, **{STATE: state})
        return payload

    def _offline(self, at: str | None) -> bool:
        """The point happened before the current connection was accepted (or in an earlier boot)."""
        since = self.b.online_since()
        if since is None:
            return True
        try:
            return parse_iso(self.b.resolve(at)) < since
        except ValueError:
            return True

    def _after(self, payload: dict[str, Any], session: Session) -> None:
        if payload["eventType"] == "Ended":
            try:
                self.b.store.drop_samples(session.id)
            except StorageError as exc:
                log.error("samples of session %d not dropped: %s", session.id, exc)

    def _answered(self, payload: dict[str, Any], conf: dict[str, Any], session: Session) -> None:
        """The idTokenInfo of the answer: to the cache (C10.FR.05), and E05/C15 when it is not Accepted."""
        info = conf.get("idTokenInfo")
        token = payload.get("idToken")
        if not isinstance(info, dict) or not isinstance(token, dict):
            return
        self.b.auth.learn(token, info)
        if info.get("status") == "Accepted" or payload["eventType"] == "Ended":
            return
        if payload["triggerReason"] in ("StopAuthorized",):
            return  # the answer about the card that stopped it: nothing left to stop
        current = self.b.control.current_session()
        if current is None or current.id != session.id:
            return  # already over
        log.warning("the central system answered the transaction of session %d with %s", session.id, info["status"])
        self.b.control.notice(f"card {info['status']}")
        dm = self.b.devmodel
        stop = set(dm.list("TxCtrlr", "TxStopPoint"))
        if dm.bool("TxCtrlr", "StopTxOnInvalidId"):
            if stop & ENDING:  # E05.FR.10, C15.FR.04, E06.FR.04: the transaction ends
                self.b.control.spawn(self.b.control.stop_session("DeAuthorized"), "ocpp-deauthorize")
            else:  # E05.FR.09, C15.FR.03: energy stops, the transaction goes on until the EV leaves
                self.b.limits.deauthorize(session.id, 0)
                self.b.points.point(Point.DEAUTHORIZED, session.id)
        else:  # E05.FR.02/03, C15.FR.06/07: energy up to MaxEnergyOnInvalidId, then SuspendedEVSE
            reading = self.b.control.last_reading()
            base = reading.energy_wh if reading is not None else session.meter_start_wh
            self.b.limits.deauthorize(session.id, base + dm.int("TxCtrlr", "MaxEnergyOnInvalidId"))

    # ================================================================ E14 GetTransactionStatus
    def status(self, transaction_id: str | None) -> dict[str, Any]:
        try:
            queued = [i for i in self.b.store.messages() if i.kind in (MessageKind.START, MessageKind.STOP,
                                                                        MessageKind.TX_EVENT)]
        except StorageError:
            queued = []
        early = self.b.early.status(transaction_id)
        if transaction_id is None:  # E14.FR.06-08
            return {"messagesInQueue": bool(queued) or bool(early and early["messagesInQueue"])}
        if early is not None:  # a transaction the EV started, not (yet) a session's
            return early
        try:
            session = self.session_of(transaction_id)
        except StorageError:
            session = None
        if session is None:  # E14.FR.01
            return {"ongoingIndicator": False, "messagesInQueue": False}
        state = state_of(session)
        # ongoing: the session runs, or it stopped and the transaction waits for the EV to leave (TxStopPoint)
        ongoing = session.state in ("active", "authorizing") or (
            bool(state.get("started")) and not state.get("ended") and "stop_reason" in state)
        return {"ongoingIndicator": ongoing,  # E14.FR.02/03
                "messagesInQueue": any(i.session_id == session.id for i in queued)}  # E14.FR.04/05
