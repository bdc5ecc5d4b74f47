"""The journal's schema migrations (station/store.py, PRAGMA user_version).

A journal as release 0.1.0 wrote it (schema 1, rows and an undelivered queue) is opened by this
release: it migrates, keeps every row and the queue in order; an interrupted step leaves the
version where it was; a rollback (the old release writes user_version 1 again) and a journal
from a newer release are handled as the module's rules say.
"""

from __future__ import annotations

import json
import logging
import sqlite3

import pytest

from station import store as storemod
from station.errors import StorageError
from station.store import SCHEMA_VERSION, Store

# The schema of release 0.1.0 (commit ea7d8aa), as that release created it: its DDL, then
# PRAGMA user_version=1. Copied here on purpose: the test must not take it from the code it checks.
V1_DDL = """
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, connector_id INTEGER NOT NULL,
    id_tag TEXT NOT NULL, state TEXT NOT NULL, meter_start_wh INTEGER, started_at TEXT,
    meter_stop_wh INTEGER, stopped_at TEXT, stop_reason TEXT, backend_session_id TEXT,
    reservation_id INTEGER, meter_stop_estimated INTEGER NOT NULL DEFAULT 0,
    start_phase_wh TEXT NOT NULL DEFAULT '[]', stop_phase_wh TEXT NOT NULL DEFAULT '[]', parent_id TEXT,
    authorized_offline INTEGER NOT NULL DEFAULT 0, last_wh INTEGER, last_wh_at TEXT,
    delivered INTEGER NOT NULL DEFAULT 0, rejected TEXT, extra TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, session_id INTEGER NOT NULL,
    payload TEXT NOT NULL, created_at TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE auth_cache (tag TEXT PRIMARY KEY, status TEXT NOT NULL, parent_id TEXT, expires REAL NOT NULL);
"""


def make_v1(path, version: int = 1) -> None:
    con = sqlite3.connect(path)
    con.executescript(V1_DDL)
    con.execute("INSERT INTO sessions(key, connector_id, id_tag, state, meter_start_wh, started_at, meter_stop_wh,"
                " stopped_at, stop_reason, backend_session_id) VALUES ('k1', 1, 'AA', 'stopped', 100, 't0', 900,"
                " 't1', 'Reboot', '7')")
    con.execute("INSERT INTO outbox(kind, session_id, payload, created_at, attempts) VALUES ('stop', 1, ?, 't1', 3)",
                (json.dumps({"reason": "Reboot"}),))
    con.execute("INSERT INTO settings(key, value) VALUES ('core.available', 'true')")
    con.execute(f"PRAGMA user_version={version}")
    con.commit()
    con.close()


def user_version(path) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA user_version").fetchone()[0]
    finally:
        con.close()


def indexes(path) -> set[str]:
    con = sqlite3.connect(path)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='index' AND sql IS NOT NULL")}
    finally:
        con.close()


def test_the_schema_has_moved_on_from_release_0_1_0():
    # The upgrade in scripts/platform-check counts on a migration from 1 to 2 at least.
    assert SCHEMA_VERSION >= 2 and sorted(storemod.MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))


def test_a_release_0_1_0_journal_migrates_and_keeps_its_queue(tmp_path, caplog):
    db = tmp_path / "journal.db"
    make_v1(db)
    caplog.set_level(logging.INFO, logger="station.store")
    s = Store.open(tmp_path)
    try:
        item = s.next_message()
        assert item is not None and item.kind.value == "stop" and item.attempts == 3 and item.payload == {"reason": "Reboot"}
        assert s.pending_messages() == 1
        (sess,) = s.sessions()
        assert (sess.meter_start_wh, sess.meter_stop_wh, sess.stop_reason, sess.backend_session_id) == (100, 900, "Reboot", "7")
        assert s.get_json("core.available") is True
        s.confirm(item)  # and it still works as a journal
        assert s.pending_messages() == 0 and s.session(1).extra["delivered"]
    finally:
        s.close()
    assert user_version(db) == SCHEMA_VERSION
    assert "sessions_by_state" in indexes(db)
    assert "journal migrated to schema 2" in caplog.text


def test_a_new_journal_starts_at_the_current_schema(tmp_path):
    Store.open(tmp_path).close()
    assert user_version(tmp_path / "journal.db") == SCHEMA_VERSION


def test_a_journal_from_before_versioning_migrates(tmp_path):
    make_v1(tmp_path / "journal.db", version=0)  # the same tables, user_version never set
    s = Store.open(tmp_path)
    try:
        assert s.pending_messages() == 1
    finally:
        s.close()
    assert user_version(tmp_path / "journal.db") == SCHEMA_VERSION


def test_a_failing_step_leaves_the_journal_at_the_version_before(tmp_path, monkeypatch):
    make_v1(tmp_path / "journal.db")

    def broken(conn):
        conn.execute("CREATE TABLE half_done (x)")
        raise sqlite3.OperationalError("disk I/O error")
    monkeypatch.setitem(storemod.MIGRATIONS, 2, broken)
    with pytest.raises(StorageError):
        Store.open(tmp_path)
    con = sqlite3.connect(tmp_path / "journal.db")
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 1
        assert con.execute("SELECT name FROM sqlite_master WHERE name='half_done'").fetchone() is None
        assert con.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 1
    finally:
        con.close()
    monkeypatch.undo()
    Store.open(tmp_path).close()  # the next start completes the upgrade
    assert user_version(tmp_path / "journal.db") == SCHEMA_VERSION


def test_after_a_rollback_the_steps_run_again(tmp_path):
    Store.open(tmp_path).close()
    con = sqlite3.connect(tmp_path / "journal.db")
    con.execute("PRAGMA user_version=1")  # what release 0.1.0 writes whenever it opens a journal
    con.commit()
    con.close()
    Store.open(tmp_path).close()
    assert user_version(tmp_path / "journal.db") == SCHEMA_VERSION


def test_a_journal_from_a_newer_release_is_used_and_keeps_its_version(tmp_path, caplog):
    Store.open(tmp_path).close()
    con = sqlite3.connect(tmp_path / "journal.db")
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")
    con.commit()
    con.close()
    s = Store.open(tmp_path)
    try:
        assert s.pending_messages() == 0
    finally:
        s.close()
    assert user_version(tmp_path / "journal.db") == SCHEMA_VERSION + 5
    assert "newer than this station's" in caplog.text


def test_a_release_0_1_0_journal_gets_the_fault_journal_and_the_parking_place(tmp_path):
    """Tables added after 0.1.0 come by a migration step, so an upgraded journal has them too."""
    make_v1(tmp_path / "journal.db")
    store = Store.open(tmp_path)
    try:
        store.raise_fault("contactor", "OtherError", "contactor welded", "ContactorWelded", "t2", 900)
        store.clear_fault("contactor", "t3", 950)
        [fault] = store.recent_faults()
        assert (fault["vendor"], fault["raised_wh"], fault["cleared_wh"]) == ("ContactorWelded", 900, 950)
        item = store.next_message()
        assert item is not None
        store.park(item, "test")
        assert store.pending_messages() == 0
    finally:
        store.close()
