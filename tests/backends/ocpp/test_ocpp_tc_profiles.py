"""OCA compliance test cases for the optional profiles: local list, reservation, remote trigger,
smart charging, and the meter values (Core), on a whole simulated station."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from ocpp.v16 import call
from ocpp_flows import OTHER, UID, start_tx, statuses, wait_status

ENERGY = "Energy.Active.Import.Register"


def in_seconds(s: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


# ----------------------------------------------------------------- local authorization list
async def test_TC_042_get_local_list_version(csms, sim):
    assert (await csms.call(call.GetLocalListVersion())).list_version == 0
    await csms.call(call.SendLocalList(list_version=7, update_type="Full", local_authorization_list=[
        {"id_tag": UID, "id_tag_info": {"status": "Accepted"}}]))
    assert (await csms.call(call.GetLocalListVersion())).list_version == 7


async def test_TC_043_send_local_list_full_and_differential(csms, sim_factory):
    s = await sim_factory(csms.url, {"LocalPreAuthorize": True})
    await s.online()
    full = await csms.call(call.SendLocalList(list_version=1, update_type="Full", local_authorization_list=[
        {"id_tag": UID, "id_tag_info": {"status": "Accepted"}},
        {"id_tag": OTHER, "id_tag_info": {"status": "Blocked"}}]))
    assert full.status == "Accepted"
    diff = await csms.call(call.SendLocalList(list_version=2, update_type="Differential", local_authorization_list=[
        {"id_tag": OTHER},  # removed
        {"id_tag": "11223344", "id_tag_info": {"status": "Accepted"}}]))
    assert diff.status == "Accepted"
    assert set(s.backend.versions["1.6"].local_list.entries) == {UID, "11223344"}
    # persisted in the store
    assert s.store.get_json("ocpp.local_list")["version"] == 2
    # the list is used: no Authorize.req for a listed tag
    n = len(csms.received)
    await start_tx(csms, s)
    assert not [r for r in csms.received[n:] if r.action == "Authorize"]


async def test_TC_043_send_local_list_version_mismatch_and_failed(csms, sim):
    await csms.call(call.SendLocalList(list_version=5, update_type="Full", local_authorization_list=[]))
    old = await csms.call(call.SendLocalList(list_version=4, update_type="Differential", local_authorization_list=[
        {"id_tag": UID, "id_tag_info": {"status": "Accepted"}}]))
    assert old.status == "VersionMismatch"
    too_many = [{"id_tag": f"T{i:05d}", "id_tag_info": {"status": "Accepted"}} for i in range(251)]
    failed = await csms.call(call.SendLocalList(list_version=6, update_type="Full", local_authorization_list=too_many))
    assert failed.status == "Failed"
    assert (await csms.call(call.GetLocalListVersion())).list_version == 5


async def test_local_list_blocked_tag_refused_without_asking(csms, sim_factory):
    s = await sim_factory(csms.url, {"LocalPreAuthorize": True})
    await s.online()
    await csms.call(call.SendLocalList(list_version=1, update_type="Full", local_authorization_list=[
        {"id_tag": UID, "id_tag_info": {"status": "Blocked"}}]))
    await csms.down()  # offline: the list decides
    await asyncio.sleep(0.2)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    await asyncio.sleep(0.3)
    assert s.charger.state.value == "Preparing" and not s.world.contactor_closed


# ----------------------------------------------------------------- reservation
async def test_TC_046_reservation_local_start(csms, sim):
    n = len(csms.received)
    result = await csms.call(call.ReserveNow(connector_id=1, expiry_date=in_seconds(60), id_tag=UID, reservation_id=11))
    assert result.status == "Accepted"
    await wait_status(csms, "Reserved", after=n)
    await sim.world.tap(OTHER, hold_s=0.15)  # someone else: refused
    await asyncio.sleep(0.2)
    assert sim.charger.state.value == "Reserved"
    start = await start_tx(csms, sim, UID)
    assert start["reservationId"] == 11


async def test_TC_046_1_reserved_connector_refuses_another_tag_after_plug_in(csms, sim):
    """OCTT TC_046_1 with the car plugged in first (OCPP 1.6 §5.13): the connector stays Reserved,
    another card gets no Authorize.req and starts nothing; the reserved card starts with the
    reservationId."""
    n = len(csms.received)
    result = await csms.call(call.ReserveNow(connector_id=1, expiry_date=in_seconds(60), id_tag=UID, reservation_id=21))
    assert result.status == "Accepted"
    await wait_status(csms, "Reserved", after=n)
    sim.world.plug()
    await asyncio.sleep(0.3)
    assert sim.charger.state.value == "Reserved"
    await sim.world.tap(OTHER, hold_s=0.15)
    await asyncio.sleep(0.3)
    assert sim.charger.state.value == "Reserved" and not sim.world.contactor_closed
    assert not [r for r in csms.received[n:] if r.action in ("Authorize", "StartTransaction")]
    assert statuses(csms, after=n) == ["Reserved"]  # the reservation never disappeared from view
    await sim.world.tap(UID, hold_s=0.15)
    start = await csms.wait_for("StartTransaction", after=n)
    assert start["idTag"] == UID and start["reservationId"] == 21
    await sim.state("Charging")


async def test_TC_046_1_a_cached_group_does_not_widen_the_reservation(csms, sim):
    """The reservation's group is the parentIdTag of ReserveNow: a group the cache knows for the
    reserved card does not let another card of it in, and no Authorize.req is sent for that card."""
    csms.tags[UID] = {"status": "Accepted", "parentIdTag": "FLEET"}
    csms.tags[OTHER] = {"status": "Accepted", "parentIdTag": "FLEET"}
    await start_tx(csms, sim, UID)  # UID and its group are in the cache now
    await sim.world.tap(UID, hold_s=0.15)
    await csms.wait_for("StopTransaction")
    sim.world.plug(False)
    await sim.state("Available")
    n = len(csms.received)
    await csms.call(call.ReserveNow(connector_id=1, expiry_date=in_seconds(60), id_tag=UID, reservation_id=22))
    await wait_status(csms, "Reserved", after=n)
    sim.world.plug()
    await sim.world.tap(OTHER, hold_s=0.15)
    await asyncio.sleep(0.4)
    assert sim.charger.state.value == "Reserved"
    assert not [r for r in csms.received[n:] if r.action in ("Authorize", "StartTransaction")]


async def test_TC_047_reservation_expires(csms, sim):
    # in_seconds drops the fraction: in_seconds(1) was 0-1 s ahead, and a busy machine passed it before the
    # ReserveNow arrived (CI: no Reserved at all). 2-3 s ahead leaves room for both statuses.
    n = len(csms.received)
    await csms.call(call.ReserveNow(connector_id=1, expiry_date=in_seconds(3), id_tag=UID, reservation_id=12))
    await wait_status(csms, "Reserved", after=n)
    await wait_status(csms, "Available", after=n + 1)


async def test_TC_048_1_reservation_faulted(csms, sim):
    sim.world.meter.set_dead(True)
    await sim.state("Faulted", timeout=15)
    result = await csms.call(call.ReserveNow(connector_id=1, expiry_date=in_seconds(60), id_tag=UID, reservation_id=13))
    assert result.status == "Faulted"


async def test_TC_048_2_reservation_occupied(csms, sim):
    await start_tx(csms, sim)
    result = await csms.call(call.ReserveNow(connector_id=1, expiry_date=in_seconds(60), id_tag=OTHER, reservation_id=14))
    assert result.status == "Occupied"


async def test_TC_048_3_reservation_unavailable(csms, sim):
    await csms.call(call.ChangeAvailability(connector_id=0, type="Inoperative"))
    await sim.state("Unavailable")
    result = await csms.call(call.ReserveNow(connector_id=1, expiry_date=in_seconds(60), id_tag=UID, reservation_id=15))
    assert result.status == "Unavailable"


async def test_TC_049_reservation_of_connector_zero_rejected(csms, sim):
    result = await csms.call(call.ReserveNow(connector_id=0, expiry_date=in_seconds(60), id_tag=UID, reservation_id=16))
    assert result.status == "Rejected"


async def test_TC_051_cancel_reservation(csms, sim):
    n = len(csms.received)
    await csms.call(call.ReserveNow(connector_id=1, expiry_date=in_seconds(60), id_tag=UID, reservation_id=17))
    await wait_status(csms, "Reserved", after=n)
    assert (await csms.call(call.CancelReservation(reservation_id=17))).status == "Accepted"
    await wait_status(csms, "Available", after=n + 1)


async def test_TC_052_cancel_reservation_rejected(csms, sim):
    assert (await csms.call(call.CancelReservation(reservation_id=99))).status == "Rejected"


async def test_TC_053_reserved_connector_used_with_parent_id(csms, sim):
    csms.tags[OTHER] = {"status": "Accepted", "parentIdTag": "FLEET"}
    n = len(csms.received)
    result = await csms.call(call.ReserveNow(connector_id=1, expiry_date=in_seconds(60), id_tag=UID,
                                             parent_id_tag="FLEET", reservation_id=18))
    assert result.status == "Accepted"
    await wait_status(csms, "Reserved", after=n)
    start = await start_tx(csms, sim, OTHER)
    assert start["idTag"] == OTHER and start["reservationId"] == 18


# ----------------------------------------------------------------- remote trigger
async def test_TC_054_trigger_message(csms, sim):
    for message, action in (("BootNotification", "BootNotification"), ("Heartbeat", "Heartbeat"),
                            ("StatusNotification", "StatusNotification"), ("MeterValues", "MeterValues"),
                            ("DiagnosticsStatusNotification", "DiagnosticsStatusNotification"),
                            ("FirmwareStatusNotification", "FirmwareStatusNotification")):
        n = len(csms.received)
        result = await csms.call(call.TriggerMessage(requested_message=message, connector_id=1
                                                     if message in ("StatusNotification", "MeterValues") else None))
        assert result.status == "Accepted", message
        payload = await csms.wait_for(action, after=n)
        if action == "MeterValues":
            values = payload["meterValue"][0]["sampledValue"]
            assert values[0]["context"] == "Trigger" and values[0]["measurand"] == ENERGY
            assert values[0]["value"].isdigit()
        if action in ("DiagnosticsStatusNotification", "FirmwareStatusNotification"):
            assert payload["status"] == "Idle"


async def test_TC_055_trigger_message_rejected(csms, sim):
    result = await csms.call(call.TriggerMessage(requested_message="StatusNotification", connector_id=2))
    assert result.status == "Rejected"


# ----------------------------------------------------------------- smart charging
def profile(pid: int, purpose: str, limit: float, stack: int = 0, unit: str = "A", tx: int | None = None,
            periods: list | None = None, kind: str = "Absolute", start: str | None = None, **extra) -> dict:
    schedule = {"charging_rate_unit": unit,
                "charging_schedule_period": periods or [{"start_period": 0, "limit": limit}]}
    if kind == "Absolute":
        schedule["start_schedule"] = start or in_seconds(-1)
    p = {"charging_profile_id": pid, "stack_level": stack, "charging_profile_purpose": purpose,
         "charging_profile_kind": kind, "charging_schedule": schedule, **extra}
    if tx is not None:
        p["transaction_id"] = tx
    return p


async def test_TC_056_tx_default_profile(csms, sim):
    result = await csms.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=profile(1, "TxDefaultProfile", 10)))
    assert result.status == "Accepted"
    await start_tx(csms, sim)
    for _ in range(100):
        if sim.charger.limit_a is not None:
            break
        await asyncio.sleep(0.02)
    assert sim.charger.limit_a == 10 and sim.charger.limit_w is None  # a profile in A reaches the core in A


async def test_TC_057_tx_profile(csms, sim):
    no_tx = await csms.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=profile(2, "TxProfile", 8, tx=101)))
    assert no_tx.status == "Rejected"  # no transaction running
    await start_tx(csms, sim)
    await sim.idle()
    wrong = await csms.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=profile(2, "TxProfile", 8, tx=5)))
    assert wrong.status == "Rejected"
    ok = await csms.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=profile(2, "TxProfile", 8, tx=101)))
    assert ok.status == "Accepted"
    schedule = await csms.call(call.GetCompositeSchedule(connector_id=1, duration=60, charging_rate_unit="A"))
    assert schedule.charging_schedule["charging_schedule_period"][0]["limit"] == 8
    # The TxProfile ends with its transaction.
    await sim.world.tap(UID, hold_s=0.15)
    await csms.wait_for("StopTransaction")
    await asyncio.sleep(0.8)
    installed = sim.backend.versions["1.6"].profiles.installed
    assert not [p for p in installed if p["profile"]["chargingProfilePurpose"] == "TxProfile"]


async def test_limit_zero_pauses_with_suspended_evse(csms, sim):
    await start_tx(csms, sim)
    n = len(csms.received)
    zero = profile(3, "TxDefaultProfile", 0, unit="W")
    assert (await csms.call(call.SetChargingProfile(connector_id=0, cs_charging_profiles=zero))).status == "Accepted"
    await wait_status(csms, "SuspendedEVSE", after=n)
    assert not sim.world.contactor_closed
    assert (await csms.call(call.ClearChargingProfile(id=3))).status == "Accepted"
    await wait_status(csms, "Charging", after=n + 1)


async def test_TC_059_remote_start_with_charging_profile(csms, sim):
    tx_profile = profile(4, "TxProfile", 16)
    result = await csms.call(call.RemoteStartTransaction(id_tag=UID, connector_id=1, charging_profile=tx_profile))
    assert result.status == "Accepted"
    sim.world.plug()
    await csms.wait_for("StartTransaction")
    await sim.idle()
    for _ in range(100):
        if sim.charger.limit_a == 16:
            break
        await asyncio.sleep(0.02)
    assert sim.charger.limit_a == 16


async def test_TC_060_remote_start_with_wrong_profile_purpose_rejected(csms, sim):
    result = await csms.call(call.RemoteStartTransaction(id_tag=UID, charging_profile=profile(5, "TxDefaultProfile", 6)))
    assert result.status == "Rejected"


async def test_TC_066_get_composite_schedule(csms, sim):
    cap = profile(6, "ChargePointMaxProfile", 20)
    periods = [{"start_period": 0, "limit": 16}, {"start_period": 120, "limit": 32}, {"start_period": 240, "limit": 8}]
    default = profile(7, "TxDefaultProfile", 0, periods=periods)
    assert (await csms.call(call.SetChargingProfile(connector_id=0, cs_charging_profiles=cap))).status == "Accepted"
    assert (await csms.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=default))).status == "Accepted"
    result = await csms.call(call.GetCompositeSchedule(connector_id=1, duration=400, charging_rate_unit="A"))
    assert result.status == "Accepted" and result.connector_id == 1
    got = [(p["start_period"], p["limit"]) for p in result.charging_schedule["charging_schedule_period"]]
    # min(cap 20, default): 16, then 20 (capped 32), then 8; start periods relative to scheduleStart
    assert [limit for _, limit in got] == [16, 20, 8]
    assert 115 <= got[1][0] <= 120 and 235 <= got[2][0] <= 240
    watts = await csms.call(call.GetCompositeSchedule(connector_id=1, duration=60, charging_rate_unit="W"))
    assert watts.charging_schedule["charging_schedule_period"][0]["limit"] == 16 * 230 * 3


async def test_TC_067_clear_charging_profile(csms, sim):
    for pid, stack in ((8, 0), (9, 1)):
        await csms.call(call.SetChargingProfile(connector_id=1,
                                                cs_charging_profiles=profile(pid, "TxDefaultProfile", 6 + pid, stack=stack)))
    cleared = await csms.call(call.ClearChargingProfile(charging_profile_purpose="TxDefaultProfile", stack_level=1))
    assert cleared.status == "Accepted"
    assert [p["profile"]["chargingProfileId"] for p in sim.backend.versions["1.6"].profiles.installed] == [8]
    assert (await csms.call(call.ClearChargingProfile(id=42))).status == "Unknown"
    assert (await csms.call(call.ClearChargingProfile())).status == "Accepted"
    assert sim.backend.versions["1.6"].profiles.installed == []
    result = await csms.call(call.GetCompositeSchedule(connector_id=1, duration=60))
    assert result.status == "Accepted" and result.charging_schedule is None


async def test_TC_072_stacked_profiles(csms, sim):
    low = profile(10, "TxDefaultProfile", 32, stack=1)
    high = profile(11, "TxDefaultProfile", 10, stack=2, kind="Absolute", start=in_seconds(-1), valid_to=in_seconds(3600))
    await csms.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=low))
    await csms.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=high))
    result = await csms.call(call.GetCompositeSchedule(connector_id=1, duration=7200, charging_rate_unit="A"))
    limits = [p["limit"] for p in result.charging_schedule["charging_schedule_period"]]
    assert limits == [10, 32]  # the higher stack level wins until it expires
    # replacing by the same id changes it in place
    await csms.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=profile(11, "TxDefaultProfile", 12, stack=2)))
    result = await csms.call(call.GetCompositeSchedule(connector_id=1, duration=60, charging_rate_unit="A"))
    assert result.charging_schedule["charging_schedule_period"][0]["limit"] == 12


async def test_smart_charging_limits_validated(csms, sim):
    too_high = profile(12, "TxDefaultProfile", 6, stack=11)
    assert (await csms.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=too_high))).status == "Rejected"
    cap_on_1 = profile(13, "ChargePointMaxProfile", 6)
    assert (await csms.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=cap_on_1))).status == "Rejected"
    many = profile(14, "TxDefaultProfile", 6, periods=[{"start_period": i * 60, "limit": 6} for i in range(49)])
    assert (await csms.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=many))).status == "Rejected"
    recurring = profile(15, "TxDefaultProfile", 6, kind="Recurring")
    assert (await csms.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=recurring))).status == "Rejected"


async def test_profiles_persist_across_restart(csms, sim_factory):
    s = await sim_factory(csms.url)
    await s.online()
    await csms.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=profile(16, "TxDefaultProfile", 9)))
    await s.station.stop(graceful=False)
    s2 = await sim_factory(csms.url)
    await s2.online()
    result = await csms.call(call.GetCompositeSchedule(connector_id=1, duration=60, charging_rate_unit="A"))
    assert result.charging_schedule["charging_schedule_period"][0]["limit"] == 9


# ----------------------------------------------------------------- meter values
async def test_TC_070_sampled_meter_values(csms, sim_factory):
    s = await sim_factory(csms.url, {"MeterValueSampleInterval": 10,  # 0.2 s scaled
                                     "MeterValuesSampledData": f"{ENERGY},Power.Active.Import,Voltage,Current.Import"})
    await s.online()
    await start_tx(csms, s)
    first = await csms.wait_for("MeterValues")
    assert first["transactionId"] == 101 and first["connectorId"] == 1
    values = first["meterValue"][0]["sampledValue"]
    measurands = {v["measurand"] for v in values}
    assert measurands == {ENERGY, "Power.Active.Import", "Voltage", "Current.Import"}
    assert all(v["context"] == "Sample.Periodic" for v in values)
    energy = next(v for v in values if v["measurand"] == ENERGY)
    assert energy["unit"] == "Wh" and energy["value"].isdigit()
    phases = sorted(v["phase"] for v in values if v["measurand"] == "Voltage")
    assert phases == ["L1-N", "L2-N", "L3-N"]
    await csms.wait_for("MeterValues", after=len(csms.received))  # and again


async def test_TC_071_clock_aligned_meter_values(csms, sim_factory):
    s = await sim_factory(csms.url, {"ClockAlignedDataInterval": 10, "MeterValueSampleInterval": 0})  # 0.2 s grid
    await s.online()
    idle = await csms.wait_for("MeterValues")
    assert "transactionId" not in idle
    await start_tx(csms, s)
    n = len(csms.received)
    aligned = await csms.wait_for("MeterValues", lambda p: "transactionId" in p, after=n)
    value = aligned["meterValue"][0]
    assert value["sampledValue"][0]["context"] == "Sample.Clock"
    stamp = datetime.fromisoformat(value["timestamp"].replace("Z", "+00:00"))
    midnight = stamp.replace(hour=0, minute=0, second=0, microsecond=0)
    ms = round((stamp - midnight).total_seconds() * 1000)
    assert ms % 200 == 0  # on the grid from midnight


def _contexts(stop: dict) -> list[str]:
    return [d["sampledValue"][0]["context"] for d in stop["transactionData"]]


async def test_stop_txn_sampled_data_every_sample_interval(csms, sim_factory):
    """StopTxnSampledData: transactionData holds Transaction.Begin, a sample every
    MeterValueSampleInterval from the start, and Transaction.End, in time order, with the measurands
    the key lists."""
    s = await sim_factory(csms.url, {"MeterValueSampleInterval": 10,  # 0.2 s scaled
                                     "StopTxnSampledData": f"{ENERGY},Power.Active.Import"})
    await s.online()
    start = await start_tx(csms, s)
    s.world.consume(300)
    n = len(csms.received)
    for _ in range(3):  # three periodic MeterValues went out: at least three samples were taken
        n = len(csms.received)
        await csms.wait_for("MeterValues", after=n)
    await s.world.tap(UID, hold_s=0.15)
    stop = await csms.wait_for("StopTransaction")
    contexts = _contexts(stop)
    assert contexts[0] == "Transaction.Begin" and contexts[-1] == "Transaction.End"
    assert len(contexts) >= 5 and set(contexts[1:-1]) == {"Sample.Periodic"}, contexts
    periodic = stop["transactionData"][1:-1]
    for value in periodic:
        assert {v["measurand"] for v in value["sampledValue"]} == {ENERGY, "Power.Active.Import"}
    stamps = [datetime.fromisoformat(d["timestamp"].replace("Z", "+00:00")) for d in stop["transactionData"]]
    assert stamps == sorted(stamps)
    energy = [int(next(v["value"] for v in d["sampledValue"] if v["measurand"] == ENERGY))
              for d in stop["transactionData"]]
    assert energy[0] == start["meterStart"] and energy[-1] == stop["meterStop"] and energy == sorted(energy)
    assert s.store.samples(s.store.sessions()[-1].id) == []  # delivered: the kept samples are gone


async def test_stop_txn_sampled_data_survives_a_power_cut(csms, sim_factory):
    """The samples are in the journal: after a power cut the PowerLoss StopTransaction still has them."""
    s = await sim_factory(csms.url, {"MeterValueSampleInterval": 10})
    await s.online()
    await start_tx(csms, s)
    for _ in range(2):
        n = len(csms.received)
        await csms.wait_for("MeterValues", after=n)
    await s.station.stop(graceful=False)
    n = len(csms.received)
    s2 = await sim_factory(csms.url)
    await s2.online()
    stop = await csms.wait_for("StopTransaction", after=n)
    assert stop["reason"] == "PowerLoss"
    assert _contexts(stop).count("Sample.Periodic") >= 2


async def test_stop_transaction_carries_transaction_data(csms, sim):
    start = await start_tx(csms, sim)
    sim.world.consume(777)
    await asyncio.sleep(0.4)
    await sim.world.tap(UID, hold_s=0.15)
    stop = await csms.wait_for("StopTransaction")
    data = stop["transactionData"]
    assert [d["sampledValue"][0]["context"] for d in data] == ["Transaction.Begin", "Transaction.End"]
    assert int(data[0]["sampledValue"][0]["value"]) == start["meterStart"]
    assert int(data[1]["sampledValue"][0]["value"]) == stop["meterStop"]
