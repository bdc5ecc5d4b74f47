"""OCPP 2.0.1 transactions, more Part 6 start and stop options (E01-E03, E06, F02, F03): the card before the
EV, a remote start that starts the transaction at its authorization, a remote stop ending it at stop point
Authorized, an EV not ready to draw. The whole simulated station against the strict 2.0.1 central system
(ocpp-rpc, strict mode); zero schema failures every time."""

from __future__ import annotations

import asyncio

from ocpp201_support import any_ended as ended
from ocpp201_support import assert_gapless, events
from ocpp_flows import UID

TOKEN = {"idToken": UID, "type": "ISO14443"}


async def started(cs, after: int) -> dict:
    return await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Started", after=after)


async def test_TC_E_04_CS_card_first_then_the_ev(strict201, sim201_factory):
    """TC_E_04_CS (E03.FR.01/06/12, E01.FR.16, C01.FR.02): the card before the EV, the default start point
    PowerPathClosed: AuthorizeRequest at the tap, the transaction starts when the EV is plugged in (Started,
    Authorized, its idToken, EVSE and connector), then the energy flows (ChargingStateChanged, Charging)."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    n = len(cs.events)
    await s.world.tap(UID, hold_s=0.15)
    await cs.call_from_cp("Authorize", lambda p: p["idToken"] == TOKEN, after=n)
    await asyncio.sleep(0.3)
    assert events(cs, n) == []
    s.world.plug()
    start = await started(cs, n)
    assert (start["triggerReason"], start["idToken"], start["evse"]) == ("Authorized", TOKEN, {"id": 1, "connectorId": 1})
    await cs.call_from_cp("TransactionEvent", lambda p: p["transactionInfo"].get("chargingState") == "Charging"
                          and p["triggerReason"] == "ChargingStateChanged", after=n)
    await s.world.tap(UID, hold_s=0.15)
    end = await ended(cs, n)
    assert_gapless(cs, end["transactionInfo"]["transactionId"])
    assert cs.failures() == []


async def test_TC_E_13_CS_remote_start_at_start_point_authorized(strict201, sim201_factory):
    """TC_E_13_CS (E01.FR.03, F01.FR.03/04/06/19, F02.FR.01) with TxStartPoint Authorized: RequestStartTransaction
    without an EV: Accepted and the transaction starts at once: Started, triggerReason RemoteStart, the request's
    idToken and remoteStartId, chargingState Idle; the EV then comes (CablePluggedIn) and the energy flows."""
    cs = strict201
    s = await sim201_factory(cs.url, {"TxCtrlr/TxStartPoint": "Authorized"})
    await s.online()
    n = len(cs.events)
    answer = await cs.command("RequestStartTransaction", {"idToken": TOKEN, "remoteStartId": 7, "evseId": 1})
    assert answer["status"] == "Accepted"
    start = await started(cs, n)
    assert (start["triggerReason"], start["idToken"], start["transactionInfo"]["remoteStartId"]) \
        == ("RemoteStart", TOKEN, 7)
    assert start["transactionInfo"]["chargingState"] == "Idle" and s.charger.session is None
    s.world.plug()
    await s.state("Charging")
    plugged = await cs.call_from_cp("TransactionEvent", lambda p: p["triggerReason"] == "CablePluggedIn", after=n)
    assert plugged["evse"] == {"id": 1, "connectorId": 1}
    await s.world.tap(UID, hold_s=0.15)
    end = await ended(cs, n)
    mine = assert_gapless(cs, end["transactionInfo"]["transactionId"])
    assert mine[0] == start and end["transactionInfo"]["transactionId"] == s.store.sessions(("stopped",))[-1].key
    assert cs.failures() == []


async def test_TC_E_21_CS_remote_stop_at_stop_point_authorized(strict201, sim201_factory):
    """TC_E_21_CS (E06.FR.03, F03.FR.09) with TxStopPoint Authorized: RequestStopTransaction ends the transaction:
    Accepted, then Ended with triggerReason RemoteStop and stoppedReason Remote."""
    cs = strict201
    s = await sim201_factory(cs.url, {"TxCtrlr/TxStopPoint": "Authorized"})
    await s.online()
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    start = await started(cs, n)
    await s.state("Charging")
    tx = start["transactionInfo"]["transactionId"]
    assert (await cs.command("RequestStopTransaction", {"transactionId": tx}))["status"] == "Accepted"
    end = await ended(cs, n)
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"]) == ("RemoteStop", "Remote")
    assert_gapless(cs, tx)
    assert cs.failures() == []


async def test_TC_E_38_CS_ev_not_ready(strict201, sim201_factory):
    """TC_E_38_CS: authorized, the EV plugged in but not ready to draw: the transaction starts and reports
    chargingState SuspendedEV (triggerReason ChargingStateChanged); when the EV draws, Charging."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    s.world.set_load(0)
    n = len(cs.events)
    await s.world.tap(UID, hold_s=0.15)
    s.world.plug()
    await started(cs, n)
    suspended = await cs.call_from_cp("TransactionEvent", lambda p: p["transactionInfo"].get("chargingState")
                                      == "SuspendedEV", after=n, timeout=20)
    assert (suspended["eventType"], suspended["triggerReason"]) == ("Updated", "ChargingStateChanged")
    s.world.set_load(7400)
    await cs.call_from_cp("TransactionEvent", lambda p: p["transactionInfo"].get("chargingState") == "Charging",
                          after=n, timeout=20)
    await s.world.tap(UID, hold_s=0.15)
    await ended(cs, n)
    assert cs.failures() == []


async def test_TC_E_08_CS_stop_point_energy_transfer_stopped_by_the_card(strict201, sim201_factory):
    """TC_E_08_CS (E06.FR.07, E06.FR.15) with TxStopPoint EnergyTransfer: the card ends the energy transfer and
    with it the transaction: Ended, StopAuthorized, Local."""
    cs = strict201
    s = await sim201_factory(cs.url, {"TxCtrlr/TxStopPoint": "EnergyTransfer"})
    await s.online()
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    await started(cs, n)
    await s.state("Charging")
    await s.world.tap(UID, hold_s=0.15)
    end = await ended(cs, n)
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"]) == ("StopAuthorized", "Local")
    assert_gapless(cs, end["transactionInfo"]["transactionId"])
    assert cs.failures() == []
