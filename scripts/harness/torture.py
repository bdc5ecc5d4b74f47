"""Torture: SIGKILL a real station daemon at random moments, restart it, check at the backend.

The kill test's engine, shared by tests/test_torture.py (short runs) and its command line,
bench/torture.py (hundreds of kills):

    python bench/torture.py --kills 300 --seed 1 --backend mcsp|ocpp|ocpp201 [--outages 0.3] [--budget 1800]

Theory of operation
-------------------
The station under test is the real program, `python -m station simulate -c
CFG --scenario ROUND.toml --state-dir STATE`, in its own process: the daemon
(station.daemon.Station) on emulated hardware (the emulated Modbus meter
keeps its register in STATE/sim-meter.json, fsynced before the bus shows a
new value, as a real meter keeps its register through a power cut). Each
round writes a new scenario (seeded): sessions with random cards, loads,
durations and exact `consume` steps, now and then an unknown card. The
process is killed with SIGKILL after a seeded random delay, which can fall
anywhere: during start-up, during the PowerLoss closing of the previous
round's session, mid-tap, mid-delivery, mid-commit. Then the next round
restarts it on the same state directory. Optionally (`--outages P`) the
backend is taken off the link for part of a round, so that sessions run
offline (offline policy cached+local) and are delivered later.

After the last kill, one clean round runs to its end (the scenario runner
waits until nothing is left undelivered). Then the checks, at the backend's
end. With `--backend ocpp` the backend is a strict OCPP 1.6 central system we
did not write (ocpp-rpc in strict mode, scripts/harness/peers/ledger_cs.js) and the
checks are torture_ocpp.py's (beside this file); with `--backend ocpp201` the same central
system speaks OCPP 2.0.1 (the station's backend.ocpp.versions = ["2.0.1"])
and the checks are torture_ocpp201.py's. With `--backend mcsp` it is the MCSP
reference server (station.servers.mcsp, McspServer) on 127.0.0.1, in
this process, with its ledger in SQLite, and the checks are:

* every session the journal holds (active or stopped) is closed in the
  ledger exactly once, found by its session key, with the journal's
  readings and energy; none is left undelivered, the outbox is empty;
* ledger rows that match no charging session (a tap killed between the
  server's START and the journal's activation) bill nothing;
* no two billed sessions cover the same meter interval (no double billing
  under two keys);
* the sum of billed energy equals the emulated meter's advance (final
  register - initial, read from its state file).

Reproducible: the seed fixes every round's scenario, kill delay and outage;
which instruction the kill lands on still depends on the machine's speed.
Bounded: at most `kills` kills and `budget_s` seconds (rounds stop when the
budget is spent; the figures say how many kills were done).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from torture_ocpp import LedgerCS

from station.aio import cancel_and_wait
from station.hardware.meters.models import get_model, registered_wh
from station.servers.mcsp import McspServer

ROOT = Path(__file__).resolve().parents[2]  # the repository: the station process runs from here

TAGS = {"D64FC93B": "Apartment 2", "04A2B3C4D5E6F7": "Apartment 3", "A1B2C3D4": "Apartment 4"}
UNKNOWN = "6AC32B40"
METER_MODEL = "SDM630"
INITIAL_PHASE_WH = [41_234, 41_233, 41_233]  # a register that is not zero

CONFIG = """\
[station]
name = "Tankstelle1"
[hardware]
mode = "sim"
[meter]
model = "{model}"
timeout_s = 0.2
[rfid]
poll_interval_s = 0.05
absent_s = 0.2
[charging]
meter_interval_s = 0.2
finishing_s = 0.2
message_s = 0.5
journal_interval_s = 1
"""
MCSP_CONFIG = """\
[backend]
kind = "mcsp"
offline_policy = "cached+local"
[backend.mcsp]
url = "{url}"
timeout_s = 2.0
heartbeat_s = 5.0
[backend.local.tags]
{tags}
"""


@dataclass
class Figures:
    seed: int
    kills_asked: int
    kills: int = 0
    rounds: int = 0
    early_exits: int = 0  # rounds whose scenario ended (or failed) before the kill
    outages: int = 0
    sessions: int = 0  # charging sessions in the journal (active or stopped)
    sessions_with_energy: int = 0
    power_loss: int = 0
    offline_sessions: int = 0
    estimated: int = 0
    aborted_taps: int = 0
    refused_taps: int = 0
    ledger_rows: int = 0
    ledger_zero_rows: int = 0  # rows of taps that never charged (zero energy, or superseded)
    billed_wh: int = 0
    meter_advance_wh: int = 0
    duration_s: float = 0.0
    backend: str = "mcsp"
    aimed_kills: int = 0  # OCPP: kills aimed at a StartTransaction in flight (--aim)
    # OCPP only (scripts/harness/torture_ocpp.py): what the strict central system saw.
    cs_transactions: int = 0  # StartTransactions it answered
    duplicate_starts: int = 0  # transactions opened twice for one session (never stopped, bill nothing)
    duplicates_after_kill: int = 0  # ... whose first StartTransaction went on a connection the kill ended
    duplicates_after_drop: int = 0  # ... on a connection the central system dropped (an outage)
    aimed_duplicates: int = 0  # ... whose first StartTransaction was the target of an aimed kill
    resent_starts: int = 0  # StartTransactions the station sent again after one without an answer (its marks)
    repeated_stops: int = 0  # StopTransaction sent again with the same values (harmless)
    # OCPP 2.0.1 only (scripts/harness/torture_ocpp201.py)
    cs_events: int = 0  # TransactionEvents the central system got (repeats included)
    repeated_events: int = 0  # TransactionEvents sent again after a kill: same seqNo, same content
    offline_events: int = 0  # TransactionEvents marked offline
    seq_gaps: int = 0  # transactions whose seqNo has a gap (must be 0)
    duplicates_stopped: int = 0  # ... duplicates the station learnt of (a late answer) and stopped at 0 Wh
    open_at_cs: int = 0  # transactions the central system holds open at the end (never stopped)
    named_open: int = 0  # transactions the station names as possibly open (journal, sessions, status page)
    cs_latency_ms: float = 0.0  # the central system's own latency on StartTransaction
    window_ms: list[float] = field(default_factory=list)  # median, 95th percentile, most: CS got it -> id journaled
    schema_failures: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _step(action: str, **kw) -> str:
    body = "".join(f"{k} = {json.dumps(v)}\n" for k, v in kw.items())
    return f"[[step]]\naction = \"{action}\"\n{body}\n"


def round_scenario(rng: random.Random, sessions: int, settle_s: float = 0.0) -> str:
    """A seeded scenario: `sessions` charging sessions (and now and then an unknown card)."""
    out = [f"settle_s = {settle_s}\n\n"]
    cards = list(TAGS)
    for _ in range(sessions):
        if rng.random() < 0.1:
            out.append(_step("tap", uid=UNKNOWN, hold_s=0.15))
            out.append(_step("wait", seconds=0.3))
        card = rng.choice(cards)
        out.append(_step("load", watts=0))
        out.append(_step("tap", uid=card, hold_s=0.15))
        out.append(_step("expect", state="SuspendedEV", within=15))
        kind = rng.random()
        if kind < 0.4 or kind >= 0.8:  # energy from a real load over time (kills land while it flows)
            out.append(_step("load", watts=rng.choice([11_000, 22_000, 43_000])))
            out.append(_step("wait", seconds=round(rng.uniform(0.2, 1.2), 2)))
            out.append(_step("load", watts=0))
        if kind >= 0.4:  # exact Wh at once
            out.append(_step("consume", wh=rng.randint(1, 3000)))
            out.append(_step("wait", seconds=round(rng.uniform(0.0, 0.4), 2)))
        out.append(_step("tap", uid=card, hold_s=0.15))
        out.append(_step("expect", state="Available", within=15))
    return "".join(out)


def _meter_wh(state: Path) -> int:
    doc = json.loads((state / "sim-meter.json").read_text())
    model = get_model(doc.get("model", METER_MODEL))
    return registered_wh(model, model.energy, int(doc["energy_wh"]))


def _append(log_path: Path) -> BinaryIO:
    return open(log_path, "ab")  # closed by the caller's `with`


def _note(log_path: Path, text: str) -> None:
    with open(log_path, "a") as log:
        log.write(f"\n===== {text}\n")


async def _run_station(cmd: list[str], log_path: Path, kill_after: float | None, timeout: float,
                       aim: Coroutine[Any, Any, Any] | None = None) -> tuple[int | None, bool, bool]:
    """Run one round: kill after `kill_after` s, or as soon as `aim` returns if it does first.
    Returns (exit code or None if killed, killed, the kill was aimed)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with _append(log_path) as log:
        proc = await asyncio.create_subprocess_exec(*cmd, cwd=str(ROOT), env=env, stdout=log, stderr=log,
                                                    stdin=asyncio.subprocess.DEVNULL)
        ended = asyncio.create_task(proc.wait())
        aimed = asyncio.create_task(aim) if aim is not None else None
        try:
            wait = kill_after if kill_after is not None else timeout
            await asyncio.wait([t for t in (ended, aimed) if t is not None], timeout=wait,
                               return_when=asyncio.FIRST_COMPLETED)
            if ended.done():
                return ended.result(), False, False
            proc.send_signal(signal.SIGKILL)  # this process only, by its pid
            await proc.wait()
            return None, kill_after is not None, aimed is not None and aimed.done()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await cancel_and_wait(ended, aimed)


class McspSide:
    """The MCSP reference server in this process, with its ledger in SQLite."""

    name = "mcsp"

    def __init__(self, work: Path) -> None:
        self.server = McspServer(tags=dict(TAGS), db=work / "mcsp-ledger.db")
        self._resumed: asyncio.Event | None = None

    async def start(self) -> None:
        await self.server.start()

    def config(self) -> str:
        return MCSP_CONFIG.format(url=self.server.url, tags="\n".join(f'"{t}" = "{a}"' for t, a in TAGS.items()))

    def prepare(self, state: Path) -> None:
        pass

    async def outage(self, after: float, length: float) -> None:
        await asyncio.sleep(after)
        await self.server.suspend()
        await asyncio.sleep(length)
        await self.server.resume()

    async def resume(self) -> None:
        await self.server.resume()

    async def close(self) -> None:
        await self.server.close()

    def check(self, fig: Figures, journal: Path) -> None:
        check(fig, journal, self.server)


class Rig:
    """One station's state directory and configuration against a backend side, the command that runs
    it, and the judging at the end. `async with Rig(work, side) as rig:` starts and stops the side."""

    def __init__(self, work: Path, side: McspSide | LedgerCS) -> None:
        self.work, self.side = work, side
        self.state = work / "state"
        self.log_path = work / "station.log"
        self.scenario = work / "round.toml"
        self.config = work / "station.toml"
        self.command = [sys.executable, "-m", "station", "--log-level", "INFO", "simulate", "-c", str(self.config),
                        "--state-dir", str(self.state), "--scenario", str(self.scenario)]
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "sim-meter.json").write_text(json.dumps(
            {"model": METER_MODEL, "energy_wh": sum(INITIAL_PHASE_WH), "phase_wh": INITIAL_PHASE_WH}))
        self.initial_wh = _meter_wh(self.state)
        self._previous_handler: Any = None

    async def __aenter__(self) -> Rig:
        loop = asyncio.get_running_loop()
        self._previous_handler = loop.get_exception_handler()

        def quiet(loop: asyncio.AbstractEventLoop, context: dict) -> None:
            # McspServer.suspend() cancels its connection tasks; asyncio's stream callback then
            # reports the CancelledError as "unhandled". It is not: hide that noise only.
            if isinstance(context.get("exception"), asyncio.CancelledError):
                return
            loop.default_exception_handler(context)

        loop.set_exception_handler(quiet)
        try:
            await self.side.start()
            self.side.prepare(self.state)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        self.config.write_text(CONFIG.format(model=METER_MODEL) + self.side.config())
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.side.close()
        finally:
            asyncio.get_running_loop().set_exception_handler(self._previous_handler)

    async def run(self, scenario: str, note: str, kill_after: float | None, timeout: float,
                  aim: Coroutine[Any, Any, Any] | None = None) -> tuple[int | None, bool, bool]:
        """One round of `station simulate` on `scenario` (see _run_station)."""
        self.scenario.write_text(scenario)
        _note(self.log_path, note)
        return await _run_station(self.command, self.log_path, kill_after, timeout, aim)

    async def final_round(self, fig: Figures, scenario: str) -> None:
        """A round that runs to its end: the runner waits until nothing is left undelivered."""
        code, _, _ = await self.run(scenario, "final clean round", None, timeout=150)
        if code != 0:
            fig.failures.append(f"the final clean round exited with {code} (see {self.log_path})")

    def judge(self, fig: Figures) -> None:
        """The checks at the backend's end, after the final round. Appends to fig.failures."""
        fig.meter_advance_wh = _meter_wh(self.state) - self.initial_wh
        _journal_figures(fig, self.state / "journal.db")
        self.side.check(fig, self.state / "journal.db")
        if fig.billed_wh != fig.meter_advance_wh:
            fig.failures.append(f"billed {fig.billed_wh} Wh but the meter advanced {fig.meter_advance_wh} Wh")
        if fig.sessions_with_energy == 0:
            fig.failures.append("no session carried energy: the torture tested nothing")


def make_side(backend: str, work: Path, cs_latency_ms: float = 0.0) -> McspSide | LedgerCS:
    """The backend side for `backend`, its files in `work` (created)."""
    work.mkdir(parents=True, exist_ok=True)
    if backend == "ocpp201":
        return LedgerCS(work, TAGS, version="2.0.1", start_latency_ms=cs_latency_ms)
    return LedgerCS(work, TAGS, start_latency_ms=cs_latency_ms) if backend == "ocpp" else McspSide(work)


async def torture(workdir: str | Path, kills: int, seed: int, *, backend: str = "mcsp", budget_s: float = 90.0,
                  outages: float = 0.0, kill_range: tuple[float, float] = (0.05, 3.0), aim: float = 0.0,
                  aim_ms: float = 20.0, cs_latency_ms: float = 0.0,
                  say: Callable[[str], None] | None = None) -> Figures:
    """Run the torture in `workdir` (created) and return the figures; `failures` lists what broke.

    `aim` (OCPP only): the probability that a round's kill is aimed at a StartTransaction in
    flight: the round is killed a uniform 0..`aim_ms` ms after the central system received the
    first StartTransaction of the round (or at its random moment if that comes first)."""
    if aim and backend not in ("ocpp", "ocpp201"):
        raise ValueError("aimed kills are for the OCPP backend (MCSP repeats are idempotent by Session-Key)")
    say = say or (lambda text: None)
    work = Path(workdir)
    rng = random.Random(seed)
    fig = Figures(seed=seed, kills_asked=kills, backend=backend, cs_latency_ms=cs_latency_ms)
    async with Rig(work, make_side(backend, work, cs_latency_ms)) as rig:
        side = rig.side
        started = time.monotonic()
        while fig.kills < kills and time.monotonic() - started < budget_s:
            fig.rounds += 1
            scenario = round_scenario(rng, sessions=8)
            kill_after = rng.uniform(*kill_range)
            outage = None
            if rng.random() < outages:
                outage = (rng.uniform(0.0, kill_after), rng.uniform(0.5, 4.0))
            note = (f"round {fig.rounds}: kill after {kill_after:.2f} s"
                    f"{f', outage at {outage[0]:.2f} s for {outage[1]:.2f} s' if outage else ''}")
            aimed = None
            if aim and rng.random() < aim:
                assert isinstance(side, LedgerCS)
                aimed = side.aim(rng.uniform(0.0, aim_ms / 1000))
            outage_task = asyncio.create_task(side.outage(*outage)) if outage else None
            if outage:
                fig.outages += 1
            code, killed, on_target = await rig.run(scenario, note, kill_after, timeout=60, aim=aimed)
            if outage_task is not None:
                await outage_task
            if killed:
                fig.kills += 1
                fig.aimed_kills += on_target
            else:
                fig.early_exits += 1
                say(f"round {fig.rounds}: the station exited by itself with {code} before the kill")
            if fig.rounds % 10 == 0:
                say(f"round {fig.rounds}: {fig.kills} kills, {time.monotonic() - started:.0f} s")
        # The clean run: one more session, then the runner waits until everything is delivered.
        await side.resume()
        await rig.final_round(fig, round_scenario(rng, sessions=1, settle_s=90.0))
        fig.duration_s = round(time.monotonic() - started, 1)
        rig.judge(fig)
    return fig


def _journal_figures(fig: Figures, journal_path: Path) -> None:
    """What the station's journal holds (counted the same for every backend); the outbox must be empty
    and the journal's energy must be the meter's advance."""
    db = sqlite3.connect(f"file:{journal_path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        rows = db.execute("SELECT * FROM sessions ORDER BY id").fetchall()
        pending = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    finally:
        db.close()
    if pending:
        fig.failures.append(f"{pending} message(s) left in the outbox")
    charging = [r for r in rows if r["state"] in ("active", "stopped")]
    fig.sessions = len(charging)
    fig.aborted_taps = sum(r["state"] == "aborted" for r in rows)
    fig.refused_taps = sum(r["state"] == "refused" for r in rows)
    journal_wh = 0
    for r in charging:
        energy = (r["meter_stop_wh"] or 0) - (r["meter_start_wh"] or 0)
        journal_wh += energy
        fig.sessions_with_energy += energy > 0
        fig.power_loss += r["stop_reason"] == "PowerLoss"
        fig.offline_sessions += bool(r["authorized_offline"])
        fig.estimated += bool(r["meter_stop_estimated"])
    if journal_wh != fig.meter_advance_wh:
        fig.failures.append(f"the journal holds {journal_wh} Wh but the meter advanced {fig.meter_advance_wh} Wh")


def check(fig: Figures, journal_path: Path, server: McspServer) -> None:
    """The MCSP invariants, at the server's ledger. Appends to fig.failures."""
    db = sqlite3.connect(f"file:{journal_path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        charging = db.execute("SELECT * FROM sessions WHERE state IN ('active', 'stopped') ORDER BY id").fetchall()
    finally:
        db.close()
    fail = fig.failures.append
    ledger = server.sessions()
    fig.ledger_rows = len(ledger)
    by_key: dict[str | None, list] = {}
    for rec in ledger:
        by_key.setdefault(rec.session_key, []).append(rec)
    for r in charging:
        energy = (r["meter_stop_wh"] or 0) - (r["meter_start_wh"] or 0)
        what = f"journal session {r['id']} ({energy} Wh, {r['stop_reason']})"
        if r["state"] != "stopped":
            fail(f"{what} is still open")
            continue
        if not r["delivered"]:
            fail(f"{what} is not delivered")
        recs = by_key.get(r["key"], [])
        if len(recs) != 1:
            fail(f"{what} is in the ledger {len(recs)} times")
            continue
        rec = recs[0]
        if rec.state != "closed" or rec.energy_wh != energy or \
                (rec.meter_start_wh, rec.meter_stop_wh) != (r["meter_start_wh"], r["meter_stop_wh"]):
            fail(f"{what} billed as {rec.state}, {rec.energy_wh} Wh, {rec.meter_start_wh}->{rec.meter_stop_wh}")
        if rec.stop_reason != r["stop_reason"]:
            fail(f"{what} billed with stop reason {rec.stop_reason}")
    charging_keys = {r["key"] for r in charging}
    for rec in ledger:
        if rec.session_key not in charging_keys:
            fig.ledger_zero_rows += 1
            if rec.energy_wh:
                fail(f"ledger session {rec.id} bills {rec.energy_wh} Wh but no charging session has its key")
    billed = sorted((r for r in ledger if r.state == "closed" and r.energy_wh), key=lambda r: r.meter_start_wh or 0)
    for a, b in itertools.pairwise(billed):
        if (b.meter_start_wh or 0) < (a.meter_stop_wh or 0):
            fail(f"ledger sessions {a.id} and {b.id} bill the same meter interval")
    fig.billed_wh = sum(r.energy_wh or 0 for r in ledger if r.state == "closed")

