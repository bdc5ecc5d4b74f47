"""The shell's side of the journal: every write a session or a fault makes, in its order.

The store (station/store.py) is SQLite and knows nothing of charging; the
machine (station/core/connector.py) knows the order but does no I/O. This
module carries the machine's journal actions out:

    tap            open()       'authorizing', before the backend is asked
    refused/abort  end()
    accepted       activate()   'active' and its START queued, before the contactor closes
    sampling       sample()     the last reading, bounded by journal_interval_s (SD-card wear)
    end            close()      'stopped' and its STOP queued in one transaction
    start-up       recover()    what a power cut left open, closed as PowerLoss
    faults         fault()      raised and cleared, with the meter's register
    backends       queue()      a message of the backend's own (OCPP meter values) into the outbox

Writes that only add knowledge (a refusal's reason, a sample, a fault) never
stop the charging cycle when the disk fails: they are logged and it goes on.
The writes that make a session billable raise StorageError, so the machine
refuses rather than charge without a record; `storage_fault()` names the
cause for the LCD, the status page and the backend (full, read-only, I/O).

A stop the journal cannot take (the contactor is already open, the energy
known) is kept in memory, with its own time and reason, and written first
the next time the journal takes a write (`probe()`, or the next tap); a
power cut meanwhile loses it, and the restart closes the session as
PowerLoss. The same holds for the PowerLoss closes at start-up. A journal
opened read-only at start (the daemon's degraded mode) is opened again for
writing by `probe()` once the file system lets it.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from station import privacy
from station.clock import Clock
from station.core import sessiontime
from station.core.model import AuthResult, Fault, MessageKind, MeterReading, Session
from station.errors import StorageError

if TYPE_CHECKING:  # types only: the composition root hands the instances in (no import cycle)
    from station.store import Store

log = logging.getLogger(__name__)

REOPEN_S = 30.0  # a read-only journal is opened for writing again at most this often


def storage_fault(exc: StorageError) -> Fault:
    """The fault a failed journal write is shown and reported as (OCPP OtherError, a vendor code)."""
    text = str(exc)
    lower = text.lower()
    if "full" in lower or "no space" in lower:
        vendor = "JournalFull"
    elif "readonly" in lower or "read-only" in lower or "read only" in lower:
        vendor = "JournalReadOnly"
    else:
        vendor = "JournalError"  # an I/O error: a failing SD card, a file system gone read-only under us
    return Fault("OtherError", text, vendor)


@dataclass
class _Unwritten:
    """A stop the journal could not take yet, with its times as they were at the stop
    (station/core/sessiontime.py: the monotonic references, a start the stop corrected)."""

    session: Session
    wh: int
    at: str
    reason: str
    phases: tuple[int, ...]
    estimated: bool
    payload: dict[str, Any]
    times: dict[str, Any] | None = None
    started_at: str | None = None


class Journal:
    def __init__(self, store: Store, clock: Clock, connector_id: int,
                 reopen: Callable[[], None] | None = None) -> None:
        self.store, self.clock, self.connector_id = store, clock, connector_id
        self._reopen = reopen  # the daemon's: open the journal for writing again (degraded mode)
        self._reopened_at = -REOPEN_S
        self._refused: StorageError | None = None  # why the last reopening failed
        self.unwritten: list[_Unwritten] = []

    def _safe(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except StorageError as exc:
            log.error("%s", exc)

    # ------------------------------------------------------------------ a session's life
    def open(self, tag: str, reading: MeterReading, reservation_id: int | None) -> Session:
        """The tap, before the backend is asked. Raises StorageError: then refuse."""
        self.flush()
        return self.store.create_session(uuid.uuid4().hex, self.connector_id, tag, reading.energy_wh,
                                         reading.energy_phase_wh, reservation_id)

    def end(self, session: Session, state: str, reason: str) -> None:
        """A tap that did not become a session: 'refused' or 'aborted'."""
        self._safe(self.store.finish_authorization, session.id, state, reason)

    def activate(self, session: Session, reading: MeterReading, result: AuthResult, start_delivered: bool) -> Session:
        """The session starts, its START queued (unless the backend's authorize was its START), before
        the contactor closes. Raises StorageError."""
        started_at, times = sessiontime.start(self.clock)
        payload = {"id_tag": session.id_tag, "meter_start_wh": reading.energy_wh, "timestamp": started_at,
                   "reservation_id": session.reservation_id}
        return self.store.activate(session.id, reading.energy_wh, started_at, reading.energy_phase_wh,
                                   result.backend_session_id, result.parent_id, result.offline, payload,
                                   start_delivered=start_delivered, times=times)

    def sample(self, session: Session, wh: int) -> None:
        self._safe(self.store.record_meter, session.id, wh, self.clock.stamp())

    def close(self, session: Session, wh: int, phases: tuple[int, ...], estimated: bool, reason: str,
              id_tag: str | None, at: str) -> tuple[Session, StorageError | None]:
        """Stopped, with its STOP queued, in one transaction. When the journal cannot take it, the
        stop is kept (the contactor is open, the energy known) and written first at the next chance;
        the session as it ended is returned either way, with the error if there was one.

        `at` is the machine's stamp of the stop; the time journaled is the clock's at this call (the
        same moment, reconciled with the session's monotonic duration: sessiontime.stop)."""
        payload = {"reason": reason} if id_tag is None else {"reason": reason, "id_tag": id_tag}
        at, started_at, times = sessiontime.stop(self.clock, self._fresh(session))
        stop = _Unwritten(session, wh, at, reason, phases, estimated, payload, times, started_at)
        try:
            self.flush()
            return self._write_stop(stop), None
        except StorageError as exc:
            log.critical("cannot journal the stop of session %d (%d Wh, %s at %s): %s; kept in memory until the "
                         "journal takes it", session.id, wh, reason, at, exc)
            self.unwritten.append(stop)
            return replace(session, state="stopped", meter_stop_wh=wh, stopped_at=at, stop_reason=reason,
                           stop_phase_wh=phases, meter_stop_estimated=estimated,
                           started_at=started_at or session.started_at), exc

    def _write_stop(self, s: _Unwritten) -> Session:
        return self.store.stop(s.session.id, s.wh, s.at, s.reason, s.phases, s.estimated, s.payload,
                               times=s.times, started_at=s.started_at)

    def _fresh(self, session: Session) -> Session:
        """The session as journaled now (the deliverer may have dated its start meanwhile)."""
        try:
            return self.store.find_session(session.id) or session
        except StorageError:
            return session

    def flush(self) -> None:
        """Write the stops kept in memory, oldest first. Raises StorageError while it cannot."""
        while self.unwritten:
            self._write_stop(self.unwritten[0])
            done = self.unwritten.pop(0)
            log.warning("session %d: its stop (%s at %s) is journaled now", done.session.id, done.reason, done.at)

    def probe(self) -> None:
        """Can the journal be written again? Opens a read-only journal for writing (at most every
        REOPEN_S), writes what waits in memory, then a probe. Raises StorageError while it cannot."""
        if self.store.read_only and self._reopen is not None:
            if not os.access(self.store.path.parent, os.W_OK):  # a read-only file system, found cheaply
                raise StorageError(f"journal {self.store.path}: attempt to write a readonly database")
            now = time.monotonic()
            if now - self._reopened_at < REOPEN_S and self._refused is not None:
                raise self._refused  # opening it costs an integrity check: not every few seconds
            self._reopened_at = now
            try:
                self._reopen()
            except StorageError as exc:
                self._refused = exc
                raise
        self.flush()
        self.store.check_writable()

    def queue(self, session_id: int, kind: MessageKind, payload: dict[str, Any]) -> None:
        """A backend's own transaction message into the outbox (ordered with START and STOP).
        Raises StorageError."""
        self.store.enqueue(kind, session_id, payload, self.clock.stamp())

    def resend(self, session_id: int) -> int:
        """A session's held messages back into the outbox (station/held.py); how many. Raises StorageError."""
        return self.store.resend(session_id)

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
                self.end(s, "aborted", "PowerLoss")
                continue
            if reading is not None:
                wh, phases, estimated = reading.energy_wh, reading.energy_phase_wh, False
            else:
                wh, phases, estimated = s.extra.get("last_wh") or s.meter_start_wh, (), True
            if wh < s.meter_start_wh:  # never bill negative energy: a replaced meter, say
                log.error("session %d: meter %d Wh is below its start %d Wh; stopping at start", s.id, wh, s.meter_start_wh)
                wh, estimated = s.meter_start_wh, True
            at, times = sessiontime.recovered(self.clock, s)
            stop = _Unwritten(s, wh, at, "PowerLoss", phases, estimated, {"reason": "PowerLoss"}, times)
            try:
                self._write_stop(stop)
            except StorageError as exc:
                log.error("session %d: its PowerLoss close waits for the journal: %s", s.id, exc)
                self.unwritten.append(stop)
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
