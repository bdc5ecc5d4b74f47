"""Transaction messages: StartTransaction, StopTransaction and MeterValues from the durable outbox.

Theory of operation
-------------------
The core writes START and STOP to its outbox, the sampler writes meter
values there too; the deliverer hands them to `deliver()` one at a time, in
order, so a StopTransaction waits for its StartTransaction and never carries
a made-up transactionId. A CALL the central system does not process
(CALLERROR, no answer, an answer that breaks the schema such as
StartTransaction without transactionId) is tried TransactionMessageAttempts
times, waiting TransactionMessageRetryInterval x the number of earlier tries;
then a StartTransaction is kept (BackendOffline: the deliverer offers it
again later, the session is never lost) while a StopTransaction or MeterValues
moves on (rejected for good, reason kept on the session).

Deliveries are idempotent: the transactionId of each session and the
sessions whose StopTransaction was answered are kept in the store, so a
message delivered just before a crash is not sent twice.

StopTransaction names the card that asked for the stop (the STOP item's
"id_tag", which may be another card of the same group than the one that
started), else the starting card for a local stop; it carries transactionData
with the Transaction.Begin and Transaction.End register values and the
samples of StopTxnSampledData / StopTxnAlignedData kept during the session
(see sampling.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from station import privacy
from station.backends.ocpp.retry import Exhausted as _Exhausted
from station.backends.ocpp.retry import transaction_call
from station.backends.ocppj.rpc import InvalidResponse
from station.clock import MONO_PREFIX
from station.core.model import AuthStatus, DeliveryResult, MessageKind, OutboxItem, Session
from station.errors import BackendOffline, StorageError

from . import metering

if TYPE_CHECKING:
    from .api import Ocpp16Api

log = logging.getLogger(__name__)

TX_MAP_KEY = "ocpp.transactions"  # session key -> transactionId (idempotent START)
STOPPED_KEY = "ocpp.stopped"  # session keys whose StopTransaction was answered
START_SENDS = "ocpp_start_sends"  # session extra: StartTransactions sent for it (journaled before each send)
START_TIMESTAMP = "ocpp_start_timestamp"  # session extra: the timestamp they carried
_STOP_REASONS = {"EmergencyStop", "EVDisconnected", "HardReset", "Local", "Other", "PowerLoss", "Reboot",
                 "Remote", "SoftReset", "UnlockCommand", "DeAuthorized"}


class Transactions:
    def __init__(self, backend: Ocpp16Api) -> None:
        self.b = backend

    def transaction_id(self, session: Session) -> int | None:
        if session.backend_session_id not in (None, ""):
            try:
                return int(session.backend_session_id)
            except ValueError:
                pass
        value = (self.b.store.get_json(TX_MAP_KEY, {}) or {}).get(session.key)
        return int(value) if value is not None else None

    def _remember(self, key: str, list_key: str, value: Any) -> None:
        """Small bounded idempotency records in the store."""
        data = self.b.store.get_json(list_key, {}) or {}
        data[key] = value
        while len(data) > 100:
            data.pop(next(iter(data)))
        self.b.store.put_json(list_key, data)

    async def _transaction_call(self, action: str, payload: dict[str, Any],
                                before_send: Callable[[], None] | None = None) -> dict[str, Any]:
        """TransactionMessageAttempts tries, TransactionMessageRetryInterval x tries apart;
        `before_send()` runs before each try (station/backends/ocpp/retry.py)."""
        keys = self.b.keys

        def salvage(exc: InvalidResponse) -> dict[str, Any] | None:
            tx_id = exc.payload.get("transactionId") if isinstance(exc.payload, dict) else None
            if action == "StartTransaction" and isinstance(tx_id, int) and not isinstance(tx_id, bool):
                log.warning("StartTransaction answer is off-schema (%s); using its transactionId", exc.problem)
                answer: dict[str, Any] = exc.payload
                return answer
            return None

        return await transaction_call(
            lambda: self.b.link.request(action, payload), action, attempts=keys.int("TransactionMessageAttempts"),
            interval_s=lambda n: self.b.scaled(keys.int("TransactionMessageRetryInterval") * n),
            before_send=before_send, salvage=salvage)

    async def deliver(self, item: OutboxItem, session: Session) -> DeliveryResult:
        if not self.b.link.accepted:
            raise BackendOffline("not registered with the central system")
        if item.kind is MessageKind.TX_EVENT:  # queued while the central system spoke 2.0.1
            return DeliveryResult(rejected="an OCPP 2.0.1 TransactionEvent; the central system now speaks 1.6")
        if item.kind is MessageKind.START:
            return await self._deliver_start(session)
        if item.kind is MessageKind.STOP:
            return await self._deliver_stop(item, session)
        return await self._deliver_meter_values(item, session)

    async def _deliver_start(self, session: Session) -> DeliveryResult:
        known = self.transaction_id(session)
        if known is not None:  # delivered before a crash: do not start it twice
            return DeliveryResult(backend_session_id=str(known))
        payload: dict[str, Any] = {"connectorId": session.connector_id, "idTag": session.id_tag[:20],
                                   "meterStart": int(session.meter_start_wh),
                                   "timestamp": self.b.resolve(session.started_at)}
        if session.reservation_id is not None:
            payload["reservationId"] = session.reservation_id
        # OCPP 1.6 has no idempotency key: a StartTransaction whose answer was lost (a power cut,
        # a dropped link) may have opened a transaction whose id we never learn. Each send is
        # journaled first, so such a session is known; it is sent again with the same values
        # (the only way it gets billed; a central system can recognise the repeat by them),
        # and the possible orphan is named in the log for the operator (docs/durability.md).
        sends = int(session.extra.get(START_SENDS, 0))
        if sends:
            # The same timestamp too where the first one had to be made up (a start stamped before
            # the clock was known, in an earlier boot).
            payload["timestamp"] = session.extra.get(START_TIMESTAMP) or payload["timestamp"]
            log.warning("StartTransaction of session %d was sent %d time(s) before without an answer: the central "
                        "system may hold an extra transaction for idTag %s, meterStart %d Wh, timestamp %s that "
                        "will never be stopped; sending the same values again", session.id, sends,
                        privacy.tag(session.id_tag), payload["meterStart"], payload["timestamp"])

        def journal_send() -> None:
            nonlocal sends
            sends += 1
            self.b.store.set_extra(session.id, **{START_SENDS: sends, START_TIMESTAMP: payload["timestamp"]})

        try:
            conf = await self._transaction_call("StartTransaction", payload, before_send=journal_send)
        except _Exhausted as exc:
            # Never lose the session: keep the START at the head of the queue.
            raise BackendOffline(f"{exc}; kept for a later try") from None
        tx_id = int(conf["transactionId"])
        self._remember(session.key, TX_MAP_KEY, tx_id)
        log.info("StartTransaction of session %d: transactionId %d", session.id, tx_id)
        raw = conf.get("idTagInfo")
        info: dict[str, Any] = raw if isinstance(raw, dict) else {"status": "Accepted"}
        self.b.auth.learn(session.id_tag, info)
        status = info.get("status", "Accepted")
        if status != "Accepted":
            self._deauthorize(session, status)
            return DeliveryResult(backend_session_id=str(tx_id), id_tag_status=AuthStatus(status))
        return DeliveryResult(backend_session_id=str(tx_id))

    def _deauthorize(self, session: Session, status: str) -> None:
        control = self.b.control
        current = control.current_session()
        if current is None or current.id != session.id:
            return  # already over
        log.warning("central system answered StartTransaction of session %d with %s", session.id, status)
        control.notice(f"card {status}")
        if self.b.keys.bool("StopTransactionOnInvalidId"):
            self.b.spawn(control.stop_session("DeAuthorized"), "ocpp-deauthorize")
        else:
            # Keep the transaction but stop delivering energy (beyond MaxEnergyOnInvalidId).
            reading = control.last_reading()
            base = reading.energy_wh if reading is not None else session.meter_start_wh
            self.b.limits.deauthorize(session.id, base + self.b.keys.int("MaxEnergyOnInvalidId"))

    def transaction_data(self, session: Session, stopped_at: str) -> list[dict[str, Any]]:
        """Begin, the samples kept during the session (in time order), End."""
        begin_end = metering.ENERGY in self.b.keys.list("StopTxnSampledData")
        data = []
        if begin_end:
            data.append(metering.energy_value(session.meter_start_wh, self.b.resolve(session.started_at),
                                              "Transaction.Begin"))
        try:
            samples = self.b.store.samples(session.id)
        except StorageError as exc:
            log.error("samples of session %d not read: %s", session.id, exc)
            samples = []
        for mv in samples:
            stamp = self.b.clock.resolve(mv.get("timestamp"))
            if stamp is not None:  # taken in an earlier boot before the clock was known: no usable time
                data.append({**mv, "timestamp": self.b.resolve(stamp)})
        if begin_end and session.meter_stop_wh is not None:
            data.append(metering.energy_value(session.meter_stop_wh, stopped_at, "Transaction.End"))
        return data

    def _forget_samples(self, session: Session) -> None:
        try:
            self.b.store.drop_samples(session.id)
        except StorageError as exc:
            log.error("samples of session %d not dropped: %s", session.id, exc)

    async def _deliver_stop(self, item: OutboxItem, session: Session) -> DeliveryResult:
        if session.key in (self.b.store.get_json(STOPPED_KEY, {}) or {}):
            self._forget_samples(session)
            return DeliveryResult()
        tx_id = self.transaction_id(session)
        if tx_id is None:
            self._forget_samples(session)
            return DeliveryResult(rejected="no transactionId: StartTransaction was never accepted")
        reason = item.payload.get("reason") or session.stop_reason or "Local"
        if reason not in _STOP_REASONS:
            reason = "Other"
        stopped_at = self.b.resolve(session.stopped_at)
        payload: dict[str, Any] = {"transactionId": tx_id,
                                   "meterStop": int(session.meter_stop_wh or session.meter_start_wh),
                                   "timestamp": stopped_at, "reason": reason}
        # The card that asked for the stop (TC_069: another card of the group names itself).
        stop_tag = item.payload.get("id_tag") or (session.id_tag if reason == "Local" else None)
        if stop_tag:
            payload["idTag"] = stop_tag[:20]
        data = self.transaction_data(session, stopped_at)
        if data:
            payload["transactionData"] = data
        try:
            conf = await self._transaction_call("StopTransaction", payload)
        except _Exhausted as exc:
            self._forget_samples(session)
            return DeliveryResult(backend_session_id=str(tx_id), rejected=str(exc))
        self._remember(session.key, STOPPED_KEY, tx_id)
        self._forget_samples(session)
        if isinstance(conf.get("idTagInfo"), dict) and stop_tag:
            self.b.auth.learn(stop_tag, conf["idTagInfo"])
        return DeliveryResult(backend_session_id=str(tx_id))

    async def _deliver_meter_values(self, item: OutboxItem, session: Session) -> DeliveryResult:
        tx_id = self.transaction_id(session)
        values = []
        for mv in item.payload.get("meterValue", []):
            stamp = mv.get("timestamp", "")
            if stamp.startswith(MONO_PREFIX) and self.b.clock.resolve(stamp) is None:
                continue  # taken in an earlier boot before the clock was known: no usable time
            values.append({**mv, "timestamp": self.b.resolve(stamp)})
        if not values:
            return DeliveryResult(rejected="meter values without a usable time")
        payload: dict[str, Any] = {"connectorId": item.payload.get("connectorId", session.connector_id),
                                   "meterValue": values}
        if tx_id is not None:
            payload["transactionId"] = tx_id
        try:
            await self._transaction_call("MeterValues", payload)
        except _Exhausted as exc:
            return DeliveryResult(rejected=str(exc))
        return DeliveryResult()

    def queue_meter_value(self, session: Session, mv: dict[str, Any]) -> None:
        """A transaction's meter value, into the durable outbox (ordered with START and STOP)."""
        try:
            self.b.control.queue_message(session.id, MessageKind.METER_VALUES,
                                         {"connectorId": session.connector_id, "meterValue": [mv]})
        except StorageError as exc:  # a lost sample is not worth a crash
            log.error("meter value not queued: %s", exc)
