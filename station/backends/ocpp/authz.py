"""Local authorization list, authorization cache and the decision who may charge (OCPP 1.6 §3.5, 5.15,
5.4; OCPP 2.0.1 C01-C05, C10-C14, D01-D02): the same in both versions.

Both stores map a key to an info (status, expiryDate, parentIdTag: the 1.6
IdTagInfo, and what ocpp201/authz.py makes of a 2.0.1 IdTokenInfo, whose
key also names the token's type) and both persist in the station's store
(1.6 "ocpp.local_list", "ocpp.auth_cache"; 2.0.1 under "ocpp201."):

* the local list is the central system's (SendLocalList, full or
  differential, with a version); it takes precedence over the cache and a
  tag on it is never put in the cache;
* the cache is ours: every info learnt from the central system's answers;
  ClearCache empties it. It holds at most CACHE_MAX tags; the oldest entry
  makes room.

`decide()` is the order both versions follow: online and pre-authorized
from the list or cache (1.6 LocalPreAuthorize, 2.0.1 AuthCtrlr.LocalPreAuthorize),
else ask the central system, else offline from the list or cache (1.6
LocalAuthorizeOffline, 2.0.1 AuthCtrlr.LocalAuthorizeOffline), else an
unknown tag offline (1.6 AllowOfflineTxForUnknownId, 2.0.1
AuthCtrlr.OfflineTxForUnknownIdEnabled).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, NamedTuple

from station.backends.ocppj.rpc import CallFailed
from station.clock import parse_iso
from station.errors import BackendOffline

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
    def __init__(self, store: Any, store_key: str = LIST_KEY) -> None:
        self.store = store
        self.store_key = store_key
        saved = store.get_json(store_key, None) if store is not None else None
        self.version: int = saved["version"] if saved else 0
        self.entries: dict[str, dict[str, Any]] = dict(saved["entries"]) if saved else {}

    def _save(self) -> None:
        if self.store is not None:
            self.store.put_json(self.store_key, {"version": self.version, "entries": self.entries})

    def get(self, tag: str) -> dict[str, Any] | None:
        return self.entries.get(_norm(tag))

    def update(self, version: int, update_type: str, items: list[dict[str, Any]],
               max_send: int, max_total: int) -> str:
        """1.6 SendLocalList: "Accepted", "Failed" or "VersionMismatch"."""
        return self.apply(version, update_type, [(i["idTag"], i.get("idTagInfo")) for i in items], max_send, max_total)

    def apply(self, version: int, update_type: str, items: list[tuple[str, dict[str, Any] | None]],
              max_send: int, max_total: int) -> str:
        """SendLocalList as (key, info or None to remove): "Accepted", "Failed" or "VersionMismatch"."""
        if len(items) > max_send:
            return "Failed"
        if update_type == "Full":
            entries = {_norm(key): dict(info) for key, info in items if info}
        else:
            if version <= self.version:
                return "VersionMismatch"
            entries = dict(self.entries)
            for key, info in items:
                if info:
                    entries[_norm(key)] = dict(info)
                else:
                    entries.pop(_norm(key), None)
        if len(entries) > max_total:
            return "Failed"
        self.entries, self.version = entries, version
        self._save()
        return "Accepted"


class AuthCache:
    def __init__(self, store: Any, store_key: str = CACHE_KEY) -> None:
        self.store = store
        self.store_key = store_key
        saved = store.get_json(store_key, None) if store is not None else None
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
            self.store.put_json(self.store_key, self.entries)


class Decision(NamedTuple):
    info: dict[str, Any]  # status, expiryDate, parentIdTag
    offline: bool  # decided locally (the central system was not asked, or did not answer)
    asked: bool  # the central system answered (its info is to be learnt)


async def decide(known: dict[str, Any] | None, *, online: bool, pre_authorize: bool, local_offline: bool,
                 unknown_offline: bool, ask: Callable[[], Awaitable[dict[str, Any]]], now: datetime) -> Decision:
    """Who may charge, in the order both versions give:

    1. online, pre-authorize and the tag is Accepted (not expired) in the list or the cache: at once;
    2. online: ask the central system (`ask` returns its info);
    3. offline (or the question failed): local-offline and the tag is in the list or the cache: its
       status there; an unknown tag is Accepted with unknown-offline, else Invalid.
    """
    if online and known is not None and pre_authorize and effective_status(known, now) == "Accepted":
        return Decision(known, offline=False, asked=False)
    if online:
        try:
            return Decision(await ask(), offline=False, asked=True)
        except (CallFailed, BackendOffline) as exc:
            log.info("authorization request failed (%s): deciding offline", exc)
    if known is not None and local_offline:
        return Decision(known, offline=True, asked=False)
    return Decision({"status": "Accepted" if unknown_offline else "Invalid"}, offline=True, asked=False)
