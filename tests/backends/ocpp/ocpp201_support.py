"""Helpers of the OCPP 2.0.1 tests: what the strict central system saw, and a station driven through a
transaction. Shared by the test modules (no test module imports another)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from ocpp_flows import UID
from strict_peer import TimedCS


def in_seconds(s: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def calls(cs: TimedCS, method: str, after: int = 0) -> list[dict]:
    return [e["params"] for e in cs.events[after:] if e["event"] == "call" and e["method"] == method]


def statuses(cs: TimedCS, after: int = 0) -> list[str]:
    return [p["connectorStatus"] for p in calls(cs, "StatusNotification", after)]


async def status(cs: TimedCS, value: str, after: int = 0) -> None:
    await cs.call_from_cp("StatusNotification", lambda p: p["connectorStatus"] == value, after=after)


async def exited(s, timeout: float = 20.0) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while s.charger.exit_request is None:
        assert loop.time() < deadline, "the station did not exit"
        await asyncio.sleep(0.02)
    return s.charger.exit_request


async def charging(cs: TimedCS, s, tag: str = UID) -> str:
    """Plug, card, Charging: the transactionId."""
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(tag, hold_s=0.15)
    started = await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Started", after=n)
    await s.state("Charging")
    return started["transactionInfo"]["transactionId"]


async def tx_ended(cs: TimedCS, tx: str, after: int = 0) -> dict:
    return await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Ended"
                                 and p["transactionInfo"]["transactionId"] == tx, after=after)


def events(cs: TimedCS, after: int = 0) -> list[dict]:
    return [e["params"] for e in cs.events[after:] if e["event"] == "call" and e["method"] == "TransactionEvent"]


def of_tx(cs: TimedCS, tx_id: str) -> list[dict]:
    return [p for p in events(cs) if p["transactionInfo"]["transactionId"] == tx_id]


def energy(mv: list[dict], context: str) -> int:
    return next(int(v["value"]) for m in mv for v in m["sampledValue"]
                if v.get("context") == context and v.get("measurand", "Energy.Active.Import.Register")
                == "Energy.Active.Import.Register" and "phase" not in v)


async def any_ended(cs: TimedCS, after: int = 0, timeout: float = 15.0) -> dict:
    e = await cs.wait(lambda e: e in cs.events[after:] and e["event"] == "call" and e["method"] == "TransactionEvent"
                      and e["params"]["eventType"] == "Ended", timeout=timeout)
    return e["params"]


def assert_gapless(cs: TimedCS, tx_id: str) -> list[dict]:
    mine = of_tx(cs, tx_id)
    assert [p["seqNo"] for p in mine] == list(range(len(mine))), [p["seqNo"] for p in mine]
    assert mine[0]["eventType"] == "Started" and mine[-1]["eventType"] == "Ended"
    # E01.FR.16: evse in the first event, and the connector once, in the first event after the EV connected
    assert "evse" in mine[0] and len([p for p in mine if "connectorId" in p.get("evse", {})]) <= 1
    assert len([p for p in mine if "evse" in p]) <= 2
    return mine


TOKEN = {"idToken": UID, "type": "ISO14443"}


FLEET = {"idToken": "FLEET", "type": "Central"}


def tx_events(cs: TimedCS, after: int = 0) -> list[dict]:
    return calls(cs, "TransactionEvent", after)


def stamp(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def profile(pid: int, purpose: str, kind: str, periods: list[tuple[int, float]], unit: str = "A", stack: int = 0,
            start: str | None = None, **more) -> dict:
    schedule = {"id": pid, "chargingRateUnit": unit,
                "chargingSchedulePeriod": [{"startPeriod": p, "limit": limit} for p, limit in periods]}
    if start:
        schedule["startSchedule"] = start
    return {"id": pid, "stackLevel": stack, "chargingProfilePurpose": purpose, "chargingProfileKind": kind,
            "chargingSchedule": [schedule], **more}
