"""OCPP 2.0.1 meter values (J01, J02): what is read at each tick of the shared clocks.

Four clocks (station/backends/ocpp/sampling.py), from the device model:

* SampledDataCtrlr.TxUpdatedInterval, from the start of the transaction:
  TxUpdatedMeasurands as a transaction point (TransactionEvent Updated,
  triggerReason MeterValuePeriodic, context Sample.Periodic, E02.FR.10);
* SampledDataCtrlr.TxEndedInterval: TxEndedMeasurands kept for the Ended
  event (context Sample.Periodic, E06.FR.11);
* AlignedDataCtrlr.Interval, from midnight UTC: Measurands as a transaction
  point during a transaction (triggerReason MeterValueClock, context
  Sample.Clock) unless SendDuringIdle, else as MeterValues for EVSE 1 (J01);
* AlignedDataCtrlr.TxEndedInterval: TxEndedMeasurands kept for the Ended
  event (context Sample.Clock).

Nothing is sampled while the controller's Enabled is false. The samples kept
for the end are bounded as in 1.6 (STOP_SAMPLES_MAX a transaction, every
second one dropped when full, E06.FR.12/13) and survive a restart with the
journal.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from station.backends.ocpp.sampling import STOP_SAMPLES_MAX, MeterClock, Tick
from station.core.model import MeterReading, Session
from station.errors import StorageError

from . import metering
from .txevents import Point

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Coroutine
    from datetime import datetime

    from station.backends.ocpp.host import LinkApi
    from station.clock import Clock
    from station.core.ports import StationControl

    from .devmodel import DeviceModel
    from .txpoints import TxPoints

log = logging.getLogger(__name__)

_SAMPLED, _ALIGNED = "SampledDataCtrlr", "AlignedDataCtrlr"


class SamplerHost(Protocol):
    devmodel: DeviceModel
    points: TxPoints

    @property
    def clock(self) -> Clock: ...

    @property
    def control(self) -> StationControl: ...

    @property
    def link(self) -> LinkApi: ...

    @property
    def store(self) -> Any: ...

    def active_session(self) -> Session | None: ...

    def now(self) -> datetime: ...

    def scaled(self, seconds: float) -> float: ...

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...

    def measurands(self) -> frozenset[str]: ...

    def transaction_ended(self) -> None: ...


class Sampler:
    def __init__(self, host: SamplerHost) -> None:
        self.b = host
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
        dm = self.b.devmodel

        def every(component: str, name: str) -> float:
            return self.b.scaled(dm.int(component, name)) if dm.bool(component, "Enabled") else 0.0

        return [Tick("updated", False, every(_SAMPLED, "TxUpdatedInterval")),
                Tick("ended", False, every(_SAMPLED, "TxEndedInterval")),
                Tick("aligned", True, every(_ALIGNED, "Interval")),
                Tick("aligned_ended", True, every(_ALIGNED, "TxEndedInterval"))]

    def transaction_ended(self) -> None:
        self.b.transaction_ended()

    async def run(self) -> None:
        await self.clocks.run()

    def wake(self) -> None:
        self.clocks.wake()

    async def tick(self, name: str, session: Session | None, stamp: str) -> None:
        reading = self.b.control.last_reading()
        if reading is None:
            return
        dm = self.b.devmodel
        if name == "updated" and session is not None:
            mv = self.meter_value(reading, _SAMPLED, "TxUpdatedMeasurands", "Sample.Periodic", stamp)
            if mv is not None:
                self.b.points.point(Point.METER, session.id, context="Sample.Periodic", meter=mv)
        elif name == "ended" and session is not None:
            self._keep(session, self.meter_value(reading, _SAMPLED, "TxEndedMeasurands", "Sample.Periodic", stamp))
        elif name == "aligned_ended" and session is not None:
            self._keep(session, self.meter_value(reading, _ALIGNED, "TxEndedMeasurands", "Sample.Clock", stamp))
        elif name == "aligned":
            mv = self.meter_value(reading, _ALIGNED, "Measurands", "Sample.Clock", stamp)
            if mv is None:
                return
            if session is not None:
                if not dm.bool(_ALIGNED, "SendDuringIdle"):
                    self.b.points.point(Point.METER, session.id, context="Sample.Clock", meter=mv)
            elif self.b.link.accepted:  # J01: outside a transaction, for the EVSE
                self.b.spawn(self.b.link.notify("MeterValues", {"evseId": 1, "meterValue": [mv]}),
                             "ocpp-aligned-values")

    def meter_value(self, reading: MeterReading, component: str, variable: str, context: str,
                    stamp: str) -> dict[str, Any] | None:
        have = self.b.measurands()  # once: it asks the station (meter, controller) each time
        wanted = [m for m in self.b.devmodel.list(component, variable) if m in have]
        return metering.meter_value(reading, wanted, context, stamp, self.b.control.offered_current())

    def _keep(self, session: Session, mv: dict[str, Any] | None) -> None:
        if mv is None:
            return
        try:
            self.b.store.add_sample(session.id, mv, keep=STOP_SAMPLES_MAX)
        except StorageError as exc:
            log.error("sample for the transaction's end not kept: %s", exc)
