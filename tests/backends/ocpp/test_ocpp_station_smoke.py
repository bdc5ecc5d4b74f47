"""One whole session on the simulated station, to prove the wiring."""

from __future__ import annotations

UID = "D64FC93B"


async def test_whole_session(csms, sim):
    sim.world.plug()
    await sim.state("Preparing")
    await sim.world.tap(UID)
    start = await csms.wait_for("StartTransaction")
    assert start["idTag"] == UID and isinstance(start["meterStart"], int)
    await sim.state("Charging")
    sim.world.consume(1500)
    await sim.world.tap(UID)
    stop = await csms.wait_for("StopTransaction")
    assert stop["meterStop"] - start["meterStart"] >= 1500
    assert stop["reason"] == "Local"
    assert stop["transactionId"] == 101
