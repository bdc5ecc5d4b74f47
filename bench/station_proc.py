"""A station process for the CPU benchmark, driven over stdin/stdout.

    python -m bench.station_proc -c station.toml [--remote-meter PORT CTL]

It is `station run` (station.daemon.Station on `hardware.mode = "sim"`, INFO
logging to stderr) plus a control channel, so the benchmark can tap a card
in the emulated world. With `--remote-meter` the emulated meter lives in
another process (bench.meter_proc) and this process only runs the station's
Modbus client. The emulated MFRC522 still runs here (the fake spidev is an
in-process module); the CPU spent inside it is measured (thread CPU inside
`chip.transfer`) and reported with `stats`, so it can be subtracted.

Commands (one per line on stdin): `charge` (tap, wait for a session,
answer `CHARGING`), `stop` (tap again, answer `STOPPED`), `stats` (answer
`STATS {json}`), `quit`. Stdin is watched with `loop.add_reader`: no
extra thread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time


async def _main(args: argparse.Namespace) -> int:
    from station import config as configmod
    from station.daemon import Station

    if args.remote_meter:
        from bench.meter_proc import RemoteBus, RemoteMeter
        from station.emulated import bus, meter_server

        port, ctl = args.remote_meter
        meter_server.EmulatedMeter = lambda *a, **kw: RemoteMeter(port, int(ctl))  # type: ignore[misc,assignment]
        bus.EmulatedBus = lambda *a, **kw: RemoteBus(port)  # type: ignore[misc,assignment]  # the world's line

    if args.input_poll_s is not None:  # the idle-cost breakdown (bench/idle_breakdown.py) only
        from station.core import poller

        poller.IDLE_S = args.input_poll_s
    cfg = configmod.load(args.config)
    station = Station(cfg)
    await station.start()
    timed = None
    if station.world is not None and station.world.chip is not None:
        from bench.b_rfid import TimedChip
        from station.emulated import fakespi

        timed = TimedChip(station.world.chip)
        fakespi.attach(cfg.rfid.spi_bus, cfg.rfid.spi_device, timed)
    print(f"READY {station.ready_after:.4f}", flush=True)
    online = await station.backend.wait_ready(30)
    print(f"ONLINE {int(online)}", flush=True)

    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()
    buf = b""

    def readable() -> None:
        nonlocal buf
        data = os.read(sys.stdin.fileno(), 4096)
        if not data:
            loop.remove_reader(sys.stdin.fileno())
            lines.put_nowait("quit")
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            lines.put_nowait(line.decode().strip())

    loop.add_reader(sys.stdin.fileno(), readable)
    charger = station.charger
    chip = station.world.chip
    uid = bytes.fromhex(args.card)

    async def until(pred, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise TimeoutError(f"state {charger.state.value}")
            await asyncio.sleep(0.02)

    async def tap() -> None:
        before = charger.taps
        chip.present(uid)
        await until(lambda: charger.taps > before and not charger.busy)
        chip.remove()
        await asyncio.sleep(cfg.rfid.absent_s + 3 * cfg.rfid.poll_interval_s)

    while True:
        cmd = await lines.get()
        if cmd == "charge":
            await tap()
            await until(lambda: charger.state.value in ("Charging", "SuspendedEV"))
            print("CHARGING", flush=True)
        elif cmd == "stop":
            await tap()
            print("STOPPED", flush=True)
        elif cmd == "stats":
            meter = station.hardware.meter
            stats = {
                "process_cpu_s": time.process_time(),
                "emulator_cpu_s": timed.cpu_s if timed else 0.0,
                "polls": station.hardware.reader.polls if station.hardware.reader else 0,
                "meter_readings": meter.stats.readings, "meter_requests": meter.stats.requests,
                "meter_bytes_sent": meter.stats.bytes_sent, "meter_bytes_received": meter.stats.bytes_received,
                "store_writes": station.store.writes, "state": charger.state.value,
                "threads": {str(t.native_id): t.name for t in threading.enumerate() if t.native_id},
            }
            print("STATS " + json.dumps(stats), flush=True)
        elif cmd == "quit":
            break
    loop.remove_reader(sys.stdin.fileno()) if not sys.stdin.closed else None
    await asyncio.wait_for(station.stop(), 15)
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--remote-meter", nargs=2, metavar=("PORT", "CONTROL"))
    p.add_argument("--card", default="D64FC93B")
    p.add_argument("--input-poll-s", type=float, help="override the charger's input poll period (breakdown runs)")
    a = p.parse_args()
    from station.cli import setup_logging

    setup_logging("INFO")
    sys.exit(asyncio.run(_main(a)))
