"""Local authorization list and authorization cache (OCPP 1.6 §3.5, 5.15, 5.4).

Both map an idTag to an IdTagInfo (status, expiryDate, parentIdTag) and both
persist in the station's store ("ocpp.local_list", "ocpp.auth_cache"):

* the local list is the central system's (SendLocalList, full or
  differential, with a version); it takes precedence over the cache and a
  tag on it is never put in the cache;
* the cache is ours: every IdTagInfo learnt from Authorize.conf and
  StartTransaction.conf; ClearCache empties it. It holds at most
  CACHE_MAX tags; the oldest entry makes room.

Which one is consulted, and when (LocalPreAuthorize, LocalAuthorizeOffline,
AllowOfflineTxForUnknownId), is decided by `Authorizer`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from station.backends.ocppj.rpc import CallFailed
from station.clock import parse_iso
from station.core.model import AuthResult, AuthStatus
from station.errors import BackendOffline

if TYPE_CHECKING:
    from .chargepoint import OcppBackend

log = logging.getLogger(__name__)

LIST_KEY = "ocpp.local_list"
CACHE_KEY = "ocpp.auth_cache"
CACHE_MAX = 1000


def _norm(tag: str) -> str:
    return tag.strip().upper()  # idTags are case-insensitive per OCPP 1.6 §3.5


def effective_status(info: dict[str, Any], now: datetime) -> str:
    """The status of an IdTagInfo now: an Accepted entry past its expiryDate is Expired."""
    status = info.get("status", "Invalid")
    expiry = info.get("expiryDate")
    if status == "Accepted" and expiry:
        try:
            if parse_iso(expiry) <= now:
                return "Expired"
        except ValueError:
            return "Expired"
    return status


class LocalList:
    def __init__(self, store: Any) -> None:
        self.store = store
        saved = store.get_json(LIST_KEY, None) if store is not None else None
        self.version: int = saved["version"] if saved else 0
        self.entries: dict[str, dict[str, Any]] = dict(saved["entries"]) if saved else {}

    def _save(self) -> None:
        if self.store is not None:
            self.store.put_json(LIST_KEY, {"version": self.version, "entries": self.entries})

    def get(self, tag: str) -> dict[str, Any] | None:
        return self.entries.get(_norm(tag))

    def update(self, version: int, update_type: str, items: list[dict[str, Any]],
               max_send: int, max_total: int) -> str:
        """SendLocalList: "Accepted", "Failed" or "VersionMismatch"."""
        if len(items) > max_send:
            return "Failed"
        if update_type == "Full":
            entries = {_norm(i["idTag"]): dict(i["idTagInfo"]) for i in items if i.get("idTagInfo")}
        else:
            if version <= self.version:
                return "VersionMismatch"
            entries = dict(self.entries)
            for item in items:
                if item.get("idTagInfo"):
                    entries[_norm(item["idTag"])] = dict(item["idTagInfo"])
                else:
                    entries.pop(_norm(item["idTag"]), None)
        if len(entries) > max_total:
            return "Failed"
        self.entries, self.version = entries, version
        self._save()
        return "Accepted"


class AuthCache:
    def __init__(self, store: Any) -> None:
        self.store = store
        saved = store.get_json(CACHE_KEY, None) if store is not None else None
        self.entries: dict[str, dict[str, Any]] = dict(saved or {})

    def get(self, tag: str) -> dict[str, Any] | None:
        return self.entries.get(_norm(tag))

    def put(self, tag: str, info: dict[str, Any]) -> None:
        key = _norm(tag)
        self.entries.pop(key, None)
        self.entries[key] = {k: v for k, v in info.items() if k in ("status", "expiryDate", "parentIdTag")}
        while len(self.entries) > CACHE_MAX:
            self.entries.pop(next(iter(self.entries)))
        self._save()

    def clear(self) -> None:
        self.entries = {}
        self._save()

    def _save(self) -> None:
        if self.store is not None:
            self.store.put_json(CACHE_KEY, self.entries)


class Authorizer:
    """Who may charge, decided as OCPP 1.6 says, online or offline (so it never raises BackendOffline):

    1. online, LocalPreAuthorize and the tag is Accepted (not expired) in the local list or the
       cache: at once, no Authorize.req;
    2. online: Authorize.req; the answer goes to the cache (never for a tag on the local list);
    3. offline (or Authorize.req failed): LocalAuthorizeOffline and the tag is in the list or the
       cache: its status there; an unknown tag is Accepted with AllowOfflineTxForUnknownId.
    """

    def __init__(self, backend: OcppBackend) -> None:
        self.b = backend

    def lookup(self, id_tag: str) -> dict[str, Any] | None:
        keys = self.b.keys
        if keys.bool("LocalAuthListEnabled"):
            entry = self.b.local_list.get(id_tag)
            if entry is not None:
                return entry
        if keys.bool("AuthorizationCacheEnabled"):
            return self.b.cache.get(id_tag)
        return None

    def learn(self, id_tag: str, info: dict[str, Any]) -> None:
        """Cache an IdTagInfo from the central system (never for a tag on the local list)."""
        keys = self.b.keys
        if not keys.bool("AuthorizationCacheEnabled"):
            return
        if keys.bool("LocalAuthListEnabled") and self.b.local_list.get(id_tag) is not None:
            return
        self.b.cache.put(id_tag, info)

    def _result(self, info: dict[str, Any], offline: bool) -> AuthResult:
        status = effective_status(info, self.b.now())
        return AuthResult(AuthStatus(status), message=None if status == "Accepted" else status,
                          parent_id=info.get("parentIdTag"), expires_at=info.get("expiryDate"), offline=offline)

    async def authorize(self, id_tag: str) -> AuthResult:
        keys = self.b.keys
        known = self.lookup(id_tag)
        online = self.b.online
        if online and known is not None and keys.bool("LocalPreAuthorize") \
                and effective_status(known, self.b.now()) == "Accepted":
            return self._result(known, offline=False)
        if online:
            try:
                conf = await self.b.link.request("Authorize", {"idTag": id_tag[:20]})
            except (CallFailed, BackendOffline) as exc:
                log.info("Authorize failed (%s): deciding offline", exc)
            else:
                info = conf["idTagInfo"]
                self.learn(id_tag, info)
                return self._result(info, offline=False)
        if known is not None and keys.bool("LocalAuthorizeOffline"):
            return self._result(known, offline=True)
        if keys.bool("AllowOfflineTxForUnknownId"):
            return AuthResult(AuthStatus.ACCEPTED, parent_id=None, offline=True)
        return AuthResult(AuthStatus.INVALID, message="offline", offline=True)
