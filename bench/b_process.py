"""Benchmarks 3, 4 and 5: a real station process, per backend.

Start-up and memory (`python -m station run -c cfg`, sim hardware, the
emulated meter in-process as `station run` ships it): the bench binds its
own `NOTIFY_SOCKET` (a datagram socket, as systemd does) and takes the
time from spawning the process to the `READY=1` datagram (whose STATUS
carries the charger state: "Available"), and to the backend answering
(first request at the MCSP server; the charge point's StatusNotification
Available at the central system; the local backend is online at READY).
Peak RSS is VmHWM of /proc/<pid>/status after an idle period, read just
before SIGTERM. The floor is measured the same way on `python -c` runs
that only import (interpreter, asyncio, sqlite3, pymodbus, websockets +
ocpp, the whole station).

CPU (`python -m bench.station_proc`, the same Station plus a stdin control
channel): the emulated meter runs in its own process (bench.meter_proc,
real Modbus RTU over TCP), so its cost is measured apart; the emulated
MFRC522 runs in the station process, and the CPU spent inside it is
measured there and subtracted. utime + stime from /proc/<pid>/stat over a
window while idle (reader at 10 Hz, meter at 1 s, backend heartbeat) and
while charging (a 7.4 kW session: meter read every second, journal every
60 s, OCPP MeterValues every 60 s).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import MIB, PYTHON, ROOT, Result, proc_cpu_s, proc_status, sim_env, terminate
from bench.stations import CARD, backend_rig

BACKENDS = ("local", "mcsp", "ocpp", "ocpp201")  # ocpp: 1.6 at scripts/harness/ocpp_csms.py; ocpp201: 2.0.1


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return json.dumps([str(x) for x in v])
    return json.dumps(str(v))


def write_config(path: Path, values: dict[str, Any]) -> Path:
    """A TOML file from dotted keys (tables of tags included)."""
    tables: dict[str, dict[str, Any]] = {}
    for dotted, value in values.items():
        table, _, key = dotted.rpartition(".")
        if isinstance(value, dict):
            tables.setdefault(dotted, {}).update(value)
        else:
            tables.setdefault(table, {})[key] = value
    lines = []
    for table, kv in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{json.dumps(k) if not k.replace('_', '').replace('-', '').isalnum() else k} = {_toml_value(v)}"
                  for k, v in kv.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def base_config(state_dir: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    values = {"hardware.mode": "sim", "station.state_dir": str(state_dir), "station.name": "CP1"}
    values.update(overrides)
    return values


# ---------------------------------------------------------------------------- start-up and RSS
class _Notify:
    """A NOTIFY_SOCKET of our own: every datagram with its arrival time."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.messages: list[tuple[float, str]] = []
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._read)

    def _read(self) -> None:
        try:
            while True:
                data = self.sock.recv(4096)
                self.messages.append((time.monotonic(), data.decode(errors="replace")))
        except BlockingIOError:
            pass

    def first(self, text: str) -> float | None:
        for at, msg in self.messages:
            if text in msg:
                return at
        return None

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


def _online_probe(kind: str, server: Any):
    """A function returning the monotonic time the backend first heard from the station (or None)."""
    if kind == "mcsp":
        seen: list[float] = []
        handle = server.handle

        def timed(req):  # the reference server is the peer, not the code under test
            seen.append(time.monotonic())
            return handle(req)

        server.handle = timed
        return lambda: seen[0] if seen else None
    if kind == "ocpp":
        def status_available():
            for r in server.received:
                if r.action == "StatusNotification" and r.payload.get("connectorId") == 1 \
                        and r.payload.get("status") == "Available":
                    return r.at
            return None
        return status_available
    if kind == "ocpp201":
        def connector_available():
            for e in server.events:
                if e.get("event") == "call" and e["method"] == "StatusNotification" \
                        and e["params"].get("connectorStatus") == "Available":
                    return e["t"]
            return None
        return connector_available
    return lambda: None


async def _wait(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


async def startup_and_rss(kind: str, idle_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-run-{kind}-") as tmp:
        tmpdir = Path(tmp)
        async with backend_rig(kind) as (overrides, server):
            cfg = write_config(tmpdir / "station.toml", base_config(tmpdir / "state", overrides))
            notify = _Notify(tmpdir / "notify.sock")
            probe = _online_probe(kind, server)
            env = sim_env()
            env["NOTIFY_SOCKET"] = notify.path
            log = open(tmpdir / "station.log", "wb")
            t0 = time.monotonic()
            proc = await asyncio.create_subprocess_exec(PYTHON, "-m", "station", "run", "-c", str(cfg), env=env,
                                                        cwd=str(ROOT), stdout=log, stderr=log)
            try:
                ok = await _wait(lambda: notify.first("READY=1") is not None, 30)
                if not ok:
                    raise RuntimeError("no READY=1 within 30 s: " + (tmpdir / "station.log").read_text()[-2000:])
                if kind != "local":
                    await _wait(lambda: probe() is not None, 30)
                await asyncio.sleep(idle_s)
                status = proc_status(proc.pid)
                cpu = proc_cpu_s(proc.pid)
            finally:
                await terminate(proc)
                log.close()
                notify.close()
            ready = notify.first("READY=1")
            available = next((at for at, m in notify.messages if "READY=1" in m or "STATUS=Available" in m)
                             if "Available" in (notify.messages[0][1] if notify.messages else "") else
                             (at for at, m in notify.messages if "Available" in m), None)
            online = probe() if kind != "local" else ready
            return {
                "start_to_ready_ms": round((ready - t0) * 1000, 1),
                "start_to_available_ms": round((available - t0) * 1000, 1) if available else None,
                "start_to_backend_online_ms": round((online - t0) * 1000, 1) if online else None,
                "ready_status": next((m for _, m in notify.messages if "READY=1" in m), "").replace("\n", " "),
                "peak_rss_mib": round(status["VmHWM"] / MIB, 1),
                "rss_mib_after_idle": round(status["VmRSS"] / MIB, 1),
                "cpu_s_total_incl_startup": round(cpu, 2),
                "exit_code": proc.returncode,
            }


FLOOR = {
    "python -c pass": "pass",
    "+ asyncio": "import asyncio",
    "+ asyncio, sqlite3": "import asyncio, sqlite3",
    "+ pymodbus client": "import asyncio, sqlite3, pymodbus.client",
    "+ websockets, ocpp.v16": "import asyncio, websockets.asyncio.client, ocpp.v16",
    "asyncio + cryptography (x509, rsa, ec)": "import asyncio, cryptography.x509, "
                                              "cryptography.hazmat.primitives.asymmetric.rsa, "
                                              "cryptography.hazmat.primitives.asymmetric.ec",
    "import station.daemon + sim (local)": "import station.daemon, station.sim.world, station.emulated.meter_server, "
                                           "station.hardware.rfid, station.backends.local",
    "+ mcsp backend": "import station.daemon, station.sim.world, station.emulated.meter_server, station.hardware.rfid, "
                      "station.backends.mcsp.client",
    "+ ocpp backend": "import station.daemon, station.sim.world, station.emulated.meter_server, station.hardware.rfid, "
                      "station.backends.ocpp.backend",
}


async def floor() -> dict[str, Any]:
    """Peak RSS and wall time of processes that only import: the floor under `station run`."""
    out = {}
    for label, code in FLOOR.items():
        script = (code + "\nimport sys\nfor l in open('/proc/self/status'):\n"
                  "    l.startswith('VmHWM') and sys.stdout.write(l.split()[1])\n")
        t0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(PYTHON, "-c", script, env=sim_env(), cwd=str(ROOT),
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        stdout, stderr = await proc.communicate()
        wall = time.monotonic() - t0
        try:
            out[label] = {"peak_rss_mib": round(int(stdout.decode().strip()) * 1024 / MIB, 1),
                          "wall_ms": round(wall * 1000, 1)}
        except ValueError:
            out[label] = {"error": stderr.decode()[-300:]}
    return out


# ---------------------------------------------------------------------------- CPU
class _Proc:
    """A line-oriented child process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def expect(self, prefix: str, timeout: float = 60) -> str:
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not line:
                raise RuntimeError(f"process ended before {prefix!r}")
            text = line.decode().strip()
            if text.startswith(prefix):
                return text[len(prefix):].strip()

    async def send(self, line: str) -> None:
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()


async def cpu_run(kind: str, window_s: float, settle_s: float = 2.0, *, config_extra: dict[str, Any] | None = None,
                  proc_args: list[str] | None = None, charging: bool = True) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-cpu-{kind}-") as tmp:
        tmpdir = Path(tmp)
        env = sim_env()
        mlog = open(tmpdir / "meter.log", "wb")
        meter = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "bench.meter_proc", "--state-dir", str(tmpdir / "meter"), env=env, cwd=str(ROOT),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=mlog)
        (tmpdir / "meter").mkdir(exist_ok=True)
        mp = _Proc(meter)
        try:
            port, ctl = (await mp.expect("PORT")).split()
            async with backend_rig(kind) as (overrides, server):
                cfg = write_config(tmpdir / "station.toml",
                                   base_config(tmpdir / "state", {**overrides, **(config_extra or {})}))
                slog = open(tmpdir / "station.log", "wb")
                proc = await asyncio.create_subprocess_exec(
                    PYTHON, "-m", "bench.station_proc", "-c", str(cfg), "--remote-meter", port, ctl, "--card", CARD,
                    *(proc_args or []), env=env, cwd=str(ROOT), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    stderr=slog)
                sp = _Proc(proc)
                try:
                    await sp.expect("READY")
                    await sp.expect("ONLINE")
                    await asyncio.sleep(settle_s)
                    idle = await _window(sp, proc.pid, meter.pid, window_s)
                    if not charging:
                        await sp.send("quit")
                        await asyncio.wait_for(proc.wait(), 30)
                        return {"idle": idle, "window_s": window_s}
                    await sp.send("charge")
                    await sp.expect("CHARGING")
                    await asyncio.sleep(settle_s)
                    charging = await _window(sp, proc.pid, meter.pid, window_s)
                    peak = proc_status(proc.pid)["VmHWM"]
                    await sp.send("stop")
                    await sp.expect("STOPPED")
                    await sp.send("quit")
                    await asyncio.wait_for(proc.wait(), 30)
                finally:
                    if proc.returncode is None:
                        proc.kill()
                        await proc.wait()
                    slog.close()
        finally:
            if meter.returncode is None:
                meter.stdin.close()
                try:
                    await asyncio.wait_for(meter.wait(), 10)
                except TimeoutError:
                    meter.kill()
                    await meter.wait()
            mlog.close()
        return {"idle": idle, "charging": charging, "peak_rss_mib_after_a_session": round(peak / MIB, 1),
                "window_s": window_s}


async def _stats(sp: _Proc) -> dict[str, Any]:
    await sp.send("stats")
    return json.loads(await sp.expect("STATS"))


def _threads_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread id of a process (/proc/<pid>/task/<tid>/stat)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out[tid] = proc_cpu_s(int(pid), task=int(tid))
        except OSError:
            pass
    return out


async def _window(sp: _Proc, pid: int, meter_pid: int, seconds: float) -> dict[str, Any]:
    s0, c0, m0, t0 = await _stats(sp), proc_cpu_s(pid), proc_cpu_s(meter_pid), _threads_cpu(pid)
    w0 = time.monotonic()
    await asyncio.sleep(seconds)
    s1, c1, m1, t1 = await _stats(sp), proc_cpu_s(pid), proc_cpu_s(meter_pid), _threads_cpu(pid)
    wall = time.monotonic() - w0
    per_min = 60.0 / wall
    names = {**s0.get("threads", {}), **s1.get("threads", {})}
    by_thread: dict[str, float] = {}
    for tid, cpu in t1.items():
        name = names.get(tid, "other")
        if name == "MainThread":
            name = "event loop (MainThread)"
        by_thread[name] = round(by_thread.get(name, 0.0) + (cpu - t0.get(tid, 0.0)) * per_min, 3)
    total = (c1 - c0) * per_min
    emu = (s1["emulator_cpu_s"] - s0["emulator_cpu_s"]) * per_min
    own = total - emu
    return {
        "station_process_cpu_s_per_min": round(total, 3),
        "chip_emulator_cpu_s_per_min": round(emu, 3),
        "station_own_cpu_s_per_min": round(own, 3),
        "station_own_pct_of_one_core": round(own / 60 * 100, 3),
        "station_process_time_cpu_s_per_min": round((s1["process_cpu_s"] - s0["process_cpu_s"]) * per_min, 3),
        "meter_emulator_process_cpu_s_per_min": round((m1 - m0) * per_min, 3),
        "polls_per_s": round((s1["polls"] - s0["polls"]) / wall, 2),
        "meter_reads_per_s": round((s1["meter_readings"] - s0["meter_readings"]) / wall, 2),
        "meter_requests_per_s": round((s1["meter_requests"] - s0["meter_requests"]) / wall, 2),
        "journal_commits_per_min": round((s1["store_writes"] - s0["store_writes"]) * per_min, 1),
        "state": s1["state"],
        "cpu_s_per_min_by_thread": by_thread,
    }


# ---------------------------------------------------------------------------- entry
def run(quick: bool) -> Result:
    from bench.stations import import_central_system, import_strict_peer

    res = Result("process", "Station process: start-up, peak RSS, CPU idle and charging")
    kinds = [k for k in BACKENDS if (k != "ocpp" or import_central_system() is not None)
             and (k != "ocpp201" or import_strict_peer() is not None)]
    if "ocpp" not in kinds:
        res.notes.append("ocpp: not measured, scripts/harness/ocpp_csms.py not importable")
    if "ocpp201" not in kinds:
        res.notes.append("ocpp201: not measured, no node or scripts/harness/peers/install.sh not run")

    async def main() -> None:
        res.figures["floor"] = await floor()
        for kind in kinds:
            try:
                res.figures[f"run_{kind}"] = await startup_and_rss(kind, idle_s=2.0 if quick else 10.0)
            except Exception as exc:  # noqa: BLE001
                res.figures[f"run_{kind}"] = {"error": f"{type(exc).__name__}: {exc}"}
        for kind in (["local"] if quick else kinds):
            try:
                res.figures[f"cpu_{kind}"] = await cpu_run(kind, window_s=3.0 if quick else 60.0,
                                                           settle_s=1.0 if quick else 3.0)
            except Exception as exc:  # noqa: BLE001
                res.figures[f"cpu_{kind}"] = {"error": f"{type(exc).__name__}: {exc}"}

    asyncio.run(main())
    if quick:
        res.notes.append("quick mode: CPU for the local backend only, 3 s windows (full mode: 60 s, every backend)")
    return res
