"""OCPP 2.0.1 reservations, the Part 6 answers of ReserveNow (H01-H04) for a station with one EVSE: another
token may not start remotely, Occupied while reserved or charging, Unavailable, the same for an unspecified
EVSE (there is one), a replaced reservation, one removed when the EVSE becomes Unavailable. The whole
simulated station against the strict 2.0.1 central system (ocpp-rpc, strict mode); zero schema failures."""

from __future__ import annotations

import asyncio

from ocpp201_support import calls, charging, in_seconds, status
from ocpp_flows import OTHER, UID

TOKEN = {"idToken": UID, "type": "ISO14443"}
OTHER_TOKEN = {"idToken": OTHER, "type": "ISO14443"}
EVSE = {"id": 1}


async def reserve(cs, rid: int, seconds: float = 600, token: dict = TOKEN, **extra) -> str:
    answer = await cs.command("ReserveNow", {"id": rid, "expiryDateTime": in_seconds(seconds), "idToken": token,
                                             **extra})
    return answer["status"]


async def test_TC_H_02_03_09_23_CS_a_reserved_evse(strict201, sim201_factory):
    """TC_H_08_CS: an unspecified EVSE is reserved (the one there is: Reserved); TC_H_02_CS (H01.FR.23): a remote
    start for another idToken is Rejected; TC_H_03_CS / TC_H_09_CS (H01.FR.11): another reservation, for the
    EVSE or unspecified, is Occupied; TC_H_23_CS (H01.FR.02): the same reservation id again replaces it
    (Accepted, the new expiry); the reserved token starts remotely."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    n = len(cs.events)
    assert await reserve(cs, 41) == "Accepted"  # no evseId: TC_H_08
    await status(cs, "Reserved", n)
    answer = await cs.command("RequestStartTransaction", {"idToken": OTHER_TOKEN, "remoteStartId": 1, "evseId": 1})
    assert answer["status"] == "Rejected"  # TC_H_02
    assert await reserve(cs, 42, evseId=1) == "Occupied"  # TC_H_03
    assert await reserve(cs, 43) == "Occupied"  # TC_H_09
    assert await reserve(cs, 41, seconds=1200, evseId=1) == "Accepted"  # TC_H_23
    assert s.charger.machine.reserved() and s.store.get_json("ocpp201.reservation")["id"] == 41
    s.world.plug()
    answer = await cs.command("RequestStartTransaction", {"idToken": TOKEN, "remoteStartId": 2, "evseId": 1})
    assert answer["status"] == "Accepted"
    started = await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Started", after=n)
    assert (started["reservationId"], started["transactionInfo"]["remoteStartId"]) == (41, 2)
    assert cs.failures() == []


async def test_TC_H_04_06_10_12_21_CS_occupied_and_unavailable(strict201, sim201_factory):
    """TC_H_04_CS / TC_H_10_CS (H01.FR.04): during a transaction ReserveNow is Occupied, for the EVSE or
    unspecified; TC_H_06_CS / TC_H_12_CS (H01.FR.05): an Unavailable EVSE answers Unavailable; TC_H_21_CS
    (H01.FR.16/17): a reserved EVSE made Inoperative becomes Unavailable and the reservation is Removed
    (ReservationStatusUpdate); Operative again, it is Available."""
    cs = strict201
    s = await sim201_factory(cs.url)
    await s.online()
    await charging(cs, s)
    assert await reserve(cs, 51, evseId=1) == "Occupied"  # TC_H_04
    assert await reserve(cs, 52) == "Occupied"  # TC_H_10
    await s.world.tap(UID, hold_s=0.15)
    s.world.plug(False)
    await s.state("Available")
    n = len(cs.events)
    assert (await cs.command("ChangeAvailability", {"operationalStatus": "Inoperative", "evse": EVSE}))[
        "status"] == "Accepted"
    await status(cs, "Unavailable", n)
    assert await reserve(cs, 53, evseId=1) == "Unavailable"  # TC_H_06
    assert await reserve(cs, 54) == "Unavailable"  # TC_H_12
    assert (await cs.command("ChangeAvailability", {"operationalStatus": "Operative", "evse": EVSE}))[
        "status"] == "Accepted"
    await status(cs, "Available", n)
    n = len(cs.events)
    assert await reserve(cs, 55, evseId=1) == "Accepted"
    await status(cs, "Reserved", n)
    assert (await cs.command("ChangeAvailability", {"operationalStatus": "Inoperative", "evse": EVSE}))[
        "status"] == "Accepted"  # TC_H_21
    await status(cs, "Unavailable", n)
    update = await cs.call_from_cp("ReservationStatusUpdate", after=n)
    assert update == {"reservationId": 55, "reservationUpdateStatus": "Removed"}
    assert (await cs.command("ChangeAvailability", {"operationalStatus": "Operative", "evse": EVSE}))[
        "status"] == "Accepted"
    await status(cs, "Available", n)
    await asyncio.sleep(0.3)
    assert not s.charger.machine.reserved() and calls(cs, "TransactionEvent", n) == []
    assert cs.failures() == []
