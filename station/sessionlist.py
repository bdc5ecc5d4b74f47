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

Times the station could not date (its clock was not known: no NTP, no
backend's time, in that boot) show as the system clock's estimate, and the
column `time_estimated` says which ("start", "stop", "start+stop"); the text
view marks them with "~". It is the CSV's last column: billing scripts read
by position.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

from station import billing
from station.clock import Clock
from station.core.model import HELD, Session
from station.core.sessiontime import estimated_times
from station.store import Store

# The columns of the earlier CSV first, in their order (billing scripts may read by position).
FIELDS = ["id", "id_tag", "meter_start_wh", "meter_stop_wh", "energy_wh", "started_at", "stopped_at",
          "stop_reason", "backend_session_id", "delivered", "estimated", "state"]
FIELDS += billing.FIELDS  # refusals, unacknowledged and possibly lost ENDs, late STARTs: appended
FIELDS += ["undelivered", "maybe_open_at_backend"]  # held messages, transactions left open at the backend
FIELDS += ["time_estimated"]
SESSION_STATES = ("active", "stopped")
TAP_STATES = ("refused", "aborted")


def summary(s: Session, tag: Callable[[str], str] = str, clock: Clock | None = None) -> dict[str, Any]:
    """One row; `tag` may mask the id tag (the status page without a password)."""
    row = {
        "id": s.id, "state": s.state, "id_tag": tag(s.id_tag), "meter_start_wh": s.meter_start_wh,
        "meter_stop_wh": s.meter_stop_wh, "energy_wh": s.energy_wh, "started_at": s.started_at,
        "stopped_at": s.stopped_at, "stop_reason": s.stop_reason, "backend_session_id": s.backend_session_id,
        "delivered": bool(s.extra.get("delivered")) if s.state in SESSION_STATES else None,
        "estimated": s.meter_stop_estimated,
        **billing_fields(s),
        "undelivered": undelivered(s),
        "maybe_open_at_backend": maybe_open(s)[0],
        "open_timestamp": maybe_open(s)[1],
    }
    row.update(session_times(s, clock))
    return row


def session_times(s: Session, clock: Clock | None = None) -> dict[str, Any]:
    """The times as shown: an undated (monotonic) stamp as its estimate, and which are estimates."""
    clock = clock or Clock()  # estimate_of reads the system clock only: no kernel call, no state
    return {"started_at": clock.estimate_of(s.started_at) or s.started_at,
            "stopped_at": clock.estimate_of(s.stopped_at) or s.stopped_at,
            "time_estimated": estimated_times(s)}


def billing_fields(s: Session) -> dict[str, Any]:
    """What the journal knows of the session's billing (station.billing); blank for a tap."""
    return billing.facts(s) if s.state in SESSION_STATES else dict.fromkeys(billing.FIELDS)


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
         tag: Callable[[str], str] = str, clock: Clock | None = None) -> list[dict[str, Any]]:
    states = SESSION_STATES + (TAP_STATES if taps else ())
    found = store.sessions(states)
    if last is not None:
        found = found[-last:] if last > 0 else []
    clock = clock or Clock()
    return [summary(s, tag, clock) for s in found]


def hidden_taps(store: Store) -> int:
    """Refused or abandoned taps (the gaps between session ids)."""
    return len(store.sessions(TAP_STATES))


def _csv_value(value: Any) -> Any:
    # Spreadsheets read true/false as booleans; Python's True/False they take as text.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):  # time_estimated: "start", "stop", "start+stop"
        return "+".join(str(v) for v in value)
    return "" if value is None else value


# A spreadsheet takes a cell that starts with one of these as a formula (OWASP, "CSV Injection"), and the
# id tag and the backend's session id are text a backend chose: `=HYPERLINK(...)` would run when the
# operator opens the export. The full-width forms are there for spreadsheets that treat them alike.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def spreadsheet_safe(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula gets a leading ' (shown as text, the OWASP rule).

    Only text is touched: the numeric columns are numbers and stay numbers (none is ever negative)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def to_csv(table: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\r\n")
    w.writeheader()
    for row in table:
        w.writerow({k: spreadsheet_safe(_csv_value(row.get(k))) for k in FIELDS})
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
        delivered = billing.delivered_words(r)
        if r.get("undelivered"):
            delivered = "held" if delivered == "no" else delivered + ", held"
        if r["estimated"]:
            delivered += " (stop reading estimated)"
        if notes := billing.notes_text(r):  # refused, possibly lost, late START: the energy at stake
            delivered += f"; {notes}"
        started, stopped = _marked(r, "start", r["started_at"]), _marked(r, "stop", r["stopped_at"])
        stopped = stopped or ("charging" if r["state"] == "active" else "")
        lines.append(
            f"{r['id']:>4} {r['id_tag']:<18} {_blank(r['meter_start_wh']):>10} {_blank(r['meter_stop_wh']):>10} "
            f"{_blank(r['energy_wh']):>7} {started:<20} {stopped:<20} "
            f"{r['stop_reason'] or '':<14} {_blank(r['backend_session_id']):<12} {delivered}")
    if any(r.get("time_estimated") for r in table):
        lines.append("~ time estimated: the station's clock was not synchronized (no NTP, no backend's time)")
    return "\n".join(lines + attention(table))


def _marked(row: dict[str, Any], which: str, value: str | None) -> str:
    """A time as the text view shows it: "~" before an estimate."""
    if not value:
        return ""
    return f"~{value}" if which in (row.get("time_estimated") or ()) else value


def _blank(value: Any) -> str:
    return "" if value is None else str(value)
