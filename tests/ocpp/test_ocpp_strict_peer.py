"""A whole session against an independent strict central system: ocpp-rpc (Node) in strict mode.

ocpp-rpc validates every message both ways against the official OCPP 1.6
schemas, date-time formats included. The harness (tests/peers/strict_cs.js)
reports each CALL and each schema failure as a JSON line; the test drives the
central system's commands through its stdin and the station through the
simulated world, and demands zero schema failures.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ocpp_flows import UID

PEERS = Path(__file__).resolve().parents[1] / "peers"


def _ensure_installed() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed: the ocpp-rpc strict central system cannot run")
    if not (PEERS / "node_modules" / "ocpp-rpc").is_dir():
        subprocess.run(["bash", str(PEERS / "install.sh")], check=True, timeout=300)


class StrictCS:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict] = []
        self._next = 0
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.events.append({"event": "noise", "text": line.decode(errors="replace")})

    async def wait(self, pred, timeout: float = 15.0) -> dict:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for e in self.events:
                if pred(e):
                    return e
            if loop.time() > deadline:
                raise AssertionError(f"not seen within {timeout} s; last events: {self.events[-10:]}")
            await asyncio.sleep(0.01)

    async def call_from_cp(self, method: str, pred=lambda p: True, after: int = 0) -> dict:
        e = await self.wait(lambda e: e in self.events[after:] and e["event"] == "call"
                            and e["method"] == method and pred(e["params"]))
        return e["params"]

    async def command(self, method: str, params: dict | None = None) -> dict:
        self._next += 1
        ident = self._next
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"id": ident, "method": method, "params": params or {}}) + "\n").encode())
        await self.proc.stdin.drain()
        answer = await self.wait(lambda e: e.get("id") == ident and e["event"] in ("result", "error"))
        assert answer["event"] == "result", answer
        return answer["result"]

    def failures(self) -> list[dict]:
        return [e for e in self.events if e["event"] in ("strictValidationFailure", "badMessage")]

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        self._reader.cancel()


@pytest.fixture
async def strict_cs():
    _ensure_installed()
    proc = await asyncio.create_subprocess_exec("node", str(PEERS / "strict_cs.js"), "0", "300",
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    cs = StrictCS(proc)
    try:
        listening = await cs.wait(lambda e: e["event"] == "listening")
        cs.url = f"ws://127.0.0.1:{listening['port']}/ocpp"
        yield cs
    finally:
        await cs.close()


def in_seconds(s: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def test_full_session_against_strict_central_system(strict_cs, sim_factory):
    cs = strict_cs
    s = await sim_factory(cs.url, {"MeterValueSampleInterval": 10, "ClockAlignedDataInterval": 15,
                                   "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import,"
                                                             "Voltage,Current.Import"})
    await s.online()
    connected = await cs.wait(lambda e: e["event"] == "connected")
    assert connected["identity"] == "CP1" and connected["protocol"] == "ocpp1.6"
    await cs.call_from_cp("StatusNotification", lambda p: p["connectorId"] == 1)

    # configuration and the small commands
    config = await cs.command("GetConfiguration", {})
    assert len(config["configurationKey"]) >= 35
    assert (await cs.command("ChangeConfiguration", {"key": "ConnectionTimeOut", "value": "90"}))["status"] == "Accepted"
    assert (await cs.command("ChangeConfiguration", {"key": "NoSuchKey", "value": "1"}))["status"] == "NotSupported"
    for message in ("BootNotification", "Heartbeat", "StatusNotification", "MeterValues",
                    "DiagnosticsStatusNotification", "FirmwareStatusNotification"):
        assert (await cs.command("TriggerMessage", {"requestedMessage": message}))["status"] == "Accepted"
        await cs.call_from_cp(message, after=len(cs.events) - 2)
    assert (await cs.command("SendLocalList", {"listVersion": 3, "updateType": "Full", "localAuthorizationList": [
        {"idTag": UID, "idTagInfo": {"status": "Accepted", "expiryDate": in_seconds(86400)}}]}))["status"] == "Accepted"
    assert (await cs.command("GetLocalListVersion"))["listVersion"] == 3
    assert (await cs.command("ClearCache"))["status"] == "Accepted"
    assert (await cs.command("DataTransfer", {"vendorId": "x"}))["status"] == "UnknownVendorId"
    assert (await cs.command("ReserveNow", {"connectorId": 1, "expiryDate": in_seconds(600), "idTag": UID,
                                            "reservationId": 7}))["status"] == "Accepted"
    assert (await cs.command("CancelReservation", {"reservationId": 7}))["status"] == "Accepted"

    # a local session with sampled and clock-aligned meter values and smart charging
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    start = await cs.call_from_cp("StartTransaction")
    await cs.call_from_cp("MeterValues", lambda p: "transactionId" in p)
    tx = 501
    profile = {"chargingProfileId": 1, "transactionId": tx, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
               "chargingProfileKind": "Relative", "chargingSchedule": {
                   "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.5},
                                                                       {"startPeriod": 60, "limit": 0}]}}
    await s.idle()
    assert (await cs.command("SetChargingProfile", {"connectorId": 1, "csChargingProfiles": profile}))["status"] == "Accepted"
    composite = await cs.command("GetCompositeSchedule", {"connectorId": 1, "duration": 300, "chargingRateUnit": "W"})
    assert composite["status"] == "Accepted"
    assert (await cs.command("ClearChargingProfile", {"id": 1}))["status"] == "Accepted"
    s.world.consume(250)
    await asyncio.sleep(0.5)
    assert (await cs.command("RemoteStopTransaction", {"transactionId": tx}))["status"] == "Accepted"
    stop = await cs.call_from_cp("StopTransaction")
    assert stop["meterStop"] - start["meterStart"] >= 250 and stop["reason"] == "Remote"

    # a remote session: UnlockConnector is NotSupported (no lock), RemoteStop ends it
    s.world.plug(False)
    await s.state("Available")
    assert (await cs.command("RemoteStartTransaction", {"idTag": UID, "connectorId": 1}))["status"] == "Accepted"
    s.world.plug()
    await cs.call_from_cp("StartTransaction", after=len(cs.events) - 1)
    await s.idle()
    assert (await cs.command("UnlockConnector", {"connectorId": 1}))["status"] == "NotSupported"  # no lock
    assert (await cs.command("RemoteStopTransaction", {"transactionId": 502}))["status"] == "Accepted"
    stop2 = await cs.call_from_cp("StopTransaction", lambda p: p["transactionId"] == 502)
    assert stop2["reason"] == "Remote"
    s.world.plug(False)

    # availability, diagnostics and firmware that fail (no servers), then a reset
    assert (await cs.command("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"}))["status"] == "Accepted"
    assert (await cs.command("ChangeAvailability", {"connectorId": 0, "type": "Operative"}))["status"] == "Accepted"
    diag = await cs.command("GetDiagnostics", {"location": "ftp://127.0.0.1:9/", "retries": 1})
    assert diag["fileName"].endswith(".tar.gz")
    await cs.call_from_cp("DiagnosticsStatusNotification", lambda p: p["status"] == "UploadFailed")
    await cs.command("UpdateFirmware", {"location": "http://127.0.0.1:9/fw.whl", "retrieveDate": in_seconds(0),
                                        "retries": 1})
    await cs.call_from_cp("FirmwareStatusNotification", lambda p: p["status"] == "DownloadFailed")
    assert (await cs.command("Reset", {"type": "Soft"}))["status"] == "Accepted"
    await s.idle()

    calls = {e["method"] for e in cs.events if e["event"] == "call"}
    assert {"BootNotification", "Heartbeat", "StatusNotification", "Authorize", "StartTransaction", "MeterValues",
            "StopTransaction", "DiagnosticsStatusNotification", "FirmwareStatusNotification"} <= calls
    clock = [e["params"] for e in cs.events if e["event"] == "call" and e["method"] == "MeterValues"
             and e["params"]["meterValue"][0]["sampledValue"][0].get("context") == "Sample.Clock"]
    assert clock, "no clock-aligned meter values seen"
    assert cs.failures() == []


async def test_strict_harness_reports_schema_failures(strict_cs, sim_factory):
    """The zero-failure check above can fail: an off-schema message is reported."""
    s = await sim_factory(strict_cs.url)
    await s.online()
    await strict_cs.wait(lambda e: e["event"] == "connected")
    strict_cs._next += 1
    strict_cs.proc.stdin.write((json.dumps({"id": strict_cs._next, "method": "Reset",
                                            "params": {"type": "Lukewarm"}}) + "\n").encode())
    await strict_cs.proc.stdin.drain()
    answer = await strict_cs.wait(lambda e: e.get("id") == strict_cs._next and e["event"] in ("result", "error"))
    assert answer["event"] == "error"
    assert [f["method"] for f in strict_cs.failures()] == ["Reset"]
