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

RTU timing (station/hardware/rtu.py): before each request the line's
`RtuBus` waits until it has been silent for 3.5 characters since the last
byte received (1.75 ms above 19200 baud), or for `turnaround_s` if that is
longer. On `socket://` the gateway forwards our bytes to RS-485 as they
come, so the same silence is kept there; on `tcp://` the gateway does its
own timing and only `turnaround_s` applies. The meter may share its `RtuBus`
with the charge controller: one port, one request at a time, the silence
kept across both devices.

Failures: any timeout, exception reply, short reply or undecodable value
raises `MeterError` with a readable text, a `kind` and a `hint`, and the
client is closed; the next `read()` opens it again. Reopening the port
flushes late replies of a slow meter (RTU has no transaction id, so a late
reply would otherwise be taken for the answer to the next request) and
recovers from a USB adapter that was unplugged: the "timeouts only a reboot
cured" seen elsewhere. A reply with a bad CRC (kind "crc") and bytes that
make no frame (kind "garbled") are told apart from silence (kind "timeout").

The first reading is always a full one, and its import total is compared
with the sum of its phase counters (`models.phase_sum_problem`): a total far
from the sum means a wrong map or a wrong `meter.model` (the EM24 has two
maps). The finding is logged as a warning once and kept in `map_warning` for
the status report and `station meter read`.

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
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from station.core.model import MeterReading
from station.errors import MeterError
from station.hardware import rtu
from station.hardware.meters.models import DecodeError, MeterModel, Request, decode, get_model, phase_sum_problem

log = logging.getLogger(__name__)


@dataclass
class MeterStats:
    readings: int = 0
    failures: int = 0
    requests: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0


class ModbusMeter:
    """A Modbus kWh meter of a known model. Implements station.core.ports.Meter.

    `map_warning` is None, or the sentence of the start-up check when the
    import total is far from the sum of the phases (a wrong map or model).
    `bus` shares one line with other devices (the charge controller): their
    requests then wait for each other and keep the silence between them. Without
    it the meter has a line of its own, made from the link arguments.
    """

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
        turnaround_s: float = 0.0,
        rs485_rts: bool = False,
        rs485_rts_level_for_tx: bool = True,
        bus: rtu.RtuBus | None = None,
    ) -> None:
        self.model_data: MeterModel = get_model(model) if isinstance(model, str) else model
        self.model: str = self.model_data.name
        self.address = address
        self.max_power_w: float = float(max_power_w) if max_power_w else self.model_data.max_power_w
        self.measurands: frozenset[str] = self.model_data.measurands
        self.resolution_wh: int = self.model_data.resolution_wh
        self.stats = MeterStats()
        self.map_warning: str | None = None
        self._map_checked = False
        self._lock = asyncio.Lock()
        if not 1 <= address <= 247:
            raise ValueError(f"Modbus address {address} out of range 1..247")
        self.bus = bus or rtu.RtuBus(port, baudrate=baudrate, parity=parity, stopbits=stopbits, timeout_s=timeout_s,
                                     retries=retries, turnaround_s=turnaround_s, rs485_rts=rs485_rts,
                                     rs485_rts_level_for_tx=rs485_rts_level_for_tx)

    # The link's settings are the bus's (shared with every device on the line).
    port = rtu.bus_setting("port")
    baudrate = rtu.bus_setting("baudrate")
    parity = rtu.bus_setting("parity")
    stopbits = rtu.bus_setting("stopbits")
    timeout_s = rtu.bus_setting("timeout_s")
    turnaround_s = rtu.bus_setting("turnaround_s")

    @property
    def silence_s(self) -> float:
        """The silence kept between the end of a reply and the next request."""
        return self.bus.silence_s

    @property
    def _client(self) -> object:
        return self.bus.client

    @staticmethod
    def serial_port(client: object) -> object:
        """The pyserial port object under a connected pymodbus serial client."""
        return rtu.serial_port(client)

    # -- the port --------------------------------------------------------------------
    async def read(self, full: bool = True) -> MeterReading:
        """One reading, or MeterError. Safe to call concurrently (serialised).

        `full=False` reads only energy and total power (`model.core_plan`, one or two
        short requests): enough for the charging loop; voltages, currents and
        per-phase values stay empty. The first successful reading is always full
        (the start-up check of the map needs the phase counters).
        """
        async with self._lock:
            full = full or not self._map_checked
            try:
                reading = await self._read_once(full)
            except MeterError:
                self.stats.failures += 1
                self.bus.drop()
                raise
            self.stats.readings += 1
            if not self._map_checked:
                self._check_map(reading)
            return reading

    def _check_map(self, reading: MeterReading) -> None:
        self._map_checked = True
        self.map_warning = phase_sum_problem(self.model_data, reading)
        if self.map_warning:
            log.warning("%s", self.map_warning)

    async def _read_once(self, full: bool) -> MeterReading:
        m = self.model_data
        blocks: list[list[int]] = []
        for req in m.plan if full else m.core_plan:
            blocks.append(await self._request(req))
        try:
            return decode(m, blocks, taken_at=time.monotonic(), full=full)
        except (DecodeError, ValueError) as exc:
            raise MeterError(f"meter {m.name} at address {self.address}: {exc}", kind="decode",
                             hint="wrong meter.model for this meter?") from exc

    async def _request(self, req: Request) -> list[int]:
        m = self.model_data
        what = f"{m.name} at address {self.address} on {self.port}"

        async def op(client: Any) -> Any:
            if m.function_code == 4:
                return await client.read_input_registers(req.address, count=req.count, device_id=self.address)
            return await client.read_holding_registers(req.address, count=req.count, device_id=self.address)

        rr = await self.bus.call(op, device_id=self.address, function_code=m.function_code, count=req.count,
                                 what=f"meter {what}", request=f"a read of {req.count} registers at {req.address:#06x}",
                                 silence_hint=self._silence_hint(), stats=self.stats,
                                 garbled_hint=f"check baud rate {self.baudrate}, parity {self.parity} and stop bits "
                                 f"{self.stopbits} against the meter's settings")
        if rr.isError():
            code = getattr(rr, "exception_code", "?")
            raise MeterError(
                f"meter {what}: exception code {code} for FC{m.function_code} "
                f"{req.address:#06x}+{req.count} (wrong model or address?)",
                kind="exception",
                hint=self._exception_hint(code),
                code=code if isinstance(code, int) else None,
            )
        regs = list(rr.registers)
        if len(regs) != req.count:
            raise MeterError(f"meter {what}: asked {req.count} registers at {req.address:#06x}, got {len(regs)}",
                             kind="garbled")
        # RTU reply: 5 + 2n bytes; Modbus TCP: 7-byte MBAP header instead of address + CRC
        self.stats.bytes_received += req.wire_bytes[1] + (4 if self.port.startswith("tcp://") else 0)
        return regs

    def _exception_hint(self, code: object) -> str:
        hint = f"the meter answered but refused the read: is it a {self.model}"
        others = " or ".join(self.model_data.other_versions)
        if code == 2:
            hint += "? (code 2: no such register"
            if others:
                hint += f"; the same meter is sold with another register map: try meter.model = {others}"
            return hint + ")"
        if code == 3:
            hint += "? (code 3: a read longer than it allows"
            if self.model == "EM24":
                hint += "; an EM24 with the older map allows 11 registers"
            if others:
                hint += f": try meter.model = {others}"
            return hint + ")"
        return hint + "?"

    def _silence_hint(self) -> str:
        settings = f"baud rate {self.baudrate}, parity {self.parity}"
        default = self.model_data.default_parity
        if default and default != self.parity:
            settings += f" (the {self.model}'s factory parity is {default})"
        if self.port.startswith("tcp://"):
            return f"check the gateway's serial settings and the meter's address ({self.address})"
        if self.port.startswith("socket://"):
            return f"check the gateway's serial settings ({settings}) and the meter's address ({self.address})"
        return f"check the wiring (A to A, B to B), address {self.address}, {settings}"

    async def close(self) -> None:
        self.bus.drop()


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
    rows = [(title, vals, digits) for title, vals, digits in (
        ("Voltage V", r.voltage_v, 1), ("Current A", r.current_a, 3), ("Power W", r.power_phase_w, 1),
        ("Energy Wh", r.energy_phase_wh, 0)) if vals]  # a model without a quantity (SDM72D-M-V1) skips its row
    if rows:
        lines.append("          " + "".join(f"{n:>12}" for n in names))
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
    turnaround_s: float = 0.0,
    rs485_rts: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`station meter read`: one reading, printed. Returns the exit code (0 ok, 1 error).

    With `as_json` everything goes to `out` as one JSON document, errors too:
    `{"error": text, "kind": kind, "hint": hint}`. A coroutine: the CLI runs it
    with `asyncio.run(cli_read(...))`.
    """
    out = out or sys.stdout
    err = err or sys.stderr

    def fail(text: str, kind: str, hint: str) -> int:
        if as_json:
            print(json.dumps({"error": text, "kind": kind, "hint": hint}), file=out)
        else:
            print(f"error: {text}" + (f"\n  {hint}" if hint else ""), file=err)
        return 1

    def open_meter(name: str) -> ModbusMeter:
        return ModbusMeter(name, port, address, baudrate, parity, stopbits, timeout_s,
                           turnaround_s=turnaround_s, rs485_rts=rs485_rts)

    try:
        meter = open_meter(model)
    except (KeyError, ValueError) as exc:
        return fail(str(exc.args[0] if exc.args else exc), "usage", "")
    try:
        reading = await meter.read()
    except MeterError as exc:
        found = await _other_version(meter, open_meter) if exc.kind in ("exception", "decode") else None
        if found is None:
            return fail(str(exc), exc.kind, exc.hint)
        name, r = found
        advice = f"this meter answers as {name} ({r.energy_wh / 1000:.3f} kWh import): set meter.model = {name}"
        if as_json:
            print(json.dumps({"error": str(exc), "kind": exc.kind, "hint": advice, "suggest_model": name}), file=out)
            return 1
        return fail(str(exc), exc.kind, advice)
    finally:
        await meter.close()
    richer = await _richer_version(meter, reading, open_meter)
    if as_json:
        doc = reading_json(meter.model, address, reading)
        if meter.map_warning:
            doc["warning"] = meter.map_warning
        if richer:
            doc["suggest_model"] = richer
        print(json.dumps(doc), file=out)
    else:
        if meter.map_warning:
            print(f"warning: {meter.map_warning}", file=err)
        if richer:
            extra = ", ".join(sorted(get_model(richer).measurands - meter.measurands))
            print(f"note: this meter also answers the {richer} map, which reads more ({extra}): "
                  f"set meter.model = {richer}", file=err)
        print(reading_table(meter, reading), file=out)
    return 0


async def _other_version(meter: ModbusMeter, open_meter: Callable[[str], ModbusMeter]) -> tuple[str, MeterReading] | None:
    """The first other register map of the same meter (`other_versions`) that reads, with its reading."""
    for name in meter.model_data.other_versions:
        other = open_meter(name)
        try:
            return name, await other.read()
        except MeterError:
            continue
        finally:
            await other.close()
    return None


async def _richer_version(meter: ModbusMeter, reading: MeterReading,
                          open_meter: Callable[[str], ModbusMeter]) -> str | None:
    """Another map of the same meter that reads more quantities and reads here (with the same
    energy register): the installer chose the smaller map (an SDM72D-M-V1 set on a -V2)."""
    for name in meter.model_data.other_versions:
        if not get_model(name).measurands > meter.measurands:
            continue
        other = open_meter(name)
        try:
            r = await other.read()
        except MeterError:
            continue
        finally:
            await other.close()
        if r.energy_wh == reading.energy_wh:
            return name
    return None
