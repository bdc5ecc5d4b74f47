"""OCPP security profiles 1-3 against an independent strict central system (ocpp-rpc 2.2.1, strict mode).

The central system (scripts/harness/peers/strict_cs.js) checks HTTP Basic credentials,
serves wss:// with a server certificate for 127.0.0.1 and asks for client
certificates, all from a PKI the test makes with `cryptography` (tests/backends/ocpp/
pki.py). Every message in both directions is validated against the official
1.6 schemas, the security whitepaper's messages included; every test demands
zero schema failures. Compliance cases are named by their OCTT ids.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from ocpp_profiles import KEY, profile_config, tls
from pki import ocsp_hash_data
from strict_peer import TimedCS

from station.backends.ocpp import security as security_mod

SEC_LOG = "station.backends.ocpp.security"


async def a_session(cs: TimedCS, rig) -> None:
    """A charging session end to end: start, stop, both confirmed by the central system."""
    await rig.online()
    await cs.call_from_cp("StatusNotification", lambda p: p["connectorId"] == 1)
    rig.station.begin("D64FC93B")
    rig.station.set_energy(1000 + 750)
    rig.station.end("Local")
    await rig.idle()
    start, stop = cs.calls("StartTransaction")[-1], cs.calls("StopTransaction")[-1]
    assert stop["meterStop"] - start["meterStart"] == 750 and stop["transactionId"] > 500
    await cs.call_from_cp("SecurityEventNotification", lambda p: p["type"] == "StartupOfTheDevice")


# ---------------------------------------------------------------- each profile end to end

async def test_profile_0_session(strict_factory, rig_factory):
    cs = await strict_factory({})
    rig = await rig_factory(cs.url, {"MeterValueSampleInterval": 0})
    await a_session(cs, rig)
    upgrade = cs.of("upgrade")[0]
    assert upgrade["tls"] is False and upgrade["basic"] is False
    assert cs.failures() == []


async def test_TC_085_basic_authentication_valid_credentials_profile_1(strict_factory, rig_factory):
    cs = await strict_factory({"password": KEY})
    rig = await rig_factory(cs.url, {"MeterValueSampleInterval": 0}, extra=profile_config(cs, 1))
    await a_session(cs, rig)
    upgrade = cs.of("upgrade")[0]
    assert upgrade["basic"] is True and upgrade["tls"] is False and upgrade["identity"] == "CP1"
    assert cs.of("authFailed") == [] and cs.failures() == []


async def test_basic_password_in_hex_form_is_binary(strict_factory, rig_factory):
    """A00.FR.205: an AuthorizationKey of 32-40 hex digits is the hex form of a binary password."""
    hex_key = "00ff10203040506070809aabbccddeeff0112233"  # 20 bytes, not valid UTF-8
    cs = await strict_factory({"password": hex_key, "passwordHex": True})
    rig = await rig_factory(cs.url, {"MeterValueSampleInterval": 0}, extra=profile_config(cs, 1, key=hex_key))
    await rig.online()
    assert cs.of("authFailed") == []


async def test_TC_086_tls_server_certificate_valid_profile_2(strict_factory, rig_factory, pki):
    cs = await strict_factory({"password": KEY, "tls": tls(pki), "plain": False})
    rig = await rig_factory("ws://127.0.0.1:1/unused", {"MeterValueSampleInterval": 0},
                            extra=profile_config(cs, 2, pki))
    await a_session(cs, rig)
    upgrade = cs.of("upgrade")[0]
    assert upgrade["tls"] is True and upgrade["basic"] is True
    assert cs.failures() == []


async def test_TC_087_tls_client_certificate_valid_profile_3(strict_factory, rig_factory, pki):
    cs = await strict_factory({"password": KEY, "tls": tls(pki, client=True), "plain": False})
    rig = await rig_factory("ws://127.0.0.1:1/unused", {"MeterValueSampleInterval": 0},
                            extra=profile_config(cs, 3, pki, key=None))
    await a_session(cs, rig)
    upgrade = cs.of("upgrade")[0]
    assert upgrade["tls"] is True and upgrade["clientCert"] == "CP1" and upgrade["basic"] is False
    assert cs.failures() == []


# ---------------------------------------------------------------- failures: one clear line, bounded retries

def _attempt_gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


async def _bounded(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def test_wrong_password_one_clear_log_line_and_backoff(strict_factory, rig_factory, caplog):
    caplog.set_level(logging.DEBUG, logger="station")
    cs = await strict_factory({"password": "the-right-password-0"})
    await rig_factory(cs.url, extra=profile_config(cs, 1, key="a-wrong-password-99"))
    await cs.wait(lambda e: len(cs.of("authFailed")) >= 5, timeout=20)
    await asyncio.sleep(2.0)
    attempts = [e["t"] for e in cs.of("authFailed")]
    # 1 s doubling to 60 s, shrunk 50 times: never a tight loop, and the gaps grow to the cap (1.2 s).
    assert len(attempts) <= 16, f"{len(attempts)} attempts: not backing off"
    assert max(_attempt_gaps(attempts)) >= 0.3
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    text = errors[0].getMessage()
    assert "refused the credentials" in text and "CP1" in text and "HTTP 401" in text
    assert "a-wrong-password-99" not in caplog.text and "wrong-password" not in caplog.text
    assert cs.of("upgrade") == []


async def test_TC_078_wrong_server_certificate_then_security_event(strict_factory, rig_factory, pki, caplog):
    """An untrusted central system certificate: one ERROR line, bounded retries, no connection; once the
    central system shows a valid certificate the station connects and reports InvalidCentralSystemCertificate."""
    caplog.set_level(logging.DEBUG, logger="station")
    cs = await strict_factory({"password": KEY, "tls": tls(pki, server="rogue-server"), "plain": False})
    rig = await rig_factory("ws://127.0.0.1:1/unused", {"MeterValueSampleInterval": 0},
                            extra=profile_config(cs, 2, pki))
    await asyncio.sleep(3.0)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "not trusted" in errors[0].getMessage()
    retries = [r for r in caplog.records if r.name == SEC_LOG and "failed again" in r.getMessage()]
    assert 2 <= len(retries) <= 15, f"{len(retries)} retries in 3 s"
    assert cs.of("upgrade") == [] and not rig.backend.online
    await cs.command("__setServerCert", {"cert": pki.path("server.pem"), "key": pki.path("server.key")})
    await rig.online(timeout=15)
    event = await cs.call_from_cp("SecurityEventNotification", lambda p: p["type"] == "InvalidCentralSystemCertificate")
    assert "server_cert" in event["techInfo"]
    assert cs.failures() == []


async def test_wrong_client_certificate_one_clear_log_line(strict_factory, rig_factory, pki, caplog):
    caplog.set_level(logging.DEBUG, logger="station")
    cs = await strict_factory({"tls": tls(pki, client=True), "plain": False})
    await rig_factory("ws://127.0.0.1:1/unused", extra=profile_config(cs, 3, pki, key=None, station="rogue-station"))
    await cs.wait(lambda e: len(cs.of("authFailed")) >= 4, timeout=20)
    await asyncio.sleep(1.5)
    attempts = [e["t"] for e in cs.of("authFailed")]
    assert len(attempts) <= 14 and max(_attempt_gaps(attempts)) >= 0.2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "refused the station's certificate" in errors[0].getMessage()


# ---------------------------------------------------------------- raising and lowering

async def test_TC_084_downgrade_security_profile_rejected(strict_factory, rig_factory, pki):
    cs = await strict_factory({"password": KEY, "tls": tls(pki), "plain": False})
    rig = await rig_factory("ws://127.0.0.1:1/unused", {"MeterValueSampleInterval": 0},
                            extra=profile_config(cs, 2, pki))
    await rig.online()
    for value in ("1", "0", "2"):  # lower, and equal (A05.FR.01)
        assert (await cs.command("ChangeConfiguration", {"key": "SecurityProfile", "value": value}))["status"] == "Rejected"
    got = await cs.command("GetConfiguration", {"key": ["SecurityProfile"]})
    assert got["configurationKey"] == [{"key": "SecurityProfile", "readonly": False, "value": "2"}]
    await asyncio.sleep(0.3)
    assert len(cs.of("upgrade")) == 1  # never reconnected
    assert rig.backend.security.profile == 2
    assert cs.failures() == []


async def test_raise_needs_its_prerequisites(strict_factory, rig_factory, pki):
    """A05.FR.02-04: no key for 1, no root certificate for 2, no station certificate for 3: Rejected."""
    cs = await strict_factory({})
    rig = await rig_factory(cs.url, extra=profile_config(cs, 0, key=None))
    await rig.online()
    for value in ("1", "2", "3"):
        assert (await cs.command("ChangeConfiguration", {"key": "SecurityProfile", "value": value}))["status"] == "Rejected"
    assert (await cs.command("ChangeConfiguration", {"key": "AuthorizationKey", "value": "short"}))["status"] == "Rejected"
    assert (await cs.command("ChangeConfiguration", {"key": "AuthorizationKey", "value": KEY}))["status"] == "Accepted"
    assert (await cs.command("ChangeConfiguration", {"key": "SecurityProfile", "value": "2"}))["status"] == "Rejected"
    assert cs.failures() == []


async def test_TC_083_upgrade_security_profile_1_to_2(strict_factory, rig_factory, pki):
    cs = await strict_factory({"password": KEY, "tls": tls(pki)})
    rig = await rig_factory(cs.url, {"MeterValueSampleInterval": 0}, extra=profile_config(cs, 1))
    await rig.online()
    assert cs.of("upgrade")[0]["tls"] is False
    installed = await cs.command("InstallCertificate", {"certificateType": "CentralSystemRootCertificate",
                                                         "certificate": pki.cpo.pem})
    assert installed["status"] == "Accepted"
    n = len(cs.events)
    assert (await cs.command("ChangeConfiguration", {"key": "SecurityProfile", "value": "2"}))["status"] == "Accepted"
    upgrade = await cs.wait(lambda e: e in cs.events[n:] and e["event"] == "upgrade")
    assert upgrade["tls"] is True and upgrade["basic"] is True
    await cs.call_from_cp("BootNotification", after=n)
    event = await cs.call_from_cp("SecurityEventNotification",
                                  lambda p: p["type"] == "ReconfigurationOfSecurityParameters"
                                  and "SecurityProfile" in p.get("techInfo", ""), after=n)
    assert "1 to 2" in event["techInfo"]
    await asyncio.sleep(0.2)
    assert rig.backend.security.profile == 2 and not rig.backend.security.on_probation
    saved = rig.store.get_json(security_mod.STORE_KEY)
    assert saved["profile"] == 2 and saved["previous"] is None
    assert cs.failures() == []


async def test_raised_profile_falls_back_when_it_cannot_connect(strict_factory, rig_factory, pki, caplog):
    """A05.FR.08: the wss:// endpoint shows an untrusted certificate; after FALLBACK_AFTER failed attempts the
    station goes back to profile 1 and reports it."""
    caplog.set_level(logging.INFO, logger="station")
    cs = await strict_factory({"password": KEY, "tls": tls(pki, server="rogue-server")})
    rig = await rig_factory(cs.url, {"MeterValueSampleInterval": 0}, extra=profile_config(cs, 1))
    await rig.online()
    await cs.command("InstallCertificate", {"certificateType": "CentralSystemRootCertificate", "certificate": pki.cpo.pem})
    n = len(cs.events)
    assert (await cs.command("ChangeConfiguration", {"key": "SecurityProfile", "value": "2"}))["status"] == "Accepted"
    event = await cs.call_from_cp("SecurityEventNotification",
                                  lambda p: "fallback" in p.get("techInfo", ""), after=n)
    assert "2 to 1" in event["techInfo"]
    assert [e["tls"] for e in cs.of("upgrade", n)] == [False]
    assert rig.backend.security.profile == 1
    assert "falling back to profile 1" in caplog.text
    assert cs.failures() == []


async def test_TC_073_update_authorization_key(strict_factory, rig_factory, caplog):
    caplog.set_level(logging.DEBUG)
    cs = await strict_factory({"password": KEY})
    rig = await rig_factory(cs.url, {"MeterValueSampleInterval": 0}, extra=profile_config(cs, 1))
    await rig.online()
    for new in ("OCA_OCTT_admin_test", "another-key-4567890"):
        await cs.command("__setPassword", {"password": new})
        n = len(cs.events)
        assert (await cs.command("ChangeConfiguration", {"key": "AuthorizationKey", "value": new}))["status"] == "Accepted"
        await cs.wait(lambda e, n=n: e in cs.events[n:] and e["event"] == "upgrade")
        await cs.call_from_cp("BootNotification", after=n)
    assert cs.of("authFailed") == []
    got = await cs.command("GetConfiguration", {"key": ["AuthorizationKey"]})
    assert got["configurationKey"] == [{"key": "AuthorizationKey", "readonly": False}]  # write-only
    everything = await cs.command("GetConfiguration", {})
    assert all("value" not in k for k in everything["configurationKey"] if k["key"] == "AuthorizationKey")
    await cs.call_from_cp("SecurityEventNotification", lambda p: p.get("techInfo") == "AuthorizationKey changed")
    # never in a log line, the security log or the diagnostics extras; kept over a restart
    # (the websockets library logs frames at DEBUG; production holds it at WARNING, tests/test_security.py)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("station"))
    for secret in ("OCA_OCTT_admin_test", "another-key-4567890"):
        assert secret not in ours
        assert secret not in rig.backend.security.log.text()
        assert secret not in json.dumps(rig.backend.diagnostics_extra())
    assert rig.backend.security.authorization_key == "another-key-4567890"
    assert cs.failures() == []


# ---------------------------------------------------------------- certificates

async def test_TC_075_1_and_TC_075_2_install_certificates(strict_factory, rig_factory, pki):
    cs = await strict_factory({})
    rig = await rig_factory(cs.url)
    await rig.online()
    for kind, ca in (("ManufacturerRootCertificate", pki.mfr), ("CentralSystemRootCertificate", pki.cpo)):
        assert (await cs.command("GetInstalledCertificateIds", {"certificateType": kind}))["status"] == "NotFound"
        assert (await cs.command("InstallCertificate", {"certificateType": kind, "certificate": ca.pem}))["status"] == "Accepted"
        ids = await cs.command("GetInstalledCertificateIds", {"certificateType": kind})
        assert ids["status"] == "Accepted"
        assert ids["certificateHashData"] == [ocsp_hash_data(ca.cert, ca.cert)]  # computed independently (OCSP)
    # a leaf is not a root: Rejected, and for the central system's root an InvalidCentralSystemCertificate event
    leaf = (pki.dir / "server.pem").read_text()
    assert (await cs.command("InstallCertificate", {"certificateType": "CentralSystemRootCertificate",
                                                     "certificate": leaf}))["status"] == "Rejected"
    assert (await cs.command("InstallCertificate", {"certificateType": "ManufacturerRootCertificate",
                                                     "certificate": "not a certificate"}))["status"] == "Rejected"
    await cs.call_from_cp("SecurityEventNotification", lambda p: p["type"] == "InvalidCentralSystemCertificate")
    assert cs.failures() == []


async def test_TC_076_delete_certificate(strict_factory, rig_factory, pki):
    cs = await strict_factory({})
    rig = await rig_factory(cs.url)
    await rig.online()
    await cs.command("InstallCertificate", {"certificateType": "CentralSystemRootCertificate", "certificate": pki.cpo.pem})
    await cs.command("InstallCertificate", {"certificateType": "CentralSystemRootCertificate", "certificate": pki.rogue.pem})
    ids = (await cs.command("GetInstalledCertificateIds", {"certificateType": "CentralSystemRootCertificate"}))
    assert len(ids["certificateHashData"]) == 2
    target = ocsp_hash_data(pki.cpo.cert, pki.cpo.cert)
    target["issuerNameHash"] = target["issuerNameHash"].upper()  # CiString: case-insensitive
    assert (await cs.command("DeleteCertificate", {"certificateHashData": target}))["status"] == "Accepted"
    left = (await cs.command("GetInstalledCertificateIds", {"certificateType": "CentralSystemRootCertificate"}))
    assert left["certificateHashData"] == [ocsp_hash_data(pki.rogue.cert, pki.rogue.cert)]
    assert (await cs.command("DeleteCertificate", {"certificateHashData": target}))["status"] == "NotFound"
    assert cs.failures() == []


async def test_deleting_the_root_of_the_current_connection_fails(strict_factory, rig_factory, pki):
    """M04.FR.06: the CentralSystemRootCertificate that validates the connection cannot be deleted."""
    cs = await strict_factory({"password": KEY, "tls": tls(pki)})
    rig = await rig_factory(cs.url, extra=profile_config(cs, 1))
    await rig.online()
    await cs.command("InstallCertificate", {"certificateType": "CentralSystemRootCertificate", "certificate": pki.cpo.pem})
    n = len(cs.events)
    assert (await cs.command("ChangeConfiguration", {"key": "SecurityProfile", "value": "2"}))["status"] == "Accepted"
    await cs.wait(lambda e: e in cs.events[n:] and e["event"] == "upgrade")
    await rig.online()
    await cs.call_from_cp("BootNotification", after=n)
    target = ocsp_hash_data(pki.cpo.cert, pki.cpo.cert)
    assert (await cs.command("DeleteCertificate", {"certificateHashData": target}))["status"] == "Failed"
    assert cs.failures() == []


async def test_TC_074_update_station_certificate_on_request(strict_factory, rig_factory, pki):
    cs = await strict_factory({"tls": tls(pki, client=True), "plain": False})
    rig = await rig_factory("ws://127.0.0.1:1/unused", extra=profile_config(cs, 3, pki, key=None))
    await rig.online()
    first = cs.of("upgrade")[0]
    sign = {"requestedMessage": "SignChargePointCertificate"}
    assert (await cs.command("ExtendedTriggerMessage", sign))["status"] == "Rejected"
    assert (await cs.command("ChangeConfiguration", {"key": "CpoName", "value": "Test CPO"}))["status"] == "Accepted"
    assert (await cs.command("ExtendedTriggerMessage", sign))["status"] == "Accepted"
    csr = (await cs.call_from_cp("SignCertificate"))["csr"]
    from cryptography import x509
    request = x509.load_pem_x509_csr(csr.encode())
    subject = {a.oid._name: a.value for a in request.subject}
    assert subject == {"commonName": "CP1", "organizationName": "Test CPO"}
    signed = pki.cpo.sign_csr(csr)
    n = len(cs.events)
    chain = signed.public_bytes(__import__("cryptography").hazmat.primitives.serialization.Encoding.PEM).decode()
    assert (await cs.command("CertificateSigned", {"certificateChain": chain}))["status"] == "Accepted"
    second = await cs.wait(lambda e: e in cs.events[n:] and e["event"] == "upgrade")
    assert second["clientCert"] == "CP1" and second["tls"] is True
    creds = rig.backend.security.client_credentials()
    assert creds is not None and "ocpp/certs/station/cert.pem" in creds[0]
    pem = await asyncio.to_thread(Path(creds[0]).read_bytes)
    assert x509.load_pem_x509_certificate(pem).serial_number == signed.serial_number
    assert first["t"] < second["t"]
    assert cs.failures() == []


async def test_TC_077_invalid_station_certificate_security_event(strict_factory, rig_factory, pki):
    cs = await strict_factory({"tls": tls(pki, client=True), "plain": False})
    rig = await rig_factory("ws://127.0.0.1:1/unused", extra=profile_config(cs, 3, pki, key=None))
    await rig.online()
    await cs.command("ChangeConfiguration", {"key": "CpoName", "value": "Test CPO"})
    await cs.command("ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"})
    csr = (await cs.call_from_cp("SignCertificate"))["csr"]
    from cryptography.hazmat.primitives.serialization import Encoding
    wrong = pki.rogue.sign_csr(csr).public_bytes(Encoding.PEM).decode()  # not the CPO hierarchy
    assert (await cs.command("CertificateSigned", {"certificateChain": wrong}))["status"] == "Rejected"
    event = await cs.call_from_cp("SecurityEventNotification", lambda p: p["type"] == "InvalidChargePointCertificate")
    assert "root certificate" in event["techInfo"]
    other_key = (pki.dir / "station.pem").read_text()  # valid chain, but not for the key of the request
    assert (await cs.command("CertificateSigned", {"certificateChain": other_key}))["status"] == "Rejected"
    assert len(cs.of("upgrade")) == 1  # still on the old certificate, never reconnected
    assert cs.failures() == []
