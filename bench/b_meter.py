"""Benchmark 7: the meter sample, on the wire and in CPU, for every model.

Wire (computed from each model's request plan, station/hardware/meters):
per request 8 bytes out and 5 + 2n bytes back; 11 bit times per byte
(Modbus RTU: start, 8 data, parity or a second stop bit, stop); a 3.5
character silence after each frame (two per request). Meter turnaround
(typically 5-50 ms, model-dependent) is not included: it is not on the
wire, but a real sample takes that much longer per request.

CPU (measured): the station's `ModbusMeter.read()` (pymodbus 3.16 client,
RTU framing over TCP, `socket://`) against the emulated meter of the same
model running in another process (bench.meter_proc), so only the client's
CPU is in `time.process_time()` of this process. Both the full plan (what
the charger reads every `meter_interval_s`) and the core plan (energy and
total power) are timed.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from typing import Any

from bench.common import PYTHON, ROOT, Result, sim_env

BITS_PER_CHAR = 11
GAP_CHARS = 3.5


def wire(plan, baud: int) -> dict[str, Any]:
    tx = sum(r.wire_bytes[0] for r in plan)
    rx = sum(r.wire_bytes[1] for r in plan)
    chars = tx + rx + 2 * GAP_CHARS * len(plan)
    return {"requests": len(plan), "bytes_out": tx, "bytes_in": rx,
            "bus_ms": round(chars * BITS_PER_CHAR / baud * 1000, 1)}


async def _cpu(model: str, reads: int) -> dict[str, Any]:
    from station.hardware.meter import ModbusMeter

    with tempfile.TemporaryDirectory(prefix="bench-meter-") as tmp:
        proc = subprocess.Popen([PYTHON, "-m", "bench.meter_proc", "--model", model, "--state-dir", tmp],
                                cwd=str(ROOT), env=sim_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        try:
            line = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
            port = line.split()[1]
            meter = ModbusMeter(model, port, timeout_s=2.0)
            out: dict[str, Any] = {}
            for label, full in (("full", True), ("core", False)):
                await meter.read(full)  # connect, warm up
                c0, w0 = time.process_time(), time.perf_counter()
                for _ in range(reads):
                    await meter.read(full)
                cpu, wall = time.process_time() - c0, time.perf_counter() - w0
                out[f"{label}_cpu_ms_per_sample"] = round(cpu / reads * 1000, 3)
                out[f"{label}_wall_ms_per_sample"] = round(wall / reads * 1000, 3)
            out["requests"] = meter.stats.requests
            out["bytes_sent"] = meter.stats.bytes_sent
            await meter.close()
            return out
        finally:
            proc.stdin.close()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def run(quick: bool) -> Result:
    from station.hardware.meters.models import MODELS

    res = Result("meter", "Meter sample: bytes, bus time, CPU per model")
    reads = 15 if quick else 200
    for name, model in MODELS.items():
        row: dict[str, Any] = {}
        for plan_name, plan in (("full", model.plan), ("core", model.core_plan)):
            for baud in (9600, 19200):
                row[f"{plan_name}_{baud}"] = wire(plan, baud)
        row["plan"] = [f"{r.address:#06x}+{r.count}" for r in model.plan]
        try:
            row["measured"] = asyncio.run(_cpu(name, reads))
            sent = row["measured"].pop("bytes_sent")
            requests = row["measured"].pop("requests")
            row["measured"]["bytes_sent_per_request_check"] = round(sent / requests, 2) if requests else None
        except Exception as exc:  # noqa: BLE001
            row["measured"] = {"error": f"{type(exc).__name__}: {exc}"}
        res.figures[name] = row
    res.notes += [
        "bus_ms = (bytes out + bytes in + 7 characters of silence per request) x 11 bits / baud; add the "
        "meter's turnaround per request on a real bus.",
        "The charger reads the FULL plan every meter_interval_s (1 s), idle or charging, and twice between a "
        "tap and the contactor (see the tap benchmark).",
    ]
    return res
