"""OCPP 2.0.1 authorization, the Part 6 variants of the cache, the local list and groups (C09-C14, C16): a
token whose stored status is not Accepted is asked about again online and refused offline, the list before
the cache, a token known to be refused is not asked about when post-authorization is disabled, groups with
the list and the cache, a master pass from the cache. The whole simulated station against the strict
2.0.1 central system (ocpp-rpc, strict mode); zero schema failures every time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from ocpp201_support import FLEET, TOKEN, calls, tx_events
from ocpp201_support import any_ended as ended
from ocpp_flows import OTHER, UID
from strict_peer import TimedCS

THIRD = "AABBCCDD"
FOURTH = "11223344"


def token(uid: str) -> dict:
    return {"idToken": uid, "type": "ISO14443"}


def entry(uid: str, status: str, group: dict | None = None) -> dict:
    info: dict = {"status": status}
    if group is not None:
        info["groupIdToken"] = group
    return {"idToken": token(uid), "idTokenInfo": info}


async def tap_refused(s, cs: TimedCS, uid: str, *, asked: bool) -> None:
    """Tap `uid` with the EV plugged in: it must not start a transaction; `asked`: an AuthorizeRequest for it
    goes to the central system (else none)."""
    n = len(cs.events)
    await s.world.tap(uid, hold_s=0.15)
    if asked:
        await cs.call_from_cp("Authorize", lambda p: p["idToken"]["idToken"] == uid, after=n)
    await asyncio.sleep(0.5)
    assert s.charger.session is None and tx_events(cs, n) == [], tx_events(cs, n)
    assert asked or calls(cs, "Authorize", n) == []


async def charge_once(s, cs: TimedCS, uid: str) -> dict:
    """A whole transaction of `uid` (the EV plugged in already): its Started event."""
    n = len(cs.events)
    await s.world.tap(uid, hold_s=0.15)
    start = await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Started", after=n)
    await s.state("Charging")
    await s.world.tap(uid, hold_s=0.15)
    await ended(cs, n)
    s.world.plug(False)
    await s.state("Available")
    s.world.plug()
    return start


async def test_TC_C_09_10_12_56_CS_cached_refusals_are_asked_about_again(strict201, sim201_factory):
    """C12.FR.05 / C10.FR.03 with AuthCtrlr.LocalPreAuthorize: a token the cache holds as not Accepted is asked
    about online: TC_C_09_CS cached Invalid, answered Invalid: refused; TC_C_10_CS cached and answered
    NotAtThisTime (Part 6's "Restricted"): refused; TC_C_12_CS cached Invalid, now answered Accepted: the
    transaction starts; TC_C_56_CS (C01.FR.02) answered Unknown: no TransactionEvent."""
    cs = strict201
    await cs.command("__setTags", {"tags": {UID: {"status": "Invalid"}, OTHER: {"status": "NotAtThisTime"},
                                            THIRD: {"status": "Unknown"}}})
    s = await sim201_factory(cs.url, {"AuthCtrlr/LocalPreAuthorize": True})
    await s.online()
    s.world.plug()
    for uid in (UID, OTHER, THIRD):  # learnt by the cache from the first answer (C10.FR.04)
        await tap_refused(s, cs, uid, asked=True)
    cache = s.backend.versions["2.0.1"].auth.cache
    assert [cache.get(f"ISO14443:{u}")["status"] for u in (UID, OTHER, THIRD)] == ["Invalid", "NotAtThisTime", "Unknown"]
    for uid in (UID, OTHER, THIRD):  # asked about again: TC_C_09, TC_C_10, TC_C_56
        await tap_refused(s, cs, uid, asked=True)
    await cs.command("__setTags", {"tags": {UID: {"status": "Accepted"}}})
    n = len(cs.events)
    start = await charge_once(s, cs, UID)  # TC_C_12
    assert calls(cs, "Authorize", n)[0]["idToken"] == TOKEN and start["idToken"] == TOKEN
    assert cache.get(f"ISO14443:{UID}")["status"] == "Accepted"
    assert cs.failures() == []


async def test_TC_C_11_46_CS_cache_life_time(strict201, sim201_factory):
    """TC_C_46_CS (C10.FR.08): AuthCacheCtrlr.LifeTime bounds a cached Accepted: once it has passed, the token
    is asked about again (no pre-authorization from the cache); TC_C_11_CS (C12.FR.05): the cached token has
    expired and the central system answers Expired: refused."""
    cs = strict201
    s = await sim201_factory(cs.url, {"AuthCtrlr/LocalPreAuthorize": True, "AuthCacheCtrlr/LifeTime": 3})
    await s.online()
    s.world.plug()
    await charge_once(s, cs, UID)
    cache = s.backend.versions["2.0.1"].auth.cache
    expiry = datetime.fromisoformat(cache.get(f"ISO14443:{UID}")["expiryDate"].replace("Z", "+00:00"))
    assert expiry <= datetime.now(UTC) + timedelta(seconds=3)
    n = len(cs.events)
    await charge_once(s, cs, UID)  # within the life time: from the cache, not asked
    assert calls(cs, "Authorize", n) == []
    await asyncio.sleep(3.2)
    await cs.command("__setTags", {"tags": {UID: {"status": "Expired"}}})
    await tap_refused(s, cs, UID, asked=True)  # TC_C_11
    await cs.command("__setTags", {"tags": {UID: {"status": "Accepted"}}})
    n = len(cs.events)
    await charge_once(s, cs, UID)  # TC_C_46: asked again, accepted
    assert [p["idToken"] for p in calls(cs, "Authorize", n)] == [TOKEN]
    assert cs.failures() == []


async def test_TC_C_13_CS_cached_card_before_the_cable(strict201, sim201_factory):
    """TC_C_13_CS (C12.FR.02/04) with TxStartPoint Authorized: a card the cache holds as Accepted starts the
    transaction at once, before the EV (Started, triggerReason Authorized, its idToken, no AuthorizeRequest);
    the EV then comes and the energy flows."""
    cs = strict201
    s = await sim201_factory(cs.url, {"AuthCtrlr/LocalPreAuthorize": True, "TxCtrlr/TxStartPoint": "Authorized"})
    await s.online()
    s.world.plug()
    await charge_once(s, cs, UID)
    s.world.plug(False)
    await s.state("Available")
    n = len(cs.events)
    await s.world.tap(UID, hold_s=0.15)
    start = await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Started", after=n)
    assert (start["triggerReason"], start["idToken"]) == ("Authorized", TOKEN) and calls(cs, "Authorize", n) == []
    s.world.plug()
    await s.state("Charging")
    plugged = await cs.call_from_cp("TransactionEvent", lambda p: p["triggerReason"] == "CablePluggedIn", after=n)
    assert plugged["evse"] == {"id": 1, "connectorId": 1}
    await s.world.tap(UID, hold_s=0.15)
    await ended(cs, n)
    assert cs.failures() == []


async def test_TC_C_14_CS_master_pass_from_the_cache(strict201, sim201_factory):
    """TC_C_14_CS (C12.FR.09, C16.FR.03): a master pass is learnt by the cache when refused a start; presented
    again during another card's transaction it stops it from the cache (no AuthorizeRequest): Ended,
    StopAuthorized, the master pass's idToken, stoppedReason MasterPass."""
    cs = strict201
    await cs.command("__setTags", {"tags": {OTHER: {"status": "Accepted",
                                                    "groupIdToken": {"idToken": "BOSS", "type": "Central"}}}})
    s = await sim201_factory(cs.url, {"AuthCtrlr/LocalPreAuthorize": True, "AuthCtrlr/MasterPassGroupId": "BOSS"})
    await s.online()
    s.world.plug()
    await tap_refused(s, cs, OTHER, asked=True)  # C16.FR.03: a master pass does not start
    assert s.backend.versions["2.0.1"].auth.cache.get(f"ISO14443:{OTHER}")["parentIdTag"] == "BOSS"
    n = len(cs.events)
    await s.world.tap(UID, hold_s=0.15)
    await s.state("Charging")
    m = len(cs.events)
    await s.world.tap(OTHER, hold_s=0.15)
    end = await ended(cs, n)
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"]) == ("StopAuthorized", "MasterPass")
    assert end["idToken"] == token(OTHER) and calls(cs, "Authorize", m) == []
    assert cs.failures() == []


async def test_TC_C_18_CS_offline_from_the_cache_then_refused(strict201, sim201_factory):
    """TC_C_18_CS (C15.FR.02/04): a transaction started offline by a cached card; back online the central
    system refuses the token in its TransactionEventResponse and StopTxOnInvalidId is true: the transaction
    ends, Deauthorized / DeAuthorized, although MaxEnergyOnInvalidId is set (it applies only without the
    stop, C15.FR.07)."""
    cs = strict201
    s = await sim201_factory(cs.url, {"AuthCtrlr/LocalPreAuthorize": True, "TxCtrlr/StopTxOnInvalidId": True,
                                      "TxCtrlr/MaxEnergyOnInvalidId": 500})
    await s.online()
    s.world.plug()
    await charge_once(s, cs, UID)
    await cs.command("__outage", {"seconds": 3})
    await cs.command("__setTags", {"tags": {UID: {"status": "Invalid"}}})
    n = len(cs.events)
    await s.world.tap(UID, hold_s=0.15)
    await s.state("Charging")
    end = await ended(cs, n)
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"]) == ("Deauthorized", "DeAuthorized")
    started = tx_events(cs, n)[0]
    assert started["eventType"] == "Started" and started["offline"] is True
    assert cs.failures() == []


async def test_TC_C_22_23_24_25_CS_offline_the_list_refuses(strict201, sim201_factory):
    """Offline (C13.FR.01/02, LocalAuthorizeOffline): tokens the local list holds as Invalid (TC_C_22_CS),
    Blocked (TC_C_23_CS, Part 6's "Restricted") and Expired (TC_C_24_CS) start nothing; TC_C_25_CS (C13.FR.01,
    C14.FR.01): the list before the cache: a token the cache holds as Accepted but the list as Invalid starts
    nothing either, with OfflineTxForUnknownIdEnabled on. Nothing is sent for them after the outage."""
    cs = strict201
    s = await sim201_factory(cs.url, {"AuthCtrlr/LocalPreAuthorize": True, "AuthCtrlr/OfflineTxForUnknownIdEnabled": True,
                                      "TxCtrlr/StopTxOnInvalidId": False})
    await s.online()
    s.world.plug()
    await charge_once(s, cs, FOURTH)  # the cache: Accepted
    result = await cs.command("SendLocalList", {"versionNumber": 1, "updateType": "Full", "localAuthorizationList": [
        entry(UID, "Invalid"), entry(OTHER, "Blocked"), entry(THIRD, "Expired"), entry(FOURTH, "Invalid")]})
    assert result["status"] == "Accepted"
    assert s.backend.versions["2.0.1"].auth.cache.get(f"ISO14443:{FOURTH}")["status"] == "Accepted"
    n = len(cs.events)
    await cs.command("__outage", {"seconds": 3})
    await asyncio.sleep(0.3)
    for uid in (UID, OTHER, THIRD, FOURTH):
        await tap_refused(s, cs, uid, asked=False)
    await s.online(timeout=20)
    await asyncio.sleep(0.5)
    assert tx_events(cs, n) == [] and calls(cs, "Authorize", n) == []
    assert cs.failures() == []


async def test_TC_C_28_29_30_31_CS_online_the_list_refusals_are_asked_about(strict201, sim201_factory):
    """C14.FR.03: online, a token the local list holds as not Accepted is asked about: TC_C_28_CS Invalid and
    answered Invalid, TC_C_29_CS Blocked and answered NotAtThisTime, TC_C_30_CS Expired and answered Expired:
    refused; TC_C_31_CS Invalid on the list and answered Accepted: the transaction starts and energy flows."""
    cs = strict201
    await cs.command("__setTags", {"tags": {UID: {"status": "Invalid"}, OTHER: {"status": "NotAtThisTime"},
                                            THIRD: {"status": "Expired"}, FOURTH: {"status": "Accepted"}}})
    s = await sim201_factory(cs.url, {"AuthCtrlr/LocalPreAuthorize": True})
    await s.online()
    await cs.command("SendLocalList", {"versionNumber": 1, "updateType": "Full", "localAuthorizationList": [
        entry(UID, "Invalid"), entry(OTHER, "Blocked"), entry(THIRD, "Expired"), entry(FOURTH, "Invalid")]})
    s.world.plug()
    for uid in (UID, OTHER, THIRD):
        await tap_refused(s, cs, uid, asked=True)
    n = len(cs.events)
    await charge_once(s, cs, FOURTH)
    assert [p["idToken"] for p in calls(cs, "Authorize", n)] == [token(FOURTH)]
    assert cs.failures() == []


async def test_TC_C_57_58_CS_no_post_authorization(strict201, sim201_factory):
    """TC_C_57_CS (AuthCacheCtrlr.DisablePostAuthorize) and TC_C_58_CS (LocalAuthListCtrlr.DisablePostAuthorize):
    a token the cache or the list holds as not Accepted is refused without an AuthorizeRequest."""
    cs = strict201
    await cs.command("__setTags", {"tags": {UID: {"status": "Invalid"}}})
    s = await sim201_factory(cs.url, {"AuthCtrlr/LocalPreAuthorize": True, "AuthCacheCtrlr/DisablePostAuthorize": True,
                                      "LocalAuthListCtrlr/DisablePostAuthorize": True})
    await s.online()
    await cs.command("SendLocalList", {"versionNumber": 1, "updateType": "Full",
                                       "localAuthorizationList": [entry(OTHER, "Blocked")]})
    s.world.plug()
    await tap_refused(s, cs, UID, asked=True)  # learnt: Invalid
    await tap_refused(s, cs, UID, asked=False)  # TC_C_57
    await tap_refused(s, cs, OTHER, asked=False)  # TC_C_58
    assert cs.failures() == []


async def test_TC_C_41_43_44_CS_groups_with_the_list_and_the_cache(strict201, sim201_factory):
    """C09.FR.02/03/07: TC_C_41_CS two cards of one group in the cache: the second stops the first's
    transaction (StopAuthorized, its idToken); TC_C_43_CS / TC_C_44_CS a card of the same group held as
    Invalid by the list or the cache is asked about, refused, and stops nothing."""
    cs = strict201
    await cs.command("__setTags", {"tags": {UID: {"status": "Accepted", "groupIdToken": FLEET},
                                            OTHER: {"status": "Accepted", "groupIdToken": FLEET},
                                            THIRD: {"status": "Invalid", "groupIdToken": FLEET}}})
    s = await sim201_factory(cs.url, {"AuthCtrlr/LocalPreAuthorize": True})
    await s.online()
    s.world.plug()
    await charge_once(s, cs, UID)
    await charge_once(s, cs, OTHER)
    await tap_refused(s, cs, THIRD, asked=True)  # the cache now holds all three
    n = len(cs.events)
    await s.world.tap(UID, hold_s=0.15)
    await s.state("Charging")
    await s.world.tap(THIRD, hold_s=0.15)  # TC_C_44: Invalid in the cache, of the group: asked, stops nothing
    await cs.call_from_cp("Authorize", lambda p: p["idToken"]["idToken"] == THIRD, after=n)
    await asyncio.sleep(0.5)
    assert s.charger.session is not None
    await s.world.tap(OTHER, hold_s=0.15)  # TC_C_41: from the cache, stops it
    end = await ended(cs, n)
    assert (end["triggerReason"], end["idToken"]) == ("StopAuthorized", token(OTHER))
    assert [p["idToken"]["idToken"] for p in calls(cs, "Authorize", n)] == [THIRD]
    s.world.plug(False)
    await s.state("Available")
    s.world.plug()
    await cs.command("SendLocalList", {"versionNumber": 1, "updateType": "Full", "localAuthorizationList": [
        entry(UID, "Accepted", FLEET), entry(THIRD, "Invalid", FLEET)]})
    n = len(cs.events)
    await s.world.tap(UID, hold_s=0.15)
    await s.state("Charging")
    await s.world.tap(THIRD, hold_s=0.15)  # TC_C_43: Invalid on the list, of the group: asked, stops nothing
    await cs.call_from_cp("Authorize", lambda p: p["idToken"]["idToken"] == THIRD, after=n)
    await asyncio.sleep(0.5)
    assert s.charger.session is not None and [p["eventType"] for p in tx_events(cs, n)].count("Ended") == 0
    assert cs.failures() == []


async def test_TC_E_45_CS_offline_stop_by_a_card_of_the_group(strict201, sim201_factory):
    """TC_E_45_CS (E08.FR.02/04-08): offline, another card of the transaction's group (on the local list) stops
    it; after the outage every event of it goes with offline true, the Ended among them, naming that card."""
    cs = strict201
    s = await sim201_factory(cs.url, {"AuthCtrlr/LocalPreAuthorize": True})
    await s.online()
    await cs.command("SendLocalList", {"versionNumber": 1, "updateType": "Full", "localAuthorizationList": [
        entry(UID, "Accepted", FLEET), entry(OTHER, "Accepted", FLEET)]})
    s.world.plug()
    n = len(cs.events)
    await s.world.tap(UID, hold_s=0.15)
    start = await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Started", after=n)
    await s.state("Charging")
    m = len(cs.events)
    await cs.command("__outage", {"seconds": 3})
    await asyncio.sleep(0.3)
    await s.world.tap(OTHER, hold_s=0.15)
    s.world.plug(False)
    await s.state("Available")
    end = await ended(cs, m)
    tx = start["transactionInfo"]["transactionId"]
    after = [p for p in tx_events(cs, m) if p["transactionInfo"]["transactionId"] == tx]
    assert after and all(p["offline"] is True for p in after) and after[-1] == end
    assert end["idToken"] == token(OTHER) and end["transactionInfo"]["stoppedReason"] == "Local"
    assert cs.failures() == []


async def test_TC_E_52_CS_no_remote_authorization(strict201, sim201_factory):
    """TC_E_52_CS (C01.FR.05, AuthCtrlr.DisableRemoteAuthorization): a token neither the list nor the cache
    knows is refused without an AuthorizeRequest."""
    cs = strict201
    s = await sim201_factory(cs.url, {"AuthCtrlr/DisableRemoteAuthorization": True})
    await s.online()
    s.world.plug()
    await tap_refused(s, cs, UID, asked=False)
    assert cs.failures() == []
