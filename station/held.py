"""The journal's held messages: what the backend did not process in all its tries.

A transaction message the backend never processed (OCPP: a StopTransaction
answered with CALLERROR three times, a StartTransaction never answered) must
neither be lost nor block the queue behind it for ever. The deliverer
*holds* it (station/core/delivery.py): the row moves from `outbox` to
`outbox_parked` with its reason, and the session's `extra` names it (HELD:
kind -> reason), in one transaction. The session stays undelivered and says
why in `station sessions` and on the status page; `station sessions --resend
ID` puts its held messages back at the end of the queue, in their order,
with no tries counted, and they get all their tries again.

This is a part of `Store` (mixed in; same connection, same lock, same
one-transaction-per-write rule), kept apart so that each module stays small.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from station.core.model import HELD, MessageKind, OutboxItem


class HeldMessages:
    if TYPE_CHECKING:  # provided by Store
        _db: sqlite3.Connection

        def _write(self, fn: Callable[..., Any], *args: Any) -> Any: ...

        def _read(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]: ...

        def _enqueue(self, kind: MessageKind, session_id: int, payload: dict[str, Any], created_at: str) -> int: ...

    def hold(self, item: OutboxItem, reason: str) -> None:
        """Take the message out of the queue, keep it with `reason`, and name it in its session."""
        def do() -> None:
            self._db.execute("INSERT OR REPLACE INTO outbox_parked(seq, kind, session_id, payload, created_at, reason)"
                             " VALUES (?, ?, ?, ?, ?, ?)", (item.seq, item.kind.value, item.session_id,
                                                            json.dumps(item.payload), item.created_at, reason))
            self._db.execute("DELETE FROM outbox WHERE seq=?", (item.seq,))
            row = self._db.execute("SELECT extra FROM sessions WHERE id=?", (item.session_id,)).fetchone()
            if row is not None:
                extra = json.loads(row["extra"])
                held = extra.get(HELD) or {}
                held[item.kind.value] = reason
                extra[HELD] = held
                self._db.execute("UPDATE sessions SET extra=? WHERE id=?", (json.dumps(extra), item.session_id))
        self._write(do)

    def held(self, session_id: int | None = None) -> list[tuple[OutboxItem, str]]:
        """Held messages (and those parked without a session), oldest first, each with its reason."""
        where, args = ("WHERE session_id=?", (session_id,)) if session_id is not None else ("", ())
        return [(OutboxItem(seq=r["seq"], kind=MessageKind(r["kind"]), session_id=r["session_id"],
                            payload=json.loads(r["payload"]), created_at=r["created_at"]), r["reason"])
                for r in self._read(f"SELECT * FROM outbox_parked {where} ORDER BY seq", args)]

    def held_count(self) -> int:
        n: int = self._read("SELECT COUNT(*) AS n FROM outbox_parked")[0]["n"]
        return n

    def resend(self, session_id: int) -> int:
        """Put the session's held messages back at the end of the queue; returns how many."""
        def do() -> int:
            if self._db.execute("SELECT 1 FROM sessions WHERE id=?", (session_id,)).fetchone() is None:
                return 0
            rows = self._db.execute("SELECT * FROM outbox_parked WHERE session_id=? ORDER BY seq",
                                    (session_id,)).fetchall()
            for r in rows:
                self._enqueue(MessageKind(r["kind"]), session_id, json.loads(r["payload"]), r["created_at"])
            self._db.execute("DELETE FROM outbox_parked WHERE session_id=?", (session_id,))
            row = self._db.execute("SELECT extra FROM sessions WHERE id=?", (session_id,)).fetchone()
            extra = json.loads(row["extra"])
            if extra.pop(HELD, None) is not None:
                self._db.execute("UPDATE sessions SET extra=? WHERE id=?", (json.dumps(extra), session_id))
            return len(rows)
        n: int = self._write(do)
        return n
