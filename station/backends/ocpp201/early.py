"""OCPP 2.0.1: a transaction that starts when the EV connects, before anyone is authorized (TxStartPoint EVConnected).

Theory of operation
-------------------
The journal's sessions begin at a card (or a remote start), and the core's
outbox holds messages of sessions only. A transaction that starts when the
EV connects (E01.FR.02) exists before any session, so until its
authorization it is this version's own record, kept in the journal
("ocpp201.early" in the store's settings): its transactionId (a uuid4), its
state (the same keys as a session's, txevents.py) and the TransactionEvents
built for it, each written to the journal with its seqNo *before* it is sent.
This module sends them itself, in order, one try at a time (E13.FR.02/03:
MessageAttempts[TransactionEvent] tries, MessageAttemptInterval x the tries so
far apart; an event not processed in all of them is dropped, E13.FR.04), and
only when the outbox holds no older transaction message: the central system
sees every transaction in the order it happened.

At the authorization (the core's Authorized fact names the session) the
record is *tied* to the session: the session's first point says it continues
this transaction (txpoints.py). When the deliverer hands that point over, the
record's events not yet sent go first (this module sends them; the delivery
waits, BackendOffline), then the record's state becomes the session's
(transactions.py `adopt`) and the record is dropped. From then on the
transaction is the session's, delivered from the outbox like any other.

The energy billed is the session's: the Ended carries the session's
registers (Transaction.Begin when the power path closed, Transaction.End at
the stop). Before the authorization the contactor is open and nothing flows,
so the register in the Started (at the plug-in) is the same.

Without an authorization the record ends by itself: the EV leaves (Ended,
EVCommunicationLost, EVDisconnected), RequestStopTransaction (Remote), or a
restart (PowerLoss, E07.FR.06: it was open when the power went). A kill -9
loses nothing: the record and each of its events are in the journal before
anything is sent, and an event sent but not confirmed goes again with the
same seqNo and content (a repeat, never a gap).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from station.backends.ocpp.link import sleep_or_event
from station.backends.ocppj.rpc import CallFailed
from station.clock import parse_iso
from station.core.model import MessageKind
from station.errors import BackendOffline, StorageError

from .txevents import EVSE_CONNECTOR, TxEvents

if TYPE_CHECKING:
    from station.backends.ocpp.host import LinkApi
    from station.store import Store

    from .devmodel import DeviceModel

log = logging.getLogger(__name__)

EARLY_KEY = "ocpp201.early"  # the records, oldest first
POLL_S = 2.0  # while the outbox holds older transaction messages, look again this often (scaled)
TX_KINDS = (MessageKind.START, MessageKind.STOP, MessageKind.TX_EVENT)


class EarlyHost(Protocol):
    devmodel: DeviceModel
    events: TxEvents

    @property
    def link(self) -> LinkApi: ...

    @property
    def store(self) -> Store: ...

    def stamp(self) -> str: ...

    def resolve(self, stamp: str | None) -> str: ...

    def scaled(self, seconds: float) -> float: ...

    def online_since(self) -> datetime | None: ...


class EarlyTx:
    def __init__(self, host: EarlyHost) -> None:
        self.b = host
        try:
            saved = host.store.get_json(EARLY_KEY, []) or []
        except StorageError:
            saved = []
        self.records: list[dict[str, Any]] = [r for r in saved if isinstance(r, dict)]
        self._wake = asyncio.Event()
        self._lock: asyncio.Lock | None = None

    # ================================================================ the record
    def current(self) -> dict[str, Any] | None:
        """The transaction of the EV connected now, not yet authorized (at most one: one EVSE)."""
        return next((r for r in self.records if not r.get("closed") and r.get("tied") is None), None)

    def get(self, tx_id: str) -> dict[str, Any] | None:
        return next((r for r in self.records if r["id"] == tx_id), None)

    def tied_to(self, session_id: int) -> dict[str, Any] | None:
        return next((r for r in self.records if r.get("tied") == session_id), None)

    def open(self, begin: dict[str, Any] | None) -> dict[str, Any]:
        """The EV connected with TxStartPoint EVConnected and no transaction: Started (E01.FR.02)."""
        state: dict[str, Any] = {"id": str(uuid.uuid4()), "seq": 0, **self.b.events.config(), "started": True,
                                 "plugged": True, "evse_sent": True}
        record: dict[str, Any] = {"id": state["id"], "state": state, "queue": [], "attempts": 0, "tied": None}
        event = self.b.events.build("Started", state, "CablePluggedIn", "EVConnected")
        event["evse"] = EVSE_CONNECTOR
        if begin is not None and self.b.devmodel.bool("SampledDataCtrlr", "Enabled"):
            event["meterValue"] = [begin]  # E01.FR.09
        self._add(record, event)
        self.records.append(record)
        self._save()
        log.info("EV connected: transaction %s started before an authorization", state["id"])
        return record

    def tie(self, record: dict[str, Any], session_id: int) -> None:
        record["tied"] = session_id
        self._save()

    def end(self, record: dict[str, Any], trigger: str, reason: str, charging: str | None = "Idle") -> None:
        """Ended for a record no session took over (the EV left, a remote stop, a restart)."""
        if record.get("closed") or record.get("tied") is not None:
            return
        event = self.b.events.build("Ended", record["state"], trigger, charging)
        event["transactionInfo"]["stoppedReason"] = reason  # E06.FR.08
        self._add(record, event)
        record["closed"] = True
        self._drop_if_done(record)
        self._save()

    def trigger(self, record: dict[str, Any], meter: dict[str, Any] | None) -> None:
        """TriggerMessage TransactionEvent (F06.FR.07) while the record is the EVSE's transaction."""
        event = self.b.events.build("Updated", record["state"], "Trigger", None)
        event["transactionInfo"]["chargingState"] = record["state"].get("charging", "EVConnected")
        if meter:
            event["meterValue"] = [meter]
        self._add(record, event)
        self._save()

    def _add(self, record: dict[str, Any], event: dict[str, Any]) -> None:
        state = record["state"]
        at = self.b.stamp()
        state["at"] = at
        record["queue"].append({**event, "timestamp": self.b.resolve(at), "seqNo": state["seq"]})
        state["seq"] += 1
        self._wake.set()

    def pending(self, tx_id: str) -> bool:
        record = self.get(tx_id)
        return record is not None and bool(record["queue"])

    def adopt(self, tx_id: str) -> dict[str, Any] | None:
        """The record's state, for the session that continues it (the caller journals it, then `drop`s)."""
        record = self.get(tx_id)
        return dict(record["state"]) if record is not None and not record["queue"] else None

    def drop(self, tx_id: str) -> None:
        self.records = [r for r in self.records if r["id"] != tx_id]
        self._save()
        self._wake.set()

    def recover(self) -> list[int]:
        """After a restart: what was open ends with PowerLoss; the sessions records were tied to (their
        transaction, if still open, ends through the outbox)."""
        for record in list(self.records):
            self.end(record, "AbnormalCondition", "PowerLoss", None)
        return [r["tied"] for r in self.records if r.get("tied") is not None]

    def status(self, tx_id: str | None) -> dict[str, bool] | None:
        """E14 for a record: ongoing (not ended), messages queued; None if `tx_id` is not one."""
        if tx_id is None:
            return {"messagesInQueue": any(r["queue"] for r in self.records)}
        record = self.get(tx_id)
        if record is None:
            return None
        return {"ongoingIndicator": not record.get("closed"), "messagesInQueue": bool(record["queue"])}

    def _drop_if_done(self, record: dict[str, Any]) -> None:
        if record.get("closed") and not record["queue"]:
            self.records = [r for r in self.records if r is not record]

    def _save(self) -> None:
        self.b.store.put_json(EARLY_KEY, self.records)  # StorageError: the caller's (a point not journaled)

    # ================================================================ sending
    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Send the records' events, oldest first, when nothing older waits in the outbox."""
        while True:
            self._wake.clear()
            try:
                delay = await self._send_one()
            except StorageError as exc:
                log.error("EV-connected transactions: %s", exc)
                delay = self.b.scaled(POLL_S)
            if delay != 0.0:
                await sleep_or_event(self._wake, delay)

    def _blocked(self, record: dict[str, Any]) -> bool:
        """Older transaction messages in the outbox go first (those of the session it is tied to do not)."""
        items = [i for i in self.b.store.messages() if i.kind in TX_KINDS]
        tied = record.get("tied")
        first = min((i.seq for i in items if i.session_id == tied), default=None) if tied is not None else None
        return any(i.session_id != tied and (first is None or i.seq < first) for i in items)

    async def _send_one(self) -> float | None:
        """One try of the oldest unsent event; the time to wait before the next (None: until woken)."""
        record = next((r for r in self.records if r["queue"]), None)
        if record is None:
            return None
        if not self.b.link.accepted:
            return None  # registered() wakes us
        if self._blocked(record):
            return self.b.scaled(POLL_S)
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            entry = record["queue"][0]
            if record.get("decided") != entry["seqNo"]:  # offline decided once, journaled before the send
                record["decided"] = entry["seqNo"]
                if self._offline(entry["timestamp"]):
                    entry["offline"] = True  # E04.FR.03: it happened before this connection
                self._save()
            try:
                await self.b.link.request("TransactionEvent", entry)
            except BackendOffline:
                return None
            except CallFailed as exc:
                return self._failed(record, entry, str(exc))
            record["queue"].pop(0)
            record["attempts"] = 0
            self._drop_if_done(record)
            self._save()
        return 0.0

    def _failed(self, record: dict[str, Any], entry: dict[str, Any], problem: str) -> float:
        dm = self.b.devmodel
        attempts = dm.int("OCPPCommCtrlr", "MessageAttempts", "TransactionEvent")
        record["attempts"] = tries = int(record.get("attempts", 0)) + 1
        log.warning("TransactionEvent %s seqNo %d: %s (try %d of %d)", record["id"], entry["seqNo"], problem, tries,
                    attempts)
        if tries >= attempts:  # E13.FR.04: dropped, the next one goes
            log.error("TransactionEvent %s seqNo %d not processed after %d tries: dropped", record["id"],
                      entry["seqNo"], tries)
            record["queue"].pop(0)
            record["attempts"] = 0
            self._drop_if_done(record)
            self._save()
            return 0.0
        self._save()
        return self.b.scaled(dm.int("OCPPCommCtrlr", "MessageAttemptInterval", "TransactionEvent") * tries)

    def _offline(self, at: str | None) -> bool:
        since = self.b.online_since()
        if since is None:
            return True
        try:
            return parse_iso(self.b.resolve(at)) < since
        except ValueError:
            return True
