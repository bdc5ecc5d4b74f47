"""OCPP 2.0.1 on a whole simulated station with a charge controller (EVSE-DIN on the emulated RS-485
line), judged by the strict 2.0.1 central system we did not write (ocpp-rpc in strict mode,
scripts/harness/peers/strict_cs.js: every message validated against the official 2.0.1 schemas).

The same as test_ocpp_controller.py for 1.6: a TxProfile in A becomes the board's setpoint register
(read from the line's recorded writes, not from the station), a limit of 0 pauses (SuspendedEVSE),
and Current.Offered is a measurand the station takes (SetVariables SampledDataCtrlr.TxUpdatedMeasurands)
only when it has a charge controller, reported in A in its TransactionEvents (K01, J02).
"""

from __future__ import annotations

from controller_support import BOARD, CONTROLLER, setpoints
from ocpp201_support import charging, profile

from tests.stations import until

WANTED = "Energy.Active.Import.Register,Current.Offered"




def offered(cs, after: int = 0) -> list[tuple[float, str]]:
    """(value, unit) of every Current.Offered in TransactionEvents' meterValue after event `after`."""
    out = []
    for e in cs.events[after:]:
        if e["event"] == "call" and e["method"] == "TransactionEvent":
            for mv in e["params"].get("meterValue", []):
                out += [(sv["value"], sv.get("unitOfMeasure", {}).get("unit")) for sv in mv["sampledValue"]
                        if sv.get("measurand") == "Current.Offered"]
    return out


def set_measurands(value: str) -> dict:
    return {"setVariableData": [{"component": {"name": "SampledDataCtrlr"},
                                 "variable": {"name": "TxUpdatedMeasurands"}, "attributeValue": value}]}


async def test_a_tx_profile_in_amps_reaches_the_board_and_current_offered_is_reported(strict201, sim201_factory):
    cs = strict201
    s = await sim201_factory(cs.url, {"SampledDataCtrlr/TxUpdatedInterval": 1}, **CONTROLLER)
    await s.online()
    board = s.world.controller
    answer = await cs.command("SetVariables", set_measurands(WANTED))
    assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"  # a charge controller: offered
    tx = await charging(cs, s)
    await until(lambda: board.setpoint == 16, 15, "16 A, the installation's rating")

    n = len(cs.events)
    limit = profile(1, "TxProfile", "Relative", [(0, 10)], transactionId=tx)
    assert (await cs.command("SetChargingProfile", {"evseId": 1, "chargingProfile": limit}))["status"] == "Accepted"
    await until(lambda: setpoints(s)[-1:] == [10], 15, "10 A written to register 1000")
    # The line records a write as it arrives; the board applies it a moment later.
    await until(lambda: board.offered_a == 10, 15, "the board offering 10 A")
    await until(lambda: (10.0, "A") in offered(cs, n), 15, "a TransactionEvent with Current.Offered 10 A")

    n = len(cs.events)
    pause = profile(2, "TxProfile", "Relative", [(0, 0)], stack=1, transactionId=tx)
    assert (await cs.command("SetChargingProfile", {"evseId": 1, "chargingProfile": pause}))["status"] == "Accepted"
    await cs.call_from_cp("TransactionEvent", lambda p: p["transactionInfo"].get("chargingState") == "SuspendedEVSE",
                          after=n)
    await until(lambda: setpoints(s)[-1:] == [0], 15, "0 A written")
    await until(lambda: (0.0, "A") in offered(cs, n), 15, "Current.Offered 0 A while paused")
    assert board.eeprom_writes == {} and {w.address for w in s.world.bus.writes if w.device == BOARD} == {1000}
    assert cs.failures() == []


async def test_current_offered_is_not_a_measurand_without_a_controller(strict201, sim201_factory):
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    answer = await cs.command("SetVariables", set_measurands(WANTED))
    assert answer["setVariableResult"][0]["attributeStatus"] == "Rejected"
    assert cs.failures() == []
