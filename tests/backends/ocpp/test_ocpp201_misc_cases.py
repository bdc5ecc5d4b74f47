"""OCPP 2.0.1, more Part 6 cases of blocks F, J, L, N and P: firmware updates scheduled, failing and replaced,
triggers of a job's status, logs and customer information variants, clock-aligned values only while idle,
custom data. The whole simulated station against the strict 2.0.1 central system (ocpp-rpc, strict mode);
zero schema failures every time."""

from __future__ import annotations

import asyncio
import http.server
import sys
import threading
import time

import pytest
from ocpp201_support import in_seconds
from ocpp_files import FilesHandler as _Handler
from ocpp_files import firmware
from ocpp_flows import UID
from strict_peer import TimedCS

TOKEN = {"idToken": UID, "type": "ISO14443"}


class _SlowUploads(_Handler):
    def do_PUT(self):  # noqa: N802
        time.sleep(2.0)  # an upload that takes its time
        super().do_PUT()


class _SlowDownloads(_Handler):
    def do_GET(self):  # noqa: N802
        time.sleep(2.0)  # a download that takes its time
        super().do_GET()


@pytest.fixture
def slow_downloads(tmp_path):
    """An HTTP server that takes 2 s before it serves each file (GET) of its directory: (directory, base URL)."""
    d = tmp_path / "slow-get"
    d.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _SlowDownloads(*a, directory=str(d)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield d, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def slow_uploads(tmp_path):
    """An HTTP server that takes 2 s to accept each upload (PUT); its base URL."""
    d = tmp_path / "slow"
    d.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _SlowUploads(*a, directory=str(d)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def calls(cs: TimedCS, method: str, after: int = 0) -> list[dict]:
    return [e["params"] for e in cs.events[after:] if e["event"] == "call" and e["method"] == method]


def fw_statuses(cs: TimedCS, request_id: int) -> list[str]:
    return [p["status"] for p in calls(cs, "FirmwareStatusNotification") if p.get("requestId") == request_id]


async def fw_station(cs, sim201_factory, pki, tmp_path, variables=None):
    """A station that takes firmware signed by the test manufacturer (firmware.signing_ca_file)."""
    s = await sim201_factory(cs.url, variables, **{"firmware.signing_ca_file": pki.path("mfr-ca.pem")})
    s.backend.pip_command = [sys.executable, "-m", "pip", "install", "--no-input", "--no-deps", "--no-index",
                             "--disable-pip-version-check", "--target", str(tmp_path / "site-packages")]
    await s.online()
    return s


async def test_TC_L_02_03_10_CS_scheduled_and_replaced_firmware(strict201, sim201_factory, served, pki,  # noqa: F811
                                                                tmp_path):
    """TC_L_03_CS (L01.FR.13): a retrieveDateTime in the future: DownloadScheduled, then the download at that
    time; TC_L_10_CS (L01.FR.24): a new UpdateFirmware while one waits: AcceptedCanceled, the first is not
    installed; TC_L_02_CS (L01.FR.16): an installDateTime in the future: Downloaded, SignatureVerified,
    InstallScheduled, then Installing and Installed at that time."""
    cs = strict201
    s = await fw_station(cs, sim201_factory, pki, tmp_path)
    later = firmware(served, pki, retrieveDateTime=in_seconds(600))
    assert (await cs.command("UpdateFirmware", {"requestId": 21, "firmware": later}))["status"] == "Accepted"
    await cs.call_from_cp("FirmwareStatusNotification", lambda p: p.get("requestId") == 21
                          and p["status"] == "DownloadScheduled")  # TC_L_03
    scheduled = firmware(served, pki, installDateTime=in_seconds(3))
    answer = await cs.command("UpdateFirmware", {"requestId": 22, "firmware": scheduled})
    assert answer["status"] == "AcceptedCanceled"  # TC_L_10
    await cs.call_from_cp("FirmwareStatusNotification", lambda p: p.get("requestId") == 22 and p["status"] == "Installed",
                          timeout=60)
    assert fw_statuses(cs, 22) == ["Downloading", "Downloaded", "SignatureVerified", "InstallScheduled", "Installing",
                                   "Installed"]  # TC_L_02
    assert fw_statuses(cs, 21) == ["DownloadScheduled"]
    assert s.backend.link.accepted and cs.failures() == []


async def test_TC_L_07_08_F_17_18_CS_firmware_that_fails(strict201, sim201_factory, served, pki, tmp_path):  # noqa: F811
    """TC_L_07_CS (L01.FR.30): a location that does not answer: Downloading, DownloadFailed after the
    retries; TC_L_08_CS: a signed release whose install fails: InstallationFailed (a signed file that is not a
    station wheel is refused before pip: InstallVerificationFailed); TC_F_17_CS / TC_F_18_CS
    (F06.FR.16): TriggerMessage FirmwareStatusNotification, with an EVSE or not, is Accepted and says Idle
    before any update, and the last status sent after one that did not end Installed (L01.FR.26)."""
    cs = strict201
    s = await fw_station(cs, sim201_factory, pki, tmp_path)
    for evse in ({"id": 1}, None):  # nothing done yet: Idle (F06.FR.16)
        n = len(cs.events)
        params = {"requestedMessage": "FirmwareStatusNotification", **({"evse": evse} if evse else {})}
        assert (await cs.command("TriggerMessage", params))["status"] == "Accepted"
        assert (await cs.call_from_cp("FirmwareStatusNotification", after=n))["status"] == "Idle"
    gone = firmware(served, pki, location="http://127.0.0.1:9/nothing.whl")
    assert (await cs.command("UpdateFirmware", {"requestId": 31, "retries": 1, "retryInterval": 1,
                                                "firmware": gone}))["status"] == "Accepted"
    await cs.call_from_cp("FirmwareStatusNotification", lambda p: p.get("requestId") == 31
                          and p["status"] == "DownloadFailed", timeout=60)
    broken = served / "broken-1.0-py3-none-any.whl"
    broken.write_bytes(b"this is not a wheel" * 100)
    bad = firmware(served, pki, name=broken.name)  # signed, but not a station release: never given to pip
    assert (await cs.command("UpdateFirmware", {"requestId": 33, "firmware": bad}))["status"] == "Accepted"
    await cs.call_from_cp("FirmwareStatusNotification", lambda p: p.get("requestId") == 33
                          and p["status"] == "InstallVerificationFailed", timeout=60)
    s.backend.pip_command = [sys.executable, "-c", "import sys; sys.exit(1)"]  # pip fails (a read-only venv)
    assert (await cs.command("UpdateFirmware", {"requestId": 32, "firmware": firmware(served, pki)}))["status"] \
        == "Accepted"
    await cs.call_from_cp("FirmwareStatusNotification", lambda p: p.get("requestId") == 32
                          and p["status"] == "InstallationFailed", timeout=60)
    assert fw_statuses(cs, 32) == ["Downloading", "Downloaded", "SignatureVerified", "Installing",
                                   "InstallationFailed"]
    n = len(cs.events)
    assert (await cs.command("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"}))["status"] \
        == "Accepted"
    assert (await cs.call_from_cp("FirmwareStatusNotification", after=n))["status"] == "InstallationFailed"  # L01.FR.26
    assert cs.failures() == []


async def test_TC_N_36_F_16_CS_logs_while_one_uploads(strict201, sim201_factory, slow_uploads):
    """TC_F_16_CS (F06.FR.15): TriggerMessage LogStatusNotification during an upload says Uploading with its
    requestId; TC_N_36_CS (N01.FR.11/12): a second GetLog while one uploads: AcceptedCanceled, and the second's
    upload goes to its end (Uploaded)."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    first = await cs.command("GetLog", {"logType": "SecurityLog", "requestId": 41,
                                        "log": {"remoteLocation": f"{slow_uploads}/one"}})
    assert first["status"] == "Accepted"
    await cs.call_from_cp("LogStatusNotification", lambda p: p.get("requestId") == 41 and p["status"] == "Uploading")
    n = len(cs.events)
    assert (await cs.command("TriggerMessage", {"requestedMessage": "LogStatusNotification"}))["status"] == "Accepted"
    uploading = await cs.call_from_cp("LogStatusNotification", after=n)
    assert (uploading["status"], uploading.get("requestId")) == ("Uploading", 41)  # TC_F_16
    second = await cs.command("GetLog", {"logType": "SecurityLog", "requestId": 42,
                                         "log": {"remoteLocation": f"{slow_uploads}/two"}})
    assert second["status"] == "AcceptedCanceled"  # TC_N_36
    await cs.call_from_cp("LogStatusNotification", lambda p: p.get("requestId") == 42 and p["status"] == "Uploaded",
                          timeout=30)
    assert cs.failures() == []


async def test_TC_N_29_31_CS_customer_information_variants(strict201, sim201_factory):
    """N09/N10: TC_N_31_CS clear and report of a token the station knows nothing about: Accepted, one
    NotifyCustomerInformation saying there was nothing (N10.FR.04); TC_N_29_CS a request naming no customer:
    Invalid (N09.FR.09); by customerIdentifier (the station keys nothing by it): Accepted, nothing held."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    n = len(cs.events)
    answer = await cs.command("CustomerInformation", {"requestId": 51, "report": True, "clear": True,
                                                      "idToken": {"idToken": "NOBODY01", "type": "ISO14443"}})
    assert answer["status"] == "Accepted"
    notice = await cs.call_from_cp("NotifyCustomerInformation", lambda p: p["requestId"] == 51, after=n)
    assert not notice.get("tbc") and "no data" in notice["data"].lower()  # TC_N_31
    answer = await cs.command("CustomerInformation", {"requestId": 52, "report": True, "clear": False})
    assert answer["status"] == "Invalid"  # TC_N_29
    answer = await cs.command("CustomerInformation", {"requestId": 53, "report": True, "clear": True,
                                                      "customerIdentifier": "customer-7"})
    assert answer["status"] == "Accepted"
    held = await cs.call_from_cp("NotifyCustomerInformation", lambda p: p["requestId"] == 53, after=n)
    assert "no data" in held["data"].lower()
    assert cs.failures() == []


async def test_TC_F_24_G_01_02_J_06_CS_status_and_idle_only_clock_values(strict201, sim201_factory):
    """TC_G_01_CS / TC_G_02_CS (G01): Available to Occupied when the EV is plugged in, back when it leaves;
    TC_F_24_CS: TriggerMessage StatusNotification for the connector says Occupied meanwhile; TC_J_06_CS
    (AlignedDataCtrlr.SendDuringIdle): clock-aligned MeterValues outside a transaction and none during it."""
    cs = strict201
    s = await sim201_factory(cs.url, {"AlignedDataCtrlr/Interval": 30, "AlignedDataCtrlr/SendDuringIdle": True})
    await s.online()
    await cs.call_from_cp("MeterValues")
    n = len(cs.events)
    s.world.plug()
    await cs.call_from_cp("StatusNotification", lambda p: p["connectorStatus"] == "Occupied", after=n)  # TC_G_01
    m = len(cs.events)
    assert (await cs.command("TriggerMessage", {"requestedMessage": "StatusNotification",
                                                "evse": {"id": 1, "connectorId": 1}}))["status"] == "Accepted"
    assert (await cs.call_from_cp("StatusNotification", after=m))["connectorStatus"] == "Occupied"  # TC_F_24
    await s.world.tap(UID, hold_s=0.15)
    await s.state("Charging")
    m = len(cs.events)
    await asyncio.sleep(2.0)  # more than three clock-aligned intervals at the tests' time scale
    assert calls(cs, "MeterValues", m) == [] and not any(
        p["triggerReason"] == "MeterValueClock" for p in calls(cs, "TransactionEvent", m))  # TC_J_06
    await s.world.tap(UID, hold_s=0.15)
    s.world.plug(False)
    await cs.call_from_cp("StatusNotification", lambda p: p["connectorStatus"] == "Available", after=m)  # TC_G_02
    await cs.call_from_cp("MeterValues", after=m, timeout=20)
    assert cs.failures() == []


async def test_TC_P_03_04_CS_custom_data_is_taken(strict201, sim201_factory):
    """TC_P_03_CS / TC_P_04_CS: requests carrying customData (a vendorId and fields of its own, which the schemas
    allow everywhere) are handled as without it: SetVariables / GetVariables, SetChargingProfile."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    custom = {"vendorId": "org.example", "note": "hello"}
    answer = await cs.command("SetVariables", {"customData": custom, "setVariableData": [{
        "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "OfflineThreshold"}, "attributeValue": "200",
        "attributeType": "Actual", "customData": custom}]})
    assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"
    got = await cs.command("GetVariables", {"customData": custom, "getVariableData": [{
        "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "OfflineThreshold"}}]})
    assert got["getVariableResult"][0]["attributeValue"] == "200"
    profile = {"id": 61, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative",
               "customData": custom, "chargingSchedule": [{"id": 61, "chargingRateUnit": "A", "customData": custom,
                                                           "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}]}]}
    answer = await cs.command("SetChargingProfile", {"evseId": 1, "chargingProfile": profile, "customData": custom})
    assert answer["status"] == "Accepted"
    assert cs.failures() == []


async def test_TC_F_19_CS_firmware_status_triggered_while_downloading(strict201, sim201_factory, served, pki,  # noqa: F811
                                                                      tmp_path, slow_downloads):
    """TC_F_19_CS (F06.FR.16, L01.FR.25): TriggerMessage FirmwareStatusNotification during a download that takes
    its time: Accepted, then FirmwareStatusNotification Downloading with the update's requestId; the update goes
    on to Installed."""
    cs = strict201
    await fw_station(cs, sim201_factory, pki, tmp_path)
    directory, url = slow_downloads
    fw = firmware(served, pki)
    name = fw["location"].rsplit("/", 1)[-1]
    (directory / name).write_bytes((served / name).read_bytes())
    fw["location"] = f"{url}/{name}"
    assert (await cs.command("UpdateFirmware", {"requestId": 19, "firmware": fw}))["status"] == "Accepted"
    await cs.call_from_cp("FirmwareStatusNotification", lambda p: p["status"] == "Downloading")
    n = len(cs.events)
    assert (await cs.command("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"}))["status"] \
        == "Accepted"
    triggered = await cs.call_from_cp("FirmwareStatusNotification", after=n)
    assert triggered == {"status": "Downloading", "requestId": 19}
    await cs.call_from_cp("FirmwareStatusNotification", lambda p: p["status"] == "Installed", timeout=60)
    assert cs.failures() == []
