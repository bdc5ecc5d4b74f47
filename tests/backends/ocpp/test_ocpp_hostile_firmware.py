"""A hostile central system cannot make the station run code through a firmware update, in any profile.

The central system is the independent strict one (ocpp-rpc, scripts/harness/peers) with each security profile's
transport (0: ws://; 1: Basic auth; 2: TLS; 3: TLS with a client certificate; PKI of tests/backends/ocpp/pki.py):
a central system that passed every check the profile makes, and is hostile. It serves its files over
HTTP on 127.0.0.1 and tries, in every profile:

* UpdateFirmware (unsigned) of a `station` wheel carrying a .pth file, and of a source package whose
  setup.py writes a marker;
* SignedUpdateFirmware signed by a root of its own, which it installs first as a
  ManufacturerRootCertificate;
* SignedUpdateFirmware of every hostile file with a valid signature of the station's manufacturer (a
  stolen signing key, a manufacturer's mistake): the contents check refuses each one.

Then, checked from outside the station's code: no marker file, no hostile file in pip's target
directory, and a fresh interpreter that takes that directory as a site directory (as the station's
environment would be at the next start) runs nothing. pip's target is a directory of the test, so a
failure cannot touch the test environment.
"""

from __future__ import annotations

import base64
import http.server
import json
import sys
import threading

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from firmware_support import RELEASE, hostile_wheels, nothing_ran, sdist, wheel
from ocpp_files import FilesHandler, in_seconds
from ocpp_profiles import KEY, profile_config, tls
from pki import pem
from pki_support import name, new_key

SDIST = "station-99.0.tar.gz"
ENDS = {"Installed", "InstallationFailed", "InstallVerificationFailed", "InvalidSignature", "DownloadFailed"}


def strict_security(profile: int, pki) -> dict:
    return [{}, {"password": KEY}, {"password": KEY, "tls": tls(pki), "plain": False},
            {"password": KEY, "tls": tls(pki, client=True), "plain": False}][profile]


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "MARKER-code-ran"


@pytest.fixture
def hostile(tmp_path, marker):
    """The hostile central system's file server: {what it tries: url}."""
    d = tmp_path / "served"
    d.mkdir()
    files = {what: path.name for what, path in hostile_wheels(d, marker).items()}
    files["source package"] = sdist(d / SDIST, marker).name
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: FilesHandler(*a, directory=str(d)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield {what: (f"{base}/{file}", (d / file).read_bytes()) for what, file in files.items()}
    server.shutdown()
    server.server_close()


async def command_error(cs, method: str, params: dict) -> dict:
    """Send a CALL the station must answer with a CALLERROR; returns it."""
    cs._next += 1
    ident = cs._next
    cs.proc.stdin.write((json.dumps({"id": ident, "method": method, "params": params}) + "\n").encode())
    await cs.proc.stdin.drain()
    answer = await cs.wait(lambda e: e.get("id") == ident and e["event"] in ("result", "error"))
    assert answer["event"] == "error", answer
    return answer


async def signed_end(cs, request_id: int, timeout: float = 60.0) -> str:
    e = await cs.wait(lambda e: e["event"] == "call" and e["method"] == "SignedFirmwareStatusNotification"
                      and e["params"].get("requestId") == request_id and e["params"]["status"] in ENDS, timeout=timeout)
    return e["params"]["status"]


async def station(rig_factory, cs, pki, tmp_path, profile: int, **extra):
    url = cs.url if profile <= 1 else "ws://127.0.0.1:1/unused"
    config = {**profile_config(cs, profile, pki, key=None if profile == 3 else KEY),
              "firmware.signing_ca_file": pki.path("mfr-ca.pem"), **extra}
    if profile == 0:
        config = {k: v for k, v in config.items() if k != "backend.ocpp.authorization_key"}
    rig = await rig_factory(url, {"MeterValueSampleInterval": 0}, extra=config)
    rig.target = tmp_path / "site-packages"
    rig.backend.pip_command = [sys.executable, "-m", "pip", "install", "--target", str(rig.target)]
    await rig.online()
    return rig


@pytest.mark.parametrize("profile", [0, 1, 2, 3])
async def test_a_hostile_central_system_runs_no_code(profile, strict_factory, rig_factory, pki, tmp_path, hostile,
                                                     marker):
    cs = await strict_factory(strict_security(profile, pki))
    rig = await station(rig_factory, cs, pki, tmp_path, profile)

    # 1. unsigned: refused at once, nothing downloaded
    for what in ("pth", "source package"):
        error = await command_error(cs, "UpdateFirmware", {"location": hostile[what][0], "retrieveDate": in_seconds(0)})
        assert error["code"] == "NotSupported", (what, error)
    await cs.call_from_cp("SecurityEventNotification", lambda p: p["type"] == "InvalidFirmwareSignature")

    # 2. signed with a root of its own, installed over OCPP first
    own_key = new_key()
    own_signer = pki.rogue.issue(own_key.public_key(), name("firmware signer", "Hostile CPO"))
    assert (await cs.command("InstallCertificate", {"certificateType": "ManufacturerRootCertificate",
                                                     "certificate": pki.rogue.pem}))["status"] == "Accepted"
    url, data = hostile["pth"]
    answer = await cs.command("SignedUpdateFirmware", {"requestId": 1, "firmware": {
        "location": url, "retrieveDateTime": in_seconds(0), "signingCertificate": pem(own_signer),
        "signature": base64.b64encode(own_key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()}})
    assert answer["status"] == "InvalidCertificate"

    # 3. every hostile file validly signed by the manufacturer: the contents check refuses each
    for n, (what, (url, data)) in enumerate(hostile.items(), start=10):
        answer = await cs.command("SignedUpdateFirmware", {"requestId": n, "retries": 1, "firmware": {
            "location": url, "retrieveDateTime": in_seconds(0),
            "signingCertificate": (pki.dir / "signer.pem").read_text(), "signature": pki.sign_firmware(data)}})
        assert answer["status"] == "Accepted", what
        assert await signed_end(cs, n) == "InstallVerificationFailed", what

    nothing_ran(marker, rig.target)
    assert ("reset", False) not in rig.station.calls
    assert cs.failures() == []


async def test_unsigned_firmware_allowed_still_installs_no_hostile_file(strict_factory, rig_factory, pki, tmp_path,
                                                                         hostile, marker):
    """With the dangerous firmware.allow_unsigned (profile 0), the contents check and pip's flags still stop
    every file that runs code at install or at the next start: InstallationFailed for each."""
    cs = await strict_factory({})
    rig = await station(rig_factory, cs, pki, tmp_path, 0, **{"firmware.allow_unsigned": True})
    for what, (url, _) in hostile.items():
        after = len(cs.events)
        await cs.command("UpdateFirmware", {"location": url, "retrieveDate": in_seconds(0)})
        end = await cs.call_from_cp("FirmwareStatusNotification", after=after,
                                    pred=lambda p: p["status"] in ("Installed", "InstallationFailed", "DownloadFailed"))
        assert end["status"] == "InstallationFailed", what
    nothing_ran(marker, rig.target)
    assert ("reset", False) not in rig.station.calls
    assert cs.failures() == []


async def test_no_signing_root_configured_no_firmware(strict_factory, rig_factory, pki, tmp_path):
    """Without firmware.signing_ca_file a station takes no firmware at all, not even a good, validly signed one
    whose manufacturer root the central system installed."""
    served = tmp_path / "served"
    served.mkdir()
    data = wheel(served / RELEASE).read_bytes()
    cs = await strict_factory({})
    await station(rig_factory, cs, pki, tmp_path, 0, **{"firmware.signing_ca_file": None})
    await cs.command("InstallCertificate", {"certificateType": "ManufacturerRootCertificate", "certificate": pki.mfr.pem})
    answer = await cs.command("SignedUpdateFirmware", {"requestId": 5, "firmware": {
        "location": "http://127.0.0.1:9/" + RELEASE, "retrieveDateTime": in_seconds(0),
        "signingCertificate": (pki.dir / "signer.pem").read_text(), "signature": pki.sign_firmware(data)}})
    assert answer["status"] == "InvalidCertificate"
    event = await cs.call_from_cp("SecurityEventNotification", lambda p: p["type"] == "InvalidFirmwareSigningCertificate")
    assert "firmware.signing_ca_file" in event["techInfo"]
    assert cs.calls("SignedFirmwareStatusNotification") == []
