"""Hostile Modbus replies, fuzzed: whatever a meter (or a broken RS-485 gateway) answers,
ModbusMeter.read returns a reading or raises MeterError, never anything else, and never waits much
past its timeout.

The peer is a raw TCP server speaking RTU frames (`socket://`, as an RS-485-to-Ethernet gateway
does) that answers each request as hypothesis tells it: a correct frame, random bytes, a wrong CRC,
another device's address, an exception code, a cut frame, a lying byte count, trailing junk,
silence, a reply after the timeout, or a closed connection. A second test drives the meter
emulator's own fault injection (dead, garbage, latency, glitches) in random order.
"""

from __future__ import annotations

import asyncio
import time

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from station.core.model import MeterReading
from station.emulated.meter_server import EmulatedMeter
from station.errors import MeterError
from station.hardware.meter import ModbusMeter
from station.hardware.meters.models import get_model

TIMEOUT_S = 0.15
SLACK_S = 2.0  # scheduling on a slow, busy CI machine; a hang would be far beyond it

BEHAVIOURS = ("good", "junk", "bad_crc", "wrong_address", "exception", "short", "byte_count", "trailing",
              "silence", "late", "close")


def crc16(frame: bytes) -> bytes:
    crc = 0xFFFF
    for b in frame:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc.to_bytes(2, "little")


def rtu(body: bytes) -> bytes:
    return body + crc16(body)


class HostileMeter:
    """Answers each 8-byte RTU read request with the next behaviour of its script."""

    def __init__(self, script: list[tuple[str, bytes, list[int]]]) -> None:
        self.script = script
        self.turn = 0
        self.server: asyncio.AbstractServer | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"socket://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        for w in self.writers:
            w.close()
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            while True:
                request = await reader.readexactly(8)
                behaviour, junk, regs = self.script[self.turn % len(self.script)]
                self.turn += 1
                address, fc, count = request[0], request[1], int.from_bytes(request[4:6], "big")
                words = [(regs[i % len(regs)] if regs else 0) for i in range(count)]
                body = bytes([address, fc, 2 * count]) + b"".join(w.to_bytes(2, "big") for w in words)
                good = rtu(body)
                if behaviour == "good":
                    writer.write(good)
                elif behaviour == "junk":
                    writer.write(junk)
                elif behaviour == "bad_crc":
                    writer.write(good[:-1] + bytes([good[-1] ^ 0x5A]))
                elif behaviour == "wrong_address":
                    writer.write(rtu(bytes([(address % 247) + 1]) + body[1:]))
                elif behaviour == "exception":
                    writer.write(rtu(bytes([address, fc | 0x80, (junk[0] if junk else 2) % 12 or 1])))
                elif behaviour == "short":
                    writer.write(good[: max(1, len(junk) % len(good))])
                elif behaviour == "byte_count":
                    writer.write(rtu(bytes([address, fc, (2 * count + 2) % 256]) + body[3:]))
                elif behaviour == "trailing":
                    writer.write(good + junk)
                elif behaviour == "late":
                    await asyncio.sleep(TIMEOUT_S * 3)
                    writer.write(good)
                elif behaviour == "close":
                    writer.close()
                    return
                # "silence": nothing at all
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass


async def read_all(port: str, model: str, reads: int, full: bool) -> None:
    meter = ModbusMeter(model, port, 1, timeout_s=TIMEOUT_S)
    requests = len(get_model(model).plan if full else get_model(model).core_plan)
    try:
        for _ in range(reads):
            began = time.monotonic()
            try:
                reading = await asyncio.wait_for(meter.read(full=full), requests * TIMEOUT_S + SLACK_S + 5)
            except MeterError as exc:
                assert str(exc)  # a readable reason
            else:
                assert isinstance(reading, MeterReading)
                assert isinstance(reading.energy_wh, int) and reading.energy_wh >= 0  # never a negative count
                assert all(e is None or e >= 0 for e in reading.energy_phase_wh)
            # each request may wait its timeout once, plus a connect: never much longer
            assert time.monotonic() - began < requests * TIMEOUT_S + SLACK_S
    finally:
        await meter.close()


step = st.tuples(st.sampled_from(BEHAVIOURS), st.binary(max_size=64),
                 st.lists(st.integers(min_value=0, max_value=0xFFFF), max_size=8))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=st.lists(step, min_size=1, max_size=6), model=st.sampled_from(["SDM630", "SDM120", "ABB-B23", "EM24"]),
       full=st.booleans())
@example(script=[("good", b"", [0x8000])], model="EM24", full=False)  # found: int32 energy -214745088000 Wh
def test_any_reply_is_a_reading_or_a_meter_error(script, model, full):
    async def run() -> None:
        peer = HostileMeter(script)
        port = await peer.start()
        try:
            await read_all(port, model, reads=3, full=full)
        finally:
            await peer.close()

    asyncio.run(run())


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(faults=st.lists(st.sampled_from(["dead", "garbage", "latency", "glitch", "well"]), min_size=1, max_size=5))
def test_emulated_meter_faults_in_any_order(faults, tmp_path_factory):
    async def run() -> None:
        async with EmulatedMeter("SDM630", initial_wh=5_000, tick_s=None) as em:
            meter = ModbusMeter("SDM630", em.port, 1, timeout_s=TIMEOUT_S)
            try:
                for fault in faults:
                    em.set_dead(fault == "dead")
                    em.set_garbage(fault == "garbage")
                    em.set_latency(TIMEOUT_S * 2 if fault == "latency" else 0)
                    if fault == "glitch":
                        em.glitch_energy(180_000_000)
                    began = time.monotonic()
                    try:
                        reading = await meter.read(full=False)
                    except MeterError:
                        assert fault in ("dead", "garbage", "latency")
                    else:
                        assert fault in ("glitch", "well")  # a glitch is read: MeterGuard judges it
                    assert time.monotonic() - began < 2 * TIMEOUT_S + SLACK_S
                em.set_dead(False), em.set_garbage(False), em.set_latency(0)
                reading = await meter.read(full=False)  # and it reads well again afterwards
                assert reading.energy_wh == 5_000
            finally:
                await meter.close()

    asyncio.run(run())
