"""OCPP 2.0.1 provisioning (block B) against an independent strict central system: ocpp-rpc in strict mode
with its bundled OCPP 2.0.1 schemas (tests/peers/strict_cs.js), the whole simulated station as the
charging station. Every test demands zero schema failures in both directions."""

from __future__ import annotations

import json

from strict_peer import TimedCS


async def report_parts(cs: TimedCS, request_id: int) -> list[dict]:
    """The NotifyReport parts of one report, in seqNo order, to the one without tbc."""
    parts: list[dict] = []
    while not parts or parts[-1].get("tbc"):
        parts.append(await cs.call_from_cp("NotifyReport", part_of(request_id, len(parts))))
    return parts


def part_of(request_id: int, seq: int):
    return lambda p: p["requestId"] == request_id and p["seqNo"] == seq


def _calls(cs: TimedCS, method: str, after: int = 0) -> list[dict]:
    return [e["params"] for e in cs.events[after:] if e["event"] == "call" and e["method"] == method]


async def test_TC_B_01_CS_cold_boot_accepted_then_status(strict201, sim201_factory):
    """TC_B_01_CS, B01.FR.01/05/09: BootNotification first (reason PowerUp), then the connector's status
    (StatusNotification Available for EVSE 1, connector 1), then heartbeats; the subprotocol is ocpp2.0.1."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    connected = await cs.wait(lambda e: e["event"] == "connected")
    assert connected["protocol"] == "ocpp2.0.1"
    boot = await cs.call_from_cp("BootNotification")
    assert boot["reason"] == "PowerUp" and boot["chargingStation"]["vendorName"] == "station"
    status = await cs.call_from_cp("StatusNotification")
    assert (status["evseId"], status["connectorId"], status["connectorStatus"]) == (1, 1, "Available")
    first = [e["method"] for e in cs.events if e["event"] == "call"]
    assert first[0] == "BootNotification"
    await s.backend.heartbeat()
    await cs.call_from_cp("Heartbeat")
    assert cs.failures() == []


async def test_TC_B_02_CS_cold_boot_pending(strict201, sim201_factory):
    """TC_B_02_CS, B02.FR.01/02/05/08: while Pending the station sends nothing but BootNotification, answers
    GetVariables and SetVariables, refuses RequestStartTransaction, and boots again after the interval."""
    cs = strict201
    await cs.command("__setBoot", {"status": "Pending", "interval": 10})  # 0.2 s scaled
    s = await sim201_factory(cs.url)
    await cs.call_from_cp("BootNotification")
    got = await cs.command("GetVariables", {"getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]})
    assert got["getVariableResult"][0]["attributeStatus"] == "Accepted"
    assert (await cs.command("RequestStartTransaction", {"idToken": {"idToken": "AB12", "type": "Central"},
                                                         "remoteStartId": 1}))["status"] == "Rejected"
    n = len(cs.events)
    await cs.wait(lambda e: e in cs.events[n:] and e["event"] == "call")  # the next BootNotification
    await cs.command("__setBoot", {"status": "Accepted", "interval": 300})
    await s.online()
    await cs.call_from_cp("StatusNotification")
    methods = [e["method"] for e in cs.events if e["event"] == "call"]
    first_other = next(i for i, m in enumerate(methods) if m != "BootNotification")
    assert first_other >= 2 and set(methods[:first_other]) == {"BootNotification"}
    assert cs.failures() == []


async def test_TC_B_03_30_CS_cold_boot_rejected(strict201, sim201_factory):
    """TC_B_03_CS, TC_B_30_CS, B03.FR.02/06/08: Rejected: nothing but BootNotification after the interval, and a
    request of the central system is answered CALLERROR SecurityError."""
    cs = strict201
    await cs.command("__setBoot", {"status": "Rejected", "interval": 15})
    s = await sim201_factory(cs.url)
    await cs.call_from_cp("BootNotification")
    cs._next += 1
    ident = cs._next
    cs.proc.stdin.write((json.dumps({"id": ident, "method": "GetVariables", "params": {"getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]}}) + "\n").encode())
    await cs.proc.stdin.drain()
    answer = await cs.wait(lambda e: e.get("id") == ident and e["event"] in ("result", "error"))
    assert answer["event"] == "error" and answer["code"] == "SecurityError"
    await cs.command("__setBoot", {"status": "Accepted", "interval": 300})
    await s.online()
    methods = [e["method"] for e in cs.events if e["event"] == "call"]
    assert methods[:2] == ["BootNotification", "BootNotification"]
    assert cs.failures() == []


def _get(cs_result: dict) -> list[tuple[str, str | None]]:
    return [(r["attributeStatus"], r.get("attributeValue")) for r in cs_result["getVariableResult"]]


async def test_TC_B_06_07_32_33_34_CS_get_variables(strict201, sim201_factory):
    """TC_B_06_CS, TC_B_07_CS (B06.FR.01/10), TC_B_32_CS (UnknownComponent, B06.FR.06), TC_B_33_CS
    (UnknownVariable, B06.FR.07), TC_B_34_CS (NotSupportedAttributeType, B06.FR.08), B06.FR.09 (a WriteOnly
    variable is Rejected), B06.FR.11 (Actual when no type is given), B06.FR.16 (too many items)."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    result = await cs.command("GetVariables", {"getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
        {"component": {"name": "TxCtrlr"}, "variable": {"name": "TxStartPoint"}, "attributeType": "Actual"},
        {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "AvailabilityState"}},
        {"component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}}, "variable": {"name": "ConnectorType"}},
        {"component": {"name": "NoSuchCtrlr"}, "variable": {"name": "Enabled"}},
        {"component": {"name": "TxCtrlr"}, "variable": {"name": "NoSuchVariable"}},
        {"component": {"name": "TxCtrlr"}, "variable": {"name": "TxStartPoint"}, "attributeType": "MaxSet"},
        {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}},
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "MessageAttempts", "instance": "TransactionEvent"}},
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "MessageAttempts"}},
    ]})
    assert _get(result) == [("Accepted", "300"), ("Accepted", "PowerPathClosed"), ("Accepted", "Available"),
                            ("Accepted", "cType2"), ("UnknownComponent", None), ("UnknownVariable", None),
                            ("NotSupportedAttributeType", None), ("Rejected", None), ("Accepted", "3"),
                            ("UnknownVariable", None)]  # B06.FR.15: no MessageAttempts without its instance
    assert "attributeType" not in result["getVariableResult"][0]  # B06.FR.03 only echoes a given type
    too_many = [{"component": {"name": "TxCtrlr"}, "variable": {"name": "TxStartPoint"}}] * 51
    cs._next += 1
    ident = cs._next
    cs.proc.stdin.write((json.dumps({"id": ident, "method": "GetVariables",
                                     "params": {"getVariableData": too_many}}) + "\n").encode())
    await cs.proc.stdin.drain()
    answer = await cs.wait(lambda e: e.get("id") == ident and e["event"] in ("result", "error"))
    assert answer["event"] == "error" and answer["code"] == "OccurrenceConstraintViolation"
    assert cs.failures() == []


async def test_TC_B_09_10_11_35_36_37_39_CS_set_variables_persist(strict201, sim201_factory):
    """TC_B_09_CS, TC_B_10_CS (B05.FR.10), TC_B_11_CS (invalid values, B05.FR.07/08), TC_B_35_CS, TC_B_36_CS,
    TC_B_37_CS (B05.FR.04-06), TC_B_39_CS (ReadOnly, B05.FR.09); the values stay over a power cut (they are
    in the journal) and what they change happens (the heartbeat interval, the EV connection timeout)."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()

    def var(component: str, name: str, value: str, **more) -> dict:
        return {"component": {"name": component}, "variable": {"name": name}, "attributeValue": value, **more}

    result = await cs.command("SetVariables", {"setVariableData": [
        var("OCPPCommCtrlr", "HeartbeatInterval", "123"),
        var("TxCtrlr", "TxStopPoint", "EVConnected,Authorized"),
        var("TxCtrlr", "EVConnectionTimeOut", "25"),
        var("OCPPCommCtrlr", "HeartbeatInterval", "-5"),
        var("TxCtrlr", "TxStartPoint", "ParkingBayOccupancy"),
        var("AuthCtrlr", "LocalPreAuthorize", "maybe"),
        var("NoSuchCtrlr", "Enabled", "true"),
        var("TxCtrlr", "NoSuchVariable", "1"),
        var("TxCtrlr", "EVConnectionTimeOut", "30", attributeType="Target"),
        var("SecurityCtrlr", "SecurityProfile", "3"),
        var("OCPPCommCtrlr", "WebSocketPingInterval", "30"),
    ]})
    assert [r["attributeStatus"] for r in result["setVariableResult"]] == [
        "Accepted", "Accepted", "Accepted", "Rejected", "Rejected", "Rejected", "UnknownComponent",
        "UnknownVariable", "NotSupportedAttributeType", "Rejected", "RebootRequired"]
    assert s.charger.machine.settings.connection_timeout_s == 25 * 0.02
    await s.station.stop(graceful=False)
    s2 = await sim201_factory(cs.url)
    await s2.online()
    got = await cs.command("GetVariables", {"getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
        {"component": {"name": "TxCtrlr"}, "variable": {"name": "TxStopPoint"}},
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "WebSocketPingInterval"}}]})
    assert _get(got) == [("Accepted", "300"), ("Accepted", "EVConnected,Authorized"), ("Accepted", "30")]
    assert cs.failures() == []  # (300: BootNotification's interval wins over the one set, B01.FR.04)


async def test_TC_B_12_13_14_53_CS_base_reports_in_parts(strict201, sim201_factory):
    """TC_B_12_CS ConfigurationInventory, TC_B_13_CS / TC_B_53_CS FullInventory (every required variable),
    TC_B_14_CS SummaryInventory: Accepted, then NotifyReport in parts of ItemsPerMessage[GetReport] with the
    requestId, seqNo from 0 and tbc on all but the last (B07.FR.01/03/04/07-10), variableCharacteristics for
    every variable (B08.FR.12), never the value of a WriteOnly variable."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    for request_id, base in ((11, "FullInventory"), (12, "ConfigurationInventory"), (13, "SummaryInventory")):
        assert (await cs.command("GetBaseReport", {"requestId": request_id, "reportBase": base}))["status"] == "Accepted"
        parts = await report_parts(cs, request_id)
        data = [d for p in parts for d in p["reportData"]]
        names = {(d["component"]["name"], d["variable"]["name"]) for d in data}
        if base == "FullInventory":
            assert len(parts) > 1 and all(len(p["reportData"]) <= 50 for p in parts)
            for required in (("ChargingStation", "AvailabilityState"), ("OCPPCommCtrlr", "OfflineThreshold"),
                             ("TxCtrlr", "TxStartPoint"), ("TxCtrlr", "TxStopPoint"), ("AuthCtrlr", "LocalPreAuthorize"),
                             ("SampledDataCtrlr", "TxEndedMeasurands"), ("AlignedDataCtrlr", "Interval"),
                             ("SecurityCtrlr", "SecurityProfile"), ("DeviceDataCtrlr", "ItemsPerMessage"),
                             ("ClockCtrlr", "DateTime"), ("Connector", "ConnectorType"), ("EVSE", "Power")):
                assert required in names, required
        elif base == "ConfigurationInventory":
            assert all(d["variableAttribute"][0]["mutability"] in ("ReadWrite", "WriteOnly") for d in data)
        else:
            assert names == {(c, v) for c in ("ChargingStation", "EVSE", "Connector")
                             for v in ("AvailabilityState", "Available")}
        assert all("variableCharacteristics" in d for d in data)
        password = [d for d in data if d["variable"]["name"] == "BasicAuthPassword"]
        assert all("value" not in d["variableAttribute"][0] for d in password)
    assert cs.failures() == []


async def test_TC_B_16_17_18_19_54_55_56_CS_custom_reports(strict201, sim201_factory):
    """TC_B_16_CS criteria (B08.FR.07-10, OR of criteria B08.FR.13), TC_B_17_CS component/variable
    (B08.FR.11), TC_B_18_CS both, TC_B_19_CS an unknown component: EmptyResultSet (B08.FR.15), TC_B_54_CS no
    instance (B08.FR.21), TC_B_55_CS with an instance, TC_B_56_CS no evse (B08.FR.23: every EVSE, and the station's own)."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()

    async def report(request_id: int, **params) -> list[dict]:
        answer = await cs.command("GetReport", {"requestId": request_id, **params})
        if answer["status"] != "Accepted":
            return answer["status"]
        return [d for p in await report_parts(cs, request_id) for d in p["reportData"]]

    enabled = await report(1, componentCriteria=["Enabled"])
    assert {d["component"]["name"] for d in enabled} >= {"AuthCacheCtrlr", "TxCtrlr", "OCPPCommCtrlr"}
    assert await report(2, componentCriteria=["Problem"]) == "EmptyResultSet"
    one = await report(3, componentVariable=[{"component": {"name": "TxCtrlr"}, "variable": {"name": "TxStopPoint"}}])
    assert [(d["component"]["name"], d["variable"]["name"]) for d in one] == [("TxCtrlr", "TxStopPoint")]
    both = await report(4, componentVariable=[{"component": {"name": "AuthCacheCtrlr"}}], componentCriteria=["Enabled"])
    assert {d["variable"]["name"] for d in both} >= {"Enabled", "LifeTime"}
    assert await report(5, componentVariable=[{"component": {"name": "NoSuchCtrlr"}}]) == "EmptyResultSet"
    instances = await report(6, componentVariable=[{"component": {"name": "DeviceDataCtrlr"},
                                                   "variable": {"name": "ItemsPerMessage"}}])
    assert {d["variable"].get("instance") for d in instances} == {"GetReport", "GetVariables", "SetVariables"}
    one_instance = await report(8, componentVariable=[{"component": {"name": "DeviceDataCtrlr"},
                                                       "variable": {"name": "ItemsPerMessage", "instance": "GetVariables"}}])
    assert [d["variable"].get("instance") for d in one_instance] == ["GetVariables"]
    evses = await report(7, componentVariable=[{"component": {"name": "Connector"},
                                               "variable": {"name": "AvailabilityState"}}])
    assert [d["component"].get("evse") for d in evses] == [{"id": 1, "connectorId": 1}]
    assert cs.failures() == []
