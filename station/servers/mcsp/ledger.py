"""The server's ledger: its sessions in SQLite, one row a session, Session-Id = the row id (as in
mmetering). Written with fsync (WAL, synchronous=FULL): a session the server answered OK is billable."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from station import privacy


@dataclass(frozen=True)
class SessionRecord:
    id: int
    session_key: str | None
    station: str
    tag: str
    apartment: str | None
    state: str  # open | closed | superseded
    start_time: str
    end_time: str | None
    meter_start_wh: int | None
    meter_stop_wh: int | None
    energy_wh: int | None
    start_phases: str | None
    stop_phases: str | None
    stop_reason: str | None
    offline: bool
    estimated: bool
    server_meter_start: float | None
    server_meter_stop: float | None


def format_session(r: SessionRecord, *, for_log: bool = False) -> str:
    """One line per session. `for_log`: the tag masked (station.privacy) unless log_tags is on;
    the printed record (`out`, the operator's billing output) keeps it whole."""
    energy = f"{r.energy_wh} Wh" if r.energy_wh is not None else "energy unknown"
    tag = privacy.tag(r.tag) if for_log else r.tag
    return (f"session {r.id}: {tag} ({r.apartment or '?'}) at {r.station}, {r.start_time} -> {r.end_time or '?'}, "
            f"{energy}, meter {r.meter_start_wh}->{r.meter_stop_wh} Wh, {r.state}"
            + (f", reason {r.stop_reason}" if r.stop_reason else ""))



class Ledger:
    """The server's sessions in SQLite. Session-Id = the row id (as in mmetering)."""

    DDL = """
    CREATE TABLE IF NOT EXISTS sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_key TEXT UNIQUE,
        station TEXT NOT NULL,
        tag TEXT NOT NULL,
        tag_norm TEXT NOT NULL,
        apartment TEXT,
        state TEXT NOT NULL,
        start_time TEXT NOT NULL,
        end_time TEXT,
        meter_start_wh INTEGER,
        meter_stop_wh INTEGER,
        energy_wh INTEGER,
        start_phases TEXT,
        stop_phases TEXT,
        stop_reason TEXT,
        offline INTEGER NOT NULL DEFAULT 0,
        estimated INTEGER NOT NULL DEFAULT 0,
        server_meter_start REAL,
        server_meter_stop REAL,
        received_start TEXT NOT NULL,
        received_end TEXT
    );
    CREATE TABLE IF NOT EXISTS stations (name TEXT PRIMARY KEY, last_seen TEXT, status TEXT);
    -- Every START looks for the open sessions of its tag and of its station: without these, a
    -- full scan of a ledger that only grows (19 ms at 100,000 sessions, 174 ms at 1,000,000).
    CREATE INDEX IF NOT EXISTS sessions_open_by_tag ON sessions(tag_norm) WHERE state = 'open';
    CREATE INDEX IF NOT EXISTS sessions_open_by_station ON sessions(station) WHERE state = 'open';
    """
    COLS = ("id", "session_key", "station", "tag", "apartment", "state", "start_time", "end_time", "meter_start_wh",
            "meter_stop_wh", "energy_wh", "start_phases", "stop_phases", "stop_reason", "offline", "estimated",
            "server_meter_start", "server_meter_stop")

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        if str(path) != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(self.DDL)

    def _one(self, where: str, args: tuple) -> SessionRecord | None:
        row = self.db.execute(f"SELECT {', '.join(self.COLS)} FROM sessions WHERE {where}", args).fetchone()
        return self._record(row) if row else None

    @staticmethod
    def _record(row: sqlite3.Row) -> SessionRecord:
        values = dict(row)
        values["offline"], values["estimated"] = bool(values["offline"]), bool(values["estimated"])
        return SessionRecord(**values)

    def by_key(self, key: str) -> SessionRecord | None:
        return self._one("session_key = ?", (key,))

    def by_id(self, session_id: str) -> SessionRecord | None:
        if not session_id.isdigit() or len(session_id) > 18:
            return None
        return self._one("id = ?", (int(session_id),))

    def open_for_tag(self, tag_norm: str) -> SessionRecord | None:
        return self._one("tag_norm = ? AND state = 'open' ORDER BY id DESC LIMIT 1", (tag_norm,))

    def open_at(self, station: str) -> list[SessionRecord]:
        rows = self.db.execute(f"SELECT {', '.join(self.COLS)} FROM sessions WHERE station = ? AND state = 'open'",
                               (station,)).fetchall()
        return [self._record(r) for r in rows]

    def open_stations(self) -> list[str]:
        """The stations that have an open session."""
        return [r[0] for r in self.db.execute("SELECT DISTINCT station FROM sessions WHERE state = 'open'")]

    def insert(self, **values: Any) -> int:
        names = ", ".join(values)
        marks = ", ".join("?" * len(values))
        cur = self.db.execute(f"INSERT INTO sessions ({names}) VALUES ({marks})", tuple(values.values()))
        assert cur.lastrowid is not None  # an INSERT always sets it
        return cur.lastrowid

    def update(self, session_id: int, **values: Any) -> None:
        sets = ", ".join(f"{n} = ?" for n in values)
        self.db.execute(f"UPDATE sessions SET {sets} WHERE id = ?", (*values.values(), session_id))

    def seen(self, station: str, when: str, status: str | None) -> None:
        self.db.execute("INSERT INTO stations(name, last_seen, status) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE"
                        " SET last_seen = excluded.last_seen, status = COALESCE(excluded.status, stations.status)",
                        (station, when, status))

    def all(self) -> list[SessionRecord]:
        rows = self.db.execute(f"SELECT {', '.join(self.COLS)} FROM sessions ORDER BY id").fetchall()
        return [self._record(r) for r in rows]

    def close(self) -> None:
        self.db.close()

