"""The narrow interfaces inside the OCPP backend: what a part may use of the whole, and what a version is.

Theory of operation
-------------------
The OCPP backend (backend.py) is one object the core sees; it owns what both
OCPP versions share (the link, the security state, the clock, the tasks) and
runs one *version* at a time: the one the central system chose in the
websocket handshake (ocpp16/ or ocpp201/). Its parts (link, jobs, limits, the
versions' own parts) never import the backend or a version's composition for
a type: they are given an object that satisfies one of the Protocols below.
That keeps the package free of import cycles (a part is imported by what
composes it, never the other way round) and says in one place what a part
may touch.

* `Host`: the shared backend, as every part sees it.
* `LinkApi`: the link, as the parts that send (requests, notifications) see it.
* `Version`: one OCPP version, as the link and the backend see it: its OCPP-J
  dialect and handlers, its BootNotification, its intervals, and the
  Backend methods (authorize, deliver, status) it answers while it is active.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from station.core.model import AuthResult, DeliveryResult, OutboxItem, Session, StatusReport, TxFact

if TYPE_CHECKING:
    import asyncio

    from station.backends.ocppj.rpc import Late
    from station.backends.ocppj.schema import Dialect
    from station.clock import Clock
    from station.config import Config
    from station.core.ports import StationControl
    from station.store import Store

    from .security import Security


class LinkApi(Protocol):
    """The link as a sender: CALLs once registered, best-effort notifications, a few controls."""

    @property
    def frames(self) -> deque[str]: ...  # recent frames, masked (diagnostics)

    @property
    def accepted(self) -> bool:
        """BootNotification Accepted on the current connection."""

    async def request(self, action: str, payload: dict[str, Any], *, allow_pending: bool = False,
                      timeout: float | None = None, on_send: Callable[[], None] | None = None,
                      on_late: Callable[[Late], None] | None = None) -> dict[str, Any]: ...

    async def notify(self, action: str, payload: dict[str, Any], *,
                     allow_pending: bool = True) -> dict[str, Any] | None: ...

    async def heartbeat(self) -> None: ...

    async def trigger_boot(self) -> None: ...

    async def reconnect(self) -> None: ...

    def heartbeat_changed(self) -> None: ...

    def server_certificate(self) -> bytes | None: ...


class Host(Protocol):
    """The shared OCPP backend, as its parts see it."""

    @property
    def config(self) -> Config: ...

    @property
    def store(self) -> Store: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def charge_point_id(self) -> str: ...

    @property
    def vendor(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def ca_file(self) -> str | None: ...

    @property
    def time_scale(self) -> float: ...

    @property
    def response_timeout(self) -> float: ...

    @property
    def pip_command(self) -> list[str] | None: ...

    @property
    def log_dirs(self) -> list[Path]: ...

    @property
    def work_dir(self) -> Path: ...

    @property
    def security(self) -> Security: ...

    @property
    def link(self) -> LinkApi: ...

    @property
    def station(self) -> StationControl | None: ...  # None until the backend is started

    @property
    def control(self) -> StationControl:
        """The station; raises RuntimeError until the backend is started."""

    @property
    def online(self) -> bool: ...

    @property
    def connector_id(self) -> int: ...

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...

    def scaled(self, seconds: float) -> float: ...

    def now(self) -> datetime: ...

    def stamp(self) -> str: ...

    def resolve(self, stamp: str | None) -> str: ...

    def set_time(self, current_time: str | None, round_trip_s: float = 0.0) -> None: ...

    def active_session(self) -> Session | None: ...

    async def reconnect_if_requested(self) -> None: ...


class Version(Protocol):
    """One OCPP version: what the link and the backend ask of it."""

    name: str  # "1.6" or "2.0.1", as in backend.ocpp.versions
    dialect: Dialect
    handlers: list[object]
    refuse_when_rejected: str | None  # while BootNotification is Rejected: None ignores CALLs, else this CALLERROR

    # -- the link -------------------------------------------------------------------
    def boot_payload(self) -> dict[str, Any]: ...

    def boot_accepted(self, interval: int) -> None:
        """BootNotification Accepted with this heartbeat interval (kept as the version's setting)."""

    def heartbeat_interval(self) -> int: ...

    def ping_interval(self) -> int: ...

    def security_event(self, kind: str, timestamp: str, tech_info: str | None) -> dict[str, Any]:
        """SecurityEventNotification's payload for an event of the security log (its name in this version)."""

    async def registered(self) -> None:
        """BootNotification Accepted: send what a new connection needs (statuses, pending notices)."""

    def link_lost(self) -> None: ...

    def reconnect_delay(self, failures: int) -> float | None:
        """The wait before the next connection attempt after `failures` failed ones (scaled seconds), or None
        for the station's own backoff (station/backoff.py)."""

    # -- its life ----------------------------------------------------------------------
    def start(self) -> None:
        """Become the active version: start its background tasks."""

    def time_changed(self) -> None:
        """The clock moved (set by the central system): what is due at an instant is due at another."""

    def stop(self) -> None:
        """Another version takes over (or the backend closes): cancel its tasks."""

    def diagnostics_extra(self) -> dict[str, str]: ...

    # -- the core's Backend, while active ----------------------------------------------------
    async def authorize(self, id_tag: str, session: Session | None) -> AuthResult: ...

    async def parent_of(self, id_tag: str) -> str | None: ...

    async def deliver(self, item: OutboxItem, session: Session) -> DeliveryResult: ...

    async def send_status(self, report: StatusReport) -> None: ...

    def transaction_fact(self, fact: TxFact, session: Session | None) -> None:
        """A moment of the charging cycle as it happens (must return at once)."""


class LinkOwner(Host, Protocol):
    """The backend as the link sees it: where to connect, which versions to offer, whom to tell."""

    @property
    def url(self) -> str: ...

    @property
    def active(self) -> Version:
        """The active version: the one of the current (or last) connection, else the preferred one."""

    @property
    def subprotocols(self) -> list[str]:
        """The websocket subprotocols offered, in order of preference (e.g. ["ocpp2.0.1", "ocpp1.6"])."""

    def version_for(self, subprotocol: str | None) -> Version:
        """The version the central system chose in the handshake (made the active one)."""

    async def registered(self, version: Version) -> None: ...

    def link_lost(self) -> None: ...
