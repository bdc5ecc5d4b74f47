"""Benchmark: how many stations one MCSP reference server holds (`station mcsp-server`).

The server runs as an installation runs it: `python -m station mcsp-server
--listen 127.0.0.1:PORT --db ledger.db --tags tags.toml` in its own process,
its ledger a SQLite file on this machine's disk (WAL, synchronous=FULL: one
fsync per write), logging at INFO to a file. It starts with the open-file
limit systemd gives a service by default (soft 1024), so a server that needs
more for many stations must raise it itself. Its CPU (utime + stime) and
memory (VmRSS, VmHWM) come from /proc.

The stations are emulated in this process (asyncio, the station's own codec),
one TCP connection each from its own loopback address (127.1.x.y, as each
station in an installation has its own address), each sending a HEARTBEAT as
soon as it connects, as the real client does, and keeping the connection.

1. Held connections: N stations connected, each sending a HEARTBEAT every
   HEARTBEAT_S (10 s, six times the real 60 s, so that a window of seconds sees
   enough of them); the server's CPU over a window while they beat and over a
   window while they are quiet, RSS at each N. The figure for real 60 s
   heartbeats is the quiet cost plus a sixth of the heartbeats' cost.
2. Sessions per second: K stations each doing START then END (own Name,
   distinct Session-Keys, a tag of the tags file each) in a closed loop, with
   the background stations of 1. connected and beating; START and END latency
   as the station sees it (request written to reply parsed), and afterwards
   the ledger read back: every session closed with its energy.
3. A lockout attempt, when the server has a connection policy
   (`--max-connections`): one station opening a new connection for each
   session (a station whose link just dropped) while another loopback address
   (127.0.0.2) keeps many silent connections open, reopening each as the
   server closes it.

A floor for 2.: the time of one SQLite commit (WAL, synchronous=FULL) in the
same directory, measured in this process.
"""

from __future__ import annotations

import asyncio
import math
import os
import resource
import sqlite3
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import MIB, PYTHON, ROOT, Result, percentile, proc_cpu_s, proc_status, sim_env, summary_ms, terminate
from station.backends.mcsp import codec
from station.backends.mcsp.codec import CLOSED, Connection, Reply, Role

HEARTBEAT_S = 10.0  # compressed heartbeat interval of the emulated stations
REAL_HEARTBEAT_S = 60.0  # the station's default heartbeat_s
SERVICE_NOFILE = 1024  # systemd's default soft RLIMIT_NOFILE for a service
TAGS = 300
ENERGY_WH = 1500  # per emulated session
CALL_TIMEOUT_S = 30.0
ATTACKER = "127.0.0.2"


def source(i: int) -> str:
    """Station i's own loopback address: 127.1.0.1, 127.1.0.2, ... (250 per third byte)."""
    return f"127.1.{i // 250}.{i % 250 + 1}"


def tag(i: int) -> str:
    return f"{0x04A00000 + i * 7919:08X}"


def write_tags(path: Path, n: int = TAGS) -> list[str]:
    """A tags file of `n` tags, any station (no [stations] table: an open installation)."""
    tags = [tag(i) for i in range(n)]
    path.write_text("".join(f'"{t}" = "Apartment {i + 1}"\n' for i, t in enumerate(tags)), encoding="utf-8")
    return tags


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def latency(values_s: list[float]) -> dict[str, float]:
    s = summary_ms(values_s)
    s["p99_ms"] = round(percentile([v * 1000 for v in values_s], 99), 2)
    return s


def server_options() -> set[str]:
    """The options `station mcsp-server --help` lists (to use --max-connections only where it exists)."""
    out = subprocess.run([PYTHON, "-m", "station", "mcsp-server", "--help"], capture_output=True, text=True,
                         env=sim_env(), cwd=str(ROOT), timeout=60).stdout
    return {w.strip("[],") for w in out.split() if w.startswith(("--", "[--"))}


def _service_nofile() -> None:
    """In the server's child before exec: the soft open-file limit of a systemd service."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(SERVICE_NOFILE, hard), hard))


def raise_nofile() -> int:
    """This process holds a socket per emulated station: soft limit up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Server:
    """`station mcsp-server` in its own process."""

    def __init__(self, tmp: Path, max_connections: int | None) -> None:
        """`tmp`: a new directory for the ledger and the logs; the tags file is tmp/../tags.toml."""
        self.tmp, self.max_connections = tmp, max_connections
        tmp.mkdir()
        self.port = _free_port()
        self.db = tmp / "ledger.db"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        cmd = [PYTHON, "-m", "station", "mcsp-server", "--listen", f"127.0.0.1:{self.port}", "--db", str(self.db),
               "--tags", str(self.tmp.parent / "tags.toml")]
        if self.max_connections is not None:
            cmd += ["--max-connections", str(self.max_connections)]
        self.out = open(self.tmp / "server.out", "wb")  # noqa: SIM115 - open for the server's lifetime
        self.err = open(self.tmp / "server.log", "wb")  # noqa: SIM115
        self.proc = await asyncio.create_subprocess_exec(*cmd, env=sim_env(), cwd=str(ROOT), stdout=self.out,
                                                         stderr=self.err, preexec_fn=_service_nofile)
        deadline = time.monotonic() + 60
        while b"MCSP server on" not in (self.tmp / "server.out").read_bytes():
            if self.proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start: " + self.log_tail())
            await asyncio.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_s(self) -> float:
        return proc_cpu_s(self.pid)

    def memory(self) -> dict[str, float]:
        s = proc_status(self.pid)
        return {"rss_mib": round(s["VmRSS"] / MIB, 1), "peak_rss_mib": round(s["VmHWM"] / MIB, 1)}

    def nofile(self) -> str:
        for line in Path(f"/proc/{self.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return "/".join(line.split()[3:5])
        return "?"

    def log_tail(self) -> str:
        return (self.tmp / "server.log").read_text(errors="replace")[-1500:]

    async def stop(self) -> None:
        if self.proc is not None:
            await terminate(self.proc)
        self.out.close()
        self.err.close()


class Station:
    """One emulated station: its own connection and source address, the station's codec."""

    def __init__(self, name: str, addr: str) -> None:
        self.name, self.addr = name, addr
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self, port: int, tally: Tally) -> bool:
        """Connect and send a HEARTBEAT at once, as the real client does; True when it was answered OK."""
        self.conn = Connection(Role.STATION)
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(self.addr, 0))
        except (OSError, TimeoutError):
            tally.add(None, time.perf_counter() - t0)
            return False
        reply, dt = await self.call(self.heartbeat())
        tally.add(reply, dt)
        return reply is not None and reply.ok

    def heartbeat(self) -> codec.Request:
        return codec.request(codec.HEARTBEAT, name=self.name, time=_iso_now(), status="Available")

    async def call(self, req: codec.Request) -> tuple[Reply | None, float]:
        """(reply, seconds from write to reply), or (None, seconds) when the link failed."""
        assert self.writer is not None
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                self.writer.write(self.conn.send(req))
                while True:
                    event = self.conn.next_event()
                    if isinstance(event, Reply):
                        return event, time.perf_counter() - t0
                    if event is CLOSED:
                        return None, time.perf_counter() - t0
                    self.conn.receive_data(await self.reader.read(4096))
        except (OSError, TimeoutError, codec.ProtocolError):
            return None, time.perf_counter() - t0

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                async with asyncio.timeout(5):
                    await self.writer.wait_closed()
            except (OSError, TimeoutError):
                pass
            self.writer = None


class Tally:
    """Replies counted: sent, OK, and the latencies of the OK ones."""

    def __init__(self) -> None:
        self.sent = self.ok = 0
        self.seconds: list[float] = []
        self.errors: dict[str, int] = {}

    def add(self, reply: Reply | None, dt: float) -> None:
        self.sent += 1
        if reply is not None and reply.ok:
            self.ok += 1
            self.seconds.append(dt)
        else:
            what = "no reply" if reply is None else f"{reply.code} {reply.message}"
            self.errors[what] = self.errors.get(what, 0) + 1

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sent": self.sent, "ok": self.ok, "all_ok": self.sent == self.ok}
        if self.errors:
            out["errors"] = self.errors
        return out


class Beats:
    """Heartbeats of the held stations: each on its own phase of the HEARTBEAT_S period."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.beating = True
        self.total, self.window = Tally(), Tally()  # the whole run; the current window
        self.tasks: list[asyncio.Task] = []

    def start(self, stations: list[Station], first: int) -> None:
        for i, st in enumerate(stations, first):
            phase = (i * 0.6180339887 % 1.0) * HEARTBEAT_S  # spread evenly whatever N is
            self.tasks.append(asyncio.create_task(self._loop(st, phase)))

    async def _loop(self, st: Station, phase: float) -> None:
        k = math.ceil((time.monotonic() - self.t0 - phase) / HEARTBEAT_S)
        while True:
            await asyncio.sleep(max(0.0, self.t0 + phase + k * HEARTBEAT_S - time.monotonic()))
            k += 1
            if self.beating:
                reply, dt = await st.call(st.heartbeat())
                self.total.add(reply, dt)
                self.window.add(reply, dt)

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def connect_all(stations: list[Station], port: int, tally: Tally, batch: int = 50) -> float:
    """Connect in batches (as stations come back after a server restart); seconds taken."""
    t0 = time.monotonic()
    for i in range(0, len(stations), batch):
        await asyncio.gather(*(st.connect(port, tally) for st in stations[i:i + batch]))
    return time.monotonic() - t0


async def window(server: Server, seconds: float) -> dict[str, float]:
    c0, b0, w0 = server.cpu_s(), time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    c1, b1, wall = server.cpu_s(), time.process_time(), time.monotonic() - w0
    return {"server_pct_of_one_core": round((c1 - c0) / wall * 100, 2),
            "bench_pct_of_one_core": round((b1 - b0) / wall * 100, 1), "window_s": round(wall, 1)}


# ---------------------------------------------------------------------------- 1. held connections
async def held(tmp: Path, n: int, beat_s: float, quiet_s: float, max_connections: int | None) -> dict[str, Any]:
    """A fresh server, `n` stations connected and beating: a window beating, a window quiet."""
    server = Server(tmp, max_connections)
    await server.start()
    stations = [Station(f"Bench-H{i:04d}", source(i)) for i in range(n)]
    beats = Beats()
    try:
        idle = server.memory()
        connect_s = await connect_all(stations, server.port, beats.total)
        beats.start(stations, 0)
        await asyncio.sleep(2.0)
        connected, sent = server.memory(), beats.total.sent
        beats.window = Tally()
        beating = await window(server, beat_s)
        during, beats.window = beats.window, Tally()
        beats.beating = False
        await asyncio.sleep(1.0)  # heartbeats in flight finish
        quiet = await window(server, quiet_s)
        per_beat = max(0.0, beating["server_pct_of_one_core"] - quiet["server_pct_of_one_core"])
        out: dict[str, Any] = {
            "connected": sum(1 for s in stations if s.writer is not None and not s.reader.at_eof()),
            "connect_s": round(connect_s, 2),
            "heartbeats_in_window": during.figures(),
            "heartbeat_latency": latency(during.seconds),
            "beating": beating,
            "quiet": quiet,
            "pct_of_one_core_at_60s_heartbeats": round(quiet["server_pct_of_one_core"]
                                                       + per_beat * HEARTBEAT_S / REAL_HEARTBEAT_S, 2),
            "cpu_ms_per_heartbeat": round(per_beat / 100 * beating["window_s"] / max(1, during.ok) * 1000, 3),
            "rss_mib_before_connections": idle["rss_mib"],
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
async def one_session(st: Station, tag_: str, meter: int, starts: Tally, ends: Tally) -> bool:
    """START then END with a new Session-Key; True when both were answered OK."""
    key = uuid.uuid4().hex
    reply, dt = await st.call(codec.request(codec.START, name=st.name, key=tag_, session_key=key,
                                            meter_start=meter, time=_iso_now()))
    starts.add(reply, dt)
    if reply is None or not reply.ok:
        return False
    reply, dt = await st.call(codec.request(
        codec.END, name=st.name, key=tag_, session_key=key, session_id=reply.get("Session-Id"),
        meter_start=meter, meter_stop=meter + ENERGY_WH, energy=ENERGY_WH, time=_iso_now(), stop_reason="Local"))
    ends.add(reply, dt)
    return reply is not None and reply.ok


async def session_loop(st: Station, tag_: str, deadline: float, starts: Tally, ends: Tally) -> int:
    """Sessions back to back until the deadline; the number of complete, accepted ones."""
    meter, pairs = 1_000_000, 0
    while time.monotonic() < deadline:
        if await one_session(st, tag_, meter, starts, ends):
            pairs += 1
        else:
            await asyncio.sleep(0.1)
        meter += ENERGY_WH
    return pairs


def ledger_check(db: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        rows = dict(c.execute("SELECT state, count(*) FROM sessions GROUP BY state").fetchall())
        wrong = c.execute("SELECT count(*) FROM sessions WHERE state = 'closed' AND energy_wh != ?",
                          (ENERGY_WH,)).fetchone()[0]
    return {"closed": rows.get("closed", 0), "open": rows.get("open", 0), "superseded": rows.get("superseded", 0),
            "closed_with_wrong_energy": wrong}


async def sessions(tmp: Path, ks: list[int], background: int, seconds: float,
                   max_connections: int | None) -> dict[str, Any]:
    """A fresh server with `background` stations beating; for each K, K stations in closed loops."""
    server = Server(tmp, max_connections)
    await server.start()
    held_ = [Station(f"Bench-H{i:04d}", source(i)) for i in range(background)]
    beats = Beats()
    out: dict[str, Any] = {"background_stations": background}
    accepted = requests = 0
    try:
        await connect_all(held_, server.port, beats.total)
        beats.start(held_, 0)
        await asyncio.sleep(1.0)
        before = server.memory()["rss_mib"]
        for k in ks:
            st = [Station(f"Bench-S{i:02d}", source(background + i)) for i in range(k)]
            connects, starts, ends = Tally(), Tally(), Tally()
            await connect_all(st, server.port, connects)
            beats.window = Tally()
            c0, b0, w0 = server.cpu_s(), time.process_time(), time.monotonic()
            pairs = sum(await asyncio.gather(*(session_loop(s, tag(i), w0 + seconds, starts, ends)
                                               for i, s in enumerate(st))))
            c1, b1, wall = server.cpu_s(), time.process_time(), time.monotonic() - w0
            accepted += pairs
            requests += connects.sent + starts.sent + ends.sent
            out[str(k)] = {
                "sessions": pairs, "seconds": round(wall, 1), "sessions_per_s": round(pairs / wall, 1),
                "connect": connects.figures(), "start": starts.figures(), "end": ends.figures(),
                "start_latency": latency(starts.seconds), "end_latency": latency(ends.seconds),
                "server_pct_of_one_core": round((c1 - c0) / wall * 100, 1),
                "server_cpu_ms_per_session": round((c1 - c0) * 1000 / max(1, pairs), 2),
                "bench_pct_of_one_core": round((b1 - b0) / wall * 100, 1),
                "background_heartbeats": beats.window.figures(),
                "background_heartbeat_latency": latency(beats.window.seconds),
            }
            await asyncio.gather(*(s.close() for s in st))
        await beats.stop()
        requests += beats.total.sent
        after = server.memory()
        out["every_background_heartbeat"] = beats.total.figures()
        out["memory"] = {"rss_mib_background_connected": before, "rss_mib_at_end": after["rss_mib"],
                         "peak_rss_mib": after["peak_rss_mib"], "requests": requests,
                         "kib_per_request": round((after["rss_mib"] - before) * 1024 / max(1, requests), 2)}
    finally:
        await beats.stop()
        await asyncio.gather(*(s.close() for s in held_))
        await server.stop()
    out["ledger"] = ledger_check(server.db)
    out["ledger"]["sessions_accepted"] = accepted
    return out


# ---------------------------------------------------------------------------- 3. lockout attempt
async def attacker(port: int, stop: asyncio.Event, counts: dict[str, int]) -> None:
    """One silent connection from ATTACKER, opened again whenever the server closes it."""
    while not stop.is_set():
        try:
            async with asyncio.timeout(10):
                reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(ATTACKER, 0))
        except (OSError, TimeoutError):
            counts["connect_failed"] += 1
            await asyncio.sleep(0.2)
            continue
        counts["opened"] += 1
        try:
            read = asyncio.ensure_future(reader.read(1))
            halt = asyncio.ensure_future(stop.wait())
            await asyncio.wait({read, halt}, return_when=asyncio.FIRST_COMPLETED)
            halt.cancel()
            if read.done():
                counts["closed_by_server"] += 1
            else:
                read.cancel()
        except OSError:
            counts["closed_by_server"] += 1
        finally:
            writer.close()


async def lockout(tmp: Path, attackers: int, seconds: float, max_connections: int | None) -> dict[str, Any]:
    server = Server(tmp, max_connections)
    await server.start()
    stop = asyncio.Event()
    counts = {"opened": 0, "closed_by_server": 0, "connect_failed": 0}
    tasks = [asyncio.create_task(attacker(server.port, stop, counts)) for _ in range(attackers)]
    connects, starts, ends = Tally(), Tally(), Tally()
    out: dict[str, Any] = {"attacker_connections": attackers, "attacker_address": ATTACKER,
                           "max_connections": max_connections}
    try:
        await asyncio.sleep(min(5.0, seconds / 3))  # the attacker fills what it can
        c0, w0 = server.cpu_s(), time.monotonic()
        pairs = 0
        victim = Station("Bench-V", source(0))
        while time.monotonic() - w0 < seconds:  # a new connection per session: a station whose link dropped
            if not await victim.connect(server.port, connects):
                await victim.close()
                await asyncio.sleep(1.0)
                continue
            pairs += await one_session(victim, tag(0), 1_000_000 + pairs * ENERGY_WH, starts, ends)
            await victim.close()
        wall = time.monotonic() - w0
        out.update({
            "sessions": pairs, "seconds": round(wall, 1), "connect_and_heartbeat": connects.figures(),
            "connect_heartbeat_latency": latency(connects.seconds), "start": starts.figures(), "end": ends.figures(),
            "start_latency": latency(starts.seconds), "end_latency": latency(ends.seconds),
            "served_every_session": pairs > 0 and all(t.sent == t.ok for t in (connects, starts, ends)),
            "server_pct_of_one_core": round((server.cpu_s() - c0) / wall * 100, 1),
            "attacker": dict(counts), "open_fds_at_end": len(os.listdir(f"/proc/{server.pid}/fd")),
        })
        out.update(server.memory())
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.stop()
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
    options = server_options()
    policy = "--max-connections" in options
    if quick:
        ns, ks, beat_s, quiet_s, sess_s, background, attackers = [20, 60], [1, 4], 4.0, 3.0, 3.0, 20, 60
    else:
        ns, ks, beat_s, quiet_s, sess_s, background, attackers = [100, 250, 500, 1000], [1, 8, 32], 30.0, 15.0, \
            15.0, 250, 500
    cap = None
    if policy:
        cap = max(ns[-1], background + ks[-1]) + 64
    else:
        # Without --max-connections the server serves MAX_CLIENTS (256) connections at most.
        ns = [n for n in ns if n <= 250]
        background = min(background, 250 - ks[-1])

    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="bench-mcsp-") as t:
            tmp = Path(t)
            write_tags(tmp / "tags.toml")
            res.figures["commit_floor"] = await asyncio.to_thread(commit_floor, tmp, 50 if quick else 300)
            res.figures["held"] = {str(n): await held(tmp / f"held-{n}", n, beat_s, quiet_s, cap) for n in ns}
            res.figures["sessions"] = await sessions(tmp / "sessions", ks, background, sess_s, cap)
            if policy:
                res.figures["lockout"] = await lockout(tmp / "lockout", attackers, sess_s, None)

    asyncio.run(main())
    res.figures["setup"] = {"heartbeat_every_s": HEARTBEAT_S, "tags": TAGS, "max_connections": cap,
                            "server_nofile_soft_at_start": SERVICE_NOFILE, "quick": quick}
    res.notes.append(f"Heartbeats every {HEARTBEAT_S:g} s instead of the station's {REAL_HEARTBEAT_S:g} s (six times "
                     "the load); the column for 60 s is the quiet connections' cost plus a sixth of the heartbeats' "
                     "cost.")
    if not policy:
        res.notes.append("The server has no --max-connections yet (it serves at most 256 connections): N up to 250 "
                         "only, and no lockout measurement.")
    if quick:
        res.notes.append("quick mode: few stations, short windows; rerun without --quick for the figures of record")
    return res
