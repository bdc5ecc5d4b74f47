"""OCPP 2.0.1 reset (B11, B12), availability (G01, G03, G04), reservations (H01-H04) and the small remote
commands (F05, F06) on the whole simulated station, against the independent strict 2.0.1 central system
(ocpp-rpc, strict mode, its bundled schemas). Zero schema failures, every time."""

from __future__ import annotations

import asyncio

from ocpp201_support import calls, charging, exited, in_seconds, status, statuses
from ocpp201_support import tx_ended as ended
from ocpp_flows import OTHER, UID


async def test_TC_B_20_CS_reset_without_transaction_and_the_next_boot_says_why(strict201, sim201_factory):
    """TC_B_20_CS (B11.FR.03/04, B12): Reset OnIdle without a transaction: Accepted, the station restarts; the
    next BootNotification gives the reason RemoteReset (B01.FR.09) and a ResetOrReboot security event."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    assert (await cs.command("Reset", {"type": "OnIdle"}))["status"] == "Accepted"
    assert await exited(s) == "hard"
    await s.station.stop(graceful=False)
    n = len(cs.events)
    s2 = await sim201_factory(cs.url)
    await s2.online()
    boot = (await cs.call_from_cp("BootNotification", after=n))
    assert boot["reason"] == "RemoteReset"
    await cs.call_from_cp("SecurityEventNotification", lambda p: p["type"] == "ResetOrReboot")
    assert cs.failures() == []


async def test_TC_B_21_22_CS_reset_with_a_transaction(strict201, sim201_factory):
    """TC_B_21_CS: OnIdle with a transaction is Scheduled (B12.FR.01), the transaction ends normally first
    (B12.FR.03), then the restart; TC_B_22_CS: Immediate is Accepted (B12.FR.02) and the Ended
    (ResetCommand, ImmediateReset) is sent before the restart (B12.FR.04)."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    tx = await charging(cs, s)
    assert (await cs.command("Reset", {"type": "OnIdle"}))["status"] == "Scheduled"
    await asyncio.sleep(0.3)
    assert s.charger.exit_request is None and s.charger.session is not None
    n = len(cs.events)
    await s.world.tap(UID, hold_s=0.15)
    end = await ended(cs, tx, n)
    assert end["transactionInfo"]["stoppedReason"] == "Local"
    await exited(s)
    await s.station.stop(graceful=False)
    s2 = await sim201_factory(cs.url)
    await s2.online()
    tx2 = await charging(cs, s2, OTHER)
    n = len(cs.events)
    assert (await cs.command("Reset", {"type": "Immediate"}))["status"] == "Accepted"
    end = await ended(cs, tx2, n)
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"]) == ("ResetCommand", "ImmediateReset")
    await exited(s2)
    assert s2.store.pending_messages() == 0  # answered before the exit
    assert cs.failures() == []


async def test_TC_B_25_27_CS_reset_of_the_evse(strict201, sim201_factory):
    """TC_B_25_CS / TC_B_27_CS (B11.FR.08, B12.FR.08): a reset of EVSE 1 ends its transaction
    (ImmediateReset) and the station stays up; an unknown EVSE is Rejected (B11.FR.09)."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    assert (await cs.command("Reset", {"type": "Immediate", "evseId": 2}))["status"] == "Rejected"
    tx = await charging(cs, s)
    n = len(cs.events)
    assert (await cs.command("Reset", {"type": "Immediate", "evseId": 1}))["status"] == "Accepted"
    end = await ended(cs, tx, n)
    assert end["transactionInfo"]["stoppedReason"] == "ImmediateReset"
    await asyncio.sleep(0.3)
    assert s.charger.exit_request is None
    assert cs.failures() == []


async def test_TC_G_03_to_G_19_CS_change_availability(strict201, sim201_factory):
    """TC_G_03/04_CS (EVSE), TC_G_05/06_CS (station), TC_G_07/08_CS (connector): Inoperative makes the
    connector Unavailable and Operative Available again (G03.FR.04, G04.FR.05); TC_G_09/10/12/13/15/16_CS:
    the state it is in already is Accepted (G03.FR.03, G04.FR.04); a station made Inoperative stays Unavailable
    when its EVSE is made Operative (G04.FR.07); TC_G_11/14/17_CS: during a transaction it is Scheduled
    (G03.FR.05, G04.FR.06) and happens when the EV leaves (G01.FR.05); TC_G_18/19/21_CS: it persists over a
    power cut (G03.FR.08, G04.FR.09)."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    await status(cs, "Available")
    for evse in (None, {"id": 1}, {"id": 1, "connectorId": 1}):
        params = {"operationalStatus": "Inoperative", **({"evse": evse} if evse else {})}
        n = len(cs.events)
        assert (await cs.command("ChangeAvailability", params))["status"] == "Accepted"
        await status(cs, "Unavailable", n)
        assert (await cs.command("ChangeAvailability", params))["status"] == "Accepted"
        assert (await cs.command("ChangeAvailability", {**params, "operationalStatus": "Operative"}))["status"] == "Accepted"
        await status(cs, "Available", n)
    assert (await cs.command("ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 2}}))["status"] \
        == "Rejected"
    n = len(cs.events)
    assert (await cs.command("ChangeAvailability", {"operationalStatus": "Inoperative"}))["status"] == "Accepted"
    await status(cs, "Unavailable", n)
    assert (await cs.command("ChangeAvailability", {"operationalStatus": "Operative", "evse": {"id": 1}}))["status"] \
        == "Accepted"
    await asyncio.sleep(0.3)
    assert statuses(cs, n) == ["Unavailable"]  # the station is still Inoperative
    await s.station.stop(graceful=False)
    n = len(cs.events)
    s = await sim201_factory(cs.url)
    await s.online()
    await status(cs, "Unavailable", n)  # kept over the power cut
    assert (await cs.command("ChangeAvailability", {"operationalStatus": "Operative"}))["status"] == "Accepted"
    await status(cs, "Available", n)
    tx = await charging(cs, s)
    assert (await cs.command("ChangeAvailability", {"operationalStatus": "Inoperative",
                                                   "evse": {"id": 1, "connectorId": 1}}))["status"] == "Scheduled"
    n = len(cs.events)
    await s.world.tap(UID, hold_s=0.15)
    await ended(cs, tx, n)
    s.world.plug(False)
    await status(cs, "Unavailable", n)
    assert "Available" not in statuses(cs, n)
    assert cs.failures() == []


async def test_TC_H_01_07_15_17_18_19_24_CS_reservations(strict201, sim201_factory):
    """TC_H_01_CS (H01.FR.03/23, H03.FR.01): a reservation of EVSE 1 makes it Reserved, another card may not
    start there, the reserved card starts and its first TransactionEvent carries the reservationId (H01.FR.15,
    E03.FR.03); TC_H_17_CS / TC_H_18_CS (H02): cancel, and cancel of an unknown one; TC_H_07_CS (H04.FR.01):
    one that runs out is reported Expired; TC_H_19_CS (H03.FR.04) / TC_H_24_CS (no EVSE given, a groupIdToken): a
    card of the reservation's group may use it;
    TC_H_15_CS: a connector type the station does not have is Rejected."""
    cs = strict201
    await cs.command("__setTags", {"tags": {OTHER: {"status": "Accepted", "groupIdToken":
                                                    {"idToken": "FLEET", "type": "Central"}}}})
    s = await sim201_factory(cs.url)
    await s.online()
    token = {"idToken": UID, "type": "ISO14443"}
    n = len(cs.events)
    assert (await cs.command("ReserveNow", {"id": 7, "expiryDateTime": in_seconds(600), "idToken": token,
                                            "evseId": 1}))["status"] == "Accepted"
    await status(cs, "Reserved", n)
    await s.world.tap(OTHER, hold_s=0.15)
    await asyncio.sleep(0.3)
    assert s.charger.session is None and calls(cs, "TransactionEvent", n) == []
    assert (await cs.command("CancelReservation", {"reservationId": 7}))["status"] == "Accepted"
    assert (await cs.command("CancelReservation", {"reservationId": 99}))["status"] == "Rejected"
    await status(cs, "Available", n)
    assert (await cs.command("ReserveNow", {"id": 8, "expiryDateTime": in_seconds(600), "idToken": token,
                                            "connectorType": "sType3"}))["status"] == "Rejected"
    n = len(cs.events)
    assert (await cs.command("ReserveNow", {"id": 9, "expiryDateTime": in_seconds(600), "idToken": token}))["status"] \
        == "Accepted"
    await status(cs, "Reserved", n)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    started = await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Started", after=n)
    assert started["reservationId"] == 9
    await s.state("Charging")
    await s.world.tap(UID, hold_s=0.15)
    await ended(cs, started["transactionInfo"]["transactionId"], n)
    s.world.plug(False)
    await s.state("Available")
    n = len(cs.events)
    assert (await cs.command("ReserveNow", {"id": 10, "expiryDateTime": in_seconds(600), "idToken": token,
                                            "groupIdToken": {"idToken": "FLEET", "type": "Central"}}))["status"] == "Accepted"
    s.world.plug()
    await s.world.tap(OTHER, hold_s=0.15)
    started = await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Started", after=n)
    assert started["reservationId"] == 10 and started["idToken"]["idToken"] == OTHER
    await s.world.tap(OTHER, hold_s=0.15)
    await ended(cs, started["transactionInfo"]["transactionId"], n)
    s.world.plug(False)
    await s.state("Available")
    n = len(cs.events)
    assert (await cs.command("ReserveNow", {"id": 11, "expiryDateTime": in_seconds(3), "idToken": token}))["status"] \
        == "Accepted"
    update = await cs.call_from_cp("ReservationStatusUpdate", after=n)
    assert update == {"reservationId": 11, "reservationUpdateStatus": "Expired"}
    assert cs.failures() == []


async def test_TC_F_10_and_unlock_of_a_fixed_cable(strict201, sim201_factory):
    """TC_F_10_CS (F05.FR.03): an unknown connector; F05.FR.02: with a transaction OngoingAuthorizedTransaction
    and nothing stops; without one UnlockFailed (F05.FR.05): the cable is fixed to the station, there is no
    lock to release (TC_F_05/06/07_CS need a connector lock: not applicable)."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    assert (await cs.command("UnlockConnector", {"evseId": 1, "connectorId": 2}))["status"] == "UnknownConnector"
    assert (await cs.command("UnlockConnector", {"evseId": 1, "connectorId": 1}))["status"] == "UnlockFailed"
    tx = await charging(cs, s)
    n = len(cs.events)
    assert (await cs.command("UnlockConnector", {"evseId": 1, "connectorId": 1}))["status"] == \
        "OngoingAuthorizedTransaction"
    await asyncio.sleep(0.3)
    assert [p for p in calls(cs, "TransactionEvent", n) if p["eventType"] == "Ended"] == [] and tx
    assert cs.failures() == []


async def test_TC_F_11_to_F_27_CS_trigger_message(strict201, sim201_factory):
    """F06: the answer first, then the message (F06.FR.04): TC_F_11/12_CS MeterValues (AlignedDataCtrlr
    measurands, F06.FR.06), TC_F_13/14_CS TransactionEvent with triggerReason Trigger (F06.FR.07, Rejected
    without a transaction), TC_F_15_CS LogStatusNotification Idle (F06.FR.15), TC_F_18_CS
    FirmwareStatusNotification Idle (F06.FR.16), TC_F_20_CS Heartbeat, TC_F_23_CS StatusNotification,
    TC_F_26_CS BootNotification after Accepted: Rejected (F06.FR.17), TC_F_27_CS NotImplemented (F06.FR.08)."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    await status(cs, "Available")
    for message, method, check in (("MeterValues", "MeterValues", lambda p: p["evseId"] == 1),
                                   ("LogStatusNotification", "LogStatusNotification", lambda p: p["status"] == "Idle"),
                                   ("FirmwareStatusNotification", "FirmwareStatusNotification",
                                    lambda p: p["status"] == "Idle"),
                                   ("Heartbeat", "Heartbeat", lambda p: True),
                                   ("StatusNotification", "StatusNotification", lambda p: p["connectorStatus"] == "Available")):
        n = len(cs.events)
        assert (await cs.command("TriggerMessage", {"requestedMessage": message,
                                                    "evse": {"id": 1, "connectorId": 1}}))["status"] == "Accepted"
        await cs.call_from_cp(method, check, after=n)
    assert (await cs.command("TriggerMessage", {"requestedMessage": "TransactionEvent"}))["status"] == "Rejected"
    assert (await cs.command("TriggerMessage", {"requestedMessage": "BootNotification"}))["status"] == "Rejected"
    assert (await cs.command("TriggerMessage", {"requestedMessage": "SignV2GCertificate"}))["status"] == "NotImplemented"
    tx = await charging(cs, s)
    n = len(cs.events)
    assert (await cs.command("TriggerMessage", {"requestedMessage": "TransactionEvent",
                                                "evse": {"id": 1}}))["status"] == "Accepted"
    event = await cs.call_from_cp("TransactionEvent", lambda p: p["triggerReason"] == "Trigger", after=n)
    assert event["transactionInfo"] == {"transactionId": tx, "chargingState": "Charging"} and event["meterValue"]
    assert cs.failures() == []
