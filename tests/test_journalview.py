"""The journal read-only (station/journalview.py): the status page's view, and the degraded journal."""

from __future__ import annotations

import pytest

from station.errors import StorageError
from station.journalview import DegradedStore, JournalView
from station.store import DB_NAME, Store


def _journal(tmp_path) -> Store:
    store = Store.open(tmp_path)
    for n, wh in enumerate((100, 250, None), 1):  # two sessions that charged, one refused tap
        s = store.create_session(f"k{n}", 1, f"TAG{n}", 1000)
        if wh is None:
            store.finish_authorization(s.id, "refused", "Invalid")
            continue
        store.activate(s.id, 1000, f"2026-11-0{n}T10:00:00Z", (), None, None, False, {}, start_delivered=False)
        store.stop(s.id, 1000 + wh, f"2026-11-0{n}T11:00:00Z", "Local")
    store.raise_fault("contactor", "OtherError", "welded", "ContactorWelded", "2026-11-03T12:00:00Z", 5000)
    store.clear_fault("contactor", "2026-11-03T12:05:00Z", 5042)
    return store


def test_the_view_reads_the_last_sessions_and_faults_as_values(tmp_path):
    store = _journal(tmp_path)
    view = JournalView(tmp_path / DB_NAME)
    try:
        sessions = view.sessions(10)
        assert [(s.id_tag, s.energy_wh) for s in sessions] == [("TAG2", 250), ("TAG1", 100)]  # newest first
        assert [s.id_tag for s in view.sessions(1)] == ["TAG2"]
        [fault] = view.faults(10)
        assert (fault.source, fault.vendor, fault.energy_wh) == ("contactor", "ContactorWelded", 42)
    finally:
        view.close()
        store.close()


def test_the_view_of_a_missing_journal_is_a_storage_error(tmp_path):
    view = JournalView(tmp_path / DB_NAME)
    with pytest.raises(StorageError):
        view.sessions(10)
    assert not (tmp_path / DB_NAME).exists()  # a read-only view creates nothing


def test_a_degraded_journal_reads_refuses_writes_then_continues_writable(tmp_path):
    _journal(tmp_path).close()
    store = DegradedStore.open_degraded(tmp_path)
    assert store.read_only and [s.id_tag for s in store.sessions()] == ["TAG1", "TAG2"]
    with pytest.raises(StorageError, match="readonly"):
        store.create_session("k9", 1, "TAG9", 2000)
    store.reopen()  # the file system lets it now
    assert not store.read_only
    assert store.create_session("k9", 1, "TAG9", 2000).id == 4
    store.close()


def test_no_journal_at_all_degrades_to_an_empty_one_that_refuses_writes(tmp_path):
    store = DegradedStore.open_degraded(tmp_path)
    assert store.sessions() == [] and not (tmp_path / DB_NAME).exists()
    with pytest.raises(StorageError):
        store.create_session("k1", 1, "TAG1", 0)
