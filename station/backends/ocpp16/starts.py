"""StartTransaction: the one OCPP 1.6 message whose repeat is not harmless.

Theory of operation
-------------------
A central system answers each StartTransaction with a new transactionId and
OCPP 1.6 gives it no way to recognise a repeat. So every StartTransaction
the station sends may open a transaction, and the station keeps count, per
session, in the journal (the session's `extra`, one write before each send
and one per answer):

    ocpp_start_sends       StartTransactions sent (written before each leaves)
    ocpp_start_timestamp   the timestamp they carried (a resend repeats every value)
    ocpp_start_settled     sends whose fate is known: answered with a transactionId
                           (used or stopped), or with a CALLERROR (nothing opened)
    ocpp_transaction_id    the transactionId the session is billed under
    ocpp_extra_transactions  other transactionIds learned for it (a late answer)
    maybe_open_at_backend  {"count": sends - settled, "timestamp": ...}, written when the
                           START is answered or held: transactions the central system
                           may hold open that the station cannot stop (it never learnt
                           their ids), for `station sessions` and the status page

A send whose answer never came (no answer within the response timeout, a
wrong message id, a frame that is not JSON) or came broken (no transactionId,
a string) is a failed try: tried again after TransactionMessageRetryInterval
x tries, at most TransactionMessageAttempts times (the count is the outbox's,
so it survives a restart); then the START is held undelivered for the
operator (station/held.py), and the log, `station sessions` and the status
page say which transactions may remain open: idTag (masked), meterStart,
timestamp. A send lost with the link (an outage, a power cut) is not a try:
it goes again when the link is back, as every queued message, and is counted
as possibly open.

A late answer (the same message id, after the timeout, on the same
connection: rpc.Late) is not lost: its transactionId is used if the session
has none yet (a held START then goes out again at once and is confirmed
without a send), and stopped at once otherwise (StopTransaction with meterStop
= meterStart, at the start's timestamp, reason Other: it bills nothing), so
no transaction the station learns of stays open. After a kill between a send
and its answer nothing can be learnt: `maybe_open_at_backend` names it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from station import privacy
from station.backends.ocppj.rpc import CallErrorReceived, CallFailed, InvalidResponse, Late, LinkDown
from station.core.model import HELD, AuthStatus, DeliveryResult, MessageKind, OutboxItem, Session
from station.errors import StorageError

if TYPE_CHECKING:
    from .api import Ocpp16Api


class TxParent(Protocol):
    """What the starts see of the transactions they belong to (no import of transactions.py: no cycle)."""

    b: Ocpp16Api

    def last_try(self, item: OutboxItem) -> bool: ...

    def failed_try(self, action: str, item: OutboxItem, problem: str) -> NoReturn: ...

    def deauthorize(self, session: Session, status: str) -> None: ...

log = logging.getLogger(__name__)

TX_MAP_KEY = "ocpp.transactions"  # journals before ocpp_transaction_id: session key -> transactionId
SENDS = "ocpp_start_sends"
TIMESTAMP = "ocpp_start_timestamp"
SETTLED = "ocpp_start_settled"
TX_ID = "ocpp_transaction_id"
EXTRA = "ocpp_extra_transactions"
MAYBE_OPEN = "maybe_open_at_backend"
EXTRA_STOP = "extra_transaction"  # payload key of a STOP for an extra transaction (Store.confirm knows it)


def _int_id(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Starts:
    def __init__(self, tx: TxParent) -> None:
        self.tx = tx
        self.b = tx.b

    # ---------------------------------------------------------------- facts
    def facts(self, session_id: int) -> dict[str, Any]:
        """The session's extra as the journal holds it now (late answers change it under a delivery)."""
        return self.b.store.session(session_id).extra

    def known(self, session: Session) -> int | None:
        """The transactionId the session is billed under, if it has one."""
        if session.backend_session_id not in (None, ""):
            try:
                return int(str(session.backend_session_id))
            except ValueError:
                pass
        value = session.extra.get(TX_ID)
        if value is None:
            # The running session's copy may predate a late answer: the journal knows.
            try:
                fresh = self.b.store.find_session(session.id)
            except StorageError:
                fresh = None
            value = fresh.extra.get(TX_ID) if fresh is not None else None
        if value is None:
            value = (self.b.store.get_json(TX_MAP_KEY, {}) or {}).get(session.key)
        return int(value) if value is not None else None

    @staticmethod
    def maybe_open(extra: dict[str, Any], learned: bool) -> int:
        """Sends that may have opened a transaction nobody will stop. Journals from before the
        settled count: the one answer the session was billed under settled one send."""
        sends = int(extra.get(SENDS, 0))
        settled = int(extra.get(SETTLED, 1 if learned and sends else 0))
        return max(0, sends - settled)

    @staticmethod
    def _open(extra: dict[str, Any], n: int) -> dict[str, Any]:
        """The journal's note for `station sessions` and the status page (they add idTag and meterStart)."""
        return {"count": n, "timestamp": extra.get(TIMESTAMP)}

    def _describe(self, session: Session, extra: dict[str, Any]) -> str:
        return (f"idTag {privacy.tag(session.id_tag)}, meterStart {int(session.meter_start_wh)} Wh, "
                f"timestamp {extra.get(TIMESTAMP) or self.b.resolve(session.started_at)}")

    def _say_open(self, session: Session, extra: dict[str, Any], n: int) -> None:
        if n:
            log.warning("session %d: %d StartTransaction(s) without a usable answer may have opened transaction(s) "
                        "at the central system that the station can never stop (%s); close them there",
                        session.id, n, self._describe(session, extra))

    # ---------------------------------------------------------------- delivering
    async def deliver(self, item: OutboxItem, session: Session) -> DeliveryResult:
        known = self.known(session)
        if known is not None:  # answered before (a crash before the outbox noted it, a late answer)
            return DeliveryResult(backend_session_id=str(known))
        payload: dict[str, Any] = {"connectorId": session.connector_id, "idTag": session.id_tag[:20],
                                   "meterStart": int(session.meter_start_wh),
                                   "timestamp": self.b.resolve(session.started_at)}
        if session.reservation_id is not None:
            payload["reservationId"] = session.reservation_id
        sends = int(session.extra.get(SENDS, 0))
        if sends:
            # The same values as before, the timestamp too (made up where the first one had to be:
            # a start stamped before the clock was known, in an earlier boot), so a central system
            # that looks for repeats can recognise it.
            payload["timestamp"] = session.extra.get(TIMESTAMP) or payload["timestamp"]
            log.warning("StartTransaction of session %d was sent %d time(s) before without an answer: the central "
                        "system may hold an extra transaction for idTag %s, meterStart %d Wh, timestamp %s that "
                        "will never be stopped; sending the same values again", session.id, sends,
                        privacy.tag(session.id_tag), payload["meterStart"], payload["timestamp"])

        def journal_send() -> None:  # before the frame leaves (Peer.request's on_send)
            n = int(self.facts(session.id).get(SENDS, 0)) + 1
            self.b.store.set_extra(session.id, **{SENDS: n, TIMESTAMP: payload["timestamp"]})

        def late(answer: Late) -> None:
            self.late(session.id, answer)

        try:
            conf = await self.b.link.request("StartTransaction", payload, on_send=journal_send, on_late=late)
        except LinkDown:
            raise
        except InvalidResponse as exc:
            tx_id = _int_id(exc.payload.get("transactionId")) if isinstance(exc.payload, dict) else None
            if tx_id is None:
                self._unusable(session, exc.payload)
                self._failed(item, session, str(exc))
            log.warning("StartTransaction answer is off-schema (%s); using its transactionId", exc.problem)
            conf = exc.payload
        except CallErrorReceived as exc:
            self._settle(session.id)  # the central system says it did not process it: nothing opened
            self._failed(item, session, str(exc))
        except CallFailed as exc:
            self._failed(item, session, str(exc))
        tx_id = int(conf["transactionId"])
        billed = self.adopt(session.id, tx_id, conf)
        raw = conf.get("idTagInfo")
        status = raw.get("status", "Accepted") if isinstance(raw, dict) else "Accepted"
        if billed == tx_id and status != "Accepted":
            return DeliveryResult(backend_session_id=str(billed), id_tag_status=AuthStatus(status))
        return DeliveryResult(backend_session_id=str(billed))

    def _failed(self, item: OutboxItem, session: Session, problem: str) -> NoReturn:
        """A try without a usable answer: RetryLater, or Undeliverable after the last (then held)."""
        if self.tx.last_try(item):
            extra = self.facts(session.id)
            n = self.maybe_open(extra, learned=False)
            self.b.store.set_extra(session.id, **{MAYBE_OPEN: self._open(extra, n)})
            self._say_open(session, extra, n)
        self.tx.failed_try("StartTransaction", item, problem)

    def _settle(self, session_id: int) -> None:
        extra = self.facts(session_id)
        self.b.store.set_extra(session_id, **{SETTLED: int(extra.get(SETTLED, 0)) + 1})

    def _unusable(self, session: Session, answer: Any) -> None:
        value = answer.get("transactionId") if isinstance(answer, dict) else None
        log.warning("StartTransaction of session %d answered without a usable transactionId (%r): the central "
                    "system may have opened a transaction the station cannot stop", session.id, value)

    # ---------------------------------------------------------------- answers
    def adopt(self, session_id: int, tx_id: int, conf: dict[str, Any], late: bool = False) -> int:
        """A transactionId the central system gave this session: bill under it if the session has
        none yet, else stop it as an extra. Returns the transactionId the session is billed under."""
        session = self.b.store.session(session_id)
        extra = session.extra
        current = self.known(session)
        settled = int(extra.get(SETTLED, 0)) + 1
        if current is None or current == tx_id:
            n = max(0, int(extra.get(SENDS, 1)) - settled)
            self.b.store.set_extra(session_id, **{TX_ID: tx_id, SETTLED: settled, MAYBE_OPEN: self._open(extra, n)})
            log.info("StartTransaction of session %d: transactionId %d", session_id, tx_id)
            self._say_open(session, extra, n)
            if current is None:
                self._answered(session, conf)
                if late and MessageKind.START.value in (extra.get(HELD) or {}):
                    # Held after its tries: the answer came after all. Out again, confirmed without a send.
                    log.warning("session %d: its held messages go out again", session_id)
                    self.b.control.resend_held(session_id)
            return tx_id
        extras = [*extra.get(EXTRA, []), tx_id]
        n = max(0, int(extra.get(SENDS, 1)) - settled)
        self.b.store.set_extra(session_id, **{SETTLED: settled, EXTRA: extras, MAYBE_OPEN: self._open(extra, n)})
        log.warning("session %d: the central system opened transaction %d too (an answer that came late); it is "
                    "billed under %d: stopping %d with meterStop = meterStart", session_id, tx_id, current, tx_id)
        try:
            self.b.control.queue_message(session_id, MessageKind.STOP, {EXTRA_STOP: tx_id})
        except StorageError as exc:
            log.error("the stop of extra transaction %d is not queued: %s", tx_id, exc)
        return current

    def _answered(self, session: Session, conf: dict[str, Any]) -> None:
        raw = conf.get("idTagInfo")
        info: dict[str, Any] = raw if isinstance(raw, dict) else {"status": "Accepted"}
        self.b.auth.learn(session.id_tag, info)
        status = info.get("status", "Accepted")
        if status != "Accepted":
            self.tx.deauthorize(session, status)

    def late(self, session_id: int, answer: Late) -> None:
        """The answer to a StartTransaction that had given up (rpc.Late)."""
        try:
            if answer.error is not None:
                log.warning("session %d: a late CALLERROR %s to a StartTransaction: nothing opened", session_id,
                            answer.error)
                self._settle(session_id)
                return
            tx_id = _int_id(answer.payload.get("transactionId")) if isinstance(answer.payload, dict) else None
            if tx_id is None:
                self._unusable(self.b.store.session(session_id), answer.payload)
                return
            self.adopt(session_id, tx_id, answer.payload, late=True)
        except StorageError as exc:
            log.error("a late StartTransaction answer for session %d is not recorded: %s", session_id, exc)

    # ---------------------------------------------------------------- stopping an extra transaction
    async def stop_extra(self, item: OutboxItem, session: Session, tx_id: int) -> DeliveryResult:
        """StopTransaction for an extra transaction: meterStop = meterStart at the start's time (0 Wh)."""
        payload = {"transactionId": tx_id, "meterStop": int(session.meter_start_wh),
                   "timestamp": session.extra.get(TIMESTAMP) or self.b.resolve(session.started_at),
                   "reason": "Other"}
        try:
            await self.b.link.request("StopTransaction", payload)
        except LinkDown:
            raise
        except CallFailed as exc:
            self.tx.failed_try("StopTransaction", item, str(exc))
        log.info("session %d: extra transaction %d stopped (0 Wh)", session.id, tx_id)
        return DeliveryResult()
