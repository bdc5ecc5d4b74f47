"""Step the wall clock of a real `station simulate` process from outside (import from tests).

The shim (tests/clockshim/clockshim.c, built here into a temporary directory) is an LD_PRELOAD
library that adds an offset, read from a control file this harness rewrites, to CLOCK_REALTIME
(clock_gettime, gettimeofday, time) and leaves CLOCK_MONOTONIC alone: Python's sleeps and asyncio
keep working, unlike under libfaketime. It can also make adjtimex(2) say whether the kernel's clock
is synchronized, as systemd-timesyncd or chrony would.

`run` starts the station on a scenario, watches its journal (SQLite, read-only) from this process,
and applies planned steps while sessions run. What it measures is the test's own: when each session
was seen starting and stopping, on this process's monotonic clock and its (unshifted) wall clock.
The station's account comes from `station sessions --json`, run without the shim.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pytest

from station.clock import parse_iso
from station.store import DB_NAME

SOURCE = Path(__file__).resolve().parent / "clockshim" / "clockshim.c"
DAY = 86400.0
TOLERANCE_S = 2.0  # the test sees a journal row appear within a poll (20 ms) and some scheduling
CARD = "D64FC93B"


def build(tmp: Path) -> Path:
    """The shim library, compiled into `tmp`; the test is skipped (with the reason) without a compiler."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler: the clock shim (an LD_PRELOAD library) cannot be built")
    lib = tmp / "libclockshim.so"
    done = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(lib), str(SOURCE), "-ldl"],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.skip(f"the clock shim does not build here: {done.stderr.strip()[-400:]}")
    return lib


class Shim:
    """The control file: the station's wall-clock offset (s) and what adjtimex says (None: the kernel)."""

    def __init__(self, lib: Path, control: Path, offset: float = 0.0, synced: bool | None = None) -> None:
        self.lib, self.control = lib, control
        self.offset, self.synced = offset, synced
        self.control.write_bytes(b" " * 64)
        self._write()

    def _write(self) -> None:
        text = f"{self.offset:.3f}" + ("" if self.synced is None else f" {int(self.synced)}")
        with open(self.control, "r+b") as f:  # in place: the station has it mapped
            f.write(text.ljust(63).encode() + b"\n")

    def step(self, seconds: float, synced: bool | None = None) -> None:
        self.offset += seconds
        if synced is not None:
            self.synced = synced
        self._write()

    def env(self) -> dict[str, str]:
        return {**os.environ, "LD_PRELOAD": str(self.lib), "CLOCKSHIM_FILE": str(self.control)}


def scenario(sessions: int, seconds: float, system_clock: str | None = None, uid: str = CARD,
             online: bool = True) -> str:
    """`sessions` sessions of `seconds` each: tap, charge, tap again; with `online`, once the backend is
    online (a tap before its first answer would be refused offline: a busy machine failed the OCPP run so)."""
    lines = [f'system_clock = "{system_clock}"'] if system_clock else []
    lines.append("settle_s = 60")
    if online:
        lines.append('[[step]]\naction = "expect"\nonline = true\nwithin = 60')
    for _ in range(sessions):
        for step in (f'action = "tap"\nuid = "{uid}"', 'action = "expect"\nstate = "SuspendedEV"\nwithin = 20',
                     f'action = "wait"\nseconds = {seconds}', 'action = "consume"\nwh = 250',
                     f'action = "tap"\nuid = "{uid}"', 'action = "expect"\nstate = "Available"\nwithin = 20',
                     'action = "wait"\nseconds = 1.5'):
            lines.append(f"[[step]]\n{step}")
    return "\n\n".join(lines) + "\n"


@dataclass
class Seen:
    """One session as this process saw it in the journal."""

    id: int
    started_mono: float
    started_wall: datetime
    stopped_mono: float | None = None
    stopped_wall: datetime | None = None
    steps: list[str] = field(default_factory=list)  # what was done while it ran

    @property
    def duration(self) -> float:
        assert self.stopped_mono is not None, f"session {self.id} never seen stopped"
        return self.stopped_mono - self.started_mono


Plan = dict[int, tuple[float, str, Callable[[], None]]]  # session number (1-based) -> (after s, label, action)


async def run(shim: Shim, state_dir: Path, scenario_text: str, plan: Plan, *, config: Path | None = None,
              timeout: float = 400.0) -> tuple[list[dict[str, Any]], list[Seen], dict[str, Any]]:
    """Run the scenario under the shim, applying `plan`; returns (the station's rows, what this
    process saw, the scenario's JSON summary)."""
    path = _write(state_dir.parent / f"{state_dir.name}-scenario.toml", scenario_text)
    cmd = [sys.executable, "-m", "station", "simulate", "--scenario", str(path), "--json", "--state-dir", str(state_dir)]
    if config is not None:
        cmd += ["-c", str(config)]
    out, err = state_dir.parent / f"{state_dir.name}.out", state_dir.parent / f"{state_dir.name}.err"
    with outputs(out, err) as (fout, ferr):
        proc = await asyncio.create_subprocess_exec(*cmd, env=shim.env(), stdout=fout, stderr=ferr)
        try:
            seen = await _watch(proc, state_dir / DB_NAME, plan, timeout)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    summary = json.loads(_read(out) or "{}")
    assert proc.returncode == 0, f"station simulate exited {proc.returncode}:\n{_read(err)[-3000:]}"
    lister = await asyncio.create_subprocess_exec(sys.executable, "-m", "station", "sessions", "--json", "--state-dir",
                                                  str(state_dir), stdout=asyncio.subprocess.PIPE)
    listed, _ = await asyncio.wait_for(lister.communicate(), 60)
    assert lister.returncode == 0
    return json.loads(listed), seen, summary


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def outputs(*paths: Path) -> Iterator[list[IO[bytes]]]:
    """Files for a child's output (never a pipe nobody reads: a chatty child would block on it)."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(open(p, "wb")) for p in paths]  # noqa: SIM115


async def _watch(proc: asyncio.subprocess.Process, db: Path, plan: Plan, timeout: float) -> list[Seen]:
    seen: dict[int, Seen] = {}
    pending: dict[int, float] = {}  # session id -> when its planned step is due (monotonic)
    deadline = time.monotonic() + timeout
    conn: sqlite3.Connection | None = None
    while proc.returncode is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"the scenario did not end within {timeout} s")
        await asyncio.sleep(0.02)
        if conn is None:
            conn = _open_journal(db)
            if conn is None:
                continue
        try:
            rows = conn.execute("SELECT id, state FROM sessions WHERE state IN ('active', 'stopped') ORDER BY id").fetchall()
        except sqlite3.Error:
            continue
        now, wall = time.monotonic(), datetime.now(UTC)
        for sid, state in rows:
            if sid not in seen:
                seen[sid] = Seen(sid, now, wall)
                number = len(seen)
                if number in plan:
                    pending[sid] = now + plan[number][0]
            s = seen[sid]
            if state == "stopped" and s.stopped_mono is None:
                s.stopped_mono, s.stopped_wall = now, wall
                assert sid not in pending, f"session {sid} ended before its planned step (a very slow machine?)"
            if sid in pending and now >= pending[sid] and state == "active":
                del pending[sid]
                _, label, action = plan[list(seen).index(sid) + 1]
                action()
                s.steps.append(label)
    if conn is not None:
        conn.close()
    assert not pending, f"planned steps never applied: {pending}"
    return list(seen.values())


def _open_journal(db: Path) -> sqlite3.Connection | None:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) if db.exists() else None


def check(rows: list[dict[str, Any]], seen: list[Seen], *, absolute: set[int] = frozenset()) -> None:  # type: ignore[assignment]
    """Every session lasts its true duration (as this process measured it), starts are in id order,
    every stop is after its start; sessions numbered in `absolute` (1-based) also carry the true time."""
    assert [r["id"] for r in rows] == [s.id for s in seen], (rows, seen)
    previous = None
    for n, (row, s) in enumerate(zip(rows, seen, strict=True), 1):
        start, stop = parse_iso(row["started_at"]), parse_iso(row["stopped_at"])
        span = (stop - start).total_seconds()
        where = f"session {s.id} ({', '.join(s.steps) or 'no step'}): {row['started_at']} .. {row['stopped_at']}"
        assert abs(span - s.duration) < TOLERANCE_S, f"{where} lasts {span:.1f} s, truly {s.duration:.1f} s"
        assert stop >= start, where
        assert previous is None or start >= previous, f"{where} starts before the session before it ({previous})"
        previous = start
        if n in absolute:
            assert s.stopped_wall is not None
            assert abs((start - s.started_wall).total_seconds()) < TOLERANCE_S, f"{where}: truly {s.started_wall}"
            assert abs((stop - s.stopped_wall).total_seconds()) < TOLERANCE_S, f"{where}: truly {s.stopped_wall}"
