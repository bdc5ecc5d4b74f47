"""StatusNotification: connector 1 as the core reports it, connector 0 for the charge point as a whole.

Connector 1 is the station's only connector: every state change the core
reports is sent (after MinimumStatusDuration, when set: a status that did
not last that long is not reported).

Connector 0 is the charge point itself (OCPP 1.6 §4.9): Available,
Unavailable or Faulted. It is Faulted while the connector is Faulted (with
one connector, the station's faults are the charge point's), and Unavailable
only when the charge point as a whole was made Inoperative
(ChangeAvailability for connector 0) and that change has taken effect;
ChangeAvailability of connector 1 alone leaves connector 0 Available. The
choice is kept in the store ("ocpp.cp_inoperative"), so a restart keeps it.
Connector 0 is sent after a change of connector 1 only when its own status
changes.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from station.backends.ocppj.schema import OCPP16
from station.core.model import ConnectorStatus, StatusReport

if TYPE_CHECKING:
    from .api import Ocpp16Api

INOPERATIVE_KEY = "ocpp.cp_inoperative"
_ERROR_CODES = frozenset(OCPP16.schema("StatusNotification", False)["properties"]["errorCode"]["enum"])
_OUT = (ConnectorStatus.UNAVAILABLE, ConnectorStatus.FAULTED)


class StatusReporter:
    def __init__(self, backend: Ocpp16Api) -> None:
        self.b = backend
        self.inoperative = bool(backend.store.get_json(INOPERATIVE_KEY, False))
        self._sent: dict[int, tuple[Any, ...]] = {}  # connector -> what was last sent (status, error code)
        self._timers: dict[int, asyncio.Task[Any]] = {}

    def set_inoperative(self, inoperative: bool) -> None:
        """ChangeAvailability of connector 0 (True: Inoperative); of connector 1 Operative clears it."""
        if inoperative != self.inoperative:
            self.inoperative = inoperative
            self.b.store.put_json(INOPERATIVE_KEY, inoperative)

    def payload(self, report: StatusReport) -> dict[str, Any]:
        code = report.error_code if report.error_code in _ERROR_CODES else "OtherError"
        payload: dict[str, Any] = {"connectorId": report.connector_id, "errorCode": code,
                                   "status": report.status.value, "timestamp": self.b.resolve(report.timestamp)}
        vendor = report.vendor_error_code or (report.error_code if code != report.error_code else None)
        if report.info:
            payload["info"] = report.info[:50]
        if vendor:
            payload["vendorErrorCode"] = vendor[:50]
        return payload

    def charge_point(self, connector: StatusReport) -> StatusReport:
        """Connector 0's report, given connector 1's."""
        if connector.status is ConnectorStatus.FAULTED or (
                connector.status is ConnectorStatus.UNAVAILABLE and self.inoperative):
            return StatusReport(0, connector.status, connector.error_code, connector.info,
                                connector.vendor_error_code, connector.timestamp)
        return StatusReport(0, ConnectorStatus.AVAILABLE, "NoError", None, None, connector.timestamp)

    def reports(self) -> list[StatusReport]:
        """The current status of connectors 0 and 1."""
        report = self.b.control.status()
        return [self.charge_point(report), report]

    async def send_all(self) -> None:
        for report in self.reports():
            await self.send_now(report)

    async def send_now(self, report: StatusReport) -> None:
        payload = self.payload(report)
        if await self.b.link.notify("StatusNotification", payload) is not None:
            self._sent[report.connector_id] = (payload["status"], payload["errorCode"])

    async def changed(self, report: StatusReport) -> None:
        """The core reports a state change of connector 1."""
        if not self.b.link.accepted:
            return  # the current state is sent after the next BootNotification
        hold = self.b.keys.int("MinimumStatusDuration")
        if hold <= 0:
            await self._send_change(report)
            return
        # Only a status that stayed for MinimumStatusDuration is reported.
        pending = self._timers.pop(report.connector_id, None)
        if pending is not None:
            pending.cancel()
        self._timers[report.connector_id] = self.b.spawn(self._send_later(report, self.b.scaled(hold)),
                                                         "ocpp-status-hold")

    async def _send_later(self, report: StatusReport, delay: float) -> None:
        await asyncio.sleep(delay)
        self._timers.pop(report.connector_id, None)
        if self.b.link.accepted:
            await self._send_change(report)

    def _key(self, report: StatusReport) -> tuple[Any, ...]:
        return report.status.value, self.payload(report)["errorCode"]

    async def _send_change(self, report: StatusReport) -> None:
        await self.send_now(report)
        if report.connector_id != 0:
            zero = self.charge_point(report)
            if self._sent.get(0) != self._key(zero):
                await self.send_now(zero)

    async def charge_point_changed(self) -> None:
        """ChangeAvailability of connector 0 was answered: report connector 0 if that changed it while
        connector 1 stays as it was (no report of connector 1 is coming to carry it along)."""
        if not self.b.link.accepted:
            return
        report = self.b.control.status()
        if self._sent.get(report.connector_id) == self._key(report):
            zero = self.charge_point(report)
            if self._sent.get(0) != self._key(zero):
                await self.send_now(zero)
