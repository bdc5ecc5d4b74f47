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
AllowOfflineTxForUnknownId), is the charge point's decision, not this
module's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from station.clock import parse_iso

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


def utcnow() -> datetime:
    return datetime.now(UTC)
