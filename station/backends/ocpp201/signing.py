"""OCPP 2.0.1 A02: the station's certificate on request, sent again when the signed certificate does not come.

Theory of operation
-------------------
TriggerMessage SignChargingStationCertificate makes a new key and a CSR
(the shared certificate store, station/services/certs.py) and sends it in
SignCertificateRequest. When the central system Accepts it but no
CertificateSignedRequest follows within SecurityCtrlr.CertSigningWaitMinimum
seconds, the station sends a new SignCertificateRequest (a new key, a new
CSR), doubling the wait each time, at most CertSigningRepeatTimes times
(A02.FR.17/18, Part 6 TC_A_23_CS). A CertificateSignedRequest (whatever its
verdict) ends the waiting; a Rejected SignCertificateResponse ends it too
(A02: nothing changes). A new trigger replaces a signing in progress.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from station.backends.ocpp.link import sleep_or_event

if TYPE_CHECKING:
    from station.backends.ocpp.host import LinkApi
    from station.backends.ocpp.security import Security

    from .devmodel import DeviceModel

log = logging.getLogger(__name__)


class SigningHost(Protocol):
    devmodel: DeviceModel

    @property
    def link(self) -> LinkApi: ...

    @property
    def security(self) -> Security: ...

    @property
    def charge_point_id(self) -> str: ...

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...

    def scaled(self, seconds: float) -> float: ...


class CertSigning:
    def __init__(self, host: SigningHost) -> None:
        self.b = host
        self._signed = asyncio.Event()
        self._task: asyncio.Task[Any] | None = None

    def request(self) -> None:
        """TriggerMessage SignChargingStationCertificate (F06): sign, and sign again while nothing comes."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = self.b.spawn(self._run(), "ocpp-sign-certificate")

    def signed(self) -> None:
        """A CertificateSignedRequest came: no more SignCertificateRequests for this one."""
        self._signed.set()

    async def _run(self) -> None:
        dm = self.b.devmodel
        wait = float(dm.int("SecurityCtrlr", "CertSigningWaitMinimum"))
        repeats = dm.int("SecurityCtrlr", "CertSigningRepeatTimes")
        for attempt in range(repeats + 1):
            self._signed.clear()
            if not await self._send():
                return
            if await sleep_or_event(self._signed, self.b.scaled(wait)):
                return  # A02.FR.17: it came in time
            if attempt < repeats:
                log.warning("no CertificateSigned within %.0f s: a new SignCertificateRequest (%d of %d)", wait,
                            attempt + 1, repeats)
            wait *= 2  # A02.FR.18
        log.warning("no CertificateSigned after %d SignCertificateRequests; the station keeps its certificate",
                    repeats + 1)

    async def _send(self) -> bool:
        security = self.b.security
        csr = await asyncio.to_thread(security.certs.new_csr, self.b.charge_point_id, security.cpo_name)
        conf = await self.b.link.notify("SignCertificate", {"csr": csr}, allow_pending=False)
        if conf is None:
            return False  # not sent, or not processed (logged): the central system may trigger it again
        if conf.get("status") != "Accepted":
            log.warning("the central system rejected the certificate signing request")
            return False
        return True
