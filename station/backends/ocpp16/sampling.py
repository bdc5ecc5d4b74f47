"""OCPP 1.6 meter values: what is read at each tick of the shared clocks (station/backends/ocpp/sampling.py).

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
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from station.backends.ocpp.sampling import STOP_SAMPLES_MAX, MeterClock, Tick
from station.core.model import MeterReading, Session
from station.errors import StorageError

from . import metering

if TYPE_CHECKING:
    from datetime import datetime

    from station.clock import Clock

    from .api import Ocpp16Api

log = logging.getLogger(__name__)


class Sampler:
    def __init__(self, backend: Ocpp16Api) -> None:
        self.b = backend
        self.clocks = MeterClock(self)

    # -- the clocks' host ----------------------------------------------------------------
    @property
    def clock(self) -> Clock:
        return self.b.clock

    def active_session(self) -> Session | None:
        return self.b.active_session()

    def now(self) -> datetime:
        return self.b.now()

    def ticks(self) -> list[Tick]:
        keys = self.b.keys
        return [Tick("sampled", False, self.b.scaled(keys.int("MeterValueSampleInterval"))),
                Tick("aligned", True, self.b.scaled(keys.int("ClockAlignedDataInterval")))]

    async def tick(self, name: str, session: Session | None, stamp: str) -> None:
        if name == "sampled":
            await self._sample(session, stamp)
        else:
            await self._aligned(session, stamp)

    def transaction_ended(self) -> None:
        """TxProfiles and the invalid-id cap end with the transaction; a pending firmware install may go."""
        self.b.profiles.end_transaction()
        self.b.limits.transaction_ended()
        self.b.jobs.transaction_ended()

    async def run(self) -> None:
        await self.clocks.run()

    def wake(self) -> None:
        self.clocks.wake()

    # -- 1.6 ------------------------------------------------------------------------------------
    def meter_value(self, reading: MeterReading, key: str, context: str, stamp: str) -> dict[str, Any] | None:
        """A MeterValue of the measurands that key lists (and the meter has), or None."""
        have = self.b.measurands()  # once: it asks the station (meter, controller) each time
        wanted = [m for m in self.b.keys.list(key) if m in have]
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
