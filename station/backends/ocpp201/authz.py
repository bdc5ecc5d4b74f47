"""OCPP 2.0.1 authorization: idTokens, AuthorizeRequest, the local list and cache, groups, master pass.

The stores and the order of the decision are station/backends/ocpp/authz.py
(the same as 1.6: C12, C13, C14); here are the 2.0.1 names and shapes:

* An idToken has a type (ISO14443 for a card of the station's reader,
  ISO15693, Central and others from RequestStartTransaction); the list and
  the cache key it by type and value ("ISO14443:04A2B3C4").
* An IdTokenInfo is kept as status, expiry (cacheExpiryDateTime; for the
  cache at most AuthCacheCtrlr.LifeTime from when it was learnt, C10.FR.08/13)
  and group (groupIdToken.idToken, C09).
* Central tokens are never asked about (C05.FR.01) nor cached (C05.FR.02);
  a token authorized as unknown offline is not cached (C15.FR.01).
* A token whose group is AuthCtrlr.MasterPassGroupId may not start a
  transaction (C16.FR.03) and stops every ongoing one (C16.FR.02: the
  station has no UI to choose).
* The group of a session is what the core compares when another card is
  tapped (C09.FR.03): a token without a group gets a group of its own
  ("~" + its value), so that a master pass can always stop it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from station.backends.ocpp.authz import AuthCache, LocalList, decide, effective_status
from station.clock import iso, parse_iso
from station.core.model import AuthResult, AuthStatus

if TYPE_CHECKING:
    from datetime import datetime

    from station.backends.ocpp.host import LinkApi

    from .devmodel import DeviceModel

log = logging.getLogger(__name__)

LIST_KEY = "ocpp201.local_list"
CACHE_KEY = "ocpp201.auth_cache"
READER_TYPE = "ISO14443"  # the MFRC522 reads ISO 14443 cards
_STATUSES = {s.value for s in AuthStatus}


def token_key(token: dict[str, Any]) -> str:
    return f"{token.get('type', READER_TYPE)}:{token['idToken']}"


def info_of(id_token_info: dict[str, Any]) -> dict[str, Any]:
    """An IdTokenInfo as the shared stores keep it (status, expiryDate, parentIdTag)."""
    out: dict[str, Any] = {"status": id_token_info.get("status", "Invalid")}
    if id_token_info.get("cacheExpiryDateTime"):
        out["expiryDate"] = id_token_info["cacheExpiryDateTime"]
    group = id_token_info.get("groupIdToken")
    if isinstance(group, dict) and group.get("idToken"):
        out["parentIdTag"] = group["idToken"]
    return out


def id_token_info(info: dict[str, Any]) -> dict[str, Any]:
    """The shared stores' info as an IdTokenInfo (for reports)."""
    out: dict[str, Any] = {"status": info.get("status", "Invalid")}
    if info.get("expiryDate"):
        out["cacheExpiryDateTime"] = info["expiryDate"]
    if info.get("parentIdTag"):
        out["groupIdToken"] = {"idToken": info["parentIdTag"], "type": "Central"}
    return out


class Authorizer:
    def __init__(self, store: Any, devmodel: DeviceModel, link: LinkApi, now: Any) -> None:
        self.dm = devmodel
        self.link = link
        self.now: Any = now  # () -> datetime
        self.local_list = LocalList(store, LIST_KEY)
        self.cache = AuthCache(store, CACHE_KEY)
        self.online = False
        self.types: dict[str, str] = {}  # id tag -> the type it was last presented with (remote starts)

    def token(self, id_tag: str) -> dict[str, Any]:
        return {"idToken": id_tag[:36], "type": self.types.get(id_tag.strip().upper(), READER_TYPE)}

    def lookup(self, token: dict[str, Any]) -> dict[str, Any] | None:
        key = token_key(token)
        if self.dm.bool("LocalAuthListCtrlr", "Enabled"):
            entry = self.local_list.get(key)
            if entry is not None:
                return entry
        if self.dm.bool("AuthCacheCtrlr", "Enabled"):
            return self.cache.get(key)
        return None

    def learn(self, token: dict[str, Any], id_token_info_: dict[str, Any]) -> None:
        """C10.FR.04/05: every IdTokenInfo the central system gives goes to the cache (never a Central token,
        C05.FR.02; never one on the local list, C13.FR.01)."""
        if not self.dm.bool("AuthCacheCtrlr", "Enabled") or token.get("type") == "Central":
            return
        key = token_key(token)
        if self.dm.bool("LocalAuthListCtrlr", "Enabled") and self.local_list.get(key) is not None:
            return
        info = info_of(id_token_info_)
        lifetime = self.dm.int("AuthCacheCtrlr", "LifeTime")
        if lifetime > 0:  # C10.FR.08: absent cacheExpiryDateTime, AuthCacheLifeTime decides
            limit = self.now() + timedelta(seconds=lifetime)
            try:
                given = parse_iso(info["expiryDate"]) if "expiryDate" in info else None
            except ValueError:
                given = None
            if given is None or given > limit:
                info["expiryDate"] = iso(limit)
        self.cache.put(key, info)

    def is_master_pass(self, info: dict[str, Any] | None) -> bool:
        group = self.dm.get("AuthCtrlr", "MasterPassGroupId")
        return bool(group) and info is not None and info.get("parentIdTag") == group

    async def decide(self, token: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """(info, offline) for a token, as C12-C15 say (the order is the shared `decide`)."""
        dm = self.dm
        known = self.lookup(token)
        central = token.get("type") in ("Central", "NoAuthorization")
        if central:  # C05.FR.01: a Central token is not asked about; NoAuthorization needs none
            return {"status": "Accepted"}, False

        async def ask() -> dict[str, Any]:
            conf = await self.link.request("Authorize", {"idToken": token})
            info: dict[str, Any] = conf["idTokenInfo"]
            return info

        post = not (known is not None and self._post_disabled(token, known))
        online = self.online and not dm.bool("AuthCtrlr", "DisableRemoteAuthorization") and post
        decision = await decide(known, online=online, pre_authorize=dm.bool("AuthCtrlr", "LocalPreAuthorize"),
                                local_offline=dm.bool("AuthCtrlr", "LocalAuthorizeOffline"),
                                unknown_offline=dm.bool("AuthCtrlr", "OfflineTxForUnknownIdEnabled"),
                                ask=ask, now=self.now())
        if decision.asked:
            self.learn(token, decision.info)
            return info_of(decision.info), False
        if not self.online and known is None:  # C15.FR.01: unknown tokens allowed offline are not cached
            return decision.info, True
        if known is not None and not post:  # DisablePostAuthorize: the local status stands
            return known, False
        return decision.info, decision.offline

    def _post_disabled(self, token: dict[str, Any], known: dict[str, Any]) -> bool:
        """AuthCacheCtrlr / LocalAuthListCtrlr.DisablePostAuthorize: a token known there with a status
        other than Accepted is refused without asking the central system."""
        if effective_status(known, self.now()) == "Accepted":
            return False
        on_list = self.local_list.get(token_key(token)) is not None
        component = "LocalAuthListCtrlr" if on_list else "AuthCacheCtrlr"
        return self.dm.bool(component, "DisablePostAuthorize")

    def result(self, token: dict[str, Any], info: dict[str, Any], offline: bool, now: datetime) -> AuthResult:
        status = effective_status(info, now)
        if self.is_master_pass(info):  # C16.FR.03
            return AuthResult(AuthStatus.INVALID, message="master pass", offline=offline,
                              reason="a master pass cannot start a transaction")
        group = info.get("parentIdTag") or "~" + token["idToken"]
        if status == "Accepted":
            return AuthResult(AuthStatus.ACCEPTED, parent_id=group, expires_at=info.get("expiryDate"), offline=offline)
        known = AuthStatus(status) if status in _STATUSES else AuthStatus.INVALID
        return AuthResult(known, message=status, parent_id=group, offline=offline)
