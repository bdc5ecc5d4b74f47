"""Nothing lost: power loss with a dead meter, an unknown clock, SD-card wear, storage faults.

Whole stations (station.daemon.Station) on emulated hardware, mostly with the MCSP reference
server as the backend, so that what is checked is what reaches the backend's ledger.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import time
from datetime import UTC, datetime

import pytest

from station import cli
from station.clock import MONO_PREFIX, Clock, parse_iso
from station.errors import StationError, StorageError
from station.servers.mcsp import McspServer
from station.sim.world import SimWorld
from station.store import Store
from tests.stations import CARD, CARD7, TAGS, lcd, running_station, state_is, until

MCSP = {"backend.kind": "mcsp", "station.name": "Tankstelle1", "backend.mcsp.heartbeat_s": 5.0,
        "backend.mcsp.timeout_s": 2.0, "backend.offline_policy": "cached+local"}


@pytest.fixture
async def server():
    srv = McspServer(tags=TAGS)
    await srv.start()
    yield srv
    await srv.close()


def mcsp(server: McspServer, **more) -> dict:
    return {**MCSP, "backend.mcsp.url": server.url, **more}


def ends(server: McspServer) -> list:
    return [r for r in server.requests if r.action == "END"]


# --------------------------------------------------------------------------- power loss, dead meter
async def test_power_loss_with_a_dead_meter_stops_at_the_last_stored_reading_marked_estimated(tmp_path, server, monkeypatch):
    async with running_station(tmp_path, mcsp(server, **{"charging.journal_interval_s": 1}), graceful=False) as st:
        assert await st.backend.wait_ready(10)
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        sid = st.charger.session.id
        start = st.charger.session.meter_start_wh
        st.world.consume(400)
        # The meter loop journals the last reading every journal_interval_s (1 s here).
        await until(lambda: st.store.session(sid).extra["last_wh"] == start + 400, what="the reading journaled")
    # The car went on drawing 250 Wh after the last stored reading; then the power went.
    meter_file = tmp_path / "sim-meter.json"
    doc = json.loads(meter_file.read_text())
    doc["phase_wh"][0] += 250
    doc["energy_wh"] += 250
    meter_file.write_text(json.dumps(doc))

    build = SimWorld._build

    async def dead_at_start(self):  # the meter does not answer when the station comes back
        await build(self)
        self.meter.set_dead(True)

    monkeypatch.setattr(SimWorld, "_build", dead_at_start)
    async with running_station(tmp_path, mcsp(server)) as st:
        s = st.store.session(sid)
        assert (s.state, s.stop_reason) == ("stopped", "PowerLoss")
        assert s.meter_stop_wh == start + 400 and s.meter_stop_estimated  # the stored reading, not invented
        assert st.charger.state.value == "Faulted" and "meter" in st.charger.faults
        assert await st.flush(20)  # delivered although the meter is still dead
        [end] = ends(server)
        assert (end.get("Meter-Estimated"), end.get("Stop-Reason"), end.get("Meter-Stop")) == \
            ("yes", "PowerLoss", str(start + 400))
        [rec] = server.sessions()
        assert (rec.state, rec.energy_wh, rec.estimated, rec.stop_reason, rec.session_key) == \
            ("closed", 400, True, "PowerLoss", s.key)
        st.world.meter.set_dead(False)
        await state_is(st, "Available", timeout=20)


# --------------------------------------------------------------------------- the clock
def UnsetClock() -> Clock:  # noqa: N802 - reads as the class it was
    """A Pi without a battery clock and without NTP: untrusted until a backend sets the time."""
    return Clock(synchronized=lambda: False)


async def test_untrusted_clock_journals_monotonic_stamps_and_delivers_real_times_once_set(tmp_path):
    server_time = {"now": "1970-01-01T00:00:42Z"}  # a server whose own clock is not set yet either
    server = McspServer(tags=TAGS, now=lambda: server_time["now"])
    clock = UnsetClock()
    await server.start()
    try:
        async with running_station(tmp_path, mcsp(server), clock=clock) as st:
            # Phase 1: the backend goes away before it could tell the time; a session offline.
            await server.suspend()
            await until(lambda: not st.charger.online, what="the station offline")
            await st.world.tap(CARD)  # allowed offline: a local tag (cached+local)
            await state_is(st, "SuspendedEV")
            st.world.consume(700)
            await st.world.tap(CARD)
            await state_is(st, "Available")
            [s] = st.store.sessions()
            assert s.started_at.startswith(MONO_PREFIX) and s.stopped_at.startswith(MONO_PREFIX)
            assert st.store.pending_messages() == 2
            # Phase 2: the backend is back but its time is 1970: the station refuses that time
            # and delivers nothing while it cannot date the session.
            await server.resume()
            await until(lambda: st.charger.online, timeout=60, what="the station online again")
            await asyncio.sleep(2.0)
            assert not clock.trusted
            assert server.sessions() == [] and st.store.pending_messages() == 2, \
                (server.sessions(), [(r.action, list(r.headers)) for r in server.requests])
            # Phase 3: the server knows the time; its next HEARTBEAT reply sets the station's clock.
            server_time["now"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            server.now = lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            assert await st.flush(60)
            assert clock.trusted
            [rec] = server.sessions()
            [s] = st.store.sessions()
            assert (rec.state, rec.energy_wh, rec.offline) == ("closed", 700, True)
            assert (rec.start_time, rec.end_time) == (s.started_at, s.stopped_at)
            start, end = parse_iso(rec.start_time), parse_iso(rec.end_time)
            now = datetime.now(UTC)
            assert start <= end <= now and (now - start).total_seconds() < 120
            for req in server.requests:  # nothing on the wire ever carried a placeholder time
                for name, value in req.headers:
                    assert not value.startswith(("1970", MONO_PREFIX)), (req.action, name, value)
    finally:
        await server.close()


# --------------------------------------------------------------------------- SD-card wear
async def test_journal_writes_per_charging_hour_are_bounded(tmp_path):
    """Commits (Store.writes) while idle, per session, and per second of charging."""
    async with running_station(tmp_path, {"charging.journal_interval_s": 1}) as st:
        idle = st.store.writes
        await asyncio.sleep(3.0)
        assert st.store.writes == idle  # an idle station writes nothing
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        st.world.set_load(11000)
        await state_is(st, "Charging")
        w0, t0 = st.store.writes, time.monotonic()
        await asyncio.sleep(5.0)
        periodic, seconds = st.store.writes - w0, time.monotonic() - t0
        st.world.set_load(0)
        await st.world.tap(CARD)
        await state_is(st, "Available")
        assert await st.flush(10)
        per_session = st.store.writes - idle - periodic
    # One reading per journal_interval_s while charging, never one per meter sample (0.2 s here).
    assert 1 <= periodic <= seconds / 1.0 + 1, (periodic, seconds)
    # Tap, cache, start, START confirmed, stop, STOP confirmed.
    assert per_session <= 8, per_session
    per_hour_default = 3600 / 60 + per_session  # journal_interval_s = 60 (the default), one session
    assert per_hour_default <= 70
    print(f"\njournal commits: {per_session} per session + 1 per journal_interval_s "
          f"({periodic} in {seconds:.1f} s at 1 s); default 60 s: {per_hour_default:.0f} per charging hour")


# --------------------------------------------------------------------------- storage faults
class Ext4Disk:
    """A small ext4 filesystem on a loop device, mounted errors=remount-ro: `fail()` triggers a
    filesystem error through ext4's sysfs knob, and the kernel turns the filesystem read-only
    under the running station, open files and all (what a failing SD card does)."""

    def __init__(self, root) -> None:
        self.image = root / "sd.img"
        self.path = root / "sd"
        self.path.mkdir()
        with open(self.image, "wb") as f:
            f.truncate(16 << 20)
        self.mounted = False

    def _run(self, *cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, capture_output=True, text=True)

    def mount(self) -> bool:
        self.mounted = self._run("mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.path)).returncode == 0
        return self.mounted

    def setup(self) -> bool:
        return self._run("mkfs.ext4", "-q", "-F", str(self.image)).returncode == 0 and self.mount() \
            and os.path.exists(self._knob())

    def _knob(self) -> str:
        dev = self._run("findmnt", "-n", "-o", "SOURCE", str(self.path)).stdout.strip()
        return f"/sys/fs/ext4/{os.path.basename(dev)}/trigger_fs_error"

    def fail(self) -> None:
        with open(self._knob(), "w") as f:
            f.write("test: failing SD card")
        assert "emergency_ro" in self.options() or "ro" in self.options().split(","), self.options()

    def options(self) -> str:
        return self._run("findmnt", "-n", "-o", "OPTIONS", str(self.path)).stdout.strip()

    def repair(self) -> None:
        """What the next boot does: unmount, fsck, mount read-write again."""
        assert self._run("umount", str(self.path)).returncode == 0
        self.mounted = False
        self._run("e2fsck", "-f", "-y", str(self.image))
        assert self.mount()

    def close(self) -> None:
        if self.mounted:
            self._run("umount", "-l", str(self.path))  # the loop device goes with it (autoclear)


@pytest.fixture
def sd_card(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a loop device")
    disk = Ext4Disk(tmp_path)
    try:
        if not disk.setup():
            pytest.skip("cannot mount an ext4 loop device with errors=remount-ro here")
        yield disk
    finally:
        disk.close()


async def test_read_only_filesystem_refuses_new_sessions_with_a_clear_message(sd_card):
    state = sd_card.path / "state"
    async with running_station(state) as st:
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        st.world.consume(100)
        await st.world.tap(CARD)
        await state_is(st, "Available")
        assert await st.flush(10)
        sd_card.fail()
        closes = []
        st.hardware.contactor.set = (lambda real: (lambda on: (closes.append(on), real(on))[1]))(st.hardware.contactor.set)
        await st.world.tap(CARD7)
        await state_is(st, "Available")
        assert True not in closes and not st.world.contactor_closed  # never charging without a record
        assert len(st.store.sessions()) == 1
        text = lcd(st).lower()
        assert "record" in text, text
        fault = st.charger.faults.get("storage")
        assert "I/O" in fault.text or "read" in fault.text.lower(), fault.text  # the cause, not a side effect
        assert "fault" in st.status_line() and "journal" in st.status_line()
    # A restart on the read-only filesystem: the journal cannot be opened, and the error says
    # why (`station run` prints StationErrors and exits 1; the emulated meter, which keeps its
    # register in the same directory, could not start there either, unlike a real meter).
    with pytest.raises(StorageError, match="journal.*readonly"):
        Store.open(state)
    assert issubclass(StorageError, StationError)


async def test_filesystem_failing_mid_session_opens_the_contactor_and_the_restart_bills_it(sd_card):
    state = sd_card.path / "state"
    async with running_station(state, graceful=False) as st:
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        sid = st.charger.session.id
        st.world.consume(300)
        await until(lambda: st.charger.reading.energy_wh == st.charger.session.meter_start_wh + 300, what="300 Wh read")
        sd_card.fail()
        await st.world.tap(CARD, wait=False)  # the driver stops: the stop cannot be journaled
        await until(lambda: "storage" in st.charger.faults and not st.world.contactor_closed,
                    what="contactor open and a storage fault")
        assert st.store.session(sid).state == "active"  # nothing recorded that was not written
    sd_card.repair()
    async with running_station(state) as st:
        s = st.store.session(sid)
        assert (s.state, s.stop_reason, s.energy_wh, s.meter_stop_estimated) == ("stopped", "PowerLoss", 300, False)
        assert await st.flush(10) and st.store.session(sid).extra["delivered"]
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")


def _corrupt_table(db_path, table: str) -> None:
    """Break one table's root page (its b-tree page type byte), as a torn SD-card write would."""
    conn = sqlite3.connect(db_path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    conn.close()
    with open(db_path, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\x07")  # not a b-tree page type


@pytest.mark.parametrize("broken,offline", [("auth_cache", False), ("outbox", True)])
async def test_corrupt_journal_salvage_keeps_the_open_session_closed_as_power_loss_and_delivered(
        tmp_path, server, broken, offline):
    async with running_station(tmp_path, mcsp(server), graceful=False) as st:
        assert await st.backend.wait_ready(10)
        if offline:  # its START waits in the outbox, which is the table that breaks
            await server.suspend()
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        sid = st.charger.session.id
        st.world.consume(450)
        await asyncio.sleep(0.5)
    await server.resume()
    _corrupt_table(tmp_path / "journal.db", broken)
    async with running_station(tmp_path, mcsp(server)) as st:
        assert any(p.name.startswith("journal.db.corrupt-") for p in tmp_path.iterdir())
        s = st.store.session(sid)
        assert (s.state, s.stop_reason, s.energy_wh, s.meter_stop_estimated) == ("stopped", "PowerLoss", 450, False)
        assert await st.flush(20)
        [rec] = server.sessions()
        assert (rec.session_key, rec.state, rec.energy_wh, rec.stop_reason) == (s.key, "closed", 450, "PowerLoss")
        await st.world.tap(CARD)  # and the station goes on
        await state_is(st, "SuspendedEV")


def test_healthy_journal_on_a_read_only_filesystem_is_refused_not_set_aside(sd_card):
    """After a clean shutdown the filesystem went read-only; the next start must not take the
    unreadable-for-now journal for a corrupt one (renaming it failed with a raw OSError)."""
    state = sd_card.path / "state"
    store = Store.open(state)
    sid = store.create_session("k" * 32, 1, CARD, 1000).id
    store.close()
    sd_card.fail()
    with pytest.raises(StorageError, match="journal"):
        Store.open(state)
    assert sorted(p.name for p in state.iterdir()) == ["journal.db"]
    sd_card.repair()
    store = Store.open(state)
    try:
        assert store.session(sid).id_tag == CARD
        assert not any(p.name.startswith("journal.db.corrupt") for p in state.iterdir())
    finally:
        store.close()


async def test_the_reading_is_journaled_when_the_car_stops_drawing(tmp_path):
    """Between two journal_interval_s (60 s here) a car that stops drawing leaves its final
    reading in the journal: a PowerLoss with a dead meter then bills exactly."""
    async with running_station(tmp_path, {"charging.journal_interval_s": 60}) as st:
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        sid = st.charger.session.id
        st.world.set_load(43000)
        await state_is(st, "Charging")
        start = st.charger.session.meter_start_wh
        await until(lambda: st.world.meter_wh > start + 20, what="energy flowing")
        st.world.set_load(0)
        await state_is(st, "SuspendedEV")
        final = st.world.meter_wh  # nothing flows any more
        st.world.set_load(0)
        await until(lambda: st.store.session(sid).extra["last_wh"] == final, what="the final reading journaled")
        assert final > start + 20


# --------------------------------------------------------------------------- a journal that fails (issue 22)
def _mount(*args: str) -> bool:
    return os.geteuid() == 0 and subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """A 4 MiB tmpfs (root only) and a way to fill it: a real ENOSPC, as on a full SD card. The
    emulated meter keeps its register outside it (a real meter keeps it in the meter)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)):
        pytest.skip("needs root to mount a small tmpfs")
    from station.emulated import meter_server

    monkeypatch.setattr(meter_server, "STATE_FILE", str(tmp_path / meter_server.STATE_FILE))
    filler = mnt / "filler"

    def fill() -> None:
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        for chunk in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
        os.close(fd)

    yield mnt, fill, filler.unlink
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.fixture
def read_only_view(tmp_path, monkeypatch):
    """The state directory through a bind mount (root only) that can be made read-only and writable
    again: a read-only journal the station has not opened for writing. The emulated meter keeps its
    register in the real directory (a real meter keeps it in the meter)."""
    real, view = tmp_path / "real", tmp_path / "state"
    real.mkdir()
    view.mkdir()
    if not _mount("--bind", str(real), str(view)):
        pytest.skip("needs root to bind-mount a directory")
    from station.emulated import meter_server

    monkeypatch.setattr(meter_server, "STATE_FILE", str(real / meter_server.STATE_FILE))

    def writable(yes: bool) -> None:
        assert _mount("-o", f"remount,bind,{'rw' if yes else 'ro'}", str(view)), "remount failed"

    yield view, writable
    subprocess.run(["umount", "-l", str(view)], capture_output=True)


async def test_a_full_journal_does_not_hold_the_stop_and_takes_it_with_its_time_when_space_returns(full_disk):
    """Disk full at the stop tap: the contactor opens at once; the LCD must not say "Charging" while
    the journal refuses, the connector goes on (Finishing, Available) with the fault named on the LCD
    and in the status, and the stop is journaled with its own time and reason once space returns."""
    mnt, fill, free = full_disk
    async with running_station(mnt, graceful=False) as st:  # (before the fix, a graceful stop hung on the stop)
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        sid, start = st.charger.session.id, st.charger.session.meter_start_wh
        st.world.set_load(11000)
        await state_is(st, "Charging")
        await until(lambda: st.charger.reading.energy_wh > start + 5, what="energy flowing")
        fill()
        before = st.clock.stamp()
        await st.world.tap(CARD, wait=False)
        await until(lambda: not st.world.contactor_closed, what="the contactor open at the tap")
        await until(lambda: not lcd(st).startswith("Charging"), timeout=5, what=f"the LCD not saying Charging: {lcd(st)!r}")
        final = st.world.meter_wh  # nothing flows any more
        st.world.set_load(0)
        await state_is(st, "Available")  # the connector is not held by the journal
        assert st.store.session(sid).state == "active"  # nothing recorded that was not written
        report = st.charger.status()
        assert (report.error_code, report.vendor_error_code) == ("OtherError", "JournalFull"), report
        await until(lambda: "Storage full" in lcd(st), what=f"the fault on the LCD: {lcd(st)!r}")
        await st.world.tap(CARD7)  # refused: it could not be recorded
        await state_is(st, "Available")
        assert not st.world.contactor_closed and len(st.store.sessions()) == 1
        free()
        await until(lambda: st.store.session(sid).state == "stopped", timeout=20, what="the stop journaled")
        s = st.store.session(sid)
        assert (s.stop_reason, s.meter_stop_wh, s.meter_stop_estimated) == ("Local", final, False)
        assert before <= s.stopped_at < _stamp_after(before, 5)  # when it stopped, not when it was written
        await until(lambda: "storage" not in st.charger.faults, what="the fault cleared")
        assert await st.flush(10) and st.store.session(sid).extra["delivered"]
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")


def _stamp_after(stamp: str, seconds: float) -> str:
    return datetime.fromtimestamp(parse_iso(stamp).timestamp() + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.999Z")


async def test_a_read_only_journal_starts_degraded_then_takes_the_open_session_when_writable(read_only_view, capsys):
    """A journal that cannot be written at start: the station starts (no restart loop), refuses
    sessions with the fault named on the LCD and in the status, keeps the journal readable, and
    closes the session a power cut left open once the journal takes writes again."""
    view, writable = read_only_view
    async with running_station(view, graceful=False) as st:  # a power cut in the middle of a session
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        sid = st.charger.session.id
        st.world.consume(200)
        await until(lambda: st.charger.reading.energy_wh == st.charger.session.meter_start_wh + 200, what="200 Wh read")
    writable(False)
    async with running_station(view) as st:
        assert st.failure is None and st.store.read_only
        report = st.charger.status()
        assert (report.error_code, report.vendor_error_code) == ("OtherError", "JournalReadOnly"), report
        await until(lambda: "Storage read-only" in lcd(st) or "Storage locked" in lcd(st), what=f"LCD: {lcd(st)!r}")
        assert [s.id for s in st.store.sessions(("active",))] == [sid]  # the journal stays readable
        capsys.readouterr()
        assert cli.main(["sessions", "--state-dir", str(view), "--json"]) == 0  # and `station sessions` reads it
        assert [row["id"] for row in json.loads(capsys.readouterr().out)] == [sid]
        await st.world.tap(CARD)
        await state_is(st, "Available")
        assert not st.world.contactor_closed and "record" in lcd(st).lower()
        writable(True)
        await until(lambda: st.store.session(sid).state == "stopped", timeout=20, what="the PowerLoss close journaled")
        s = st.store.session(sid)
        assert (s.stop_reason, s.energy_wh, s.meter_stop_estimated) == ("PowerLoss", 200, False)
        await until(lambda: "storage" not in st.charger.faults, what="the fault cleared")
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        assert len(st.store.sessions()) == 2
