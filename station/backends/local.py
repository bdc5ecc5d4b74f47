"""The built-in `local` backend: tags listed in the config, sessions kept in the journal.

For a single station without a server: `[backend.local] tags` maps each tag
to an apartment or name. Sessions are "delivered" to the journal itself
(`station sessions` lists them for billing). Tags compare case-insensitively,
ignoring separators, so "D6 4F C9 3B" in the config matches "d64fc93b".

A refusal is logged with its reason (INFO), so that an installer reading
`journalctl -u station` can tell a card that is not listed from one listed in
another form: the line says how many tags are listed and whether the tag
matches one with its bytes reversed (`rfid.uid_byte_order`).

`up` exists for the simulator: taking the link down makes this backend
behave as an unreachable server would, so outage scenarios work with it too.
"""

from __future__ import annotations

import logging

from station import privacy
from station.config import Config
from station.core.model import AuthResult, AuthStatus, DeliveryResult, OutboxItem, Session
from station.core.ports import Backend, StationControl
from station.core.tags import normalize_tag
from station.errors import BackendOffline
from station.store import Store

log = logging.getLogger(__name__)


class LocalBackend(Backend):
    kind = "local"
    tells_time = False  # no time to learn, and deliveries carry none: nothing waits for the clock

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
        tag = normalize_tag(id_tag)
        if tag in self.tags:
            log.info("tag %s accepted: %s", privacy.tag(id_tag), self.tags[tag])
            return AuthResult(AuthStatus.ACCEPTED)
        log.info("tag %s refused: %s", privacy.tag(id_tag), self.refusal_reason(tag))
        return AuthResult(AuthStatus.INVALID)

    def refusal_reason(self, tag: str) -> str:
        """Why `tag` (normalized) is refused, in words an installer can act on."""
        if not self.tags:
            return "backend.local.tags is empty (every tap is refused until cards are listed)"
        reason = f"not in backend.local.tags ({len(self.tags)} tag(s) listed)"
        reversed_tag = _reversed_bytes(tag)
        if reversed_tag is not None and reversed_tag in self.tags:
            reason += (f"; listed with its bytes reversed (as {privacy.tag(reversed_tag)}, {self.tags[reversed_tag]}): "
                       "flip rfid.uid_byte_order or write the tag the other way round")
        return reason

    async def deliver(self, item: OutboxItem, session: Session) -> DeliveryResult:
        if not self.up:
            raise BackendOffline("local backend taken down (simulation)")
        self.received.append((item.kind.value, session.id))
        return DeliveryResult(backend_session_id=session.backend_session_id or f"L{session.id}")


def _reversed_bytes(tag: str) -> str | None:
    if len(tag) % 2 or len(tag) < 4 or any(c not in "0123456789ABCDEF" for c in tag):
        return None
    return "".join(tag[i:i + 2] for i in range(len(tag) - 2, -1, -2))


def create(config: Config, store: Store) -> LocalBackend:
    return LocalBackend(dict(config.backend.local.tags))
