"""A damaged journal: telling it from one that cannot be read now, saving its rows, and giving back
the queued messages that were lost with it. Store.open uses these; nothing else should need them.

A journal on an SD card can be damaged by a power cut in the middle of a write the card reordered.
Store.open sets a damaged file aside (it is kept, renamed), builds a new journal from the rows that
can still be read (`salvage`), and queues again the START and STOP of every undelivered session
whose messages did not survive (`requeue_lost_messages`): a session is never lost for a bad page.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

from station.core.model import MessageKind

log = logging.getLogger("station.store")


def requeue_lost_messages(conn: sqlite3.Connection) -> None:
    """After a salvage: give back START/STOP to undelivered sessions whose messages did not survive.

    A salvaged session whose outbox rows were on a damaged page would otherwise never be
    delivered, or worse, its STOP would go without its START and be refused for good (MCSP
    404). Such a session's surviving messages are dropped and START (unless the backend
    already gave it an id) and STOP (if it is stopped) queued again, in session order. A START
    sent twice is the same session at the backend (MCSP: by Session-Key).
    """
    conn.execute("BEGIN IMMEDIATE")
    for r in conn.execute("SELECT * FROM sessions WHERE state IN ('active', 'stopped') AND delivered = 0"
                          " ORDER BY id").fetchall():
        kinds = {k for (k,) in conn.execute("SELECT kind FROM outbox WHERE session_id = ?", (r["id"],))}
        need_start = r["backend_session_id"] is None
        need_stop = r["state"] == "stopped"
        if (not need_start or MessageKind.START.value in kinds) and (not need_stop or MessageKind.STOP.value in kinds):
            continue
        conn.execute("DELETE FROM outbox WHERE session_id = ?", (r["id"],))
        if need_start:
            conn.execute("INSERT INTO outbox(kind, session_id, payload, created_at) VALUES (?, ?, ?, ?)",
                         (MessageKind.START.value, r["id"], json.dumps({
                             "id_tag": r["id_tag"], "meter_start_wh": r["meter_start_wh"], "timestamp": r["started_at"],
                             "reservation_id": r["reservation_id"]}), r["started_at"] or ""))
        if need_stop:
            conn.execute("INSERT INTO outbox(kind, session_id, payload, created_at) VALUES (?, ?, ?, ?)",
                         (MessageKind.STOP.value, r["id"], json.dumps({"reason": r["stop_reason"]}), r["stopped_at"] or ""))
        log.error("session %d: its queued messages were lost with the damaged journal; queued again", r["id"])
    conn.execute("COMMIT")


def healthy(path: Path) -> bool:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            row = conn.execute("PRAGMA quick_check").fetchone()
            return row is not None and row[0] == "ok"
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        # Only a damaged file is unhealthy. One that cannot be read now (a read-only or
        # failing filesystem: CANTOPEN, READONLY, IOERR) must not be set aside as corrupt;
        # opening it then fails with a clear StorageError instead.
        return (getattr(exc, "sqlite_errorcode", _SQLITE_CORRUPT) & 0xFF) not in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def salvage(path: Path) -> list[str]:
    """INSERT statements for whatever rows of a damaged journal can still be read."""
    out: list[str] = []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.DatabaseError:
        return out
    try:
        for table in ("sessions", "outbox", "settings", "auth_cache"):
            try:
                cur = conn.execute(f"SELECT * FROM {table}")
                cols = [d[0] for d in cur.description]
                while True:
                    try:
                        row = cur.fetchone()
                    except sqlite3.DatabaseError:
                        break
                    if row is None:
                        break
                    vals = ", ".join(sql_literal(v) for v in row)
                    out.append(f"INSERT OR IGNORE INTO {table}({', '.join(cols)}) VALUES ({vals})")
            except sqlite3.DatabaseError:
                continue
    finally:
        conn.close()
    return out


def sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, bytes):
        return "X'" + value.hex() + "'"
    return "'" + str(value).replace("'", "''") + "'"
