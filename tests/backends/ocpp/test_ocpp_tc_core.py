"""OCA compliance test cases for a 1.6 charge point, Core profile, on a whole simulated station.

Each test is named by its test case id. The station is station.daemon.Station on
emulated hardware (RFID chip, GPIO, Modbus meter); the central system is the
`ocpp` library over real websockets (scripts/harness/ocpp_csms.py).
"""

from __future__ import annotations

import asyncio
import json

from ocpp.v16 import call
from ocpp_csms import SILENT, CallError
from ocpp_flows import OTHER, UID, start_tx, statuses, wait_status


# ----------------------------------------------------------------- boot
async def test_TC_001_cold_boot_rejected_then_accepted(csms, sim_factory):
    csms.boots = [("Rejected", 40)]  # 0.8 s scaled
    s = await sim_factory(csms.url, start=True)
    await csms.wait_for("BootNotification")
    await asyncio.sleep(0.1)
    # While rejected, the charge point answers nothing the central system sends.
    await csms.send_raw(json.dumps([2, "while-rejected", "GetConfiguration", {}]))
    await s.online(timeout=15)
    await wait_status(csms, "Available", connector=1)
    boots = [r for r in csms.received if r.action == "BootNotification"]
    assert len(boots) == 2
    assert boots[1].at - boots[0].at >= 0.8 * 0.9  # not before the interval
    first_other = next(i for i, r in enumerate(csms.received) if r.action != "BootNotification")
    assert csms.received[first_other - 1].action == "BootNotification"
    assert csms.received.index(boots[1]) < first_other  # nothing but boots before Accepted
    assert not any(d == "in" and "while-rejected" in f for d, f in csms.frames)
    await wait_status(csms, "Available", connector=0)


async def test_TC_002_cold_boot_pending(csms, sim_factory):
    csms.boots = [("Pending", 40)]
    s = await sim_factory(csms.url)
    await csms.wait_for("BootNotification")
    # During Pending the central system may read and change the configuration.
    result = await csms.call(call.GetConfiguration(key=["HeartbeatInterval"]))
    assert result.configuration_key[0]["key"] == "HeartbeatInterval"
    changed = await csms.call(call.ChangeConfiguration(key="MeterValueSampleInterval", value="30"))
    assert changed.status == "Accepted"
    await s.online(timeout=15)
    actions = [r.action for r in csms.received]
    assert actions[:2] == ["BootNotification", "BootNotification"]
    await wait_status(csms, "Available", connector=1)


async def test_boot_callerror_is_retried(csms, sim_factory):
    answers = iter([CallError("InternalError"), None])
    csms.respond["BootNotification"] = lambda p: next(answers, None)
    s = await sim_factory(csms.url)
    await s.online(timeout=15)
    assert len(csms.calls("BootNotification")) == 2


# ----------------------------------------------------------------- regular sessions
async def test_TC_003_regular_charging_session_plugin_first(csms, sim):
    n = len(csms.received)
    sim.world.plug()
    await wait_status(csms, "Preparing", after=n)
    await sim.world.tap(UID, hold_s=0.15)
    auth = await csms.wait_for("Authorize", after=n)
    assert auth["idTag"] == UID
    start = await csms.wait_for("StartTransaction", after=n)
    assert start["connectorId"] == 1 and start["idTag"] == UID
    assert isinstance(start["meterStart"], int)
    await wait_status(csms, "Charging", after=n)
    sim.world.consume(1234)
    await asyncio.sleep(0.4)
    await sim.world.tap(UID, hold_s=0.15)
    stop = await csms.wait_for("StopTransaction", after=n)
    assert stop["transactionId"] == 101 and stop["reason"] == "Local"
    assert isinstance(stop["meterStop"], int) and stop["meterStop"] - start["meterStart"] >= 1234
    await wait_status(csms, "Finishing", after=n)
    unplugged = len(csms.received)
    sim.world.plug(False)
    await wait_status(csms, "Available", after=unplugged)
    order = [r.action for r in csms.received[n:] if r.action in ("Authorize", "StartTransaction", "StopTransaction")]
    assert order == ["Authorize", "StartTransaction", "StopTransaction"]


async def test_TC_004_1_regular_charging_session_identification_first(csms, sim):
    n = len(csms.received)
    await sim.world.tap(UID, hold_s=0.15)
    await csms.wait_for("Authorize", after=n)
    await wait_status(csms, "Preparing", after=n)
    assert not csms.calls("StartTransaction")
    sim.world.plug()
    await csms.wait_for("StartTransaction", after=n)
    await wait_status(csms, "Charging", after=n)


async def test_TC_004_2_identification_first_connection_timeout(csms, sim_factory):
    s = await sim_factory(csms.url, {"ConnectionTimeOut": 25})  # 0.5 s scaled
    await s.online()
    n = len(csms.received)
    await s.world.tap(UID, hold_s=0.15)
    await wait_status(csms, "Preparing", after=n)
    await wait_status(csms, "Available", after=n + 1)
    assert not csms.calls("StartTransaction")


async def test_TC_005_1_ev_side_disconnect_stops_transaction(csms, sim):
    await start_tx(csms, sim)
    n = len(csms.received)
    sim.world.plug(False)
    stop = await csms.wait_for("StopTransaction", after=n)
    assert stop["reason"] == "EVDisconnected"


async def test_TC_005_2_ev_side_disconnect_not_stopping(csms, sim_factory):
    s = await sim_factory(csms.url, {"StopTransactionOnEVSideDisconnect": False})
    await s.online()
    await start_tx(csms, s)
    n = len(csms.received)
    s.world.plug(False)
    await wait_status(csms, "SuspendedEV", after=n)
    assert not csms.calls("StopTransaction")
    await s.world.tap(UID, hold_s=0.15)
    stop = await csms.wait_for("StopTransaction", after=n)
    assert stop["reason"] == "Local"


# ----------------------------------------------------------------- authorization
async def test_TC_007_regular_start_cached_id(csms, sim_factory):
    s = await sim_factory(csms.url, {"LocalPreAuthorize": True})
    await s.online()
    await start_tx(csms, s)  # learns the tag through Authorize
    await s.world.tap(UID, hold_s=0.15)
    await csms.wait_for("StopTransaction")
    s.world.plug(False)
    await s.state("Available")
    n = len(csms.received)
    await start_tx(csms, s)
    assert not [r for r in csms.received[n:] if r.action == "Authorize"]  # from the cache


async def test_TC_008_regular_start_id_in_local_list(csms, sim_factory):
    s = await sim_factory(csms.url, {"LocalPreAuthorize": True})
    await s.online()
    result = await csms.call(call.SendLocalList(list_version=1, update_type="Full", local_authorization_list=[
        {"id_tag": UID, "id_tag_info": {"status": "Accepted"}}]))
    assert result.status == "Accepted"
    n = len(csms.received)
    await start_tx(csms, s)
    assert not [r for r in csms.received[n:] if r.action == "Authorize"]


async def test_TC_023_1_authorize_invalid(csms, sim):
    await _refused(csms, sim, "Invalid")


async def test_TC_023_2_authorize_expired(csms, sim):
    await _refused(csms, sim, "Expired")


async def test_TC_023_3_authorize_blocked(csms, sim):
    await _refused(csms, sim, "Blocked")


async def _refused(csms, sim, status: str) -> None:
    csms.tags[UID] = {"status": status}
    n = len(csms.received)
    sim.world.plug()
    await wait_status(csms, "Preparing", after=n)
    await sim.world.tap(UID, hold_s=0.15)
    await csms.wait_for("Authorize", after=n)
    await asyncio.sleep(0.5)
    assert not csms.calls("StartTransaction")
    assert sim.charger.state.value == "Preparing"
    assert not sim.world.contactor_closed


async def test_TC_068_stop_with_same_id(csms, sim):
    await start_tx(csms, sim)
    await sim.world.tap(UID, hold_s=0.15)
    stop = await csms.wait_for("StopTransaction")
    assert stop["reason"] == "Local"


async def test_TC_069_stop_with_other_id_same_parent(csms, sim):
    csms.tags[UID] = {"status": "Accepted", "parentIdTag": "FLEET"}
    csms.tags[OTHER] = {"status": "Accepted", "parentIdTag": "FLEET"}
    csms.tags["11223344"] = {"status": "Accepted", "parentIdTag": "ELSEWHERE"}
    await start_tx(csms, sim)
    await sim.world.tap("11223344", hold_s=0.15)  # another parent: not allowed to stop
    await asyncio.sleep(0.3)
    assert not csms.calls("StopTransaction")
    n = len(csms.received)
    await sim.world.tap(OTHER, hold_s=0.15)
    auth = await csms.wait_for("Authorize", after=n)
    assert auth["idTag"] == OTHER
    stop = await csms.wait_for("StopTransaction")
    assert stop["reason"] == "Local"
    assert stop["idTag"] == OTHER  # the card that asked for the stop, not the one that started


# ----------------------------------------------------------------- remote start / stop
async def test_TC_010_remote_start_cable_plugged_in_first(csms, sim):
    n = len(csms.received)
    sim.world.plug()
    await wait_status(csms, "Preparing", after=n)
    result = await csms.call(call.RemoteStartTransaction(id_tag=UID, connector_id=1))
    assert result.status == "Accepted"
    start = await csms.wait_for("StartTransaction", after=n)
    assert start["idTag"] == UID
    await wait_status(csms, "Charging", after=n)


async def test_TC_011_1_remote_start_first(csms, sim):
    n = len(csms.received)
    result = await csms.call(call.RemoteStartTransaction(id_tag=UID))
    assert result.status == "Accepted"
    await wait_status(csms, "Preparing", after=n)
    sim.world.plug()
    await csms.wait_for("StartTransaction", after=n)
    await wait_status(csms, "Charging", after=n)


async def test_TC_011_2_remote_start_time_out(csms, sim_factory):
    s = await sim_factory(csms.url, {"ConnectionTimeOut": 25})
    await s.online()
    n = len(csms.received)
    result = await csms.call(call.RemoteStartTransaction(id_tag=UID))
    assert result.status == "Accepted"
    await wait_status(csms, "Preparing", after=n)
    await wait_status(csms, "Available", after=n + 1)
    assert not csms.calls("StartTransaction")


async def test_remote_start_with_authorize_remote_tx_requests(csms, sim_factory):
    s = await sim_factory(csms.url, {"AuthorizeRemoteTxRequests": True})
    await s.online()
    csms.tags["BADTAG"] = {"status": "Invalid"}
    assert (await csms.call(call.RemoteStartTransaction(id_tag="BADTAG"))).status == "Accepted"
    await csms.wait_for("Authorize", lambda p: p["idTag"] == "BADTAG")
    await asyncio.sleep(0.3)
    assert s.charger.state.value == "Available"
    n = len(csms.received)
    assert (await csms.call(call.RemoteStartTransaction(id_tag=UID))).status == "Accepted"
    await csms.wait_for("Authorize", lambda p: p["idTag"] == UID, after=n)
    s.world.plug()
    await csms.wait_for("StartTransaction", after=n)


async def test_TC_012_remote_stop(csms, sim):
    await start_tx(csms, sim)
    result = await csms.call(call.RemoteStopTransaction(transaction_id=101))
    assert result.status == "Accepted"
    stop = await csms.wait_for("StopTransaction")
    assert stop["reason"] == "Remote" and stop["transactionId"] == 101


async def test_TC_026_remote_start_rejected(csms, sim):
    await csms.call(call.ChangeAvailability(connector_id=0, type="Inoperative"))
    await sim.state("Unavailable")
    result = await csms.call(call.RemoteStartTransaction(id_tag=UID))
    assert result.status == "Rejected"


async def test_TC_027_remote_start_on_unknown_connector_rejected(csms, sim):
    for connector in (0, 2):
        result = await csms.call(call.RemoteStartTransaction(id_tag=UID, connector_id=connector))
        assert result.status == "Rejected"
    assert sim.charger.state.value == "Available"


async def test_TC_028_remote_stop_rejected(csms, sim):
    await start_tx(csms, sim)
    result = await csms.call(call.RemoteStopTransaction(transaction_id=999))
    assert result.status == "Rejected"
    assert sim.charger.state.value == "Charging"


# ----------------------------------------------------------------- reset
async def _exit_requested(sim, timeout: float = 20.0) -> None:
    """Until the station asks to exit (the reboot); the caller looks at the world at that instant."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while sim.charger.exit_request is None:
        assert loop.time() < deadline, "the station did not exit"
        await asyncio.sleep(0.01)


async def _reset(csms, sim, kind: str, with_tx: bool) -> None:
    if with_tx:
        await start_tx(csms, sim)
    result = await csms.call(call.Reset(type=kind))
    assert result.status == "Accepted"
    await _exit_requested(sim)
    assert sim.charger.exit_request == kind.lower()
    if with_tx:
        # OCPP 1.6 §5.14: the StopTransaction went out and was answered before the reboot (the
        # outbox is empty when the station exits), not after the next BootNotification.
        stops = csms.calls("StopTransaction")
        assert [s["reason"] for s in stops] == [f"{kind}Reset"]
        assert sim.store.pending_messages() == 0
        assert [r.action for r in csms.received].count("BootNotification") == 1


async def test_TC_013_hard_reset_without_transaction(csms, sim_factory):
    """OCTT TC_013: connector 1 made Inoperative, Hard reset, after the reboot connector 1 is still
    Unavailable and the charge point (connector 0) Available; then Operative again."""
    s = await sim_factory(csms.url)
    await s.online()
    await wait_status(csms, "Available", connector=0)
    n = len(csms.received)
    assert (await csms.call(call.ChangeAvailability(connector_id=1, type="Inoperative"))).status == "Accepted"
    await wait_status(csms, "Unavailable", after=n)
    assert (await csms.call(call.Reset(type="Hard"))).status == "Accepted"
    await _exit_requested(s)
    assert s.charger.exit_request == "hard"
    await asyncio.sleep(0.3)  # anything connector 0 would have said by now
    assert "Unavailable" not in statuses(csms, connector=0, after=n)
    await s.station.stop()  # the restart systemd does
    n = len(csms.received)
    s2 = await sim_factory(csms.url)
    await s2.online()
    await wait_status(csms, "Unavailable", after=n)
    await wait_status(csms, "Available", connector=0, after=n)
    n = len(csms.received)
    assert (await csms.call(call.ChangeAvailability(connector_id=1, type="Operative"))).status == "Accepted"
    await wait_status(csms, "Available", after=n)
    assert statuses(csms, connector=0, after=n) == []  # the charge point was Available all along


async def test_TC_014_soft_reset_without_transaction(csms, sim):
    await _reset(csms, sim, "Soft", False)


async def test_TC_015_hard_reset_with_transaction(csms, sim):
    await _reset(csms, sim, "Hard", True)


async def test_TC_016_soft_reset_with_transaction(csms, sim):
    await _reset(csms, sim, "Soft", True)


async def test_reset_with_transaction_waits_a_bounded_time_for_the_stop(csms, sim):
    """A central system that never answers the StopTransaction does not keep the station from
    rebooting: it exits after a bounded wait, and the stop is not lost (journal, outbox or
    rejected for good after its tries, as any transaction message)."""
    csms.respond["StopTransaction"] = lambda p: SILENT
    await start_tx(csms, sim)
    assert (await csms.call(call.Reset(type="Soft"))).status == "Accepted"
    await _exit_requested(sim, timeout=30)
    assert csms.calls("StopTransaction")  # it was sent before the exit
    session = sim.store.sessions()[-1]
    assert session.state == "stopped" and session.stop_reason == "SoftReset"


# ----------------------------------------------------------------- unlock
async def test_TC_017_2_unlock_connector_no_session_fixed_cable(csms, sim):
    result = await csms.call(call.UnlockConnector(connector_id=1))
    assert result.status == "NotSupported"


async def test_TC_018_2_unlock_connector_with_session_no_lock(csms, sim):
    """A fixed cable has no lock: NotSupported in a session as when idle, and the session goes on."""
    await start_tx(csms, sim)
    result = await csms.call(call.UnlockConnector(connector_id=1))
    assert result.status == "NotSupported"
    await asyncio.sleep(0.5)
    assert sim.charger.session is not None
    assert not csms.calls("StopTransaction")


async def test_TC_031_unlock_unknown_connector(csms, sim):
    result = await csms.call(call.UnlockConnector(connector_id=2))
    assert result.status == "NotSupported"


# ----------------------------------------------------------------- configuration
async def test_TC_019_1_retrieve_all_configuration_keys(csms, sim):
    result = await csms.call(call.GetConfiguration())
    keys = {k["key"]: k for k in result.configuration_key}
    for name in ("HeartbeatInterval", "MeterValueSampleInterval", "ClockAlignedDataInterval", "ConnectionTimeOut",
                 "AuthorizeRemoteTxRequests", "LocalAuthorizeOffline", "LocalPreAuthorize", "NumberOfConnectors",
                 "StopTransactionOnEVSideDisconnect", "StopTransactionOnInvalidId", "SupportedFeatureProfiles",
                 "TransactionMessageAttempts", "TransactionMessageRetryInterval", "GetConfigurationMaxKeys",
                 "MeterValuesSampledData", "MeterValuesAlignedData", "StopTxnSampledData", "StopTxnAlignedData",
                 "ResetRetries", "UnlockConnectorOnEVSideDisconnect", "ConnectorPhaseRotation",
                 "LocalAuthListEnabled", "LocalAuthListMaxLength", "SendLocalListMaxLength",
                 "ChargeProfileMaxStackLevel", "ChargingScheduleAllowedChargingRateUnit",
                 "ChargingScheduleMaxPeriods", "MaxChargingProfilesInstalled"):
        assert name in keys, name
    assert keys["NumberOfConnectors"]["readonly"] and keys["NumberOfConnectors"]["value"] == "1"
    assert not keys["HeartbeatInterval"]["readonly"]
    assert not result.unknown_key


async def test_TC_019_2_retrieve_specific_configuration_key(csms, sim):
    result = await csms.call(call.GetConfiguration(key=["HeartbeatInterval", "NoSuchKey"]))
    assert [k["key"] for k in result.configuration_key] == ["HeartbeatInterval"]
    assert result.unknown_key == ["NoSuchKey"]


async def test_TC_021_change_configuration(csms, sim, sim_factory):
    result = await csms.call(call.ChangeConfiguration(key="MeterValueSampleInterval", value="17"))
    assert result.status == "Accepted"
    got = await csms.call(call.GetConfiguration(key=["MeterValueSampleInterval"]))
    assert got.configuration_key[0]["value"] == "17"
    # persisted: a fresh backend on the same store reads it back
    from station.backends.ocpp16.confkeys import ConfigurationKeys
    assert ConfigurationKeys(sim.store, lambda: frozenset()).get("MeterValueSampleInterval") == "17"


async def test_TC_040_1_configuration_key_not_supported(csms, sim):
    result = await csms.call(call.ChangeConfiguration(key="BlinkRepeat", value="3"))
    assert result.status == "NotSupported"


async def test_TC_040_2_configuration_invalid_values_rejected(csms, sim):
    for key, value in (("MeterValueSampleInterval", "-1"), ("HeartbeatInterval", "soon"),
                       ("LocalPreAuthorize", "maybe"), ("NumberOfConnectors", "2"),
                       ("MeterValuesSampledData", "Energy.Active.Import.Register,SoC"),
                       ("ConnectorPhaseRotation", "1.XYZ")):
        result = await csms.call(call.ChangeConfiguration(key=key, value=value))
        assert result.status == "Rejected", key


# ----------------------------------------------------------------- availability, power loss, faults
async def test_TC_034_power_failure_with_unavailable_status(csms, sim_factory, tmp_path):
    s = await sim_factory(csms.url)
    await s.online()
    assert (await csms.call(call.ChangeAvailability(connector_id=0, type="Inoperative"))).status == "Accepted"
    await wait_status(csms, "Unavailable")
    await s.station.stop(graceful=False)
    n = len(csms.received)
    s2 = await sim_factory(csms.url)
    await s2.online()
    await wait_status(csms, "Unavailable", after=n)
    await wait_status(csms, "Unavailable", connector=0, after=n)


async def test_TC_032_1_power_failure_stops_transaction(csms, sim_factory):
    s = await sim_factory(csms.url)
    await s.online()
    start = await start_tx(csms, s)
    s.world.consume(500)
    await asyncio.sleep(0.4)
    await s.station.stop(graceful=False)  # power cut: the session stays open in the journal
    n = len(csms.received)
    s2 = await sim_factory(csms.url)
    await s2.online()
    stop = await csms.wait_for("StopTransaction", after=n)
    assert stop["reason"] == "PowerLoss" and stop["transactionId"] == 101
    assert stop["meterStop"] >= start["meterStart"]
    assert [r.action for r in csms.received[n:]][0] == "BootNotification"


async def test_change_availability_scheduled_during_transaction(csms, sim):
    """Scheduled: after the session the connector goes Finishing -> Unavailable, with no Available in
    between (a status that held for no time is not reported); connector 0 stays Available."""
    await start_tx(csms, sim)
    result = await csms.call(call.ChangeAvailability(connector_id=1, type="Inoperative"))
    assert result.status == "Scheduled"
    n = len(csms.received)
    await sim.world.tap(UID, hold_s=0.15)
    await csms.wait_for("StopTransaction")
    sim.world.plug(False)
    await wait_status(csms, "Unavailable", after=n)
    await asyncio.sleep(0.3)
    assert statuses(csms, after=n) == ["Finishing", "Unavailable"]
    assert "Unavailable" not in statuses(csms, connector=0)


async def test_change_availability_of_the_charge_point_reports_connector_zero(csms, sim):
    """ChangeAvailability of connector 0 is the charge point as a whole: both report Unavailable,
    and both Available again with Operative."""
    n = len(csms.received)
    assert (await csms.call(call.ChangeAvailability(connector_id=0, type="Inoperative"))).status == "Accepted"
    await wait_status(csms, "Unavailable", after=n)
    await wait_status(csms, "Unavailable", connector=0, after=n)
    n = len(csms.received)
    assert (await csms.call(call.ChangeAvailability(connector_id=0, type="Operative"))).status == "Accepted"
    await wait_status(csms, "Available", after=n)
    await wait_status(csms, "Available", connector=0, after=n)


async def test_TC_041_fault_behaviour(csms, sim):
    n = len(csms.received)
    sim.world.meter.set_dead(True)
    faulted = await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1 and p["status"] == "Faulted",
                                  after=n, timeout=15)
    assert faulted["errorCode"] == "PowerMeterFailure"
    await wait_status(csms, "Faulted", connector=0, after=n)
    sim.world.meter.set_dead(False)
    await wait_status(csms, "Available", after=n + 1, timeout=15)


# ----------------------------------------------------------------- offline behaviour
async def test_TC_036_connection_loss_during_transaction(csms, sim_factory):
    s = await sim_factory(csms.url, {"MeterValueSampleInterval": 10, "TransactionMessageRetryInterval": 1})
    await s.online()
    start = await start_tx(csms, s)
    await csms.wait_for("MeterValues")
    await csms.down()
    s.world.consume(100)
    await asyncio.sleep(1.0)  # samples are taken (and queued) while offline
    assert s.store.pending_messages() >= 2
    n = len(csms.received)
    await csms.up()
    await s.online(timeout=15)
    await s.idle()
    sent = [r.payload for r in csms.received[n:] if r.action == "MeterValues"]
    assert len(sent) >= 2
    stamps = [p["meterValue"][0]["timestamp"] for p in sent]
    assert stamps == sorted(stamps)  # queued meter values arrive in order
    assert all(p["transactionId"] == 101 for p in sent)
    energy = [int(sv["value"]) for p in sent for sv in p["meterValue"][0]["sampledValue"]
              if sv["measurand"] == "Energy.Active.Import.Register"]
    assert energy == sorted(energy) and energy[-1] >= start["meterStart"] + 100


async def test_TC_037_1_offline_start_transaction_valid_id(csms, sim_factory):
    s = await sim_factory(csms.url, {"LocalAuthorizeOffline": True})
    await s.online()
    await csms.call(call.SendLocalList(list_version=1, update_type="Full", local_authorization_list=[
        {"id_tag": UID, "id_tag_info": {"status": "Accepted"}}]))
    await csms.down()
    await asyncio.sleep(0.2)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    await s.state("Charging")
    n = len(csms.received)
    await csms.up()
    start = await csms.wait_for("StartTransaction", after=n, timeout=15)
    assert start["idTag"] == UID


async def test_TC_037_2_offline_start_unknown_id_allowed(csms, sim_factory):
    s = await sim_factory(csms.url, {"AllowOfflineTxForUnknownId": True})
    await s.online()
    await csms.down()
    await asyncio.sleep(0.2)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    await s.state("Charging")
    n = len(csms.received)
    await csms.up()
    await csms.wait_for("StartTransaction", after=n, timeout=15)


async def test_TC_037_3_offline_start_invalid_id_is_deauthorized(csms, sim_factory):
    s = await sim_factory(csms.url, {"AllowOfflineTxForUnknownId": True, "StopTransactionOnInvalidId": True})
    await s.online()
    csms.tags[UID] = {"status": "Invalid"}
    await csms.down()
    await asyncio.sleep(0.2)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    await s.state("Charging")
    n = len(csms.received)
    await csms.up()
    await csms.wait_for("StartTransaction", after=n, timeout=15)
    stop = await csms.wait_for("StopTransaction", after=n)
    assert stop["reason"] == "DeAuthorized"


async def test_offline_invalid_id_without_stop_suspends(csms, sim_factory):
    s = await sim_factory(csms.url, {"AllowOfflineTxForUnknownId": True, "StopTransactionOnInvalidId": False})
    await s.online()
    csms.tags[UID] = {"status": "Invalid"}
    await csms.down()
    await asyncio.sleep(0.2)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    await s.state("Charging")
    await csms.up()
    await csms.wait_for("StartTransaction", timeout=15)
    await s.state("SuspendedEVSE")
    assert not csms.calls("StopTransaction")


async def test_offline_unknown_id_refused_by_default(csms, sim):
    await csms.down()
    await asyncio.sleep(0.2)
    sim.world.plug()
    await sim.world.tap(UID, hold_s=0.15)
    await asyncio.sleep(0.3)
    assert sim.charger.state.value == "Preparing"


async def test_TC_038_offline_stop_transaction(csms, sim):
    await start_tx(csms, sim)
    await csms.down()
    await sim.world.tap(UID, hold_s=0.15)
    await sim.state("Finishing")
    n = len(csms.received)
    await csms.up()
    stop = await csms.wait_for("StopTransaction", after=n, timeout=15)
    assert stop["transactionId"] == 101


async def test_TC_039_offline_transaction(csms, sim_factory):
    s = await sim_factory(csms.url, {"LocalAuthorizeOffline": True, "AllowOfflineTxForUnknownId": True})
    await s.online()
    await csms.down()
    await asyncio.sleep(0.2)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    await s.state("Charging")
    s.world.consume(321)
    await asyncio.sleep(0.4)
    await s.world.tap(UID, hold_s=0.15)
    await s.state("Finishing")
    n = len(csms.received)
    await csms.up()
    stop = await csms.wait_for("StopTransaction", after=n, timeout=15)
    start = csms.calls("StartTransaction")[-1]
    actions = [r.action for r in csms.received[n:]]
    assert actions.index("StartTransaction") < actions.index("StopTransaction")
    assert stop["transactionId"] == 101 and stop["meterStop"] - start["meterStart"] >= 321
    assert start["timestamp"] < stop["timestamp"]


# ----------------------------------------------------------------- misbehaving central systems
async def test_start_transaction_answer_without_transaction_id_is_held_and_sent_again(csms, sim_factory):
    """Answers without transactionId: TransactionMessageAttempts tries, then the START is held
    undelivered (the charge goes on; the tries may have opened transactions, and the journal says
    how many); the operator's resend gets all its tries again."""
    s = await sim_factory(csms.url, {"TransactionMessageAttempts": 2, "TransactionMessageRetryInterval": 1})
    await s.online()
    bad = {"n": 0}

    def no_tx_id(payload):
        bad["n"] += 1
        return {"idTagInfo": {"status": "Accepted"}} if bad["n"] <= 3 else None
    csms.respond["StartTransaction"] = no_tx_id
    await start_tx(csms, s)
    await s.idle(timeout=20)
    assert bad["n"] == 2  # bounded: two tries, not one more
    session = s.store.sessions()[-1]
    assert "not processed after 2 tries" in session.extra["held"]["start"]
    assert session.extra["maybe_open_at_backend"]["count"] == 2 and session.backend_session_id is None
    await s.state("Charging")  # charging goes on
    assert s.store.resend(session.id) == 1
    s.station.deliverer.wake()
    await s.idle(timeout=20)
    assert bad["n"] == 4  # the resend's first try answered without transactionId again, its second well
    session = s.store.sessions()[-1]
    assert session.backend_session_id == "101" and "held" not in session.extra
    assert session.extra["maybe_open_at_backend"]["count"] == 3  # three answers without an id: unknown, maybe open
    await s.world.tap(UID, hold_s=0.15)
    stop = await csms.wait_for("StopTransaction")
    assert stop["transactionId"] == 101


async def test_stop_transaction_never_answered_is_held_undelivered_and_sent_again(csms, sim_factory):
    s = await sim_factory(csms.url, {"TransactionMessageAttempts": 2, "TransactionMessageRetryInterval": 1})
    await s.online()
    s.backend.response_timeout = 0.5
    csms.respond["StopTransaction"] = lambda p: SILENT
    await start_tx(csms, s)
    await s.world.tap(UID, hold_s=0.15)
    await s.idle(timeout=20)
    assert len(csms.calls("StopTransaction")) == 2
    session = s.store.sessions()[-1]
    assert not session.extra["delivered"] and "no answer" in session.extra["held"]["stop"]
    [(held, reason)] = s.store.held(session.id)
    assert held.kind.value == "stop" and "not processed after 2 tries" in reason
    # the link and the next session are fine: the held STOP blocks nothing
    s.world.plug(False)
    await s.state("Available")
    await start_tx(csms, s)
    await s.idle(timeout=20)
    del csms.respond["StopTransaction"]
    assert s.store.resend(session.id) == 1
    s.station.deliverer.wake()
    await s.idle(timeout=20)
    assert s.store.session(session.id).extra["delivered"] and s.store.held() == []
    assert [p["transactionId"] for p in csms.calls("StopTransaction")] == [101, 101, 101]


async def test_start_transaction_callerror_is_retried(csms, sim):
    answers = iter([CallError("InternalError")])
    csms.respond["StartTransaction"] = lambda p: next(answers, None)
    await start_tx(csms, sim)
    await sim.idle()
    assert len(csms.calls("StartTransaction")) == 2
    assert sim.store.sessions()[-1].backend_session_id == "101"


async def test_central_system_reusing_message_id_one(csms, sim):
    """Commands all carrying unique id "1" are all answered and acted upon."""
    peer = await csms.wait_peer()
    peer._unique_id_generator = lambda: "1"
    for _ in range(3):
        result = await csms.call(call.GetLocalListVersion())
        assert result.list_version == 0
    await start_tx(csms, sim)
    assert (await csms.call(call.RemoteStopTransaction(transaction_id=101))).status == "Accepted"
    await csms.wait_for("StopTransaction")


# ----------------------------------------------------------------- misc core
async def test_TC_061_clear_authorization_cache(csms, sim_factory):
    s = await sim_factory(csms.url, {"LocalPreAuthorize": True})
    await s.online()
    await start_tx(csms, s)
    await s.world.tap(UID, hold_s=0.15)
    await csms.wait_for("StopTransaction")
    s.world.plug(False)
    await s.state("Available")
    assert (await csms.call(call.ClearCache())).status == "Accepted"
    n = len(csms.received)
    await start_tx(csms, s)
    assert [r for r in csms.received[n:] if r.action == "Authorize"]  # asked again


async def test_TC_062_data_transfer_to_charge_point(csms, sim):
    result = await csms.call(call.DataTransfer(vendor_id="com.example", message_id="x", data="y"))
    assert result.status == "UnknownVendorId"


async def test_contactor_fault_reports_other_error_with_vendor_code(csms, sim):
    n = len(csms.received)
    sim.world.break_contactor()  # the coil no longer closes: the auxiliary contact disagrees
    sim.world.plug()
    await sim.world.tap(UID, hold_s=0.15)
    fault = await csms.wait_for("StatusNotification", lambda p: p["errorCode"] == "OtherError", after=n, timeout=15)
    assert fault["vendorErrorCode"] == "ContactorOpen" and fault["info"] == "contactor did not close"
    stop = await csms.wait_for("StopTransaction", after=n)
    assert stop["reason"] == "Other"
