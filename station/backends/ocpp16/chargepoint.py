"""OCPP 1.6-J: the version the `ocpp` backend runs when the central system chooses subprotocol ocpp1.6.

Theory of operation
-------------------
`Ocpp16` is one version of the OCPP backend (station/backends/ocpp/backend.py,
which owns the link, the security state and the clock, and answers the core
through the active version). It owns the 1.6 configuration keys, the local
list and cache, the charging profiles, and puts the 1.6 parts together:

* status.py: StatusNotification for connector 1 and connector 0;
* authz.py: Authorize and the 1.6 keys around the shared list, cache and
  decision (online and offline, so `authorize()` never raises BackendOffline);
* transactions.py: StartTransaction, StopTransaction and MeterValues from
  the durable outbox, with retries and idempotence;
* sampling.py: sampled and clock-aligned meter values on the shared clocks,
  and the samples for StopTransaction;
* handlers.py, sec_handlers.py: the central system's requests;
* shared (station/backends/ocpp): the power limit from the charging
  profiles (limits.py, smart.py), firmware, diagnostics, logs and key
  renewal (jobs.py).

Its loops (meter values, power limit) run only while it is the active
version; the link loop is the backend's.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from station import __version__
from station.backends.ocpp.engine import VersionBase
from station.backends.ocpp.jobs import Jobs
from station.backends.ocpp.limits import PowerLimit
from station.backends.ocpp.smart import Profiles, Rules
from station.backends.ocppj.schema import OCPP16
from station.core.model import AuthResult, DeliveryResult, OutboxItem, Session, StatusReport

from . import metering
from .authz import AuthCache, Authorizer, LocalList
from .confkeys import ConfigurationKeys
from .handlers import CoreHandlers
from .sampling import Sampler
from .sec_handlers import SecurityHandlers
from .status import StatusReporter
from .transactions import Transactions

if TYPE_CHECKING:
    from station.backends.ocpp.host import Host

log = logging.getLogger(__name__)


def rules(keys: ConfigurationKeys) -> Rules:
    """What a charging profile may be, from the SmartCharging keys."""
    units = {"Current": "A", "Power": "W"}
    return Rules(connectors=keys.int("NumberOfConnectors"), max_stack_level=keys.int("ChargeProfileMaxStackLevel"),
                 rate_units=frozenset(units.get(u, u) for u in keys.list("ChargingScheduleAllowedChargingRateUnit")),
                 max_periods=keys.int("ChargingScheduleMaxPeriods"),
                 max_installed=keys.int("MaxChargingProfilesInstalled"))


class Ocpp16(VersionBase):
    name = "1.6"
    dialect = OCPP16
    refuse_when_rejected: str | None = None  # 1.6: a rejected charge point answers nothing

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        store = host.store
        self.keys = ConfigurationKeys(store, self.measurands)
        self.keys.on_change = self._key_changed
        self.local_list = LocalList(store)
        self.cache = AuthCache(store)
        self.profiles = Profiles(store, rules(self.keys))
        self.status = StatusReporter(self)
        self.auth = Authorizer(self)
        self.tx = Transactions(self)
        self.sampler = Sampler(self)
        self.limits = PowerLimit(self)
        self.jobs = Jobs(self, firmware_action="SignedFirmwareStatusNotification")
        core = CoreHandlers(self)
        self.handlers: list[object] = [core, SecurityHandlers(self, core)]

    # ================================================================ life
    def start(self) -> None:
        self._tune_station()
        self.run_loops((self.sampler.run, "ocpp-meter-values"), (self.limits.run, "ocpp-power-limit"))

    def measurands(self) -> frozenset[str]:
        station = self.host.station
        source = station.meter_measurands() if station is not None else frozenset()
        if station is not None and station.offered_current() is not None:  # a charge controller
            source |= {metering.OFFERED}
        return metering.ocpp_measurands(source)

    def _tune_station(self) -> None:
        try:
            self.control.tune(connection_timeout_s=self.scaled(self.keys.int("ConnectionTimeOut")),
                              stop_on_ev_disconnect=self.keys.bool("StopTransactionOnEVSideDisconnect"))
        except Exception as exc:  # a station without these settings still works
            log.debug("tune: %s", exc)

    def _key_changed(self, name: str, value: str) -> None:
        if self.host.station is None:
            return
        if name in ("ConnectionTimeOut", "StopTransactionOnEVSideDisconnect"):
            self._tune_station()
        elif name == "HeartbeatInterval":
            self.link.heartbeat_changed()
        elif name in ("MeterValueSampleInterval", "ClockAlignedDataInterval"):
            self.sampler.wake()

    def time_changed(self) -> None:
        self.sampler.wake()
        self.limits.wake()

    # ================================================================ the link
    def boot_payload(self) -> dict[str, Any]:
        payload = {"chargePointVendor": self.vendor[:20], "chargePointModel": self.model[:20],
                   "firmwareVersion": str(__version__)[:50]}
        meter = self.control.meter_model
        if meter:
            payload["meterType"] = meter[:25]
        return payload

    def boot_accepted(self, interval: int) -> None:
        if str(interval) != self.keys.get("HeartbeatInterval"):
            self.keys.change("HeartbeatInterval", str(interval))

    def heartbeat_interval(self) -> int:
        return self.keys.int("HeartbeatInterval")

    def ping_interval(self) -> int:
        return self.keys.int("WebSocketPingInterval")

    def security_event(self, kind: str, timestamp: str, tech_info: str | None) -> dict[str, Any]:
        payload = {"type": kind, "timestamp": timestamp}
        if tech_info:
            payload["techInfo"] = tech_info
        return payload

    async def registered(self) -> None:
        await self.status.send_all()
        await self.jobs.send_pending()

    def link_lost(self) -> None:
        pass

    # ================================================================ sessions
    def transaction_id(self, session: Session) -> int | None:
        return self.tx.transaction_id(session)

    def active_transaction(self) -> tuple[Session | None, int | None]:
        """The running session and its transactionId (None until StartTransaction was answered)."""
        session = self.active_session()
        return session, (self.tx.transaction_id(session) if session is not None else None)

    # ================================================================ the core's Backend
    async def authorize(self, id_tag: str, session: Session | None = None) -> AuthResult:
        return await self.auth.authorize(id_tag)

    async def parent_of(self, id_tag: str) -> str | None:
        """The parentIdTag of a tag (the core asks when another card wants to stop a session)."""
        result = await self.auth.authorize(id_tag)
        return result.parent_id if result.accepted else None

    async def deliver(self, item: OutboxItem, session: Session) -> DeliveryResult:
        return await self.tx.deliver(item, session)

    async def send_status(self, report: StatusReport) -> None:
        self.sampler.wake()  # a transaction starts or ends with a state change
        self.limits.wake()
        await self.status.changed(report)

    def diagnostics_extra(self) -> dict[str, str]:
        """Recent frames (id tags masked unless station.log_tags) and the configuration keys (never the
        AuthorizationKey)."""
        security = self.security
        keys = self.keys.report(None)[0] + [security.report(n) for n in sorted(security.KEY_NAMES)]
        return {"ocpp-frames.txt": "\n".join(self.link.frames) + "\n",
                "ocpp-configuration.txt": "\n".join(f"{k['key']}={k.get('value', '(write-only)')}" for k in keys) + "\n"}


def make(host: Host) -> Ocpp16:
    return Ocpp16(host)
