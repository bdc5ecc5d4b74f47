"""Long-running jobs the central system starts: firmware updates, diagnostics and log uploads, key renewal.

The work is done by the shared services (station/services: transfer,
firmware, diagnostics, certs); what is OCPP here is when each step is
reported and how. Both versions use this module; the 1.6-only jobs are
marked, and the one name that differs is given by the version
(`firmware_action`: 1.6 SignedFirmwareStatusNotification, 2.0.1
FirmwareStatusNotification, with the same statuses and requestId):

* 1.6 only: UpdateFirmware (FirmwareManagement): FirmwareStatusNotification Downloading,
  Downloaded / DownloadFailed, Installing, Installed / InstallationFailed; a
  final status that could not be sent is sent after the next boot. Only with
  `firmware.allow_unsigned` (the handlers refuse it otherwise).
* 1.6 only: GetDiagnostics: DiagnosticsStatusNotification Uploading, Uploaded /
  UploadFailed.
* 1.6 SignedUpdateFirmware, 2.0.1 UpdateFirmware (L01): the firmware status
  notification with the requestId for every step, the signature check in
  between (against `firmware.signing_ca_file` only), then the release's
  contents (InstallVerificationFailed); an end state that could not be sent
  is sent after the next boot.
* GetLog (N01): LogStatusNotification Uploading, Uploaded / UploadFailure /
  PermissionDenied.
* SignCertificate (A02): a new key and a CSR.

A release is read once into memory after the download: the bytes whose
signature and contents are checked are the bytes pip installs
(station/services/firmware.py says what is checked and how pip runs).
Installing waits for a running transaction to end (installing restarts the
station) and then resets the station through the core; where the privileged
updater is installed, the release is handed to it instead (handoff.py). Jobs outlive a
connection: they are started with the station's `spawn`, not the peer's.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from station.clock import parse_iso
from station.services.lazy import lazy

from . import handoff
from .link import sleep_or_event

if TYPE_CHECKING:
    from station.services import certs, diagnostics, firmware, transfer

    from .host import Host

    class JobHost(Host, Protocol):
        """What the jobs need: the shared backend, and what a version adds to a diagnostics archive."""

        def diagnostics_extra(self) -> dict[str, str]: ...
else:  # the services are imported when a job first runs (RSS: most stations never run one)
    certs = lazy("station.services.certs")
    diagnostics = lazy("station.services.diagnostics")
    firmware = lazy("station.services.firmware")
    transfer = lazy("station.services.transfer")

log = logging.getLogger(__name__)

FIRMWARE_KEY = "ocpp.firmware_status"  # a FirmwareStatusNotification still to send after restart
SIGNED_FW_KEY = "ocpp.signed_firmware"  # last SignedFirmwareStatusNotification {status, requestId}, and unsent ends
_FW_ENDS = {"DownloadFailed", "InstallationFailed", "Installed", "InstallVerificationFailed", "InvalidSignature"}
DEFAULT_TRIES = 3
DEFAULT_RETRY_S = 60


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


class Jobs:
    def __init__(self, backend: JobHost, firmware_action: str = "SignedFirmwareStatusNotification") -> None:
        self.b = backend
        self.firmware_action = firmware_action
        self.firmware_status = "Idle"
        self.diagnostics_status = "Idle"
        self.log_request: int | None = None  # requestId of the log upload under way
        self._firmware: asyncio.Task[Any] | None = None
        self._signed: asyncio.Task[Any] | None = None
        self._log: asyncio.Task[Any] | None = None
        self._tx_ended = asyncio.Event()

    def transaction_ended(self) -> None:
        self._tx_ended.set()

    def _tries(self, retries: int | None, retry_interval: int | None) -> tuple[int, float]:
        return (max(1, retries if retries is not None else DEFAULT_TRIES),
                self.b.scaled(retry_interval if retry_interval is not None else DEFAULT_RETRY_S))

    async def _sleep_until(self, stamp: str | None) -> None:
        """Wait until an ISO time (scaled in tests)."""
        if not stamp:
            return
        delay = (parse_iso(stamp) - self.b.now()).total_seconds()
        if delay > 0:
            await asyncio.sleep(self.b.scaled(delay) if self.b.time_scale != 1.0 else delay)

    async def wait_idle(self) -> None:
        """Until no transaction runs (a reset OnIdle waits so too)."""
        await self._no_transaction()

    async def _no_transaction(self) -> None:
        """Installing restarts the station: wait until no transaction runs."""
        while self.b.active_session() is not None:
            self._tx_ended.clear()
            await sleep_or_event(self._tx_ended, 1.0)

    async def _read_release(self, path: Path) -> bytes | None:
        """The downloaded file's bytes, read once (what is checked is what is installed); None if unreadable."""
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            log.error("firmware %s cannot be read: %s", path.name, exc)
            data = None
        _unlink(path)
        return data

    def _refused(self, name: str, data: bytes) -> str | None:
        """Why a release must not be installed (logged at ERROR), or None. Runs nothing of it."""
        try:
            firmware.check_release(data)
        except firmware.FirmwareRefused as exc:
            log.error("firmware %s refused, not installed: %s", name, exc)
            return str(exc)
        return None

    def check_signing_certificate(self, pem_text: str) -> None:
        """L01.FR.22: the signing certificate chains to the installer's firmware root. Raises CertificateError.

        Only `firmware.signing_ca_file` is trusted: a ManufacturerRootCertificate the central system installed
        would let a hostile central system vouch for its own code."""
        signing = certs.load_pems(pem_text)
        if len(signing) != 1:
            raise certs.CertificateError("exactly one signing certificate expected (no intermediates)")
        roots = firmware.signing_roots(self.b.config.firmware.signing_ca_file)
        certs.verify_chain(signing, roots, certs.now_utc(), "firmware signing certificate")

    async def _install(self, name: str, data: bytes) -> tuple[bool, str]:
        ok, output = await firmware.install(data, self.b.work_dir / "firmware", self.b.pip_command)
        if ok:
            self.b.security.event("FirmwareUpdated", f"{name} installed")
        else:
            log.error("firmware installation failed: %s", output)
        return ok, output

    async def _restart(self) -> None:
        await self.b.control.reset(False)  # the service manager restarts us on the new release

    # ---------------------------------------------------------------- UpdateFirmware
    async def firmware_notice(self, status: str) -> None:
        self.firmware_status = status
        if await self.b.link.notify("FirmwareStatusNotification", {"status": status}) is None \
                and status in ("Installed", "InstallationFailed", "DownloadFailed"):
            self.b.store.put_json(FIRMWARE_KEY, status)

    def update_firmware(self, location: str, retrieve_date: str, retries: int | None,
                        retry_interval: int | None) -> None:
        if self._firmware is not None and not self._firmware.done():
            self._firmware.cancel()
        self._firmware = self.b.spawn(self._update_firmware(location, retrieve_date, retries, retry_interval),
                                      "ocpp-update-firmware")

    async def _update_firmware(self, location: str, retrieve_date: str, retries: int | None,
                               retry_interval: int | None) -> None:
        await self._sleep_until(retrieve_date)
        tries, pause = self._tries(retries, retry_interval)
        path = await transfer.download_retrying(location, self.b.work_dir / "firmware",
                                                ca_file=self.b.ca_file, tries=tries, pause=pause,
                                                before_try=lambda: self.firmware_notice("Downloading"),
                                                max_bytes=firmware.MAX_BYTES)
        if path is None:
            await self.firmware_notice("DownloadFailed")
            self.firmware_status = "Idle"
            return
        await self.firmware_notice("Downloaded")
        data = await self._read_release(path)
        await self._no_transaction()
        await self.firmware_notice("Installing")
        if data is not None and await handoff.hand_over(self, path.name, data, {"kind": "unsigned", "requestId": None}):
            self.firmware_status = "Idle"
            return
        # a release that is not a clean station wheel is refused by firmware.install: InstallationFailed (TC_044_3)
        ok, _ = await self._install(path.name, data) if data is not None else (False, "")
        await self.firmware_notice("Installed" if ok else "InstallationFailed")
        self.firmware_status = "Idle"
        if ok:
            await self._restart()

    def keep_end(self, kind: str | None, request_id: int | None, status: str) -> None:
        """An end state for send_pending: sent at once if connected, else after the next boot."""
        if kind == "unsigned":
            self.b.store.put_json(FIRMWARE_KEY, "Installed" if status == "Installed" else "InstallationFailed")
        else:
            self.b.store.put_json(SIGNED_FW_KEY, {"status": status, "requestId": request_id, "unsent": True})

    async def send_pending(self) -> None:
        """After a boot: the end states that could not be sent before, and the privileged updater's result."""
        handoff.collect(self)
        status = self.b.store.get_json(FIRMWARE_KEY, None)
        if status:
            self.b.store.put_json(FIRMWARE_KEY, None)
            await self.firmware_notice(status)
        record = self.b.store.get_json(SIGNED_FW_KEY, None)
        if record and record.get("unsent"):
            await self.signed_notice(record["status"], record.get("requestId"))

    # ---------------------------------------------------------------- GetDiagnostics
    async def diagnostics_notice(self, status: str) -> None:
        self.diagnostics_status = status
        await self.b.link.notify("DiagnosticsStatusNotification", {"status": status})

    def diagnostics_name(self, kind: str = "diagnostics", request_id: int | None = None, suffix: str = ".tar.gz") -> str:
        stamp = self.b.now().strftime("%Y%m%dT%H%M%SZ")
        name = f"{kind}-{self.b.charge_point_id}-{stamp}" + (f"-{request_id}" if request_id is not None else "")
        return (name + suffix)[-255:]

    def upload_diagnostics(self, name: str, location: str, retries: int | None, retry_interval: int | None,
                           since: str | None, until: str | None) -> None:
        self.b.spawn(self._upload_diagnostics(name, location, retries, retry_interval, since, until),
                     "ocpp-diagnostics")

    async def _upload_diagnostics(self, name: str, location: str, retries: int | None, retry_interval: int | None,
                                  since: str | None, until: str | None) -> None:
        archive = await diagnostics.build_archive(self.b.work_dir / "diagnostics" / name, self.b.log_dirs,
                                                  since=since, until=until, extra=self.b.diagnostics_extra())
        tries, pause = self._tries(retries, retry_interval)
        await self.diagnostics_notice("Uploading")
        try:
            await transfer.upload_retrying(location, archive, ca_file=self.b.ca_file, tries=tries, pause=pause,
                                           what="diagnostics upload")
            await self.diagnostics_notice("Uploaded")
        except Exception:
            await self.diagnostics_notice("UploadFailed")
        finally:
            self.diagnostics_status = "Idle"
            _unlink(archive)

    # ---------------------------------------------------------------- SignedUpdateFirmware (L01)
    async def signed_notice(self, status: str, request_id: int | None) -> None:
        payload: dict[str, Any] = {"status": status}
        if request_id is not None:
            payload["requestId"] = request_id
        sent = await self.b.link.notify(self.firmware_action, payload) is not None
        # an end state is sent after the next boot
        self.b.store.put_json(SIGNED_FW_KEY, {"status": status, "requestId": request_id,
                                              "unsent": not sent and status in _FW_ENDS})

    def last_signed_status(self) -> tuple[str, int | None]:
        """L01.FR.28/29: the last status sent (Installed reads as Idle), with its requestId while under way."""
        record = self.b.store.get_json(SIGNED_FW_KEY, None) or {}
        status = record.get("status") or "Idle"
        running = self._signed is not None and not self._signed.done()
        if status == "Installed" or (not running and status in _FW_ENDS):
            return ("Idle" if status == "Installed" else status), (record.get("requestId") if status != "Installed" else None)
        return status, record.get("requestId")

    def signed_update_firmware(self, request_id: int, fw: dict[str, Any], retries: int | None,
                               retry_interval: int | None) -> bool:
        """Start the job; True if it cancelled a running one (L01.FR.26: AcceptedCanceled)."""
        cancelled = self._signed is not None and not self._signed.done()
        if self._signed is not None and cancelled:
            self._signed.cancel()
        self._signed = self.b.spawn(self._signed_update(request_id, fw, retries, retry_interval),
                                    "ocpp-signed-firmware")
        return cancelled

    async def _signed_update(self, request_id: int, fw: dict[str, Any], retries: int | None,
                             retry_interval: int | None) -> None:
        if (parse_iso(fw["retrieveDateTime"]) - self.b.now()).total_seconds() > 0:
            await self.signed_notice("DownloadScheduled", request_id)
            await self._sleep_until(fw["retrieveDateTime"])
        tries, pause = self._tries(retries, retry_interval)
        path = await transfer.download_retrying(fw["location"], self.b.work_dir / "firmware",
                                                ca_file=self.b.ca_file, tries=tries, pause=pause,
                                                before_try=lambda: self.signed_notice("Downloading", request_id),
                                                what="signed firmware", max_bytes=firmware.MAX_BYTES)
        if path is None:
            await self.signed_notice("DownloadFailed", request_id)
            return
        await self.signed_notice("Downloaded", request_id)
        data = await self._read_release(path)
        try:
            if data is None:
                raise certs.CertificateError("the downloaded file cannot be read")
            # the certificate again (it may have expired, or the root been replaced, since the request)
            self.check_signing_certificate(fw["signingCertificate"])
            signing = certs.load_pems(fw["signingCertificate"])[0]
            certs.verify_signature(signing, data, certs.decode_signature(fw["signature"]))
        except certs.CertificateError as exc:
            log.error("firmware %s refused: %s", path.name, exc)
            self.b.security.event("InvalidFirmwareSignature", f"{path.name}: {exc}")
            await self.signed_notice("InvalidSignature", request_id)
            return
        await self.signed_notice("SignatureVerified", request_id)
        if self._refused(path.name, data):
            await self.signed_notice("InstallVerificationFailed", request_id)
            return
        install_at = fw.get("installDateTime")
        if install_at and (parse_iso(install_at) - self.b.now()).total_seconds() > 0:
            await self.signed_notice("InstallScheduled", request_id)  # L01.FR.16
            await self._sleep_until(install_at)
        await self._no_transaction()  # L01.FR.06
        await self.signed_notice("Installing", request_id)
        if await handoff.hand_over(self, path.name, data, {"kind": "signed", "requestId": request_id,
                                                           "signingCertificate": fw["signingCertificate"],
                                                           "signature": fw["signature"]}):
            return  # the privileged updater installed it or not, and the end state is sent (or kept)
        ok, _ = await self._install(path.name, data)
        await self.signed_notice("Installed" if ok else "InstallationFailed", request_id)
        if ok:
            await self._restart()

    # ---------------------------------------------------------------- GetLog (N01)
    async def log_notice(self, status: str, request_id: int | None) -> None:
        payload: dict[str, Any] = {"status": status}
        if request_id is not None:
            payload["requestId"] = request_id
        await self.b.link.notify("LogStatusNotification", payload)

    def get_log(self, log_type: str, request_id: int, log: dict[str, Any], retries: int | None,
                retry_interval: int | None) -> dict[str, Any]:
        """The GetLog answer, the same in 1.6 (security extension) and 2.0.1: the file's name, and
        AcceptedCanceled when it replaced a running upload (N01.FR.11/12)."""
        security_log = log_type == "SecurityLog"
        name = self.diagnostics_name("security" if security_log else "diagnostics", request_id,
                                     ".log" if security_log else ".tar.gz")
        cancelled = self.upload_log(request_id, log_type, name, log["remoteLocation"], retries, retry_interval,
                                    log.get("oldestTimestamp"), log.get("latestTimestamp"))
        return {"status": "AcceptedCanceled" if cancelled else "Accepted", "filename": name}

    def upload_log(self, request_id: int, log_type: str, name: str, location: str, retries: int | None,
                   retry_interval: int | None, oldest: str | None, latest: str | None) -> bool:
        """Start the upload; True if it cancelled a running one (N01.FR.11: AcceptedCanceled)."""
        cancelled = self._log is not None and not self._log.done()
        if self._log is not None and cancelled:
            self._log.cancel()
        self._log = self.b.spawn(self._upload_log(request_id, log_type, name, location, retries, retry_interval,
                                                  oldest, latest), "ocpp-get-log")
        return cancelled

    def _security_log_file(self, dest: Path, oldest: str | None, latest: str | None) -> Path:
        lines = []
        for line in self.b.security.log.text().splitlines(keepends=True):
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

    async def _upload_log(self, request_id: int, log_type: str, name: str, location: str, retries: int | None,
                          retry_interval: int | None, oldest: str | None, latest: str | None) -> None:
        self.log_request = request_id
        dest = self.b.work_dir / "logs" / name
        try:
            if log_type == "SecurityLog":
                path = await asyncio.to_thread(self._security_log_file, dest, oldest, latest)
            else:
                path = await diagnostics.build_archive(dest, self.b.log_dirs, since=oldest, until=latest,
                                                       extra=self.b.diagnostics_extra())
            tries, pause = self._tries(retries, retry_interval)
            await self.log_notice("Uploading", request_id)
            final = "Uploaded"
            try:
                await transfer.upload_retrying(location, path, ca_file=self.b.ca_file, tries=tries, pause=pause,
                                               what=f"{log_type} upload")
            except transfer.PermissionDenied:
                final = "PermissionDenied"
            except Exception:
                final = "UploadFailure"
            await self.log_notice(final, request_id)
        finally:
            self.log_request = None
            _unlink(dest)

    # ---------------------------------------------------------------- the station's key (A02)
    def sign_certificate(self) -> None:
        self.b.spawn(self._sign_certificate(), "ocpp-sign-certificate")

    async def _sign_certificate(self) -> None:
        security = self.b.security
        csr = await asyncio.to_thread(security.certs.new_csr, self.b.charge_point_id, security.cpo_name)
        conf = await self.b.link.notify("SignCertificate", {"csr": csr}, allow_pending=False)
        if conf is not None and conf.get("status") != "Accepted":
            log.warning("the central system rejected the certificate signing request")
