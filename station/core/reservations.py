"""Reservations (OCPP 1.6 Reservation profile): who may start at a reserved connector.

OCPP 1.6 §5.13: the Charge Point "SHALL refuse charging for all incoming
idTags on the reserved connector, except when the incoming idTag or the
parent idTag match" the reservation's. So a reserved connector stays
Reserved when a car is plugged in (only the reserved card moves it on), and
every other tag is refused whatever the plug does.

Pure: the expiry is kept on the monotonic clock (the wall clock may still be
wrong or jump), and the parent lookup is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from station.core.states import State
from station.core.tags import normalize_tag


@dataclass(frozen=True)
class Reservation:
    id: int
    id_tag: str
    parent_id: str | None
    expires_mono: float

    def expired(self, now_mono: float) -> bool:
        return now_mono > self.expires_mono

    def needs_parent(self, tag: str) -> bool:
        """Only the tag's group can tell whether it may start here (the caller asks the backend)."""
        return normalize_tag(tag) != normalize_tag(self.id_tag) and bool(self.parent_id)

    def allows(self, tag: str, parent: str | None = None) -> bool:
        """The reserved tag itself, or a tag whose parent (`parent`, looked up by the caller) is the
        reservation's parent."""
        if normalize_tag(tag) == normalize_tag(self.id_tag):
            return True
        if not self.parent_id:
            return False
        return parent is not None and normalize_tag(parent) == normalize_tag(self.parent_id)


def answer(state: State, busy: bool, current: Reservation | None, reservation_id: int) -> str | None:
    """The ReserveNow refusal for this connector now, or None when it may be reserved."""
    if state is State.FAULTED:
        return "Faulted"
    if state is State.UNAVAILABLE:
        return "Unavailable"
    if current is not None and current.id != reservation_id:
        return "Occupied"
    if state not in (State.AVAILABLE, State.RESERVED) or busy:
        return "Occupied"
    return None


def make(reservation_id: int, id_tag: str, parent_id: str | None, expiry: datetime, now: datetime | None,
         now_mono: float) -> Reservation | None:
    """A reservation that expires at `expiry` (wall clock), or None when it is already over."""
    remaining = (expiry - now).total_seconds() if now is not None else 0.0
    if remaining <= 0:
        return None
    return Reservation(reservation_id, id_tag, parent_id, now_mono + remaining)
