"""Firmware through the privileged updater, at the strict central system (ocpp-rpc): the daemon hands over, the
updater installs, the end state reaches the central system.

Where the spool `<state_dir>/firmware` exists (scripts/install-pi makes it next to station-update.path), the
daemon never runs pip: after its own checks and `Installing` it writes the release into the spool and waits for
the restart the updater makes. Here the updater is `station.services.updater.install_pending`, run by the
test as station-update.service would run it (with its own configuration file, pip's --target a directory of the
test); the restart is closing the charge point and starting a new one on the same state directory.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from firmware_support import RELEASE_MODULE
from ocpp_files import WHEEL, FilesHandler, in_seconds, make_wheel

from station.services import handover, updater

ENDS = {"Installed", "InstallationFailed", "InstallVerificationFailed", "InvalidSignature", "DownloadFailed"}


@pytest.fixture
def served(tmp_path):
    import http.server
    import threading

    d = tmp_path / "served"
    d.mkdir()
    make_wheel(d / WHEEL)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: FilesHandler(*a, directory=str(d)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield d, f"http://127.0.0.1:{server.server_address[1]}/{WHEEL}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def station_dir(tmp_path, pki):
    """The station's state directory with the spool, and root's configuration for the updater."""
    state = tmp_path / "state"
    (state / "firmware").mkdir(parents=True, mode=0o770)
    root_config = tmp_path / "etc-station.toml"
    root_config.write_text(f'[firmware]\nsigning_ca_file = "{pki.path("mfr-ca.pem")}"\n')
    return state, root_config


@pytest.fixture
async def charge_point(pki, tmp_path):
    """make(cs, state_dir, **config) -> a started charge point whose pip (were it ever run) leaves a mark."""
    from conftest import Rig

    open_rigs: list = []

    async def make(cs, state: Path, **extra):
        rig = Rig(state, cs.url, {"MeterValueSampleInterval": 0},
                  extra={"firmware.signing_ca_file": pki.path("mfr-ca.pem"), **extra})
        rig.pip_ran = tmp_path / "daemon-ran-pip"
        rig.backend.pip_command = [sys.executable, "-c", f"open({str(rig.pip_ran)!r}, 'w').write('ran')"]
        open_rigs.append(rig)
        await rig.start()
        await rig.online()
        return rig

    async def restart(rig):
        open_rigs.remove(rig)
        await rig.close()

    make.close = restart
    yield make
    for rig in open_rigs:
        await rig.close()


async def run_updater(state: Path, root_config: Path, target: Path) -> updater.Outcome | None:
    prefix = [sys.executable, "-I", "-m", "pip", "install", "--target", str(target)]
    return await asyncio.to_thread(updater.install_pending, handover.spool_dir(state), root_config, prefix=prefix)


async def until(cond, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def statuses(cs, request_id: int) -> list[str]:
    return [p["status"] for p in cs.calls("SignedFirmwareStatusNotification") if p.get("requestId") == request_id]


async def test_signed_firmware_is_handed_over_installed_by_the_updater_and_reported_after_the_restart(
        strict_factory, charge_point, served, station_dir, pki, tmp_path):
    files, url = served
    state, root_config = station_dir
    data = (files / WHEEL).read_bytes()
    cs = await strict_factory({})
    rig = await charge_point(cs, state)
    signature = pki.sign_firmware(data)
    answer = await cs.command("SignedUpdateFirmware", {"requestId": 42, "retries": 1, "firmware": {
        "location": url, "retrieveDateTime": in_seconds(0), "signingCertificate": (pki.dir / "signer.pem").read_text(),
        "signature": signature}})
    assert answer["status"] == "Accepted"
    pending = state / "firmware" / "pending"
    await until(lambda: (pending / "ready").exists())
    # what the daemon handed over: the downloaded bytes, the request as the central system signed it
    assert (pending / "release.whl").read_bytes() == data
    assert json.loads((pending / "request.json").read_text()) == {
        "kind": "signed", "requestId": 42, "signingCertificate": (pki.dir / "signer.pem").read_text(),
        "signature": signature}
    await cs.call_from_cp("SignedFirmwareStatusNotification", lambda p: p["status"] == "Installing")
    assert statuses(cs, 42) == ["Downloading", "Downloaded", "SignatureVerified", "Installing"]

    await charge_point.close(rig)  # the updater's try-restart stops the daemon ...
    outcome = await run_updater(state, root_config, tmp_path / "site")
    assert outcome is not None and outcome.status == "Installed"
    assert (tmp_path / "site" / RELEASE_MODULE).exists()
    assert not rig.pip_ran.exists()  # the daemon never ran pip

    n = len(cs.events)
    rig = await charge_point(cs, state)  # ... and systemd starts it again
    end = await cs.call_from_cp("SignedFirmwareStatusNotification", lambda p: p["status"] in ENDS, after=n, timeout=30)
    assert end == {"status": "Installed", "requestId": 42}
    await cs.call_from_cp("SecurityEventNotification", lambda p: p["type"] == "FirmwareUpdated", after=n)
    assert not (state / "firmware" / "result.json").exists()
    await asyncio.sleep(0.5)
    assert statuses(cs, 42).count("Installed") == 1  # sent once
    assert ("reset", False) not in rig.station.calls  # this is the new release already
    assert cs.failures() == []


async def test_the_updater_trusts_roots_configuration_not_the_daemons(strict_factory, charge_point, served, station_dir,
                                                                     pki, tmp_path):
    """The daemon's configuration allows unsigned firmware (profile 0), root's does not: the daemon hands the
    release over and the updater refuses it; the daemon, still running (no restart in this test), reports
    InstallationFailed from the updater's result."""
    _, url = served
    state, root_config = station_dir
    cs = await strict_factory({})
    rig = await charge_point(cs, state, **{"firmware.allow_unsigned": True})
    n = len(cs.events)
    await cs.command("UpdateFirmware", {"location": url, "retrieveDate": in_seconds(0)})
    await until(lambda: (state / "firmware" / "pending" / "ready").exists())
    outcome = await run_updater(state, root_config, tmp_path / "site")
    assert outcome.status == "InstallationFailed" and "allow_unsigned" in outcome.reason
    end = await cs.call_from_cp("FirmwareStatusNotification", lambda p: p["status"] in ENDS, after=n, timeout=30)
    assert end == {"status": "InstallationFailed"}
    assert [p["status"] for p in cs.calls("FirmwareStatusNotification")] == [
        "Downloading", "Downloaded", "Installing", "InstallationFailed"]
    assert not (tmp_path / "site").exists() and not rig.pip_ran.exists()
    assert ("reset", False) not in rig.station.calls
    assert cs.failures() == []


async def test_no_updater_takes_the_release_installation_failed(strict_factory, charge_point, served, station_dir, pki,
                                                                tmp_path, monkeypatch):
    """The spool exists but station-update.path does not run: after the wait the daemon takes the release back
    and reports InstallationFailed itself; nothing is installed, nothing is left in the spool."""
    monkeypatch.setattr(handover, "TAKE_S", 25.0)  # 0.5 s at the tests' time scale
    files, url = served
    state, _ = station_dir
    cs = await strict_factory({})
    rig = await charge_point(cs, state)
    await cs.command("SignedUpdateFirmware", {"requestId": 5, "retries": 1, "firmware": {
        "location": url, "retrieveDateTime": in_seconds(0), "signingCertificate": (pki.dir / "signer.pem").read_text(),
        "signature": pki.sign_firmware((files / WHEEL).read_bytes())}})
    end = await cs.call_from_cp("SignedFirmwareStatusNotification", lambda p: p["status"] in ENDS, timeout=30)
    assert end == {"status": "InstallationFailed", "requestId": 5}
    assert list((state / "firmware").iterdir()) == []
    assert not rig.pip_ran.exists() and ("reset", False) not in rig.station.calls
    assert cs.failures() == []


async def test_ocpp201_update_firmware_through_the_updater(strict201, charge_point, served, station_dir, pki, tmp_path):
    """OCPP 2.0.1 UpdateFirmware (L01) takes the same way: FirmwareStatusNotification Installed with the
    requestId from the restarted station."""
    files, url = served
    state, root_config = station_dir
    cs = strict201
    data = (files / WHEEL).read_bytes()
    rig = await charge_point(cs, state, **{"backend.ocpp.versions": ["2.0.1"]})
    answer = await cs.command("UpdateFirmware", {"requestId": 9, "firmware": {
        "location": url, "retrieveDateTime": in_seconds(0), "signingCertificate": (pki.dir / "signer.pem").read_text(),
        "signature": pki.sign_firmware(data)}})
    assert answer["status"] == "Accepted"
    await cs.call_from_cp("FirmwareStatusNotification", lambda p: p["status"] == "Installing", timeout=30)
    await until(lambda: (state / "firmware" / "pending" / "ready").exists())
    await charge_point.close(rig)
    assert (await run_updater(state, root_config, tmp_path / "site")).status == "Installed"
    n = len(cs.events)
    await charge_point(cs, state, **{"backend.ocpp.versions": ["2.0.1"]})
    end = await cs.call_from_cp("FirmwareStatusNotification", lambda p: p["status"] in ENDS, after=n, timeout=30)
    assert end == {"status": "Installed", "requestId": 9}
    assert (tmp_path / "site" / RELEASE_MODULE).exists()
    assert cs.failures() == []
