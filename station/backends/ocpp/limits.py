"""The power limit handed to the core: charging profiles, and the cap after an invalid id at the start.

The limit is the composite of the installed charging profiles at this
instant (smart.py), or 0 once a transaction whose start was answered with an
id that is not Accepted (1.6 StartTransaction idTagInfo with
StopTransactionOnInvalidId false; 2.0.1 TransactionEvent idTokenInfo with
TxCtrlr.StopTxOnInvalidId false) has delivered MaxEnergyOnInvalidId Wh.
Both versions use this module; each gives it its profiles and its idea of
the running transaction's id (`LimitHost`).
It is handed to the core only when it changes, in its own unit
(`hand_on`): a profile in A as amps (`set_current_limit`: the current the
charge controller offers), one in W as watts (`set_power_limit`).

The task sleeps until the next instant a profile can change the limit
(`Profiles.next_change`), at most PROFILE_S; it is woken when profiles are
set or cleared, a transaction starts or ends and the clock is set. Only
while a deauthorized transaction runs does it look every second (its energy
against the cap); with no profile installed it wakes every IDLE_S only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol

from station.clock import MONO_PREFIX, parse_iso

from .link import sleep_or_event

if TYPE_CHECKING:
    from datetime import datetime

    from station.core.model import Session
    from station.core.ports import StationControl

    from .smart import Profiles

log = logging.getLogger(__name__)

IDLE_S = 300.0
PROFILE_S = 60.0
CAP_S = 1.0


class LimitHost(Protocol):
    """What the limit needs of a version."""

    profiles: Profiles

    @property
    def control(self) -> StationControl: ...

    @property
    def connector_id(self) -> int: ...

    def active_session(self) -> Session | None: ...

    def transaction_id(self, session: Session) -> int | str | None: ...

    def now(self) -> datetime: ...


class PowerLimit:
    def __init__(self, backend: LimitHost) -> None:
        self.b = backend
        self._wake = asyncio.Event()
        self._sent: object = object()  # the last (watts, amps) handed to the core
        self._deauthorized: tuple[int, int] | None = None  # (session id, energy cap Wh)

    def wake(self) -> None:
        self._wake.set()

    def deauthorize(self, session_id: int, cap_wh: int) -> None:
        """Keep the transaction but stop delivering energy beyond `cap_wh` (meter register)."""
        self._deauthorized = (session_id, cap_wh)
        self.wake()

    def transaction_ended(self) -> None:
        self._deauthorized = None
        self.wake()

    def tx_start(self) -> tuple[int | str | None, datetime | None]:
        """The running transaction's id and its start (None while the clock was unknown at its start)."""
        session = self.b.active_session()
        if session is None:
            return None, None
        start = None
        if session.started_at and not session.started_at.startswith(MONO_PREFIX):
            start = parse_iso(session.started_at)
        return self.b.transaction_id(session), start

    def current(self) -> tuple[float | None, float | None]:
        """(watts, amps): the limit now, in watts, and in amps when it is a profile's in A."""
        session = self.b.active_session()
        if self._deauthorized is not None and session is not None and session.id == self._deauthorized[0]:
            reading = self.b.control.last_reading()
            if reading is None or reading.energy_wh >= self._deauthorized[1]:
                return 0.0, None
        tx_id, tx_start = self.tx_start()
        value = self.b.profiles.limit_detail_at(self.b.now(), self.b.connector_id, tx_start, tx_id)
        return (None, None) if value is None else (value[0], value[2])

    def _next_wait(self) -> float:
        if self._deauthorized is not None:
            return CAP_S
        if not self.b.profiles.installed:
            return IDLE_S
        now = self.b.now()
        change = self.b.profiles.next_change(now, self.tx_start()[1])
        if change is None:
            return PROFILE_S
        return max(0.0, min(PROFILE_S, (change - now).total_seconds() + 0.01))

    async def run(self) -> None:
        while True:
            self._wake.clear()
            wait = CAP_S
            try:
                limit = self.current()
                if limit != self._sent:
                    self._sent = limit
                    hand_on(self.b.control, *limit)
                wait = self._next_wait()
            except Exception:
                log.exception("evaluating the charging profiles failed")
            await sleep_or_event(self._wake, wait)


def hand_on(control: StationControl, watts: float | None, amps: float | None) -> None:
    """The limit to the core in its own unit; the new one first, then the other cleared (so that a
    moment in between never offers more than either)."""
    if amps is not None:
        log.info("current limit now %g A", amps)
        control.set_current_limit(amps)
        control.set_power_limit(None)
    else:
        log.info("power limit now %s", "none" if watts is None else f"{watts:.0f} W")
        control.set_power_limit(watts)
        control.set_current_limit(None)
