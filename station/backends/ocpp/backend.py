"""The `ocpp` backend the core sees: one object, OCPP 1.6-J or 2.0.1 as the central system chooses.

Theory of operation
-------------------
`OcppBackend` implements station.core.ports.Backend. It owns what both
versions share: the link (link.py: websocket, security profiles 0-3,
reconnect with backoff, BootNotification, heartbeat, security events), the
security state (security.py), the clock, and the tasks it starts for its
parts. `backend.ocpp.versions` lists the versions to offer, in order of
preference; each is a websocket subprotocol ("ocpp2.0.1", "ocpp1.6"), and
the central system picks one in the handshake. That version becomes the
*active* one: it answers the core (authorize, deliver, status), handles the
central system's requests on that connection, and runs its meter-value and
power-limit loops; the other one sleeps. The choice is kept in the store
("ocpp.version"), so a station that starts offline decides and journals as
its central system last spoke; before any connection the first version of
the list is active.

The versions live in station/backends/ocpp16 and station/backends/ocpp201
and are imported only when configured (a 1.6 station never loads the 2.0.1
code). Transaction messages are written to the core's outbox as the core
and each version define them; a message queued under one version that the
other cannot send (a central system that changed its version between the
event and the delivery) is refused with the reason kept on the session.

All protocol intervals are multiplied by `time_scale` (1.0 in the field;
tests shrink it so a heartbeat of "10 s" takes a fraction of a second).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from station.clock import MONO_PREFIX, Clock, iso, parse_iso
from station.core.model import AuthResult, DeliveryResult, OutboxItem, Session, StatusReport, TxFact
from station.core.ports import Backend, StationControl

from .link import DEADLINE_S, Link
from .security import Security

if TYPE_CHECKING:
    from station.config import Config
    from station.store import Store

    from .host import Version

log = logging.getLogger(__name__)

SETTING_TIME_S = 60.0  # a clock correction larger than this is a SettingSystemTime security event
VERSION_KEY = "ocpp.version"  # the version of the last connection
# version -> the module whose `make(host)` builds it (imported only when configured)
VERSIONS = {"1.6": "station.backends.ocpp16.chargepoint", "2.0.1": "station.backends.ocpp201.engine"}


class OcppBackend(Backend):
    kind = "ocpp"

    def __init__(self, config: Config, store: Store, *, time_scale: float = 1.0) -> None:
        super().__init__()
        o = config.backend.ocpp
        self.config = config
        self.store = store
        self.charge_point_id: str = o.charge_point_id or config.station.name
        self.url = o.url.rstrip("/") + "/" + self.charge_point_id
        self.vendor: str = o.vendor
        self.model: str = o.model
        self.ca_file: str | None = o.ca_file
        self.time_scale = time_scale
        self.response_timeout = 30.0
        self.clock = Clock()
        self.pip_command: list[str] | None = None  # None: `python -m pip install --upgrade` into sys.prefix
        self.log_dirs = [Path(config.station.state_dir) / "logs", Path("/var/log/station")]
        self.work_dir = Path(config.station.state_dir) / "ocpp"
        # OCPP security (1.6 whitepaper, 2.0.1 block A): profiles, credentials, certificates, events.
        self.security = Security(config, store, self.charge_point_id, self.work_dir, lambda: self.clock.stamp())
        self.link = Link(self)
        self.security.events.on_event = self.link.security_event_queued
        self.names: list[str] = list(o.versions)
        self.versions: dict[str, Version] = {
            name: importlib.import_module(VERSIONS[name]).make(self) for name in self.names}
        self._saved: str | None = store.get_json(VERSION_KEY, None)
        self._active: str = self._saved if self._saved in self.versions else self.names[0]
        self._link_task: asyncio.Task[Any] | None = None
        self._spawned: set[asyncio.Task[Any]] = set()  # every task of the backend: cancelled by close()

    # ================================================================ versions
    @property
    def active(self) -> Version:
        return self.versions[self._active]

    @property
    def subprotocols(self) -> list[str]:
        return [self.versions[name].dialect.subprotocol for name in self.names]

    def version_for(self, subprotocol: str | None) -> Version:
        """The central system chose `subprotocol` (None: it confirmed none; the active version stays)."""
        chosen = next((name for name in self.names if self.versions[name].dialect.subprotocol == subprotocol), None)
        if chosen is not None and chosen != self._active:
            log.info("the central system speaks OCPP %s (was %s)", chosen, self._active)
            running = self.station is not None
            self.active.stop()
            self._active = chosen
            if running:
                self.active.start()
        if chosen is not None and chosen != self._saved:
            self.store.put_json(VERSION_KEY, chosen)
            self._saved = chosen
        return self.active

    # ================================================================ lifecycle
    @property
    def control(self) -> StationControl:
        """The station (the core), once started."""
        if self.station is None:
            raise RuntimeError("the OCPP backend is not started")
        return self.station

    @property
    def connector_id(self) -> int:
        return int(self.config.station.connector_id)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A task owned by the station's supervisor (failures are logged with the name); close() ends it."""
        task = self.control.spawn(coro, name)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)
        return task

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale

    async def start(self, station: StationControl) -> None:
        await super().start(station)
        self.clock = station.clock  # one clock for the journal and the wire
        self.security.event("StartupOfTheDevice", f"station {self.model} started")
        self.active.start()
        self._spawn_link()

    def _spawn_link(self) -> asyncio.Task[Any]:
        self._link_task = self.control.spawn(self.link.run(), Link.NAME, critical=True, deadline_s=DEADLINE_S)
        return self._link_task

    def carriers(self) -> dict[str, Callable[[], asyncio.Task[Any]]]:
        """The link loop only carries messages: the supervisor restarts it if it hangs (close() ends the
        new one), instead of stopping the station."""
        return {Link.NAME: self._spawn_link}

    @property
    def delivery_timeout_s(self) -> float:  # type: ignore[override]
        """One try: its own response timeout, after waiting its turn behind other CALLs in flight."""
        return 4 * self.response_timeout

    async def close(self) -> None:
        for version in self.versions.values():
            version.stop()
        tasks = [t for t in (self._link_task, *self._spawned) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._link_task = None
        self._set_online(False)

    async def wait_ready(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self.link.ready.wait()
        except TimeoutError:
            pass
        return self.online

    async def registered(self, version: Version) -> None:
        """BootNotification was Accepted: the link is online (the core then wakes its deliverer)."""
        self._set_online(True)
        await version.registered()

    def link_lost(self) -> None:
        self._set_online(False)
        self.active.link_lost()

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
            self.active.time_changed()

    # ================================================================ sessions
    def active_session(self) -> Session | None:
        s = self.station.current_session() if self.station is not None else None
        return s if s is not None and s.state == "active" else None

    # ================================================================ Backend: the active version answers
    async def authorize(self, id_tag: str, session: Session | None = None) -> AuthResult:
        return await self.active.authorize(id_tag, session)

    async def parent_of(self, id_tag: str) -> str | None:
        return await self.active.parent_of(id_tag)

    async def deliver(self, item: OutboxItem, session: Session) -> DeliveryResult:
        return await self.active.deliver(item, session)

    async def send_status(self, report: StatusReport) -> None:
        await self.active.send_status(report)

    def transaction_fact(self, fact: TxFact, session: Session | None) -> None:
        self.active.transaction_fact(fact, session)  # 2.0.1's transaction points; 1.6 has no use for them

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
        station.log_tags) and the active version's settings (never a password)."""
        return self.active.diagnostics_extra()


def create(config: Config, store: Store) -> OcppBackend:
    return OcppBackend(config, store)
