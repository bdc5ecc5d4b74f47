"""OCPP 2.0.1 provisioning (block B) against an independent strict central system: ocpp-rpc in strict mode
with its bundled OCPP 2.0.1 schemas (tests/peers/strict_cs.js), the whole simulated station as the
charging station. Every test demands zero schema failures in both directions."""

from __future__ import annotations

import asyncio

from strict_peer import TimedCS


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
