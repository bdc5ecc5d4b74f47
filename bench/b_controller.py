"""Benchmark: the meter and the charge controller on one RS-485 line, per polling cycle.

Wire (computed from the request plans): per request the bytes out and back in
RTU framing and two 3.5-character silences, at 11 bits per character (Modbus
RTU: start, 8 data, parity or a second stop bit, stop), at 9600 and 19200
baud; the devices' own turnaround is not included (it is not on the wire; a
real cycle takes that much longer per request). A cycle is what the station
reads each second: the meter's core plan (energy and power) or its full plan,
plus one poll of the controller.

Measured: the same cycle through one shared `RtuBus` (the station's adapters,
pymodbus 3.16 client) against the emulated line (meter and board at two
addresses) on a pseudo-terminal pair, at each baud-rate setting. A pty does not
pace bytes, so this is the software's time plus the silences the bus keeps;
the wire time above comes on top on a real line.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.common import Result, summary_ms

BITS_PER_CHAR = 11
GAP_CHARS = 3.5


def wire_ms(requests: list[tuple[int, int]], baud: int) -> float:
    chars = sum(out + back for out, back in requests) + 2 * GAP_CHARS * len(requests)
    return round(chars * BITS_PER_CHAR / baud * 1000, 1)


async def _measure(controller: str, baud: int, cycles: int, full: bool) -> dict[str, Any]:
    from station.emulated.bus import EmulatedBus
    from station.emulated.controller_server import EmulatedController
    from station.emulated.meter_server import EmulatedMeter
    from station.hardware import rtu
    from station.hardware.controller import ModbusController
    from station.hardware.meter import ModbusMeter

    line = EmulatedBus("pty", baudrate=baud)
    em = EmulatedMeter("SDM630", address=1, bus=line, tick_s=None)
    board = EmulatedController(controller, address=2, bus=line, tick_s=None)
    port = await line.start()
    await em.start()
    await board.start()
    try:
        bus = rtu.RtuBus(port, baudrate=baud, timeout_s=2.0)
        meter = ModbusMeter("SDM630", port, 1, bus=bus)
        ctl = ModbusController(controller, port, 2, bus=bus)
        await meter.read()
        await ctl.read()
        times = []
        c0 = time.process_time()
        for _ in range(cycles):
            t0 = time.perf_counter()
            await meter.read(full)
            await ctl.read()
            times.append(time.perf_counter() - t0)
        cpu = time.process_time() - c0
        await ctl.close()
        s = summary_ms(times)
        return {"p50_ms": s["p50_ms"], "max_ms": s["max_ms"], "cpu_ms_per_cycle": round(cpu / cycles * 1000, 2),
                "silence_ms": round(bus.silence_s * 1000, 2)}
    finally:
        await board.stop()
        await em.stop()
        await line.stop()


def run(quick: bool) -> Result:
    from station.hardware.controllers.models import MODELS as CONTROLLERS
    from station.hardware.meters.models import get_model

    res = Result("controller", "Meter and charge controller on one RS-485 line: bus time per cycle")
    meter = get_model("SDM630")
    cycles = 10 if quick else 100
    rows = []
    for name, model in CONTROLLERS.items():
        poll = [r.wire_bytes() for r in model.poll]
        for plan_name, plan in (("core", meter.core_plan), ("full", meter.plan)):
            requests = [r.wire_bytes for r in plan] + poll
            row: dict[str, Any] = {"controller": name, "meter plan": f"SDM630 {plan_name}",
                                   "requests": len(requests), "bytes out": sum(o for o, _ in requests),
                                   "bytes in": sum(b for _, b in requests)}
            for baud in (9600, 19200):
                row[f"wire ms {baud}"] = wire_ms(requests, baud)
                row[f"controller alone ms {baud}"] = wire_ms(poll, baud)
                try:
                    m = asyncio.run(_measure(name, baud, cycles, plan_name == "full"))
                    row[f"measured p50 ms {baud} (pty)"] = m["p50_ms"]
                    row[f"CPU ms/cycle {baud}"] = m["cpu_ms_per_cycle"]
                except Exception as exc:  # noqa: BLE001
                    row[f"measured p50 ms {baud} (pty)"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
    res.figures["rows"] = rows
    res.notes += [
        "wire ms = (bytes out + bytes in + 7 characters of silence per request) x 11 bits / baud, for the "
        "meter's plan plus one controller poll; add each device's turnaround per request on a real bus.",
        "measured = one cycle through the shared RtuBus on a pty (no wire time: ptys ignore the baud rate), "
        "including the 3.5-character silences the bus keeps between all frames.",
        "The time from a new limit (OCPP, MCSP) to the controller's register being written: the next part "
        "(a whole station).",
    ]
    return res
