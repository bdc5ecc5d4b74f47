"""OCPP 2.0.1 transaction points from the connector machine's facts: a transaction that starts when the EV
connects (TxStartPoint EVConnected, before any card), and the EV leaving with StopTxOnEVSideDisconnect false
(E10: suspended, not ended). The whole simulated station against the strict 2.0.1 central system (ocpp-rpc,
strict mode); zero schema failures every time, seqNo without gaps, the meter's advance billed."""

from __future__ import annotations

import asyncio

from ocpp201_support import any_ended as ended
from ocpp201_support import assert_gapless, energy, events, of_tx
from ocpp_flows import UID

TOKEN = {"idToken": UID, "type": "ISO14443"}


async def started(cs, after: int) -> dict:
    return await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Started", after=after)


def billed(mine: list[dict]) -> int:
    """What a central system bills: the register at the end less the register in the Started."""
    return energy(mine[-1]["meterValue"], "Transaction.End") - energy(mine[0]["meterValue"], "Transaction.Begin")


async def test_TC_E_09_CS_transaction_starts_when_the_ev_connects(strict201, sim201_factory):
    """TC_E_09_CS (E01.FR.02/07/16): TxStartPoint EVConnected: the EV plugged in, no card yet: Occupied, then
    Started (CablePluggedIn, chargingState EVConnected, evse with its connector, the register); GetTransactionStatus
    knows it (E14.FR.02); the card then: Updated Authorized with its idToken (E03.FR.01), the same transaction
    through the charge to the Ended, which bills the meter's advance (the journal's session)."""
    cs = strict201
    s = await sim201_factory(cs.url, {"TxCtrlr/TxStartPoint": "EVConnected"})
    await s.online()
    await cs.call_from_cp("StatusNotification")
    n = len(cs.events)
    s.world.plug()
    await cs.call_from_cp("StatusNotification", lambda p: p["connectorStatus"] == "Occupied", after=n)
    start = await started(cs, n)
    assert (start["triggerReason"], start["transactionInfo"]["chargingState"], start["evse"]) == \
        ("CablePluggedIn", "EVConnected", {"id": 1, "connectorId": 1})
    assert "idToken" not in start and energy(start["meterValue"], "Transaction.Begin") == s.world.meter_wh
    tx = start["transactionInfo"]["transactionId"]
    assert s.store.sessions(("active", "authorizing", "stopped")) == []  # no session: the version's own record
    assert await cs.command("GetTransactionStatus", {"transactionId": tx}) == \
        {"ongoingIndicator": True, "messagesInQueue": False}
    await s.world.tap(UID, hold_s=0.15)
    auth = await cs.call_from_cp("TransactionEvent", lambda p: p["triggerReason"] == "Authorized", after=n)
    assert (auth["eventType"], auth["idToken"], auth["transactionInfo"]["transactionId"]) == ("Updated", TOKEN, tx)
    await s.state("Charging")
    s.world.consume(900)
    await asyncio.sleep(0.4)
    assert (await cs.command("RequestStopTransaction", {"transactionId": tx}))["status"] == "Accepted"  # its id
    end = await ended(cs, n)
    mine = assert_gapless(cs, tx)
    session = s.store.sessions(("stopped",))[-1]
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"]) == ("RemoteStop", "Remote")
    assert billed(mine) == session.energy_wh >= 900
    await s.idle()
    assert await cs.command("GetTransactionStatus", {"transactionId": tx}) == \
        {"ongoingIndicator": False, "messagesInQueue": False}
    assert cs.failures() == []


async def test_ev_connected_transaction_ends_when_the_ev_leaves_unauthorized(strict201, sim201_factory):
    """TxStartPoint EVConnected, the EV leaves before any card (E06.FR.02 for a transaction without a session):
    Ended, EVCommunicationLost, EVDisconnected, chargingState Idle; a refused card in between changes nothing
    (the transaction is the EV's until someone is authorized). A second EV: a new transaction."""
    cs = strict201
    s = await sim201_factory(cs.url, {"TxCtrlr/TxStartPoint": "EVConnected"})
    await s.online()
    await cs.command("__answer", {"method": "Authorize", "result": {"idTokenInfo": {"status": "Invalid"}}})
    n = len(cs.events)
    s.world.plug()
    first = (await started(cs, n))["transactionInfo"]["transactionId"]
    await s.world.tap(UID, hold_s=0.15)
    await cs.call_from_cp("Authorize", after=n)
    s.world.plug(False)
    end = await ended(cs, n)
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"], end["transactionInfo"]["chargingState"]) \
        == ("EVCommunicationLost", "EVDisconnected", "Idle")
    assert [p["eventType"] for p in assert_gapless(cs, first)] == ["Started", "Ended"]
    await s.state("Available")
    n = len(cs.events)
    s.world.plug()
    second = (await started(cs, n))["transactionInfo"]["transactionId"]
    assert second != first
    assert cs.failures() == []


async def test_ev_connected_transaction_over_an_outage_and_a_kill(strict201, sim201_factory):
    """TxStartPoint EVConnected while the central system is away: the plug-in, the card (allowed offline by the
    local list), the charge and its end are all journaled and go out after it in the order they happened
    (offline true), one transaction: Started first, seqNo without gaps, the meter's advance billed (E04,
    E12). Then an EV plugged in, no card, and the station killed (kill -9): after the restart that transaction
    ends with PowerLoss (E07.FR.06); nothing lost, nothing twice under another seqNo."""
    cs = strict201
    s = await sim201_factory(cs.url, {"TxCtrlr/TxStartPoint": "EVConnected"})
    await s.online()
    await cs.command("SendLocalList", {"versionNumber": 1, "updateType": "Full", "localAuthorizationList": [
        {"idToken": TOKEN, "idTokenInfo": {"status": "Accepted"}}]})
    await cs.command("__outage", {"seconds": 4})
    await asyncio.sleep(0.3)
    n = len(cs.events)
    s.world.plug()
    await s.state("Preparing")
    await s.world.tap(UID, hold_s=0.15)
    await s.state("Charging")
    s.world.consume(600)
    await asyncio.sleep(0.4)
    await s.world.tap(UID, hold_s=0.15)
    await s.state("Finishing")
    await s.online(timeout=20)
    end = await ended(cs, n, timeout=20)
    tx = end["transactionInfo"]["transactionId"]
    mine = assert_gapless(cs, tx)
    assert mine[0]["triggerReason"] == "CablePluggedIn" and all(p.get("offline") is True for p in mine)
    assert [p["transactionInfo"]["transactionId"] for p in events(cs, n)] == [tx] * len(mine)  # one transaction
    assert billed(mine) == s.store.sessions(("stopped",))[-1].energy_wh >= 600
    s.world.plug(False)
    await s.state("Available")
    await s.idle()
    n = len(cs.events)
    s.world.plug()
    killed = (await started(cs, n))["transactionInfo"]["transactionId"]
    await s.station.stop(graceful=False)
    s2 = await sim201_factory(cs.url)
    await s2.online()
    end = await ended(cs, n)
    assert end["transactionInfo"]["transactionId"] == killed
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"]) == ("AbnormalCondition", "PowerLoss")
    assert_gapless(cs, killed)
    assert cs.failures() == []


async def test_TC_E_26_CS_ev_leaves_and_comes_back(strict201, sim201_factory):
    """TC_E_26_CS (E10.FR.01/03): StopTxOnEVSideDisconnect false, TxStopPoint Authorized: the EV leaves during
    the charge: Updated EVCommunicationLost with chargingState Idle, the connector Available, no power; the EV
    back: Updated CablePluggedIn, EVConnected, then the energy again (ChargingStateChanged, Charging); the card
    ends the one transaction."""
    cs = strict201
    s = await sim201_factory(cs.url, {"TxCtrlr/StopTxOnEVSideDisconnect": False, "TxCtrlr/TxStopPoint": "Authorized"})
    await s.online()
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    tx = (await started(cs, n))["transactionInfo"]["transactionId"]
    await s.state("Charging")
    m = len(cs.events)
    s.world.plug(False)
    gone = await cs.call_from_cp("TransactionEvent", lambda p: p["triggerReason"] == "EVCommunicationLost", after=m)
    assert (gone["eventType"], gone["transactionInfo"]["chargingState"]) == ("Updated", "Idle")
    await cs.call_from_cp("StatusNotification", lambda p: p["connectorStatus"] == "Available", after=m)
    assert s.charger.session is not None and not s.world.contactor_closed
    m = len(cs.events)
    s.world.plug()
    back = await cs.call_from_cp("TransactionEvent", lambda p: p["triggerReason"] == "CablePluggedIn", after=m)
    assert (back["eventType"], back["transactionInfo"]["chargingState"]) == ("Updated", "EVConnected")
    await cs.call_from_cp("StatusNotification", lambda p: p["connectorStatus"] == "Occupied", after=m)
    await cs.call_from_cp("TransactionEvent", lambda p: p["transactionInfo"].get("chargingState") == "Charging",
                          after=m)
    await s.world.tap(UID, hold_s=0.15)
    end = await ended(cs, n)
    assert end["transactionInfo"]["transactionId"] == tx and end["transactionInfo"]["stoppedReason"] == "Local"
    assert_gapless(cs, tx)
    assert cs.failures() == []


async def test_TC_E_27_CS_ev_does_not_come_back(strict201, sim201_factory):
    """TC_E_27_CS (E10.FR.02/03, a fixed cable): StopTxOnEVSideDisconnect false, TxStopPoint Authorized: the EV
    leaves and does not come back within EVConnectionTimeOut: the transaction is deauthorized and ends
    (EVConnectTimeout, Timeout, Idle); the connector is Available."""
    cs = strict201
    s = await sim201_factory(cs.url, {"TxCtrlr/StopTxOnEVSideDisconnect": False, "TxCtrlr/TxStopPoint": "Authorized",
                                      "TxCtrlr/EVConnectionTimeOut": 50})  # 1 s scaled
    await s.online()
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    tx = (await started(cs, n))["transactionInfo"]["transactionId"]
    await s.state("Charging")
    s.world.plug(False)
    end = await ended(cs, n)
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"], end["transactionInfo"].get("chargingState")) \
        == ("EVConnectTimeout", "Timeout", None)  # Idle since the EV left (said then)
    mine = assert_gapless(cs, tx)
    triggers = [p["triggerReason"] for p in mine]
    assert "EVCommunicationLost" in triggers and triggers[-1] == "EVConnectTimeout"
    assert s.store.sessions(("stopped",))[-1].stop_reason == "Timeout"
    await s.state("Available")
    assert cs.failures() == []


async def test_TC_E_37_54_CS_ev_leaving_ends_it_whatever_StopTxOnEVSideDisconnect(strict201, sim201_factory):
    """TC_E_37_CS (E06.FR.06, TxStopPoint PowerPathClosed) and TC_E_54_CS (E06.FR.02, TxStopPoint EVConnected),
    both with StopTxOnEVSideDisconnect false: the EV leaving is a stop point, so the transaction ends:
    Ended, EVCommunicationLost, EVDisconnected, chargingState Idle."""
    cs = strict201
    s = await sim201_factory(cs.url, {"TxCtrlr/StopTxOnEVSideDisconnect": False})
    await s.online()
    for stop_point in ("PowerPathClosed", "EVConnected"):
        await cs.command("SetVariables", {"setVariableData": [
            {"component": {"name": "TxCtrlr"}, "variable": {"name": "TxStopPoint"}, "attributeValue": stop_point}]})
        n = len(cs.events)
        s.world.plug()
        await s.world.tap(UID, hold_s=0.15)
        tx = (await started(cs, n))["transactionInfo"]["transactionId"]
        await s.state("Charging")
        s.world.plug(False)
        end = await ended(cs, n)
        assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"],
                end["transactionInfo"]["chargingState"]) == ("EVCommunicationLost", "EVDisconnected", "Idle"), stop_point
        assert_gapless(cs, tx)
        await s.state("Available")
    assert cs.failures() == []


async def test_TC_E_10_39_CS_an_authorization_without_its_ev(strict201, sim201_factory):
    """TxStartPoint Authorized (E01.FR.03): the card, no EV; the same card again ends the transaction as the
    driver's stop (Ended, StopAuthorized, Local, E06.FR.03), and one killed (kill -9) while it waits for its
    EV ends after the restart with PowerLoss (E07.FR.06): no transaction stays open at the central system."""
    cs = strict201
    s = await sim201_factory(cs.url, {"TxCtrlr/TxStartPoint": "Authorized"})
    await s.online()
    n = len(cs.events)
    await s.world.tap(UID, hold_s=0.15)
    tx = (await started(cs, n))["transactionInfo"]["transactionId"]
    await asyncio.sleep(0.3)
    await s.world.tap(UID, hold_s=0.15)
    end = await ended(cs, n)
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"], end["idToken"]) == \
        ("StopAuthorized", "Local", TOKEN)
    assert_gapless(cs, tx)
    await s.state("Available")
    n = len(cs.events)
    await s.world.tap(UID, hold_s=0.15)
    tx = (await started(cs, n))["transactionInfo"]["transactionId"]
    await s.idle()
    await s.station.stop(graceful=False)
    s2 = await sim201_factory(cs.url)
    await s2.online()
    end = await ended(cs, n)
    assert end["transactionInfo"]["transactionId"] == tx
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"]) == ("AbnormalCondition", "PowerLoss")
    assert len(of_tx(cs, tx)) == 2
    assert cs.failures() == []
