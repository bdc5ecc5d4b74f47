"""What the OCPP 2.0.1 handlers may use of the 2.0.1 version (engine.py), declared apart so that no part
imports the composition for a type (no import cycle). The parts themselves are plain classes that import
nothing of the version; each part that needs the version declares its own narrow Protocol beside it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from station.backends.ocpp.host import Host

if TYPE_CHECKING:
    from station.backends.ocpp.jobs import Jobs
    from station.backends.ocpp.limits import PowerLimit
    from station.core.model import Session

    from .authz import Authorizer
    from .devmodel import DeviceModel
    from .early import EarlyTx
    from .sampling import Sampler
    from .signing import CertSigning
    from .smart import Smart
    from .status import StatusReporter
    from .transactions import Transactions
    from .txpoints import TxPoints


class Ocpp201Api(Host, Protocol):
    @property
    def devmodel(self) -> DeviceModel: ...

    @property
    def auth(self) -> Authorizer: ...

    @property
    def points(self) -> TxPoints: ...

    @property
    def early(self) -> EarlyTx: ...

    @property
    def tx(self) -> Transactions: ...

    @property
    def status(self) -> StatusReporter: ...

    @property
    def smart(self) -> Smart: ...

    @property
    def limits(self) -> PowerLimit: ...

    @property
    def sampler(self) -> Sampler: ...

    @property
    def jobs(self) -> Jobs: ...

    @property
    def signing(self) -> CertSigning: ...

    def measurands(self) -> frozenset[str]: ...

    def transaction_id(self, session: Session) -> str | None: ...

    def remember_remote_start(self, remote_start_id: int, token: dict[str, Any]) -> None: ...

    def reboot_reason(self, reason: str) -> None: ...

    def diagnostics_extra(self) -> dict[str, str]: ...
