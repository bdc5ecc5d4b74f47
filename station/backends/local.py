"""The built-in `local` backend: tags listed in the config, sessions kept in the journal.

For a single station without a server: `[backend.local] tags` maps each tag
to an apartment or name. Sessions are "delivered" to the journal itself
(`station sessions` lists them for billing). Tags compare case-insensitively,
ignoring separators, so "D6 4F C9 3B" in the config matches "d64fc93b".

`up` exists for the simulator: taking the link down makes this backend
behave as an unreachable server would, so outage scenarios work with it too.
"""

from __future__ import annotations

from station.config import Config
from station.core.model import AuthResult, AuthStatus, DeliveryResult, OutboxItem, Session
from station.core.ports import Backend, StationControl
from station.core.tags import normalize_tag
from station.errors import BackendOffline
from station.store import Store


class LocalBackend(Backend):
    kind = "local"

    def __init__(self, tags: dict[str, str]) -> None:
        super().__init__()
        self.tags = {normalize_tag(tag): name for tag, name in tags.items()}
        self.up = True
        self.received: list[tuple[str, int]] = []  # (kind, session id) as delivered, for the terminal view

    async def start(self, station: StationControl) -> None:
        await super().start(station)
        self._set_online(self.up)

    def set_up(self, up: bool) -> None:
        self.up = up
        self._set_online(up)

    async def wait_ready(self, timeout: float) -> bool:
        return self.up

    def apartment(self, id_tag: str) -> str | None:
        return self.tags.get(normalize_tag(id_tag))

    async def authorize(self, id_tag: str, session: Session) -> AuthResult:
        if not self.up:
            raise BackendOffline("local backend taken down (simulation)")
        if normalize_tag(id_tag) in self.tags:
            return AuthResult(AuthStatus.ACCEPTED)
        return AuthResult(AuthStatus.INVALID)

    async def deliver(self, item: OutboxItem, session: Session) -> DeliveryResult:
        if not self.up:
            raise BackendOffline("local backend taken down (simulation)")
        self.received.append((item.kind.value, session.id))
        return DeliveryResult(backend_session_id=session.backend_session_id or f"L{session.id}")


def create(config: Config, store: Store) -> LocalBackend:
    return LocalBackend(dict(config.backend.local.tags))
