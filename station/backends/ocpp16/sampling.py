"""Meter values: sampled during a transaction, clock-aligned always, and the samples for StopTransaction.

Theory of operation
-------------------
One task (`Sampler.run`) keeps two clocks (station/backends/ocpp16/metering.py):

* sampled, every MeterValueSampleInterval seconds counted from the start of
  the transaction (context Sample.Periodic): MeterValuesSampledData goes
  into the durable outbox as MeterValues (with the transactionId, in order,
  kept while offline); StopTxnSampledData is kept in the store
  (`Store.add_sample`) for the StopTransaction's transactionData;
* clock-aligned, at every multiple of ClockAlignedDataInterval counted from
  midnight UTC (context Sample.Clock, stamped with the aligned instant):
  MeterValuesAlignedData into the outbox during a transaction, else sent
  directly for the connector; StopTxnAlignedData kept like the sampled ones.

The samples kept for a StopTransaction are bounded (STOP_SAMPLES_MAX per
session, see `Store.add_sample`: when full, every second one is dropped),
so the frame stays small: at most about 1 KiB per sample with every
measurand of a three-phase meter. They survive a restart with the journal.

The task sleeps until the next sample is due; nothing is polled. It is woken
when the core reports a state change (a transaction starts or ends with one)
and when an interval key changes; without a transaction and without
clock-aligned values it wakes every IDLE_S only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from station.clock import iso
from station.core.model import MeterReading, Session
from station.errors import StorageError

from . import metering
from .link import sleep_or_event

if TYPE_CHECKING:
    from .chargepoint import OcppBackend

log = logging.getLogger(__name__)

STOP_SAMPLES_MAX = 32  # samples kept per transaction for StopTransaction.transactionData
IDLE_S = 300.0  # nothing due: look again after this long anyway


class Sampler:
    def __init__(self, backend: OcppBackend) -> None:
        self.b = backend
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def meter_value(self, reading: MeterReading, key: str, context: str, stamp: str) -> dict[str, Any] | None:
        """A MeterValue of the measurands that key lists (and the meter has), or None."""
        wanted = [m for m in self.b.keys.list(key) if m in self.b.measurands()]
        values = metering.sampled_values(reading, wanted, context, self.b.control.offered_current())
        return {"timestamp": stamp, "sampledValue": values} if values else None

    def _keep_for_stop(self, session: Session, reading: MeterReading, key: str, context: str, stamp: str) -> None:
        mv = self.meter_value(reading, key, context, stamp)
        if mv is None:
            return
        try:
            self.b.store.add_sample(session.id, mv, keep=STOP_SAMPLES_MAX)
        except StorageError as exc:
            log.error("sample for StopTransaction not kept: %s", exc)

    async def run(self) -> None:
        session_id: int | None = None
        started = 0.0
        next_sample: float | None = None
        next_aligned: datetime | None = None
        intervals = (0.0, 0.0)
        while True:
            self._wake.clear()  # a wake from here on is seen: the next sleep returns at once
            wait = IDLE_S
            try:
                session = self.b.active_session()
                mono = time.monotonic()
                if (session.id if session else None) != session_id:
                    if session_id is not None:
                        self.b.transaction_ended()
                    session_id = session.id if session else None
                    started, next_sample = mono, None
                sample_s = self.b.scaled(self.b.keys.int("MeterValueSampleInterval"))
                aligned_s = self.b.scaled(self.b.keys.int("ClockAlignedDataInterval"))
                if (sample_s, aligned_s) != intervals:  # changed: start the clocks over
                    intervals, next_sample, next_aligned = (sample_s, aligned_s), None, None
                if session is None or sample_s <= 0:
                    next_sample = None
                elif next_sample is None:
                    next_sample = metering.next_sampled(started, mono, sample_s)
                now = self.b.now()
                if aligned_s <= 0:
                    next_aligned = None
                elif next_aligned is None:
                    next_aligned = metering.next_aligned(now, aligned_s)
                if next_sample is not None and mono >= next_sample:
                    next_sample = metering.next_sampled(started, mono, sample_s)
                    await self._sample(session, self.b.clock.stamp())
                if next_aligned is not None and now >= next_aligned:
                    stamp, next_aligned = iso(next_aligned), metering.next_aligned(now, aligned_s)
                    await self._aligned(session, stamp)
                if next_sample is not None:
                    wait = min(wait, next_sample - time.monotonic())
                if next_aligned is not None:
                    wait = min(wait, (next_aligned - self.b.now()).total_seconds())
            except Exception:
                log.exception("meter values: sampling failed")
            await sleep_or_event(self._wake, max(0.0, wait))

    async def _sample(self, session: Session | None, stamp: str) -> None:
        reading = self.b.control.last_reading()
        if reading is None or session is None:
            return
        mv = self.meter_value(reading, "MeterValuesSampledData", "Sample.Periodic", stamp)
        if mv:
            self.b.tx.queue_meter_value(session, mv)
        self._keep_for_stop(session, reading, "StopTxnSampledData", "Sample.Periodic", stamp)

    async def _aligned(self, session: Session | None, stamp: str) -> None:
        reading = self.b.control.last_reading()
        if reading is None:
            return
        mv = self.meter_value(reading, "MeterValuesAlignedData", "Sample.Clock", stamp)
        if session is not None:
            if mv:
                self.b.tx.queue_meter_value(session, mv)
            self._keep_for_stop(session, reading, "StopTxnAlignedData", "Sample.Clock", stamp)
        elif mv and self.b.link.accepted:
            payload = {"connectorId": self.b.connector_id, "meterValue": [mv]}
            self.b.spawn(self.b.link.notify("MeterValues", payload), "ocpp-aligned-values")
