"""The kWh meter adapter: Modbus RTU (or TCP) through pymodbus 3.16 asyncio clients.

Theory of operation
-------------------
`ModbusMeter` implements the `Meter` port for any model in
station/hardware/meters/models.py. One `read()` sends the model's request
plan (adjacent registers grouped, usually 1-3 reads) and decodes the blocks
into a `MeterReading` with integer Wh.

The port string chooses the link:

* a device path (`/dev/ttyAMA0`, `/dev/serial/by-id/...`): RTU on a serial line;
* `socket://HOST:PORT`: RTU framing over TCP, what RS-485-to-Ethernet
  gateways in "transparent" mode do. pymodbus' serial client accepts this
  pyserial URL (it hands the string to `serial.serial_for_url`; verified),
  but pyserial's socket handler sleeps 0.3 s in `close()`, which would block
  the whole event loop after every failed read. So the port goes to
  pymodbus' asyncio TCP client with the RTU framer instead: the same bytes
  on the wire, no blocking;
* `tcp://HOST:PORT`: Modbus TCP (MBAP framing) through the same TCP client.

Failures: any timeout, exception reply, short reply or undecodable value
raises `MeterError` with a readable text, and the client is closed; the next
`read()` opens it again. Reopening the port flushes late replies of a slow
meter (RTU has no transaction id, so a late reply would otherwise be taken
for the answer to the next request) and recovers from a USB adapter that
was unplugged: the "timeouts only a reboot cured" seen elsewhere.

pymodbus' own reconnect task is disabled (`reconnect_delay=0`) so no
background task outlives a failure, and its retries default to 0: the caller
polls again a second later anyway, and `MeterGuard` counts the failures.

Statistics (`stats`) count requests and the bytes on the wire, measured
with pymodbus' `trace_packet` hook on the sent side; the reply size is the
exact RTU frame length of a good reply (5 + 2 x registers).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from typing import TextIO
from urllib.parse import urlsplit

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from station.core.model import MeterReading
from station.errors import MeterError
from station.hardware.meters.models import DecodeError, MeterModel, decode, get_model


@dataclass
class MeterStats:
    readings: int = 0
    failures: int = 0
    requests: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0


class ModbusMeter:
    """A Modbus kWh meter of a known model. Implements station.core.ports.Meter."""

    def __init__(
        self,
        model: str | MeterModel,
        port: str,
        address: int = 1,
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        timeout_s: float = 0.5,
        *,
        retries: int = 0,
        max_power_w: float | None = None,
    ) -> None:
        self.model_data: MeterModel = get_model(model) if isinstance(model, str) else model
        self.model: str = self.model_data.name
        self.port = port
        self.address = address
        self.baudrate = baudrate
        self.parity = parity
        self.stopbits = stopbits
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_power_w: float = float(max_power_w) if max_power_w else self.model_data.max_power_w
        self.measurands: frozenset[str] = self.model_data.measurands
        self.resolution_wh: int = self.model_data.resolution_wh
        self.stats = MeterStats()
        self._client: AsyncModbusSerialClient | AsyncModbusTcpClient | None = None
        self._lock = asyncio.Lock()
        if not 1 <= address <= 247:
            raise ValueError(f"Modbus address {address} out of range 1..247")

    # -- link ----------------------------------------------------------------------
    def _trace(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self.stats.requests += 1
            self.stats.bytes_sent += len(data)
        return data

    def _new_client(self) -> AsyncModbusSerialClient | AsyncModbusTcpClient:
        for scheme, framer in (("tcp://", FramerType.SOCKET), ("socket://", FramerType.RTU)):
            if self.port.startswith(scheme):
                u = urlsplit(self.port)
                if not u.hostname or not u.port:
                    raise MeterError(f"meter port {self.port!r}: expected {scheme}HOST:PORT")
                return AsyncModbusTcpClient(
                    u.hostname,
                    port=u.port,
                    framer=framer,
                    timeout=self.timeout_s,
                    retries=self.retries,
                    reconnect_delay=0,
                    trace_packet=self._trace,
                )
        return AsyncModbusSerialClient(
            self.port,
            framer=FramerType.RTU,
            baudrate=self.baudrate,
            parity=self.parity,
            stopbits=self.stopbits,
            bytesize=8,
            timeout=self.timeout_s,
            retries=self.retries,
            reconnect_delay=0,
            trace_packet=self._trace,
        )

    async def _connect(self) -> AsyncModbusSerialClient | AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        self._drop()
        client = self._new_client()
        try:
            ok = await client.connect()
        except Exception as exc:  # pyserial raises SerialException/ValueError for bad ports
            client.close()
            raise MeterError(f"meter port {self.port}: cannot open: {exc}") from exc
        if not ok:
            client.close()
            raise MeterError(f"meter port {self.port}: cannot open or connect")
        self._client = client
        return client

    def _drop(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # closing a broken link must not hide the original error
                pass
            self._client = None

    # -- the port --------------------------------------------------------------------
    async def read(self, full: bool = True) -> MeterReading:
        """One reading, or MeterError. Safe to call concurrently (serialised).

        `full=False` reads only energy and total power (`model.core_plan`, one or two
        short requests): enough for the charging loop; voltages, currents and
        per-phase values stay empty.
        """
        async with self._lock:
            try:
                reading = await self._read_once(full)
            except MeterError:
                self.stats.failures += 1
                self._drop()
                raise
            self.stats.readings += 1
            return reading

    async def _read_once(self, full: bool) -> MeterReading:
        client = await self._connect()
        m = self.model_data
        blocks: list[list[int]] = []
        for req in m.plan if full else m.core_plan:
            what = f"{m.name} at address {self.address} on {self.port}"
            try:
                if m.function_code == 4:
                    rr = await client.read_input_registers(req.address, count=req.count, device_id=self.address)
                else:
                    rr = await client.read_holding_registers(req.address, count=req.count, device_id=self.address)
            except (TimeoutError, ModbusException, OSError) as exc:
                raise MeterError(
                    f"meter {what}: no reply to a read of {req.count} registers at {req.address:#06x} "
                    f"within {self.timeout_s:g} s ({exc.__class__.__name__})"
                ) from exc
            if rr.isError():
                code = getattr(rr, "exception_code", "?")
                raise MeterError(
                    f"meter {what}: exception code {code} for FC{m.function_code} "
                    f"{req.address:#06x}+{req.count} (wrong model or address?)"
                )
            regs = list(rr.registers)
            if len(regs) != req.count:
                raise MeterError(f"meter {what}: asked {req.count} registers at {req.address:#06x}, got {len(regs)}")
            # RTU reply: 5 + 2n bytes; Modbus TCP: 7-byte MBAP header instead of address + CRC
            self.stats.bytes_received += req.wire_bytes[1] + (4 if self.port.startswith("tcp://") else 0)
            blocks.append(regs)
        try:
            return decode(m, blocks, taken_at=time.monotonic(), full=full)
        except (DecodeError, ValueError) as exc:
            raise MeterError(f"meter {m.name} at address {self.address}: {exc}") from exc

    async def close(self) -> None:
        self._drop()


# -- `station meter read` ------------------------------------------------------------------


def reading_json(model: str, address: int, r: MeterReading) -> dict:
    """The JSON document of `station meter read --json` (keys fixed by the issue)."""
    return {
        "model": model,
        "address": address,
        "energy_import_wh": r.energy_wh,
        "power_w": r.power_w,
        "voltage_v": list(r.voltage_v),
        "current_a": list(r.current_a),
        "energy_import_phase_wh": list(r.energy_phase_wh),
    }


def _fmt(x: float | int | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def reading_table(meter: ModbusMeter, r: MeterReading) -> str:
    m = meter.model_data
    lines = [
        f"Meter     {m.name} ({m.description})",
        f"Link      {meter.port}  address {meter.address}",
        f"Energy    {r.energy_wh / 1000:.3f} kWh  ({r.energy_wh} Wh import)",
        f"Power     {_fmt(r.power_w, 1)} W",
    ]
    if r.frequency_hz is not None:
        lines.append(f"Frequency {r.frequency_hz:.2f} Hz")
    names = [f"L{i + 1}" for i in range(m.phases)]
    lines.append("          " + "".join(f"{n:>12}" for n in names))
    rows = [("Voltage V", r.voltage_v, 1), ("Current A", r.current_a, 3)]
    if r.power_phase_w:
        rows.append(("Power W", r.power_phase_w, 1))
    if r.energy_phase_wh:
        rows.append(("Energy Wh", r.energy_phase_wh, 0))
    for title, vals, digits in rows:
        lines.append(f"{title:<10}" + "".join(f"{_fmt(v, digits):>12}" for v in vals))
    return "\n".join(lines)


async def cli_read(
    model: str,
    port: str,
    address: int,
    baudrate: int = 9600,
    parity: str = "N",
    as_json: bool = False,
    *,
    stopbits: int = 1,
    timeout_s: float = 1.0,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`station meter read`: one reading, printed. Returns the exit code (0 ok, 1 error).

    A coroutine: the CLI runs it with `asyncio.run(cli_read(...))`.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        meter = ModbusMeter(model, port, address, baudrate, parity, stopbits, timeout_s)
    except (KeyError, ValueError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=err)
        return 1
    try:
        reading = await meter.read()
    except MeterError as exc:
        hint = (
            f"check wiring (A/B), address {address}, baud rate {baudrate} and parity {parity}"
            if not port.startswith("tcp://")
            else "check host, port and unit id"
        )
        default = meter.model_data.default_parity
        if default and default != parity and not port.startswith("tcp://"):
            hint += f" (the {meter.model}'s factory parity is {default})"
        print(f"error: {exc}\n  {hint}", file=err)
        return 1
    finally:
        await meter.close()
    if as_json:
        print(json.dumps(reading_json(meter.model, address, reading)), file=out)
    else:
        print(reading_table(meter, reading), file=out)
    return 0
