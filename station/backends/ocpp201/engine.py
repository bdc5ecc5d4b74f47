"""OCPP 2.0.1: the version the `ocpp` backend runs when the central system chooses subprotocol ocpp2.0.1.

Theory of operation
-------------------
`Ocpp201` is one version of the OCPP backend (station/backends/ocpp/backend.py
owns the link, the security state and the clock, and answers the core
through the active version): a charging station with one EVSE (id 1) and one
connector (id 1). It puts the 2.0.1 parts together:

* devmodel.py, variables.py: the device model (B05-B08), in the journal;
* authz.py: idTokens, AuthorizeRequest, local list, cache, groups, master pass;
* txpoints.py: the core's transaction facts as transaction points, journaled;
* txevents.py: each point as a TransactionEvent; early.py: a transaction the
  EV started before an authorization (TxStartPoint EVConnected);
* transactions.py: TransactionEvents from the outbox, seqNo, retries, offline;
* status.py: StatusNotification, ChangeAvailability, reservation ends;
* sampling.py: sampled and clock-aligned meter values on the shared clocks;
* smart.py: charging profiles, on the shared arithmetic and power limit;
* handlers.py, sec_handlers.py: the central system's requests;
* shared (station/backends/ocpp): link, security, jobs (firmware, logs,
  key renewal), limits.

Its loops (meter values, power limit) run only while it is the active
version. What this station cannot do is said where it is asked: unknown
variables, NotSupported actions, Rejected requests (docs/ocpp201.md lists
them, and why).
"""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from station import __version__
from station.backends.ocpp.engine import VersionBase
from station.backends.ocpp.jobs import Jobs
from station.backends.ocpp.limits import PowerLimit
from station.backends.ocpp.smart import Rules
from station.backends.ocppj.schema import OCPP201
from station.core.model import AuthResult, DeliveryResult, OutboxItem, Session, StatusReport, TxFact
from station.errors import StorageError

from . import metering
from .authz import Authorizer
from .devmodel import DeviceModel
from .early import EarlyTx
from .handlers import CoreHandlers
from .names import event_name
from .sampling import Sampler
from .sec_handlers import SecurityHandlers
from .signing import CertSigning
from .smart import Smart
from .status import StatusReporter
from .transactions import Transactions
from .txevents import TxEvents
from .txpoints import TxPoints, stops_when_ev_leaves
from .variables import Var

if TYPE_CHECKING:
    from station.backends.ocpp.host import Host

log = logging.getLogger(__name__)

REMOTE_KEY = "ocpp201.remote_start"  # the RequestStartTransaction waiting for its session
BOOT_KEY = "ocpp201.boot_reason"  # why the next BootNotification is sent (B01.FR.09)


class Ocpp201(VersionBase):
    name = "2.0.1"
    dialect = OCPP201
    refuse_when_rejected: str | None = "SecurityError"  # B03.FR.08

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        store = host.store
        self.devmodel = DeviceModel(store, self._live, self.measurands)
        self.devmodel.on_change = self._variable_changed
        security = host.security
        self.devmodel.setters["SecurityCtrlr/BasicAuthPassword"] = security.set_password
        self.devmodel.setters["SecurityCtrlr/OrganizationName"] = security.set_cpo_name
        self.auth = Authorizer(store, self.devmodel, host.link, self.now)
        self.status = StatusReporter(self)
        self.events = TxEvents(self)
        self.early = EarlyTx(self)
        self.points = TxPoints(self)
        self.tx = Transactions(self)
        dm = self.devmodel
        self.smart = Smart(store, Rules(connectors=1, max_stack_level=dm.int("SmartChargingCtrlr", "ProfileStackLevel"),
                                        rate_units=frozenset(dm.list("SmartChargingCtrlr", "RateUnit")),
                                        max_periods=dm.int("SmartChargingCtrlr", "PeriodsPerSchedule"),
                                        max_installed=16))
        self.profiles = self.smart.profiles
        self.limits = PowerLimit(self)
        self.sampler = Sampler(self)
        self.jobs = Jobs(self, firmware_action="FirmwareStatusNotification")
        self.signing = CertSigning(self)
        core = CoreHandlers(self)
        self.handlers: list[object] = [core, SecurityHandlers(self, core)]
        self._online_since: datetime | None = None
        self._offline_mono: float | None = None  # when the link was lost (B04, OfflineThreshold)

    # ================================================================ life
    def start(self) -> None:
        self._tune_station()
        self.points.recover()  # once per process: what a power cut left open ends (E07.FR.06)
        self.host.spawn(self.status.restore(), "ocpp-reservation-restore")  # B11.FR.05
        self.run_loops((self.sampler.run, "ocpp-meter-values"), (self.limits.run, "ocpp-power-limit"),
                       (self.early.run, "ocpp-ev-connected-transactions"))

    def measurands(self) -> frozenset[str]:
        station = self.host.station
        source = set(station.meter_measurands()) if station is not None else set()
        if station is not None and station.offered_current() is not None:  # a charge controller (as in 1.6)
            source.add(metering.OFFERED)
        return metering.measurands(source)

    def _tune_station(self) -> None:
        dm = self.devmodel
        try:
            self.control.tune(connection_timeout_s=self.scaled(dm.int("TxCtrlr", "EVConnectionTimeOut")),
                              stop_on_ev_disconnect=stops_when_ev_leaves(dm))
        except Exception as exc:  # a station without these settings still works
            log.debug("tune: %s", exc)

    def _variable_changed(self, var: Var, value: str) -> None:
        if self.host.station is None:
            return
        if var.component == "TxCtrlr" and var.name in ("EVConnectionTimeOut", "StopTxOnEVSideDisconnect",
                                                        "TxStopPoint"):
            self._tune_station()
        elif var.key == "OCPPCommCtrlr/HeartbeatInterval":
            self.link.heartbeat_changed()
        elif var.component in ("SampledDataCtrlr", "AlignedDataCtrlr"):
            self.sampler.wake()

    def time_changed(self) -> None:
        self.sampler.wake()
        self.limits.wake()

    def transaction_ended(self) -> None:
        """The session ended: TxProfiles and the invalid-id cap end with it; a pending install may go."""
        self.profiles.end_transaction()
        self.limits.transaction_ended()
        self.jobs.transaction_ended()

    # ================================================================ the device model's live values
    def _live(self, var: Var) -> str:
        station = self.host.station
        if var.name == "AvailabilityState":
            if station is None:
                return "Unavailable"
            state = self.status.shown(station.status().status)
            operative = self.status.operative
            if var.component == "ChargingStation" and not operative["station"]:
                return "Unavailable"
            if var.component == "EVSE" and not (operative["station"] and operative["evse"]):
                return "Unavailable"
            return state
        if var.name == "Model":
            return self.model[:20]
        if var.name == "VendorName":
            return self.vendor[:50]
        if var.name == "SupplyPhases":
            reading = station.last_reading() if station is not None else None
            return str(len(reading.voltage_v) if reading is not None and reading.voltage_v else 3)
        if var.name == "Power":
            reading = station.last_reading() if station is not None else None
            return f"{(reading.power_w or 0.0) if reading is not None else 0.0:.1f}"
        if var.name == "ConnectorType":
            return str(self.config.backend.ocpp.connector_type)
        if var.name == "DateTime":
            return self.stamp()
        if var.name == "CertificateEntries":
            certs = self.work_dir / "certs"
            return str(sum(len(list((certs / kind).glob("*.pem"))) for kind in ("csms", "manufacturer")))
        if var.name == "Identity":
            return self.charge_point_id
        if var.name == "OrganizationName":
            return self.security.cpo_name
        if var.name == "SecurityProfile":
            return str(self.security.profile)
        if var.component == "LocalAuthListCtrlr" and var.name == "Entries":
            return str(len(self.auth.local_list.entries))
        if var.component == "SmartChargingCtrlr" and var.name == "Entries":
            return str(self.smart.count)
        return var.default

    # ================================================================ the link
    def boot_payload(self) -> dict[str, Any]:
        reason = "PowerUp"
        try:
            reason = self.store.get_json(BOOT_KEY, None) or reason
        except StorageError:
            pass
        return {"reason": reason, "chargingStation": {"model": self.model[:20], "vendorName": self.vendor[:50],
                                                      "firmwareVersion": str(__version__)[:50],
                                                      "serialNumber": self.charge_point_id[:25]}}

    def boot_accepted(self, interval: int) -> None:
        if str(interval) != self.devmodel.get("OCPPCommCtrlr", "HeartbeatInterval"):
            self.devmodel.set("OCPPCommCtrlr", "HeartbeatInterval", str(interval))  # B01.FR.04
        if self.store.get_json(BOOT_KEY, None) is not None:
            self.store.put_json(BOOT_KEY, None)  # the reason is told once

    def reboot_reason(self, reason: str) -> None:
        """The station is about to restart: why, for the next BootNotification (B01.FR.09)."""
        self.store.put_json(BOOT_KEY, reason)

    def reconnect_delay(self, failures: int) -> float | None:
        """Part 4 §5.3: RetryBackOffWaitMinimum, doubled after each failed attempt at most
        RetryBackOffRepeatTimes times, plus a random 0..RetryBackOffRandomRange s each time."""
        dm = self.devmodel
        doubled = dm.int("OCPPCommCtrlr", "RetryBackOffWaitMinimum") * 2 ** min(
            failures, dm.int("OCPPCommCtrlr", "RetryBackOffRepeatTimes"))
        return self.scaled(doubled + random.uniform(0, dm.int("OCPPCommCtrlr", "RetryBackOffRandomRange")))

    def heartbeat_interval(self) -> int:
        return self.devmodel.int("OCPPCommCtrlr", "HeartbeatInterval")

    def ping_interval(self) -> int:
        return self.devmodel.int("OCPPCommCtrlr", "WebSocketPingInterval")

    def security_event(self, kind: str, timestamp: str, tech_info: str | None) -> dict[str, Any]:
        payload = {"type": event_name(kind), "timestamp": timestamp}
        if tech_info:
            payload["techInfo"] = tech_info[:255]
        return payload

    async def registered(self) -> None:
        offline_s = None if self._offline_mono is None else time.monotonic() - self._offline_mono
        self._online_since = self.now()
        self.auth.online = True
        self._offline_mono = None
        await self.status.registered(offline_s / self.time_scale if offline_s is not None and self.time_scale else
                                     offline_s)
        self.early.wake()
        await self.jobs.send_pending()

    def link_lost(self) -> None:
        self._online_since = None
        self.auth.online = False
        if self._offline_mono is None:
            self._offline_mono = time.monotonic()

    def online_since(self) -> datetime | None:
        return self._online_since

    # ================================================================ sessions
    def transaction_id(self, session: Session) -> str | None:
        return self.tx.transaction_id(session)

    def token_of(self, id_tag: str) -> dict[str, Any]:
        return self.auth.token(id_tag)

    def is_master_pass(self, id_tag: str) -> bool:
        return self.auth.is_master_pass(self.auth.lookup(self.auth.token(id_tag)))

    def remember_remote_start(self, remote_start_id: int, token: dict[str, Any]) -> None:
        self.auth.types[token["idToken"].strip().upper()] = token["type"]
        self.store.put_json(REMOTE_KEY, {"remoteStartId": remote_start_id, "idToken": token, "at": self.stamp()})

    def take_remote_start(self, session: Session) -> dict[str, Any] | None:
        pending = self.store.get_json(REMOTE_KEY, None)
        if not pending or pending["idToken"]["idToken"].strip().upper() != session.id_tag.strip().upper():
            return None
        self.store.put_json(REMOTE_KEY, None)
        return {"remoteStartId": pending["remoteStartId"], "idToken": pending["idToken"]}

    def samples(self, session: Session) -> list[dict[str, Any]]:
        try:
            kept = self.store.samples(session.id)
        except StorageError as exc:
            log.error("samples of session %d not read: %s", session.id, exc)
            return []
        return [{**mv, "timestamp": self.resolve(mv["timestamp"])} for mv in kept if self.clock.resolve(mv["timestamp"])]

    # ================================================================ the core's Backend
    async def authorize(self, id_tag: str, session: Session | None = None) -> AuthResult:
        token = self.auth.token(id_tag)
        info, offline = await self.auth.decide(token)
        return self.auth.result(token, info, offline, self.now())

    async def parent_of(self, id_tag: str) -> str | None:
        """The group of a card tapped during a session: the same as the session's when it may stop it
        (C09.FR.03; a master pass stops any, C16.FR.02)."""
        token = self.auth.token(id_tag)
        info, offline = await self.auth.decide(token)
        session = self.control.current_session()
        if self.auth.is_master_pass(info) and session is not None:
            return session.parent_id
        result = self.auth.result(token, info, offline, self.now())
        return result.parent_id if result.accepted else None

    async def deliver(self, item: OutboxItem, session: Session) -> DeliveryResult:
        return await self.tx.deliver(item, session)

    async def send_status(self, report: StatusReport) -> None:
        self.sampler.wake()  # a transaction starts or ends with a state change
        self.limits.wake()
        self.points.charging_state(report)
        await self.status.changed(report)

    def transaction_fact(self, fact: TxFact, session: Session | None) -> None:
        """The core's transaction facts: the transaction points (txpoints.py)."""
        self.points.fact(fact, session)

    def diagnostics_extra(self) -> dict[str, str]:
        """Recent frames (id tags masked unless station.log_tags) and the device model (never the password)."""
        return {"ocpp-frames.txt": "\n".join(self.link.frames) + "\n",
                "ocpp-variables.txt": self.devmodel.settings_text()}


def make(host: Host) -> Ocpp201:
    return Ocpp201(host)
