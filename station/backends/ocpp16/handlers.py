"""Central system -> charge point, the 1.6 feature profiles: validate, ask the station, answer.

Each `@on(action)` method gets the payload's top-level fields as keyword
arguments (snake_case; nested objects camelCase, as on the wire, see
station.backends.ocppj.rpc) and returns the answer as a dict. Anything that
sends a CALL of its own runs afterwards, in an `@after` hook or a job, so
that an incoming CALL is never held up by one of ours. Handlers use the
backend's public parts only (station control, keys, lists, profiles, link,
status, jobs).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on

from station.backends.ocppj.rpc import RpcError
from station.clock import MONO_PREFIX, iso, parse_iso
from station.core.model import ConnectorStatus
from station.core.ports import StationControl

if TYPE_CHECKING:
    from .api import Ocpp16Api

log = logging.getLogger(__name__)

Answer = dict[str, Any]
_START_STATES = (ConnectorStatus.AVAILABLE, ConnectorStatus.PREPARING, ConnectorStatus.RESERVED)


class CoreHandlers:
    def __init__(self, backend: Ocpp16Api) -> None:
        self.b = backend
        self._start_profile: dict[str, Any] | None = None  # the TxProfile of the last RemoteStartTransaction

    @property
    def control(self) -> StationControl:
        return self.b.control

    def connector_ok(self, connector_id: int | None, allow_zero: bool = True) -> bool:
        valid = {self.b.connector_id, 0} if allow_zero else {self.b.connector_id}
        return connector_id is None or connector_id in valid

    # ---------------------------------------------------------------- Core
    @on("ChangeAvailability")
    async def on_change_availability(self, connector_id: int, type: str, **_: Any) -> Answer:
        if not self.connector_ok(connector_id):
            return {"status": "Rejected"}
        operative = type == "Operative"
        status = self.b.status
        before = status.inoperative
        # Connector 0 is the charge point as a whole; Operative of either makes it operative again.
        status.set_inoperative(not operative and (connector_id == 0 or before))
        answer = await self.control.set_available(operative)
        if answer == "Rejected":
            status.set_inoperative(before)
        return {"status": answer}

    @after("ChangeAvailability")
    async def after_change_availability(self, **_: Any) -> None:
        await self.b.status.charge_point_changed()

    @on("ChangeConfiguration")
    def on_change_configuration(self, key: str, value: str, **_: Any) -> Answer:
        security = self.b.security
        security_key = security.canonical(key)
        if security_key is not None:
            return {"status": security.change(security_key, value)}
        return {"status": self.b.keys.change(key, value)}

    @after("ChangeConfiguration")
    async def after_change_configuration(self, **_: Any) -> None:
        await self.b.reconnect_if_requested()

    @on("GetConfiguration")
    def on_get_configuration(self, key: list[str] | None = None, **_: Any) -> Answer:
        security = self.b.security
        known, unknown = self.b.keys.report(key)
        if not key:
            known += [security.report(name) for name in sorted(security.KEY_NAMES)]
        else:
            still = []
            for name in unknown:
                canon = security.canonical(name)
                if canon is None:
                    still.append(name)
                else:
                    known.append(security.report(canon))
            unknown = still
        return {"configurationKey": known, **({"unknownKey": unknown} if unknown else {})}

    @on("ClearCache")
    def on_clear_cache(self, **_: Any) -> Answer:
        self.b.cache.clear()
        return {"status": "Accepted"}

    @on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, **_: Any) -> Answer:
        return {"status": "UnknownVendorId"}

    @on("RemoteStartTransaction")
    async def on_remote_start(self, id_tag: str, connector_id: int | None = None,
                              charging_profile: dict[str, Any] | None = None, **_: Any) -> Answer:
        if connector_id is not None and connector_id != self.b.connector_id:
            return {"status": "Rejected"}
        if charging_profile is not None and charging_profile.get("chargingProfilePurpose") != "TxProfile":
            return {"status": "Rejected"}
        self._start_profile = charging_profile
        if self.b.keys.bool("AuthorizeRemoteTxRequests"):  # authorized first, in the after-hook
            ok = self.control.current_session() is None and self.control.status().status in _START_STATES
            return {"status": "Accepted" if ok else "Rejected"}
        ok = await self.control.remote_start(id_tag, connector_id)
        if ok:
            self._install_start_profile()
        return {"status": "Accepted" if ok else "Rejected"}

    def _install_start_profile(self) -> None:
        if self._start_profile is not None:
            self.b.profiles.install_tx_profile(self.b.connector_id, self._start_profile)
            self.b.limits.wake()

    @after("RemoteStartTransaction")
    async def after_remote_start(self, id_tag: str, connector_id: int | None = None, **_: Any) -> None:
        if not self.b.keys.bool("AuthorizeRemoteTxRequests"):
            return
        result = await self.b.auth.authorize(id_tag)
        if not result.accepted:
            self.control.notice(f"remote start refused: {result.status.value}")
            return
        if await self.control.remote_start(id_tag, connector_id):
            self._install_start_profile()

    @on("RemoteStopTransaction")
    async def on_remote_stop(self, transaction_id: int, **_: Any) -> Answer:
        ok = await self.control.remote_stop(str(transaction_id))
        if not ok:
            # The station may not know the transactionId yet (it is recorded when the
            # StartTransaction answer comes back); this backend does.
            session, tx_id = self.b.active_transaction()
            if session is not None and tx_id == transaction_id:
                self.b.spawn(self.control.stop_session("Remote"), "ocpp-remote-stop")
                ok = True
        return {"status": "Accepted" if ok else "Rejected"}

    @on("Reset")
    def on_reset(self, type: str, **_: Any) -> Answer:
        return {"status": "Accepted"}

    @after("Reset")
    async def after_reset(self, type: str, **_: Any) -> None:
        self.b.security.event("ResetOrReboot", f"{type} reset requested by the central system")
        await self.control.reset(type == "Hard")

    @on("UnlockConnector")
    async def on_unlock_connector(self, connector_id: int, **_: Any) -> Answer:
        if connector_id != self.b.connector_id:
            return {"status": "NotSupported"}
        return {"status": await self.control.unlock()}

    # ---------------------------------------------------------------- Local auth list
    @on("GetLocalListVersion")
    def on_get_local_list_version(self, **_: Any) -> Answer:
        return {"listVersion": self.b.local_list.version}

    @on("SendLocalList")
    def on_send_local_list(self, list_version: int, update_type: str,
                           local_authorization_list: list[dict[str, Any]] | None = None, **_: Any) -> Answer:
        keys = self.b.keys
        status = self.b.local_list.update(list_version, update_type, local_authorization_list or [],
                                          keys.int("SendLocalListMaxLength"), keys.int("LocalAuthListMaxLength"))
        return {"status": status}

    # ---------------------------------------------------------------- Remote trigger
    @on("TriggerMessage")
    def on_trigger_message(self, requested_message: str, connector_id: int | None = None, **_: Any) -> Answer:
        if connector_id is not None and not self.connector_ok(connector_id):
            return {"status": "Rejected"}
        return {"status": "Accepted"}

    @after("TriggerMessage")
    async def after_trigger_message(self, requested_message: str, connector_id: int | None = None,
                                    **_: Any) -> None:
        if connector_id is not None and not self.connector_ok(connector_id):
            return
        await self.trigger(requested_message, connector_id)

    async def trigger(self, requested_message: str, connector_id: int | None) -> None:
        """Send the message TriggerMessage (or ExtendedTriggerMessage) asked for."""
        b = self.b
        if requested_message == "BootNotification":
            await b.link.trigger_boot()
        elif requested_message == "Heartbeat":
            await b.link.heartbeat()
        elif requested_message == "StatusNotification":
            for report in b.status.reports():
                if connector_id is None or report.connector_id == connector_id:
                    await b.status.send_now(report)
        elif requested_message == "MeterValues":
            await self._trigger_meter_values(connector_id)
        elif requested_message == "FirmwareStatusNotification":
            status = b.jobs.firmware_status
            await b.jobs.firmware_notice(status if status in ("Downloading", "Downloaded", "Installing") else "Idle")
        elif requested_message == "DiagnosticsStatusNotification":
            await b.jobs.diagnostics_notice("Uploading" if b.jobs.diagnostics_status == "Uploading" else "Idle")

    async def _trigger_meter_values(self, connector_id: int | None) -> None:
        reading = self.control.last_reading()
        for _ in range(30):  # just after start-up the meter may not have answered yet
            if reading is not None:
                break
            await asyncio.sleep(0.1)
            reading = self.control.last_reading()
        if reading is None:
            log.warning("TriggerMessage MeterValues: no meter reading to send")
            return
        mv = self.b.sampler.meter_value(reading, "MeterValuesSampledData", "Trigger", self.b.stamp())
        if mv is None:
            return
        payload: dict[str, Any] = {"connectorId": connector_id or self.b.connector_id, "meterValue": [mv]}
        tx_id = self.b.active_transaction()[1]
        if tx_id is not None:
            payload["transactionId"] = tx_id
        await self.b.link.notify("MeterValues", payload)

    # ---------------------------------------------------------------- Reservation
    @on("ReserveNow")
    async def on_reserve_now(self, connector_id: int, expiry_date: str, id_tag: str, reservation_id: int,
                             parent_id_tag: str | None = None, **_: Any) -> Answer:
        if connector_id == 0 and not self.b.keys.bool("ReserveConnectorZeroSupported"):
            return {"status": "Rejected"}
        if not self.connector_ok(connector_id):
            return {"status": "Rejected"}
        # The reservation's group is the parentIdTag ReserveNow gives (OCPP 1.6 §5.13), not one the
        # cache or the list knows for the tag: that would let other cards in and make the station ask
        # the central system about every card tapped at the reserved connector (OCTT TC_046_1).
        return {"status": await self.control.reserve(reservation_id, id_tag, parent_id_tag, expiry_date)}

    @on("CancelReservation")
    async def on_cancel_reservation(self, reservation_id: int, **_: Any) -> Answer:
        ok = await self.control.cancel_reservation(reservation_id)
        return {"status": "Accepted" if ok else "Rejected"}

    # ---------------------------------------------------------------- Smart charging
    @on("SetChargingProfile")
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict[str, Any], **_: Any) -> Answer:
        status = self.b.profiles.set(connector_id, cs_charging_profiles, self.b.active_transaction()[1])
        self.b.limits.wake()
        return {"status": status}

    @on("ClearChargingProfile")
    def on_clear_charging_profile(self, id: int | None = None, connector_id: int | None = None,
                                  charging_profile_purpose: str | None = None, stack_level: int | None = None,
                                  **_: Any) -> Answer:
        status = self.b.profiles.clear(id, connector_id, charging_profile_purpose, stack_level)
        self.b.limits.wake()
        return {"status": status}

    @on("GetCompositeSchedule")
    def on_get_composite_schedule(self, connector_id: int, duration: int, charging_rate_unit: str | None = None,
                                  **_: Any) -> Answer:
        if not self.connector_ok(connector_id):
            return {"status": "Rejected"}
        session, tx_id = self.b.active_transaction()
        tx_start = None
        if session is not None and session.started_at and not session.started_at.startswith(MONO_PREFIX):
            tx_start = parse_iso(session.started_at)
        now = self.b.now()
        schedule = self.b.profiles.composite(connector_id or self.b.connector_id, duration, charging_rate_unit, now,
                                             tx_start, tx_id)
        answer: Answer = {"status": "Accepted", "connectorId": connector_id,
                          "scheduleStart": iso(now.replace(microsecond=0))}
        if schedule is not None:
            answer["chargingSchedule"] = schedule
        return answer

    # ---------------------------------------------------------------- Firmware management
    @on("UpdateFirmware")
    def on_update_firmware(self, location: str, retrieve_date: str, retries: int | None = None,
                           retry_interval: int | None = None, **_: Any) -> Answer:
        # Installing code is running code: unsigned only where the installer said so (docs/security.md), and
        # never with the security extension in use (L01.FR.20).
        profile = self.b.security.profile
        if profile >= 1 or not self.b.config.firmware.allow_unsigned:
            why = f"security profile {profile}" if profile >= 1 else "firmware.allow_unsigned is off"
            log.warning("unsigned UpdateFirmware refused (%s)", why)
            self.b.security.event("InvalidFirmwareSignature", f"unsigned UpdateFirmware refused ({why})")
            raise RpcError("NotSupported", "unsigned firmware is not accepted: use SignedUpdateFirmware")
        self.b.jobs.update_firmware(location, retrieve_date, retries, retry_interval)
        return {}

    @on("GetDiagnostics")
    def on_get_diagnostics(self, location: str, retries: int | None = None, retry_interval: int | None = None,
                           start_time: str | None = None, stop_time: str | None = None, **_: Any) -> Answer:
        name = self.b.jobs.diagnostics_name()
        self.b.jobs.upload_diagnostics(name, location, retries, retry_interval, start_time, stop_time)
        return {"fileName": name}
