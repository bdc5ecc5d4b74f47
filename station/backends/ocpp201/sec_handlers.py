"""Central system -> charging station, OCPP 2.0.1 blocks A, L, M, N, P: certificates, firmware, logs,
customer information, data transfer.

Certificates are kept by station.services.certs (the same stores as 1.6; the
2.0.1 names CSMSRootCertificate and ManufacturerRootCertificate are mapped
here; ISO 15118 certificates, V2G and MO, are not kept: no ISO 15118 here).
Firmware is signed firmware only (L01.FR.09/11/21/22). Jobs that send CALLs
of their own run afterwards (an `@after` hook, or a job of the shared jobs).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on

from station import privacy
from station.backends.ocpp.security import CHAIN_MAX
from station.services.lazy import lazy

from .authz import token_key

if TYPE_CHECKING:
    from cryptography import x509

    from station.services import certs

    from .api import Ocpp201Api
    from .handlers import CoreHandlers
else:  # certificates (and `cryptography`) only when a certificate message comes
    certs = lazy("station.services.certs")

log = logging.getLogger(__name__)

Answer = dict[str, Any]
_KINDS = {"CSMSRootCertificate": "csms", "ManufacturerRootCertificate": "manufacturer"}
_NAMES = {v: k for k, v in _KINDS.items()}
_CHUNK = 512  # NotifyCustomerInformation.data maxLength


class SecurityHandlers:
    def __init__(self, backend: Ocpp201Api, core: CoreHandlers) -> None:
        self.b = backend
        self.core = core

    # ================================================================ A02/A03 the station's certificate
    @on("CertificateSigned")
    def on_certificate_signed(self, certificate_chain: str, certificate_type: str | None = None, **_: Any) -> Answer:
        if certificate_type == "V2GCertificate":
            return {"status": "Rejected", "statusInfo": {"reasonCode": "NoISO15118"}}
        self.b.signing.signed()  # A02.FR.17: it came; no more SignCertificateRequests
        security = self.b.security
        try:
            leaf = security.certs.accept_signed(certificate_chain, certs.now_utc(), CHAIN_MAX)
        except (certs.CertificateError, ValueError) as exc:
            log.warning("CertificateSigned rejected: %s", exc)
            security.event("InvalidChargePointCertificate", str(exc))  # A02.FR.07 (InvalidChargingStationCertificate)
            return {"status": "Rejected"}
        security.event("ReconfigurationOfSecurityParameters",
                       f"station certificate installed (serial {format(leaf.serial_number, 'X')})")
        if security.profile == 3:
            security.reconnect_requested = True  # A02.FR.08: switch to the new certificate
        return {"status": "Accepted"}

    @after("CertificateSigned")
    async def after_certificate_signed(self, **_: Any) -> None:
        await self.b.reconnect_if_requested()

    # ================================================================ M03-M05 CA certificates
    @on("InstallCertificate")
    def on_install_certificate(self, certificate_type: str, certificate: str, **_: Any) -> Answer:
        kind = _KINDS.get(certificate_type)
        if kind is None:  # V2G and MO roots: no ISO 15118 here
            return {"status": "Rejected", "statusInfo": {"reasonCode": "NoISO15118"}}
        security = self.b.security
        try:
            status = security.certs.install(kind, certificate, certs.now_utc())
        except certs.CertificateError as exc:
            log.warning("InstallCertificate %s rejected: %s", certificate_type, exc)
            if kind == "csms":
                security.event("InvalidCentralSystemCertificate", f"InstallCertificate rejected: {exc}")
            return {"status": "Rejected"}  # M05.FR.07 (M05.FR.06 too: the store is full)
        if status == "Accepted":
            security.event("ReconfigurationOfSecurityParameters", f"{certificate_type} installed")
        return {"status": status}

    @on("GetInstalledCertificateIds")
    def on_get_installed_certificate_ids(self, certificate_type: list[str] | None = None, **_: Any) -> Answer:
        chains = []
        for name, kind in _KINDS.items():
            if certificate_type and name not in certificate_type:
                continue
            chains += [{"certificateType": name, "certificateHashData": data}
                       for data in self.b.security.certs.ids(kind)]
        if not chains:
            return {"status": "NotFound"}  # M03.FR.02
        return {"status": "Accepted", "certificateHashDataChain": chains}  # M03.FR.03/04

    @on("DeleteCertificate")
    def on_delete_certificate(self, certificate_hash_data: dict[str, Any], **_: Any) -> Answer:
        security = self.b.security
        found = security.certs.find(certificate_hash_data)
        if found is None and self._is_station_certificate(certificate_hash_data):
            log.warning("DeleteCertificate: that is the station's own certificate (it connects with it)")
            return {"status": "Failed"}  # M04.FR.06, TC_M_23_CS: the Charging Station Certificate stays
        if found is None:
            return {"status": "NotFound"}  # M04.FR.04
        kind, cert, path = found
        if path is None:
            log.warning("DeleteCertificate: the certificate comes from backend.ocpp.ca_file and cannot be deleted "
                        "through OCPP")
            return {"status": "Failed"}
        if kind == "csms" and self._root_in_use(cert):
            log.warning("DeleteCertificate: that CSMSRootCertificate validates the current connection")
            return {"status": "Failed"}
        try:
            path.unlink()
        except OSError:
            return {"status": "Failed"}
        security.event("ReconfigurationOfSecurityParameters", f"{_NAMES[kind]} deleted")
        return {"status": "Accepted"}  # M04.FR.02

    def _is_station_certificate(self, wanted: dict[str, Any]) -> bool:
        """The hash data names the station's certificate (its issuer's name and the serial number: the
        issuer's key may not be on the station, only the certificate itself)."""
        credentials = self.b.security.client_credentials()
        if credentials is None:
            return False
        try:
            own = certs.load_pems(Path(credentials[0]).read_bytes())[0]
            mine = certs.hash_data(own, wanted.get("hashAlgorithm", "SHA256"))
        except (OSError, KeyError, ValueError, certs.CertificateError):
            return False
        return (str(wanted.get("issuerNameHash", "")).lower() == mine["issuerNameHash"]
                and str(wanted.get("serialNumber", "")).lower().lstrip("0") == mine["serialNumber"].lstrip("0"))

    def _root_in_use(self, root: x509.Certificate) -> bool:
        der = self.b.link.server_certificate()
        if der is None:
            return False  # no TLS on this connection
        if len(self.b.security.certs.csms_anchors()) <= 1:
            return True
        try:
            certs.verify_chain([certs.load_der(der)], [root], certs.now_utc(), "server certificate")
            return True
        except (certs.CertificateError, ValueError):
            return False

    # ================================================================ L01 signed firmware
    @on("UpdateFirmware")
    def on_update_firmware(self, request_id: int, firmware: dict[str, Any], retries: int | None = None,
                           retry_interval: int | None = None, **_: Any) -> Answer:
        if not firmware.get("signingCertificate") or not firmware.get("signature"):
            self.b.security.event("InvalidFirmwareSigningCertificate", "UpdateFirmware without a signature")
            return {"status": "InvalidCertificate"}  # L01.FR.11, TC_L_18_CS
        try:
            # Only the installer's `firmware.signing_ca_file` is trusted for firmware, never a
            # ManufacturerRootCertificate the central system installed itself: that would let a
            # hostile central system vouch for its own code (docs/security.md §2.9).
            self.b.jobs.check_signing_certificate(firmware["signingCertificate"])
        except certs.CertificateError as exc:
            log.error("UpdateFirmware refused: %s", exc)
            self.b.security.event("InvalidFirmwareSigningCertificate", str(exc))  # L01.FR.02
            return {"status": "InvalidCertificate"}  # L01.FR.21/22
        cancelled = self.b.jobs.signed_update_firmware(request_id, firmware, retries, retry_interval)
        return {"status": "AcceptedCanceled" if cancelled else "Accepted"}  # L01.FR.24

    # ================================================================ N01 logs
    @on("GetLog")
    def on_get_log(self, log_type: str, request_id: int, log: dict[str, Any], retries: int | None = None,
                   retry_interval: int | None = None, **_: Any) -> Answer:
        return self.b.jobs.get_log(log_type, request_id, log, retries, retry_interval)

    # ================================================================ N09/N10 customer information
    @on("CustomerInformation")
    def on_customer_information(self, request_id: int, report: bool, clear: bool,
                                id_token: dict[str, Any] | None = None, customer_identifier: str | None = None,
                                customer_certificate: dict[str, Any] | None = None, **_: Any) -> Answer:
        given = [x for x in (id_token, customer_identifier, customer_certificate) if x is not None]
        if len(given) != 1:
            return {"status": "Invalid"}  # N09.FR.09
        if not report and not clear:
            return {"status": "Rejected"}  # N09.FR.07, N10.FR.07
        return {"status": "Accepted"}  # N09.FR.02, N10.FR.01

    @after("CustomerInformation")
    async def after_customer_information(self, request_id: int, report: bool, clear: bool,
                                         id_token: dict[str, Any] | None = None, **_: Any) -> None:
        lines = self._customer(id_token, clear) if id_token is not None else []
        if not report:
            return
        text = "\n".join(lines) if lines else "No data found for this customer."  # N09.FR.06, N10.FR.04
        parts = [text[i:i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [text]
        generated = self.b.stamp()
        for n, part in enumerate(parts):
            payload: Answer = {"data": part, "seqNo": n, "generatedAt": generated, "requestId": request_id}
            if n + 1 < len(parts):
                payload["tbc"] = True
            if await self.b.link.notify("NotifyCustomerInformation", payload) is None:
                return

    def _customer(self, id_token: dict[str, Any], clear: bool) -> list[str]:
        """What the station holds about an idToken: its authorization cache entry and its sessions in the
        journal (N09.FR.05). Clearing (N10.FR.06) removes the cache entry; the journal's sessions are billing
        records the operator keeps, and stay (docs/ocpp201.md, docs/privacy)."""
        auth = self.b.auth
        key = token_key(id_token)
        lines = []
        cached = auth.cache.get(key)
        if cached is not None:
            lines.append(f"authorization cache: {cached.get('status')}"
                         + (f", expires {cached['expiryDate']}" if cached.get("expiryDate") else ""))
            if clear:
                auth.cache.entries.pop(key.strip().upper(), None)
                auth.cache.put(key, {"status": "Invalid"})
                auth.cache.entries.pop(key.strip().upper(), None)
        for s in self.b.store.sessions(("stopped", "active")):
            if s.id_tag.strip().upper() == id_token["idToken"].strip().upper():
                energy = f"{s.energy_wh} Wh" if s.energy_wh is not None else "ongoing"
                lines.append(f"session {s.key}: {s.started_at} to {s.stopped_at or '-'}, {energy}")
        log.info("customer information of %s: %d item(s)%s", privacy.tag(id_token["idToken"]), len(lines),
                 ", cache entry cleared" if clear else "")
        return lines

    # ================================================================ P01 data transfer
    @on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, **_: Any) -> Answer:
        return {"status": "UnknownVendorId"}  # P01.FR.05: no vendor extensions here
