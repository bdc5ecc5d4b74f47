"""OCPP 2.0.1 security (A), firmware (L), certificates (M), logs and customer information (N) and data
transfer (P) on the whole simulated station, against the independent strict 2.0.1 central system (ocpp-rpc,
strict mode, its bundled schemas; Basic auth, TLS and client certificates from the test's own PKI)."""

from __future__ import annotations

import asyncio
import base64
import sys

import strict_peer
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from firmware_support import RELEASE_MODULE
from ocpp_files import WHEEL, firmware
from ocpp_flows import UID
from ocpp_profiles import KEY, profile_config, tls
from pki import ocsp_hash_data
from pki_support import cert_pem, name, new_key
from strict_peer import TimedCS


async def start201(strict_factory, security: dict) -> TimedCS:
    cs = await strict_factory({**security, "protocols": ["ocpp2.0.1"]})
    return cs


def calls(cs: TimedCS, method: str, after: int = 0) -> list[dict]:
    return [e["params"] for e in cs.events[after:] if e["event"] == "call" and e["method"] == method]


async def test_TC_A_01_09_10_CS_basic_auth_and_a_new_password(strict_factory, sim201_factory):
    """TC_A_01_CS (A00.FR.2xx, security profile 1): HTTP Basic with the charge point id and the password;
    TC_A_09_CS (A01.FR.02/11): SetVariables BasicAuthPassword: Accepted, a ReconfigurationOfSecurityParameters
    event, and the next connection uses it; TC_A_10_CS: a password too short is Rejected; the password never
    appears in the frame log (A01.FR.12) and is not readable (WriteOnly, B06.FR.09)."""
    cs = await start201(strict_factory, {"password": KEY})
    s = await sim201_factory("ws://127.0.0.1:1/unused", **{**profile_config(cs, 1), "backend.ocpp.url": cs.url})
    await s.online()
    upgrade = cs.of("upgrade")[0]
    assert upgrade["basic"] and upgrade["identity"] == "CP1"
    await cs.call_from_cp("SecurityEventNotification", lambda p: p["type"] == "StartupOfTheDevice")
    new = "a-new-password-of-24-ch"
    short = await cs.command("SetVariables", {"setVariableData": [
        {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}, "attributeValue": "short"}]})
    assert short["setVariableResult"][0]["attributeStatus"] == "Rejected"
    await cs.command("__setPassword", {"password": new})
    n = len(cs.events)
    changed = await cs.command("SetVariables", {"setVariableData": [
        {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}, "attributeValue": new}]})
    assert changed["setVariableResult"][0]["attributeStatus"] == "Accepted"
    await cs.wait(lambda e: e in cs.events[n:] and e["event"] == "upgrade")
    await cs.call_from_cp("SecurityEventNotification", lambda p: p["type"] == "ReconfigurationOfSecurityParameters",
                          after=n)
    assert not any(new in frame for frame in s.backend.frames)
    assert cs.failures() == []


async def test_TC_A_04_07_CS_tls_server_and_client_certificates(strict_factory, sim201_factory, pki):
    """TC_A_04_CS (profile 2: TLS 1.2+, the central system's certificate checked, Basic) and TC_A_07_CS (profile
    3: the station's client certificate), the same link code as 1.6 speaking 2.0.1."""
    for profile, security in ((2, {"password": KEY, "tls": tls(pki), "plain": False}),
                              (3, {"tls": tls(pki, client=True), "plain": False})):
        cs = await start201(strict_factory, security)
        key = KEY if profile == 2 else None
        s = await sim201_factory("ws://127.0.0.1:1/unused", **profile_config(cs, profile, pki, key=key))
        await s.online()
        upgrade = cs.of("upgrade")[0]
        assert upgrade["tls"] is True and (upgrade["clientCert"] == "CP1") == (profile == 3)
        assert cs.failures() == []
        await s.station.stop(graceful=False)


async def test_TC_A_11_14_CS_station_certificate_on_request(strict_factory, sim201_factory, pki):
    """TC_A_11_CS (A02.FR.02/03/08): TriggerMessage SignChargingStationCertificate (Rejected until
    SecurityCtrlr.OrganizationName is set), the CSR in SignCertificateRequest, CertificateSigned, and under
    profile 3 the next connection shows the new certificate; TC_A_14_CS (A02.FR.07): a certificate of another
    CA is Rejected."""
    cs = await start201(strict_factory, {"tls": tls(pki, client=True), "plain": False})
    s = await sim201_factory("ws://127.0.0.1:1/unused", **profile_config(cs, 3, pki, key=None))
    await s.online()
    sign = {"requestedMessage": "SignChargingStationCertificate"}
    assert (await cs.command("TriggerMessage", sign))["status"] == "Rejected"
    await cs.command("SetVariables", {"setVariableData": [
        {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "OrganizationName"}, "attributeValue": "Test CPO"}]})
    assert (await cs.command("TriggerMessage", sign))["status"] == "Accepted"
    csr = (await cs.call_from_cp("SignCertificate"))["csr"]
    from cryptography.hazmat.primitives.serialization import Encoding
    rogue = pki.rogue.sign_csr(csr).public_bytes(Encoding.PEM).decode()
    assert (await cs.command("CertificateSigned", {"certificateChain": rogue}))["status"] == "Rejected"
    signed = pki.cpo.sign_csr(csr)
    n = len(cs.events)
    chain = signed.public_bytes(Encoding.PEM).decode()
    assert (await cs.command("CertificateSigned", {"certificateChain": chain,
                                                   "certificateType": "ChargingStationCertificate"}))["status"] == "Accepted"
    second = await cs.wait(lambda e: e in cs.events[n:] and e["event"] == "upgrade")
    assert second["clientCert"] == "CP1" and second["tls"] is True
    await cs.call_from_cp("SecurityEventNotification", lambda p: p["type"] == "InvalidChargingStationCertificate")
    assert cs.failures() == []


async def test_TC_A_23_M_23_CS_signing_again_and_the_own_certificate_stays(strict_factory, sim201_factory, pki):
    """TC_A_23_CS (A02.FR.17/18): SignCertificateRequest Accepted, and no CertificateSigned follows: after
    SecurityCtrlr.CertSigningWaitMinimum a new SignCertificateRequest (a new CSR), the wait doubled, at most
    CertSigningRepeatTimes more (1 here: two in all, then no more); a CertificateSigned ends the repeats.
    TC_M_23_CS (M04): DeleteCertificate of the station's own certificate (profile 3, the one it connects with)
    is Failed, and it still connects with it."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    cs = await start201(strict_factory, {"tls": tls(pki, client=True), "plain": False})
    s = await sim201_factory("ws://127.0.0.1:1/unused", {"SecurityCtrlr/CertSigningWaitMinimum": 25,  # 0.5 s
                                                         "SecurityCtrlr/CertSigningRepeatTimes": 1},
                             **profile_config(cs, 3, pki, key=None))
    await s.online()
    await cs.command("SetVariables", {"setVariableData": [
        {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "OrganizationName"}, "attributeValue": "Test CPO"}]})
    n = len(cs.events)
    assert (await cs.command("TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"}))["status"] \
        == "Accepted"
    first = await cs.wait(lambda e: e["event"] == "call" and e["method"] == "SignCertificate", after=n)
    second = await cs.wait(lambda e: e["event"] == "call" and e["method"] == "SignCertificate" and e is not first,
                           after=n)
    assert second["params"]["csr"] != first["params"]["csr"] and second["t"] - first["t"] >= 0.4
    await asyncio.sleep(2.5)  # the doubled wait (1 s) is long over: RepeatTimes 1 allows no third
    assert len(calls(cs, "SignCertificate", n)) == 2
    n = len(cs.events)
    assert (await cs.command("TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"}))["status"] \
        == "Accepted"
    csr = (await cs.call_from_cp("SignCertificate", after=n))["csr"]
    chain = pki.cpo.sign_csr(csr).public_bytes(Encoding.PEM).decode()
    assert (await cs.command("CertificateSigned", {"certificateChain": chain}))["status"] == "Accepted"
    await asyncio.sleep(1.5)
    assert len(calls(cs, "SignCertificate", n)) == 1  # signed: no repeat
    await cs.wait(lambda e: e in cs.events[n:] and e["event"] == "upgrade")
    await s.online()
    own = x509.load_pem_x509_certificate(chain.encode())
    hash_data = ocsp_hash_data(own, pki.cpo.cert)
    assert (await cs.command("DeleteCertificate", {"certificateHashData": hash_data}))["status"] == "Failed"
    other = {**hash_data, "serialNumber": "1234abcd"}
    assert (await cs.command("DeleteCertificate", {"certificateHashData": other}))["status"] == "NotFound"
    assert cs.failures() == []


async def test_TC_A_05_15_CS_untrusted_csms_certificate_and_a_refused_signing(strict_factory, sim201_factory, pki):
    """TC_A_05_CS (A00.FR.3xx): a CSMS certificate the station's CSMS root did not issue: no connection; once the
    central system shows a valid one the station connects and reports InvalidCsmsCertificate (the 2.0.1 name,
    A00.FR.4xx security event); TC_A_15_CS (A02): a SignCertificateRequest the central system Rejects changes
    nothing (the connection and the station certificate stay)."""
    cs = await start201(strict_factory, {"password": KEY, "tls": tls(pki, server="rogue-server"), "plain": False})
    s = await sim201_factory("ws://127.0.0.1:1/unused", **profile_config(cs, 2, pki))
    await asyncio.sleep(1.0)
    assert cs.of("upgrade") == [] and not s.backend.link.accepted
    await cs.command("__setServerCert", {"cert": pki.path("server.pem"), "key": pki.path("server.key")})
    await s.online(timeout=15)
    event = await cs.call_from_cp("SecurityEventNotification", lambda p: p["type"] == "InvalidCsmsCertificate")
    assert "server_cert" in event["techInfo"]
    await cs.command("SetVariables", {"setVariableData": [
        {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "OrganizationName"}, "attributeValue": "Test CPO"}]})
    await cs.command("__answer", {"method": "SignCertificate", "result": {"status": "Rejected"}})
    n = len(cs.events)
    assert (await cs.command("TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"}))["status"] \
        == "Accepted"
    await cs.call_from_cp("SignCertificate", after=n)
    await asyncio.sleep(0.5)
    assert s.backend.link.accepted and len(cs.of("upgrade")) == 1
    assert cs.failures() == []


async def test_TC_A_06_CS_tls_version_too_low(strict_factory, sim201_factory, pki):
    """TC_A_06_CS (A00.FR.3xx: TLS 1.2 or later): a central system that offers only TLS 1.1: no connection; once it
    offers TLS 1.2 the station connects and reports InvalidTLSVersion (A00.FR.4xx security event)."""
    cs = await start201(strict_factory, {"password": KEY, "tls": {**tls(pki), "maxVersion": "TLSv1.1"},
                                         "plain": False})
    s = await sim201_factory("ws://127.0.0.1:1/unused", **profile_config(cs, 2, pki))
    await cs.wait(lambda e: e["event"] == "tlsError", what="a refused TLS handshake")
    assert cs.of("upgrade") == [] and not s.backend.link.accepted
    await cs.command("__setTlsMax", {"version": None})
    await s.online(timeout=15)
    event = await cs.call_from_cp("SecurityEventNotification", lambda p: p["type"] == "InvalidTLSVersion")
    assert "tls_version" in event["techInfo"]
    assert cs.failures() == []


async def test_TC_M_01_02_07_12_13_19_20_22_CS_ca_certificates(strict201, sim201_factory, pki):
    """TC_M_01_CS / TC_M_02_CS (M05.FR.01/02): install a CSMS root and a manufacturer root; TC_M_07_CS
    (M05.FR.07): an invalid one is Rejected; V2G and MO roots are Rejected (no ISO 15118); TC_M_12/13/17/18_CS
    (M03.FR.03/04): their hash data, by type, computed independently (cryptography's OCSP CertID); TC_M_19_CS
    (M03.FR.02) NotFound; TC_M_20_CS (M04.FR.02) delete; TC_M_22_CS (M04.FR.04) NotFound."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    assert (await cs.command("GetInstalledCertificateIds", {"certificateType": ["CSMSRootCertificate"]}))["status"] \
        == "NotFound"
    for kind, ca in (("CSMSRootCertificate", pki.cpo), ("ManufacturerRootCertificate", pki.mfr)):
        assert (await cs.command("InstallCertificate", {"certificateType": kind, "certificate": ca.pem}))["status"] \
            == "Accepted"
    assert (await cs.command("InstallCertificate", {"certificateType": "CSMSRootCertificate",
                                                    "certificate": "-----BEGIN CERTIFICATE-----\nnope\n"
                                                                   "-----END CERTIFICATE-----\n"}))["status"] == "Rejected"
    assert (await cs.command("InstallCertificate", {"certificateType": "V2GRootCertificate",
                                                    "certificate": pki.cpo.pem}))["status"] == "Rejected"
    ids = await cs.command("GetInstalledCertificateIds", {})
    by_type = {c["certificateType"]: c["certificateHashData"] for c in ids["certificateHashDataChain"]}
    assert by_type["CSMSRootCertificate"] == ocsp_hash_data(pki.cpo.cert, pki.cpo.cert)
    assert by_type["ManufacturerRootCertificate"] == ocsp_hash_data(pki.mfr.cert, pki.mfr.cert)
    only = await cs.command("GetInstalledCertificateIds", {"certificateType": ["ManufacturerRootCertificate"]})
    assert [c["certificateType"] for c in only["certificateHashDataChain"]] == ["ManufacturerRootCertificate"]
    assert (await cs.command("DeleteCertificate", {"certificateHashData": by_type["ManufacturerRootCertificate"]}))[
        "status"] == "Accepted"
    assert (await cs.command("DeleteCertificate", {"certificateHashData": by_type["ManufacturerRootCertificate"]}))[
        "status"] == "NotFound"
    assert cs.failures() == []


async def test_TC_L_01_05_06_18_CS_signed_firmware(strict201, sim201_factory, served, pki, tmp_path):  # noqa: F811
    """TC_L_01_CS (L01.FR.01/04/10/28/31): UpdateFirmware, FirmwareStatusNotification Downloading, Downloaded,
    SignatureVerified, Installing, Installed with the requestId, a FirmwareUpdated event; TC_L_05_CS
    (L01.FR.21/22): a signing certificate the manufacturer root did not issue: InvalidCertificate;
    TC_L_06_CS (L01.FR.03): a wrong signature: InvalidSignature; TC_L_18_CS: no certificate and no
    signature: InvalidCertificate (signed firmware only). The manufacturer root is the installer's
    (`firmware.signing_ca_file`): one the central system installs itself is never trusted for firmware,
    or a hostile central system could vouch for its own code (docs/security.md)."""
    cs = strict201
    s = await sim201_factory(cs.url, **{"firmware.signing_ca_file": pki.path("mfr-ca.pem")})
    target = tmp_path / "site-packages"
    s.backend.pip_command = [sys.executable, "-m", "pip", "install", "--no-input", "--no-deps", "--no-index",
                             "--disable-pip-version-check", "--target", str(target)]
    await s.online()
    unsigned = {k: v for k, v in firmware(served, pki).items() if k not in ("signingCertificate", "signature")}
    assert (await cs.command("UpdateFirmware", {"requestId": 1, "firmware": unsigned}))["status"] == "InvalidCertificate"
    # a signer under a root of the central system's own, installed over OCPP first: still InvalidCertificate
    rogue_key = new_key()
    rogue_signer = pki.rogue.issue(rogue_key.public_key(), name("firmware signer", "Hostile CPO"))
    await cs.command("InstallCertificate", {"certificateType": "ManufacturerRootCertificate", "certificate": pki.rogue.pem})
    data = (served / WHEEL).read_bytes()
    rogue = {**firmware(served, pki), "signingCertificate": cert_pem(rogue_signer).decode(),
             "signature": base64.b64encode(rogue_key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()}
    assert (await cs.command("UpdateFirmware", {"requestId": 2, "firmware": rogue}))["status"] == "InvalidCertificate"
    bad = firmware(served, pki, signature="AAAA" * 86)
    assert (await cs.command("UpdateFirmware", {"requestId": 3, "firmware": bad}))["status"] == "Accepted"
    await cs.call_from_cp("FirmwareStatusNotification", lambda p: p["status"] == "InvalidSignature")
    assert (await cs.command("UpdateFirmware", {"requestId": 4, "firmware": firmware(served, pki)}))["status"] \
        == "Accepted"
    await cs.call_from_cp("FirmwareStatusNotification", lambda p: p["status"] == "Installed", timeout=60)
    seen = [(p["status"], p.get("requestId")) for p in calls(cs, "FirmwareStatusNotification") if p.get("requestId") == 4]
    assert seen == [("Downloading", 4), ("Downloaded", 4), ("SignatureVerified", 4), ("Installing", 4),
                    ("Installed", 4)]
    assert (target / RELEASE_MODULE).exists()
    await cs.call_from_cp("SecurityEventNotification", lambda p: p["type"] == "InvalidFirmwareSigningCertificate")
    await cs.call_from_cp("SecurityEventNotification", lambda p: p["type"] == "InvalidFirmwareSignature")
    await cs.call_from_cp("SecurityEventNotification", lambda p: p["type"] == "FirmwareUpdated")
    assert cs.failures() == []


async def test_TC_N_25_26_35_CS_logs(strict201, sim201_factory, served):  # noqa: F811
    """TC_N_35_CS (N01): GetLog SecurityLog: Accepted with the file name, LogStatusNotification Uploading and
    Uploaded with the requestId, the log holds the events; TC_N_25_CS: DiagnosticsLog with the device model;
    TC_N_26_CS (N01.FR.10): an upload that fails: UploadFailure."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    answer = await cs.command("GetLog", {"logType": "SecurityLog", "requestId": 11,
                                         "log": {"remoteLocation": f"{served.url}/logs"}})
    assert answer["status"] == "Accepted" and answer["filename"].endswith(".log")
    await cs.call_from_cp("LogStatusNotification", lambda p: p["status"] == "Uploaded")
    assert "StartupOfTheDevice" in (served / "uploads" / answer["filename"]).read_text()
    diag = await cs.command("GetLog", {"logType": "DiagnosticsLog", "requestId": 12,
                                       "log": {"remoteLocation": f"{served.url}/d"}})
    await cs.call_from_cp("LogStatusNotification", lambda p: p.get("requestId") == 12 and p["status"] == "Uploaded")
    import tarfile
    with tarfile.open(served / "uploads" / diag["filename"]) as tar:
        assert "ocpp-variables.txt" in tar.getnames()
    await cs.command("GetLog", {"logType": "SecurityLog", "requestId": 13, "retries": 1,
                                "log": {"remoteLocation": "ftp://127.0.0.1:9/"}})
    await cs.call_from_cp("LogStatusNotification", lambda p: p.get("requestId") == 13 and p["status"] == "UploadFailure")
    assert cs.failures() == []


async def test_TC_N_27_28_30_32_33_CS_customer_information_and_TC_P_01(strict201, sim201_factory):
    """TC_N_27_CS (N09.FR.05): what the station holds about an idToken, its cache entry and its sessions in the
    journal, in NotifyCustomerInformation; TC_N_28_CS (N09.FR.06): nothing held: one message saying so;
    TC_N_30/32_CS (N10.FR.03/06): clear removes the cache entry (the journal's billing records stay);
    TC_N_33_CS (N09.FR.09): no reference or two: Invalid; N09.FR.07 neither report nor clear: Rejected;
    TC_P_01_CS (P01.FR.05): DataTransfer UnknownVendorId."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    await s.state("Charging")
    await s.world.tap(UID, hold_s=0.15)
    await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Ended", after=n)
    token = {"idToken": UID, "type": "ISO14443"}
    assert (await cs.command("CustomerInformation", {"requestId": 1, "report": True, "clear": False}))["status"] == "Invalid"
    assert (await cs.command("CustomerInformation", {"requestId": 2, "report": False, "clear": False,
                                                     "idToken": token}))["status"] == "Rejected"
    assert (await cs.command("CustomerInformation", {"requestId": 3, "report": True, "clear": True,
                                                     "idToken": token}))["status"] == "Accepted"
    report = await cs.call_from_cp("NotifyCustomerInformation", lambda p: p["requestId"] == 3)
    assert "authorization cache: Accepted" in report["data"] and "session " in report["data"]
    assert s.backend.versions["2.0.1"].auth.cache.get(f"ISO14443:{UID}") is None
    assert (await cs.command("CustomerInformation", {"requestId": 4, "report": True, "clear": False,
                                                     "customerIdentifier": "nobody"}))["status"] == "Accepted"
    nothing = await cs.call_from_cp("NotifyCustomerInformation", lambda p: p["requestId"] == 4)
    assert "No data" in nothing["data"] and not nothing.get("tbc")
    assert (await cs.command("DataTransfer", {"vendorId": "org.example"}))["status"] == "UnknownVendorId"
    assert cs.failures() == []


async def test_strict_2_0_1_harness_reports_schema_failures(strict201, sim201_factory):
    """The zero-failure checks above can fail: an off-schema 2.0.1 message is reported."""
    s = await sim201_factory(strict201.url)
    await s.online()
    cs = strict201
    cs._next += 1
    cs.proc.stdin.write((__import__("json").dumps({"id": cs._next, "method": "Reset",
                                                   "params": {"type": "Lukewarm"}}) + "\n").encode())
    await cs.proc.stdin.drain()
    answer = await cs.wait(lambda e: e.get("id") == cs._next and e["event"] in ("result", "error"))
    assert answer["event"] == "error"
    assert [f["method"] for f in cs.failures()] == ["Reset"]
    assert strict_peer  # the module the fixtures come from
    await asyncio.sleep(0)
