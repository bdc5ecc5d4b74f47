"""OCPP 2.0.1 authorization (blocks C, D) and the transactions it changes (E05, C15), offline too (E04,
E11, E12), on the whole simulated station against the independent strict 2.0.1 central system (ocpp-rpc,
strict mode, its bundled schemas). Zero schema failures, every time."""

from __future__ import annotations

import asyncio

from ocpp201_support import FLEET, TOKEN, calls, tx_events
from ocpp201_support import any_ended as ended
from ocpp_flows import OTHER, UID
from strict_peer import TimedCS


async def set_vars(cs: TimedCS, **values: str) -> None:
    data = [{"component": {"name": k.split("__")[0]}, "variable": {"name": k.split("__")[1]}, "attributeValue": v}
            for k, v in values.items()]
    result = await cs.command("SetVariables", {"setVariableData": data})
    assert {r["attributeStatus"] for r in result["setVariableResult"]} == {"Accepted"}, result


async def test_TC_C_02_06_07_CS_refused_cards_start_nothing(strict201, sim201_factory):
    """TC_C_02_CS (Invalid / Unknown), TC_C_06_CS (Blocked), TC_C_07_CS (Expired): the central system refuses
    the card: no transaction, no TransactionEvent (E02.FR.20 note), the refusal is cached (C10.FR.01/04)."""
    cs = strict201
    await cs.command("__setTags", {"tags": {UID: {"status": "Blocked"}, OTHER: {"status": "Expired"}}})
    s = await sim201_factory(cs.url)
    await s.online()
    s.world.plug()
    n = len(cs.events)
    for tag in (UID, OTHER):
        await s.world.tap(tag, hold_s=0.15)
        await cs.call_from_cp("Authorize", lambda p, t=tag: p["idToken"]["idToken"] == t, after=n)
    await asyncio.sleep(0.5)
    assert tx_events(cs, n) == [] and s.charger.session is None
    cache = s.backend.versions["2.0.1"].auth.cache
    assert cache.get(f"ISO14443:{UID}")["status"] == "Blocked" and cache.get(f"ISO14443:{OTHER}")["status"] == "Expired"
    assert cs.failures() == []


async def test_TC_C_08_32_33_34_36_37_CS_authorization_cache(strict201, sim201_factory):
    """TC_C_33_CS (C10.FR.04): the cache learns from AuthorizeResponse; TC_C_08_CS / TC_C_36_CS (C12.FR.02,
    LocalPreAuthorize): a cached Accepted card starts without an AuthorizeRequest, and the idToken goes in the
    TransactionEvent; TC_C_34_CS (C10.FR.05): the cache learns from TransactionEventResponse; TC_C_32_CS
    (C10.FR.02): the cache survives a power cut; TC_C_37_CS (C11.FR.03) ClearCache, TC_C_38_CS (C11.FR.04)
    Rejected while the cache is disabled."""
    cs = strict201
    s = await sim201_factory(cs.url, {"AuthCtrlr/LocalPreAuthorize": True})
    await s.online()
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    await cs.call_from_cp("Authorize", after=n)
    await s.state("Charging")
    await s.world.tap(UID, hold_s=0.15)
    await ended(cs, n)
    s.world.plug(False)
    await s.state("Available")
    await s.station.stop(graceful=False)
    s = await sim201_factory(cs.url)
    await s.online()
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    start = await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Started", after=n)
    assert calls(cs, "Authorize", n) == [] and start["idToken"] == TOKEN
    await cs.command("__setTags", {"tags": {UID: {"status": "Accepted", "groupIdToken": FLEET}}})
    await s.world.tap(UID, hold_s=0.15)
    await ended(cs, n)
    await s.idle()
    cache = s.backend.versions["2.0.1"].auth.cache
    assert cache.get(f"ISO14443:{UID}")["parentIdTag"] == "FLEET"  # learnt from the TransactionEventResponse
    assert (await cs.command("ClearCache"))["status"] == "Accepted" and cache.entries == {}
    await set_vars(cs, AuthCacheCtrlr__Enabled="false")
    assert (await cs.command("ClearCache"))["status"] == "Rejected"
    assert cs.failures() == []


async def test_TC_D_01_to_08_10_C_27_40_CS_local_list(strict201, sim201_factory):
    """D01: SendLocalList Full (TC_D_01_CS), Differential update and removal (TC_D_02_CS, TC_D_03_CS), an older
    version: VersionMismatch (TC_D_06_CS), too many: Failed; D02 GetLocalListVersion (TC_D_08_CS); the list
    survives a power cut (TC_D_07_CS); TC_C_27_CS / TC_C_40_CS (C14.FR.02, C09): a card Accepted on the list
    starts without asking and another card of its group stops it (C09.FR.03)."""
    cs = strict201
    s = await sim201_factory(cs.url, {"AuthCtrlr/LocalPreAuthorize": True})
    await s.online()
    entry = {"idToken": TOKEN, "idTokenInfo": {"status": "Accepted", "groupIdToken": FLEET}}
    other = {"idToken": {"idToken": OTHER, "type": "ISO14443"},
             "idTokenInfo": {"status": "Accepted", "groupIdToken": FLEET}}
    assert (await cs.command("SendLocalList", {"versionNumber": 3, "updateType": "Full",
                                               "localAuthorizationList": [entry]}))["status"] == "Accepted"
    assert (await cs.command("SendLocalList", {"versionNumber": 2, "updateType": "Differential",
                                               "localAuthorizationList": [other]}))["status"] == "VersionMismatch"
    assert (await cs.command("SendLocalList", {"versionNumber": 4, "updateType": "Differential",
                                               "localAuthorizationList": [other]}))["status"] == "Accepted"
    too_many = [{"idToken": {"idToken": f"T{i}", "type": "ISO14443"}, "idTokenInfo": {"status": "Accepted"}}
                for i in range(251)]
    assert (await cs.command("SendLocalList", {"versionNumber": 9, "updateType": "Full",
                                               "localAuthorizationList": too_many}))["status"] == "Failed"
    await s.station.stop(graceful=False)
    s = await sim201_factory(cs.url)
    await s.online()
    assert (await cs.command("GetLocalListVersion"))["versionNumber"] == 4
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Started", after=n)
    await s.state("Charging")
    await s.world.tap(OTHER, hold_s=0.15)
    end = await ended(cs, n)
    assert calls(cs, "Authorize", n) == [] and end["idToken"]["idToken"] == OTHER
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"]) == ("StopAuthorized", "Local")
    assert (await cs.command("SendLocalList", {"versionNumber": 5, "updateType": "Differential",
                                               "localAuthorizationList": [{"idToken": TOKEN}]}))["status"] == "Accepted"
    assert s.backend.versions["2.0.1"].auth.local_list.get(f"ISO14443:{UID}") is None
    # TC_D_05_CS: a Differential with nothing in it only moves the version; TC_D_04_CS: a Full empty list empties it
    assert (await cs.command("SendLocalList", {"versionNumber": 6, "updateType": "Differential"}))["status"] == "Accepted"
    assert (await cs.command("GetLocalListVersion"))["versionNumber"] == 6
    assert s.backend.versions["2.0.1"].auth.local_list.get(f"ISO14443:{OTHER}") is not None
    assert (await cs.command("SendLocalList", {"versionNumber": 7, "updateType": "Full"}))["status"] == "Accepted"
    assert (await cs.command("GetLocalListVersion"))["versionNumber"] == 7
    assert s.backend.versions["2.0.1"].auth.local_list.entries == {}
    # TC_D_10_CS (D02.FR.03): the list disabled: version 0
    await set_vars(cs, LocalAuthListCtrlr__Enabled="false")
    assert (await cs.command("GetLocalListVersion"))["versionNumber"] == 0
    assert cs.failures() == []


async def test_TC_C_04_39_42_45_49_CS_groups_and_master_pass(strict201, sim201_factory):
    """TC_C_39_CS (C09.FR.03): another card of the group stops the transaction and is named; TC_C_42_CS
    (C09.FR.11): a card of another group does not; TC_C_04_CS (C01.FR.02/03): nor does a different card
    without a group (it is asked about, and no TransactionEvent names it); TC_C_45_CS (C16.FR.03): a master pass cannot start;
    TC_C_49_CS (C16.FR.02, no UI): it stops the transaction, stoppedReason MasterPass."""
    cs = strict201
    await cs.command("__setTags", {"tags": {UID: {"status": "Accepted", "groupIdToken": FLEET},
                                            OTHER: {"status": "Accepted", "groupIdToken": {"idToken": "BOSS",
                                                                                           "type": "Central"}},
                                            "AABBCCDD": {"status": "Accepted", "groupIdToken": FLEET}}})
    s = await sim201_factory(cs.url, {"AuthCtrlr/MasterPassGroupId": "BOSS"})
    await s.online()
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(OTHER, hold_s=0.15)  # the master pass
    await cs.call_from_cp("Authorize", after=n)
    await asyncio.sleep(0.4)
    assert s.charger.session is None and tx_events(cs, n) == []
    await s.world.tap(UID, hold_s=0.15)
    await s.state("Charging")
    await s.world.tap(OTHER, hold_s=0.15)
    end = await ended(cs, n)
    assert end["transactionInfo"]["stoppedReason"] == "MasterPass" and end["idToken"]["idToken"] == OTHER
    s.world.plug(False)
    await s.state("Available")
    n = len(cs.events)
    await cs.command("__setTags", {"tags": {UID: {"status": "Accepted", "groupIdToken": FLEET},
                                            OTHER: {"status": "Accepted"},
                                            "AABBCCDD": {"status": "Accepted", "groupIdToken": FLEET}}})
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    await s.state("Charging")
    m = len(cs.events)
    await s.world.tap(OTHER, hold_s=0.15)  # no group: does not stop (TC_C_04)
    await cs.call_from_cp("Authorize", lambda p: p["idToken"]["idToken"] == OTHER, after=m)
    await asyncio.sleep(0.4)
    assert s.charger.session is not None
    assert all(p.get("idToken", {}).get("idToken") != OTHER for p in tx_events(cs, m))
    await s.world.tap("AABBCCDD", hold_s=0.15)
    end = await ended(cs, n)
    assert end["idToken"]["idToken"] == "AABBCCDD" and end["transactionInfo"]["stoppedReason"] == "Local"
    assert cs.failures() == []


async def test_TC_E_16_C_16_CS_invalid_at_the_start_stops_it(strict201, sim201_factory):
    """TC_E_16_CS / TC_C_16_CS (E05.FR.10, E06.FR.04, C15.FR.04): a card accepted locally that the central
    system refuses in its TransactionEventResponse ends the transaction: Ended, Deauthorized, DeAuthorized."""
    cs = strict201
    s = await sim201_factory(cs.url, {"AuthCtrlr/LocalPreAuthorize": True})
    await s.online()
    await cs.command("SendLocalList", {"versionNumber": 1, "updateType": "Full", "localAuthorizationList": [
        {"idToken": TOKEN, "idTokenInfo": {"status": "Accepted"}}]})
    await cs.command("__setTags", {"tags": {UID: {"status": "Invalid"}}})
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    end = await ended(cs, n)
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"]) == ("Deauthorized", "DeAuthorized")
    assert cs.failures() == []


async def test_TC_C_15_17_CS_invalid_without_stop_suspends(strict201, sim201_factory):
    """TC_C_17_CS (C15.FR.06, E05.FR.02): StopTxOnInvalidId false and no MaxEnergyOnInvalidId: the energy
    stops (Updated ChargingStateChanged SuspendedEVSE), the transaction goes on; TC_C_15_CS (C15.FR.07,
    E05.FR.03): with MaxEnergyOnInvalidId the energy flows up to it first."""
    cs = strict201
    s = await sim201_factory(cs.url, {"AuthCtrlr/LocalPreAuthorize": True, "TxCtrlr/StopTxOnInvalidId": False,
                                      "TxCtrlr/MaxEnergyOnInvalidId": 300})
    await s.online()
    await cs.command("SendLocalList", {"versionNumber": 1, "updateType": "Full", "localAuthorizationList": [
        {"idToken": TOKEN, "idTokenInfo": {"status": "Accepted"}}]})
    await cs.command("__setTags", {"tags": {UID: {"status": "Invalid"}}})
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    await s.state("Charging")
    await asyncio.sleep(0.3)
    assert s.charger.state.value == "Charging"  # up to 300 Wh still
    s.world.consume(400)
    suspended = await cs.call_from_cp("TransactionEvent", lambda p: p["transactionInfo"].get("chargingState")
                                      == "SuspendedEVSE", after=n)
    assert suspended["eventType"] == "Updated" and suspended["triggerReason"] == "ChargingStateChanged"
    assert s.charger.session is not None
    assert cs.failures() == []


async def test_TC_E_40_43_44_C_21_26_CS_offline_transactions(strict201, sim201_factory):
    """TC_E_40_CS (E11/E12): the connection is lost during a transaction: every event queued (E12.FR.01) and
    sent after, in order, with offline true (E12.FR.02, E11.FR.07); TC_E_43_CS / TC_E_44_CS (E04, E08): a
    transaction started and stopped offline, by a card of the local list (TC_C_21_CS, C13.FR.02) and one
    unknown allowed offline (TC_C_26_CS, C15.FR.08; not cached for being allowed, C15.FR.01, but once the
    central system answered for it, C10.FR.05): Started, Updated, Ended all offline true, seqNo without gaps,
    the meter's advance billed."""
    cs = strict201
    s = await sim201_factory(cs.url, {"AuthCtrlr/OfflineTxForUnknownIdEnabled": True,
                                      "SampledDataCtrlr/TxUpdatedInterval": 10})
    await s.online()
    await cs.command("SendLocalList", {"versionNumber": 1, "updateType": "Full", "localAuthorizationList": [
        {"idToken": TOKEN, "idTokenInfo": {"status": "Accepted"}}]})
    n = len(cs.events)
    s.world.plug()
    await s.world.tap(UID, hold_s=0.15)
    start = await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Started", after=n)
    await s.state("Charging")
    await cs.command("__outage", {"seconds": 3})
    s.world.consume(800)
    await asyncio.sleep(0.6)
    await s.world.tap(UID, hold_s=0.15)
    s.world.plug(False)
    await s.state("Available")
    s.world.plug()
    await s.world.tap("0BADCAFE", hold_s=0.15)  # unknown, allowed offline
    await s.state("Charging")
    s.world.consume(500)
    await asyncio.sleep(0.4)
    await s.world.tap("0BADCAFE", hold_s=0.15)
    await s.online(timeout=20)
    await s.idle(timeout=20)
    first = [p for p in tx_events(cs, n) if p["transactionInfo"]["transactionId"] == start["transactionInfo"]["transactionId"]]
    assert [p["seqNo"] for p in first] == list(range(len(first))) and first[-1]["eventType"] == "Ended"
    assert any(p.get("offline") for p in first) and first[-1].get("offline") is True
    second = [p for p in tx_events(cs, n) if p["transactionInfo"]["transactionId"] != start["transactionInfo"]["transactionId"]]
    assert [p["seqNo"] for p in second] == list(range(len(second))) and len(second) >= 2
    assert all(p.get("offline") is True for p in second)
    assert second[0]["idToken"] == {"idToken": "0BADCAFE", "type": "ISO14443"}
    sessions = s.store.sessions(("stopped",))[-2:]
    for session, mine in zip(sessions, (first, second), strict=True):
        values = [v for m in mine for mv in m.get("meterValue", []) for v in mv["sampledValue"]]
        begin = next(v["value"] for v in values if v.get("context") == "Transaction.Begin" and "phase" not in v)
        end = next(v["value"] for v in values if v.get("context") == "Transaction.End" and "phase" not in v)
        assert end - begin == session.energy_wh > 0
    assert s.backend.versions["2.0.1"].auth.cache.get("ISO14443:0BADCAFE")["status"] == "Accepted"  # the CSMS said
    assert cs.failures() == []
