"""OCPP 2.0.1 transactions (blocks E, F, J) on the whole simulated station, judged by an independent strict
central system (ocpp-rpc, strict mode, its bundled 2.0.1 schemas). Zero schema failures, every time.

What the tests check at the central system is what Part 2 says a TransactionEvent carries: seqNo from 0
without gaps (E01.FR.07), the triggerReason of each event (E01.FR.15), chargingState when it changes
(E01.FR.18), idToken once when authorized and once when it ends (E03.FR.01, E07.FR.02), evse once
(E01.FR.16), stoppedReason in Ended (E06.FR.08), and meter values that add up to the meter's advance.
"""

from __future__ import annotations

import asyncio

from ocpp201_support import any_ended as ended
from ocpp201_support import assert_gapless, energy, events, of_tx
from ocpp_flows import OTHER, UID
from strict_peer import TimedCS


async def test_TC_E_03_07_CS_cable_first_local_start_and_stop(strict201, sim201_factory):
    """TC_E_03_CS (E02), TC_E_01_CS (E01.FR.05 PowerPathClosed), TC_E_15_CS (E06.FR.03), TC_E_06_CS (E07),
    TC_E_07_CS (E06.FR.06, stop point PowerPathClosed, a local stop):
    plug, card, charge, the same card again. Started carries the idToken, the evse and the register at the
    start; Updated the charging state; Ended the register at the end, the stopping idToken and Local."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    await cs.call_from_cp("StatusNotification")
    n = len(cs.events)
    s.world.plug()
    await cs.call_from_cp("StatusNotification", lambda p: p["connectorStatus"] == "Occupied", after=n)
    await s.world.tap(UID, hold_s=0.15)
    auth = await cs.call_from_cp("Authorize", after=n)
    assert auth["idToken"] == {"idToken": UID, "type": "ISO14443"}
    await s.state("Charging")
    s.world.consume(1234)
    await asyncio.sleep(0.5)
    await s.world.tap(UID, hold_s=0.15)
    end = await ended(cs, n)
    tx = end["transactionInfo"]["transactionId"]
    mine = assert_gapless(cs, tx)
    start = mine[0]
    assert start["triggerReason"] == "Authorized" and start["idToken"] == {"idToken": UID, "type": "ISO14443"}
    assert start["evse"] == {"id": 1, "connectorId": 1} and start["transactionInfo"]["chargingState"] == "EVConnected"
    assert any(p["transactionInfo"].get("chargingState") == "Charging" for p in mine[1:-1])
    assert end["triggerReason"] == "StopAuthorized" and end["transactionInfo"]["stoppedReason"] == "Local"
    assert end["idToken"]["idToken"] == UID
    billed = energy(end["meterValue"], "Transaction.End") - energy(start["meterValue"], "Transaction.Begin")
    session = s.store.sessions(("stopped",))[-1]
    assert billed == session.energy_wh >= 1234 and session.key == tx
    await s.idle()
    assert cs.failures() == []


def started(cs: TimedCS, after: int = 0):
    return cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Started", after=after)


async def test_TC_F_01_08_09_E_35_K_37_CS_remote_start_cable_first_and_remote_stop(strict201, sim201_factory):
    """TC_F_01_CS (F01.FR.02/19/25): plugged first, RequestStartTransaction: Started with triggerReason
    RemoteStart, the remoteStartId and the idToken of the request (C05.FR.05), no AuthorizeRequest for a
    Central token (C05.FR.01); TC_K_37_CS (K05.FR.03): its TxProfile limits the transaction; TC_F_08_CS
    (F03.FR.03/07) and TC_E_35_CS (E06.FR.06, stop point PowerPathClosed): RequestStopTransaction ends it with
    RemoteStop / Remote; TC_F_09_CS (F03.FR.08): an
    unknown transactionId is Rejected."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    s.world.plug()
    await s.state("Preparing")
    n = len(cs.events)
    profile = {"id": 3, "stackLevel": 0, "chargingProfilePurpose": "TxProfile", "chargingProfileKind": "Relative",
               "chargingSchedule": [{"id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [
                   {"startPeriod": 0, "limit": 0}]}]}
    token = {"idToken": "REMOTE-42", "type": "Central"}
    assert (await cs.command("RequestStartTransaction", {"idToken": token, "remoteStartId": 42, "evseId": 1,
                                                         "chargingProfile": profile}))["status"] == "Accepted"
    start = await started(cs, n)
    assert start["triggerReason"] == "RemoteStart" and start["transactionInfo"]["remoteStartId"] == 42
    assert start["idToken"] == token and [e for e in cs.events[n:] if e.get("method") == "Authorize"] == []
    await s.state("SuspendedEVSE")  # the TxProfile's 0 W
    tx = start["transactionInfo"]["transactionId"]
    assert (await cs.command("RequestStopTransaction", {"transactionId": "no-such-tx"}))["status"] == "Rejected"
    assert (await cs.command("RequestStopTransaction", {"transactionId": tx}))["status"] == "Accepted"
    end = await ended(cs, n)
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"]) == ("RemoteStop", "Remote")
    assert_gapless(cs, tx)
    assert cs.failures() == []


async def test_TC_F_02_03_04_CS_remote_start_first(strict201, sim201_factory):
    """TC_F_03_CS (F02.FR.10): AuthorizeRemoteStart false: RequestStartTransaction first, the EV after it:
    Started (RemoteStart) once the EV is there; TC_F_02_CS (F02.FR.09): AuthorizeRemoteStart true: an
    AuthorizeRequest for the token first; TC_F_04_CS (F02.FR.07): no EV within EVConnectionTimeOut: no
    transaction, the connector back to Available."""
    cs = strict201
    s = await sim201_factory(cs.url, {"TxCtrlr/EVConnectionTimeOut": 25})  # 0.5 s scaled
    await s.online()
    n = len(cs.events)
    assert (await cs.command("RequestStartTransaction", {"idToken": {"idToken": UID, "type": "ISO14443"},
                                                         "remoteStartId": 1}))["status"] == "Accepted"
    await asyncio.sleep(1.5)
    assert events(cs, n) == [] and s.charger.state.value == "Available"
    assert (await cs.command("SetVariables", {"setVariableData": [
        {"component": {"name": "TxCtrlr"}, "variable": {"name": "EVConnectionTimeOut"}, "attributeValue": "600"}]}
    ))["setVariableResult"][0]["attributeStatus"] == "Accepted"
    assert (await cs.command("RequestStartTransaction", {"idToken": {"idToken": UID, "type": "ISO14443"},
                                                         "remoteStartId": 2}))["status"] == "Accepted"
    s.world.plug()
    start = await started(cs, n)
    assert (start["triggerReason"], start["transactionInfo"]["remoteStartId"]) == ("RemoteStart", 2)
    await s.world.tap(UID, hold_s=0.15)
    await ended(cs, n)
    s.world.plug(False)
    await s.state("Available")
    await cs.command("SetVariables", {"setVariableData": [
        {"component": {"name": "AuthCtrlr"}, "variable": {"name": "AuthorizeRemoteStart"}, "attributeValue": "true"}]})
    n = len(cs.events)
    assert (await cs.command("RequestStartTransaction", {"idToken": {"idToken": OTHER, "type": "ISO14443"},
                                                         "remoteStartId": 3}))["status"] == "Accepted"
    await cs.call_from_cp("Authorize", lambda p: p["idToken"]["idToken"] == OTHER, after=n)
    s.world.plug()
    start = await started(cs, n)
    assert start["transactionInfo"]["remoteStartId"] == 3
    assert cs.failures() == []


async def test_TC_E_10_05_CS_transaction_starts_at_the_authorization(strict201, sim201_factory):
    """TC_E_10_CS (E01.FR.03, TxStartPoint Authorized): the card before the EV: Started at the authorization
    (triggerReason Authorized, chargingState Idle, evse without a connector), then CablePluggedIn with the
    connector (E01.FR.16) and EVConnected; TC_E_05_CS / TC_E_39_CS (E03.FR.05): no EV within
    EVConnectionTimeOut: Ended with EVConnectTimeout / Timeout."""
    cs = strict201
    s = await sim201_factory(cs.url, {"TxCtrlr/TxStartPoint": "Authorized", "TxCtrlr/EVConnectionTimeOut": 25})
    await s.online()
    n = len(cs.events)
    await s.world.tap(UID, hold_s=0.15)
    start = await started(cs, n)
    assert (start["triggerReason"], start["transactionInfo"]["chargingState"], start["evse"]) == \
        ("Authorized", "Idle", {"id": 1})
    end = await ended(cs, n)
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"]) == ("EVConnectTimeout", "Timeout")
    assert_gapless(cs, start["transactionInfo"]["transactionId"])
    await s.state("Available")
    await cs.command("SetVariables", {"setVariableData": [
        {"component": {"name": "TxCtrlr"}, "variable": {"name": "EVConnectionTimeOut"}, "attributeValue": "600"}]})
    n = len(cs.events)
    await s.world.tap(UID, hold_s=0.15)
    start = await started(cs, n)
    s.world.plug()
    plugged = await cs.call_from_cp("TransactionEvent", lambda p: p["triggerReason"] == "CablePluggedIn", after=n)
    assert plugged["evse"] == {"id": 1, "connectorId": 1} and plugged["transactionInfo"]["chargingState"] == "EVConnected"
    await s.state("Charging")
    await s.world.tap(UID, hold_s=0.15)
    await ended(cs, n)
    assert_gapless(cs, start["transactionInfo"]["transactionId"])
    assert cs.failures() == []


async def test_TC_E_02_CS_transaction_starts_with_the_energy(strict201, sim201_factory):
    """TC_E_02_CS (E01.FR.06, TxStartPoint EnergyTransfer): Started when energy flows, with triggerReason
    ChargingStateChanged and chargingState Charging; nothing before."""
    cs = strict201
    s = await sim201_factory(cs.url, {"TxCtrlr/TxStartPoint": "EnergyTransfer"}, **{"sim.load_w": 0.0})
    await s.online()
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    await s.state("SuspendedEV")
    await asyncio.sleep(0.5)
    assert events(cs, n) == []
    s.world.set_load(7400)
    start = await started(cs, n)
    assert (start["triggerReason"], start["transactionInfo"]["chargingState"]) == ("ChargingStateChanged", "Charging")
    await s.world.tap(UID, hold_s=0.15)
    await ended(cs, n)
    assert_gapless(cs, start["transactionInfo"]["transactionId"])
    assert cs.failures() == []


async def test_TC_E_14_17_20_CS_ev_side_disconnect_ends_it(strict201, sim201_factory):
    """TC_E_14_CS / TC_E_17_CS / TC_E_20_CS (E06.FR.02/04, E09.FR.01 StopTxOnEVSideDisconnect): the EV leaves
    during the transaction: Ended with EVCommunicationLost, EVDisconnected, chargingState Idle; then the
    connector is Available."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    await s.state("Charging")
    s.world.plug(False)
    end = await ended(cs, n)
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"], end["transactionInfo"]["chargingState"]) \
        == ("EVCommunicationLost", "EVDisconnected", "Idle")
    await cs.call_from_cp("StatusNotification", lambda p: p["connectorStatus"] == "Available", after=n)
    assert cs.failures() == []


async def test_stop_point_ev_connected_outlives_the_card(strict201, sim201_factory):
    """TxStopPoint EVConnected only (E06.FR.02, E07 diagram, F03.FR.02): the card (or a remote stop) ends the
    energy and the authorization: Updated (StopAuthorized, EVConnected, the card's idToken); the transaction
    ends when the EV leaves: Ended (EVCommunicationLost, Local, Idle)."""
    cs = strict201
    s = await sim201_factory(cs.url, {"TxCtrlr/TxStopPoint": "EVConnected"})
    await s.online()
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    start = await started(cs, n)
    await s.state("Charging")
    await s.world.tap(UID, hold_s=0.15)
    stop = await cs.call_from_cp("TransactionEvent", lambda p: p["triggerReason"] == "StopAuthorized", after=n)
    assert stop["eventType"] == "Updated" and stop["transactionInfo"]["chargingState"] == "EVConnected"
    await asyncio.sleep(0.3)
    tx = start["transactionInfo"]["transactionId"]
    assert (await cs.command("GetTransactionStatus", {"transactionId": tx})) == \
        {"ongoingIndicator": True, "messagesInQueue": False}
    s.world.plug(False)
    end = await ended(cs, n)
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"], end["transactionInfo"]["chargingState"]) \
        == ("EVCommunicationLost", "Local", "Idle")
    assert_gapless(cs, tx)
    assert cs.failures() == []


async def test_TC_E_22_CS_stop_point_energy_transfer(strict201, sim201_factory):
    """TxStopPoint EnergyTransfer (E06.FR.07): the EV stops drawing: the transaction ends, StoppedByEV."""
    cs = strict201
    s = await sim201_factory(cs.url, {"TxCtrlr/TxStopPoint": "EnergyTransfer"})
    await s.online()
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    await s.state("Charging")
    s.world.set_load(0)
    end = await ended(cs, n)
    assert end["transactionInfo"]["stoppedReason"] == "StoppedByEV"
    assert cs.failures() == []


async def test_TC_E_28_to_34_CS_get_transaction_status(strict201, sim201_factory):
    """TC_E_28_CS unknown (E14.FR.01), TC_E_30_CS ongoing without queue (E14.FR.02/05), TC_E_29_CS / TC_E_31_CS
    with messages in the queue (E14.FR.04: the central system does not answer meanwhile), TC_E_32_CS ended
    (E14.FR.03), TC_E_33_CS / TC_E_34_CS without a transactionId (E14.FR.06-08)."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    assert await cs.command("GetTransactionStatus", {"transactionId": "unknown"}) == \
        {"ongoingIndicator": False, "messagesInQueue": False}
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    tx = (await started(cs, n))["transactionInfo"]["transactionId"]
    await s.idle()
    assert await cs.command("GetTransactionStatus", {"transactionId": tx}) == \
        {"ongoingIndicator": True, "messagesInQueue": False}
    assert await cs.command("GetTransactionStatus", {}) == {"messagesInQueue": False}
    await cs.command("__answer", {"method": "TransactionEvent", "result": {"error": "InternalError"}})
    await s.world.tap(UID, hold_s=0.15)
    await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Ended", after=n)
    assert await cs.command("GetTransactionStatus", {"transactionId": tx}) == \
        {"ongoingIndicator": False, "messagesInQueue": True}
    assert await cs.command("GetTransactionStatus", {}) == {"messagesInQueue": True}
    await cs.command("__answer", {"method": "TransactionEvent", "result": None})
    await s.idle()
    assert await cs.command("GetTransactionStatus", {"transactionId": tx}) == \
        {"ongoingIndicator": False, "messagesInQueue": False}
    assert cs.failures() == []


async def test_TC_E_41_42_50_51_CS_retries_then_the_next_one(strict201, sim201_factory):
    """E13.FR.02/03: a TransactionEvent answered with a CALLERROR is sent again, MessageAttemptInterval x the
    tries before apart, the same seqNo (TC_E_51_CS: then answered, TC_E_42_CS); after MessageAttempts tries it
    is held for the operator and the next one goes (E13.FR.04, TC_E_41_CS, TC_E_50_CS): the Ended arrives, a gap
    where the held one was; `station sessions --resend` sends it again, the very same event (seqNo, content)."""
    cs = strict201
    s = await sim201_factory(cs.url, {"OCPPCommCtrlr/MessageAttemptInterval[TransactionEvent]": 25,
                                      "OCPPCommCtrlr/MessageAttempts[TransactionEvent]": 3})  # 0.5 s x tries
    await s.online()
    await cs.command("__answer", {"method": "TransactionEvent", "result": {"error": "InternalError"}})
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    await cs.wait(lambda e: len(events(cs, n)) >= 2)
    await cs.command("__answer", {"method": "TransactionEvent", "result": None})
    await s.state("Charging")
    await s.world.tap(UID, hold_s=0.15)
    end = await ended(cs, n)
    await s.idle()
    seqs = [p["seqNo"] for p in events(cs, n)]
    assert seqs[:2] == [0, 0] and seqs == sorted(seqs) and len(set(seqs)) == end["seqNo"] + 1
    s.world.plug(False)
    await s.state("Available")
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    start = await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Started", after=n)
    tx = start["transactionInfo"]["transactionId"]
    await s.idle()
    await cs.command("__answer", {"method": "TransactionEvent", "result": {"error": "InternalError"}})
    m = len(cs.events)
    s.world.set_load(0)  # Charging -> SuspendedEV: an Updated, refused three times
    await cs.wait(lambda e: len(events(cs, m)) >= 3)
    await cs.command("__answer", {"method": "TransactionEvent", "result": None})
    await s.world.tap(UID, hold_s=0.15)
    end = await ended(cs, n)
    await s.idle()
    refused = events(cs, m)[0]
    assert [p["seqNo"] for p in events(cs, m)][:3] == [refused["seqNo"]] * 3  # three tries, then the next
    assert end["seqNo"] > refused["seqNo"]
    session = s.store.sessions(("stopped",))[-1]
    [(item, reason)] = s.store.held(session.id)
    assert item.kind.value == "tx_event" and f"TransactionEvent seqNo {refused['seqNo']} not processed after 3 tries" in reason
    k = len(cs.events)
    assert s.charger.resend_held(session.id) == 1
    await s.idle()
    assert events(cs, k) == [refused] and s.store.held(session.id) == []  # the same event, seqNo and all
    assert sorted({p["seqNo"] for p in of_tx(cs, tx)}) == list(range(end["seqNo"] + 1))  # the gap filled
    assert cs.failures() == []


async def test_a_held_started_holds_its_transaction_behind_it(strict201, sim201_factory):
    """A Started the central system never takes (MessageAttempts tries): held, and every later event of that
    transaction is held behind it at once (no tries spent on a transaction the central system does not know);
    the next session's transaction goes meanwhile. The operator's resend sends them all, in seqNo order, the
    Started identical to its first tries."""
    cs = strict201
    s = await sim201_factory(cs.url, {"OCPPCommCtrlr/MessageAttemptInterval[TransactionEvent]": 5,
                                      "OCPPCommCtrlr/MessageAttempts[TransactionEvent]": 2})
    await s.online()
    await cs.command("__answer", {"method": "TransactionEvent", "result": {"error": "InternalError"}})
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    await cs.wait(lambda e: len(events(cs, n)) >= 2)
    await cs.command("__answer", {"method": "TransactionEvent", "result": None})
    first = events(cs, n)[0]
    assert first["eventType"] == "Started" and events(cs, n) == [first, first]
    await s.state("Charging")
    s.world.consume(500)
    await asyncio.sleep(0.3)
    await s.world.tap(UID, hold_s=0.15)
    s.world.plug(False)
    await s.state("Available")
    session = s.store.sessions(("stopped",))[-1]
    m = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    other = await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Started", after=m)
    assert other["transactionInfo"]["transactionId"] != first["transactionInfo"]["transactionId"]
    await s.idle()
    assert len(s.store.held(session.id)) >= 3 and events(cs, n)[:2] == [first, first]
    tx = first["transactionInfo"]["transactionId"]
    assert len(of_tx(cs, tx)) == 2  # nothing of it went after its Started
    k = len(cs.events)
    s.charger.resend_held(session.id)
    await s.idle()
    mine = [p for p in events(cs, k) if p["transactionInfo"]["transactionId"] == tx]
    assert mine[0] == first and [p["seqNo"] for p in mine] == list(range(len(mine)))
    assert mine[-1]["eventType"] == "Ended" and s.store.held(session.id) == []
    billed = energy(mine[-1]["meterValue"], "Transaction.End") - energy(first["meterValue"], "Transaction.Begin")
    assert billed == session.energy_wh >= 500
    assert cs.failures() == []


async def test_a_late_answer_releases_a_held_event_without_a_second_send(strict201, sim201_factory):
    """The central system answers a TransactionEvent after the response timeout: the try failed (and with
    MessageAttempts 1 the event is held), but the late answer says it was processed: the held event goes back
    into the queue and is confirmed without a send; the central system has it exactly once, the rest follows."""
    cs = strict201
    s = await sim201_factory(cs.url, {"OCPPCommCtrlr/MessageAttempts[TransactionEvent]": 1})
    await s.online()
    await cs.command("__answer", {"method": "TransactionEvent", "result": {"delay": 3}})  # the timeout is 2 s
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    start = await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Started", after=n)
    await cs.command("__answer", {"method": "TransactionEvent", "result": None})
    await s.state("Charging")
    await s.world.tap(UID, hold_s=0.15)
    end = await ended(cs, n, timeout=20)
    await s.idle()
    mine = of_tx(cs, start["transactionInfo"]["transactionId"])
    assert [p["seqNo"] for p in mine] == list(range(end["seqNo"] + 1))  # the Started once, nothing twice
    session = s.store.sessions(("stopped",))[-1]
    assert s.store.held(session.id) == [] and "rejected" not in session.extra  # processed, not given up
    assert session.extra["delivered"] is True
    assert cs.failures() == []


async def test_power_loss_ends_the_transaction_after_the_restart(strict201, sim201_factory):
    """A power cut (the process killed) in a transaction: after the restart the journal closes the session at
    the meter's reading of that moment, and the transaction ends at the central system with stoppedReason
    PowerLoss (E07.FR.06; triggerReason AbnormalCondition, E06.FR.16), its seqNo continuing where it stopped,
    the energy billed equal to the meter's advance."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    start = await started(cs, n)
    await s.state("Charging")
    s.world.consume(700)
    await asyncio.sleep(0.4)
    await s.station.stop(graceful=False)
    s2 = await sim201_factory(cs.url)
    await s2.online()
    end = await ended(cs, n)
    tx = start["transactionInfo"]["transactionId"]
    assert end["transactionInfo"]["transactionId"] == tx
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"]) == ("AbnormalCondition", "PowerLoss")
    assert end.get("offline") is True  # it happened while the station was not connected
    assert_gapless(cs, tx)
    billed = energy(end["meterValue"], "Transaction.End") - energy(start["meterValue"], "Transaction.Begin")
    assert billed == s2.store.sessions(("stopped",))[-1].energy_wh >= 700
    boot = [e["params"] for e in cs.events[n:] if e["event"] == "call" and e["method"] == "BootNotification"]
    assert boot and boot[0]["reason"] == "PowerUp"
    assert cs.failures() == []


async def test_a_point_delivered_again_is_the_same_event(strict201, sim201_factory):
    """The kill between the send and the journal's confirmation, replayed: the deliverer offers the same outbox
    item again (after the restart) and the same TransactionEvent goes out (same seqNo, same content), because
    the event is journaled with the transaction's state before it is sent; the next item continues at seqNo+1.
    (The kill test, tests/test_torture.py, does this with real kills.)"""
    cs = strict201
    s = await sim201_factory(cs.url, {"SampledDataCtrlr/TxUpdatedInterval": 0})
    await s.online()
    version = s.backend.versions["2.0.1"]
    s.charger.deliverer = None  # the test plays the deliverer now
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    await s.state("Charging")
    items = list(s.store.messages())
    for item in items:
        session = s.store.session(item.session_id)
        await version.tx.deliver(item, session)
        again = s.store.session(item.session_id)  # as after a restart: read back from the journal
        await version.tx.deliver(item, again)
        s.store.confirm(item)
    sent = events(cs, n)
    firsts = sent[::2]
    assert sent[1::2] == firsts  # each one twice, identical
    assert [p["seqNo"] for p in firsts] == list(range(len(firsts))) and firsts[0]["eventType"] == "Started"
    assert cs.failures() == []
