"""One station, two OCPP versions: backend.ocpp.versions offers the websocket subprotocols in order of
preference and the central system's choice decides the version of the connection (OCPP-J 1.6 §3.1.2,
OCPP 2.0.1 Part 4 §3.1.2). Judged by the independent strict central system (ocpp-rpc, strict mode) speaking
1.6 only, 2.0.1 only, or both."""

from __future__ import annotations

import strict_peer
from ocpp_flows import UID


def calls(cs, method: str, after: int = 0) -> list[dict]:
    return [e["params"] for e in cs.events[after:] if e["event"] == "call" and e["method"] == method]


async def a_session(cs, s) -> None:
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    await s.state("Charging")
    s.world.consume(321)
    await s.world.tap(UID, hold_s=0.15)
    s.world.plug(False)
    await s.state("Available")
    await s.idle()
    assert calls(cs, "Authorize", n)


async def test_both_offered_a_1_6_central_system_speaks_1_6(strict_cs, sim201_factory):
    """versions = ["2.0.1", "1.6"] at a central system that knows 1.6 only: ocpp1.6 is chosen and the whole
    1.6 session runs (StartTransaction, StopTransaction with the meter's advance), zero schema failures."""
    cs = strict_cs
    s = await sim201_factory(cs.url, versions=["2.0.1", "1.6"])
    await s.online()
    assert (await cs.wait(lambda e: e["event"] == "connected"))["protocol"] == "ocpp1.6"
    await a_session(cs, s)
    start, stop = calls(cs, "StartTransaction")[-1], calls(cs, "StopTransaction")[-1]
    assert stop["meterStop"] - start["meterStart"] == s.store.sessions(("stopped",))[-1].energy_wh >= 321
    assert calls(cs, "TransactionEvent") == [] and s.store.get_json("ocpp.version") == "1.6"
    assert cs.failures() == []


async def test_both_offered_a_2_0_1_central_system_speaks_2_0_1(strict201, sim201_factory):
    """The same configuration at a central system that knows 2.0.1: ocpp2.0.1 is chosen, TransactionEvents."""
    cs = strict201
    s = await sim201_factory(cs.url, versions=["2.0.1", "1.6"])
    await s.online()
    assert (await cs.wait(lambda e: e["event"] == "connected"))["protocol"] == "ocpp2.0.1"
    await a_session(cs, s)
    assert [p["eventType"] for p in calls(cs, "TransactionEvent")][::len(calls(cs, "TransactionEvent")) - 1] == \
        ["Started", "Ended"]
    assert s.store.get_json("ocpp.version") == "2.0.1"
    assert cs.failures() == []


async def test_the_central_systems_preference_decides(strict_factory, sim201_factory):
    """A central system that speaks both takes its own first choice (ocpp-rpc: its list order) among those the
    station offers (the station's order is only its preference)."""
    both = await strict_factory({"protocols": ["ocpp1.6", "ocpp2.0.1"]})
    s = await sim201_factory(both.url, versions=["2.0.1", "1.6"])
    await s.online()
    assert (await both.wait(lambda e: e["event"] == "connected"))["protocol"] == "ocpp1.6"
    assert calls(both, "BootNotification")[0]["chargePointVendor"] == "station"
    assert both.failures() == [] and strict_peer


async def test_a_central_system_changing_version_does_not_block_the_outbox(strict201, strict_cs, sim201_factory):
    """A transaction whose Ended waits in the journal while the central system is replaced by one speaking
    1.6: the 2.0.1 messages it cannot take are refused for good, the reasons kept on the session, and the
    1.6 session after them is delivered."""
    s = await sim201_factory(strict201.url, versions=["2.0.1", "1.6"])
    await s.online()
    n = len(strict201.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    await strict201.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Started", after=n)
    await s.state("Charging")
    await strict201.command("__outage", {"seconds": 60})
    await s.world.tap(UID, hold_s=0.15)
    await s.state("Finishing")
    assert s.store.pending_messages() > 0
    await s.station.stop(graceful=False)
    s = await sim201_factory(strict_cs.url, versions=["2.0.1", "1.6"])
    await s.online()
    await a_session(strict_cs, s)
    first = s.store.sessions(("stopped",))[0]
    assert "stop:" in first.extra["rejected"] and first.extra["ocpp201"]["started"]  # refused, visible, kept
    assert calls(strict_cs, "StopTransaction") and strict_cs.failures() == []
