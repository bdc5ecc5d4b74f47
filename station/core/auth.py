"""Authorization decisions the core makes itself: the offline policy and the cache.

Backends that decide offline themselves (OCPP, with its own configuration
keys) never raise BackendOffline from `authorize`; the others (MCSP,
evcs-serial) do, and then `backend.offline_policy` applies:

* refuse        every tap is refused while the backend is unreachable;
* cached        a tag the backend accepted within `auth_cache_ttl_s` may charge;
* cached+local  also the tags listed in `backend.local.tags`.

Sessions started offline are journaled like any other and delivered later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from station.core.model import AuthResult, AuthStatus, Session
from station.core.ports import Backend
from station.core.tags import normalize_tag
from station.errors import BackendOffline, StorageError

if TYPE_CHECKING:  # types only: the composition root hands the instances in (no import cycle)
    from station.store import Store

log = logging.getLogger(__name__)

TIMEOUT_S = 15.0  # the driver waits at the reader; after this the offline policy decides


class OfflinePolicy:
    def __init__(self, policy: str, ttl_s: float, local_tags: dict[str, str], store: Store) -> None:
        self.policy = policy
        self.ttl_s = ttl_s
        self.local = {normalize_tag(t): name for t, name in local_tags.items()}
        self.store = store

    def remember(self, id_tag: str, result: AuthResult) -> None:
        """Cache an online answer (accepted tags only are ever allowed offline)."""
        if result.offline or self.ttl_s <= 0:
            return
        try:
            if result.accepted:
                self.store.cache_put(normalize_tag(id_tag), result.status.value, time.time() + self.ttl_s, result.parent_id)
            else:
                self.store.cache_put(normalize_tag(id_tag), result.status.value, time.time() + self.ttl_s)
        except StorageError:
            pass  # a cache miss later is the worst outcome

    def decide(self, id_tag: str) -> AuthResult:
        tag = normalize_tag(id_tag)
        if self.policy != "refuse":
            try:
                hit = self.store.cache_get(tag)
            except StorageError:
                hit = None
            if hit is not None and hit[0] == AuthStatus.ACCEPTED.value:
                return AuthResult(AuthStatus.ACCEPTED, parent_id=hit[1], offline=True)
            if self.policy == "cached+local" and tag in self.local:
                return AuthResult(AuthStatus.ACCEPTED, offline=True)
        if self.policy == "refuse":
            why = "backend offline; offline policy 'refuse'"
        elif self.policy == "cached+local":
            why = "backend offline; tag neither in the offline cache nor in backend.local.tags"
        else:
            why = "backend offline; tag not in the offline cache"
        return AuthResult(AuthStatus.INVALID, offline=True, reason=why)


class Authorizer:
    """Asks the backend, within TIMEOUT_S; when it cannot answer, the offline policy decides."""

    def __init__(self, backend: Backend, policy: OfflinePolicy) -> None:
        self.backend, self.policy = backend, policy

    async def ask(self, tag: str, session: Session) -> AuthResult:
        try:
            async with asyncio.timeout(TIMEOUT_S):
                result = await self.backend.authorize(tag, session)
        except (BackendOffline, TimeoutError) as exc:
            log.info("backend unreachable (%s): offline policy %s", exc or "timeout", self.policy.policy)
            return self.policy.decide(tag)
        except Exception:
            log.exception("backend failed to authorize; offline policy applies")
            return self.policy.decide(tag)
        self.policy.remember(tag, result)
        return result
