"""OCPP 2.0.1 transactions (blocks E, F, J) on the whole simulated station, judged by an independent strict
central system (ocpp-rpc, strict mode, its bundled 2.0.1 schemas). Zero schema failures, every time.

What the tests check at the central system is what Part 2 says a TransactionEvent carries: seqNo from 0
without gaps (E01.FR.07), the triggerReason of each event (E01.FR.15), chargingState when it changes
(E01.FR.18), idToken once when authorized and once when it ends (E03.FR.01, E07.FR.02), evse once
(E01.FR.16), stoppedReason in Ended (E06.FR.08), and meter values that add up to the meter's advance.
"""

from __future__ import annotations

import asyncio

from ocpp_flows import UID
from strict_peer import TimedCS


def events(cs: TimedCS, after: int = 0) -> list[dict]:
    return [e["params"] for e in cs.events[after:] if e["event"] == "call" and e["method"] == "TransactionEvent"]


def of_tx(cs: TimedCS, tx_id: str) -> list[dict]:
    return [p for p in events(cs) if p["transactionInfo"]["transactionId"] == tx_id]


def energy(mv: list[dict], context: str) -> int:
    return next(int(v["value"]) for m in mv for v in m["sampledValue"]
                if v.get("context") == context and v.get("measurand", "Energy.Active.Import.Register")
                == "Energy.Active.Import.Register" and "phase" not in v)


async def ended(cs: TimedCS, after: int = 0, timeout: float = 15.0) -> dict:
    e = await cs.wait(lambda e: e in cs.events[after:] and e["event"] == "call" and e["method"] == "TransactionEvent"
                      and e["params"]["eventType"] == "Ended", timeout=timeout)
    return e["params"]


def assert_gapless(cs: TimedCS, tx_id: str) -> list[dict]:
    mine = of_tx(cs, tx_id)
    assert [p["seqNo"] for p in mine] == list(range(len(mine))), [p["seqNo"] for p in mine]
    assert mine[0]["eventType"] == "Started" and mine[-1]["eventType"] == "Ended"
    assert [p for p in mine if "evse" in p] == [mine[0]]
    return mine


async def test_TC_E_03_CS_cable_first_local_start_and_stop(strict201, sim201_factory):
    """TC_E_03_CS (E02), TC_E_01_CS (E01.FR.05 PowerPathClosed), TC_E_15_CS (E06.FR.03), TC_E_06_CS (E07):
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
