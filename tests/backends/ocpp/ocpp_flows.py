"""Shared steps of the compliance tests on the simulated station."""

from __future__ import annotations

UID = "D64FC93B"
OTHER = "0A1B2C3D"


def statuses(csms, connector: int = 1, after: int = 0) -> list[str]:
    return [r.payload["status"] for r in csms.received[after:]
            if r.action == "StatusNotification" and r.payload["connectorId"] == connector]


async def wait_status(csms, status: str, connector: int = 1, after: int = 0, timeout: float = 10.0) -> dict:
    return await csms.wait_for("StatusNotification",
                               lambda p: p["connectorId"] == connector and p["status"] == status,
                               after=after, timeout=timeout)


async def start_tx(csms, sim, tag: str = UID) -> dict:
    """Plug, tap: a running transaction. Returns the StartTransaction payload.

    At a reserved connector the plug leaves it Reserved (OCPP 1.6 §5.13): the tap starts it."""
    n = len(csms.received)
    reserved = sim.charger.state.value == "Reserved"
    sim.world.plug()
    await sim.state("Reserved" if reserved else "Preparing")
    await sim.world.tap(tag, hold_s=0.15)
    start = await csms.wait_for("StartTransaction", after=n)
    await sim.state("Charging")
    await wait_status(csms, "Charging", after=n)
    return start
