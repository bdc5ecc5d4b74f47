"""Benchmark: what the local status page costs the station process.

`python -m station run -c cfg` (sim hardware, local backend, the emulated
meter and MFRC522 in the same process as `station run` ships them), three
times: the page off; the page on and nobody looking; the page on with one
phone showing it (GET / every 5 s, as the page's refresh does). For each,
CPU (utime + stime from /proc over the window, after a settle time) and
RSS (VmRSS at the end, VmHWM peak). Then the cost of one request: a burst
of GET / and GET /api/status, CPU of the station process per request.

The emulators run in the measured process in all three runs, so the
absolute figures are above the daemon's own (bench/b_process.py separates
them); the differences between the runs are the page's cost.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.b_process import _Notify, _wait, base_config, write_config
from bench.common import MIB, PYTHON, ROOT, Result, proc_cpu_s, proc_status, sim_env, terminate

REFRESH_S = 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback only
        return len(r.read())


async def one_run(page: bool, polled: bool, window_s: float, settle_s: float, burst: int = 0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-page-") as tmp:
        tmpdir = Path(tmp)
        port = _free_port()
        extra: dict[str, Any] = {"backend.kind": "local", "backend.local.tags": {"D64FC93B": "Apartment 2"}}
        if page:
            extra.update({"status_page.enabled": True, "status_page.listen": f"127.0.0.1:{port}"})
        cfg = write_config(tmpdir / "station.toml", base_config(tmpdir / "state", extra))
        notify = _Notify(tmpdir / "notify.sock")
        env = sim_env()
        env["NOTIFY_SOCKET"] = notify.path
        log = open(tmpdir / "station.log", "wb")  # noqa: ASYNC230 - once, before the station starts
        proc = await asyncio.create_subprocess_exec(PYTHON, "-m", "station", "run", "-c", str(cfg), env=env,
                                                    cwd=str(ROOT), stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}/"
        try:
            if not await _wait(lambda: notify.first("READY=1") is not None, 60):
                raise RuntimeError("no READY=1 within 60 s: " + (tmpdir / "station.log").read_text()[-2000:])
            await asyncio.sleep(settle_s)
            requests = 0
            c0, w0 = proc_cpu_s(proc.pid), time.monotonic()
            while time.monotonic() - w0 < window_s:
                if polled:
                    await asyncio.to_thread(_get, url)
                    requests += 1
                await asyncio.sleep(min(REFRESH_S, max(0.0, window_s - (time.monotonic() - w0))))
            c1, wall = proc_cpu_s(proc.pid), time.monotonic() - w0
            status = proc_status(proc.pid)
            out: dict[str, Any] = {
                "cpu_s_per_min": round((c1 - c0) * 60 / wall, 3),
                "pct_of_one_core": round((c1 - c0) / wall * 100, 3),
                "rss_mib": round(status["VmRSS"] / MIB, 1),
                "peak_rss_mib": round(status["VmHWM"] / MIB, 1),
                "requests_in_window": requests,
                "window_s": round(wall, 1),
            }
            if burst:
                for path in ("", "api/status"):
                    b0 = proc_cpu_s(proc.pid)
                    t0 = time.monotonic()
                    size = 0
                    for _ in range(burst):
                        size = await asyncio.to_thread(_get, url + path)
                    b1 = proc_cpu_s(proc.pid)
                    out[f"GET /{path}"] = {"station_cpu_ms_per_request": round((b1 - b0) * 1000 / burst, 2),
                                           "wall_ms_per_request": round((time.monotonic() - t0) * 1000 / burst, 2),
                                           "bytes": size}
                out["peak_rss_mib_after_burst"] = round(proc_status(proc.pid)["VmHWM"] / MIB, 1)
            return out
        finally:
            await terminate(proc)
            log.close()
            notify.close()


def run(quick: bool) -> Result:
    res = Result("status_page", "Status page: idle CPU and RSS with the page off and on")
    window, settle, burst = (6.0, 2.0, 20) if quick else (60.0, 5.0, 200)

    async def main() -> None:
        res.figures["off"] = await one_run(page=False, polled=False, window_s=window, settle_s=settle)
        res.figures["on, nobody looking"] = await one_run(page=True, polled=False, window_s=window, settle_s=settle)
        res.figures["on, one phone (GET / every 5 s)"] = await one_run(page=True, polled=True, window_s=window,
                                                                        settle_s=settle, burst=burst)

    asyncio.run(main())
    res.notes.append("`station run` with sim hardware: the emulated meter and MFRC522 run in the measured process "
                     "in every row, so compare the rows, not the absolute figures with the daemon's own "
                     "(section 'Station process').")
    res.notes.append(f"Windows of {window:g} s after {settle:g} s of settling; /proc counts CPU in 10 ms ticks, so "
                     "differences under about 0.03 s/min are noise. Request cost: a burst of "
                     f"{burst} sequential requests per path.")
    if quick:
        res.notes.append("quick mode: short windows, noisy; rerun without --quick for the figures of record")
    return res
