"""The session journal as rows for people and spreadsheets: `station sessions` and the status page.

Ids are the journal's own (the logs, the backends' "L<id>" and the status
page name sessions by them), so they are never renumbered. A tap is
journaled before the backend is asked, which gives refused and abandoned
taps ids too: those are the gaps in a list of sessions, and `taps=True`
lists them (state "refused" or "aborted", with the reason).

Two columns say what the backend did not take (added after the earlier
ones, whose order billing scripts may rely on): `undelivered`, the messages
held undelivered and why (the backend did not process them in all their
tries; `station sessions --resend ID` sends them again, station/held.py),
and `maybe_open_at_backend`, how many transactions the backend may hold
open for the session that the station cannot stop (OCPP: StartTransactions
whose answer never came); the text form adds a line for each with the
masked idTag, meterStart and timestamp to look for at the backend.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

from station.core.model import HELD, Session
from station.store import Store

# The columns of the earlier CSV first, in their order (billing scripts may read by position).
FIELDS = ["id", "id_tag", "meter_start_wh", "meter_stop_wh", "energy_wh", "started_at", "stopped_at",
          "stop_reason", "backend_session_id", "delivered", "estimated", "state", "undelivered",
          "maybe_open_at_backend"]
SESSION_STATES = ("active", "stopped")
TAP_STATES = ("refused", "aborted")


def summary(s: Session, tag: Callable[[str], str] = str) -> dict[str, Any]:
    """One row; `tag` may mask the id tag (the status page without a password)."""
    return {
        "id": s.id, "state": s.state, "id_tag": tag(s.id_tag), "meter_start_wh": s.meter_start_wh,
        "meter_stop_wh": s.meter_stop_wh, "energy_wh": s.energy_wh, "started_at": s.started_at,
        "stopped_at": s.stopped_at, "stop_reason": s.stop_reason, "backend_session_id": s.backend_session_id,
        "delivered": bool(s.extra.get("delivered")) if s.state in SESSION_STATES else None,
        "estimated": s.meter_stop_estimated,
        "undelivered": undelivered(s),
        "maybe_open_at_backend": maybe_open(s)[0],
        "open_timestamp": maybe_open(s)[1],
    }


def undelivered(s: Session) -> str | None:
    """The messages of the session held undelivered, with their reasons, or None."""
    held = s.extra.get(HELD) or {}
    return "; ".join(f"{kind}: {reason}" for kind, reason in held.items()) or None


def maybe_open(s: Session) -> tuple[int, str | None]:
    """(how many transactions the backend may hold open for the session, the timestamp they carry)."""
    note = s.extra.get("maybe_open_at_backend") or {}
    if not isinstance(note, dict):
        return 0, None
    return int(note.get("count") or 0), note.get("timestamp") or s.started_at


def attention(table: list[dict[str, Any]]) -> list[str]:
    """One line per session the operator must look at: held messages, transactions left open."""
    lines = []
    for r in table:
        if r.get("undelivered"):
            lines.append(f"! session {r['id']}: undelivered: {r['undelivered']}; send again with "
                         f"`station sessions --resend {r['id']}`")
        if r.get("maybe_open_at_backend"):
            lines.append(f"! session {r['id']}: the backend may hold {r['maybe_open_at_backend']} transaction(s) open "
                         f"that the station cannot stop: idTag {r['id_tag']}, meterStart {r['meter_start_wh']} Wh, "
                         f"timestamp {r['open_timestamp']}; close them there")
    return lines


def rows(store: Store, taps: bool = False, last: int | None = None,
         tag: Callable[[str], str] = str) -> list[dict[str, Any]]:
    states = SESSION_STATES + (TAP_STATES if taps else ())
    found = store.sessions(states)
    if last is not None:
        found = found[-last:] if last > 0 else []
    return [summary(s, tag) for s in found]


def hidden_taps(store: Store) -> int:
    """Refused or abandoned taps (the gaps between session ids)."""
    return len(store.sessions(TAP_STATES))


def _csv_value(value: Any) -> Any:
    # Spreadsheets read true/false as booleans; Python's True/False they take as text.
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


def to_csv(table: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\r\n")
    w.writeheader()
    for row in table:
        w.writerow({k: _csv_value(row.get(k)) for k in FIELDS})
    return out.getvalue()


def to_text(table: list[dict[str, Any]]) -> str:
    """A fixed-width table for a terminal."""
    head = (f"{'id':>4} {'tag':<18} {'start Wh':>10} {'stop Wh':>10} {'Wh':>7} {'started':<20} {'stopped':<20} "
            f"{'reason':<14} {'backend id':<12} delivered")
    lines = [head]
    for r in table:
        if r["state"] in TAP_STATES:
            lines.append(f"{r['id']:>4} {r['id_tag']:<18} {'':>10} {'':>10} {'':>7} {'':<20} {'':<20} "
                         f"{r['state'] + ': ' + (r['stop_reason'] or ''):<27} -")
            continue
        delivered = "yes" if r["delivered"] else ("held" if r.get("undelivered") else "no")
        if r["estimated"]:
            delivered += " (stop reading estimated)"
        stopped = r["stopped_at"] or ("charging" if r["state"] == "active" else "")
        lines.append(
            f"{r['id']:>4} {r['id_tag']:<18} {_blank(r['meter_start_wh']):>10} {_blank(r['meter_stop_wh']):>10} "
            f"{_blank(r['energy_wh']):>7} {r['started_at'] or '':<20} {stopped:<20} "
            f"{r['stop_reason'] or '':<14} {_blank(r['backend_session_id']):<12} {delivered}")
    return "\n".join(lines + attention(table))


def _blank(value: Any) -> str:
    return "" if value is None else str(value)
