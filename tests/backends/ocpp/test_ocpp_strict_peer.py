"""A whole session against an independent strict central system: ocpp-rpc (Node) in strict mode.

ocpp-rpc validates every message both ways against the official OCPP 1.6
schemas, date-time formats included. The harness (scripts/harness/peers/strict_cs.js)
reports each CALL and each schema failure as a JSON line; the test drives the
central system's commands through its stdin and the station through the
simulated world, and demands zero schema failures.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from ocpp_flows import OTHER, UID
from strict_peer import StrictCS


def in_seconds(s: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def test_full_session_against_strict_central_system(strict_cs, sim_factory):
    cs = strict_cs
    s = await sim_factory(cs.url, {"MeterValueSampleInterval": 10, "ClockAlignedDataInterval": 15,
                                   "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import,"
                                                             "Voltage,Current.Import"},
                            **{"firmware.allow_unsigned": True})  # an unsigned UpdateFirmware is sent below
    await s.online()
    connected = await cs.wait(lambda e: e["event"] == "connected")
    assert connected["identity"] == "CP1" and connected["protocol"] == "ocpp1.6"
    await cs.call_from_cp("StatusNotification", lambda p: p["connectorId"] == 1)

    # configuration and the small commands
    config = await cs.command("GetConfiguration", {})
    assert len(config["configurationKey"]) >= 35
    assert (await cs.command("ChangeConfiguration", {"key": "ConnectionTimeOut", "value": "90"}))["status"] == "Accepted"
    assert (await cs.command("ChangeConfiguration", {"key": "NoSuchKey", "value": "1"}))["status"] == "NotSupported"
    # The index is taken before the command: the triggered CALL may be reported before the command's
    # result, and clock-aligned MeterValues (every 0.3 s here) keep arriving, so an index counted back
    # from the end after the result could already lie beyond it. A triggered MeterValues is told apart
    # from the clock-aligned ones by its context.
    for message in ("BootNotification", "Heartbeat", "StatusNotification", "MeterValues",
                    "DiagnosticsStatusNotification", "FirmwareStatusNotification"):
        n = len(cs.events)
        assert (await cs.command("TriggerMessage", {"requestedMessage": message}))["status"] == "Accepted"
        await cs.call_from_cp(message, _triggered if message == "MeterValues" else (lambda p: True), after=n)
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
    contexts = [d["sampledValue"][0]["context"] for d in stop["transactionData"]]
    assert contexts[0] == "Transaction.Begin" and contexts[-1] == "Transaction.End"
    assert "Sample.Periodic" in contexts  # StopTxnSampledData, validated by the strict schemas too

    # a remote session: UnlockConnector is NotSupported (no lock), RemoteStop ends it
    s.world.plug(False)
    await s.state("Available")
    n = len(cs.events)
    assert (await cs.command("RemoteStartTransaction", {"idTag": UID, "connectorId": 1}))["status"] == "Accepted"
    s.world.plug()
    await cs.call_from_cp("StartTransaction", after=n)
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


def _triggered(params: dict) -> bool:
    return params["meterValue"][0]["sampledValue"][0].get("context") == "Trigger"


def _calls(cs: StrictCS, method: str, after: int = 0) -> list[dict]:
    return [e["params"] for e in cs.events[after:] if e["event"] == "call" and e["method"] == method]


def _statuses(cs: StrictCS, connector: int, after: int = 0) -> list[str]:
    return [p["status"] for p in _calls(cs, "StatusNotification", after) if p["connectorId"] == connector]


async def test_octt_findings_against_strict_central_system(strict_cs, sim_factory):
    """What an independent strict central system found, on the wire: availability of a connector
    leaves connector 0 alone (TC_013); a reserved connector with the car plugged in stays Reserved
    and refuses another card without an Authorize.req (TC_046_1); UnlockConnector is NotSupported
    and stops nothing (TC_018_2); another card of the group stops the session and is named in
    StopTransaction (TC_069); a scheduled Unavailable goes Finishing -> Unavailable; a Reset with a
    session sends the StopTransaction, answered, before the station exits (TC_016)."""
    cs = strict_cs
    s = await sim_factory(cs.url, {"MeterValueSampleInterval": 0})
    await s.online()
    await cs.call_from_cp("StatusNotification", lambda p: p["connectorId"] == 1)
    fleet = {"status": "Accepted", "parentIdTag": "FLEET"}
    await cs.command("__setTags", {"tags": {UID: fleet, OTHER: fleet}})

    # TC_013's first step: connector 1 Inoperative, the charge point stays Available
    n = len(cs.events)
    assert (await cs.command("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"}))["status"] == "Accepted"
    await cs.call_from_cp("StatusNotification", lambda p: p["connectorId"] == 1 and p["status"] == "Unavailable",
                          after=n)
    assert (await cs.command("ChangeAvailability", {"connectorId": 1, "type": "Operative"}))["status"] == "Accepted"
    await cs.call_from_cp("StatusNotification", lambda p: p["connectorId"] == 1 and p["status"] == "Available",
                          after=n)
    await asyncio.sleep(0.3)
    assert _statuses(cs, 0, n) == []

    # TC_046_1, plugged in first: only the reserved card starts
    n = len(cs.events)
    assert (await cs.command("ReserveNow", {"connectorId": 1, "expiryDate": in_seconds(600), "idTag": UID,
                                            "reservationId": 9}))["status"] == "Accepted"
    await cs.call_from_cp("StatusNotification", lambda p: p["status"] == "Reserved", after=n)
    s.world.plug()
    await asyncio.sleep(0.3)
    await s.world.tap(OTHER, hold_s=0.15)
    await asyncio.sleep(0.4)
    assert _calls(cs, "Authorize", n) == [] and _calls(cs, "StartTransaction", n) == []
    assert _statuses(cs, 1, n) == ["Reserved"]
    await s.world.tap(UID, hold_s=0.15)
    start = await cs.call_from_cp("StartTransaction", after=n)
    assert start["idTag"] == UID and start["reservationId"] == 9
    await s.idle()

    # TC_018_2: no lock, nothing stops
    assert (await cs.command("UnlockConnector", {"connectorId": 1}))["status"] == "NotSupported"
    await asyncio.sleep(0.3)
    assert _calls(cs, "StopTransaction", n) == []

    # TC_069: another card of the group stops it and is named
    await s.world.tap(OTHER, hold_s=0.15)
    stop = await cs.call_from_cp("StopTransaction", after=n)
    assert stop["idTag"] == OTHER and stop["reason"] == "Local" and stop["transactionId"] == start_tx_id(cs, n)
    assert _calls(cs, "Authorize", n)[-1]["idTag"] == OTHER
    s.world.plug(False)
    await s.state("Available")

    # a scheduled Unavailable: Finishing, then Unavailable, nothing in between
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    await cs.call_from_cp("StartTransaction", after=n)
    await s.state("Charging")
    assert (await cs.command("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"}))["status"] == "Scheduled"
    n = len(cs.events)
    await s.world.tap(UID, hold_s=0.15)
    await cs.call_from_cp("StopTransaction", after=n)
    s.world.plug(False)
    await cs.call_from_cp("StatusNotification", lambda p: p["connectorId"] == 1 and p["status"] == "Unavailable",
                          after=n)
    await asyncio.sleep(0.3)
    assert _statuses(cs, 1, n) == ["Finishing", "Unavailable"] and _statuses(cs, 0, n) == []
    assert (await cs.command("ChangeAvailability", {"connectorId": 1, "type": "Operative"}))["status"] == "Accepted"
    await s.state("Available")

    # TC_016: Reset with a session, the StopTransaction before the exit
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    await cs.call_from_cp("StartTransaction", after=n)
    await s.idle()
    n = len(cs.events)
    assert (await cs.command("Reset", {"type": "Soft"}))["status"] == "Accepted"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while s.charger.exit_request is None:
        assert loop.time() < deadline, "no exit after Reset"
        await asyncio.sleep(0.01)
    assert [p["reason"] for p in _calls(cs, "StopTransaction", n)] == ["SoftReset"]
    assert s.store.pending_messages() == 0 and _calls(cs, "BootNotification", n) == []
    assert cs.failures() == []


def start_tx_id(cs: StrictCS, after: int) -> int:
    """The transactionId the harness gave the last StartTransaction (it counts up from 501)."""
    return 500 + len(_calls(cs, "StartTransaction"))


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
