"""OCPP 1.6 on a whole simulated station with a charge controller (EVSE-DIN on the emulated RS-485
line), judged by the strict central system we did not write (ocpp-rpc in strict mode,
scripts/harness/peers/strict_cs.js: every message validated against the official 1.6 schemas).

A charging profile in A becomes the current on the board's setpoint register (read from the line's
recorded writes, not from the station), one in W is spread over the phases the meter sees, a limit
of 0 pauses (SuspendedEVSE), MeterValues carry Current.Offered, and a residual-current fault is a
StatusNotification the strict central system accepts. GetCompositeSchedule is as without one.
"""

from __future__ import annotations

from controller_support import BOARD, CONTROLLER, setpoints
from ocpp_flows import UID

from tests.stations import until


def profile(pid: int, limit: float, unit: str = "A", stack: int = 0, purpose: str = "TxDefaultProfile") -> dict:
    return {"chargingProfileId": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Relative",
            "chargingSchedule": {"chargingRateUnit": unit, "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]}}




def offered_values(cs, after: int = 0) -> list[str]:
    out = []
    for e in cs.events[after:]:
        if e["event"] == "call" and e["method"] == "MeterValues":
            for mv in e["params"]["meterValue"]:
                out += [sv["value"] for sv in mv["sampledValue"] if sv.get("measurand") == "Current.Offered"]
    return out


async def test_limits_in_amps_reach_the_setpoint_register_and_current_offered_is_reported(strict_cs, sim_factory):
    cs = strict_cs
    # A car on one phase: a profile in A must stay amps (as watts at 230 V x 3 phases it would be 30 A here)
    s = await sim_factory(cs.url, {"MeterValueSampleInterval": 10}, **CONTROLLER, **{"sim.car_phases": 1})
    await s.online()
    await cs.call_from_cp("StatusNotification", lambda p: p["connectorId"] == 1)
    board = s.world.controller
    wanted = "Energy.Active.Import.Register,Current.Offered,Current.Import"
    assert (await cs.command("ChangeConfiguration", {"key": "MeterValuesSampledData", "value": wanted}))["status"] \
        == "Accepted"  # offered because the station has a charge controller
    s.world.plug()
    await cs.call_from_cp("StatusNotification", lambda p: p["status"] == "Preparing")
    await s.world.tap(UID, hold_s=0.15)
    await cs.call_from_cp("StartTransaction")
    await s.state("Charging")
    await until(lambda: board.setpoint == 16, 15, "16 A, the installation's rating")
    await until(lambda: s.charger.reading is not None and len([a for a in s.charger.reading.current_a if a > 1]) == 1,
                15, "the meter seeing the car draw on one phase")

    n = len(cs.events)
    assert (await cs.command("SetChargingProfile", {"connectorId": 1, "csChargingProfiles": profile(1, 10)}))[
        "status"] == "Accepted"
    await until(lambda: setpoints(s)[-1:] == [10], 15, "10 A written to register 1000")
    # The line records a write as it arrives; the board applies it a moment later.
    await until(lambda: board.offered_a == 10, 15, "the board offering 10 A")
    assert s.charger.state.value == "Charging"
    await until(lambda: "10.0" in offered_values(cs, n), 15, "MeterValues with Current.Offered 10.0 A")

    # 0 pauses: SuspendedEVSE, nothing offered
    n = len(cs.events)
    assert (await cs.command("SetChargingProfile", {"connectorId": 1, "csChargingProfiles": profile(2, 0, "W", stack=1)}))[
        "status"] == "Accepted"
    await cs.call_from_cp("StatusNotification", lambda p: p["status"] == "SuspendedEVSE", after=n)
    await until(lambda: setpoints(s)[-1:] == [0], 15, "0 A written")
    assert (await cs.command("ClearChargingProfile", {"id": 2}))["status"] == "Accepted"
    await until(lambda: setpoints(s)[-1:] == [10], 15, "10 A again")

    composite = await cs.command("GetCompositeSchedule", {"connectorId": 1, "duration": 60, "chargingRateUnit": "A"})
    assert composite["status"] == "Accepted"
    assert composite["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 10

    # a residual current fault: the session ends, the connector is Faulted with a reason the backend can read
    n = len(cs.events)
    s.world.inject("rcd-tripped")
    faulted = await cs.call_from_cp("StatusNotification", lambda p: p["status"] == "Faulted", after=n)
    assert (faulted["errorCode"], faulted["vendorErrorCode"]) == ("GroundFailure", "ResidualCurrent")
    stop = await cs.call_from_cp("StopTransaction", after=n)
    assert stop["reason"] == "Other"
    await until(lambda: setpoints(s)[-1:] == [0], 15, "0 A after the fault")
    assert board.eeprom_writes == {} and {w.address for w in s.world.bus.writes if w.device == BOARD} == {1000}
    assert cs.failures() == []


async def test_current_offered_is_not_offered_without_a_controller(strict_cs, sim_factory):
    cs = strict_cs
    s = await sim_factory(cs.url)
    await s.online()
    answer = await cs.command("ChangeConfiguration", {"key": "MeterValuesSampledData",
                                                      "value": "Energy.Active.Import.Register,Current.Offered"})
    assert answer["status"] == "Rejected"
    assert cs.failures() == []
