"""What the journal knows about each session's billing, beyond "delivered": the facts an operator
needs to see where energy may not have been billed.

A backend records these per session in the journal's `extra` JSON
(Store.set_extra) or, for a refusal of a queued message, in the `rejected`
column (Store.confirm). `facts(session)` turns them into the fields that
`station sessions` (text, --json, --csv) and the status page show:

    rejected          every refusal the journal holds, with its reason ("start: ...; stop: ...";
                      OCPP and MCSP refusals too), and refusals that came after the END was
                      taken as delivered (the 2018 server's late ERROR21/ERROR30)
    end_acknowledged  True: the backend confirmed the END (MCSP OK, OCPP StopTransaction.conf);
                      False: the END was sent but the protocol has no acknowledgement (the
                      2018 dialect); None: no END delivered yet
    possibly_lost     why an unacknowledged END may never have arrived (the link was seen
                      down around it), else None
    late_start_wh     the station's meter reading when the server opened the session late
                      (it bills only from its own reading then), else None
    at_stake_wh       the energy that was not billed, or may not have been: the whole session
                      when its START or END was refused or its END possibly lost; the energy
                      before a late START; 0 when nothing is known to be at stake

None of this changes what was delivered: it says what the station knows.
"""

from __future__ import annotations

from typing import Any

from station.core.model import Session

# Keys in a session's `extra` JSON.
END_ACKNOWLEDGED = "end_acknowledged"  # False: an END the protocol does not acknowledge
END_SENT_AT = "end_sent_at"  # when such an END was written
POSSIBLY_LOST = "end_possibly_lost"  # why it may be lost
LATE_START_WH = "late_start_wh"  # meter reading when the server opened the session late
LATE_START_AT = "late_start_at"
REFUSED_LATE = "refused_late"  # a refusal that came after the message had left the queue

#: the fields facts() adds to a session's row, in this order (the CSV appends them)
FIELDS = ["rejected", "end_acknowledged", "possibly_lost", "late_start_wh", "at_stake_wh"]

_BILLING_KINDS = ("start:", "stop:")  # refusals that cost the session its billing (not meter_values:)


def _energy(s: Session) -> int | None:
    if s.meter_stop_wh is not None:
        return s.energy_wh
    last = s.extra.get("last_wh")
    return max(0, last - s.meter_start_wh) if isinstance(last, int) and s.meter_start_wh is not None else None


def facts(s: Session) -> dict[str, Any]:
    """The billing fields of one journal session (see the module docstring)."""
    refusals = [text for text in (s.extra.get("rejected"), s.extra.get(REFUSED_LATE)) if text]
    rejected = "; ".join(refusals) or None
    parts = [part.strip() for text in refusals for part in text.split(";")]
    billing_refused = any(part.startswith(_BILLING_KINDS) for part in parts)
    delivered = s.state == "stopped" and bool(s.extra.get("delivered"))
    acknowledged: bool | None = None
    if delivered:
        acknowledged = s.extra.get(END_ACKNOWLEDGED) is not False
    lost = s.extra.get(POSSIBLY_LOST) or None
    late = s.extra.get(LATE_START_WH)
    late = late if isinstance(late, int) else None
    energy = _energy(s)
    if billing_refused or lost:
        at_stake = energy
    elif late is not None and s.meter_start_wh is not None:
        at_stake = max(0, late - s.meter_start_wh)
    else:
        at_stake = 0
    return {"rejected": rejected, "end_acknowledged": acknowledged, "possibly_lost": lost,
            "late_start_wh": late, "at_stake_wh": at_stake}


def delivered_words(row: dict[str, Any]) -> str:
    """Whether a session row's END went out, for people: "yes" (acknowledged by the backend),
    "sent, not acknowledged" (its protocol has no acknowledgement), or "no"."""
    if row.get("end_acknowledged") is False:
        return "sent, not acknowledged"
    return "yes" if row.get("delivered") else "no"


def notes_text(row: dict[str, Any]) -> str:
    """Why energy of this session is at stake, in words; "" when nothing is."""
    notes = []
    if row.get("rejected"):
        notes.append(f"refused: {row['rejected']}")
    if row.get("possibly_lost"):
        notes.append(f"POSSIBLY LOST: {row['possibly_lost']}")
    if row.get("late_start_wh") is not None:
        notes.append(f"late START: the server opened it at meter {row['late_start_wh']} Wh")
    if notes and row.get("at_stake_wh"):
        notes.append(f"{row['at_stake_wh']} Wh at stake")
    return "; ".join(notes)
