"""Benchmark: how many stations one MCSP reference server holds (`station mcsp-server`).

The server runs as an installation runs it: `python -m station mcsp-server
--listen 127.0.0.1:PORT --db ledger.db --tags tags.toml` in its own process,
its ledger a SQLite file on this machine's disk (WAL, synchronous=FULL: an
fsync per write), logging at INFO to a file, started with the open-file
limit a systemd service gets by default (soft 1024). Its CPU (utime +
stime) and memory (VmRSS, VmHWM) come from /proc. The stations are emulated
in this process (bench/mcsp_load.py): one connection each, from its own
loopback address, a HEARTBEAT as soon as it connects, as the real client.

1. Held connections: a fresh server, N stations connected, each sending a
   HEARTBEAT every 10 s (six times the real 60 s, so that a window of
   seconds sees enough of them); the server's CPU over a window while they
   beat and over a window while they are quiet, RSS. The figure for real
   60 s heartbeats is the quiet cost plus a sixth of the heartbeats' cost.
2. Sessions per second: a fresh server with background stations beating,
   and K stations each doing START then END (own Name, distinct
   Session-Keys, a tag of the tags file each) in a closed loop; START and
   END latency as the station sees it (request written to reply parsed);
   afterwards the ledger read back: every session closed with its energy.
3. Ledger age: one station's sessions on a server whose ledger already
   holds many closed sessions (years of an installation).
4. A lockout attempt, when the server has a connection policy
   (`--max-connections`): one station opening a new connection for each
   session (a station whose link just dropped) while another loopback
   address keeps many silent connections open, reopening each as the server
   closes it.

A floor for 2.: the time of one SQLite commit (WAL, synchronous=FULL) in the
same directory, measured in this process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import PYTHON, ROOT, Result, proc_cpu_s, sim_env
from bench.mcsp_load import (
    ENERGY_WH,
    HEARTBEAT_S,
    REAL_HEARTBEAT_S,
    SERVICE_NOFILE,
    TAGS,
    Beats,
    Server,
    Station,
    Tally,
    connect_all,
    latency,
    one_session,
    raise_nofile,
    server_options,
    session_loop,
    source,
    tag,
    window,
    write_tags,
)

ATTACKER = "127.0.0.2"


# ---------------------------------------------------------------------------- 1. held connections
async def held(tmp: Path, n: int, beat_s: float, quiet_s: float, settle_s: float,
               max_connections: int | None) -> dict[str, Any]:
    """A fresh server, `n` stations connected and beating: a window beating, a window quiet."""
    server = Server(tmp, max_connections)
    await server.start()
    stations = [Station(f"Bench-H{i:04d}", source(i)) for i in range(n)]
    beats = Beats()
    try:
        await asyncio.sleep(settle_s)
        alone = await window(server, min(quiet_s, 5.0))
        before = server.memory()
        connect_s = await connect_all(stations, server.port, beats.total)
        beats.start(stations, 0)
        await asyncio.sleep(settle_s)
        connected, sent = server.memory(), beats.total.sent
        beats.window = Tally()
        beating = await window(server, beat_s)
        during, beats.window = beats.window, Tally()
        beats.beating = False
        await asyncio.sleep(settle_s)  # heartbeats in flight finish
        quiet = await window(server, quiet_s)
        per_beat = max(0.0, beating["server_pct_of_one_core"] - quiet["server_pct_of_one_core"])
        out: dict[str, Any] = {
            "connected": sum(1 for s in stations if s.writer is not None and not s.reader.at_eof()),
            "connect_s": round(connect_s, 2),
            "heartbeats_in_window": during.figures(),
            "heartbeat_latency": latency(during.seconds),
            "no_station": alone,
            "beating": beating,
            "quiet": quiet,
            "pct_of_one_core_at_60s_heartbeats": round(quiet["server_pct_of_one_core"]
                                                       + per_beat * HEARTBEAT_S / REAL_HEARTBEAT_S, 2),
            "cpu_ms_per_heartbeat": round(per_beat / 100 * beating["window_s"] / max(1, during.ok) * 1000, 3),
            "rss_mib_before_connections": before["rss_mib"],
            "rss_mib_connected": connected["rss_mib"],
            "open_fds": len(os.listdir(f"/proc/{server.pid}/fd")),
            "server_nofile_soft/hard": server.nofile(),
        }
        out.update(server.memory())
        out["rss_kib_per_heartbeat"] = round((out["rss_mib"] - connected["rss_mib"]) * 1024
                                             / max(1, beats.total.sent - sent), 2)
        await beats.stop()
        out["every_heartbeat"] = beats.total.figures()  # those sent on connecting included
    finally:
        await beats.stop()
        await asyncio.gather(*(s.close() for s in stations))
        await server.stop()
    return out


# ---------------------------------------------------------------------------- 2. sessions per second
def ledger_check(db: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        rows = dict(c.execute("SELECT state, count(*) FROM sessions GROUP BY state").fetchall())
        wrong = c.execute("SELECT count(*) FROM sessions WHERE state = 'closed' AND energy_wh != ?",
                          (ENERGY_WH,)).fetchone()[0]
    return {"closed": rows.get("closed", 0), "open": rows.get("open", 0), "superseded": rows.get("superseded", 0),
            "closed_with_wrong_energy": wrong}


async def sessions(tmp: Path, k: int, background: int, seconds: float, settle_s: float,
                   max_connections: int | None) -> dict[str, Any]:
    """A fresh server, `background` stations beating, `k` stations doing sessions back to back."""
    server = Server(tmp, max_connections)
    await server.start()
    held_ = [Station(f"Bench-H{i:04d}", source(i)) for i in range(background)]
    st = [Station(f"Bench-S{i:02d}", source(background + i)) for i in range(k)]
    beats = Beats()
    connects, starts, ends = Tally(), Tally(), Tally()
    try:
        await connect_all(held_, server.port, beats.total)
        beats.start(held_, 0)
        await connect_all(st, server.port, connects)
        await asyncio.sleep(settle_s)
        before = server.memory()["rss_mib"]
        beats.window = Tally()
        c0, b0, w0 = server.cpu_s(), time.process_time(), time.monotonic()
        pairs = sum(await asyncio.gather(*(session_loop(s, tag(i), w0 + seconds, starts, ends)
                                           for i, s in enumerate(st))))
        c1, b1, wall = server.cpu_s(), time.process_time(), time.monotonic() - w0
        requests = starts.sent + ends.sent + beats.window.sent
        after = server.memory()
        out: dict[str, Any] = {
            "background_stations": background, "sessions": pairs, "seconds": round(wall, 1),
            "sessions_per_s": round(pairs / wall, 1),
            "connect": connects.figures(), "start": starts.figures(), "end": ends.figures(),
            "start_latency": latency(starts.seconds), "end_latency": latency(ends.seconds),
            "server_pct_of_one_core": round((c1 - c0) / wall * 100, 1),
            "server_cpu_ms_per_session": round((c1 - c0) * 1000 / max(1, pairs), 2),
            "bench_pct_of_one_core": round((b1 - b0) / wall * 100, 1),
            "background_heartbeats": beats.window.figures(),
            "background_heartbeat_latency": latency(beats.window.seconds),
            "memory": {"rss_mib_before": before, "rss_mib_after": after["rss_mib"], "peak_rss_mib": after["peak_rss_mib"],
                       "requests": requests,
                       "kib_per_request": round((after["rss_mib"] - before) * 1024 / max(1, requests), 2)},
        }
        await beats.stop()
        out["every_background_heartbeat"] = beats.total.figures()
    finally:
        await beats.stop()
        await asyncio.gather(*(s.close() for s in held_ + st))
        await server.stop()
    out["ledger"] = ledger_check(server.db)
    return out


# ---------------------------------------------------------------------------- memory over a long run
async def memory_run(tmp: Path, k: int, windows: int, window_s: float, max_connections: int | None) -> dict[str, Any]:
    """`k` stations doing sessions back to back for `windows` windows; the server's RSS after each.
    The server keeps bounded state (the last requests, SQLite's page cache) that fills during the
    first tens of thousands of requests; growth that goes on in the later windows is growth
    without bound. A short window cannot tell the two apart."""
    server = Server(tmp, max_connections)
    await server.start()
    st = [Station(f"Bench-M{i:02d}", source(i)) for i in range(k)]
    connects, starts, ends = Tally(), Tally(), Tally()
    series: list[dict[str, Any]] = []
    try:
        await connect_all(st, server.port, connects)
        pairs = 0
        for _ in range(windows):
            end = time.monotonic() + window_s
            pairs += sum(await asyncio.gather(*(session_loop(s, tag(i), end, starts, ends) for i, s in enumerate(st))))
            series.append({"sessions": pairs, "requests": starts.sent + ends.sent + connects.sent,
                           "rss_mib": server.memory()["rss_mib"]})
    finally:
        await asyncio.gather(*(s.close() for s in st))
        await server.stop()
    mid, last = series[len(series) // 2 - 1], series[-1]
    return {"stations": k, "series": series,
            "all_ok": all(t.sent == t.ok for t in (connects, starts, ends)),
            "kib_per_request_second_half": round((last["rss_mib"] - mid["rss_mib"]) * 1024
                                                 / max(1, last["requests"] - mid["requests"]), 4)}


# ---------------------------------------------------------------------------- 3. ledger age
def prefill(db: Path, n: int) -> float:
    """`n` closed sessions in a ledger made by the server's own schema; MiB of the file."""
    from station.servers.mcsp import Ledger

    ledger = Ledger(db)
    rows = ((f"old{i:09d}", f"Bench-H{i % 250:04d}", tag(i % TAGS), tag(i % TAGS), f"Apartment {i % TAGS + 1}",
             "closed", "2024-01-01T10:00:00Z", "2024-01-01T12:00:00Z", 1_000_000 + i, 1_000_000 + i + 9000, 9000,
             "2024-01-01T10:00:01Z", "2024-01-01T12:00:01Z") for i in range(n))
    ledger.db.execute("BEGIN")
    ledger.db.executemany(
        "INSERT INTO sessions (session_key, station, tag, tag_norm, apartment, state, start_time, end_time, "
        "meter_start_wh, meter_stop_wh, energy_wh, received_start, received_end) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    ledger.db.execute("COMMIT")
    ledger.close()
    return round(db.stat().st_size / 2**20, 1)


async def ledger_age(tmp: Path, n: int, seconds: float, max_connections: int | None) -> dict[str, Any]:
    """One station's sessions, back to back, on a server whose ledger holds `n` closed sessions."""
    tmp.mkdir()
    mib = await asyncio.to_thread(prefill, tmp / "ledger.db", n)
    server = Server(tmp, max_connections)
    await server.start()
    st = Station("Bench-A", source(0))
    connects, starts, ends = Tally(), Tally(), Tally()
    try:
        await st.connect(server.port, connects)
        c0, w0 = server.cpu_s(), time.monotonic()
        pairs = await session_loop(st, tag(0), w0 + seconds, starts, ends)
        c1, wall = server.cpu_s(), time.monotonic() - w0
    finally:
        await st.close()
        await server.stop()
    return {"ledger_sessions": n, "ledger_mib": mib, "sessions": pairs, "sessions_per_s": round(pairs / wall, 1),
            "start_latency": latency(starts.seconds), "end_latency": latency(ends.seconds),
            "all_ok": connects.sent == connects.ok and starts.sent == starts.ok and ends.sent == ends.ok,
            "server_cpu_ms_per_session": round((c1 - c0) * 1000 / max(1, pairs), 2)}


# ---------------------------------------------------------------------------- 4. lockout attempt
async def lockout(tmp: Path, attackers: int, seconds: float, max_connections: int | None) -> dict[str, Any]:
    """One station, a new connection per session, while bench/mcsp_flood.py holds `attackers` silent ones."""
    server = Server(tmp, max_connections)
    await server.start()
    flood = None
    if attackers:
        flood = await asyncio.create_subprocess_exec(PYTHON, "-m", "bench.mcsp_flood", str(server.port),
                                                     str(attackers), ATTACKER, stdout=asyncio.subprocess.PIPE,
                                                     env=sim_env(), cwd=str(ROOT))
    connects, starts, ends = Tally(), Tally(), Tally()
    out: dict[str, Any] = {"attacker_connections": attackers, "attacker_address": ATTACKER,
                           "max_connections": max_connections or "default"}
    victim = Station("Bench-V", source(0))
    try:
        if flood is not None:
            await asyncio.sleep(min(5.0, seconds / 3))  # the attacker takes what it can
        c0, w0 = server.cpu_s(), time.monotonic()
        a0 = proc_cpu_s(flood.pid) if flood is not None else 0.0
        pairs = 0
        while time.monotonic() - w0 < seconds:  # a new connection per session: a station whose link dropped
            if await victim.connect(server.port, connects):
                pairs += await one_session(victim, tag(0), 1_000_000 + pairs * ENERGY_WH, starts, ends)
            else:
                await asyncio.sleep(1.0)
            await victim.close()
        wall = time.monotonic() - w0
        out.update({
            "sessions": pairs, "seconds": round(wall, 1), "connect_and_heartbeat": connects.figures(),
            "connect_heartbeat_latency": latency(connects.seconds), "start": starts.figures(), "end": ends.figures(),
            "start_latency": latency(starts.seconds), "end_latency": latency(ends.seconds),
            "served_every_session": pairs > 0 and all(t.sent == t.ok for t in (connects, starts, ends)),
            "server_pct_of_one_core": round((server.cpu_s() - c0) / wall * 100, 1),
            "attacker_pct_of_one_core": round((proc_cpu_s(flood.pid) - a0) / wall * 100, 1) if flood else 0.0,
            "open_fds_at_end": len(os.listdir(f"/proc/{server.pid}/fd")),
        })
        out.update(server.memory())
    finally:
        await victim.close()
        if flood is not None:
            flood.send_signal(signal.SIGTERM)
            text, _ = await flood.communicate()
            out["attacker"] = json.loads(text or b"{}")
        await server.stop()
    out.setdefault("attacker", {"opened": 0, "closed_by_server": 0, "connect_failed": 0})
    return out


# ---------------------------------------------------------------------------- floor
def commit_floor(tmp: Path, n: int) -> dict[str, Any]:
    """One small INSERT per commit, WAL + synchronous=FULL, as the server's ledger writes."""
    db = sqlite3.connect(str(tmp / "floor.db"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    seconds = []
    for i in range(n):
        t0 = time.perf_counter()
        db.execute("INSERT INTO t (v) VALUES (?)", (f"row {i}",))
        seconds.append(time.perf_counter() - t0)
    db.close()
    fs = subprocess.run(["df", "--output=fstype", str(tmp)], capture_output=True, text=True).stdout.split()[-1:]
    return {"commits": n, "commit_latency": latency(seconds), "filesystem": fs[0] if fs else "?"}


# ---------------------------------------------------------------------------- run
def run(quick: bool) -> Result:
    res = Result("mcsp_server", "MCSP reference server: stations held, sessions per second")
    raise_nofile()
    policy = "--max-connections" in server_options()
    if quick:
        ns, ks, ages, background, attackers = [20, 60], [1, 4], [0, 20_000], 20, 60
        beat_s, quiet_s, sess_s, settle_s = 2.0, 1.5, 2.0, 0.5
    else:
        ns, ks, ages, background, attackers = [100, 250, 500, 1000], [1, 8, 32], [0, 100_000, 1_000_000], 250, 500
        beat_s, quiet_s, sess_s, settle_s = 30.0, 15.0, 15.0, 2.0
    cap = None
    if policy:
        cap = max(ns[-1], background + ks[-1]) + 64
    else:  # the server serves at most 256 connections
        ns = [n for n in ns if n <= 250]
        background = min(background, 250 - ks[-1])

    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="bench-mcsp-") as t:
            tmp = Path(t)
            write_tags(tmp / "tags.toml")
            res.figures["commit_floor"] = await asyncio.to_thread(commit_floor, tmp, 50 if quick else 300)
            res.figures["held"] = {str(n): await held(tmp / f"held-{n}", n, beat_s, quiet_s, settle_s, cap)
                                   for n in ns}
            res.figures["sessions"] = {str(k): await sessions(tmp / f"sessions-{k}", k, background, sess_s, settle_s,
                                                              cap) for k in ks}
            res.figures["memory_run"] = await memory_run(tmp / "memory", 8, 4 if quick else 10,
                                                         1.0 if quick else 8.0, cap)
            res.figures["ledger_age"] = {str(n): await ledger_age(tmp / f"age-{n}", n, sess_s / 2, cap) for n in ages}
            if policy:
                # The server's default --max-connections, as an installation runs it; first without an attack.
                res.figures["lockout"] = {str(a): await lockout(tmp / f"lockout-{a}", a, sess_s, None)
                                          for a in (0, attackers)}

    asyncio.run(main())
    res.figures["setup"] = {"heartbeat_every_s": HEARTBEAT_S, "tags": TAGS, "max_connections": cap,
                            "server_nofile_soft_at_start": SERVICE_NOFILE, "quick": quick}
    res.notes.append(f"Heartbeats every {HEARTBEAT_S:g} s instead of the station's {REAL_HEARTBEAT_S:g} s (six times "
                     "the load); the column for 60 s is the quiet connections' cost plus a sixth of the heartbeats' "
                     "cost. Latencies are the station's view (request written to reply parsed) through the load "
                     "generator's own event loop, which shares this machine's cores with the server.")
    res.notes.append(f"Windows: held {beat_s:g} s beating + {quiet_s:g} s quiet per N; sessions {sess_s:g} s per K; "
                     f"ledger age {sess_s / 2:g} s per size. Every run starts a fresh server.")
    if not policy:
        res.notes.append("The server has no --max-connections yet (it serves at most 256 connections): N up to 250 "
                         "only, and no lockout measurement.")
    if quick:
        res.notes.append("quick mode: few stations, short windows; rerun without --quick for the figures of record")
    return res
