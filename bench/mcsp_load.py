"""The load side of bench/b_mcsp_server.py: `station mcsp-server` as a process, and emulated stations.

`Server` starts the reference server as an installation runs it (its own
process, a ledger file, a tags file, the open-file limit a systemd service
gets by default) and reads its CPU and memory from /proc. `Station` is one
emulated station on its own TCP connection from its own loopback address,
speaking through the station's codec (`Connection(Role.STATION)`), so the
server parses exactly the bytes a station sends. `Beats` keeps the
heartbeats of many stations going, each on its own phase of the period.
"""

from __future__ import annotations

import asyncio
import math
import resource
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import MIB, PYTHON, ROOT, percentile, proc_cpu_s, proc_status, sim_env, summary_ms, terminate
from station.backends.mcsp import codec
from station.backends.mcsp.codec import CLOSED, Connection, Reply, Role

HEARTBEAT_S = 10.0  # compressed heartbeat interval of the emulated stations
REAL_HEARTBEAT_S = 60.0  # the station's default heartbeat_s
SERVICE_NOFILE = 1024  # systemd's default soft RLIMIT_NOFILE for a service
TAGS = 300
ENERGY_WH = 1500  # per emulated session
CALL_TIMEOUT_S = 30.0


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
        """`tmp`: a directory for the ledger and the logs (made if missing); the tags file is tmp/../tags.toml."""
        self.tmp, self.max_connections = tmp, max_connections
        tmp.mkdir(exist_ok=True)
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
        self.beats = 0

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
        # The status alternates so that every compressed heartbeat costs a ledger write, as every
        # real one does at 60 s (the server writes a station's last_seen at most every 30 s
        # unless its status changed): the 60 s figure scales the 10 s one.
        self.beats += 1
        status = "Available" if self.beats % 2 else "Preparing"
        return codec.request(codec.HEARTBEAT, name=self.name, time=_iso_now(), status=status)

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




async def one_session(st: Station, tag_: str, meter: int, starts: Tally, ends: Tally) -> bool:
    """START then END with a new Session-Key, as the station sends them; True when both were answered OK."""
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
    """Sessions back to back until the deadline (time.monotonic()); the number answered OK."""
    meter, pairs = 1_000_000, 0
    while time.monotonic() < deadline:
        if await one_session(st, tag_, meter, starts, ends):
            pairs += 1
        else:
            await asyncio.sleep(0.1)
        meter += ENERGY_WH
    return pairs
