"""What the session list says about billing, for every backend: refusals from the journal's
`rejected` column (MCSP, OCPP, the 2018 dialect), the facts a backend notes in `extra`, and the
energy at stake; the CSV keeps its earlier columns in their order and appends the new ones."""

from __future__ import annotations

import csv
import io

from station import billing, sessionlist
from station.core.model import MessageKind
from station.store import Store

OLD_CSV = ["id", "id_tag", "meter_start_wh", "meter_stop_wh", "energy_wh", "started_at", "stopped_at",
           "stop_reason", "backend_session_id", "delivered", "estimated", "state"]


def stopped_session(store: Store, key: str, wh: int) -> int:
    """A session of `wh` from 1000 Wh, stopped; its STOP is queued (the START went out at once)."""
    s = store.create_session(key, 1, "D64FC93B", 1000)
    store.activate(s.id, 1000, "2026-11-05T09:00:00Z", (), None, None, False, {}, True)
    store.stop(s.id, 1000 + wh, "2026-11-05T10:00:00Z", "Local")
    return s.id


def deliver(store: Store, session_id: int, kind: MessageKind, rejected: str | None = None) -> None:
    """The backend confirmed (or refused for good) the session's queued message of this kind."""
    if kind is not MessageKind.STOP:
        store.enqueue(kind, session_id, {}, "2026-11-05T09:30:00Z")
    item = next(m for m in store.messages() if m.session_id == session_id and m.kind is kind)
    store.confirm(item, rejected=rejected)


def test_refusals_of_every_backend_and_the_energy_at_stake(tmp_path):
    store = Store.open(tmp_path)
    try:
        billed = stopped_session(store, "a" * 32, 500)  # MCSP/OCPP: acknowledged
        deliver(store, billed, MessageKind.STOP)
        mcsp = stopped_session(store, "b" * 32, 700)  # MCSP 404: the END refused
        deliver(store, mcsp, MessageKind.STOP, rejected="404: no such session")
        ocpp = stopped_session(store, "c" * 32, 300)  # OCPP: only some meter values refused
        deliver(store, ocpp, MessageKind.METER_VALUES, rejected="meter values without a usable time")
        deliver(store, ocpp, MessageKind.STOP)
        late = stopped_session(store, "d" * 32, 300)  # evcs-serial: opened late, END unacknowledged
        store.set_extra(late, **{billing.LATE_START_WH: 1200, billing.END_ACKNOWLEDGED: False})
        deliver(store, late, MessageKind.STOP)
        lost = stopped_session(store, "e" * 32, 800)
        store.set_extra(lost, **{billing.END_ACKNOWLEDGED: False, billing.POSSIBLY_LOST: "no answer at T"})
        deliver(store, lost, MessageKind.STOP)
        table = sessionlist.rows(store)
    finally:
        store.close()
    got = [(r["rejected"], r["end_acknowledged"], r["possibly_lost"], r["late_start_wh"], r["at_stake_wh"])
           for r in table]
    assert got == [
        (None, True, None, None, 0),
        ("stop: 404: no such session", True, None, None, 700),
        ("meter_values: meter values without a usable time", True, None, None, 0),
        (None, False, None, 1200, 200),
        (None, False, "no answer at T", None, 800),
    ]
    text = sessionlist.to_text(table).splitlines()
    assert text[1].endswith(" yes")
    assert text[2].endswith("yes; refused: stop: 404: no such session; 700 Wh at stake")
    assert text[4].endswith("sent, not acknowledged; late START: the server opened it at meter 1200 Wh; 200 Wh at stake")
    assert text[5].endswith("sent, not acknowledged; POSSIBLY LOST: no answer at T; 800 Wh at stake")
    lines = sessionlist.to_csv(table).splitlines()
    # billing scripts read by position: the earlier columns first, then each addition in its order
    assert lines[0].split(",") == OLD_CSV + billing.FIELDS + ["undelivered", "maybe_open_at_backend", "time_estimated"]
    assert [r["at_stake_wh"] for r in csv.DictReader(io.StringIO("\n".join(lines)))] == ["0", "700", "0", "200", "800"]


def test_a_running_session_opened_late_shows_what_is_at_stake_so_far(tmp_path):
    store = Store.open(tmp_path)
    try:
        s = store.create_session("f" * 32, 1, "D64FC93B", 1000)
        store.activate(s.id, 1000, "2026-11-05T09:00:00Z", (), None, None, True, {}, False)
        store.record_meter(s.id, 1400, "2026-11-05T09:30:00Z")
        store.set_extra(s.id, **{billing.LATE_START_WH: 1250})
        [row] = sessionlist.rows(store)
    finally:
        store.close()
    assert (row["state"], row["end_acknowledged"], row["at_stake_wh"]) == ("active", None, 250)
