"""The OCPP 1.6-J charge point: the `ocpp` backend, composed of one part per responsibility.

Theory of operation
-------------------
`OcppBackend` is what the core sees (station.core.ports.Backend): it
authorizes taps, delivers the outbox's transaction messages and reports
status. It owns the configuration keys, the local list and cache, the
charging profiles and the security state, and puts the parts together:

* link.py: the websocket, registration (BootNotification), heartbeat,
  requests and best-effort notifications, security event delivery;
* status.py: StatusNotification for connector 1 and connector 0;
* authz.py: local list, cache and the authorization decision (online and
  offline, so `authorize()` never raises BackendOffline);
* transactions.py: StartTransaction, StopTransaction and MeterValues from
  the durable outbox, with retries and idempotence;
* sampling.py: sampled and clock-aligned meter values, and the samples for
  StopTransaction;
* limits.py: the power limit from charging profiles (smart.py);
* handlers.py, sec_handlers.py: the central system's requests;
* jobs.py: firmware, diagnostics, logs and key renewal, on station.services.

Every task runs under the station's supervisor (`StationControl.spawn`); the
link loop is critical: it beats, and the station restarts when it stops.
All protocol intervals are multiplied by `time_scale` (1.0 in the field;
tests shrink it so a heartbeat of "10 s" takes a fraction of a second).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from station.clock import MONO_PREFIX, Clock, iso, parse_iso
from station.core.model import AuthResult, DeliveryResult, OutboxItem, Session, StatusReport
from station.core.ports import Backend, StationControl

from . import metering
from .authz import AuthCache, Authorizer, LocalList
from .confkeys import ConfigurationKeys
from .handlers import CoreHandlers
from .jobs import Jobs
from .limits import PowerLimit
from .link import DEADLINE_S, Link
from .sampling import Sampler
from .sec_handlers import SecurityHandlers
from .security import Security
from .smart import Profiles
from .status import StatusReporter
from .transactions import Transactions

if TYPE_CHECKING:
    from station.config import Config
    from station.store import Store

log = logging.getLogger(__name__)

SETTING_TIME_S = 60.0  # a clock correction larger than this is a SettingSystemTime security event


class OcppBackend(Backend):
    kind = "ocpp"

    def __init__(self, config: Config, store: Store, *, time_scale: float = 1.0) -> None:
        super().__init__()
        o = config.backend.ocpp
        self.config = config
        self.store = store
        self.charge_point_id = o.charge_point_id or config.station.name
        self.url = o.url.rstrip("/") + "/" + self.charge_point_id
        self.vendor, self.model = o.vendor, o.model
        self.ca_file = o.ca_file
        self.time_scale = time_scale
        self.response_timeout = 30.0
        self.clock = Clock()
        self.pip_command: list[str] | None = None  # None: `python -m pip install --upgrade` into sys.prefix
        self.log_dirs = [Path(config.station.state_dir) / "logs", Path("/var/log/station")]
        self.work_dir = Path(config.station.state_dir) / "ocpp"
        self.keys = ConfigurationKeys(store, self.measurands)
        self.keys.on_change = self._key_changed
        self.local_list = LocalList(store)
        self.cache = AuthCache(store)
        self.profiles = Profiles(store, self.keys)
        # OCPP 1.6 security whitepaper: profiles, credentials, certificates, security events.
        self.security = Security(config, store, self.charge_point_id, self.work_dir, lambda: self.clock.stamp())
        self.link = Link(self)
        self.security.events.on_event = self.link.security_event_queued
        self.status = StatusReporter(self)
        self.auth = Authorizer(self)
        self.tx = Transactions(self)
        self.sampler = Sampler(self)
        self.limits = PowerLimit(self)
        self.jobs = Jobs(self)
        core = CoreHandlers(self)
        self.handlers: list[object] = [core, SecurityHandlers(self, core)]
        self._tasks: list[asyncio.Task[Any]] = []  # the three loops
        self._spawned: set[asyncio.Task[Any]] = set()  # jobs, timers, connection tasks: cancelled by close()

    # ================================================================ lifecycle
    @property
    def control(self) -> StationControl:
        """The station (the core), once started."""
        if self.station is None:
            raise RuntimeError("the OCPP backend is not started")
        return self.station

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A task owned by the station's supervisor (failures are logged with the name); close() ends it."""
        task = self.control.spawn(coro, name)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)
        return task

    def measurands(self) -> frozenset[str]:
        source = self.station.meter_measurands() if self.station is not None else frozenset()
        if self.station is not None and self.station.offered_current() is not None:  # a charge controller
            source |= {metering.OFFERED}
        return metering.ocpp_measurands(source)

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale

    @property
    def connector_id(self) -> int:
        return int(self.config.station.connector_id)

    async def start(self, station: StationControl) -> None:
        await super().start(station)
        self.clock = station.clock  # one clock for the journal and the wire
        self._tune_station()
        self.security.event("StartupOfTheDevice", f"station {self.model} started")
        self._tasks = [
            station.spawn(self.link.run(), Link.NAME, critical=True, deadline_s=DEADLINE_S),
            station.spawn(self.sampler.run(), "ocpp-meter-values"),
            station.spawn(self.limits.run(), "ocpp-power-limit"),
        ]

    async def close(self) -> None:
        tasks = self._tasks + list(self._spawned)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = []
        self._set_online(False)

    async def wait_ready(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self.link.ready.wait()
        except TimeoutError:
            pass
        return self.online

    async def registered(self) -> None:
        """BootNotification was Accepted: the link is online."""
        self._set_online(True)  # the station wakes its deliverer when told the link is up
        await self.status.send_all()
        await self.jobs.send_pending()

    def link_lost(self) -> None:
        self._set_online(False)

    def _tune_station(self) -> None:
        try:
            self.control.tune(connection_timeout_s=self.scaled(self.keys.int("ConnectionTimeOut")),
                              stop_on_ev_disconnect=self.keys.bool("StopTransactionOnEVSideDisconnect"))
        except Exception as exc:  # a station without these settings still works
            log.debug("tune: %s", exc)

    def _key_changed(self, name: str, value: str) -> None:
        if self.station is None:
            return
        if name in ("ConnectionTimeOut", "StopTransactionOnEVSideDisconnect"):
            self._tune_station()
        elif name == "HeartbeatInterval":
            self.link.heartbeat_changed()
        elif name in ("MeterValueSampleInterval", "ClockAlignedDataInterval"):
            self.sampler.wake()

    async def reconnect_if_requested(self) -> None:
        """After a security change that needs it (new key, profile or certificate): connect again."""
        if self.security.reconnect_requested:
            self.security.reconnect_requested = False
            log.info("reconnecting to apply the new security settings")
            await self.link.reconnect()

    # ================================================================ time
    def now(self) -> datetime:
        """The station's time (the one clock of journal and wire); the system clock's estimate
        while it is not known."""
        return self.clock.estimate()

    def stamp(self) -> str:
        return iso(self.now())

    def resolve(self, stamp: str | None) -> str:
        """An ISO time for the wire: resolve monotonic stamps, never send 1970."""
        if stamp and stamp.startswith(MONO_PREFIX):
            stamp = self.clock.estimate_of(stamp)  # resolved, else the estimate it carries
        if not stamp:
            return self.stamp()
        try:
            return iso(parse_iso(stamp))
        except ValueError:
            return self.stamp()

    def set_time(self, current_time: str | None, round_trip_s: float = 0.0) -> None:
        """The central system's time (BootNotification, Heartbeat), read by it during a request that
        took `round_trip_s`: the clock takes it unless NTP has synchronized the system clock or
        the station's time already fits (station/clock.py). Counted once, whatever the system
        clock does later."""
        if not current_time:
            return
        before = self.now()
        try:
            if self.clock is self.control.clock:
                self.control.set_clock(current_time, round_trip_s)  # sets the shared clock too
            else:
                self.clock.set(current_time, round_trip_s=round_trip_s)
                self.control.set_clock(current_time, round_trip_s)
        except ValueError as exc:
            log.warning("central system time not used: %s", exc)
        moved = abs((self.now() - before).total_seconds())
        if moved > SETTING_TIME_S:
            self.security.event("SettingSystemTime", f"clock moved by {moved:.0f} s to the central system's time")
        if moved > 1.0:  # the aligned meter values and the profiles are due at other instants now
            self.sampler.wake()
            self.limits.wake()

    # ================================================================ sessions
    def active_session(self) -> Session | None:
        s = self.station.current_session() if self.station is not None else None
        return s if s is not None and s.state == "active" else None

    def transaction_id(self, session: Session) -> int | None:
        return self.tx.transaction_id(session)

    def active_transaction(self) -> tuple[Session | None, int | None]:
        """The running session and its transactionId (None until StartTransaction was answered)."""
        session = self.active_session()
        return session, (self.tx.transaction_id(session) if session is not None else None)

    def transaction_ended(self) -> None:
        """The sampler saw the transaction end: TxProfiles and the invalid-id cap end with it."""
        self.profiles.end_transaction()
        self.limits.transaction_ended()
        self.jobs.transaction_ended()

    # ================================================================ Backend
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

    # ================================================================ for diagnostics and tests
    @property
    def frames(self) -> deque[str]:
        """Recent frames (masked), newest last."""
        return self.link.frames

    @property
    def connections(self) -> int:
        return self.link.connections

    async def heartbeat(self) -> None:
        await self.link.heartbeat()

    def diagnostics_extra(self) -> dict[str, str]:
        """What the backend adds to a diagnostics archive: recent frames (id tags masked unless
        station.log_tags) and the configuration keys (never the AuthorizationKey)."""
        keys = self.keys.report(None)[0] + [self.security.report(n) for n in sorted(self.security.KEY_NAMES)]
        return {"ocpp-frames.txt": "\n".join(self.link.frames) + "\n",
                "ocpp-configuration.txt": "\n".join(f"{k['key']}={k.get('value', '(write-only)')}" for k in keys) + "\n"}


def create(config: Config, store: Store) -> OcppBackend:
    return OcppBackend(config, store)
