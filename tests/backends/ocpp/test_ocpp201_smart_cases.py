"""OCPP 2.0.1 smart charging, more Part 6 cases (K01, K08-K10): the GetChargingProfiles filters one by one,
clearing by criteria, profiles with validity and recurrence, a TxDefaultProfile set or cleared during a
transaction, what may not be set. The whole simulated station against the strict 2.0.1 central system
(ocpp-rpc, strict mode); zero schema failures every time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ocpp201_support import calls, profile, stamp
from ocpp_flows import UID


async def get_profiles(cs, request_id: int, criteria: dict, evse_id: int | None = None) -> list[int]:
    """GetChargingProfiles: the ids reported (ReportChargingProfiles, every part), [] for NoProfiles."""
    params: dict = {"requestId": request_id, "chargingProfile": criteria}
    if evse_id is not None:
        params["evseId"] = evse_id
    n = len(cs.events)
    answer = await cs.command("GetChargingProfiles", params)
    if answer["status"] == "NoProfiles":
        return []
    assert answer["status"] == "Accepted", answer
    report = await cs.call_from_cp("ReportChargingProfiles", lambda p: p["requestId"] == request_id and not p.get("tbc"),
                                   after=n)
    parts = [p for p in calls(cs, "ReportChargingProfiles", n) if p["requestId"] == request_id]
    assert parts[-1] == report
    return sorted(c["id"] for p in parts for c in p["chargingProfile"])


async def test_TC_K_29_to_36_CS_get_charging_profiles(strict201, sim201_factory):
    """K09.FR.01-04: TC_K_29_CS evseId 0 (the station's ChargingStationMaxProfile), TC_K_30_CS evseId 1,
    TC_K_31_CS no evseId (all), TC_K_32_CS by chargingProfileId, TC_K_33_CS evse + stackLevel, TC_K_34_CS evse +
    chargingLimitSource (CSO: all of them; EMS: NoProfiles), TC_K_35_CS evse + purpose, TC_K_36_CS evse +
    purpose + stackLevel."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    now = datetime.now(UTC).replace(microsecond=0)
    for evse, p in ((0, profile(1, "ChargingStationMaxProfile", "Absolute", [(0, 11000)], unit="W", start=stamp(now))),
                    (1, profile(2, "TxDefaultProfile", "Absolute", [(0, 16)], start=stamp(now))),
                    (1, profile(3, "TxDefaultProfile", "Absolute", [(0, 10)], stack=2, start=stamp(now)))):
        assert (await cs.command("SetChargingProfile", {"evseId": evse, "chargingProfile": p}))["status"] == "Accepted"
    assert await get_profiles(cs, 1, {}, evse_id=0) == [1]  # TC_K_29
    assert await get_profiles(cs, 2, {}, evse_id=1) == [2, 3]  # TC_K_30
    assert await get_profiles(cs, 3, {}) == [1, 2, 3]  # TC_K_31
    assert await get_profiles(cs, 4, {"chargingProfileId": [3]}) == [3]  # TC_K_32
    assert await get_profiles(cs, 5, {"stackLevel": 2}, evse_id=1) == [3]  # TC_K_33
    assert await get_profiles(cs, 6, {"chargingLimitSource": ["CSO"]}, evse_id=1) == [2, 3]  # TC_K_34
    assert await get_profiles(cs, 7, {"chargingLimitSource": ["EMS"]}, evse_id=1) == []
    assert await get_profiles(cs, 8, {"chargingProfilePurpose": "TxDefaultProfile"}, evse_id=1) == [2, 3]  # TC_K_35
    assert await get_profiles(cs, 9, {"chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 0},
                              evse_id=1) == [2]  # TC_K_36
    assert cs.failures() == []


async def test_TC_K_07_11_19_21_22_23_24_47_CS_profiles_and_their_answers(strict201, sim201_factory):
    """TC_K_11_CS (K01.FR.16): a TxProfile for EVSE 0 is Rejected; TC_K_19_CS a Recurring profile, TC_K_21_CS /
    TC_K_22_CS validFrom / validTo, TC_K_23_CS a startSchedule are Accepted and the composite schedule follows
    them (K01.FR.36/40: a profile not yet valid limits nothing); TC_K_24_CS (K10.FR.04) clearing by purpose and
    stack level removes every profile that matches; TC_K_07_CS an unknown combination is Unknown (K10.FR.01); TC_K_47_CS
    (K08.FR.05) GetCompositeSchedule of an EVSE that does not exist is Rejected."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    now = datetime.now(UTC).replace(microsecond=0)
    assert (await cs.command("SetChargingProfile", {"evseId": 0, "chargingProfile": profile(
        9, "TxProfile", "Relative", [(0, 6)])}))["status"] == "Rejected"  # TC_K_11
    recurring = profile(10, "TxDefaultProfile", "Recurring", [(0, 10)], start=stamp(now), recurrencyKind="Daily")
    assert (await cs.command("SetChargingProfile", {"evseId": 1, "chargingProfile": recurring}))["status"] == "Accepted"
    later = profile(11, "TxDefaultProfile", "Relative", [(0, 6)], stack=1,
                    validFrom=stamp(now + timedelta(seconds=300)), validTo=stamp(now + timedelta(seconds=600)))
    assert (await cs.command("SetChargingProfile", {"evseId": 1, "chargingProfile": later}))["status"] == "Accepted"
    started = profile(12, "TxDefaultProfile", "Absolute", [(0, 8)], stack=2, start=stamp(now + timedelta(seconds=120)))
    assert (await cs.command("SetChargingProfile", {"evseId": 1, "chargingProfile": started}))["status"] == "Accepted"
    composite = await cs.command("GetCompositeSchedule", {"duration": 100, "evseId": 1, "chargingRateUnit": "A"})
    assert composite["schedule"]["chargingSchedulePeriod"][0]["limit"] == 10  # the recurring one; the others later
    composite = await cs.command("GetCompositeSchedule", {"duration": 200, "evseId": 1, "chargingRateUnit": "A"})
    assert [p["limit"] for p in composite["schedule"]["chargingSchedulePeriod"]][:2] == [10, 8]  # at +120 s
    assert (await cs.command("ClearChargingProfile", {"chargingProfileCriteria": {
        "chargingProfilePurpose": "ChargingStationMaxProfile", "stackLevel": 0}}))["status"] == "Unknown"  # TC_K_07
    for stack in (1, 2):
        assert (await cs.command("SetChargingProfile", {"evseId": 1, "chargingProfile": profile(
            20 + stack, "TxDefaultProfile", "Absolute", [(0, 7)], stack=stack, start=stamp(now))}))["status"] \
            == "Accepted"
    assert (await cs.command("ClearChargingProfile", {"chargingProfileCriteria": {
        "chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 2}}))["status"] == "Accepted"  # TC_K_24
    assert await get_profiles(cs, 30, {"chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 2}) == []
    answer = await cs.command("GetCompositeSchedule", {"duration": 300, "evseId": 2, "chargingRateUnit": "A"})
    assert answer["status"] == "Rejected" and "schedule" not in answer  # TC_K_47
    assert cs.failures() == []


async def test_TC_K_09_28_CS_tx_default_profile_during_a_transaction(strict201, sim201_factory):
    """TC_K_28_CS (K01.FR.32): a TxDefaultProfile set during a transaction limits it (the composite schedule shows
    it; a limit of 0 pauses the energy, SuspendedEVSE); TC_K_09_CS (K10.FR.05/07): cleared during it, the
    transaction goes on as if started without it, at the rating."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    now = datetime.now(UTC).replace(microsecond=0)
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    await s.state("Charging")
    zero = profile(40, "TxDefaultProfile", "Absolute", [(0, 0)], start=stamp(now - timedelta(seconds=5)),
                   validFrom=stamp(now - timedelta(seconds=5)))
    assert (await cs.command("SetChargingProfile", {"evseId": 1, "chargingProfile": zero}))["status"] == "Accepted"
    composite = await cs.command("GetCompositeSchedule", {"duration": 300, "evseId": 1, "chargingRateUnit": "A"})
    assert composite["status"] == "Accepted" and composite["schedule"]["chargingSchedulePeriod"][0]["limit"] == 0
    await s.state("SuspendedEVSE")
    await cs.call_from_cp("TransactionEvent", lambda p: p["transactionInfo"].get("chargingState") == "SuspendedEVSE",
                          after=n)
    assert (await cs.command("ClearChargingProfile", {"chargingProfileCriteria": {
        "chargingProfilePurpose": "TxDefaultProfile"}}))["status"] == "Accepted"  # TC_K_09
    await s.state("Charging")
    composite = await cs.command("GetCompositeSchedule", {"duration": 300, "evseId": 1, "chargingRateUnit": "W"})
    assert composite["schedule"]["chargingSchedulePeriod"][0]["limit"] == 22000
    assert cs.failures() == []
