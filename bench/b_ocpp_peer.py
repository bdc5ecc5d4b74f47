"""Benchmark 8: OCPP peer comparison, the station's OCPP client vs the npm em-ocpp-chargepoint-simulator.

Both talk to the same central system (scripts/harness/ocpp_csms.py, on the
`ocpp` library, websockets on 127.0.0.1) in this process, one after the
other, with the same workload: N connections each registered by
BootNotification, then M MeterValues CALLs on one connection, sequential,
each awaiting its answer (bench/ocpp_peer_py.py and bench/node/peer.js).

CPU per message: utime + stime of the peer process (/proc/<pid>/stat) from
"BOOTED" to "SENT", divided by M. Memory per connection: VmRSS after
booting N_big connections minus VmRSS after booting 1, divided by the
difference; the base (1 connection) is reported too.

The npm simulator is installed with npm into bench/node/node_modules
(bench/node/package.json pins 0.0.4). It logs every frame to stdout in
batch mode; it is measured as shipped, and "quiet" with its log functions
removed by the script (`logger.logFunctions.length = 0`), its cheapest form.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import MIB, PYTHON, ROOT, Result, proc_cpu_s, proc_status, sim_env

NODE_DIR = ROOT / "bench" / "node"
SIM_MAIN = NODE_DIR / "node_modules" / "em-ocpp-chargepoint-simulator" / "build" / "src" / "main.js"


def ensure_node_peer() -> str | None:
    """Install the npm simulator if needed; returns a reason when it cannot be used."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node/npm not installed"
    if SIM_MAIN.exists():
        return None
    try:
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=str(NODE_DIR),
                       check=True, capture_output=True, timeout=300)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"npm install failed: {exc}"
    return None if SIM_MAIN.exists() else "npm install did not produce the simulator"


async def _peer(cmd: list[str], env: dict[str, str], cwd: str, pause_ms: int) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    out: dict[str, Any] = {}
    try:
        async def line(prefix: str) -> None:
            while True:
                raw = await asyncio.wait_for(proc.stdout.readline(), 120)
                if not raw:
                    raise RuntimeError(f"peer ended before {prefix}")
                if raw.decode(errors="replace").startswith(prefix):
                    return

        await line("BOOTED")
        c0, t0 = proc_cpu_s(proc.pid), time.monotonic()
        await asyncio.sleep(pause_ms / 2000)
        out["rss_mib_booted"] = round(proc_status(proc.pid)["VmRSS"] / MIB, 1)
        await line("SENT")
        out["cpu_s"] = proc_cpu_s(proc.pid) - c0
        out["wall_s"] = time.monotonic() - t0 - pause_ms / 1000
        out["peak_rss_mib"] = round(proc_status(proc.pid)["VmHWM"] / MIB, 1)
        await line("CLOSED")
        await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        # drain
    return out


def _commands(kind: str, url: str, n: int, m: int, pause_ms: int, tmp: str) -> tuple[list[str], dict[str, str], str]:
    env = sim_env()
    if kind == "station":
        return [PYTHON, "-m", "bench.ocpp_peer_py", url, str(n), str(m), str(pause_ms), tmp], env, str(ROOT)
    env.update(BENCH_URL=url, BENCH_CONNECTIONS=str(n), BENCH_MESSAGES=str(m), BENCH_PAUSE_MS=str(pause_ms))
    script = "peer.js"
    if kind == "em-sim quiet":
        quiet = Path(tmp) / "peer-quiet.js"
        quiet.write_text("logger.logFunctions.length = 0;\n" + (NODE_DIR / "peer.js").read_text())
        script = os.path.relpath(quiet, NODE_DIR)
    return ["node", str(SIM_MAIN), script], env, str(NODE_DIR)


async def _compare(quick: bool) -> dict[str, Any]:
    from bench.stations import import_central_system

    CentralSystem = import_central_system()
    if CentralSystem is None:
        raise RuntimeError("scripts/harness/ocpp_csms.py not importable")
    m = 200 if quick else 2000
    n_big = 5 if quick else 20
    pause = 400 if quick else 2000
    kinds = ["station", "em-sim", "em-sim quiet"]
    figures: dict[str, Any] = {}
    for kind in kinds:
        row: dict[str, Any] = {}
        for n in (1, n_big):
            cs = await CentralSystem().start()
            try:
                with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
                    cmd, env, cwd = _commands(kind, cs.url, n, m, pause, tmp)
                    got = await _peer(cmd, env, cwd, pause)
                received = sum(1 for r in cs.received if r.action == "MeterValues")
            finally:
                await cs.close()
            if received != m:
                raise RuntimeError(f"{kind}: central system got {received} MeterValues of {m}")
            if n == 1:
                row["cpu_ms_per_message"] = round(got["cpu_s"] / m * 1000, 3)
                row["messages_per_s"] = round(m / got["wall_s"], 1)
                row["rss_mib_1_connection"] = got["rss_mib_booted"]
                row["peak_rss_mib_1_connection"] = got["peak_rss_mib"]
            else:
                row[f"rss_mib_{n}_connections"] = got["rss_mib_booted"]
                row["rss_mib_per_extra_connection"] = round((got["rss_mib_booted"] - row["rss_mib_1_connection"]) / (n - 1), 2)
        figures[kind] = row
    figures["workload"] = {"messages": m, "connections": [1, n_big]}
    return figures


def run(quick: bool) -> Result:
    res = Result("ocpp_peer", "OCPP client vs npm em-ocpp-chargepoint-simulator (same central system)")
    reason = ensure_node_peer()
    if reason:
        res.skipped = reason
        return res
    try:
        res.figures = asyncio.run(_compare(quick))
    except Exception as exc:  # noqa: BLE001
        res.skipped = f"{type(exc).__name__}: {exc}"
        return res
    res.notes += [
        "Station side: OcppBackend per connection (own SQLite journal and the real deliverer; bench/ocpp_peer_py.py "
        "stands in for the rest of the station), schema validation by the ocpp library on every CALL and answer.",
        "em-sim: node + ws, no schema validation; as shipped it logs every frame to stdout (here a pipe).",
        "CPU includes the /proc tick resolution (10 ms): use the full run for per-message figures.",
    ]
    return res
