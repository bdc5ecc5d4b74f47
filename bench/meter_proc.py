"""The emulated meter in a process of its own, so its CPU is not charged to the station.

    python -m bench.meter_proc --model SDM630 --state-dir DIR

Runs `station.emulated.meter_server.EmulatedMeter` (pymodbus RTU server over TCP,
`socket://`) and a control port taking one command per line: `flowing 0|1`,
`load W`, `advance WH`. Prints `PORT <client port> <control port>` on stdout
once serving, then runs until stdin closes.

`RemoteMeter` (and `RemoteBus`, for the RS-485 line the world builds) are the
station-side stand-ins that `bench.station_proc` puts in place of `EmulatedMeter`
(and `EmulatedBus`) in station.sim.world: `start()` returns the external
meter's port, and the world's calls (`set_flowing` from the contactor GPIO,
`set_load`, `advance`) become control lines. The station's `ModbusMeter` then
talks real Modbus RTU frames over TCP to the other process.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys


async def _main(args: argparse.Namespace) -> None:
    from station.emulated.meter_server import EmulatedMeter

    meter = EmulatedMeter(args.model, state_dir=args.state_dir, link="socket", baudrate=args.baudrate)
    port = await meter.start()

    async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            cmd, _, value = line.decode().strip().partition(" ")
            if cmd == "flowing":
                meter.set_flowing(value == "1")
            elif cmd == "load":
                meter.set_load(float(value))
            elif cmd == "advance":
                meter.advance(int(value))
        writer.close()

    server = await asyncio.start_server(control, "127.0.0.1", 0)
    ctl = server.sockets[0].getsockname()[1]
    print(f"PORT {port} {ctl}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    server.close()
    await meter.stop()


class RemoteBus:
    """Stands in for the world's EmulatedBus (the RS-485 line its meter sits on): the line is the other
    process's, so `start()` only names its port."""

    def __init__(self, port: str) -> None:
        self.port = port
        self.link = "socket"

    async def start(self) -> str:
        return self.port

    async def stop(self) -> None:
        return None


class RemoteMeter:
    """Stands in for EmulatedMeter inside the station process (see the module docstring)."""

    def __init__(self, port: str, control_port: int) -> None:
        self.port = port
        self._sock = socket.create_connection(("127.0.0.1", control_port))
        self.load_w = 0.0
        self.flowing = False
        self.register_wh = 0

    def _send(self, line: str) -> None:
        self._sock.sendall(line.encode() + b"\n")

    async def start(self) -> str:
        return self.port

    async def stop(self) -> None:
        self._sock.close()

    def set_load(self, watts: float, phases: int | None = None) -> None:
        self.load_w = watts
        self._send(f"load {watts}")

    def set_flowing(self, flowing: bool) -> None:
        if flowing != self.flowing:
            self.flowing = flowing
            self._send(f"flowing {int(flowing)}")

    def advance(self, wh: int) -> None:
        self._send(f"advance {int(wh)}")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="SDM630")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--baudrate", type=int, default=9600)
    asyncio.run(_main(p.parse_args()))
