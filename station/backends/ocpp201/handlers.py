"""Central system -> charging station, OCPP 2.0.1 blocks B, C/D, E, F, G, H, K: validate, ask, answer.

Each `@on(action)` method gets the payload's top-level fields as keyword
arguments (snake_case; nested objects as on the wire) and returns the answer.
Anything that sends a CALL of its own (NotifyReport, ReportChargingProfiles,
a triggered message) runs afterwards in an `@after` hook, so that the answer
goes first (F06.FR.04). Handlers use the version's public parts only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on

from station.backends.ocppj.rpc import RpcError
from station.clock import iso
from station.core.model import ConnectorStatus

from .authz import info_of, token_key
from .smart import composite_201
from .txevents import Point

if TYPE_CHECKING:
    from .api import Ocpp201Api
    from .variables import Var

log = logging.getLogger(__name__)

Answer = dict[str, Any]
_START_STATES = (ConnectorStatus.AVAILABLE, ConnectorStatus.PREPARING, ConnectorStatus.RESERVED)
_NOT_IMPLEMENTED = ("SignV2GCertificate", "SignCombinedCertificate", "PublishFirmwareStatusNotification")
RATED_W = 22000.0  # the EVSE's rating, its limit when no profile limits (3 x 32 A at 230 V)


def _rejected(reason: str, info: str | None = None) -> Answer:
    status_info: dict[str, Any] = {"reasonCode": reason[:20]}
    if info:
        status_info["additionalInfo"] = info[:512]
    return {"status": "Rejected", "statusInfo": status_info}


class CoreHandlers:
    def __init__(self, backend: Ocpp201Api) -> None:
        self.b = backend
        self._start_profile: dict[str, Any] | None = None
        self._reset_waiter: asyncio.Task[Any] | None = None

    def _items(self, instance: str, given: list[Any] | None) -> None:
        """B06.FR.16, B08.FR.17: more items than DeviceDataCtrlr.ItemsPerMessage -> CALLERROR."""
        if given and len(given) > self.b.devmodel.int("DeviceDataCtrlr", "ItemsPerMessage", instance):
            raise RpcError("OccurrenceConstraintViolation", f"more than ItemsPerMessage{instance} items")

    # ================================================================ B05/B06 variables
    @on("GetVariables")
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> Answer:
        self._items("GetVariables", get_variable_data)
        return {"getVariableResult": self.b.devmodel.get_variables(get_variable_data)}

    @on("SetVariables")
    def on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Answer:
        self._items("SetVariables", set_variable_data)
        return {"setVariableResult": self.b.devmodel.set_variables(set_variable_data)}

    @after("SetVariables")
    async def after_set_variables(self, **_: Any) -> None:
        await self.b.reconnect_if_requested()  # a new BasicAuthPassword: connect with it (A01)

    # ================================================================ B07/B08 reports
    @on("GetBaseReport")
    def on_get_base_report(self, request_id: int, report_base: str, **_: Any) -> Answer:
        return {"status": "Accepted" if self.b.devmodel.base_report(report_base) else "EmptyResultSet"}  # B07.FR.01

    @after("GetBaseReport")
    async def after_get_base_report(self, request_id: int, report_base: str, **_: Any) -> None:
        await self._notify_report(request_id, self.b.devmodel.base_report(report_base))

    @on("GetReport")
    def on_get_report(self, request_id: int, component_variable: list[dict[str, Any]] | None = None,
                      component_criteria: list[str] | None = None, **_: Any) -> Answer:
        self._items("GetReport", component_variable)
        found = self.b.devmodel.custom_report(component_variable, component_criteria)
        return {"status": "Accepted" if found else "EmptyResultSet"}  # B08.FR.01, B08.FR.15

    @after("GetReport")
    async def after_get_report(self, request_id: int, component_variable: list[dict[str, Any]] | None = None,
                               component_criteria: list[str] | None = None, **_: Any) -> None:
        await self._notify_report(request_id, self.b.devmodel.custom_report(component_variable, component_criteria))

    async def _notify_report(self, request_id: int, variables: list[Var]) -> None:
        """NotifyReport in parts of ItemsPerMessage[GetReport], seqNo from 0, tbc on all but the last
        (B07.FR.03/04/10, B08.FR.03/04/14)."""
        dm = self.b.devmodel
        size = max(1, dm.int("DeviceDataCtrlr", "ItemsPerMessage", "GetReport"))
        parts = [variables[i:i + size] for i in range(0, len(variables), size)]
        generated = self.b.stamp()
        for n, part in enumerate(parts):
            payload: Answer = {"requestId": request_id, "generatedAt": generated, "seqNo": n,
                               "reportData": [dm.report_data(v) for v in part]}
            if n + 1 < len(parts):
                payload["tbc"] = True
            if await self.b.link.notify("NotifyReport", payload) is None:
                return

    # ================================================================ B11/B12 reset
    @on("Reset")
    def on_reset(self, type: str, evse_id: int | None = None, **_: Any) -> Answer:
        if evse_id not in (None, 1):
            return _rejected("UnknownEvse")  # B11.FR.09
        busy = self.b.control.current_session() is not None
        return {"status": "Scheduled" if type == "OnIdle" and busy else "Accepted"}  # B12.FR.01/02

    @after("Reset")
    async def after_reset(self, type: str, evse_id: int | None = None, **_: Any) -> None:
        if evse_id not in (None, 1):
            return
        if type == "OnIdle":  # B12.FR.03/07: the transaction ends normally first
            if self._reset_waiter is None or self._reset_waiter.done():
                self._reset_waiter = self.b.spawn(self._reset_when_idle(evse_id), "ocpp-reset-on-idle")
            return
        await self._reset(evse_id)

    async def _reset_when_idle(self, evse_id: int | None) -> None:
        await self.b.jobs.wait_idle()
        await self._reset(evse_id)

    async def _reset(self, evse_id: int | None) -> None:
        control = self.b.control
        if evse_id is not None:  # B11.FR.08, B12.FR.08: the EVSE: its transaction ends, the station stays up
            if control.current_session() is not None:
                await control.stop_session("ImmediateReset")
            return
        self.b.security.event("ResetOrReboot", "reset requested by the central system")
        self.b.reboot_reason("RemoteReset")  # B01.FR.09
        await control.reset(True)  # B12.FR.04/05: the Ended goes out (or stays queued) before the restart

    @on("SetNetworkProfile")
    def on_set_network_profile(self, **_: Any) -> Answer:
        # B09: the connection comes from the installer's configuration (docs/ocpp201.md)
        return _rejected("NotSupported", "network profiles are set in the station's configuration file")

    # ================================================================ C, D authorization
    @on("ClearCache")
    def on_clear_cache(self, **_: Any) -> Answer:
        if not self.b.devmodel.bool("AuthCacheCtrlr", "Enabled"):
            return {"status": "Rejected"}  # C11.FR.04
        self.b.auth.cache.clear()
        return {"status": "Accepted"}  # C11.FR.03

    @on("SendLocalList")
    def on_send_local_list(self, version_number: int, update_type: str,
                           local_authorization_list: list[dict[str, Any]] | None = None, **_: Any) -> Answer:
        items = [(token_key(d["idToken"]), info_of(d["idTokenInfo"]) if d.get("idTokenInfo") else None)
                 for d in local_authorization_list or []]
        per_message = self.b.devmodel.int("LocalAuthListCtrlr", "ItemsPerMessage")
        status = self.b.auth.local_list.apply(version_number, update_type, items, per_message, 1000)
        return {"status": status}  # D01: Accepted, Failed, VersionMismatch

    @on("GetLocalListVersion")
    def on_get_local_list_version(self, **_: Any) -> Answer:
        if not self.b.devmodel.bool("LocalAuthListCtrlr", "Enabled"):
            return {"versionNumber": 0}  # D02.FR.03: no list in use
        return {"versionNumber": self.b.auth.local_list.version}  # D02.FR.01/02

    # ================================================================ E14 transaction status
    @on("GetTransactionStatus")
    def on_get_transaction_status(self, transaction_id: str | None = None, **_: Any) -> Answer:
        return self.b.tx.status(transaction_id)

    # ================================================================ F01-F04 remote start and stop
    @on("RequestStartTransaction")
    async def on_request_start(self, id_token: dict[str, Any], remote_start_id: int, evse_id: int | None = None,
                               charging_profile: dict[str, Any] | None = None, **_: Any) -> Answer:
        if not self.b.link.accepted:
            return _rejected("Pending")  # B02.FR.05
        if evse_id not in (None, 1):
            return _rejected("UnknownEvse")
        if charging_profile is not None:  # K05.FR.02, F01.FR.11, K05.FR.05
            if charging_profile.get("chargingProfilePurpose") != "TxProfile" or charging_profile.get("transactionId"):
                return _rejected("InvalidProfile")
            if self.b.smart.problem(1, charging_profile, "remote-start") is not None:
                return _rejected("InvalidProfile")
        self._start_profile = charging_profile
        if self.b.devmodel.bool("AuthCtrlr", "AuthorizeRemoteStart") and id_token.get("type") != "Central":
            # F01.FR.01: authorized first, as a local action would be (in the after-hook: a CALL of ours)
            state = self.b.control.status().status
            return {"status": "Accepted" if self.b.control.current_session() is None and state in _START_STATES
                    else "Rejected"}
        if not await self.b.control.remote_start(id_token["idToken"], 1):
            return {"status": "Rejected"}  # F01.FR.23/24
        self._started(remote_start_id, id_token)
        return {"status": "Accepted"}  # F01.FR.02

    def _started(self, remote_start_id: int, id_token: dict[str, Any]) -> None:
        self.b.remember_remote_start(remote_start_id, id_token)  # F02.FR.01: in the first event
        if self._start_profile is not None:
            self.b.smart.install_tx_profile(self._start_profile)  # K05.FR.03
            self.b.limits.wake()

    @after("RequestStartTransaction")
    async def after_request_start(self, id_token: dict[str, Any], remote_start_id: int, **_: Any) -> None:
        if not self.b.devmodel.bool("AuthCtrlr", "AuthorizeRemoteStart") or id_token.get("type") == "Central":
            return
        info, _offline = await self.b.auth.decide(id_token)
        if info.get("status") != "Accepted" or self.b.auth.is_master_pass(info):
            self.b.control.notice(f"remote start refused: {info.get('status')}")
            return
        if await self.b.control.remote_start(id_token["idToken"], 1):
            self._started(remote_start_id, id_token)

    @on("RequestStopTransaction")
    def on_request_stop(self, transaction_id: str, **_: Any) -> Answer:
        early = self.b.early.current()
        if early is not None and early["id"] == transaction_id:  # the EV's, no one authorized yet
            self.b.early.end(early, "RemoteStop", "Remote", None)  # F03.FR.07
            return {"status": "Accepted"}
        session = self.b.control.current_session()
        if session is None or session.state != "active" or self.b.transaction_id(session) != transaction_id:
            return {"status": "Rejected"}  # F03.FR.08
        self.b.spawn(self.b.control.stop_session("Remote"), "ocpp-remote-stop")
        return {"status": "Accepted"}  # F03.FR.07

    # ================================================================ F05 unlock, F06 trigger
    @on("UnlockConnector")
    def on_unlock_connector(self, evse_id: int, connector_id: int, **_: Any) -> Answer:
        if (evse_id, connector_id) != (1, 1):
            return {"status": "UnknownConnector"}  # F05.FR.03
        if self.b.control.current_session() is not None:
            return {"status": "OngoingAuthorizedTransaction"}  # F05.FR.02
        # F05.FR.05: the cable is fixed to the station; there is no lock it could release
        return {"status": "UnlockFailed", "statusInfo": {"reasonCode": "FixedCable",
                                                         "additionalInfo": "the cable is fixed: no connector lock"}}

    @on("TriggerMessage")
    def on_trigger_message(self, requested_message: str, evse: dict[str, Any] | None = None, **_: Any) -> Answer:
        if requested_message in _NOT_IMPLEMENTED:
            return {"status": "NotImplemented"}  # F06.FR.08
        if evse is not None and (evse.get("id") not in (0, 1) or evse.get("connectorId") not in (None, 1)):
            return {"status": "Rejected"}
        if requested_message == "BootNotification" and self.b.link.accepted:
            return {"status": "Rejected"}  # F06.FR.17
        if requested_message == "TransactionEvent" and self.b.active_session() is None:
            return {"status": "Rejected"}
        if requested_message == "SignChargingStationCertificate" and not self.b.security.cpo_name:
            return _rejected("NoOrganization", "SecurityCtrlr.OrganizationName is not set")
        return {"status": "Accepted"}

    @after("TriggerMessage")
    async def after_trigger_message(self, requested_message: str, evse: dict[str, Any] | None = None,
                                    **_: Any) -> None:
        if self.on_trigger_message(requested_message, evse)["status"] != "Accepted" \
                and requested_message != "BootNotification":
            return
        b = self.b
        if requested_message == "BootNotification":
            if not b.link.accepted:
                await b.link.trigger_boot()
        elif requested_message == "Heartbeat":
            await b.link.heartbeat()
        elif requested_message == "StatusNotification":
            await b.status.send_now(b.control.status())
        elif requested_message == "MeterValues":
            await self._trigger_meter_values()
        elif requested_message == "TransactionEvent":
            session = b.active_session()
            reading = b.control.last_reading()
            mv = None if reading is None else b.sampler.meter_value(
                reading, "SampledDataCtrlr", "TxUpdatedMeasurands", "Trigger", b.stamp())
            if session is not None:
                b.points.point(Point.TRIGGER, session.id, meter=mv)  # F06.FR.07
            elif (early := b.early.current()) is not None:
                b.early.trigger(early, mv)
        elif requested_message == "FirmwareStatusNotification":
            await b.jobs.signed_notice(*b.jobs.last_signed_status())  # F06.FR.16, L01.FR.25/26
        elif requested_message == "LogStatusNotification":
            jobs = b.jobs
            await jobs.log_notice("Uploading" if jobs.log_request is not None else "Idle", jobs.log_request)
        elif requested_message == "SignChargingStationCertificate":
            b.signing.request()  # A02, sent again while no certificate comes (A02.FR.17/18)

    async def _trigger_meter_values(self) -> None:
        """F06.FR.06: the latest values of AlignedDataCtrlr.Measurands."""
        reading = self.b.control.last_reading()
        for _ in range(30):  # just after start-up the meter may not have answered yet
            if reading is not None:
                break
            await asyncio.sleep(0.1)
            reading = self.b.control.last_reading()
        if reading is None:
            log.warning("TriggerMessage MeterValues: no meter reading to send")
            return
        mv = self.b.sampler.meter_value(reading, "AlignedDataCtrlr", "Measurands", "Trigger", self.b.stamp())
        if mv is not None:
            await self.b.link.notify("MeterValues", {"evseId": 1, "meterValue": [mv]})

    # ================================================================ G03/G04 availability
    @on("ChangeAvailability")
    async def on_change_availability(self, operational_status: str, evse: dict[str, Any] | None = None,
                                     **_: Any) -> Answer:
        return {"status": await self.b.status.change(operational_status, evse)}

    # ================================================================ H01/H02 reservations
    @on("ReserveNow")
    async def on_reserve_now(self, id: int, expiry_date_time: str, id_token: dict[str, Any],
                             evse_id: int | None = None, connector_type: str | None = None,
                             group_id_token: dict[str, Any] | None = None, **_: Any) -> Answer:
        if evse_id not in (None, 1):
            return _rejected("UnknownEvse")
        if connector_type is not None and connector_type != self.b.config.backend.ocpp.connector_type:
            return _rejected("UnknownConnectorType")  # H01.FR.06: no connector of that type
        group = group_id_token["idToken"] if group_id_token else None
        status = await self.b.control.reserve(id, id_token["idToken"], group, expiry_date_time)  # H01.FR.02/03/11-14
        if status == "Accepted":
            self.b.status.reserved(id, expiry_date_time, id_token["idToken"], group)
        return {"status": status}

    @on("CancelReservation")
    async def on_cancel_reservation(self, reservation_id: int, **_: Any) -> Answer:
        if await self.b.control.cancel_reservation(reservation_id):
            self.b.status.cancelled(reservation_id)
            return {"status": "Accepted"}  # H02.FR.02
        return {"status": "Rejected"}  # H02.FR.01

    # ================================================================ K smart charging
    def _tx(self) -> tuple[Any, Any]:
        """The running transaction's id and start, as the power limit reads them (one reading of both)."""
        return self.b.limits.tx_start()

    @on("SetChargingProfile")
    def on_set_charging_profile(self, evse_id: int, charging_profile: dict[str, Any], **_: Any) -> Answer:
        tx_id = self._tx()[0]
        problem = self.b.smart.problem(evse_id, charging_profile, tx_id)
        if problem is not None:
            return _rejected(problem)
        status = self.b.smart.set(evse_id, charging_profile, tx_id)  # K01.FR.05/07/27
        self.b.limits.wake()
        return {"status": status} if status == "Accepted" else _rejected("InvalidValue")

    @on("ClearChargingProfile")
    def on_clear_charging_profile(self, charging_profile_id: int | None = None,
                                  charging_profile_criteria: dict[str, Any] | None = None, **_: Any) -> Answer:
        if (charging_profile_criteria or {}).get("chargingProfilePurpose") == "ChargingStationExternalConstraints":
            return {"status": "Unknown"}  # K10.FR.06/08: not the central system's to clear
        status = self.b.smart.clear(charging_profile_id, charging_profile_criteria)  # K10.FR.01/03/04
        self.b.limits.wake()
        return {"status": status}

    @on("GetChargingProfiles")
    def on_get_charging_profiles(self, request_id: int, charging_profile: dict[str, Any], evse_id: int | None = None,
                                 **_: Any) -> Answer:
        return {"status": "Accepted" if self.b.smart.report(evse_id, charging_profile) else "NoProfiles"}

    @after("GetChargingProfiles")
    async def after_get_charging_profiles(self, request_id: int, charging_profile: dict[str, Any],
                                          evse_id: int | None = None, **_: Any) -> None:
        found = self.b.smart.report(evse_id, charging_profile)
        by_evse: dict[int, list[dict[str, Any]]] = {}
        for evse, profile in found:
            by_evse.setdefault(evse, []).append(profile)
        for n, (evse, profiles) in enumerate(sorted(by_evse.items())):
            payload: Answer = {"requestId": request_id, "chargingLimitSource": "CSO", "evseId": evse,
                               "chargingProfile": profiles}  # K09.FR.01
            if n + 1 < len(by_evse):
                payload["tbc"] = True  # K09.FR.02
            await self.b.link.notify("ReportChargingProfiles", payload)

    @on("GetCompositeSchedule")
    def on_get_composite_schedule(self, duration: int, evse_id: int, charging_rate_unit: str | None = None,
                                  **_: Any) -> Answer:
        if evse_id not in (0, 1):
            return _rejected("UnknownEvse")  # K08.FR.05
        unit = charging_rate_unit or "A"
        if unit not in self.b.devmodel.list("SmartChargingCtrlr", "RateUnit"):
            return _rejected("UnsupportedRateUnit")  # K08.FR.07
        tx_id, tx_start = self._tx()
        now = self.b.now().replace(microsecond=0)
        schedule = self.b.smart.profiles.composite(evse_id, duration, unit, now, tx_start, tx_id)
        rated = RATED_W if unit == "W" else round(RATED_W / (230.0 * 3), 1)
        periods = list(schedule["chargingSchedulePeriod"]) if schedule else []
        if not periods or periods[0]["startPeriod"] > 0:
            periods.insert(0, {"startPeriod": 0, "limit": rated, "numberPhases": 3})  # nothing limits: the rating
        composite = composite_201({"chargingSchedulePeriod": periods}, evse_id, duration, unit, iso(now))
        return {"status": "Accepted", "schedule": composite}  # K08.FR.02
