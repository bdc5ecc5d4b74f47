"""The charger's side of the journal: every write a session or a fault makes, in its order.

The store (station/store.py) is SQLite and knows nothing of charging; this
module knows which record a moment of the charging cycle needs:

    tap            open()       'authorizing', before the backend is asked
    refused/abort  refuse(), abort()
    accepted       activate()   'active' and its START queued, before the contactor closes
    sampling       sample()     the last reading, bounded by journal_interval_s (SD-card wear)
    end            close()      'stopped' and its STOP queued in one transaction; retried until
                                 written, since the contactor is already open and the energy known
    start-up       recover()    what a power cut left open, closed as PowerLoss
    faults         fault()      raised and cleared, with the meter's register

Writes that only add knowledge (a refusal's reason, a sample, a fault) never
stop the charger when the disk fails: they are logged and the cycle goes on;
the writes that make a session billable raise StorageError, so the charger
refuses rather than charge without a record.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from station import privacy
from station.clock import Clock
from station.core import sessiontime
from station.core.model import AuthResult, Fault, MeterReading, Session
from station.errors import StorageError

if TYPE_CHECKING:  # types only: the composition root hands the instances in (no import cycle)
    from station.store import Store

log = logging.getLogger(__name__)

STOP_RETRY_S = 2.0


class Journal:
    def __init__(self, store: Store, clock: Clock, connector_id: int) -> None:
        self.store, self.clock, self.connector_id = store, clock, connector_id

    def _safe(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except StorageError as exc:
            log.error("%s", exc)

    # ------------------------------------------------------------------ a session's life
    def open(self, tag: str, reading: MeterReading, reservation_id: int | None) -> Session:
        """The tap, before the backend is asked. Raises StorageError: then refuse."""
        return self.store.create_session(uuid.uuid4().hex, self.connector_id, tag, reading.energy_wh,
                                         reading.energy_phase_wh, reservation_id)

    def refuse(self, session: Session, reason: str) -> None:
        self._safe(self.store.finish_authorization, session.id, "refused", reason)

    def abort(self, session: Session, why: str) -> None:
        self._safe(self.store.finish_authorization, session.id, "aborted", why)

    def activate(self, session: Session, reading: MeterReading, result: AuthResult) -> Session:
        """The session starts, its START queued, before the contactor closes. Raises StorageError."""
        started_at, times = sessiontime.start(self.clock)
        payload = {"id_tag": session.id_tag, "meter_start_wh": reading.energy_wh, "timestamp": started_at,
                   "reservation_id": session.reservation_id}
        return self.store.activate(session.id, reading.energy_wh, started_at, reading.energy_phase_wh,
                                   result.backend_session_id, result.parent_id, result.offline, payload,
                                   start_delivered=result.backend_session_id is not None, times=times)

    def sample(self, session: Session, wh: int) -> None:
        self._safe(self.store.record_meter, session.id, wh, self.clock.stamp())

    async def close(self, session: Session, wh: int, phases: tuple[int, ...], estimated: bool, reason: str,
                    id_tag: str | None, on_error: Callable[[StorageError], None]) -> Session:
        """Stopped, with its STOP queued, in one transaction; retried until the disk takes it (the
        contactor is open, the energy is known: it must be recorded before anything else)."""
        stopped_at, started_at, times = sessiontime.stop(self.clock, self._fresh(session))
        payload = {"reason": reason} if id_tag is None else {"reason": reason, "id_tag": id_tag}
        while True:
            try:
                return self.store.stop(session.id, wh, stopped_at, reason, phases, estimated, payload,
                                       times=times, started_at=started_at)
            except StorageError as exc:
                on_error(exc)
                log.critical("cannot journal the stop of session %d (%d Wh): %s; retrying", session.id, wh, exc)
                await asyncio.sleep(STOP_RETRY_S)

    def _fresh(self, session: Session) -> Session:
        """The session as journaled now (the deliverer may have dated its start meanwhile)."""
        try:
            return self.store.find_session(session.id) or session
        except StorageError:
            return session

    # ------------------------------------------------------------------ after a power cut
    def leftovers(self) -> list[Session]:
        try:
            return self.store.sessions(("active", "authorizing"))
        except StorageError as exc:
            log.error("cannot read the journal at start: %s", exc)
            return []

    def recover(self, leftovers: list[Session], reading: MeterReading | None) -> list[str]:
        """Close what a power cut (or a dead loop) left open: reason PowerLoss, at `reading` (read
        now), else at the last stored reading, marked estimated. Returns one note per session."""
        notes = []
        for s in leftovers:
            if s.state == "authorizing":
                self.abort(s, "PowerLoss")
                continue
            if reading is not None:
                wh, phases, estimated = reading.energy_wh, reading.energy_phase_wh, False
            else:
                wh, phases, estimated = s.extra.get("last_wh") or s.meter_start_wh, (), True
            if wh < s.meter_start_wh:  # never bill negative energy: a replaced meter, say
                log.error("session %d: meter %d Wh is below its start %d Wh; stopping at start", s.id, wh, s.meter_start_wh)
                wh, estimated = s.meter_start_wh, True
            stopped_at, times = sessiontime.recovered(self.clock, s)
            self._safe(self.store.stop, s.id, wh, stopped_at, "PowerLoss", phases, estimated, {"reason": "PowerLoss"},
                       times)
            log.warning("session %d of %s closed after power loss at %d Wh%s", s.id, privacy.tag(s.id_tag), wh,
                        " (last stored reading)" if estimated else "")
            notes.append(f"session {s.id} closed: PowerLoss")
        return notes

    # ------------------------------------------------------------------ faults and settings
    def fault(self, source: str, fault: Fault | None, wh: int | None) -> None:
        """A fault raised (or cleared, `fault` None) with the meter's register at that moment."""
        if source == "storage":
            return  # the journal is what failed
        if fault is None:
            self._safe(self.store.clear_fault, source, self.clock.stamp(), wh)
        else:
            self._safe(self.store.raise_fault, source, fault.code, fault.text, fault.vendor, self.clock.stamp(), wh)

    def check_writable(self) -> None:
        """Raises StorageError if a write cannot be committed now (disk full, read-only)."""
        self.store.check_writable()

    def pending(self) -> int | None:
        """Messages not yet delivered (None: the journal cannot be read)."""
        try:
            return self.store.pending_messages()
        except StorageError:
            return None

    def setting(self, key: str, default: Any) -> Any:
        try:
            return self.store.get_json(key, default)
        except StorageError:
            return default

    def remember(self, key: str, value: Any) -> None:
        self._safe(self.store.put_json, key, value)
