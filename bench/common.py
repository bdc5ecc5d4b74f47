"""Helpers shared by the benchmarks: CPU and memory of processes, percentiles, the machine.

CPU of this process: `time.process_time()` (all threads) or
`time.thread_time()` (the calling thread). CPU of another process:
utime + stime from /proc/<pid>/stat (clock ticks, usually 10 ms, so
measure for seconds, not milliseconds). Peak RSS of another process:
VmHWM from /proc/<pid>/status, read before it exits.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TICK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


def proc_cpu_s(pid: int, task: int | None = None) -> float:
    """User + system CPU seconds of a process (or one of its threads) so far (stat fields 14 and 15)."""
    with open(f"/proc/{pid}/task/{task}/stat" if task is not None else f"/proc/{pid}/stat") as f:
        text = f.read()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak RSS), ... of /proc/<pid>/status in bytes."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            parts = value.split()
            if key.startswith("Vm") and len(parts) == 2 and parts[1] == "kB":
                out[key] = int(parts[0]) * 1024
    return out


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): an observed value, never an interpolation."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def summary_ms(values_s: list[float]) -> dict[str, float]:
    """p50/p95/max/mean in milliseconds of a list of seconds."""
    ms = [v * 1000 for v in values_s]
    return {"n": len(ms), "p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2),
            "max_ms": round(max(ms), 2) if ms else float("nan"), "min_ms": round(min(ms), 2) if ms else float("nan"),
            "mean_ms": round(statistics.fmean(ms), 2) if ms else float("nan")}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "host": socket.gethostname(), "cpu": cpu, "cores": os.cpu_count(), "memory_mib": round(mem / MIB),
        "kernel": platform.release(), "arch": platform.machine(),
        "python": platform.python_version(), "python_impl": platform.python_implementation(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()), "commit": commit,
        "loadavg_at_start": os.getloadavg()[0],
    }


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("mfrc522", "pymodbus", "ocpp", "websockets", "RPLCD", "transitions"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


@dataclass
class Result:
    """One benchmark's figures: `figures` are numbers for the JSON; `notes` explain them."""

    name: str
    title: str
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "figures": self.figures, "notes": self.notes, "skipped": self.skipped,
                "seconds": round(self.seconds, 1)}


def dump_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


_compiled = False


def byte_compile() -> None:
    """Byte-compile the station and the bench once, as pip does when it installs the station on a Pi.

    The station runs from compiled modules in the field (`pip install /opt/station` writes the .pyc
    files; the systemd unit's ProtectSystem=strict could not write them later anyway). A process that
    compiles every module from source at every start holds about 1.5 MiB more peak RSS and starts
    about 100 ms later; whether that happened here depended on PYTHONDONTWRITEBYTECODE in the
    environment of whoever ran the bench, and on whether an earlier run had left __pycache__ behind.
    """
    global _compiled
    if not _compiled:
        import compileall

        for package in ("station", "bench"):
            compileall.compile_dir(str(ROOT / package), quiet=1)
        _compiled = True


def sim_env() -> dict[str, str]:
    """Environment for subprocesses: the repository importable and byte-compiled, no proxies, no systemd."""
    byte_compile()
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    for var in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "http_proxy", "https_proxy", "HTTP_PROXY",
                "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "PYTHONDONTWRITEBYTECODE"):
        env.pop(var, None)
    return env


async def terminate(proc: Any, timeout: float = 20.0) -> None:
    """End a station process as systemd would: SIGTERM, then SIGKILL after `timeout` seconds."""
    import asyncio
    import signal

    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(timeout):
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
