"""The journal, read-only: for the status page, and for a station whose journal cannot be written.

`JournalView` opens the journal file with SQLite's `mode=ro` on a connection
of its own (the status page reads it from a worker thread, so neither it nor
the daemon waits for the other) and answers with the model's values: the
last sessions (station.core.model.Session) and the last faults
(`FaultRecord`). No one outside the journal's two modules runs SQL on it.

`DegradedStore` is what the daemon opens when the journal cannot be opened
for writing (a read-only file system, a full disk): the journal opened
read-only. Every write fails with StorageError, so no session can start, but
the station runs: it shows and reports the fault, its sessions stay readable
(`station sessions`, the status page) and what is queued is still delivered.
Without it the daemon exited and systemd restarted it, again and again, until
the file system was repaired. `reopen()` continues on a writable connection
once the file system lets it (station.core.journal probes for that).
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from station.core.model import Session
from station.errors import StorageError
from station.store import DB_NAME, Store, migrate, session_from_row


@dataclass(frozen=True)
class FaultRecord:
    """A fault as the journal keeps it, with the meter's register while it lasted."""

    source: str  # contactor | meter | reader | supervisor
    code: str
    text: str
    vendor: str | None
    raised_at: str
    raised_wh: int | None
    cleared_at: str | None
    cleared_wh: int | None

    @property
    def energy_wh(self) -> int | None:
        """The energy that flowed while it lasted (a welded contactor lets it flow), once cleared."""
        if self.raised_wh is None or self.cleared_wh is None:
            return None
        return self.cleared_wh - self.raised_wh


def open_read_only(path: Path, unchanging: bool = False) -> sqlite3.Connection:
    """A connection that can only read `path`. `unchanging`: no one writes it (the file system is
    read-only), so a journal closed cleanly there, which has no WAL files and can make none, is
    opened as immutable; and no file at all gives an empty journal in memory that refuses writes."""
    conn: sqlite3.Connection | None = None
    try:
        if unchanging and not path.exists():
            conn = sqlite3.connect(":memory:", check_same_thread=False)
            migrate(conn)
            conn.execute("PRAGMA query_only=ON")
        else:
            for options in ("mode=ro", "mode=ro&immutable=1")[:2 if unchanging else 1]:
                conn = sqlite3.connect(f"file:{path}?{options}", uri=True, check_same_thread=False, timeout=5)
                try:
                    conn.execute("SELECT COUNT(*) FROM sessions").fetchone()
                    break
                except sqlite3.Error:
                    conn.close()
                    conn = None
            if conn is None:
                raise StorageError(f"cannot read journal {path}")
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read journal {path}: {exc}") from None
    conn.row_factory = sqlite3.Row
    conn.isolation_level = None
    return conn


class DegradedStore(Store):
    """The journal opened read-only: the station runs, refuses sessions, and says why."""

    read_only = True

    @classmethod
    def open_degraded(cls, state_dir: str | Path) -> DegradedStore:
        path = Path(state_dir) / DB_NAME
        return cls(open_read_only(path, unchanging=True), path)

    def reopen(self) -> None:
        """Continue on a writable connection; raises StorageError while the journal cannot be written."""
        fresh = Store.open(self.path.parent)
        with self._lock:
            old, self._db = self._db, fresh._db
            self.read_only = False
        old.close()


class JournalView:
    """The last sessions and faults, read through a read-only connection of its own (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _rows(self, sql: str, args: tuple) -> list[sqlite3.Row]:
        with self._lock:
            try:
                if self._db is None:
                    self._db = open_read_only(self.path)
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                self._forget()
                raise StorageError(f"cannot read journal {self.path}: {exc}") from None

    def sessions(self, last: int) -> list[Session]:
        """The last `last` sessions that charged (active or stopped), newest first."""
        rows = self._rows("SELECT * FROM sessions WHERE state IN ('active', 'stopped') ORDER BY id DESC LIMIT ?",
                          (last,))
        return [session_from_row(r) for r in rows]

    def needing_attention(self, last: int) -> list[Session]:
        """The last `last` sessions the operator must look at, newest first: messages held undelivered
        (station/held.py), transactions the backend may hold open (OCPP: answers lost)."""
        rows = self._rows("SELECT * FROM sessions WHERE state IN ('active', 'stopped') AND ("
                          "json_extract(extra, '$.held') IS NOT NULL"
                          " OR json_extract(extra, '$.maybe_open_at_backend.count') > 0) ORDER BY id DESC LIMIT ?",
                          (last,))
        return [session_from_row(r) for r in rows]

    def faults(self, last: int) -> list[FaultRecord]:
        """The last `last` faults, newest first."""
        rows = self._rows("SELECT * FROM faults ORDER BY id DESC LIMIT ?", (last,))
        return [FaultRecord(r["source"], r["code"], r["text"], r["vendor"], r["raised_at"], r["raised_wh"],
                            r["cleared_at"], r["cleared_wh"]) for r in rows]

    def _forget(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def close(self) -> None:
        with self._lock:
            self._forget()
