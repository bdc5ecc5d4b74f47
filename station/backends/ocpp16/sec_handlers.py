"""The security extension's messages (OCPP 1.6 security whitepaper, edition 2), without DataTransfer.

Theory of operation
-------------------
Two mixins keep chargepoint.py readable:

* `SecurityHandlers` (mixed into the connection's handler class): the
  central system's requests ExtendedTriggerMessage, InstallCertificate,
  DeleteCertificate, GetInstalledCertificateIds, CertificateSigned,
  SignedUpdateFirmware and GetLog. Handlers validate and answer at once;
  anything that sends CALLs runs afterwards (an `@after` hook or a job).
* `SecurityJobs` (mixed into OcppBackend): the long-running parts that
  outlive a connection: the signed firmware update (L01), the log upload
  (N01) and the station's key renewal (A02: a new key and a CSR sent as
  SignCertificate).

The payloads arrive snake_cased by the `ocpp` library's router (nested
objects too); answers are camelCase dicts checked against the official
schemas by rpc.Peer before they go out.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from ocpp.charge_point import snake_to_camel_case
from ocpp.routing import after, on
from ocpp.v16.enums import Action

from station.clock import parse_iso
from station.errors import BackendOffline

from . import files
from .certs import (
    CSMS_ROOT,
    MANUFACTURER_ROOT,
    CertificateError,
    decode_signature,
    load_pems,
    now_utc,
    verify_chain,
    verify_signature,
)
from .rpc import CallFailed

log = logging.getLogger(__name__)

SIGNED_FW_KEY = "ocpp.signed_firmware"  # last SignedFirmwareStatusNotification {status, requestId}, and unsent ends
_FW_ENDS = {"DownloadFailed", "InstallationFailed", "Installed", "InstallVerificationFailed", "InvalidSignature"}


class SecurityJobs:
    """Mixed into OcppBackend: signed firmware, log upload, key renewal."""

    def _init_security_jobs(self) -> None:
        self._signed_fw_job: asyncio.Task | None = None
        self._log_job: asyncio.Task | None = None
        self.log_request: int | None = None  # requestId of the upload under way

    # -- signed firmware (L01) -----------------------------------------------------------
    async def _signed_notice(self, status: str, request_id: int | None) -> None:
        record = {"status": status, "requestId": request_id, "unsent": False}
        payload: dict[str, Any] = {"status": status}
        if request_id is not None:
            payload["requestId"] = request_id
        try:
            await self.request("SignedFirmwareStatusNotification", payload, allow_pending=True)
        except (CallFailed, BackendOffline) as exc:
            log.info("SignedFirmwareStatusNotification %s not sent: %s", status, exc)
            record["unsent"] = status in _FW_ENDS  # an end state is sent after the next boot
        self.store.put_json(SIGNED_FW_KEY, record)

    async def send_pending_signed_status(self) -> None:
        record = self.store.get_json(SIGNED_FW_KEY, None)
        if record and record.get("unsent"):
            await self._signed_notice(record["status"], record.get("requestId"))

    def last_signed_status(self) -> tuple[str, int | None]:
        """L01.FR.28/29: the last status sent (Installed reads as Idle), with its requestId while under way."""
        record = self.store.get_json(SIGNED_FW_KEY, None) or {}
        status = record.get("status") or "Idle"
        running = self._signed_fw_job is not None and not self._signed_fw_job.done()
        if status == "Installed" or (not running and status in _FW_ENDS):
            return ("Idle" if status == "Installed" else status), (record.get("requestId") if status != "Installed" else None)
        return status, record.get("requestId")

    async def _sleep_until(self, stamp: str | None) -> bool:
        """Wait until an ISO time (scaled in tests); True if we waited."""
        if not stamp:
            return False
        delay = (parse_iso(stamp) - self.now()).total_seconds()
        if delay <= 0:
            return False
        await asyncio.sleep(self.scaled(delay) if self.time_scale != 1.0 else delay)
        return True

    async def signed_update_firmware(self, request_id: int, firmware: dict[str, Any], retries: int | None,
                                     retry_interval: int | None) -> None:
        signing = load_pems(firmware["signingCertificate"])[0]
        if (parse_iso(firmware["retrieveDateTime"]) - self.now()).total_seconds() > 0:
            await self._signed_notice("DownloadScheduled", request_id)
            await self._sleep_until(firmware["retrieveDateTime"])
        tries = max(1, retries if retries is not None else 3)
        pause = self.scaled(retry_interval if retry_interval is not None else 60)
        path = await files.download_retrying(firmware["location"], self.work_dir / "firmware",
                                             ca_file=self.config.backend.ocpp.ca_file, tries=tries, pause=pause,
                                             before_try=lambda: self._signed_notice("Downloading", request_id),
                                             what="signed firmware")
        if path is None:
            await self._signed_notice("DownloadFailed", request_id)
            return
        await self._signed_notice("Downloaded", request_id)
        try:
            data = await asyncio.to_thread(path.read_bytes)
            verify_signature(signing, data, decode_signature(firmware["signature"]))
        except (CertificateError, OSError) as exc:
            log.error("firmware %s refused: %s", path.name, exc)
            self.security.event("InvalidFirmwareSignature", f"{path.name}: {exc}")
            await self._signed_notice("InvalidSignature", request_id)
            _unlink(path)
            return
        await self._signed_notice("SignatureVerified", request_id)
        install_at = firmware.get("installDateTime")
        if install_at and (parse_iso(install_at) - self.now()).total_seconds() > 0:
            await self._signed_notice("InstallScheduled", request_id)  # L01.FR.16
            await self._sleep_until(install_at)
        # L01.FR.06: wait for a running transaction to end (installing restarts the station).
        while self._active_session() is not None:
            await asyncio.sleep(1.0)
        await self._signed_notice("Installing", request_id)
        ok, output = (False, "not a Python package file")
        if files.is_package(path):
            ok, output = await files.install(path, self.pip_command)
        if not ok:
            log.error("signed firmware installation failed: %s", output)
            await self._signed_notice("InstallationFailed", request_id)
            return
        self.security.event("FirmwareUpdated", f"{path.name} installed")
        await self._signed_notice("Installed", request_id)
        if self.station is not None:
            await self.station.reset(False)  # the service manager restarts us on the new release

    # -- logs (N01) ------------------------------------------------------------------------
    async def _log_notice(self, status: str, request_id: int | None) -> None:
        payload: dict[str, Any] = {"status": status}
        if request_id is not None:
            payload["requestId"] = request_id
        try:
            await self.request("LogStatusNotification", payload, allow_pending=True)
        except (CallFailed, BackendOffline) as exc:
            log.info("LogStatusNotification %s not sent: %s", status, exc)

    def _security_log_file(self, dest: Path, oldest: str | None, latest: str | None) -> Path:
        lines = []
        for line in self.security.log.text().splitlines(keepends=True):
            stamp = line.split(" ", 1)[0]
            try:
                when = parse_iso(stamp)
            except ValueError:
                lines.append(line)  # a monotonic stamp from before the clock was set: keep
                continue
            if (oldest and when < parse_iso(oldest)) or (latest and when > parse_iso(latest)):
                continue
            lines.append(line)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text("".join(lines), encoding="utf-8")
        return dest

    async def upload_log(self, request_id: int, log_type: str, name: str, location: str, retries: int | None,
                         retry_interval: int | None, oldest: str | None, latest: str | None) -> None:
        self.log_request = request_id
        dest = self.work_dir / "logs" / name
        try:
            if log_type == "SecurityLog":
                path = await asyncio.to_thread(self._security_log_file, dest, oldest, latest)
            else:
                path = await files.build_archive(dest, self.log_dirs, since=oldest, until=latest,
                                                 extra=self.diagnostics_extra())
            tries = max(1, retries if retries is not None else 3)
            pause = self.scaled(retry_interval if retry_interval is not None else 60)
            await self._log_notice("Uploading", request_id)
            final = "UploadFailure"
            for n in range(tries):
                try:
                    await files.upload(location, path, ca_file=self.config.backend.ocpp.ca_file)
                except Exception as exc:
                    log.warning("%s upload %d of %d failed: %s", log_type, n + 1, tries, exc)
                    text = str(exc)
                    if any(code in text for code in ("530", "550", "401", "403")):
                        final = "PermissionDenied"
                    if n + 1 < tries:
                        await asyncio.sleep(pause)
                    continue
                final = "Uploaded"
                break
            await self._log_notice(final, request_id)
        finally:
            self.log_request = None
            _unlink(dest)

    # -- the station's key and certificate (A02) --------------------------------------------
    async def sign_certificate(self) -> None:
        cpo = self.security.cpo_name
        csr = await asyncio.to_thread(self.security.certs.new_csr, self.charge_point_id, cpo)
        try:
            conf = await self.request("SignCertificate", {"csr": csr})
        except (CallFailed, BackendOffline) as exc:
            log.warning("SignCertificate not processed: %s", exc)
            return
        if conf.get("status") != "Accepted":
            log.warning("the central system rejected the certificate signing request")


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


class SecurityHandlers:
    """Mixed into the connection's handler class (`self.b` is the OcppBackend)."""

    async def reconnect_if_requested(self) -> None:
        sec = self.b.security
        if sec.reconnect_requested:
            sec.reconnect_requested = False
            log.info("reconnecting to apply the new security settings")
            await self._connection.close()

    # ---------------------------------------------------------------- ExtendedTriggerMessage
    @on(Action.extended_trigger_message)
    def on_extended_trigger_message(self, requested_message: str, connector_id: int | None = None, **_: Any):
        if connector_id is not None and not self._connector_ok(connector_id):
            return {"status": "Rejected"}
        if requested_message == "SignChargePointCertificate" and not self.b.security.cpo_name:
            log.warning("ExtendedTriggerMessage SignChargePointCertificate rejected: CpoName is not set")
            return {"status": "Rejected"}
        return {"status": "Accepted"}

    @after(Action.extended_trigger_message)
    async def after_extended_trigger_message(self, requested_message: str, connector_id: int | None = None,
                                             **_: Any):
        b = self.b
        if connector_id is not None and not self._connector_ok(connector_id):
            return
        if requested_message in ("BootNotification", "Heartbeat", "StatusNotification", "MeterValues"):
            await self.after_trigger_message(requested_message, connector_id)
        elif requested_message == "FirmwareStatusNotification":
            status, request_id = b.last_signed_status()
            await b._signed_notice(status, request_id)
        elif requested_message == "LogStatusNotification":
            if b.log_request is not None:
                await b._log_notice("Uploading", b.log_request)
            else:
                await b._log_notice("Idle", None)
        elif requested_message == "SignChargePointCertificate":
            if b.security.cpo_name:
                await b.sign_certificate()

    # ---------------------------------------------------------------- certificates
    @on(Action.install_certificate)
    def on_install_certificate(self, certificate_type: str, certificate: str, **_: Any):
        sec = self.b.security
        try:
            status = sec.certs.install(certificate_type, certificate, now_utc())
        except CertificateError as exc:
            log.warning("InstallCertificate %s rejected: %s", certificate_type, exc)
            if certificate_type == CSMS_ROOT:
                sec.event("InvalidCentralSystemCertificate", f"InstallCertificate rejected: {exc}")
            return {"status": "Rejected"}
        if status == "Accepted":
            sec.event("ReconfigurationOfSecurityParameters", f"{certificate_type} installed")
        return {"status": status}

    @on(Action.get_installed_certificate_ids)
    def on_get_installed_certificate_ids(self, certificate_type: str, **_: Any):
        ids = self.b.security.certs.ids(certificate_type)
        if not ids:
            return {"status": "NotFound"}
        return {"status": "Accepted", "certificateHashData": ids}

    @on(Action.delete_certificate)
    def on_delete_certificate(self, certificate_hash_data: dict, **_: Any):
        sec = self.b.security
        wanted = snake_to_camel_case(certificate_hash_data)
        found = sec.certs.find(wanted)
        if found is None:
            return {"status": "NotFound"}
        kind, cert, path = found
        if path is None:
            log.warning("DeleteCertificate: the certificate comes from backend.ocpp.ca_file and cannot be deleted "
                        "through OCPP")
            return {"status": "Failed"}
        if kind == CSMS_ROOT and self._root_in_use(cert):
            log.warning("DeleteCertificate: that CentralSystemRootCertificate validates the current connection")
            return {"status": "Failed"}  # M04.FR.06
        try:
            path.unlink()
        except OSError:
            return {"status": "Failed"}
        sec.event("ReconfigurationOfSecurityParameters", f"{kind} deleted")
        return {"status": "Accepted"}

    def _root_in_use(self, root) -> bool:
        sec = self.b.security
        transport = getattr(self._connection, "transport", None)
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if ssl_object is None:
            return False  # no TLS on this connection
        anchors = sec.certs.csms_anchors()
        if len(anchors) <= 1:
            return True
        try:
            from cryptography import x509
            leaf = x509.load_der_x509_certificate(ssl_object.getpeercert(binary_form=True))
            verify_chain([leaf], [root], now_utc(), "server certificate")
            return True
        except Exception:
            return False

    @on(Action.certificate_signed)
    def on_certificate_signed(self, certificate_chain: str, **_: Any):
        sec = self.b.security
        try:
            leaf = sec.certs.accept_signed(certificate_chain, now_utc(), 10000)
        except (CertificateError, ValueError) as exc:
            log.warning("CertificateSigned rejected: %s", exc)
            sec.event("InvalidChargePointCertificate", str(exc))
            return {"status": "Rejected"}
        sec.event("ReconfigurationOfSecurityParameters",
                  f"station certificate installed (serial {format(leaf.serial_number, 'X')})")
        if sec.profile == 3:
            sec.reconnect_requested = True  # TC_074: reconnect with the new certificate
        return {"status": "Accepted"}

    @after(Action.certificate_signed)
    async def after_certificate_signed(self, certificate_chain: str, **_: Any):
        await self.reconnect_if_requested()

    # ---------------------------------------------------------------- signed firmware
    @on(Action.signed_update_firmware)
    def on_signed_update_firmware(self, request_id: int, firmware: dict, retries: int | None = None,
                                  retry_interval: int | None = None, **_: Any):
        b = self.b
        fw = snake_to_camel_case(firmware)
        try:
            signing = load_pems(fw["signingCertificate"])
            if len(signing) != 1:
                raise CertificateError("exactly one signing certificate expected (no intermediates)")
            verify_chain(signing, b.security.certs.installed(MANUFACTURER_ROOT), now_utc(),
                         "firmware signing certificate")
        except CertificateError as exc:
            log.error("SignedUpdateFirmware refused: %s", exc)
            b.security.event("InvalidFirmwareSigningCertificate", str(exc))
            return {"status": "InvalidCertificate"}
        status = "Accepted"
        if b._signed_fw_job is not None and not b._signed_fw_job.done():
            b._signed_fw_job.cancel()  # L01.FR.26
            status = "AcceptedCanceled"
        b._signed_fw_job = b._spawn(b.signed_update_firmware(request_id, fw, retries, retry_interval))
        return {"status": status}

    # ---------------------------------------------------------------- logs
    @on(Action.get_log)
    def on_get_log(self, log_type: str, request_id: int, log: dict, retries: int | None = None,
                   retry_interval: int | None = None, **_: Any):
        b = self.b
        params = snake_to_camel_case(log)
        status = "Accepted"
        if b._log_job is not None and not b._log_job.done():
            b._log_job.cancel()  # N01.FR.11
            status = "AcceptedCanceled"
        kind = "security" if log_type == "SecurityLog" else "diagnostics"
        suffix = ".log" if log_type == "SecurityLog" else ".tar.gz"
        name = f"{kind}-{b.charge_point_id}-{b.now().strftime('%Y%m%dT%H%M%SZ')}-{request_id}{suffix}"[-255:]
        b._log_job = b._spawn(b.upload_log(request_id, log_type, name, params["remoteLocation"], retries,
                                           retry_interval, params.get("oldestTimestamp"),
                                           params.get("latestTimestamp")))
        return {"status": status, "filename": name}


__all__ = ["SecurityHandlers", "SecurityJobs", "SIGNED_FW_KEY"]
