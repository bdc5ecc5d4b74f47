"""FirmwareManagement compliance cases against local HTTP and FTP servers on 127.0.0.1.

The firmware is a real (tiny) wheel of the `station` distribution, installed by
the real pip into a target directory of the test instead of the running
environment. Unsigned UpdateFirmware needs `firmware.allow_unsigned` (off by
default); tests/backends/ocpp/test_ocpp_hostile_firmware.py has what it refuses.
"""

from __future__ import annotations

import asyncio
import http.server
import sys
import tarfile
import threading
from pathlib import Path

import pytest
from firmware_support import RELEASE_MODULE
from ocpp.v16 import call
from ocpp_files import WHEEL, FilesHandler, in_seconds, make_wheel

UNSIGNED = {"firmware.allow_unsigned": True}


@pytest.fixture
def files_dir(tmp_path):
    d = tmp_path / "served"
    d.mkdir()
    make_wheel(d / WHEEL)
    (d / "broken-1.0-py3-none-any.whl").write_bytes(b"this is not a zip file")
    return d


@pytest.fixture
def http_url(files_dir):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: FilesHandler(*a, directory=str(files_dir)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def ftp_url(files_dir):
    pytest.importorskip("pyftpdlib", reason="pyftpdlib (test extra) is needed for the FTP server")
    import warnings

    with warnings.catch_warnings():  # pyftpdlib 2 still imports asyncore/asynchat on 3.11
        warnings.simplefilter("ignore", DeprecationWarning)
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import FTPHandler
        from pyftpdlib.servers import FTPServer

    authorizer = DummyAuthorizer()
    authorizer.add_user("station", "secret", str(files_dir), perm="elradfmw")

    class Handler(FTPHandler):
        pass
    Handler.authorizer = authorizer
    server = FTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.1}, daemon=True)
    thread.start()
    yield f"ftp://station:secret@127.0.0.1:{server.address[1]}"
    server.close_all()


@pytest.fixture
async def fw_sim(csms, sim_factory, tmp_path):
    s = await sim_factory(csms.url, **UNSIGNED)
    await s.online()
    target = tmp_path / "site"
    s.backend.pip_command = [sys.executable, "-m", "pip", "install", "--no-input", "--no-deps", "--no-index",
                             "--disable-pip-version-check", "--target", str(target)]
    s.target = target
    return s


async def firmware_statuses(csms, until: set[str], timeout: float = 60.0) -> list[str]:
    await csms.wait_for("FirmwareStatusNotification", lambda p: p["status"] in until, timeout=timeout)
    return [p["status"] for p in csms.calls("FirmwareStatusNotification")]


async def wait_exit(sim, timeout: float = 10.0) -> str | None:
    for _ in range(int(timeout / 0.05)):
        if sim.charger.exit_request is not None:
            break
        await asyncio.sleep(0.05)
    return sim.charger.exit_request


async def test_TC_044_1_firmware_update_download_and_install_http(csms, fw_sim, http_url):
    await csms.call(call.UpdateFirmware(location=f"{http_url}/{WHEEL}", retrieve_date=in_seconds(0)))
    seen = await firmware_statuses(csms, {"Installed", "InstallationFailed", "DownloadFailed"})
    assert seen == ["Downloading", "Downloaded", "Installing", "Installed"]
    assert (fw_sim.target / RELEASE_MODULE).exists()
    assert await wait_exit(fw_sim) == "soft"  # restarted onto the new release


async def test_TC_044_1_firmware_update_over_ftp_at_retrieve_date(csms, fw_sim, ftp_url):
    t0 = asyncio.get_running_loop().time()
    await csms.call(call.UpdateFirmware(location=f"{ftp_url}/{WHEEL}", retrieve_date=in_seconds(20)))  # 0.4 s scaled
    seen = await firmware_statuses(csms, {"Installed", "InstallationFailed", "DownloadFailed"})
    assert seen == ["Downloading", "Downloaded", "Installing", "Installed"]
    first = next(r for r in csms.received if r.action == "FirmwareStatusNotification")
    assert first.at - t0 >= 0.3  # waited for retrieveDate
    assert (fw_sim.target / RELEASE_MODULE).exists()


async def test_TC_044_2_firmware_update_download_failed(csms, fw_sim, http_url):
    await csms.call(call.UpdateFirmware(location=f"{http_url}/missing.whl", retrieve_date=in_seconds(0),
                                        retries=2, retry_interval=5))
    seen = await firmware_statuses(csms, {"DownloadFailed"})
    assert seen == ["Downloading", "Downloading", "DownloadFailed"]
    assert fw_sim.charger.exit_request is None


async def test_TC_044_3_firmware_update_installation_failed(csms, fw_sim, http_url):
    await csms.call(call.UpdateFirmware(location=f"{http_url}/broken-1.0-py3-none-any.whl",
                                        retrieve_date=in_seconds(0)))
    seen = await firmware_statuses(csms, {"InstallationFailed", "Installed"})
    assert seen == ["Downloading", "Downloaded", "Installing", "InstallationFailed"]
    assert fw_sim.charger.exit_request is None


def _archive_names(path: Path) -> list[str]:
    with tarfile.open(path, "r:gz") as tar:
        return tar.getnames()


async def test_TC_045_1_get_diagnostics_ftp(csms, fw_sim, ftp_url, files_dir):
    log_dir = Path(fw_sim.station.config.station.state_dir) / "logs"
    log_dir.mkdir(exist_ok=True)
    (log_dir / "station.log").write_text("a log line\n")
    result = await csms.call(call.GetDiagnostics(location=f"{ftp_url}/"))
    assert result.file_name.endswith(".tar.gz")
    await csms.wait_for("DiagnosticsStatusNotification", lambda p: p["status"] == "Uploaded", timeout=30)
    assert [p["status"] for p in csms.calls("DiagnosticsStatusNotification")] == ["Uploading", "Uploaded"]
    names = _archive_names(files_dir / result.file_name)
    assert "logs/station.log" in names and "ocpp-frames.txt" in names and "ocpp-configuration.txt" in names


async def test_TC_045_1_get_diagnostics_http_put(csms, fw_sim, http_url, files_dir):
    result = await csms.call(call.GetDiagnostics(location=f"{http_url}/diagnostics/"))
    await csms.wait_for("DiagnosticsStatusNotification", lambda p: p["status"] == "Uploaded", timeout=30)
    assert "ocpp-frames.txt" in _archive_names(files_dir / "uploads" / result.file_name)


async def test_TC_045_2_get_diagnostics_upload_failed(csms, fw_sim):
    result = await csms.call(call.GetDiagnostics(location="ftp://127.0.0.1:9/", retries=2, retry_interval=5))
    assert result.file_name
    await csms.wait_for("DiagnosticsStatusNotification", lambda p: p["status"] == "UploadFailed", timeout=30)
    assert [p["status"] for p in csms.calls("DiagnosticsStatusNotification")] == ["Uploading", "UploadFailed"]


async def test_TC_044_1_firmware_update_over_https(csms, sim_factory, files_dir, tmp_path):
    """https:// with the central system's own CA (backend.ocpp.ca_file)."""
    import ssl

    from pki_support import Pki

    certs = Pki(tmp_path / "pki")
    certs.ca("ca")
    certs.leaf("server", "ca", cn="127.0.0.1", hosts=["127.0.0.1"])
    cert, key, ca = certs / "server.pem", certs / "server.key", certs / "ca.pem"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: FilesHandler(*a, directory=str(files_dir)))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        s = await sim_factory(csms.url, **{"backend.ocpp.ca_file": str(ca)}, **UNSIGNED)
        await s.online()
        target = tmp_path / "site"
        s.backend.pip_command = [sys.executable, "-m", "pip", "install", "--no-input", "--no-deps", "--no-index",
                                 "--disable-pip-version-check", "--target", str(target)]
        url = f"https://127.0.0.1:{server.server_address[1]}/{WHEEL}"
        await csms.call(call.UpdateFirmware(location=url, retrieve_date=in_seconds(0)))
        seen = await firmware_statuses(csms, {"Installed", "InstallationFailed", "DownloadFailed"})
        assert seen == ["Downloading", "Downloaded", "Installing", "Installed"]
        assert (target / RELEASE_MODULE).exists()
    finally:
        server.shutdown()
        server.server_close()
