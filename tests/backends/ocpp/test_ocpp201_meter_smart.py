"""OCPP 2.0.1 meter values (block J) and smart charging (block K) on the whole simulated station, against
the independent strict 2.0.1 central system (ocpp-rpc, strict mode, its bundled schemas)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from ocpp201_support import profile, stamp
from ocpp_flows import UID


async def test_TC_J_01_02_03_07_09_10_CS_sampled_and_clock_aligned_values(strict201, sim201_factory):
    """TC_J_01_CS (J01): clock-aligned values outside a transaction: MeterValues for EVSE 1, context
    Sample.Clock, stamped on the aligned instant; TC_J_02_CS: during one, TransactionEvent Updated with
    MeterValueClock; TC_J_09_CS (E02.FR.10): TxUpdatedMeasurands every TxUpdatedInterval, MeterValuePeriodic;
    TC_J_07_CS (E01.FR.09): Transaction.Begin in Started; TC_J_10_CS / TC_J_03_CS (E06.FR.11): TxEndedMeasurands
    in Ended, Begin, Sample.Periodic every TxEndedInterval, Sample.Clock every AlignedDataCtrlr.TxEndedInterval,
    End; energy in integer Wh, the other values with their unit (Frequency in Hz: 2.0.1 can say it)."""
    cs = strict201
    s = await sim201_factory(cs.url, {
        "SampledDataCtrlr/TxUpdatedInterval": 10, "SampledDataCtrlr/TxEndedInterval": 15,
        "SampledDataCtrlr/TxUpdatedMeasurands": "Energy.Active.Import.Register,Power.Active.Import,Voltage,Frequency",
        "SampledDataCtrlr/TxEndedMeasurands": "Energy.Active.Import.Register,Current.Import",
        "AlignedDataCtrlr/Interval": 30, "AlignedDataCtrlr/TxEndedInterval": 30,
        "AlignedDataCtrlr/TxEndedMeasurands": "Energy.Active.Import.Register",
        "AlignedDataCtrlr/Measurands": "Energy.Active.Import.Register,Voltage"})
    await s.online()
    idle = await cs.call_from_cp("MeterValues")
    assert idle["evseId"] == 1 and {v["context"] for v in idle["meterValue"][0]["sampledValue"]} == {"Sample.Clock"}
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    start = await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Started", after=n)
    assert start["meterValue"][0]["sampledValue"][0]["context"] == "Transaction.Begin"
    periodic = await cs.call_from_cp("TransactionEvent", lambda p: p["triggerReason"] == "MeterValuePeriodic", after=n)
    units = {v["measurand"]: v["unitOfMeasure"]["unit"] for v in periodic["meterValue"][0]["sampledValue"]}
    assert units["Energy.Active.Import.Register"] == "Wh" and units["Voltage"] == "V"
    assert all(isinstance(v["value"], int) for v in periodic["meterValue"][0]["sampledValue"]
               if v["measurand"] == "Energy.Active.Import.Register")
    await cs.call_from_cp("TransactionEvent", lambda p: p["triggerReason"] == "MeterValueClock", after=n)
    await asyncio.sleep(1.0)
    await s.world.tap(UID, hold_s=0.15)
    end = await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Ended", after=n)
    contexts = [mv["sampledValue"][0]["context"] for mv in end["meterValue"]]
    assert contexts[0] == "Transaction.Begin" and contexts[-1] == "Transaction.End"
    assert "Sample.Periodic" in contexts and "Sample.Clock" in contexts
    assert cs.failures() == []


async def test_TC_K_01_to_06_08_10_13_14_16_39_40_41_60_CS_charging_profiles(strict201, sim201_factory):
    """TC_K_01_CS / TC_K_10_CS TxDefaultProfile on EVSE 1 / 0, TC_K_03_CS ChargingStationMaxProfile (K01);
    TC_K_02_CS a TxProfile without a transaction is Rejected (K01.FR.09), TC_K_60_CS with its transactionId
    Accepted, TC_K_16_CS an unknown transactionId Rejected (K01.FR.33), TC_K_14_CS an unknown EVSE (K01.FR.28);
    TC_K_04_CS replace by id (K01.FR.05); TC_K_39_CS / TC_K_40_CS / TC_K_41_CS GetCompositeSchedule: the rating
    without profiles, stacked and combined purposes (K08); GetChargingProfiles with ReportChargingProfiles (K09;
    each filter: test_ocpp201_smart_cases.py); ClearChargingProfile (K10): TC_K_05_CS by id, TC_K_06_CS by
    purpose and stack level, TC_K_08_CS nothing to clear: Unknown; TC_K_13_CS profiles kept over a power cut
    (K01.FR.27); a limit of 0 pauses the charging (SuspendedEVSE), the same arithmetic as 1.6."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    now = datetime.now(UTC).replace(microsecond=0)
    empty = await cs.command("GetCompositeSchedule", {"duration": 600, "evseId": 1, "chargingRateUnit": "W"})
    assert empty["status"] == "Accepted" and empty["schedule"]["chargingSchedulePeriod"][0]["limit"] == 22000
    default = profile(1, "TxDefaultProfile", "Absolute", [(0, 16), (300, 8)], start=stamp(now))
    assert (await cs.command("SetChargingProfile", {"evseId": 1, "chargingProfile": default}))["status"] == "Accepted"
    cap = profile(2, "ChargingStationMaxProfile", "Absolute", [(0, 11000)], unit="W", start=stamp(now))
    assert (await cs.command("SetChargingProfile", {"evseId": 0, "chargingProfile": cap}))["status"] == "Accepted"
    tx_profile = profile(3, "TxProfile", "Relative", [(0, 0)])
    assert (await cs.command("SetChargingProfile", {"evseId": 1, "chargingProfile": tx_profile}))["status"] == "Rejected"
    assert (await cs.command("SetChargingProfile", {"evseId": 2, "chargingProfile": default}))["status"] == "Rejected"
    composite = await cs.command("GetCompositeSchedule", {"duration": 600, "evseId": 1, "chargingRateUnit": "A"})
    limits = [(p["startPeriod"], p["limit"]) for p in composite["schedule"]["chargingSchedulePeriod"]]
    # The schedule starts at the station's now, which may be a second or two after the profile's start (a busy
    # machine): its step to 8 A is that much before 300 s.
    late = int((datetime.fromisoformat(composite["schedule"]["scheduleStart"].replace("Z", "+00:00")) - now)
               .total_seconds())
    assert 0 <= late < 30
    assert limits[0] == (0, 15.9) and (300 - late, 8) in limits  # 11 kW over 3 x 230 V caps the 16 A
    assert (await cs.command("GetChargingProfiles", {"requestId": 5, "chargingProfile":
                                                     {"chargingProfilePurpose": "TxDefaultProfile"}}))["status"] == "Accepted"
    report = await cs.call_from_cp("ReportChargingProfiles", lambda p: p["requestId"] == 5)
    assert [p["id"] for p in report["chargingProfile"]] == [1] and report["evseId"] == 1
    assert (await cs.command("GetChargingProfiles", {"requestId": 6, "chargingProfile": {"stackLevel": 9}}))["status"] \
        == "NoProfiles"
    await s.station.stop(graceful=False)
    s = await sim201_factory(cs.url)
    await s.online()
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    start = await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Started", after=n)
    tx = start["transactionInfo"]["transactionId"]
    await s.state("Charging")
    other = profile(3, "TxProfile", "Relative", [(0, 0)], transactionId="not-this-one")
    assert (await cs.command("SetChargingProfile", {"evseId": 1, "chargingProfile": other}))["status"] == "Rejected"
    pause = profile(3, "TxProfile", "Relative", [(0, 0)], transactionId=tx)
    assert (await cs.command("SetChargingProfile", {"evseId": 1, "chargingProfile": pause}))["status"] == "Accepted"
    await s.state("SuspendedEVSE")
    await cs.call_from_cp("TransactionEvent", lambda p: p["transactionInfo"].get("chargingState") == "SuspendedEVSE",
                          after=n)
    assert (await cs.command("ClearChargingProfile", {"chargingProfileId": 3}))["status"] == "Accepted"
    await s.state("Charging")
    assert (await cs.command("ClearChargingProfile", {"chargingProfileId": 99}))["status"] == "Unknown"
    assert (await cs.command("ClearChargingProfile", {"chargingProfileCriteria": {
        "chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 0}}))["status"] == "Accepted"
    replaced = profile(2, "ChargingStationMaxProfile", "Absolute", [(0, 7000)], unit="W",
                       start=stamp(now - timedelta(hours=1)))
    assert (await cs.command("SetChargingProfile", {"evseId": 0, "chargingProfile": replaced}))["status"] == "Accepted"
    composite = await cs.command("GetCompositeSchedule", {"duration": 60, "evseId": 0, "chargingRateUnit": "W"})
    assert composite["schedule"]["chargingSchedulePeriod"][0]["limit"] == 7000
    assert cs.failures() == []
