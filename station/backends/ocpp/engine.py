"""What every OCPP version has in common: the shared backend seen through one object, and its tasks.

A version (ocpp16/chargepoint.py, ocpp201/engine.py) derives from `VersionBase`:
its parts are handed the version object and find on it both the version's own
state (1.6 configuration keys, the 2.0.1 device model, ...) and, passed
through from the shared backend (`Host`), the station, the store, the clock,
the link and the security state. The version's background loops (meter
values, power limit) run only while it is the active one: `start()` spawns
them, `stop()` cancels them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from station.clock import Clock
    from station.config import Config
    from station.core.model import Session, TxFact
    from station.core.ports import StationControl
    from station.store import Store

    from .host import Host, LinkApi
    from .security import Security


class VersionBase:
    """The shared backend, passed through (implements `Host` for the version's parts)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._loops: list[asyncio.Task[Any]] = []

    # -- passed through ------------------------------------------------------------------
    @property
    def config(self) -> Config:
        return self.host.config

    @property
    def store(self) -> Store:
        return self.host.store

    @property
    def clock(self) -> Clock:
        return self.host.clock

    @property
    def charge_point_id(self) -> str:
        return self.host.charge_point_id

    @property
    def vendor(self) -> str:
        return self.host.vendor

    @property
    def model(self) -> str:
        return self.host.model

    @property
    def ca_file(self) -> str | None:
        return self.host.ca_file

    @property
    def time_scale(self) -> float:
        return self.host.time_scale

    @property
    def response_timeout(self) -> float:
        return self.host.response_timeout

    @property
    def pip_command(self) -> list[str] | None:
        return self.host.pip_command

    @property
    def log_dirs(self) -> list[Path]:
        return self.host.log_dirs

    @property
    def work_dir(self) -> Path:
        return self.host.work_dir

    @property
    def security(self) -> Security:
        return self.host.security

    @property
    def link(self) -> LinkApi:
        return self.host.link

    @property
    def station(self) -> StationControl | None:
        return self.host.station

    @property
    def control(self) -> StationControl:
        return self.host.control

    @property
    def online(self) -> bool:
        return self.host.online

    @property
    def connector_id(self) -> int:
        return self.host.connector_id

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        return self.host.spawn(coro, name)

    def reconnect_delay(self, failures: int) -> float | None:
        return None  # the station's backoff (station/backoff.py)

    def scaled(self, seconds: float) -> float:
        return self.host.scaled(seconds)

    def now(self) -> datetime:
        return self.host.now()

    def stamp(self) -> str:
        return self.host.stamp()

    def resolve(self, stamp: str | None) -> str:
        return self.host.resolve(stamp)

    def set_time(self, current_time: str | None, round_trip_s: float = 0.0) -> None:
        self.host.set_time(current_time, round_trip_s)

    def active_session(self) -> Session | None:
        return self.host.active_session()

    async def reconnect_if_requested(self) -> None:
        await self.host.reconnect_if_requested()

    def transaction_fact(self, fact: TxFact, session: Session | None) -> None:
        """A moment of the charging cycle (the core's TxFact): 1.6 has no use for it (its transaction is the
        session: START and STOP from the outbox); 2.0.1 makes its transaction points of it."""

    # -- the version's loops ------------------------------------------------------------------
    def run_loops(self, *loops: tuple[Callable[[], Coroutine[Any, Any, Any]], str]) -> None:
        """Start the version's background loops (each a coroutine function and a task name)."""
        self.stop()
        self._loops = [self.spawn(fn(), name) for fn, name in loops]

    def stop(self) -> None:
        for task in self._loops:
            task.cancel()
        self._loops = []
