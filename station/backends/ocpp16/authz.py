"""OCPP 1.6 authorization: Authorize.req and the configuration keys around the shared list, cache and order.

The stores and the order of the decision are station/backends/ocpp/authz.py;
here are the 1.6 names (idTag, IdTagInfo, LocalPreAuthorize,
LocalAuthorizeOffline, AllowOfflineTxForUnknownId, LocalAuthListEnabled,
AuthorizationCacheEnabled) and the Authorize message.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from station.backends.ocpp.authz import AuthCache, LocalList, decide, effective_status
from station.core.model import AuthResult, AuthStatus

if TYPE_CHECKING:
    from .api import Ocpp16Api

__all__ = ["AuthCache", "Authorizer", "LocalList", "effective_status"]

log = logging.getLogger(__name__)


class Authorizer:
    """Who may charge, decided as OCPP 1.6 says, online or offline (so it never raises BackendOffline):

    1. online, LocalPreAuthorize and the tag is Accepted (not expired) in the local list or the
       cache: at once, no Authorize.req;
    2. online: Authorize.req; the answer goes to the cache (never for a tag on the local list);
    3. offline (or Authorize.req failed): LocalAuthorizeOffline and the tag is in the list or the
       cache: its status there; an unknown tag is Accepted with AllowOfflineTxForUnknownId.
    """

    def __init__(self, backend: Ocpp16Api) -> None:
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

        async def ask() -> dict[str, Any]:
            conf = await self.b.link.request("Authorize", {"idTag": id_tag[:20]})
            info: dict[str, Any] = conf["idTagInfo"]
            return info

        decision = await decide(known, online=self.b.online, pre_authorize=keys.bool("LocalPreAuthorize"),
                                local_offline=keys.bool("LocalAuthorizeOffline"),
                                unknown_offline=keys.bool("AllowOfflineTxForUnknownId"), ask=ask, now=self.b.now())
        if decision.asked:
            self.learn(id_tag, decision.info)
        if decision.offline and (known is None or not keys.bool("LocalAuthorizeOffline")):
            if decision.info["status"] == "Accepted":
                return AuthResult(AuthStatus.ACCEPTED, parent_id=None, offline=True)
            return AuthResult(AuthStatus.INVALID, message="offline", offline=True)
        return self._result(decision.info, offline=decision.offline)
