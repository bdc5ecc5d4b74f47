"""The journal: sessions, the outbound queue, the auth cache and settings, in SQLite.

Theory of operation
-------------------
Every effect is preceded by its record. A session row exists before the
contactor closes; its stop is written (in the same transaction as the STOP
message) before the stop is shown or sent. Messages to the backend live in
`outbox` and leave it only when the backend confirmed them, in `seq` order.

Durability: WAL with `synchronous=FULL`. In WAL mode FULL fsyncs the log on
every commit, so a commit that returned survives a power cut; NORMAL would
only guarantee consistency and could lose the last commits, which here are
exactly the sessions that were just billed. The write volume is small (a few
commits per session plus one meter reading every `journal_interval_s`), so
the fsync cost is irrelevant, and WAL keeps readers (`station sessions`)
from blocking the daemon.

Faults: sqlite errors surface as StorageError. At open, an integrity check
runs; a corrupt file is set aside (renamed with a timestamp), and whatever
rows can still be read from it are copied into a fresh journal.

Schema: `PRAGMA user_version` is the journal's schema version. At open, the
steps in MIGRATIONS above it run in order, each in its own transaction
together with the new user_version, so an upgrade that is interrupted (a
power cut) resumes at the step it stopped at and never leaves half a step.
Rules for a new step: add it as MIGRATIONS[n + 1]; only add (tables,
columns with defaults, indexes), never drop or rename, so that the previous
release still runs on a migrated journal after a rollback; and make it
idempotent (IF NOT EXISTS, or check the column first), because such a
rollback writes its own, lower user_version and the step runs again at the
next upgrade.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from station import salvage
from station.core.model import MessageKind, OutboxItem, Session
from station.errors import StorageError
from station.held import HeldMessages

log = logging.getLogger(__name__)

DB_NAME = "journal.db"

_DDL = """
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    connector_id INTEGER NOT NULL,
    id_tag TEXT NOT NULL,
    state TEXT NOT NULL,              -- authorizing | active | stopped | refused | aborted
    meter_start_wh INTEGER,
    started_at TEXT,
    meter_stop_wh INTEGER,
    stopped_at TEXT,
    stop_reason TEXT,
    backend_session_id TEXT,
    reservation_id INTEGER,
    meter_stop_estimated INTEGER NOT NULL DEFAULT 0,
    start_phase_wh TEXT NOT NULL DEFAULT '[]',
    stop_phase_wh TEXT NOT NULL DEFAULT '[]',
    parent_id TEXT,
    authorized_offline INTEGER NOT NULL DEFAULT 0,
    last_wh INTEGER,                  -- last meter reading during the session (bounded writes)
    last_wh_at TEXT,
    delivered INTEGER NOT NULL DEFAULT 0,
    rejected TEXT,
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    session_id INTEGER NOT NULL,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS auth_cache (
    tag TEXT PRIMARY KEY, status TEXT NOT NULL, parent_id TEXT, expires REAL NOT NULL
);
"""


_V4_DDL = """
-- Faults, with the meter's reading when raised and cleared: a welded contactor lets energy flow
-- with no session, and the journal must say how much.
CREATE TABLE IF NOT EXISTS faults (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,             -- contactor | meter | reader | supervisor
    code TEXT NOT NULL, text TEXT NOT NULL, vendor TEXT,
    raised_at TEXT NOT NULL, raised_wh INTEGER,
    cleared_at TEXT, cleared_wh INTEGER
);
-- Queued messages whose session row is gone (a journal salvaged after corruption): kept for
-- the operator instead of blocking every later message.
CREATE TABLE IF NOT EXISTS outbox_parked (
    seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, session_id INTEGER NOT NULL, payload TEXT NOT NULL,
    created_at TEXT NOT NULL, reason TEXT NOT NULL
);
"""


def _v1_tables(conn: sqlite3.Connection) -> None:
    """The tables of release 0.1.0 (a journal of version 0 is empty or has exactly these)."""
    for stmt in _DDL.split(";"):
        if stmt.strip():
            conn.execute(stmt)


def _v2_index_states(conn: sqlite3.Connection) -> None:
    """Sessions by state: every start (open sessions after a power cut) and every `station
    sessions` read them so, and the journal keeps every session for billing, for years."""
    conn.execute("CREATE INDEX IF NOT EXISTS sessions_by_state ON sessions(state)")


def _v3_session_samples(conn: sqlite3.Connection) -> None:
    """Meter samples a backend sends with a session's stop (OCPP StopTxnSampledData)."""
    conn.execute("CREATE TABLE IF NOT EXISTS session_samples (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                 " session_id INTEGER NOT NULL, payload TEXT NOT NULL)")
    conn.execute("CREATE INDEX IF NOT EXISTS session_samples_by_session ON session_samples(session_id, seq)")


def _v4_faults_and_parked(conn: sqlite3.Connection) -> None:
    """Faults with the meter's register (docs/safety.md), and messages parked when their session is gone."""
    for stmt in _V4_DDL.split(";"):
        if stmt.strip():
            conn.execute(stmt)


#: schema version -> the step that brings a journal of the version before it there
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _v1_tables,
    2: _v2_index_states,
    3: _v3_session_samples,
    4: _v4_faults_and_parked,
}
SCHEMA_VERSION = max(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the journal to SCHEMA_VERSION; returns the version it had."""
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        # A rollback to this release: the newer steps only added things, so this code still
        # works on it; the version stays, so that the newer release does not run them again.
        log.warning("journal schema %d is newer than this station's (%d); using it as it is", found, SCHEMA_VERSION)
        return found
    for version in range(found + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version](conn)
            conn.execute(f"PRAGMA user_version={version}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if found:
            log.info("journal migrated to schema %d (%s)", version, (MIGRATIONS[version].__doc__ or "").split("\n")[0])
    return found


def _session(row: sqlite3.Row) -> Session:
    s = Session(
        id=row["id"], key=row["key"], connector_id=row["connector_id"], id_tag=row["id_tag"],
        meter_start_wh=row["meter_start_wh"], started_at=row["started_at"],
        meter_stop_wh=row["meter_stop_wh"], stopped_at=row["stopped_at"], stop_reason=row["stop_reason"],
        backend_session_id=row["backend_session_id"], reservation_id=row["reservation_id"],
        meter_stop_estimated=bool(row["meter_stop_estimated"]),
        start_phase_wh=tuple(json.loads(row["start_phase_wh"])), stop_phase_wh=tuple(json.loads(row["stop_phase_wh"])),
        parent_id=row["parent_id"], authorized_offline=bool(row["authorized_offline"]), state=row["state"],
        extra=json.loads(row["extra"]),
    )
    s.extra["delivered"] = bool(row["delivered"])
    if row["rejected"]:
        s.extra["rejected"] = row["rejected"]
    s.extra["last_wh"] = row["last_wh"]
    return s


class Store(HeldMessages):
    """One SQLite file. Thread-safe by a lock; every public write is one transaction.
    Messages held undelivered are station/held.py's part of it."""

    read_only = False  # opened read-only (station.journalview.DegradedStore): every write fails

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._db = conn
        self.path = path
        self._lock = threading.RLock()
        self.writes = 0  # committed write transactions (SD-card wear accounting)

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(cls, state_dir: str | Path) -> Store:
        state = Path(state_dir)
        try:
            state.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create state directory {state}: {exc.strerror or exc}") from None
        path = state / DB_NAME
        recovered: list[str] = []
        if path.exists() and not salvage.healthy(path):
            aside = path.with_name(f"{DB_NAME}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            recovered = salvage.salvage(path)
            for suffix in ("", "-wal", "-shm"):
                p = Path(str(path) + suffix)
                if p.exists():
                    try:
                        p.rename(Path(str(aside) + suffix))
                    except OSError as exc:
                        raise StorageError(f"journal {path} is damaged and cannot be set aside: "
                                           f"{exc.strerror or exc}") from None
            log.error("journal %s failed its integrity check; set aside as %s, %d statements recovered",
                      path, aside.name, len(recovered))
        conn = None
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            version = max(migrate(conn), SCHEMA_VERSION)
            # Written even when it did not change: a journal that cannot be written (a
            # read-only or failing file system) fails here, at start, with the cause,
            # rather than at the first tap.
            conn.execute(f"PRAGMA user_version={version}")
            for stmt in recovered:
                try:
                    conn.execute(stmt)
                except sqlite3.DatabaseError:
                    pass
            if recovered:
                salvage.requeue_lost_messages(conn)
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()  # a half-opened journal must not keep the file (and its filesystem) busy
            raise StorageError(f"cannot open journal {path}: {exc}") from None
        return cls(conn, path)

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass

    # ---------------------------------------------------------------- helpers
    def _write(self, fn, *args):
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(*args)
                    self._db.execute("COMMIT")
                except BaseException:
                    # A COMMIT that failed on I/O (read-only or full disk) was already rolled
                    # back by SQLite: a second ROLLBACK would raise "no transaction is active"
                    # and hide the real cause from the log and the LCD.
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StorageError(f"journal write failed ({self.path}): {exc}") from None
            self.writes += 1
            return result

    def _read(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"journal read failed ({self.path}): {exc}") from None

    def check_writable(self) -> None:
        """Raises StorageError if a write cannot be committed now (disk full, read-only)."""
        self._write(lambda: self._db.execute(
            "INSERT OR REPLACE INTO settings(key, value) VALUES ('probe', ?)", (json.dumps(time.time()),)))

    # ---------------------------------------------------------------- sessions
    def create_session(self, key: str, connector_id: int, id_tag: str, meter_wh: int | None,
                       phase_wh: tuple[int, ...] = (), reservation_id: int | None = None) -> Session:
        """Record a tap before anything is asked of the backend (state 'authorizing')."""
        def do() -> int:
            cur = self._db.execute(
                "INSERT INTO sessions(key, connector_id, id_tag, state, meter_start_wh, start_phase_wh, reservation_id)"
                " VALUES (?, ?, ?, 'authorizing', ?, ?, ?)",
                (key, connector_id, id_tag, meter_wh, json.dumps(list(phase_wh)), reservation_id))
            assert cur.lastrowid is not None  # an INSERT into a rowid table always has one
            return cur.lastrowid
        return self.session(self._write(do))

    def activate(self, session_id: int, meter_start_wh: int, started_at: str, phase_wh: tuple[int, ...],
                 backend_session_id: str | None, parent_id: str | None, offline: bool,
                 start_payload: dict[str, Any], start_delivered: bool, times: dict[str, Any] | None = None) -> Session:
        """The session starts: one transaction records it (and its `times`, sessiontime.py) and queues its START."""
        def do() -> None:
            if times:
                self._merge_extra(session_id, times)
            self._db.execute(
                "UPDATE sessions SET state='active', meter_start_wh=?, started_at=?, start_phase_wh=?,"
                " backend_session_id=?, parent_id=?, authorized_offline=?, last_wh=?, last_wh_at=? WHERE id=?",
                (meter_start_wh, started_at, json.dumps(list(phase_wh)), backend_session_id, parent_id,
                 int(offline), meter_start_wh, started_at, session_id))
            if not start_delivered:
                self._enqueue(MessageKind.START, session_id, start_payload, started_at)
        self._write(do)
        return self.session(session_id)

    def finish_authorization(self, session_id: int, state: str, reason: str | None = None) -> None:
        """A tap that did not become a session: 'refused' (by the backend) or 'aborted'."""
        self._write(lambda: self._db.execute(
            "UPDATE sessions SET state=?, stop_reason=? WHERE id=?", (state, reason, session_id)))

    def record_meter(self, session_id: int, wh: int, at: str) -> None:
        self._write(lambda: self._db.execute(
            "UPDATE sessions SET last_wh=?, last_wh_at=? WHERE id=?", (wh, at, session_id)))

    def stop(self, session_id: int, meter_stop_wh: int, stopped_at: str, reason: str,
             phase_wh: tuple[int, ...] = (), estimated: bool = False,
             stop_payload: dict[str, Any] | None = None, times: dict[str, Any] | None = None,
             started_at: str | None = None) -> Session:
        """Close a session (its `times` and re-derived start: sessiontime.py) and queue its STOP in one transaction."""
        def do() -> None:
            cur = self._db.execute(
                "UPDATE sessions SET state='stopped', meter_stop_wh=?, stopped_at=?, stop_reason=?,"
                " stop_phase_wh=?, meter_stop_estimated=?, last_wh=? WHERE id=? AND state='active'",
                (meter_stop_wh, stopped_at, reason, json.dumps(list(phase_wh)), int(estimated), meter_stop_wh, session_id))
            if cur.rowcount and (times or started_at):
                self._merge_extra(session_id, times or {}, started_at)
            self._enqueue(MessageKind.STOP, session_id, stop_payload or {}, stopped_at)
        self._write(do)
        return self.session(session_id)

    def session(self, session_id: int) -> Session:
        rows = self._read("SELECT * FROM sessions WHERE id=?", (session_id,))
        if not rows:
            raise StorageError(f"no session {session_id} in the journal")
        return _session(rows[0])

    def find_session(self, session_id: int) -> Session | None:
        """The session, or None when the journal has no such row (StorageError: cannot read)."""
        rows = self._read("SELECT * FROM sessions WHERE id=?", (session_id,))
        return _session(rows[0]) if rows else None

    def session_by_key(self, key: str) -> Session | None:
        rows = self._read("SELECT * FROM sessions WHERE key=?", (key,))
        return _session(rows[0]) if rows else None

    def sessions(self, states: tuple[str, ...] = ("active", "stopped")) -> list[Session]:
        marks = ",".join("?" * len(states))
        return [_session(r) for r in self._read(f"SELECT * FROM sessions WHERE state IN ({marks}) ORDER BY id", states)]

    def open_sessions(self) -> list[Session]:
        return self.sessions(("active",))

    def set_backend_session_id(self, session_id: int, value: str) -> None:
        self._write(lambda: self._db.execute(
            "UPDATE sessions SET backend_session_id=? WHERE id=?", (value, session_id)))

    def update_times(self, session_id: int, started_at: str | None, stopped_at: str | None) -> None:
        """Replace monotonic stamps by real times once the clock is known."""
        self._write(lambda: self._db.execute(
            "UPDATE sessions SET started_at=COALESCE(?, started_at), stopped_at=COALESCE(?, stopped_at) WHERE id=?",
            (started_at, stopped_at, session_id)))

    def _merge_extra(self, session_id: int, facts: dict[str, Any], started_at: str | None = None) -> None:
        """Inside a write: `facts` merged into the session's extra, the start replaced if given."""
        row = self._db.execute("SELECT extra FROM sessions WHERE id=?", (session_id,)).fetchone()
        extra = {**(json.loads(row["extra"]) if row else {}), **facts}
        self._db.execute("UPDATE sessions SET extra=?, started_at=COALESCE(?, started_at) WHERE id=?",
                         (json.dumps(extra), started_at, session_id))

    def set_extra(self, session_id: int, **values: Any) -> None:
        self._write(lambda: self._merge_extra(session_id, values))

    # ---------------------------------------------------------------- outbox
    def _enqueue(self, kind: MessageKind, session_id: int, payload: dict[str, Any], created_at: str) -> int:
        cur = self._db.execute(
            "INSERT INTO outbox(kind, session_id, payload, created_at) VALUES (?, ?, ?, ?)",
            (kind.value, session_id, json.dumps(payload), created_at))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def enqueue(self, kind: MessageKind, session_id: int, payload: dict[str, Any], created_at: str | None = None) -> int:
        stamp = created_at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return self._write(self._enqueue, kind, session_id, payload, stamp)

    def next_message(self) -> OutboxItem | None:
        rows = self._read("SELECT * FROM outbox ORDER BY seq LIMIT 1")
        if not rows:
            return None
        r = rows[0]
        return OutboxItem(seq=r["seq"], kind=MessageKind(r["kind"]), session_id=r["session_id"],
                          payload=json.loads(r["payload"]), created_at=r["created_at"], attempts=r["attempts"])

    def pending_messages(self) -> int:
        return self._read("SELECT COUNT(*) AS n FROM outbox")[0]["n"]

    def messages(self) -> Iterator[OutboxItem]:
        for r in self._read("SELECT * FROM outbox ORDER BY seq"):
            yield OutboxItem(seq=r["seq"], kind=MessageKind(r["kind"]), session_id=r["session_id"],
                             payload=json.loads(r["payload"]), created_at=r["created_at"], attempts=r["attempts"])

    def park(self, item: OutboxItem, reason: str) -> None:
        """Take a message that can never be delivered out of the queue, keeping it for the operator."""
        def do() -> None:
            self._db.execute("INSERT OR REPLACE INTO outbox_parked(seq, kind, session_id, payload, created_at, reason)"
                             " VALUES (?, ?, ?, ?, ?, ?)", (item.seq, item.kind.value, item.session_id,
                                                            json.dumps(item.payload), item.created_at, reason))
            self._db.execute("DELETE FROM outbox WHERE seq=?", (item.seq,))
        self._write(do)

    def count_attempt(self, seq: int) -> None:
        self._write(lambda: self._db.execute("UPDATE outbox SET attempts=attempts+1 WHERE seq=?", (seq,)))

    def confirm(self, item: OutboxItem, backend_session_id: str | None = None, rejected: str | None = None) -> None:
        """The backend confirmed (or refused for good) this message: it leaves the queue."""
        def do() -> None:
            self._db.execute("DELETE FROM outbox WHERE seq=?", (item.seq,))
            if backend_session_id is not None:
                self._db.execute("UPDATE sessions SET backend_session_id=? WHERE id=?",
                                 (backend_session_id, item.session_id))
            if rejected is not None:
                self._db.execute("UPDATE sessions SET rejected=COALESCE(rejected || '; ', '') || ? WHERE id=?",
                                 (f"{item.kind.value}: {rejected}", item.session_id))
            # A STOP of an extra transaction (OCPP: one a late StartTransaction answer revealed) is not
            # the session's own stop: the session is delivered with its own STOP only.
            if item.kind is MessageKind.STOP and "extra_transaction" not in item.payload:
                self._db.execute("UPDATE sessions SET delivered=1 WHERE id=?", (item.session_id,))
        self._write(do)

    # ---------------------------------------------------------------- faults
    def raise_fault(self, source: str, code: str, text: str, vendor: str | None, at: str, wh: int | None) -> None:
        """A fault of `source` begins (one open fault per source: an open one is closed first)."""
        def do() -> None:
            self._db.execute("UPDATE faults SET cleared_at=? WHERE source=? AND cleared_at IS NULL", (at, source))
            self._db.execute("INSERT INTO faults(source, code, text, vendor, raised_at, raised_wh)"
                             " VALUES (?, ?, ?, ?, ?, ?)", (source, code, text, vendor, at, wh))
        self._write(do)

    def clear_fault(self, source: str, at: str, wh: int | None) -> None:
        self._write(lambda: self._db.execute(
            "UPDATE faults SET cleared_at=?, cleared_wh=? WHERE source=? AND cleared_at IS NULL", (at, wh, source)))

    def recent_faults(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest faults, newest first, as plain dicts (for the status page and the CLI)."""
        rows = self._read("SELECT * FROM faults ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(r) for r in rows]

    # ---------------------------------------------------------------- auth cache
    #: most tags the auth cache holds; beyond it the entries that expire first are evicted, so
    #: a flood of distinct (cloned, random) tags cannot grow the journal without bound
    cache_max = 10_000

    def cache_put(self, tag: str, status: str, expires: float, parent_id: str | None = None) -> None:
        def do() -> None:
            self._db.execute(
                "INSERT OR REPLACE INTO auth_cache(tag, status, parent_id, expires) VALUES (?, ?, ?, ?)",
                (tag, status, parent_id, expires))
            self._db.execute(
                "DELETE FROM auth_cache WHERE tag IN (SELECT tag FROM auth_cache ORDER BY expires, tag"
                " LIMIT max(0, (SELECT COUNT(*) FROM auth_cache) - ?))", (self.cache_max,))
        self._write(do)

    def cache_size(self) -> int:
        return self._read("SELECT COUNT(*) AS n FROM auth_cache")[0]["n"]

    def cache_get(self, tag: str, now: float | None = None) -> tuple[str, str | None] | None:
        rows = self._read("SELECT status, parent_id, expires FROM auth_cache WHERE tag=?", (tag,))
        if not rows or rows[0]["expires"] < (now if now is not None else time.time()):
            return None
        return rows[0]["status"], rows[0]["parent_id"]

    def cache_clear(self) -> None:
        self._write(lambda: self._db.execute("DELETE FROM auth_cache"))

    # ---------------------------------------------------------------- samples for a stop message
    def add_sample(self, session_id: int, payload: dict[str, Any], keep: int) -> None:
        """Keep a meter sample of a running session (OCPP StopTxnSampledData). At most `keep` per
        session: when that many are kept, every second one is dropped first (the first one stays),
        so a long session keeps samples from its whole length, closer together towards its end."""
        def do() -> None:
            seqs = [r[0] for r in self._db.execute(
                "SELECT seq FROM session_samples WHERE session_id=? ORDER BY seq", (session_id,))]
            if len(seqs) >= keep:
                self._db.executemany("DELETE FROM session_samples WHERE seq=?", [(q,) for q in seqs[1::2]])
            self._db.execute("INSERT INTO session_samples(session_id, payload) VALUES (?, ?)",
                             (session_id, json.dumps(payload)))
        self._write(do)

    def samples(self, session_id: int) -> list[dict[str, Any]]:
        rows = self._read("SELECT payload FROM session_samples WHERE session_id=? ORDER BY seq", (session_id,))
        return [json.loads(r["payload"]) for r in rows]

    def drop_samples(self, session_id: int) -> None:
        self._write(lambda: self._db.execute("DELETE FROM session_samples WHERE session_id=?", (session_id,)))

    # ---------------------------------------------------------------- settings
    def get_json(self, key: str, default: Any = None) -> Any:
        rows = self._read("SELECT value FROM settings WHERE key=?", (key,))
        return json.loads(rows[0]["value"]) if rows else default

    def put_json(self, key: str, value: Any) -> None:
        self._write(lambda: self._db.execute(
            "INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)", (key, json.dumps(value))))


def default_state_dir() -> str:
    return os.environ.get("STATE_DIRECTORY", "/var/lib/station")


session_from_row = _session  # a `sessions` row as the model's Session (station.journalview reads with it)
