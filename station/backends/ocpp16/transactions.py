"""Transaction messages: StartTransaction, StopTransaction and MeterValues from the durable outbox.

Theory of operation
-------------------
The core writes START and STOP to its outbox, the sampler writes meter
values there too; the deliverer hands them to `deliver()` one at a time, in
order, so a StopTransaction waits for its StartTransaction and never carries
a made-up transactionId.

One `deliver` is one try: one CALL, bounded by the response timeout (the
deliverer never waits minutes in one call, station/core/delivery.py). A CALL
the central system does not process (a CALLERROR, no answer, an answer that
breaks the schema, such as StartTransaction without transactionId) is a
failed try: RetryLater, so the deliverer counts it in the outbox and offers
the same message again after TransactionMessageRetryInterval x the number of
tries so far, up to TransactionMessageAttempts tries. After the last one:

* StartTransaction and StopTransaction are held undelivered (Undeliverable:
  out of the queue, kept with the reason, the session undelivered and shown
  so, `station sessions --resend` sends them again; station/held.py);
* MeterValues move on (rejected for good, reason kept on the session: the
  StopTransaction carries the session's energy anyway).

StartTransaction's own bookkeeping (sends journaled before they leave, late
answers, extra transactions stopped at 0 Wh, which ones may remain open) is
starts.py's. Deliveries are idempotent: a session's transactionId and the
sessions whose StopTransaction was answered are kept in the journal, so a
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
from typing import TYPE_CHECKING, Any, NoReturn

from station.backends.ocpp import retry
from station.backends.ocppj.rpc import CallFailed, Late, LinkDown
from station.clock import MONO_PREFIX
from station.core.model import HELD, DeliveryResult, MessageKind, OutboxItem, Session
from station.errors import BackendOffline, StorageError, Undeliverable

from . import metering
from .starts import EXTRA_STOP, Starts

if TYPE_CHECKING:
    from .api import Ocpp16Api

log = logging.getLogger(__name__)

STOPPED_KEY = "ocpp.stopped"  # session keys whose StopTransaction was answered
_STOP_REASONS = {"EmergencyStop", "EVDisconnected", "HardReset", "Local", "Other", "PowerLoss", "Reboot",
                 "Remote", "SoftReset", "UnlockCommand", "DeAuthorized"}


class Transactions:
    def __init__(self, backend: Ocpp16Api) -> None:
        self.b = backend
        self.starts = Starts(self)

    def transaction_id(self, session: Session) -> int | None:
        return self.starts.known(session)

    def _remember(self, key: str, list_key: str, value: Any) -> None:
        """Small bounded idempotency records in the store."""
        data = self.b.store.get_json(list_key, {}) or {}
        data[key] = value
        while len(data) > 100:
            data.pop(next(iter(data)))
        self.b.store.put_json(list_key, data)

    def last_try(self, item: OutboxItem) -> bool:
        return retry.last_try(item, self.b.keys.int("TransactionMessageAttempts"))

    def failed_try(self, action: str, item: OutboxItem, problem: str) -> NoReturn:
        """The central system did not process this try: RetryLater after TransactionMessageRetryInterval
        x tries so far, or Undeliverable once TransactionMessageAttempts tries failed (ocpp/retry.py)."""
        retry.failed_try(action, item, problem, attempts=self.b.keys.int("TransactionMessageAttempts"),
                         interval_s=self.b.scaled(self.b.keys.int("TransactionMessageRetryInterval")))

    async def deliver(self, item: OutboxItem, session: Session) -> DeliveryResult:
        if not self.b.link.accepted:
            raise BackendOffline("not registered with the central system")
        if item.kind is MessageKind.TX_EVENT:  # queued while the central system spoke 2.0.1
            return DeliveryResult(rejected="an OCPP 2.0.1 TransactionEvent; the central system now speaks 1.6")
        if item.kind is MessageKind.START:
            return await self.starts.deliver(item, session)
        if item.kind is MessageKind.STOP:
            if item.payload.get(EXTRA_STOP) is not None:
                return await self.starts.stop_extra(item, session, int(item.payload[EXTRA_STOP]))
            return await self._deliver_stop(item, session)
        return await self._deliver_meter_values(item, session)

    def deauthorize(self, session: Session, status: str) -> None:
        """StartTransaction's idTagInfo is not Accepted: StopTransactionOnInvalidId, MaxEnergyOnInvalidId."""
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
        def late(answer: Late) -> None:
            # Processed after all (answered after the timeout): the next try is confirmed without a
            # send, and a STOP already held goes out again to be confirmed so.
            if answer.error is None and answer.problem is None:
                log.warning("session %d: StopTransaction answered late: processed", session.id)
                self._remember(session.key, STOPPED_KEY, tx_id)
                if MessageKind.STOP.value in (self.b.store.session(session.id).extra.get(HELD) or {}):
                    self.b.control.resend_held(session.id)

        try:
            conf = await self.b.link.request("StopTransaction", payload, on_late=late)
        except LinkDown:
            raise
        except CallFailed as exc:
            # Not processed: tried again, then held undelivered (its samples kept for the resend).
            self.failed_try("StopTransaction", item, str(exc))
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
            await self.b.link.request("MeterValues", payload)
        except LinkDown:
            raise
        except CallFailed as exc:
            try:
                self.failed_try("MeterValues", item, str(exc))
            except Undeliverable as gave_up:
                return DeliveryResult(rejected=str(gave_up))
        return DeliveryResult()

    def queue_meter_value(self, session: Session, mv: dict[str, Any]) -> None:
        """A transaction's meter value, into the durable outbox (ordered with START and STOP)."""
        try:
            self.b.control.queue_message(session.id, MessageKind.METER_VALUES,
                                         {"connectorId": session.connector_id, "meterValue": [mv]})
        except StorageError as exc:  # a lost sample is not worth a crash
            log.error("meter value not queued: %s", exc)
