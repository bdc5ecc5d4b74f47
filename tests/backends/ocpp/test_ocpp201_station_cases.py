"""OCPP 2.0.1 provisioning, more Part 6 cases (B04, B09, B11, B12, Part 4 §5.3): what a reset keeps, a reset
of the EVSE scheduled for the end of the transaction, network profiles refused, the status after an outage
and the reconnection back-off. The whole simulated station against the strict 2.0.1 central system
(ocpp-rpc, strict mode); zero schema failures every time. Waits are checked from below only (a slow machine
waits longer, never shorter)."""

from __future__ import annotations

import asyncio

from conftest import TIME_SCALE
from ocpp201_support import calls, charging, exited, in_seconds, status
from ocpp_flows import OTHER, UID
from strict_peer import TimedCS

TOKEN = {"idToken": UID, "type": "ISO14443"}


async def reset_and_restart(cs: TimedCS, s, sim201_factory):
    assert (await cs.command("Reset", {"type": "OnIdle"}))["status"] == "Accepted"
    assert await exited(s) == "hard"
    await s.station.stop(graceful=False)
    n = len(cs.events)
    s2 = await sim201_factory(cs.url)
    await s2.online()
    assert (await cs.call_from_cp("BootNotification", after=n))["reason"] == "RemoteReset"
    return s2, n


async def test_TC_B_23_24_CS_unavailable_and_reserved_persist_a_reset(strict201, sim201_factory):
    """TC_B_23_CS (B11.FR.02, B01.FR.03): a connector made Inoperative is Unavailable again after a reset;
    TC_B_24_CS (B11.FR.05): a reserved EVSE is Reserved again after a reset, and the reservation still holds
    (another card may not start, the reserved card starts with its reservationId)."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    connector = {"id": 1, "connectorId": 1}
    assert (await cs.command("ChangeAvailability", {"operationalStatus": "Inoperative", "evse": connector}))[
        "status"] == "Accepted"
    s, n = await reset_and_restart(cs, s, sim201_factory)
    await status(cs, "Unavailable", n)  # TC_B_23
    assert (await cs.command("ChangeAvailability", {"operationalStatus": "Operative", "evse": connector}))[
        "status"] == "Accepted"
    await status(cs, "Available", n)
    assert (await cs.command("ReserveNow", {"id": 31, "expiryDateTime": in_seconds(600), "idToken": TOKEN,
                                            "evseId": 1}))["status"] == "Accepted"
    await status(cs, "Reserved", n)
    s, n = await reset_and_restart(cs, s, sim201_factory)
    await status(cs, "Reserved", n)  # TC_B_24
    s.world.plug()
    await s.world.tap(OTHER, hold_s=0.15)
    await asyncio.sleep(0.4)
    assert s.charger.session is None
    await s.world.tap(UID, hold_s=0.15)
    started = await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Started", after=n)
    assert started["reservationId"] == 31
    assert cs.failures() == []


async def test_TC_B_26_CS_reset_of_the_evse_when_idle(strict201, sim201_factory):
    """TC_B_26_CS (B12.FR.01/07): Reset OnIdle of EVSE 1 during a transaction: Scheduled; the transaction ends
    as the driver ends it (StopAuthorized), the EVSE is reset after, and the station does not reboot."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    tx = await charging(cs, s)
    n = len(cs.events)
    assert (await cs.command("Reset", {"type": "OnIdle", "evseId": 1}))["status"] == "Scheduled"
    await asyncio.sleep(0.5)
    assert s.charger.session is not None
    await s.world.tap(UID, hold_s=0.15)
    end = await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Ended", after=n)
    assert (end["transactionInfo"]["transactionId"], end["triggerReason"]) == (tx, "StopAuthorized")
    s.world.plug(False)
    await status(cs, "Available", n)
    await asyncio.sleep(0.5)
    assert s.charger.exit_request is None and calls(cs, "BootNotification", n) == []
    assert cs.failures() == []


async def test_TC_B_43_CS_set_network_profile_rejected(strict201, sim201_factory):
    """TC_B_43_CS (B09.FR.02): the connection is set in the station's configuration file: SetNetworkProfile
    is Rejected, and the connection stays as it is."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    answer = await cs.command("SetNetworkProfile", {"configurationSlot": 999, "connectionData": {
        "ocppVersion": "OCPP20", "ocppTransport": "JSON", "ocppCsmsUrl": "wss://elsewhere.example/ocpp",
        "messageTimeout": 30, "securityProfile": 2, "ocppInterface": "Wired0"}})
    assert answer["status"] == "Rejected"
    assert s.backend.link.accepted and s.backend.url == cs.url + "/CP1"
    assert cs.failures() == []


async def test_TC_B_51_52_CS_status_after_an_outage(strict201, sim201_factory):
    """TC_B_51_CS / TC_B_52_CS (B04.FR.01/02): the EV plugged in during an outage: after the reconnection the
    connector's status goes out (Occupied). Unchanged, it goes out again only after an outage longer than
    OCPPCommCtrlr.OfflineThreshold (B04.FR.01), not after a shorter one (B04.FR.02)."""
    cs = strict201
    s = await sim201_factory(cs.url, {"OCPPCommCtrlr/OfflineThreshold": 100})  # 2 s at the tests' time scale
    await s.online()
    await status(cs, "Available")
    n = len(cs.events)
    await cs.command("__outage", {"seconds": 0.5})
    await asyncio.sleep(0.2)
    s.world.plug()
    await cs.wait(lambda e: e in cs.events[n:] and e["event"] == "connected", timeout=20)
    await status(cs, "Occupied", n)  # changed while offline
    await s.online()
    n = len(cs.events)
    await cs.command("__outage", {"seconds": 0.3})  # shorter than the threshold: unchanged, not sent
    await cs.wait(lambda e: e in cs.events[n:] and e["event"] == "connected", timeout=20)
    await s.online()
    await asyncio.sleep(0.5)
    assert calls(cs, "StatusNotification", n) == []
    n = len(cs.events)
    await cs.command("__outage", {"seconds": 3})  # longer than the threshold: sent although unchanged
    await cs.wait(lambda e: e in cs.events[n:] and e["event"] == "connected", timeout=30)
    await status(cs, "Occupied", n)
    assert cs.failures() == []


async def test_TC_B_57_CS_reconnection_back_off(strict201, sim201_factory):
    """TC_B_57_CS (Part 4 §5.3): after a connection loss the station waits RetryBackOffWaitMinimum (+ up to
    RetryBackOffRandomRange) before reconnecting, and after a failed attempt twice that."""
    cs = strict201
    wait = 100  # 2 s at the tests' time scale
    s = await sim201_factory(cs.url, {"OCPPCommCtrlr/RetryBackOffWaitMinimum": wait,
                                      "OCPPCommCtrlr/RetryBackOffRandomRange": 0,
                                      "OCPPCommCtrlr/RetryBackOffRepeatTimes": 2})
    await s.online()
    n = len(cs.events)
    await cs.command("__drop")
    dropped = (await cs.wait(lambda e: e in cs.events[n:] and e["event"] == "closed"))["t"]
    again = await cs.wait(lambda e: e in cs.events[n:] and e["event"] == "connected", timeout=20)
    assert again["t"] - dropped >= wait * TIME_SCALE * 0.95  # step 2
    await s.online()
    n = len(cs.events)
    await cs.command("__outage", {"seconds": wait * TIME_SCALE * 1.5})  # drops it and refuses the next attempt
    refused = await cs.wait(lambda e: e in cs.events[n:] and e["event"] == "refused", timeout=20)
    back = await cs.wait(lambda e: e in cs.events[n:] and e["event"] == "connected", timeout=20)
    assert back["t"] - refused["t"] >= 2 * wait * TIME_SCALE * 0.95  # step 7: doubled
    await s.online()
    assert cs.failures() == []
