"""The wall clock stepped under a running station, from outside (issue 22, "A Raspberry Pi has no clock").

A real `station simulate --scenario` process runs with an LD_PRELOAD shim (tests/clock_shim.py)
that steps its CLOCK_REALTIME by +3 days and by -1 hour during sessions, and can make the kernel say
"synchronized" as NTP would. This process watches the journal and measures each session with its own
monotonic clock; `station sessions --json` (run without the shim) must give every session that
duration, starts in id order and every stop after its start. Where the station's time comes from a
source that is right (a reference MCSP server in its own process, unshifted), the times must also
be the true ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from station.clock import parse_iso
from tests.clock_shim import CARD, DAY, Shim, build, check, outputs, run, scenario


@pytest.fixture(scope="module")
def shim_lib(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("clockshim"))


async def test_local_backend_steps_of_a_synchronized_clock(shim_lib, tmp_path):
    """The simulator counts the host's clock as synchronized (as NTP's on a Pi): the station follows
    the steps, and still gives every session its true duration and keeps the journal in order."""
    shim = Shim(shim_lib, tmp_path / "shim")
    config = tmp_path / "local.toml"
    config.write_text(f'[backend]\nkind = "local"\n[backend.local.tags]\n"{CARD}" = "Apartment 2"\n')
    plan = {1: (2.0, "+3 days", lambda: shim.step(3 * DAY)),
            3: (2.0, "-1 hour", lambda: shim.step(-3600))}
    rows, seen, _ = await run(shim, tmp_path / "state", scenario(4, 6.0), plan, config=config)
    check(rows, seen)
    assert [s.steps for s in seen] == [["+3 days"], [], ["-1 hour"], []]
    assert rows[3]["time_estimated"] == ["start", "stop"]  # held after the clock went back: said so


async def test_local_backend_without_any_time_source_gives_estimates_that_keep_durations(shim_lib, tmp_path):
    """No NTP, no backend's time: the times are estimates on the monotonic clock, marked as such."""
    shim = Shim(shim_lib, tmp_path / "shim")
    config = tmp_path / "local.toml"
    config.write_text(f'[backend]\nkind = "local"\n[backend.local.tags]\n"{CARD}" = "Apartment 2"\n')
    plan = {1: (2.0, "+3 days", lambda: shim.step(3 * DAY)),
            2: (2.0, "-1 hour", lambda: shim.step(-3600))}
    rows, seen, _ = await run(shim, tmp_path / "state", scenario(3, 6.0, system_clock="untrusted"), plan,
                              config=config)
    # `station sessions` dates them on its own (unshifted) system clock: the true time, here.
    check(rows, seen, absolute={1, 2, 3})
    assert all(r["time_estimated"] == ["start", "stop"] for r in rows)


async def test_embedded_mcsp_server_steps_after_its_time_was_taken(shim_lib, tmp_path):
    """The demo: the MCSP reference server inside the station's process tells the time at connect;
    then the wall clock steps +3 days and -1 hour during sessions. (Before the fix: a 3-day session.)"""
    shim = Shim(shim_lib, tmp_path / "shim")
    plan = {1: (2.0, "+3 days", lambda: shim.step(3 * DAY)),
            3: (2.0, "-1 hour", lambda: shim.step(-3600))}
    rows, seen, summary = await run(shim, tmp_path / "state", scenario(4, 6.0), plan)
    check(rows, seen)
    assert summary["undelivered"] == 0 and all(s["delivered"] for s in summary["sessions"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp_path: Path, port: int) -> subprocess.Popen:
    """`station mcsp-server` in its own process, on its own (true) clock."""
    tags = tmp_path / "tags.toml"
    tags.write_text(f'"{CARD}" = "Apartment 2"\n')
    with outputs(tmp_path / "server.err") as (err,):
        return subprocess.Popen([sys.executable, "-m", "station", "mcsp-server", "--listen", f"127.0.0.1:{port}",
                                 "--tags", str(tags), "--db", str(tmp_path / "server.db")],
                                stdout=subprocess.DEVNULL, stderr=err)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=30)


@contextlib.asynccontextmanager
async def reference_server(tmp_path: Path):
    port = free_port()
    proc = start_server(tmp_path, port)
    try:
        for _ in range(300):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the MCSP server did not listen (see server.err)")
        yield port
    finally:
        stop_server(proc)


def mcsp_config(tmp_path: Path, port: int, extra: str = "") -> Path:
    config = tmp_path / "mcsp.toml"
    config.write_text(f'[station]\nname = "Tankstelle1"\n[backend]\nkind = "mcsp"\n{extra}'
                      f'[backend.mcsp]\nurl = "tcp://127.0.0.1:{port}"\nheartbeat_s = 300\ntimeout_s = 2\n')
    return config


async def test_reference_server_corrects_a_days_old_clock_and_ntp_steps_do_not_count_twice(shim_lib, tmp_path):
    """A Pi booted with a fake-hwclock time 3 days old, kernel not synchronized: the separate MCSP
    server's `Time` (1 s resolution) sets the clock, at connect (the next HEARTBEAT is 5 minutes away:
    before the fix, only it would have repaired the double count). Then NTP steps the system clock +3 days (still
    unsynchronized), the system clock is set back an hour, and NTP steps it right and synchronizes.
    Every session keeps its duration and the true time (the original bug: +3 days counted twice)."""
    shim = Shim(shim_lib, tmp_path / "shim", offset=-3 * DAY, synced=False)
    plan = {1: (2.0, "NTP step +3 days", lambda: shim.step(3 * DAY)),
            2: (2.0, "-1 hour", lambda: shim.step(-3600)),
            3: (2.0, "NTP step +1 hour and synchronized", lambda: shim.step(3600, synced=True))}
    async with reference_server(tmp_path) as port:
        rows, seen, summary = await run(shim, tmp_path / "state", scenario(4, 6.0, system_clock="ntp"), plan,
                                        config=mcsp_config(tmp_path, port))
    check(rows, seen, absolute={1, 2, 3, 4})
    assert summary["undelivered"] == 0
    assert all(r["time_estimated"] == [] for r in rows)
    # The server's own ledger: the times the station sent against the server's clock at reception.
    ledger = ledger_rows(tmp_path / "server.db")
    assert [r["state"] for r in ledger] == ["closed"] * 4
    for r in ledger:
        assert abs((parse_iso(r["end_time"]) - parse_iso(r["received_end"])).total_seconds()) < 2.0, r
        assert (r["start_time"], r["end_time"]) in {(row["started_at"], row["stopped_at"]) for row in rows}


def ledger_rows(db: Path) -> list[dict]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM sessions ORDER BY id")]


async def test_sessions_before_the_backends_first_time_are_dated_exactly_once_it_comes(shim_lib, tmp_path):
    """The server is unreachable at boot (fake-hwclock 3 days old, no NTP): the first session runs
    offline, stamped by the monotonic clock, and NTP steps the unsynchronized clock +3 days during
    it; the server comes up during the second. Once its `Time` arrives, every session gets its true
    times (and only then is it delivered)."""
    shim = Shim(shim_lib, tmp_path / "shim", offset=-3 * DAY, synced=False)
    port = free_port()
    started: list[subprocess.Popen] = []
    plan = {1: (2.0, "NTP step +3 days (unsynchronized)", lambda: shim.step(3 * DAY)),
            2: (1.0, "server up", lambda: started.append(start_server(tmp_path, port)))}
    offline = f'offline_policy = "cached+local"\n[backend.local.tags]\n"{CARD}" = "Apartment 2"\n'
    try:
        rows, seen, summary = await run(shim, tmp_path / "state", scenario(3, 6.0, system_clock="ntp", online=False),
                                        plan, config=mcsp_config(tmp_path, port, offline))
    finally:
        for proc in started:
            stop_server(proc)
    check(rows, seen, absolute={1, 2, 3})
    assert summary["undelivered"] == 0 and all(r["time_estimated"] == [] for r in rows)
    ledger = ledger_rows(tmp_path / "server.db")
    assert sorted((r["start_time"], r["end_time"]) for r in ledger) == [(r["started_at"], r["stopped_at"]) for r in rows]
