"""What the OCPP 1.6 parts may use of the 1.6 version (chargepoint.py), declared apart so that no part
imports the composition for a type (no import cycle).

A part that other parts call is seen through a narrow Protocol here (its
few methods), never through its class; the stores and the shared parts
(configuration keys, list, cache, profiles, jobs, limit) are plain classes
that import nothing of the version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from station.backends.ocpp.host import Host

if TYPE_CHECKING:
    from station.backends.ocpp.authz import AuthCache, LocalList
    from station.backends.ocpp.jobs import Jobs
    from station.backends.ocpp.limits import PowerLimit
    from station.backends.ocpp.smart import Profiles
    from station.core.model import AuthResult, MeterReading, Session, StatusReport

    from .confkeys import ConfigurationKeys


class AuthApi(Protocol):
    async def authorize(self, id_tag: str) -> AuthResult: ...

    def learn(self, id_tag: str, info: dict[str, Any]) -> None: ...


class TransactionsApi(Protocol):
    def transaction_id(self, session: Session) -> int | None: ...

    def queue_meter_value(self, session: Session, mv: dict[str, Any]) -> None: ...


class SamplerApi(Protocol):
    def meter_value(self, reading: MeterReading, key: str, context: str, stamp: str) -> dict[str, Any] | None: ...

    def wake(self) -> None: ...


class StatusApi(Protocol):
    @property
    def inoperative(self) -> bool: ...

    def set_inoperative(self, inoperative: bool) -> None: ...

    def reports(self) -> list[StatusReport]: ...

    async def send_now(self, report: StatusReport) -> None: ...

    async def charge_point_changed(self) -> None: ...


class Ocpp16Api(Host, Protocol):
    """The 1.6 version as its parts see it: the shared backend and the 1.6 state."""

    @property
    def keys(self) -> ConfigurationKeys: ...

    @property
    def local_list(self) -> LocalList: ...

    @property
    def cache(self) -> AuthCache: ...

    @property
    def profiles(self) -> Profiles: ...

    @property
    def limits(self) -> PowerLimit: ...

    @property
    def jobs(self) -> Jobs: ...

    @property
    def auth(self) -> AuthApi: ...

    @property
    def tx(self) -> TransactionsApi: ...

    @property
    def sampler(self) -> SamplerApi: ...

    @property
    def status(self) -> StatusApi: ...

    def measurands(self) -> frozenset[str]: ...

    def active_transaction(self) -> tuple[Session | None, int | None]: ...

    def diagnostics_extra(self) -> dict[str, str]: ...
