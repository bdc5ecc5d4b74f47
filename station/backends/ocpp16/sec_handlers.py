"""The security extension's requests (OCPP 1.6 security whitepaper, edition 2), without DataTransfer.

ExtendedTriggerMessage, InstallCertificate, DeleteCertificate,
GetInstalledCertificateIds, CertificateSigned, SignedUpdateFirmware and
GetLog. Handlers validate and answer at once; anything that sends CALLs runs
afterwards (an `@after` hook or a job in jobs.py). Certificates are kept by
station.services.certs, which names the two kinds of root neutrally: the 1.6
names are mapped here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on

from station.backends.ocpp.security import CHAIN_MAX
from station.services.lazy import lazy

if TYPE_CHECKING:
    from cryptography import x509

    from station.services import certs

    from .api import Ocpp16Api
    from .handlers import CoreHandlers

if not TYPE_CHECKING:  # certificates (and `cryptography`) only when a certificate message comes
    certs = lazy("station.services.certs")

log = logging.getLogger(__name__)

Answer = dict[str, Any]
CSMS_ROOT = "CentralSystemRootCertificate"
MANUFACTURER_ROOT = "ManufacturerRootCertificate"


def _kind(certificate_type: str) -> str:
    """The certificate store's kind of root for a 1.6 CertificateUse."""
    return certs.CSMS_ROOT if certificate_type == CSMS_ROOT else certs.MANUFACTURER_ROOT


def _name(kind: str) -> str:
    return CSMS_ROOT if kind == certs.CSMS_ROOT else MANUFACTURER_ROOT


class SecurityHandlers:
    def __init__(self, backend: Ocpp16Api, core: CoreHandlers) -> None:
        self.b = backend
        self.core = core  # ExtendedTriggerMessage of the 1.6 messages triggers them as TriggerMessage does

    # ---------------------------------------------------------------- ExtendedTriggerMessage
    @on("ExtendedTriggerMessage")
    def on_extended_trigger_message(self, requested_message: str, connector_id: int | None = None,
                                    **_: Any) -> Answer:
        if connector_id is not None and not self.core.connector_ok(connector_id):
            return {"status": "Rejected"}
        if requested_message == "SignChargePointCertificate" and not self.b.security.cpo_name:
            log.warning("ExtendedTriggerMessage SignChargePointCertificate rejected: CpoName is not set")
            return {"status": "Rejected"}
        return {"status": "Accepted"}

    @after("ExtendedTriggerMessage")
    async def after_extended_trigger_message(self, requested_message: str, connector_id: int | None = None,
                                             **_: Any) -> None:
        jobs = self.b.jobs
        if connector_id is not None and not self.core.connector_ok(connector_id):
            return
        if requested_message in ("BootNotification", "Heartbeat", "StatusNotification", "MeterValues"):
            await self.core.trigger(requested_message, connector_id)
        elif requested_message == "FirmwareStatusNotification":
            await jobs.signed_notice(*jobs.last_signed_status())
        elif requested_message == "LogStatusNotification":
            await jobs.log_notice("Uploading" if jobs.log_request is not None else "Idle", jobs.log_request)
        elif requested_message == "SignChargePointCertificate" and self.b.security.cpo_name:
            jobs.sign_certificate()

    # ---------------------------------------------------------------- certificates
    @on("InstallCertificate")
    def on_install_certificate(self, certificate_type: str, certificate: str, **_: Any) -> Answer:
        security = self.b.security
        try:
            status = security.certs.install(_kind(certificate_type), certificate, certs.now_utc())
        except certs.CertificateError as exc:
            log.warning("InstallCertificate %s rejected: %s", certificate_type, exc)
            if certificate_type == CSMS_ROOT:
                security.event("InvalidCentralSystemCertificate", f"InstallCertificate rejected: {exc}")
            return {"status": "Rejected"}
        if status == "Accepted":
            security.event("ReconfigurationOfSecurityParameters", f"{certificate_type} installed")
        return {"status": status}

    @on("GetInstalledCertificateIds")
    def on_get_installed_certificate_ids(self, certificate_type: str, **_: Any) -> Answer:
        ids = self.b.security.certs.ids(_kind(certificate_type))
        if not ids:
            return {"status": "NotFound"}
        return {"status": "Accepted", "certificateHashData": ids}

    @on("DeleteCertificate")
    def on_delete_certificate(self, certificate_hash_data: dict[str, Any], **_: Any) -> Answer:
        security = self.b.security
        found = security.certs.find(certificate_hash_data)
        if found is None:
            return {"status": "NotFound"}
        kind, cert, path = found
        if path is None:
            log.warning("DeleteCertificate: the certificate comes from backend.ocpp.ca_file and cannot be deleted "
                        "through OCPP")
            return {"status": "Failed"}
        if kind == certs.CSMS_ROOT and self._root_in_use(cert):
            log.warning("DeleteCertificate: that CentralSystemRootCertificate validates the current connection")
            return {"status": "Failed"}  # M04.FR.06
        try:
            path.unlink()
        except OSError:
            return {"status": "Failed"}
        security.event("ReconfigurationOfSecurityParameters", f"{_name(kind)} deleted")
        return {"status": "Accepted"}

    def _root_in_use(self, root: x509.Certificate) -> bool:
        der = self.b.link.server_certificate()
        if der is None:
            return False  # no TLS on this connection
        if len(self.b.security.certs.csms_anchors()) <= 1:
            return True
        try:
            leaf = certs.load_der(der)
            certs.verify_chain([leaf], [root], certs.now_utc(), "server certificate")
            return True
        except (certs.CertificateError, ValueError):
            return False

    @on("CertificateSigned")
    def on_certificate_signed(self, certificate_chain: str, **_: Any) -> Answer:
        security = self.b.security
        try:
            leaf = security.certs.accept_signed(certificate_chain, certs.now_utc(), CHAIN_MAX)
        except (certs.CertificateError, ValueError) as exc:
            log.warning("CertificateSigned rejected: %s", exc)
            security.event("InvalidChargePointCertificate", str(exc))
            return {"status": "Rejected"}
        security.event("ReconfigurationOfSecurityParameters",
                       f"station certificate installed (serial {format(leaf.serial_number, 'X')})")
        if security.profile == 3:
            security.reconnect_requested = True  # TC_074: reconnect with the new certificate
        return {"status": "Accepted"}

    @after("CertificateSigned")
    async def after_certificate_signed(self, **_: Any) -> None:
        await self.b.reconnect_if_requested()

    # ---------------------------------------------------------------- signed firmware
    @on("SignedUpdateFirmware")
    def on_signed_update_firmware(self, request_id: int, firmware: dict[str, Any], retries: int | None = None,
                                  retry_interval: int | None = None, **_: Any) -> Answer:
        try:
            self.b.jobs.check_signing_certificate(firmware["signingCertificate"])
        except certs.CertificateError as exc:
            log.error("SignedUpdateFirmware refused: %s", exc)
            self.b.security.event("InvalidFirmwareSigningCertificate", str(exc))
            return {"status": "InvalidCertificate"}
        cancelled = self.b.jobs.signed_update_firmware(request_id, firmware, retries, retry_interval)
        return {"status": "AcceptedCanceled" if cancelled else "Accepted"}  # L01.FR.26

    # ---------------------------------------------------------------- logs
    @on("GetLog")
    def on_get_log(self, log_type: str, request_id: int, log: dict[str, Any], retries: int | None = None,
                   retry_interval: int | None = None, **_: Any) -> Answer:
        return self.b.jobs.get_log(log_type, request_id, log, retries, retry_interval)
